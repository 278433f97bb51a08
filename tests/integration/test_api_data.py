"""Read API test data: stored events with known totals, the app with one token per role, and sums.

The rows are written straight into `usage_events` (the writer is tested elsewhere) in two
batches: the first is stamped as ingested two hours ago and rolled up, the second (late events
into rolled-up hours, a redelivered copy, a re-priced version, new hours) lands after the rollup,
so reports must combine the rollups with the base table to be exact. `expected_*` compute the
answers independently, in Python, from the same rows. The test here checks those helpers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from fastapi.testclient import TestClient

from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import Principal, TokenStore, hash_token
from costline.dashboard.api.store import StoreAccess
from costline.pipeline.store.rollups import refresh_rollups
from costline.schemas.settings import Settings
from costline.schemas.usage_event import TOKEN_BUCKETS

T0 = datetime(2026, 3, 1, tzinfo=UTC)
#: A range that covers every fixture event.
SINCE, UNTIL = "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"
WIDE = {"since": SINCE, "until": UNTIL}

TOKENS: dict[str, Principal] = {
    "tok-admin": Principal("ops", "admin"),
    "tok-finance": Principal("cfo", "finance"),
    "tok-search": Principal("search-lead", "team", frozenset({"search"})),
    "tok-ads": Principal("ads-lead", "team", frozenset({"ads", "growth"})),
}
ROLE_TOKENS = {"admin": "tok-admin", "finance": "tok-finance", "team": "tok-search"}
#: Teams a team token may read / may not read, for the authorization tests.
IN_SCOPE_TEAM, OUT_OF_SCOPE_TEAM = "search", "ads"


@dataclass(frozen=True)
class Ev:
    """One stored row (only the columns the reports read)."""

    event_id: str
    occurred_at: datetime
    team: str = "search"
    workload: str = "chat"
    provider: str = "openai"
    model: str = "gpt-5"
    project: str = ""
    cost_center: str = ""
    list_cost: Decimal = Decimal("0.010000000000")
    effective_cost: Decimal = Decimal("0.008000000000")
    repriced_effective_cost: Decimal | None = None
    repriced_status: str | None = None
    pricing_status: str = "priced"
    pricing_version: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: {"input_uncached": 100, "output_visible": 20})
    caching_requested: bool | None = None
    status: str = "ok"
    trace_id: str = ""
    latency_ms: int | None = 250

    @property
    def current_cost(self) -> Decimal:
        return (
            self.repriced_effective_cost if self.repriced_effective_cost is not None else self.effective_cost
        )

    @property
    def current_status(self) -> str:
        return self.repriced_status or self.pricing_status

    def token(self, bucket: str) -> int:
        return self.tokens.get(bucket, 0)


def _d(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000000001"))


def _batch1() -> list[Ev]:
    rows: list[Ev] = []
    teams = [
        ("search", "chat", "openai", "gpt-5"),
        ("ads", "ranker", "anthropic", "claude-sonnet-4-6"),
        ("growth", "mailer", "openai", "gpt-5-mini"),
        ("", "adhoc", "openai", "gpt-5"),
    ]
    for day in range(6):
        for hour in (0, 9, 10, 17, 23):
            for n, (team, workload, provider, model) in enumerate(teams):
                i = len(rows)
                rows.append(
                    Ev(
                        event_id=f"e{i:04d}",
                        occurred_at=T0
                        + timedelta(days=day, hours=hour, minutes=(7 * i) % 60, seconds=i % 60),
                        team=team,
                        workload=workload if i % 5 else f"{workload}-batch",
                        provider=provider,
                        model=model,
                        project=f"p{n}" if i % 3 else "",
                        cost_center=f"cc{n % 2}",
                        list_cost=_d(f"0.{(i * 37) % 1000:03d}123456789"),
                        effective_cost=_d(f"0.{(i * 29) % 1000:03d}987654321"),
                        pricing_status="unpriced"
                        if i % 11 == 0
                        else ("partial" if i % 13 == 0 else "priced"),
                        tokens={
                            "input_uncached": 100 + i,
                            "cache_read": (i * 7) % 50 if i % 4 == 0 else 0,
                            "cache_write_5m": 30 if i % 6 == 0 else 0,
                            "cache_write_1h": 5 if i % 9 == 0 else 0,
                            "output_visible": 20 + i % 17,
                            "output_reasoning": (i * 3) % 40 if i % 2 == 0 else 0,
                        },
                        caching_requested=True if i % 8 == 0 else (None if i % 2 else False),
                        status="error" if i % 19 == 0 else "ok",
                        trace_id=f"trace-{i % 7}",
                        latency_ms=None if i % 10 == 0 else 100 + i,
                    )
                )
    return rows


BATCH1: list[Ev] = _batch1()

#: After the rollup: late events into rolled-up hours, a redelivered copy, a re-priced version,
#: events in new hours (also in the current partial hour of a range ending mid-hour).
BATCH2: list[Ev] = [
    replace(BATCH1[5], event_id="late-1", occurred_at=BATCH1[5].occurred_at + timedelta(minutes=1)),
    replace(
        BATCH1[40], event_id="late-2", team="ads", occurred_at=BATCH1[40].occurred_at + timedelta(seconds=3)
    ),
    BATCH1[12],  # redelivered: must count once
    replace(
        BATCH1[21],
        repriced_effective_cost=_d("0.777000000001"),
        repriced_status="priced",
        pricing_version=1_780_000_000_000,
    ),
    Ev(
        "new-1",
        T0 + timedelta(days=9, hours=4, minutes=1),
        team="search",
        workload="search-rerank",
        model="gpt-5-mini",
        effective_cost=_d("1.5"),
        list_cost=_d("2"),
        tokens={"input_uncached": 1000, "cache_read": 3000, "cache_write_12h": 10, "output_visible": 5},
        caching_requested=True,
    ),
    Ev(
        "new-2",
        T0 + timedelta(days=9, hours=4, minutes=59, seconds=59),
        team="ads",
        effective_cost=_d("0.25"),
        list_cost=_d("0.25"),
        pricing_status="unpriced",
    ),
    Ev(
        "new-3",
        T0 + timedelta(days=20, hours=13, minutes=30),
        team="",
        effective_cost=_d("3"),
        list_cost=_d("3"),
    ),
]

_COLUMNS = (
    "event_id",
    "occurred_at",
    "team",
    "workload",
    "provider",
    "model",
    "project",
    "cost_center",
    "list_cost",
    "effective_cost",
    "repriced_effective_cost",
    "repriced_status",
    "pricing_status",
    "pricing_version",
    *(f"tokens_{b}" for b in TOKEN_BUCKETS),
    "caching_requested",
    "status",
    "trace_id",
    "latency_ms",
    "cost_input_uncached",
    "request_model",
    "response_model",
    "currency",
    "ratecard_entry_id",
    "prompt_prefix_hash",
)


def insert(client: Client, rows: Sequence[Ev], ingested_at: datetime | None = None) -> None:
    """Write rows as stored events (`ingested_at` defaults to the server's now)."""
    columns = list(_COLUMNS) + (["ingested_at"] if ingested_at is not None else [])
    data = []
    for ev in rows:
        values: list[Any] = [
            ev.event_id,
            ev.occurred_at,
            ev.team,
            ev.workload,
            ev.provider,
            ev.model,
            ev.project,
            ev.cost_center,
            ev.list_cost,
            ev.effective_cost,
            ev.repriced_effective_cost,
            ev.repriced_status,
            ev.pricing_status,
            ev.pricing_version,
            *(ev.token(b) for b in TOKEN_BUCKETS),
            ev.caching_requested,
            ev.status,
            ev.trace_id,
            ev.latency_ms,
            ev.effective_cost,  # the whole as-priced cost in one component, so components add up
            ev.model,
            ev.model,
            "USD",
            f"card/{ev.model}",
            f"pfx-{ev.event_id[-1]}",
        ]
        data.append([*values, ingested_at] if ingested_at is not None else values)
    client.insert("usage_events", data, column_names=columns)


def stored() -> list[Ev]:
    """What `usage_events FINAL` holds after both batches: one row per key, highest version wins."""
    latest: dict[tuple[str, datetime, str], Ev] = {}
    for ev in [*BATCH1, *BATCH2]:
        key = (ev.team, ev.occurred_at, ev.event_id)
        if key not in latest or ev.pricing_version >= latest[key].pricing_version:
            latest[key] = ev
    return list(latest.values())


def reset_store(client: Client) -> None:
    """Empty the events and both rollups (the session `store` fixture leaves the rollups alone)."""
    for table in ("usage_events", "usage_rollup_hourly", "usage_rollup_daily"):
        client.command(f"TRUNCATE TABLE {table}")


def load_fixture(client: Client) -> None:
    """Batch 1 (ingested two hours ago) rolled up, then batch 2 after the rollup."""
    reset_store(client)
    insert(client, BATCH1, ingested_at=datetime.now(UTC) - timedelta(hours=2))
    refresh_rollups(client)
    insert(client, BATCH2)


@pytest.fixture
def api_store(chdb_client: Client) -> Client:
    """The session store holding the fixture events (batch 2 not yet rolled up)."""
    load_fixture(chdb_client)
    return chdb_client


def make_app(client: Client) -> Any:
    """The API with every router and one token per role."""
    tokens = TokenStore({hash_token(token): principal for token, principal in TOKENS.items()})
    return create_api(StoreAccess(client), tokens, Settings())


@pytest.fixture
def api(api_store: Client) -> Any:
    """The app over the fixture data."""
    return make_app(api_store)


def client_for(app: Any, token: str | None) -> TestClient:
    """A TestClient sending `token` (none when None); server errors come back as responses."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return TestClient(app, headers=headers, raise_server_exceptions=False)


# ----------------------------------------------------------------------------- independent sums


def selected(since: datetime, until: datetime, teams: Iterable[str] | None = None) -> list[Ev]:
    wanted = set(teams) if teams is not None else None
    return [
        ev for ev in stored() if since <= ev.occurred_at < until and (wanted is None or ev.team in wanted)
    ]


def expected_totals(rows: Iterable[Ev]) -> dict[str, Any]:
    rows = list(rows)
    return {
        "events": len(rows),
        "unpriced_events": sum(ev.current_status == "unpriced" for ev in rows),
        "partial_events": sum(ev.current_status == "partial" for ev in rows),
        "list_cost": sum((ev.list_cost for ev in rows), Decimal(0)),
        "effective_cost": sum((ev.current_cost for ev in rows), Decimal(0)),
        "as_priced_cost": sum((ev.effective_cost for ev in rows), Decimal(0)),
        "tokens": {b: sum(ev.token(b) for ev in rows) for b in TOKEN_BUCKETS},
    }


def expected_by(rows: Iterable[Ev], dimension: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Ev]] = {}
    for ev in rows:
        groups.setdefault(getattr(ev, dimension), []).append(ev)
    return {key: expected_totals(group) for key, group in groups.items()}


def parse(dt: str) -> datetime:
    return datetime.fromisoformat(dt.replace("Z", "+00:00"))


@pytest.mark.integration
def test_fixture_holds_what_the_helpers_say(api_store: Client) -> None:
    """The helpers' idea of the stored rows matches the store, and batch 2 really is not rolled up."""
    count = api_store.query("SELECT count() FROM usage_events FINAL").result_rows[0][0]
    assert count == len(stored()) == len(BATCH1) + len(BATCH2) - 2  # a redelivery and a re-pricing
    rolled = api_store.query("SELECT sum(events) FROM usage_rollup_hourly FINAL").result_rows[0][0]
    assert rolled == len(BATCH1)
    total = api_store.query(
        "SELECT sum(ifNull(repriced_effective_cost, effective_cost)) FROM usage_events FINAL"
    ).result_rows[0][0]
    assert total == expected_totals(stored())["effective_cost"]
