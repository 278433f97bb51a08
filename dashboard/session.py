"""Sign-in state of a dashboard session: the token, who it belongs to, and the API client.

The token lives only in the Streamlit session (server memory, never in the URL or a cookie);
the API decides what it may read. These functions take the session-state mapping as an
argument, so they are tested without Streamlit.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import httpx

from costline.dashboard.api.client import ApiClient, ApiError
from costline.schemas.settings import Settings

#: Session-state keys (named once, used by the pages and the tests).
TOKEN_KEY = "costline_token"
ME_KEY = "costline_me"
CLIENT_KEY = "costline_client"
API_URL_KEY = "costline_api_url"
#: Widget keys the tests drive.
TOKEN_INPUT_KEY = "sign_in_token"
SIGN_IN_BUTTON_KEY = "sign_in_submit"
SIGN_OUT_BUTTON_KEY = "sign_out"


@dataclass(frozen=True)
class Me:
    """The signed-in token as the API describes it (`GET /me`)."""

    name: str
    role: str
    teams: tuple[str, ...]
    sees_all_teams: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Me:
        return cls(
            name=str(body.get("name", "")),
            role=str(body.get("role", "")),
            teams=tuple(body.get("teams") or ()),
            sees_all_teams=bool(body.get("sees_all_teams")),
        )

    @property
    def may_manage(self) -> bool:
        """Admin and finance may refresh recommendations and download company-wide exports."""
        return self.role in ("admin", "finance")

    def describe(self) -> str:
        scope = "all teams" if self.sees_all_teams else ", ".join(self.teams) or "no team"
        return f"{self.name} · {self.role} · {scope}"


def api_url(settings: Settings | None = None) -> str:
    """The read API the dashboard talks to: `COSTLINE_API_URL`, else this machine's API port."""
    return (settings or Settings()).resolved_api_url()


def sign_in(
    state: MutableMapping[str, Any],
    token: str,
    base_url: str,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Me:
    """Check `token` against the API (`GET /me`) and keep it in the session; raises ApiError."""
    token = token.strip()
    if not token:
        raise ApiError(401, "enter an API token")
    client = ApiClient(base_url, token, transport=transport)
    try:
        me = Me.from_json(client.get("/me"))
    except ApiError:
        client.close()
        raise
    sign_out(state)
    state[TOKEN_KEY] = token
    state[ME_KEY] = me
    state[CLIENT_KEY] = client
    state[API_URL_KEY] = base_url
    return me


def sign_out(state: MutableMapping[str, Any]) -> None:
    """Forget the token (the sign-in field's copy too) and close its client."""
    client = state.get(CLIENT_KEY)
    if isinstance(client, ApiClient):
        client.close()
    for key in (TOKEN_KEY, ME_KEY, CLIENT_KEY, API_URL_KEY, TOKEN_INPUT_KEY):
        state.pop(key, None)


def current(state: MutableMapping[str, Any]) -> tuple[ApiClient, Me] | None:
    """The session's client and principal, or None when nobody is signed in."""
    client, me = state.get(CLIENT_KEY), state.get(ME_KEY)
    if isinstance(client, ApiClient) and isinstance(me, Me):
        return client, me
    return None


def sign_in_error(exc: ApiError, base_url: str) -> str:
    """What to tell the user when sign-in failed."""
    if exc.status == 401:
        return "That token was not accepted. Ask an admin for a token (`costline up` prints a demo one)."
    if exc.status == 0:
        return f"Cannot reach the read API at {base_url}. Is the worker (or `costline api`) running?"
    return f"Sign-in failed: {exc}"
