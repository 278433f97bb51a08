"""API answers → pandas frames for tables and charts, and API errors → messages a page can show.

Every function here is pure and empty-safe: no rows gives an empty frame with the right columns,
so a page can always render (and say "no data yet"). Money arrives as exact decimal strings; the
frames carry it as floats *for display only* (Vega-Lite and Streamlit tables plot numbers); the
exact strings stay in the API answer, in the chargeback CSV and in the FOCUS export.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pandas as pd

from costline.dashboard.api.client import ApiClient, ApiError
from costline.dashboard.formatting import label, to_decimal

FetchKind = Literal["ok", "unavailable", "forbidden", "unauthorized", "unreachable", "error"]


@dataclass(frozen=True)
class Fetched:
    """One API answer: the JSON body, or why there is none (`kind` and a message for the page)."""

    kind: FetchKind
    body: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def fetch(client: ApiClient, path: str, **params: Any) -> Fetched:
    """GET `path` and classify failures, so pages can show "not deployed" apart from real errors.

    FastAPI answers an unknown route with 404 `Not Found`: that feature is not deployed on this
    API. Any other 404 detail is the endpoint's own answer and is shown as an error.
    """
    try:
        return Fetched("ok", client.get(path, **params))
    except ApiError as exc:
        return classify_error(path, exc)


def classify_error(path: str, exc: ApiError) -> Fetched:
    """The `Fetched` for a failed request."""
    if exc.status == 404 and exc.detail == "Not Found":
        return Fetched(
            "unavailable",
            message=f"Not available on this API yet: `GET /api/v1{path.split('?')[0]}` is not deployed.",
        )
    if exc.status == 403:
        return Fetched("forbidden", message=f"Your token may not read this: {exc.detail}")
    if exc.status == 401:
        return Fetched("unauthorized", message=f"The API refused the token ({exc.detail}); sign in again.")
    if exc.status == 0:
        return Fetched("unreachable", message=exc.detail)
    return Fetched("error", message=f"The API answered {exc.status}: {exc.detail}")


def usd(value: str | Decimal | None) -> float:
    """A decimal money string as a float for plotting; unknown is 0.0 (display only)."""
    amount = to_decimal(value)
    return float(amount) if amount is not None else 0.0


def ratio(value: str | Decimal | None) -> float | None:
    """A decimal ratio string (0..1) as a float, None when the API had nothing to compute it from."""
    number = to_decimal(value)
    return float(number) if number is not None else None


def parse_time(value: str | None) -> pd.Timestamp | None:
    """An ISO 8601 time from the API as a UTC timestamp."""
    if not value:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records, columns=list(columns))


SPEND_COLUMNS = (
    "key",
    "label",
    "events",
    "unpriced_events",
    "partial_events",
    "list_cost",
    "effective_cost",
    "input_tokens",
    "output_tokens",
)

INPUT_BUCKETS = (
    "input_uncached",
    "cache_read",
    "cache_write_5m",
    "cache_write_30m",
    "cache_write_1h",
    "cache_write_12h",
)
OUTPUT_BUCKETS = ("output_visible", "output_reasoning")


def _input_tokens(tokens: Mapping[str, int] | None) -> int:
    return sum(int((tokens or {}).get(bucket, 0)) for bucket in INPUT_BUCKETS)


def _output_tokens(tokens: Mapping[str, int] | None) -> int:
    return sum(int((tokens or {}).get(bucket, 0)) for bucket in OUTPUT_BUCKETS)


def spend_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/spend` rows (also `/teams/{team}` workloads and models), most expensive first."""
    records = [
        {
            "key": row.get("key", ""),
            "label": label(row.get("key")),
            "events": int(row.get("events", 0)),
            "unpriced_events": int(row.get("unpriced_events", 0)),
            "partial_events": int(row.get("partial_events", 0)),
            "list_cost": usd(row.get("list_cost")),
            "effective_cost": usd(row.get("effective_cost")),
            "input_tokens": _input_tokens(row.get("tokens")),
            "output_tokens": _output_tokens(row.get("tokens")),
        }
        for row in rows or ()
    ]
    frame = _frame(records, SPEND_COLUMNS)
    return frame.sort_values("effective_cost", ascending=False, kind="stable").reset_index(drop=True)


def top(frame: pd.DataFrame, n: int, *, by: str = "effective_cost", other: str = "(other)") -> pd.DataFrame:
    """The `n` largest rows by `by`; the rest folded into one `other` row so totals still add up."""
    if len(frame) <= n:
        return frame
    ordered = frame.sort_values(by, ascending=False, kind="stable")
    head, tail = ordered.iloc[:n].copy(), ordered.iloc[n:]
    rest: dict[str, Any] = {column: tail[column].sum() for column in frame.select_dtypes("number").columns}
    rest.update({"key": other, "label": other})
    return pd.concat([head, pd.DataFrame([rest])], ignore_index=True)


def unpriced(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a spend frame that hold unpriced or partially priced events."""
    if frame.empty:
        return frame
    mask = (frame["unpriced_events"] > 0) | (frame["partial_events"] > 0)
    return frame[mask].sort_values("unpriced_events", ascending=False).reset_index(drop=True)


TIMESERIES_COLUMNS = ("bucket", "key", "label", "events", "unpriced_events", "list_cost", "effective_cost")


def timeseries_frame(points: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/timeseries` points with `bucket` as UTC timestamps, oldest first."""
    records = [
        {
            "bucket": parse_time(point.get("bucket")),
            "key": point.get("key") or "",
            "label": label(point.get("key"), none="(none)"),
            "events": int(point.get("events", 0)),
            "unpriced_events": int(point.get("unpriced_events", 0)),
            "list_cost": usd(point.get("list_cost")),
            "effective_cost": usd(point.get("effective_cost")),
        }
        for point in points or ()
    ]
    frame = _frame(records, TIMESERIES_COLUMNS)
    if frame.empty:
        frame["bucket"] = pd.Series(dtype="datetime64[ns, UTC]")
        return frame
    frame["bucket"] = pd.to_datetime(frame["bucket"], utc=True)
    return frame.sort_values(["bucket", "key"], kind="stable").reset_index(drop=True)


USAGE_COLUMNS = (
    "key",
    "label",
    "events",
    "cache_hit_rate",
    "cache_reported_events",
    "reasoning_share",
    "effective_cost",
    "output_reasoning",
    "output_visible",
)


def usage_stats_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/usage-stats` rows; a rate the API could not compute (null) stays missing, never 0."""
    records = [
        {
            "key": row.get("key", ""),
            "label": label(row.get("key")),
            "events": int(row.get("events", 0)),
            "cache_hit_rate": ratio(row.get("cache_hit_rate")),
            "cache_reported_events": int(row.get("cache_reported_events", 0)),
            "reasoning_share": ratio(row.get("reasoning_share")),
            "effective_cost": usd(row.get("effective_cost")),
            "output_reasoning": int((row.get("tokens") or {}).get("output_reasoning", 0)),
            "output_visible": int((row.get("tokens") or {}).get("output_visible", 0)),
        }
        for row in rows or ()
    ]
    frame = _frame(records, USAGE_COLUMNS)
    for column in ("cache_hit_rate", "reasoning_share"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame.sort_values("effective_cost", ascending=False, kind="stable").reset_index(drop=True)


TOKEN_BUCKET_LABELS: dict[str, str] = {
    "input_uncached": "input (uncached)",
    "cache_read": "cache read",
    "cache_write_5m": "cache write 5m",
    "cache_write_30m": "cache write 30m",
    "cache_write_1h": "cache write 1h",
    "cache_write_12h": "cache write 12h",
    "output_visible": "output",
    "output_reasoning": "reasoning",
}


def tokens_frame(tokens: Mapping[str, int] | None) -> pd.DataFrame:
    """The token buckets of a summary as rows `bucket, label, tokens` (empty buckets left out)."""
    records = [
        {"bucket": bucket, "label": TOKEN_BUCKET_LABELS.get(bucket, bucket), "tokens": int(value)}
        for bucket, value in (tokens or {}).items()
        if int(value)
    ]
    return _frame(records, ("bucket", "label", "tokens"))


ANOMALY_COLUMNS = (
    "anomaly_id",
    "kind",
    "cause",
    "severity",
    "state",
    "team",
    "workload",
    "provider",
    "model",
    "calls",
    "wasted_cost",
    "observed_cost",
    "window_start",
    "window_end",
    "detected_at",
    "trace_id",
    "session_id",
)


def anomalies_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/anomalies` rows, most wasted dollars first."""
    records = []
    for row in rows or ():
        record = {column: row.get(column, "") for column in ANOMALY_COLUMNS}
        record.update(
            calls=int(row.get("calls", 0)),
            wasted_cost=usd(row.get("wasted_cost")),
            observed_cost=usd(row.get("observed_cost")),
            window_start=parse_time(row.get("window_start")),
            window_end=parse_time(row.get("window_end")),
            detected_at=parse_time(row.get("detected_at")),
        )
        records.append(record)
    frame = _frame(records, ANOMALY_COLUMNS)
    return frame.sort_values("wasted_cost", ascending=False, kind="stable").reset_index(drop=True)


#: Anomaly kinds in the order the page lists them, with their display names.
ANOMALY_KINDS: dict[str, str] = {
    "overthinking": "Overthinking",
    "cache_miss": "Cache misses",
    "spend_spike": "Spend spikes",
    "context_growth": "Context growth",
    "agent_loop": "Agent loops",
}


def anomaly_totals_frame(totals: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/anomalies` totals per kind, every known kind present (zero when nothing was found)."""
    found = {row.get("kind", ""): row for row in totals or ()}
    kinds = list(ANOMALY_KINDS) + sorted(kind for kind in found if kind not in ANOMALY_KINDS)
    records = [
        {
            "kind": kind,
            "label": ANOMALY_KINDS.get(kind, kind),
            "anomalies": int(found.get(kind, {}).get("anomalies", 0)),
            "calls": int(found.get(kind, {}).get("calls", 0)),
            "wasted_cost": usd(found.get(kind, {}).get("wasted_cost")),
            "wasted_exact": str(found.get(kind, {}).get("wasted_cost", "0")),
        }
        for kind in kinds
    ]
    return _frame(records, ("kind", "label", "anomalies", "calls", "wasted_cost", "wasted_exact"))


BUDGET_COLUMNS = (
    "name",
    "team",
    "workload",
    "project",
    "period",
    "period_start",
    "period_end",
    "amount",
    "spent",
    "percent",
    "forecast",
    "status",
    "thresholds",
    "crossed",
)


def budgets_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/budgets` rows, the most used first."""
    records = []
    for row in rows or ():
        scope = row.get("scope") or {}
        records.append(
            {
                "name": row.get("name", ""),
                "team": scope.get("team") or "",
                "workload": scope.get("workload") or "",
                "project": scope.get("project") or "",
                "period": row.get("period", ""),
                "period_start": parse_time(row.get("period_start")),
                "period_end": parse_time(row.get("period_end")),
                "amount": usd(row.get("amount")),
                "spent": usd(row.get("spent")),
                "percent": float(to_decimal(row.get("percent")) or 0),
                "forecast": usd(row.get("forecast")),
                "status": row.get("status", ""),
                "thresholds": ", ".join(f"{t}%" for t in row.get("thresholds") or ()),
                "crossed": ", ".join(f"{t}%" for t in row.get("crossed") or ()),
            }
        )
    frame = _frame(records, BUDGET_COLUMNS)
    return frame.sort_values("percent", ascending=False, kind="stable").reset_index(drop=True)


ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "subject",
    "state",
    "team",
    "workload",
    "budget",
    "threshold",
    "spent",
    "amount",
    "forecast",
    "fired_at",
    "resolved_at",
    "delivered",
)


def alerts_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/alerts` rows, newest first, with a one-line delivery outcome per route."""
    records = []
    for row in rows or ():
        record = {column: row.get(column) for column in ALERT_COLUMNS}
        record.update(
            spent=usd(row.get("spent")) if row.get("spent") is not None else None,
            amount=usd(row.get("amount")) if row.get("amount") is not None else None,
            forecast=usd(row.get("forecast")) if row.get("forecast") is not None else None,
            fired_at=parse_time(row.get("fired_at")),
            resolved_at=parse_time(row.get("resolved_at")),
            delivered=delivery_summary(row.get("deliveries") or ()),
        )
        records.append(record)
    frame = _frame(records, ALERT_COLUMNS)
    if frame.empty:
        return frame
    return frame.sort_values("fired_at", ascending=False, kind="stable", na_position="last").reset_index(
        drop=True
    )


def delivery_summary(deliveries: Iterable[Mapping[str, Any]]) -> str:
    """`slack: sent, webhook: failed (3 attempts)`: the latest outcome per route."""
    latest: dict[str, tuple[str, int]] = {}
    for delivery in deliveries:
        route = str(delivery.get("route", "?"))
        attempts = max(int(delivery.get("attempt") or 1), latest.get(route, ("", 0))[1])
        latest[route] = (str(delivery.get("outcome", "?")), attempts)
    parts = []
    for route, (outcome, attempts) in latest.items():
        suffix = f" ({attempts} attempts)" if attempts > 1 else ""
        parts.append(f"{route}: {outcome}{suffix}")
    return ", ".join(parts) if parts else "not delivered"


RECOMMENDATION_COLUMNS = (
    "id",
    "kind",
    "team",
    "workload",
    "current",
    "proposed",
    "monthly_saving",
    "saving_pct",
    "status",
    "sample_calls",
    "window_days",
    "eval_evidence",
    "notes",
    "evidence_query",
)


def describe(value: Any) -> str:
    """A recommendation's `current`/`proposed` (a string or a small mapping) as one line."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {describe(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(describe(item) for item in value)
    return str(value)


#: Fields of a recommendation's `current`/`proposed` that say what changes (costs are columns already).
SETUP_FIELDS = ("reasoning_effort", "prompt_caching", "ttl", "batch", "service_tier", "cascade", "fallback")
#: Fields left out of the one-line setup (shown elsewhere, or internal).
HIDDEN_FIELDS = frozenset({"monthly_cost", "latency_p95_ms", "ratecard_entry", "provider", "model"})


def setup(value: Any) -> str:
    """A recommendation's `current` or `proposed` as one short line: `openai/gpt-5-mini, batch: on`."""
    if not isinstance(value, Mapping):
        return describe(value)
    parts = []
    if value.get("model"):
        parts.append(
            f"{value['provider']}/{value['model']}" if value.get("provider") else str(value["model"])
        )
    extra = [key for key in SETUP_FIELDS if value.get(key) not in (None, "")]
    extra += [
        key
        for key in value
        if key not in HIDDEN_FIELDS and key not in SETUP_FIELDS and value[key] is not None
    ]
    parts.extend(f"{key.replace('_', ' ')}: {describe(value[key])}" for key in extra)
    return ", ".join(parts)


def evidence_sql(value: Any) -> tuple[str, str]:
    """The evidence query of a recommendation as (SQL, parameters as JSON), whatever its shape."""
    if isinstance(value, Mapping):
        parameters = value.get("parameters")
        return str(value.get("sql", "")), json.dumps(parameters, default=str, indent=1) if parameters else ""
    return (str(value) if value else ""), ""


def recommendations_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/recommendations` rows, largest monthly saving first."""
    records = []
    for row in rows or ():
        confidence = row.get("confidence") or {}
        records.append(
            {
                "id": row.get("id", ""),
                "kind": row.get("kind", ""),
                "team": row.get("team", ""),
                "workload": row.get("workload", ""),
                "current": setup(row.get("current")),
                "proposed": setup(row.get("proposed")),
                "monthly_saving": usd(row.get("monthly_saving")),
                "saving_pct": ratio_from_percent(row.get("saving_pct")),
                "status": row.get("status", ""),
                "sample_calls": confidence.get("sample_calls"),
                "window_days": float(to_decimal(confidence.get("window_days")) or 0) or None,
                "eval_evidence": describe(confidence.get("eval_evidence")),
                "notes": "; ".join(str(note) for note in confidence.get("notes") or ()),
                "evidence_query": row.get("evidence_query") or "",
            }
        )
    frame = _frame(records, RECOMMENDATION_COLUMNS)
    return frame.sort_values("monthly_saving", ascending=False, kind="stable").reset_index(drop=True)


def ratio_from_percent(value: str | Decimal | None) -> float | None:
    """`saving_pct` as a 0..1 ratio: the API may send a percent (`42.5`) or a fraction (`0.425`)."""
    number = to_decimal(value)
    if number is None:
        return None
    return float(number / 100) if abs(number) > 1 else float(number)


def total_money(rows: Iterable[Mapping[str, Any]] | None, field: str) -> Decimal:
    """Exact sum of a money field over API rows."""
    return sum((to_decimal(row.get(field)) or Decimal(0) for row in rows or ()), Decimal(0))


CHARGEBACK_COLUMNS = (
    "key",
    "label",
    "direct_cost",
    "allocated_cost",
    "total_cost",
    "events",
    "allocation_basis",
)


def chargeback_frame(rows: Iterable[Mapping[str, Any]] | None) -> pd.DataFrame:
    """`/chargeback` rows, largest total first."""
    records = [
        {
            "key": row.get("key", ""),
            "label": label(row.get("key")),
            "direct_cost": usd(row.get("direct_cost")),
            "allocated_cost": usd(row.get("allocated_cost")),
            "total_cost": usd(row.get("total_cost")),
            "events": int(row.get("events", 0)),
            "allocation_basis": describe(row.get("allocation_basis")),
        }
        for row in rows or ()
    ]
    frame = _frame(records, CHARGEBACK_COLUMNS)
    return frame.sort_values("total_cost", ascending=False, kind="stable").reset_index(drop=True)


def chargeback_csv(body: Mapping[str, Any]) -> bytes:
    """The chargeback table as CSV with the API's exact decimal strings (no float on the way)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    by = body.get("by", "key")
    writer.writerow(
        ["period", by, "direct_cost_usd", "allocated_cost_usd", "total_cost_usd", "events", "allocation"]
    )
    for row in body.get("rows") or ():
        writer.writerow(
            [
                body.get("period", ""),
                row.get("key", ""),
                row.get("direct_cost", "0"),
                row.get("allocated_cost", "0"),
                row.get("total_cost", "0"),
                row.get("events", 0),
                body.get("allocation", ""),
            ]
        )
    return out.getvalue().encode()


BURN_DOWN_COLUMNS = ("day", "series", "remaining")


def burn_down_frame(
    budget: Mapping[str, Any], points: Iterable[Mapping[str, Any]] | None, now: datetime | None = None
) -> pd.DataFrame:
    """Budget left over the period: actual (from daily spend), ideal (even burn) and forecast lines.

    `points` are `/timeseries?granularity=day` points for the budget's scope and period. The
    actual line starts at the full amount on the first day; the forecast runs from today's
    remaining amount to the amount minus the API's forecast at the end of the period.
    """
    amount = to_decimal(budget.get("amount")) or Decimal(0)
    start, end = parse_time(budget.get("period_start")), parse_time(budget.get("period_end"))
    if start is None or end is None or end <= start:
        return _frame([], BURN_DOWN_COLUMNS)
    now_stamp = pd.Timestamp(now or datetime.now(UTC)).tz_convert(UTC)
    daily: dict[pd.Timestamp, Decimal] = {}
    for point in points or ():
        bucket = parse_time(point.get("bucket"))
        if bucket is None:
            continue
        day = bucket.normalize()
        daily[day] = daily.get(day, Decimal(0)) + (to_decimal(point.get("effective_cost")) or Decimal(0))
    records: list[dict[str, Any]] = [
        {"day": start, "series": "ideal", "remaining": float(amount)},
        {"day": end, "series": "ideal", "remaining": 0.0},
    ]
    spent = Decimal(0)
    day = start.normalize()
    last = min(now_stamp, end)
    records.append({"day": start, "series": "actual", "remaining": float(amount)})
    while day <= last:
        spent += daily.get(day, Decimal(0))
        moment = min(day + timedelta(days=1), last)
        records.append({"day": moment, "series": "actual", "remaining": float(amount - spent)})
        day += timedelta(days=1)
    forecast = to_decimal(budget.get("forecast"))
    if forecast is not None and now_stamp < end:
        records.append({"day": last, "series": "forecast", "remaining": float(amount - spent)})
        records.append({"day": end, "series": "forecast", "remaining": float(amount - forecast)})
    return _frame(records, BURN_DOWN_COLUMNS)
