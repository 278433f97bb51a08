"""Altair chart builders: one look for every page, readable at a glance.

A provider always has the same color (OpenAI green, Anthropic clay, Gemini blue, ...; unknown
providers get a stable color from their name), every dollar axis and tooltip is formatted as
money, and each builder takes a frame from `costline.dashboard.data` and returns a chart that
tests inspect through `chart.to_dict()`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import altair as alt
import pandas as pd

#: Fixed colors of the providers costline knows (OTel `gen_ai.provider.name` values).
PROVIDER_COLORS: dict[str, str] = {
    "openai": "#10a37f",
    "azure.ai.openai": "#0f7b6c",
    "anthropic": "#d97757",
    "aws.bedrock": "#ff9900",
    "gcp.gemini": "#4285f4",
    "gcp.vertex_ai": "#34a853",
    "gcp.gen_ai": "#1a73e8",
    "deepseek": "#6f42c1",
    "mistral_ai": "#fa520f",
    "cohere": "#39594d",
    "groq": "#f55036",
    "x_ai": "#3c3c3c",
    "perplexity": "#20808d",
    "azure.ai.inference": "#0078d4",
    "ibm.watsonx.ai": "#8a3ffc",
    "self_hosted": "#8c8c8c",
}
#: Colors for providers not listed above, picked by a stable hash of the name.
FALLBACK_COLORS: tuple[str, ...] = (
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
)
#: d3 format of dollar axes and tooltips.
MONEY_FORMAT = "$,.2f"
#: d3 format of ratio axes (0..1 shown as percent).
PERCENT_FORMAT = ".0%"
#: Series colors of the budget burn-down.
BURN_DOWN_COLORS: dict[str, str] = {"actual": "#1f77b4", "ideal": "#9e9e9e", "forecast": "#d62728"}
#: Severity colors of anomalies and budget statuses.
STATUS_COLORS: dict[str, str] = {
    "ok": "#2ca02c",
    "warning": "#ff9900",
    "forecast_exceeds": "#ff7f0e",
    "exceeded": "#d62728",
    "info": "#1f77b4",
    "critical": "#d62728",
}


def bar_height(bars: int, *, per_bar: int = 34) -> int:
    """Chart height that leaves every bar its label."""
    return max(120, per_bar * bars + 40)


def provider_color(provider: str) -> str:
    """The color of a provider: fixed for known ones, stable per name for the others."""
    if provider in PROVIDER_COLORS:
        return PROVIDER_COLORS[provider]
    return FALLBACK_COLORS[zlib.crc32(provider.encode()) % len(FALLBACK_COLORS)]


def provider_scale(providers: Iterable[str]) -> alt.Scale:
    """A color scale mapping each provider present to its own color."""
    domain = sorted({str(p) for p in providers})
    return alt.Scale(domain=domain, range=[provider_color(p) for p in domain])


def money_axis(title: str = "USD") -> alt.Axis:
    """A y (or x) axis labeled in dollars."""
    return alt.Axis(format=MONEY_FORMAT, title=title)


def _color(field: str, title: str, values: Sequence[str], *, providers: bool) -> alt.Color:
    if providers:
        return alt.Color(f"{field}:N", title=title, scale=provider_scale(values))
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(scheme="tableau10"))


def daily_trend(frame: pd.DataFrame, *, color_by: str = "provider", height: int = 280) -> alt.Chart:
    """Daily spend stacked by `color_by` (providers in their own colors), from a timeseries frame."""
    data = frame[["bucket", "label", "key", "effective_cost", "events"]].copy()
    data["day"] = data["bucket"].dt.tz_convert("UTC").dt.tz_localize(None)
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("yearmonthdate(day):T", title="day (UTC)", axis=alt.Axis(format="%b %d", labelAngle=0)),
            y=alt.Y("sum(effective_cost):Q", axis=money_axis("effective cost")),
            color=_color("label", color_by, list(data["label"]), providers=color_by == "provider"),
            tooltip=[
                alt.Tooltip("yearmonthdate(day):T", title="day"),
                alt.Tooltip("label:N", title=color_by),
                alt.Tooltip("sum(effective_cost):Q", title="cost", format=MONEY_FORMAT),
                alt.Tooltip("sum(events):Q", title="calls", format=","),
            ],
        )
        .properties(height=height)
    )


def spend_bars(
    frame: pd.DataFrame,
    *,
    dimension: str,
    value: str = "effective_cost",
    color_by_provider: bool = False,
    height: int | None = None,
) -> alt.Chart:
    """Horizontal bars of spend per group, largest on top (providers colored as everywhere)."""
    data = frame[["label", value, "events"]].copy()
    color = (
        alt.Color("label:N", title=dimension, scale=provider_scale(data["label"]), legend=None)
        if color_by_provider
        else alt.value("#4c78a8")
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=dimension, sort="-x", axis=alt.Axis(labelLimit=240)),
            x=alt.X(f"{value}:Q", axis=money_axis("effective cost")),
            color=color,
            tooltip=[
                alt.Tooltip("label:N", title=dimension),
                alt.Tooltip(f"{value}:Q", title="cost", format=MONEY_FORMAT),
                alt.Tooltip("events:Q", title="calls", format=","),
            ],
        )
        .properties(height=height or bar_height(len(data)))
    )


def stacked_bars(
    frame: pd.DataFrame,
    *,
    category: str,
    stack: str,
    value: str = "effective_cost",
    category_title: str | None = None,
    stack_title: str | None = None,
    providers: bool = False,
) -> alt.Chart:
    """Bars per `category` with spend stacked by `stack` (e.g. workload × model)."""
    data = frame[[category, stack, value]].copy()
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y(f"{category}:N", title=category_title or category, sort="-x"),
            x=alt.X(f"sum({value}):Q", axis=money_axis("cost")),
            color=_color(stack, stack_title or stack, list(data[stack]), providers=providers),
            tooltip=[
                alt.Tooltip(f"{category}:N", title=category_title or category),
                alt.Tooltip(f"{stack}:N", title=stack_title or stack),
                alt.Tooltip(f"sum({value}):Q", title="cost", format=MONEY_FORMAT),
            ],
        )
        .properties(height=bar_height(data[category].nunique()))
    )


def rate_bars(frame: pd.DataFrame, *, field: str, title: str, dimension: str = "workload") -> alt.Chart:
    """A 0..1 rate per group (cache hit rate, reasoning share); groups without data are left out."""
    data = frame[["label", field, "events"]].dropna(subset=[field])
    return (
        alt.Chart(data)
        .mark_bar(color="#72b7b2")
        .encode(
            y=alt.Y("label:N", title=dimension, sort="-x"),
            x=alt.X(
                f"{field}:Q",
                title=title,
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format=PERCENT_FORMAT),
            ),
            tooltip=[
                alt.Tooltip("label:N", title=dimension),
                alt.Tooltip(f"{field}:Q", title=title, format=".1%"),
                alt.Tooltip("events:Q", title="calls", format=","),
            ],
        )
        .properties(height=bar_height(len(data)))
    )


def burn_down(frame: pd.DataFrame, *, title: str = "budget left") -> alt.LayerChart:
    """Budget left over the period: actual (solid), even burn (dashed grey), forecast (dashed red)."""
    data = frame.copy()
    data["day"] = pd.to_datetime(data["day"], utc=True).dt.tz_localize(None)
    series = [s for s in BURN_DOWN_COLORS if s in set(data["series"])]
    lines = (
        alt.Chart(data)
        .mark_line(point=False, strokeWidth=2.5)
        .encode(
            x=alt.X("day:T", title="day (UTC)", axis=alt.Axis(format="%b %d", labelAngle=0)),
            y=alt.Y("remaining:Q", axis=money_axis(title)),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=series, range=[BURN_DOWN_COLORS[s] for s in series]),
                legend=alt.Legend(orient="bottom"),
            ),
            strokeDash=alt.StrokeDash(
                "series:N",
                scale=alt.Scale(domain=series, range=[[1, 0] if s == "actual" else [6, 4] for s in series]),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("series:N"),
                alt.Tooltip("day:T", format="%b %d %H:%M"),
                alt.Tooltip("remaining:Q", title="left", format=MONEY_FORMAT),
            ],
        )
    )
    zero = (
        alt.Chart(pd.DataFrame({"remaining": [0.0]}))
        .mark_rule(color="#d62728", opacity=0.4)
        .encode(y="remaining:Q")
    )
    return alt.layer(lines, zero).properties(height=260)


def wasted_by_kind(frame: pd.DataFrame) -> alt.Chart:
    """Wasted dollars per anomaly kind."""
    data = frame[["label", "wasted_cost", "anomalies", "calls"]].copy()
    return (
        alt.Chart(data)
        .mark_bar(color="#e45756")
        .encode(
            y=alt.Y("label:N", title=None, sort="-x"),
            x=alt.X("wasted_cost:Q", axis=money_axis("wasted")),
            tooltip=[
                alt.Tooltip("label:N", title="kind"),
                alt.Tooltip("wasted_cost:Q", title="wasted", format=MONEY_FORMAT),
                alt.Tooltip("anomalies:Q", format=","),
                alt.Tooltip("calls:Q", format=","),
            ],
        )
        .properties(height=bar_height(len(data)))
    )


def savings_bars(frame: pd.DataFrame, *, limit: int = 15) -> alt.Chart:
    """Projected monthly saving per recommendation (`team / workload → proposed model (kind)`)."""
    data = frame.head(limit).copy()
    data["label"] = (
        data["team"].astype(str)
        + " / "
        + data["workload"].astype(str)
        + " → "
        + data["proposed"].astype(str).str.split(",").str[0]
        + " ("
        + data["kind"].astype(str).str.replace("_", " ")
        + ")"
    )
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("label:N", title=None, sort="-x", axis=alt.Axis(labelLimit=320)),
            x=alt.X("monthly_saving:Q", axis=money_axis("saving per month")),
            color=alt.Color(
                "status:N",
                title="status",
                scale=alt.Scale(domain=["recommended", "needs_eval"], range=["#2ca02c", "#ff9900"]),
            ),
            tooltip=[
                alt.Tooltip("label:N", title="recommendation"),
                alt.Tooltip("proposed:N"),
                alt.Tooltip("monthly_saving:Q", title="saving / month", format=MONEY_FORMAT),
                alt.Tooltip("saving_pct:Q", title="saving", format=".0%"),
            ],
        )
        .properties(height=bar_height(len(data)))
    )


def budget_bars(frame: pd.DataFrame) -> alt.LayerChart:
    """Percent of each budget used, colored by status, with the forecast as a tick and 100% as a rule.

    Percent (not dollars) keeps a $50 budget readable next to a $100,000 one; tooltips carry the money.
    """
    data = frame[["name", "amount", "spent", "forecast", "status", "percent"]].copy()
    data["forecast_percent"] = (data["forecast"] / data["amount"].where(data["amount"] > 0)).fillna(0) * 100
    statuses = [s for s in STATUS_COLORS if s in set(data["status"])] or ["ok"]
    tooltip = [
        alt.Tooltip("name:N", title="budget"),
        alt.Tooltip("spent:Q", format=MONEY_FORMAT),
        alt.Tooltip("amount:Q", title="budget", format=MONEY_FORMAT),
        alt.Tooltip("forecast:Q", format=MONEY_FORMAT),
        alt.Tooltip("percent:Q", title="used %", format=".0f"),
    ]
    base = alt.Chart(data).encode(y=alt.Y("name:N", title=None, sort="-x", axis=alt.Axis(labelLimit=240)))
    used = base.mark_bar().encode(
        x=alt.X("percent:Q", title="% of budget used", scale=alt.Scale(domainMin=0)),
        color=alt.Color(
            "status:N", scale=alt.Scale(domain=statuses, range=[STATUS_COLORS[s] for s in statuses])
        ),
        tooltip=tooltip,
    )
    forecast = base.mark_tick(color="#333333", thickness=2, size=22).encode(
        x="forecast_percent:Q", tooltip=tooltip
    )
    full = (
        alt.Chart(pd.DataFrame({"percent": [100.0]}))
        .mark_rule(color="#d62728", strokeDash=[4, 3])
        .encode(x="percent:Q")
    )
    return alt.layer(used, forecast, full).properties(height=bar_height(len(data), per_bar=40))
