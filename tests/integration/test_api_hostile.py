"""Hostile query parameters: 4xx with a reason, never a 5xx, never rows outside the token's scope."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from clickhouse_connect.driver import Client

from costline.dashboard.api.app import API_PREFIX
from tests.integration.test_api_data import WIDE, client_for, load_fixture, make_app

pytestmark = pytest.mark.integration

NASTY = [
    "' OR 1=1 --",
    "search' OR team != '",
    "search\\' OR 1=1 --",
    "{teams:Array(String)}",
    "search); DROP TABLE usage_events; --",
    "\x00",
    "tab\tnew\nline",
    "ünïcødé 😀 团队",
    "%27%20OR%201%3D1",
    "a" * 5000,
]
SPEND_PATHS = ["/summary", "/spend", "/timeseries", "/usage-stats", "/events"]


@pytest.fixture(scope="module")
def api(chdb_client: Client) -> Any:
    load_fixture(chdb_client)
    return make_app(chdb_client)


def _get(api: Any, path: str, token: str = "tok-admin", params: Any = None) -> Any:
    response = client_for(api, token).get(API_PREFIX + path, params=params)
    assert response.status_code < 500, f"{path} {params}: {response.status_code} {response.text}"
    return response


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("path", SPEND_PATHS)
def test_sql_in_team_reads_nothing_for_admin_and_is_refused_for_teams(
    api: Any, path: str, value: str
) -> None:
    response = _get(api, path, params={"team": value, **WIDE})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body.get("rows", body.get("points"))
    assert (body["events"] == 0) if path == "/summary" else (rows == []), body
    assert _get(api, path, "tok-search", {"team": value, **WIDE}).status_code == 403


@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("name", ["model", "workload", "provider", "status", "pricing_status", "trace_id"])
def test_sql_in_event_filters_matches_nothing(api: Any, name: str, value: str) -> None:
    response = _get(api, "/events", params={name: value, **WIDE})
    if len(value) > 200:
        assert response.status_code == 422
        return
    assert response.status_code == 200, response.text
    assert response.json() == {"total": 0, "rows": []}


@pytest.mark.parametrize("value", [*NASTY[:-1], "../ads", "ads%2F..", "search/../ads"])
def test_hostile_team_paths(api: Any, value: str) -> None:
    url = f"{API_PREFIX}/teams/{quote(value, safe='/%')}"
    response = client_for(api, "tok-search").get(url, params=WIDE)
    assert response.status_code in (403, 404), response.text
    admin = client_for(api, "tok-admin").get(url, params=WIDE)
    assert admin.status_code < 500
    if admin.status_code == 200 and admin.json()["team"] not in {"search", "ads", "growth"}:
        assert admin.json()["summary"]["events"] == 0


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": str(10**30)},
        {"limit": "1e3"},
        {"limit": "ten"},
        {"offset": "-5"},
        {"offset": str(10**19)},
        {"offset": "1.5"},
    ],
)
def test_bad_paging_is_422(api: Any, params: dict[str, str]) -> None:
    assert _get(api, "/events", params={**params, **WIDE}).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-13-01T00:00:00Z"},
        {"since": "2026-02-30"},
        {"since": "0001-01-01T00:00:00Z"},
        {"until": "9999-12-31T23:59:59Z"},
        {"since": "1969-12-31T23:00:00Z", "until": "1970-01-02T00:00:00Z"},
        {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        {"since": "2026-03-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        {"since": "1990-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"since": "2026-03-01T00:00:00+99:00"},
        {"since": "NaN"},
        {"since": str(10**20)},
    ],
)
@pytest.mark.parametrize("path", [*SPEND_PATHS, "/teams/search"])
def test_bad_dates_are_422(api: Any, path: str, params: dict[str, str]) -> None:
    assert _get(api, path, params=params).status_code == 422


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/spend", {"group_by": "team; DROP TABLE usage_events"}),
        ("/spend", {"group_by": "occurred_at"}),
        ("/spend", {"group_by": ""}),
        ("/usage-stats", {"group_by": "user_hash"}),
        ("/timeseries", {"group_by": "tags"}),
        ("/timeseries", {"granularity": "minute"}),
        (
            "/timeseries",
            {"granularity": "hour", "since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        ),
    ],
)
def test_unknown_choices_are_422(api: Any, path: str, params: dict[str, str]) -> None:
    assert _get(api, path, params=params).status_code == 422


def test_repeated_parameters(api: Any) -> None:
    query = [("team", "search"), ("team", "search"), ("since", WIDE["since"]), ("until", WIDE["until"])]
    one = _get(api, "/summary", "tok-search", query).json()
    assert one["events"] == _get(api, "/summary", "tok-search", WIDE).json()["events"] > 0
    sneaky = [("team", "search"), ("team", "ads"), ("since", WIDE["since"]), ("until", WIDE["until"])]
    assert _get(api, "/spend", "tok-search", sneaky).status_code == 403
    twice = [("group_by", "team"), ("group_by", "model"), ("since", WIDE["since"]), ("until", WIDE["until"])]
    assert _get(api, "/spend", params=twice).status_code in (200, 422)
    limits = [("limit", "5"), ("limit", "5000"), ("since", WIDE["since"]), ("until", WIDE["until"])]
    assert _get(api, "/events", params=limits).status_code in (200, 422)


@pytest.mark.parametrize("path", SPEND_PATHS)
def test_team_token_never_sees_other_teams(api: Any, path: str) -> None:
    body = _get(api, path, "tok-search", {"group_by": "team", "limit": 1000, **WIDE}).json()
    if path == "/summary":
        admin = _get(api, path, "tok-admin", {"team": "search", **WIDE}).json()
        assert body["events"] == admin["events"] > 0
        return
    rows = body.get("rows", body.get("points"))
    assert rows
    assert {row.get("team", row.get("key")) for row in rows} == {"search"}


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer ", "Basic dG9rLWFkbWlu", "bearer tok-admin\x00", "tok-admin"]
)
def test_malformed_authorization_headers_are_401(api: Any, header: str) -> None:
    from fastapi.testclient import TestClient

    response = TestClient(api, raise_server_exceptions=False).get(
        f"{API_PREFIX}/summary", headers={"Authorization": header}
    )
    assert response.status_code in (401, 403), response.text
