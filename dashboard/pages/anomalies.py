"""Anomalies: overthinking, cache misses, spend spikes, context growth (and agent loops),
each with the dollars it wasted, newest detections first within the biggest waste."""

from __future__ import annotations

import json

import streamlit as st

from costline.dashboard import charts, data, formatting, ui

client, me = ui.signed_in()
ui.header("Anomalies", "Usage patterns that cost money for nothing, with the dollars they wasted.")

controls = st.columns([3, 2])
with controls[0]:
    params, period = ui.range_picker("anomalies_range")
kind = controls[1].selectbox(
    "Kind",
    [None, *data.ANOMALY_KINDS],
    format_func=lambda k: "All kinds" if k is None else data.ANOMALY_KINDS[k],
    key="anomalies_kind",
    label_visibility="collapsed",
)

fetched = data.fetch(client, "/anomalies", kind=kind, limit=500, **params)
if not fetched.ok:
    ui.show_problem(fetched, what="Anomalies")
    st.stop()
totals = data.anomaly_totals_frame(fetched.body.get("totals"))
rows = data.anomalies_frame(fetched.body.get("rows"))

wasted = data.total_money(fetched.body.get("totals"), "wasted_cost")
cols = st.columns(len(data.ANOMALY_KINDS) + 1)
cols[0].metric("Wasted in total", formatting.money(wasted))
for column, (_, total) in zip(cols[1:], totals.head(len(data.ANOMALY_KINDS)).iterrows(), strict=True):
    column.metric(
        total["label"],
        formatting.money(total["wasted_exact"]),
        delta=f"{total['anomalies']} found",
        delta_color="off",
        delta_arrow="off",
    )

if rows.empty:
    ui.empty(
        f"No anomaly detected for {period.lower()}. The detectors watch priced usage as it streams in; "
        "findings appear here with the dollars they wasted."
    )
    st.stop()

ui.chart(charts.wasted_by_kind(totals[totals["anomalies"] > 0]))
rows["kind_label"] = rows["kind"].map(lambda k: data.ANOMALY_KINDS.get(k, k))
st.dataframe(
    rows,
    hide_index=True,
    column_order=[
        "kind_label",
        "severity",
        "state",
        "team",
        "workload",
        "model",
        "calls",
        "wasted_cost",
        "observed_cost",
        "cause",
        "window_start",
        "window_end",
    ],
    column_config={
        "kind_label": "kind",
        "calls": ui.count_column("calls"),
        "wasted_cost": ui.money_column("wasted", precise=True),
        "observed_cost": ui.money_column("observed", precise=True),
        "window_start": ui.time_column("from"),
        "window_end": ui.time_column("to"),
    },
    key="anomalies_table",
)

st.subheader("Evidence")
by_id = {row["anomaly_id"]: row for row in fetched.body.get("rows", [])}
chosen = st.selectbox(
    "Anomaly",
    list(rows["anomaly_id"]),
    format_func=lambda a: (
        f"{data.ANOMALY_KINDS.get(by_id[a].get('kind'), by_id[a].get('kind'))} · {by_id[a].get('team')}/"
        f"{by_id[a].get('workload')} · {formatting.money(by_id[a].get('wasted_cost'))} wasted"
    ),
    key="anomalies_evidence",
)
anomaly = by_id[chosen]
st.markdown(f"**Cause:** {anomaly.get('cause') or formatting.MISSING}")
if anomaly.get("trace_id") or anomaly.get("session_id"):
    st.markdown(f"trace `{anomaly.get('trace_id') or '—'}` · session `{anomaly.get('session_id') or '—'}`")
evidence = anomaly.get("evidence")
st.json(json.loads(evidence) if isinstance(evidence, str) and evidence.startswith("{") else evidence or {})
if anomaly.get("sample_event_ids"):
    st.caption("Sample events: " + ", ".join(f"`{e}`" for e in anomaly["sample_event_ids"][:10]))
