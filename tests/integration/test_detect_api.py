"""`GET /anomalies` on fixture rows in the embedded store, through the real FastAPI app."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from fastapi.testclient import TestClient

from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import TokenStore, add_token
from costline.dashboard.api.store import StoreAccess
from costline.pipeline.store.anomalies import write_anomalies
from costline.schemas.settings import Settings

pytestmark = pytest.mark.integration

HOUR = 3_600_000
T = 1_790_000_000_000 - 1_790_000_000_000 % HOUR  # 2026-09-21T14:00:00Z


def record(anomaly: str, team: str, kind: str, wasted: int, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "anomaly_id": anomaly,
        "kind": kind,
        "cause": "c",
        "team": team,
        "project": "p",
        "workload": "w",
        "provider": "anthropic",
        "model": "claude-sonnet-4-6",
        "trace_id": "",
        "session_id": "",
        "window_start": T,
        "window_end": T + HOUR,
        "detected_at": T + 60_000,
        "calls": 2,
        "wasted": wasted,
        "observed": wasted * 3,
        "severity": "info",
        "state": "firing",
        "evidence": {"max": {"reasoning_cost_pico": 1_500_000}},
        "samples": ["e1", "e2"],
        "version": version,
        **extra,
    }


@pytest.fixture
def api(chdb_client: Client, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    run = uuid.uuid4().hex[:8]
    mine, other = f"{run}-search", f"{run}-support"
    write_anomalies(
        chdb_client,
        [
            record(f"{run}-a", mine, "overthinking", 1_250_000_000),
            record(f"{run}-b", mine, "cache_miss", 500_000_000),
            record(f"{run}-c", other, "overthinking", 7_000_000_000),
            record(f"{run}-d", "", "spend_spike", 1),  # unattributed usage
        ],
    )
    # a later version of one anomaly: the API shows it once, as resolved
    write_anomalies(
        chdb_client, [record(f"{run}-a", mine, "overthinking", 2_500_000_000, version=2, state="resolved")]
    )
    path = tmp_path / "tokens.yaml"
    tokens = {"admin": add_token(path, "admin", "admin"), "team": add_token(path, "lead", "team", [mine])}
    app = create_api(StoreAccess(chdb_client), TokenStore.from_file(path), Settings())
    with TestClient(app) as client:
        yield client, tokens, run


def get(client: TestClient, token: str, **params: Any) -> Any:
    params = {"since": "2026-09-01T00:00:00Z", "until": "2026-10-01T00:00:00Z", **params}
    return client.get("/api/v1/anomalies", params=params, headers={"Authorization": f"Bearer {token}"})


def test_a_team_token_sees_only_its_teams_latest_versions(
    api: tuple[TestClient, dict[str, str], str],
) -> None:
    client, tokens, run = api
    answer = get(client, tokens["team"])
    assert answer.status_code == 200
    body = answer.json()
    rows = body["rows"]
    assert {row["anomaly_id"] for row in rows} == {f"{run}-a", f"{run}-b"}
    first = next(row for row in rows if row["anomaly_id"] == f"{run}-a")
    assert first["state"] == "resolved"
    assert first["wasted_cost"] == "0.002500000000"
    assert first["observed_cost"] == "0.007500000000"
    assert first["window_start"] == "2026-09-21T14:00:00Z"
    assert first["detected_at"] == "2026-09-21T14:01:00Z"
    assert first["evidence"] == {"max": {"reasoning_cost_usd": "0.000001500000"}}
    assert first["sample_event_ids"] == ["e1", "e2"]
    assert body["totals"] == [
        {"kind": "overthinking", "anomalies": 1, "calls": 2, "wasted_cost": "0.002500000000"},
        {"kind": "cache_miss", "anomalies": 1, "calls": 2, "wasted_cost": "0.000500000000"},
    ]
    assert get(client, tokens["team"], team=f"{run}-support").status_code == 403


def test_admin_sees_every_team_and_filters_by_kind(api: tuple[TestClient, dict[str, str], str]) -> None:
    client, tokens, run = api
    rows = [r for r in get(client, tokens["admin"]).json()["rows"] if r["anomaly_id"].startswith(run)]
    assert len(rows) == 4  # unattributed included
    only = get(client, tokens["admin"], kind="overthinking", team=f"{run}-support").json()
    assert [r["anomaly_id"] for r in only["rows"]] == [f"{run}-c"]
    assert get(client, tokens["admin"], kind="nonsense").status_code == 422
    assert get(client, tokens["admin"], limit=0).status_code == 422
    outside = get(client, tokens["admin"], since="2026-10-01T00:00:00Z", until="2026-11-01T00:00:00Z").json()
    assert not [r for r in outside["rows"] if r["anomaly_id"].startswith(run)]
    assert client.get("/api/v1/anomalies").status_code == 401
