"""The authorization matrix: every route of the app × each role × in and out of scope.

Routes are read from `app.routes` at test time, so routers other modules add to ROUTERS are
covered without touching this file: no token or an unknown token → 401 everywhere; admin and
finance → 2xx on every GET; a team token → 2xx on GETs open to it, 403 with another team in
the `team` parameter or path, and 403 on routes that require the admin or finance role.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from fastapi.routing import APIRoute

from costline.dashboard.api.app import API_PREFIX, ROUTERS, openapi_document
from tests.integration.test_api_data import (
    IN_SCOPE_TEAM,
    OUT_OF_SCOPE_TEAM,
    ROLE_TOKENS,
    WIDE,
    client_for,
    load_fixture,
    make_app,
)

pytestmark = pytest.mark.integration

#: In-scope values for path and required query parameters, by name.
PARAMETER_VALUES: dict[str, str] = {"team": IN_SCOPE_TEAM, "period": "2026-03", "provider": "openai"}


@dataclass(frozen=True)
class Route:
    """A route of the app: its full path, methods and FastAPI route (dependencies, parameters)."""

    path: str
    methods: frozenset[str]
    api_route: Route

    @property
    def dependant(self) -> Any:
        return self.api_route.dependant


def _routes() -> list[Route]:
    """Every API route of every router in ROUTERS (this FastAPI version includes routers lazily)."""
    return [
        Route(API_PREFIX + route.path, frozenset(route.methods), route)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    ]


def _calls(route: Route) -> set[Callable[..., Any]]:
    """Every dependency function of a route, transitively."""
    found: set[Callable[..., Any]] = set()
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call is not None:
            found.add(dependant.call)
        pending.extend(dependant.dependencies)
    return found


def _needs_roles(route: Route) -> bool:
    return any("require_roles" in getattr(call, "__qualname__", "") for call in _calls(route))


def _query_names(route: Route) -> set[str]:
    names = {param.alias for param in route.dependant.query_params}
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        names |= {param.alias for param in dependant.query_params}
        pending.extend(dependant.dependencies)
    return names


def _required_query(route: Route) -> dict[str, str]:
    params = [p for p in route.dependant.query_params if p.field_info.is_required()]
    return {p.alias: PARAMETER_VALUES.get(p.alias, "x") for p in params}


def _url(route: Route, team: str = IN_SCOPE_TEAM) -> str:
    values = {**PARAMETER_VALUES, "team": team}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "x"), route.path)


ROUTES = _routes()
GETS = [r for r in ROUTES if "GET" in r.methods]
POSTS = [r for r in ROUTES if "POST" in r.methods]


def _id(route: Route) -> str:
    return f"{'/'.join(sorted(route.methods))} {route.path.removeprefix(API_PREFIX)}"


@pytest.fixture(scope="module")
def api(chdb_client: Client) -> Any:
    load_fixture(chdb_client)
    return make_app(chdb_client)


def _get(api: Any, route: Route, token: str | None, path_team: str = IN_SCOPE_TEAM, **params: Any) -> Any:
    query = {**_required_query(route), **params}
    if "since" in _query_names(route):
        query.update(WIDE)
    return client_for(api, token).get(_url(route, path_team), params=query)


def _ok(response: Any) -> bool:
    return 200 <= response.status_code < 300


def test_the_matrix_covers_every_route_of_the_spec() -> None:
    spec = openapi_document()["paths"]
    assert {(path, method.upper()) for path, ops in spec.items() for method in ops} == {
        (r.path, method) for r in ROUTES for method in r.methods
    }
    paths = {r.path.removeprefix(API_PREFIX) for r in GETS}
    assert {"/me", "/summary", "/spend", "/timeseries", "/usage-stats", "/teams/{team}", "/events"} <= paths


@pytest.mark.parametrize("route", ROUTES, ids=_id)
@pytest.mark.parametrize("token", [None, "not-a-token", "cl_0000"])
def test_no_or_unknown_token_is_401(api: Any, route: Route, token: str | None) -> None:
    method = sorted(route.methods)[0]
    response = client_for(api, token).request(method, _url(route), params=_required_query(route))
    assert response.status_code == 401, response.text
    assert response.headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize("route", GETS, ids=_id)
@pytest.mark.parametrize("role", ["admin", "finance"])
def test_admin_and_finance_read_every_get(api: Any, route: Route, role: str) -> None:
    token = ROLE_TOKENS[role]
    assert _ok(response := _get(api, route, token)), response.text
    if "team" in _query_names(route):
        assert _ok(response := _get(api, route, token, team=OUT_OF_SCOPE_TEAM)), response.text
    if "{team}" in route.path:
        assert _ok(response := _get(api, route, token, path_team=OUT_OF_SCOPE_TEAM)), response.text


@pytest.mark.parametrize("route", GETS, ids=_id)
def test_team_token_in_scope(api: Any, route: Route) -> None:
    token = ROLE_TOKENS["team"]
    response = _get(api, route, token)
    if _needs_roles(route):
        assert response.status_code == 403, response.text
        return
    assert _ok(response), response.text
    if "team" in _query_names(route):
        assert _ok(response := _get(api, route, token, team=IN_SCOPE_TEAM)), response.text


@pytest.mark.parametrize("route", GETS, ids=_id)
def test_team_token_out_of_scope_is_403(api: Any, route: Route) -> None:
    token = ROLE_TOKENS["team"]
    checked = 0
    if "team" in _query_names(route):
        for teams in (OUT_OF_SCOPE_TEAM, [IN_SCOPE_TEAM, OUT_OF_SCOPE_TEAM], ""):
            response = _get(api, route, token, team=teams)
            assert response.status_code in ((403, 422) if teams == "" else (403,)), response.text
            checked += 1
    if "{team}" in route.path:
        assert (response := _get(api, route, token, path_team=OUT_OF_SCOPE_TEAM)).status_code == 403, (
            response.text
        )
        checked += 1
    if _needs_roles(route):
        assert (response := _get(api, route, token)).status_code == 403, response.text
        checked += 1
    if not checked:
        pytest.skip("this route takes no team and is open to team tokens")


@pytest.mark.parametrize("route", [r for r in POSTS if _needs_roles(r)], ids=_id)
def test_team_token_cannot_post_to_role_routes(api: Any, route: Route) -> None:
    response = client_for(api, ROLE_TOKENS["team"]).post(
        _url(route), params=_required_query(route), content=b""
    )
    assert response.status_code == 403, response.text
