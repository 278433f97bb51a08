"""Streamlit pieces every page shares: the signed-in check, messages, period pickers, columns.

Pages stay thin: fetch through `data.fetch`, turn answers into frames with `data`, draw with
`charts`, and use these helpers for the common widgets and messages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from costline.dashboard import data, session
from costline.dashboard.api.client import ApiClient

#: Period presets of the pages that read a time range; `None` = the API's default, month to date.
RANGES: dict[str, int | None] = {
    "Month to date": None,
    "Last 7 days": 7,
    "Last 30 days": 30,
    "Last 90 days": 90,
}


def signed_in() -> tuple[ApiClient, session.Me]:
    """The session's client and principal; stops the page when nobody is signed in."""
    found = session.current(st.session_state)
    if found is None:
        st.warning("Sign in with an API token first.")
        st.stop()
    return found  # type: ignore[return-value]


def header(title: str, caption: str) -> None:
    """Page title with a one-line explanation."""
    st.title(title)
    st.caption(caption)


def show_problem(fetched: data.Fetched, *, what: str = "") -> None:
    """Say why a section has no data: not deployed, not allowed, or an error (never fake data)."""
    prefix = f"{what}: " if what else ""
    if fetched.kind == "unavailable":
        st.info(prefix + fetched.message, icon=":material/extension:")
    elif fetched.kind == "forbidden":
        st.warning(prefix + fetched.message, icon=":material/lock:")
    elif fetched.kind == "unauthorized":
        session.sign_out(st.session_state)
        st.error(prefix + fetched.message, icon=":material/key:")
    else:
        st.error(prefix + fetched.message, icon=":material/error:")


def empty(message: str) -> None:
    """An empty-but-working section."""
    st.info(message, icon=":material/hourglass_empty:")


def range_picker(key: str) -> tuple[dict[str, str], str]:
    """A period preset; returns the `since` parameter for the API (empty for month to date) and its label."""
    choice = st.segmented_control(
        "Period", list(RANGES), default="Month to date", key=key, label_visibility="collapsed"
    )
    choice = choice or "Month to date"
    days = RANGES[choice]
    if days is None:
        return {}, choice
    since = (datetime.now(UTC) - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return {"since": since.isoformat()}, choice


def team_options(client: ApiClient, me: session.Me, params: dict[str, Any] | None = None) -> list[str]:
    """Teams the signed-in token may look at: its own, or (admin/finance) every team with spend."""
    if not me.sees_all_teams:
        return sorted(me.teams)
    fetched = data.fetch(client, "/spend", group_by="team", **(params or {}))
    if not fetched.ok:
        return []
    return [row["key"] for row in fetched.body.get("rows", []) if row.get("key")]


def money_column(label: str, *, precise: bool = False) -> Any:
    """A table column shown as dollars (display only; downloads carry the exact strings)."""
    return st.column_config.NumberColumn(label, format="$%.4f" if precise else "dollar")


def percent_column(label: str) -> Any:
    """A 0..1 ratio shown as percent."""
    return st.column_config.NumberColumn(label, format="percent")


def count_column(label: str) -> Any:
    return st.column_config.NumberColumn(label, format="localized")


def time_column(label: str) -> Any:
    return st.column_config.DatetimeColumn(label, format="YYYY-MM-DD HH:mm", timezone="UTC")


def chart(spec: Any) -> None:
    """An Altair chart across the page width, with Streamlit's theme."""
    st.altair_chart(spec, width="stretch")
