"""Recommendations: cheaper models, caching, batch pricing, reasoning effort, ranked by the
projected monthly saving, with the evidence behind each and an export of the routing changes."""

from __future__ import annotations

import streamlit as st

from costline.dashboard import charts, data, formatting, ui
from costline.dashboard.api.client import ApiError

client, me = ui.signed_in()
ui.header(
    "Recommendations", "Changes that would cost less for the same work, ranked by projected monthly saving."
)

status = st.segmented_control(
    "Status",
    ["recommended", "needs_eval"],
    selection_mode="multi",
    default=["recommended", "needs_eval"],
    format_func=lambda s: "recommended" if s == "recommended" else "needs an eval",
    key="recommendations_status",
)
fetched = data.fetch(client, "/recommendations")
if not fetched.ok:
    ui.show_problem(fetched, what="Recommendations")
    st.stop()
body = fetched.body
frame = data.recommendations_frame(body.get("rows"))
if status:
    frame = frame[frame["status"].isin(status)].reset_index(drop=True)

shown = [row for row in body.get("rows", []) if not status or row.get("status") in status]
cols = st.columns(3)
cols[0].metric("Projected saving per month", formatting.money(data.total_money(shown, "monthly_saving")))
cols[1].metric("Recommendations", formatting.count(len(frame)))
cols[2].metric("Computed", formatting.timestamp(body.get("computed_at")).removesuffix(" UTC"), help="UTC")

if me.may_manage and st.button("Recompute now", key="recommendations_refresh", icon=":material/refresh:"):
    try:
        client.post("/recommendations/refresh")
    except ApiError as exc:
        ui.show_problem(data.classify_error("/recommendations/refresh", exc), what="Refresh")
    else:
        st.rerun()

if frame.empty:
    ui.empty(
        "No recommendation yet. They are computed from the last days of usage "
        "(COSTLINE_RECOMMEND_WINDOW_DAYS) every COSTLINE_RECOMMEND_INTERVAL_S seconds."
    )
    st.stop()

ui.chart(charts.savings_bars(frame))
st.dataframe(
    frame,
    hide_index=True,
    column_order=[
        "team",
        "workload",
        "kind",
        "current",
        "proposed",
        "monthly_saving",
        "saving_pct",
        "status",
        "sample_calls",
        "window_days",
    ],
    column_config={
        "monthly_saving": ui.money_column("saving / month"),
        "saving_pct": ui.percent_column("saving"),
        "sample_calls": ui.count_column("calls seen"),
        "window_days": st.column_config.NumberColumn("days", format="%.0f"),
    },
    key="recommendations_table",
)
needs_eval = int((frame["status"] == "needs_eval").sum())
if needs_eval:
    st.caption(
        f"{needs_eval} recommendation(s) change the model: run an eval on the workload and post it "
        "(`POST /api/v1/evals`) before switching."
    )

with st.expander("Evidence: notes and the query behind each number"):
    for _, row in frame.iterrows():
        st.markdown(f"**{row['team']} / {row['workload']}: {row['kind']}** → {row['proposed']}")
        if row["notes"]:
            st.caption(row["notes"])
        sql, parameters = data.evidence_sql(row["evidence_query"])
        if sql:
            st.code(sql, language="sql")
        if parameters:
            st.code(parameters, language="json")

st.subheader("Export")
FILE_NAMES = {"litellm": "litellm_config.yaml", "yaml": "routing_rules.yaml"}
export_cols = st.columns(2)
for column, file_format in zip(export_cols, ("litellm", "yaml"), strict=True):
    with column:
        key = f"recommendations_export_{file_format}"
        if key in st.session_state:
            st.download_button(
                f"Download {FILE_NAMES[file_format]}",
                st.session_state[key],
                file_name=FILE_NAMES[file_format],
                mime="application/yaml",
                key=f"download_{key}",
                type="primary",
            )
        elif st.button(
            "Prepare LiteLLM config" if file_format == "litellm" else "Prepare routing rules (YAML)",
            key=f"prepare_{key}",
        ):
            try:
                st.session_state[key] = client.get_bytes("/recommendations/export", format=file_format)
            except ApiError as exc:
                ui.show_problem(data.classify_error("/recommendations/export", exc), what="Export")
            else:
                st.rerun()
