"""Overview: month-to-date spend and its forecast, the daily trend, top teams, models and providers.

Unpriced usage is shown, never hidden: its events are counted and listed by model, since their
cost is missing from every total until the rate card knows the model.
"""

from __future__ import annotations

import streamlit as st

from costline.dashboard import charts, data, formatting, ui

client, me = ui.signed_in()
ui.header("Overview", "What LLM usage cost, where it goes, and where the month is heading.")
params, period = ui.range_picker("overview_range")

summary = data.fetch(client, "/summary", **params)
if not summary.ok:
    ui.show_problem(summary, what="Summary")
    st.stop()
body = summary.body
forecast = body.get("forecast") or {}

cols = st.columns(4)
cols[0].metric(
    f"Spend, {period.lower()}",
    formatting.money(body.get("effective_cost")),
    help="Effective cost (after discounts and commitments) of the priced events in the period.",
)
cols[1].metric(
    "Forecast, end of month",
    formatting.money(forecast.get("forecast_cost")),
    help=f"Linear burn to the end of the month ({forecast.get('method', 'linear')}).",
)
cols[2].metric(
    "List cost",
    formatting.money(body.get("list_cost")),
    help="What the same usage costs at list prices.",
)
cols[3].metric("LLM calls", formatting.count(body.get("events")))

unpriced_events = int(body.get("unpriced_events") or 0)
partial_events = int(body.get("partial_events") or 0)
if body.get("events", 0) == 0:
    ui.empty(f"No usage recorded for {period.lower()} yet. Totals appear here as events are priced.")
    st.stop()
if unpriced_events or partial_events:
    st.warning(
        f"**{formatting.count(unpriced_events)} unpriced** and "
        f"**{formatting.count(partial_events)} partially priced** calls: their cost is missing from the "
        "totals above until the rate card knows their model. See *Unpriced usage* below.",
        icon=":material/warning:",
    )

st.subheader("Daily spend by provider")
trend = data.fetch(client, "/timeseries", granularity="day", group_by="provider", **params)
if not trend.ok:
    ui.show_problem(trend, what="Daily trend")
else:
    points = data.timeseries_frame(trend.body.get("points"))
    if points.empty:
        ui.empty("No daily points yet.")
    else:
        ui.chart(charts.daily_trend(points, color_by="provider"))

left, right = st.columns(2)
with left:
    st.subheader("Top teams")
    teams = data.fetch(client, "/spend", group_by="team", **params)
    if not teams.ok:
        ui.show_problem(teams, what="Teams")
    else:
        team_frame = data.spend_frame(teams.body.get("rows"))
        if team_frame.empty:
            ui.empty("No team spend yet.")
        else:
            ui.chart(charts.spend_bars(data.top(team_frame, 10), dimension="team"))
with right:
    st.subheader("Providers")
    providers = data.fetch(client, "/spend", group_by="provider", **params)
    if not providers.ok:
        ui.show_problem(providers, what="Providers")
    else:
        provider_frame = data.spend_frame(providers.body.get("rows"))
        if provider_frame.empty:
            ui.empty("No provider spend yet.")
        else:
            ui.chart(charts.spend_bars(provider_frame, dimension="provider", color_by_provider=True))

st.subheader("Models")
models = data.fetch(client, "/spend", group_by="model", **params)
if not models.ok:
    ui.show_problem(models, what="Models")
else:
    model_frame = data.spend_frame(models.body.get("rows"))
    if model_frame.empty:
        ui.empty("No model spend yet.")
    else:
        st.dataframe(
            model_frame,
            hide_index=True,
            column_order=[
                "label",
                "effective_cost",
                "list_cost",
                "events",
                "unpriced_events",
                "output_tokens",
            ],
            column_config={
                "label": "model",
                "effective_cost": ui.money_column("effective cost"),
                "list_cost": ui.money_column("list cost"),
                "events": ui.count_column("calls"),
                "unpriced_events": ui.count_column("unpriced calls"),
                "output_tokens": ui.count_column("output tokens"),
            },
            key="overview_models",
        )
        missing = data.unpriced(model_frame)
        st.subheader("Unpriced usage")
        if missing.empty:
            st.success("Every call in this period was priced.", icon=":material/check_circle:")
        else:
            st.caption(
                "Calls whose model (or part of whose usage) the rate card does not price. Their tokens are "
                "stored; add the model to the rate card and run `costline reprice` to cost them."
            )
            st.dataframe(
                missing,
                hide_index=True,
                column_order=[
                    "label",
                    "unpriced_events",
                    "partial_events",
                    "events",
                    "input_tokens",
                    "output_tokens",
                ],
                column_config={
                    "label": "model",
                    "unpriced_events": ui.count_column("unpriced calls"),
                    "partial_events": ui.count_column("partially priced"),
                    "events": ui.count_column("all calls"),
                    "input_tokens": ui.count_column("input tokens"),
                    "output_tokens": ui.count_column("output tokens"),
                },
                key="overview_unpriced",
            )
