"""GET /budgets and GET /alerts through the real API on the chDB store, scoped by token."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from fastapi.testclient import TestClient

from costline.dashboard.api.app import API_PREFIX, ROUTERS, create_api
from costline.dashboard.api.auth import Principal, TokenStore, hash_token
from costline.dashboard.api.routes import budgets as routes
from costline.dashboard.api.store import StoreAccess
from costline.pipeline.alerts.engine import AlertEngine
from costline.pipeline.alerts.model import DeliveryAttempt
from costline.pipeline.budgets.config import load_budgets
from costline.pipeline.store.alerts import insert_deliveries
from costline.schemas.settings import Settings
from tests.integration.test_budget_alerts import direct, spend_event, write

pytestmark = pytest.mark.integration

BUDGETS = """\
budgets:
  - name: api-search
    scope: {team: api-search}
    period: monthly
    amount_usd: "10.50"
    thresholds: [50, 100]
    forecast: false
    notify: [webhook]
  - name: api-ads
    scope: {team: api-ads, workload: bidder}
    period: daily
    time_zone: Europe/Paris
    amount_usd: 100
  - name: api-org
    period: weekly
    amount_usd: 1000
"""
TOKENS = {
    "admin-token": Principal("admin", "admin"),
    "search-token": Principal("lead", "team", frozenset({"api-search"})),
}


@pytest.fixture
def api(store: Client, tmp_path: Path) -> TestClient:
    store.command("TRUNCATE TABLE alerts")
    store.command("TRUNCATE TABLE alert_deliveries")
    path = tmp_path / "budgets.yaml"
    path.write_text(BUDGETS)
    settings = Settings(budgets_path=path, data_dir=tmp_path)
    tokens = TokenStore({hash_token(token): principal for token, principal in TOKENS.items()})
    app = create_api(StoreAccess(store), tokens, settings)
    if routes.router not in ROUTERS:  # until app.py lists the router
        app.include_router(routes.router, prefix=API_PREFIX)
    return TestClient(app)


def get(api: TestClient, path: str, token: str, **params: object) -> tuple[int, dict]:  # type: ignore[type-arg]
    response = api.get(f"/api/v1{path}", params=params, headers={"Authorization": f"Bearer {token}"})
    return response.status_code, response.json()


def test_budgets_show_spend_and_status_per_token(api: TestClient, store: Client, tmp_path: Path) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    write(
        store,
        [
            spend_event("api-1", now, "api-search", "rag", 6),
            spend_event("api-2", now, "api-ads", "bidder", 3),
        ],
    )
    status, body = get(api, "/budgets", "admin-token")
    assert status == 200
    rows = {row["name"]: row for row in body["rows"]}
    assert set(rows) == {"api-search", "api-ads", "api-org"}
    search = rows["api-search"]
    assert search["spent"] == "6.000000000000"
    assert search["amount"] == "10.50"
    assert search["percent"] == "57.14"
    assert search["crossed"] == [50]
    assert search["status"] == "warning"
    assert search["forecast"] is None
    assert search["scope"] == {"team": "api-search", "workload": None, "project": None}
    assert search["period_start"].endswith("T00:00:00Z")
    assert rows["api-org"]["spent"] == "9.000000000000"  # no scope: every team
    assert rows["api-ads"]["time_zone"] == "Europe/Paris"
    assert rows["api-ads"]["forecast"] is not None
    status, body = get(api, "/budgets", "search-token")
    assert [row["name"] for row in body["rows"]] == ["api-search"]  # not the org-wide one
    assert get(api, "/budgets", "search-token", team="api-ads")[0] == 403


def test_alerts_list_with_deliveries_scoped_by_team(api: TestClient, store: Client, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    write(store, [spend_event("al-1", now - timedelta(seconds=1), "api-search", "rag", 11)])
    engine = AlertEngine(load_budgets(tmp_path / "budgets.yaml"), direct(store), None)
    fired = asyncio.run(engine.tick()).fired
    assert sorted(a.threshold for a in fired) == [50, 100]
    insert_deliveries(
        store,
        [DeliveryAttempt(fired[0].alert_id, "webhook", 1, now, "failed", 404, "HTTP 404: no_service", 5)],
    )
    status, body = get(api, "/alerts", "admin-token")
    assert status == 200
    assert sorted(row["threshold"] for row in body["rows"]) == [50, 100]
    row = next(r for r in body["rows"] if r["alert_id"] == fired[0].alert_id)
    assert row["deliveries"] == [
        {
            "route": "webhook",
            "attempt": 1,
            "outcome": "failed",
            "status_code": 404,
            "error": "HTTP 404: no_service",
            "at": row["deliveries"][0]["at"],
        }
    ]
    assert row["spent"] == "11.000000000000"
    assert row["amount"] == "10.500000000000"
    assert row["state"] == "firing"
    assert len(get(api, "/alerts", "search-token")[1]["rows"]) == 2
    assert get(api, "/alerts", "admin-token", team="someone-else")[1]["rows"] == []
    assert get(api, "/alerts", "admin-token", state="resolved")[1]["rows"] == []
    assert get(api, "/alerts", "search-token", team="api-ads")[0] == 403
    assert get(api, "/alerts", "nobody")[0] == 401


def test_a_broken_budgets_file_is_a_clear_error(api: TestClient, tmp_path: Path) -> None:
    (tmp_path / "budgets.yaml").write_text("budgets:\n  - name: x\n    period: yearly\n    amount_usd: 1\n")
    status, body = get(api, "/budgets", "admin-token")
    assert status == 500
    assert "budgets.yaml:3: budgets[0].period" in body["detail"]
