"""Team: one team's workloads, model mix, cache hit rate, reasoning share and budget burn-down."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from costline.dashboard import charts, data, formatting, ui

client, me = ui.signed_in()
ui.header("Team", "Where one team's spend goes, how well it caches, and how its budgets burn.")

controls = st.columns([2, 3])
with controls[1]:
    params, period = ui.range_picker("team_range")
teams = ui.team_options(client, me, params)
if not teams:
    ui.empty("No team has recorded usage in this period yet.")
    st.stop()
team = controls[0].selectbox("Team", teams, key="team_select")

fetched = data.fetch(client, f"/teams/{team}", **params)
if not fetched.ok:
    ui.show_problem(fetched, what=f"Team {team}")
    st.stop()
body = fetched.body
summary = body.get("summary") or {}
stats = data.fetch(client, "/usage-stats", group_by="team", team=team, **params)
team_stats = data.usage_stats_frame(stats.body.get("rows")) if stats.ok else data.usage_stats_frame([])

cols = st.columns(5)
cols[0].metric(f"Spend, {period.lower()}", formatting.money(summary.get("effective_cost")))
cols[1].metric(
    "Forecast, end of month", formatting.money((summary.get("forecast") or {}).get("forecast_cost"))
)
cols[2].metric("LLM calls", formatting.count(summary.get("events")))
cols[3].metric(
    "Cache hit rate",
    formatting.percent(team_stats["cache_hit_rate"].iloc[0] if not team_stats.empty else None),
    help="Share of cacheable input read from the provider's prompt cache (— when no call reported caching).",
)
cols[4].metric(
    "Reasoning share",
    formatting.percent(team_stats["reasoning_share"].iloc[0] if not team_stats.empty else None),
    help="Share of output tokens spent on hidden reasoning.",
)
if int(summary.get("unpriced_events") or 0):
    st.warning(
        f"{formatting.count(summary.get('unpriced_events'))} of this team's calls are unpriced: "
        "their cost is not in these totals.",
        icon=":material/warning:",
    )
if not summary.get("events"):
    ui.empty(f"No usage recorded for {team} in {period.lower()} yet.")

workloads = data.spend_frame(body.get("workloads"))
models = data.spend_frame(body.get("models"))
usage = data.usage_stats_frame(body.get("usage_stats"))

left, right = st.columns(2)
with left:
    st.subheader("Workloads")
    if workloads.empty:
        ui.empty("No workload spend yet.")
    else:
        ui.chart(charts.spend_bars(data.top(workloads, 12), dimension="workload"))
with right:
    st.subheader("Model mix")
    if models.empty:
        ui.empty("No model spend yet.")
    else:
        ui.chart(charts.spend_bars(data.top(models, 12), dimension="model"))

st.subheader("Daily spend")
trend = data.fetch(client, "/timeseries", granularity="day", group_by="provider", team=team, **params)
if not trend.ok:
    ui.show_problem(trend, what="Daily trend")
else:
    points = data.timeseries_frame(trend.body.get("points"))
    if points.empty:
        ui.empty("No daily points yet.")
    else:
        ui.chart(charts.daily_trend(points, color_by="provider", height=220))

st.subheader("Caching and reasoning per workload")
if usage.empty:
    ui.empty("No per-workload usage statistics yet.")
else:
    rates = st.columns(2)
    with rates[0]:
        if usage["cache_hit_rate"].notna().any():
            ui.chart(charts.rate_bars(usage, field="cache_hit_rate", title="cache hit rate"))
        else:
            ui.empty("No call of this team reported prompt-cache usage.")
    with rates[1]:
        if usage["reasoning_share"].notna().any():
            ui.chart(charts.rate_bars(usage, field="reasoning_share", title="reasoning share"))
        else:
            ui.empty("No reasoning tokens reported.")
    st.dataframe(
        usage,
        hide_index=True,
        column_order=[
            "label",
            "effective_cost",
            "events",
            "cache_hit_rate",
            "reasoning_share",
            "output_reasoning",
        ],
        column_config={
            "label": "workload",
            "effective_cost": ui.money_column("effective cost"),
            "events": ui.count_column("calls"),
            "cache_hit_rate": ui.percent_column("cache hit rate"),
            "reasoning_share": ui.percent_column("reasoning share"),
            "output_reasoning": ui.count_column("reasoning tokens"),
        },
        key="team_usage",
    )

st.subheader("Budget burn-down")
budgets = data.fetch(client, "/budgets", team=team)
if not budgets.ok:
    ui.show_problem(budgets, what="Budgets")
else:
    rows = [row for row in budgets.body.get("rows", []) if (row.get("scope") or {}).get("team") == team]
    if not rows:
        ui.empty(f"No budget is set for {team}. Budgets come from the budgets file (COSTLINE_BUDGETS_PATH).")
    for budget in rows:
        scope = budget.get("scope") or {}
        dimension = "workload" if scope.get("workload") else "project" if scope.get("project") else None
        start, end = data.parse_time(budget.get("period_start")), data.parse_time(budget.get("period_end"))
        if start is None or end is None:
            continue
        until = min(end, pd.Timestamp.now(tz="UTC"))
        series = (
            data.fetch(
                client,
                "/timeseries",
                granularity="day",
                group_by=dimension,
                team=team,
                since=start.isoformat(),
                until=until.isoformat(),
            )
            if until > start
            else data.Fetched("ok", {"points": []})
        )
        points = (series.body or {}).get("points", []) if series.ok else []
        if dimension:
            points = [p for p in points if p.get("key") == scope.get(dimension)]
        st.markdown(
            f"**{budget.get('name')}** · {formatting.money(budget.get('spent'))} of "
            f"{formatting.money(budget.get('amount'))} ({formatting.whole_percent(budget.get('percent'))}) · "
            f"forecast {formatting.money(budget.get('forecast'))} · status `{budget.get('status')}`"
        )
        if not series.ok:
            ui.show_problem(series, what="Burn-down")
        else:
            frame = data.burn_down_frame(budget, points)
            if not frame.empty:
                ui.chart(charts.burn_down(frame))
