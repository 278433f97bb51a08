"""Chargeback: what each team or cost center is billed for a month, with the allocation method,
and downloads of the table (CSV) and of the FOCUS export (CSV or Parquet)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from costline.dashboard import charts, data, formatting, ui
from costline.dashboard.api.client import ApiError

client, me = ui.signed_in()
ui.header("Chargeback", "Monthly cost per team or cost center, shared costs allocated, ready for finance.")

periods = data.fetch(client, "/periods")
closed = {row["period"]: row for row in (periods.body or {}).get("rows", [])} if periods.ok else {}
months = sorted(set(formatting.recent_months()) | set(closed), reverse=True)

cols = st.columns([2, 2, 3])
period = cols[0].selectbox(
    "Period",
    months,
    format_func=lambda p: formatting.month_label(p) + (" (closed)" if p in closed else ""),
    key="chargeback_period",
)
by = cols[1].radio(
    "Per",
    ["team", "cost_center"],
    format_func=lambda b: b.replace("_", " "),
    horizontal=True,
    key="chargeback_by",
)
with cols[2]:
    method = st.radio(
        "Allocation of unattributed cost",
        ["proportional", "even", "owner"],
        horizontal=True,
        key="chargeback_allocation",
        help="proportional: by each group's direct spend; even: split equally; owner: all to one group.",
    )
    owner = (
        st.text_input("Owner", key="chargeback_owner", placeholder="team or cost center")
        if method == "owner"
        else ""
    )
if method == "owner" and not owner.strip():
    st.info("Name the group that owns the unattributed cost.")
    st.stop()
allocation = f"owner:{owner.strip()}" if method == "owner" else method
query = {"period": period, "by": by, "allocation": allocation}

fetched = data.fetch(client, "/chargeback", **query)
if not fetched.ok:
    ui.show_problem(fetched, what="Chargeback")
    st.stop()
body = fetched.body
frame = data.chargeback_frame(body.get("rows"))

summary = st.columns(4)
summary[0].metric("Total billed", formatting.money(body.get("total")))
summary[1].metric(f"{by.replace('_', ' ').title()}s", formatting.count(len(frame)))
summary[2].metric(
    "Unattributed, allocated", formatting.money(data.total_money(body.get("rows"), "allocated_cost"))
)
summary[3].metric("Period", "closed" if body.get("closed") else "open")
if body.get("closed") and body.get("stored_total") not in (None, body.get("total")):
    st.warning(
        f"This period was closed at {formatting.money(body.get('stored_total'))}; "
        f"the table now adds up to {formatting.money(body.get('total'))} (see corrections)."
    )

if frame.empty:
    ui.empty(f"Nothing to charge back for {formatting.month_label(period)} yet.")
else:
    parts = pd.concat(
        [
            frame.assign(part="direct", cost=frame["direct_cost"]),
            frame.assign(part="allocated", cost=frame["allocated_cost"]),
        ]
    )
    ui.chart(
        charts.stacked_bars(
            parts,
            category="label",
            stack="part",
            value="cost",
            category_title=by.replace("_", " "),
            stack_title="cost",
        )
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_order=["label", "direct_cost", "allocated_cost", "total_cost", "events", "allocation_basis"],
        column_config={
            "label": by.replace("_", " "),
            "direct_cost": ui.money_column("direct"),
            "allocated_cost": ui.money_column("allocated"),
            "total_cost": ui.money_column("total"),
            "events": ui.count_column("calls"),
            "allocation_basis": "allocation basis",
        },
        key="chargeback_table",
    )

corrections = body.get("corrections") or []
if corrections:
    st.subheader("Corrections to closed periods")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "period": c.get("period"),
                    "key": c.get("key"),
                    "amount": data.usd(c.get("amount")),
                    "reason": c.get("reason"),
                }
                for c in corrections
            ]
        ),
        hide_index=True,
        column_config={"amount": ui.money_column("amount")},
    )

st.subheader("Downloads")
stem = f"costline-chargeback-{period}-{by}"
down = st.columns(3)
down[0].download_button(
    "Chargeback CSV",
    data.chargeback_csv(body),
    file_name=f"{stem}.csv",
    mime="text/csv",
    key="download_chargeback_csv",
    icon=":material/download:",
)
for column, file_format, mime in (
    (down[1], "csv", "text/csv"),
    (down[2], "parquet", "application/octet-stream"),
):
    key = f"focus_{file_format}"
    with column:
        prepared = st.session_state.get(key)
        if prepared is not None and prepared[0] == query:
            st.download_button(
                f"FOCUS {file_format.upper()}",
                prepared[1],
                file_name=f"costline-focus-{period}.{file_format}",
                mime=mime,
                key=f"download_focus_{file_format}",
                icon=":material/download:",
                type="primary",
            )
        elif st.button(f"Prepare FOCUS {file_format.upper()}", key=f"prepare_focus_{file_format}"):
            try:
                st.session_state[key] = (query, client.get_bytes("/focus", format=file_format, **query))
            except ApiError as exc:
                ui.show_problem(data.classify_error("/focus", exc), what="FOCUS export")
            else:
                st.rerun()
st.caption(
    "FOCUS: the FinOps Open Cost and Usage Specification, for loading into cost tools. Amounts are exact."
)
