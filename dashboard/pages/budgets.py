"""Budgets and alerts: each budget's spend against its amount and forecast, its burn-down, and
the alerts that fired with where they were delivered."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from costline.dashboard import charts, data, formatting, ui

client, me = ui.signed_in()
ui.header("Budgets and alerts", "Spend against each budget, where the period is heading, and what fired.")

fetched = data.fetch(client, "/budgets")
if not fetched.ok:
    ui.show_problem(fetched, what="Budgets")
    budget_rows: list[dict] = []
else:
    budget_rows = fetched.body.get("rows", [])
budgets = data.budgets_frame(budget_rows)

if fetched.ok and budgets.empty:
    ui.empty("No budget is defined. Budgets come from the YAML file named by COSTLINE_BUDGETS_PATH.")
elif not budgets.empty:
    counts = budgets["status"].value_counts()
    cols = st.columns(4)
    cols[0].metric("Budgets", formatting.count(len(budgets)))
    cols[1].metric("Exceeded", formatting.count(int(counts.get("exceeded", 0))))
    cols[2].metric("Forecast to exceed", formatting.count(int(counts.get("forecast_exceeds", 0))))
    cols[3].metric("Warning", formatting.count(int(counts.get("warning", 0))))
    ui.chart(charts.budget_bars(budgets))
    st.dataframe(
        budgets,
        hide_index=True,
        column_order=[
            "name",
            "team",
            "workload",
            "project",
            "period",
            "spent",
            "amount",
            "percent",
            "forecast",
            "status",
            "crossed",
            "thresholds",
        ],
        column_config={
            "spent": ui.money_column("spent"),
            "amount": ui.money_column("budget"),
            "forecast": ui.money_column("forecast"),
            "percent": st.column_config.ProgressColumn(
                "used", format="%.0f%%", min_value=0, max_value=max(100.0, float(budgets["percent"].max()))
            ),
            "crossed": "thresholds crossed",
        },
        key="budgets_table",
    )

    st.subheader("Burn-down")
    by_name = {row.get("name"): row for row in budget_rows}
    name = st.selectbox("Budget", list(budgets["name"]), key="budgets_burn_down")
    budget = by_name[name]
    scope = budget.get("scope") or {}
    start, end = data.parse_time(budget.get("period_start")), data.parse_time(budget.get("period_end"))
    if start is not None and end is not None:
        until = min(end, pd.Timestamp.now(tz="UTC"))
        dimension = "workload" if scope.get("workload") else "project" if scope.get("project") else None
        params = {"team": scope["team"]} if scope.get("team") else {}
        if until > start:
            series = data.fetch(
                client,
                "/timeseries",
                granularity="day",
                group_by=dimension,
                since=start.isoformat(),
                until=until.isoformat(),
                **params,
            )
        else:
            series = data.Fetched("ok", {"points": []})
        if not series.ok:
            ui.show_problem(series, what="Burn-down")
        else:
            points = series.body.get("points", [])
            if dimension:
                points = [p for p in points if p.get("key") == scope.get(dimension)]
            ui.chart(charts.burn_down(data.burn_down_frame(budget, points)))

st.subheader("Alerts")
alerts = data.fetch(client, "/alerts", since=(pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=90)).isoformat())
if not alerts.ok:
    ui.show_problem(alerts, what="Alerts")
    st.stop()
frame = data.alerts_frame(alerts.body.get("rows"))
if frame.empty:
    ui.empty("No alert fired in the last 90 days.")
    st.stop()
firing = int((frame["state"] == "firing").sum())
if firing:
    st.error(f"{firing} alert(s) firing.", icon=":material/notifications_active:")
st.dataframe(
    frame,
    hide_index=True,
    column_order=[
        "fired_at",
        "state",
        "kind",
        "subject",
        "team",
        "budget",
        "threshold",
        "spent",
        "amount",
        "forecast",
        "delivered",
        "resolved_at",
    ],
    column_config={
        "fired_at": ui.time_column("fired"),
        "resolved_at": ui.time_column("resolved"),
        "spent": ui.money_column("spent"),
        "amount": ui.money_column("budget"),
        "forecast": ui.money_column("forecast"),
        "delivered": "delivery",
    },
    key="alerts_table",
)
