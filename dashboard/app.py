"""The dashboard's entry point (`costline dashboard` runs `streamlit run` on this file).

It only signs in and builds the navigation; every page reads through the read API with the
session's token, so a team lead sees only their team's numbers (the API enforces it).
"""

from __future__ import annotations

import streamlit as st

from costline.dashboard import session
from costline.dashboard.api.client import ApiError

st.set_page_config(page_title="costline", page_icon=":material/payments:", layout="wide")


def sign_in_page() -> None:
    """The token form; on success the session keeps the token and the pages appear."""
    st.title("costline")
    st.caption("LLM spend, chargeback, waste and savings. Sign in with your API token.")
    base_url = session.api_url()
    with st.form("sign_in"):
        token = st.text_input("API token", type="password", key=session.TOKEN_INPUT_KEY, placeholder="cl_…")
        submitted = st.form_submit_button("Sign in", type="primary", key=session.SIGN_IN_BUTTON_KEY)
    if submitted:
        try:
            session.sign_in(st.session_state, token, base_url)
        except ApiError as exc:
            st.error(session.sign_in_error(exc, base_url))
        else:
            st.rerun()
    st.caption(f"Read API: {base_url}")


PAGES = [
    st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    st.Page("pages/chargeback.py", title="Chargeback", icon=":material/receipt_long:"),
    st.Page("pages/team.py", title="Team", icon=":material/groups:"),
    st.Page("pages/anomalies.py", title="Anomalies", icon=":material/warning:"),
    st.Page("pages/recommendations.py", title="Recommendations", icon=":material/lightbulb:"),
    st.Page("pages/budgets.py", title="Budgets and alerts", icon=":material/savings:"),
]

signed = session.current(st.session_state)
if signed is None:
    st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/key:")], position="hidden").run()
else:
    _, me = signed
    with st.sidebar:
        st.markdown(
            f"**{me.name}**  \n{me.role} · {'all teams' if me.sees_all_teams else ', '.join(me.teams)}"
        )
        if st.button("Sign out", key=session.SIGN_OUT_BUTTON_KEY):
            session.sign_out(st.session_state)
            st.rerun()
    st.navigation(PAGES).run()
