"""The store against the real ClickHouse engine (chDB): migrations, exact money, dedupe, hostile input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver import Client

from costline.pipeline.store.client import connect, redact_dsn
from costline.pipeline.store.migrations import apply_migrations, load_migrations
from costline.pipeline.store.queries import (
    DIMENSIONS,
    fetch_count_events,
    fetch_spend_by,
    fetch_spend_summary,
)
from costline.pipeline.store.rows import COLUMNS, priced_event_to_row, row_to_usage_event
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.errors import StoreError
from costline.schemas.priced_event import CostLine, PricedEvent
from costline.schemas.usage_event import UsageEvent, hash_prompt_prefix, hash_user

pytestmark = pytest.mark.integration

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
UNTIL = datetime(2027, 1, 1, tzinfo=UTC)
#: The last millisecond of October: events around it land in two monthly partitions.
END_OF_OCTOBER = datetime(2026, 10, 31, 23, 59, 59, 999000, tzinfo=UTC)
START_OF_NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
#: Values a float cannot hold: 1 picodollar, and 26 significant digits.
PICO = Decimal("0.000000000001")
BIG = Decimal("12345678901234.123456789012")


def priced(
    event_id: str,
    *,
    cost: Decimal = PICO,
    list_cost: Decimal | None = None,
    team: str | None = "search",
    occurred_at: datetime = END_OF_OCTOBER,
    status: str = "priced",
    **event_fields: Any,
) -> PricedEvent:
    """A PricedEvent whose whole cost sits on the output bucket."""
    event = UsageEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": occurred_at,
            "source": "sdk.openai",
            "provider": "openai",
            "request_model": "gpt-5",
            "tokens": {"output_visible": 1000},
            "attribution": {"team": team, "workload": "rag", "project": "atlas", "cost_center": "cc-1"},
            **event_fields,
        },
        context={"check_time_window": False},
    )
    list_cost = cost if list_cost is None else list_cost
    lines = [
        CostLine(
            bucket="output_visible",
            quantity=1000,
            unit="tokens",
            list_unit_price=Decimal("10"),
            effective_unit_price=Decimal("10"),
            list_cost=list_cost,
            effective_cost=cost,
        )
    ]
    return PricedEvent(
        event=event,
        status=status,
        ratecard_entry_id="openai/gpt-5@2026-01-01" if status != "unpriced" else None,
        lines=lines if status != "unpriced" else [],
        list_cost=list_cost if status != "unpriced" else Decimal(0),
        effective_cost=cost if status != "unpriced" else Decimal(0),
    )


def stored_rows(client: Client, event_id: str) -> list[dict[str, Any]]:
    """Every stored copy of one event, duplicates included (no FINAL)."""
    result = client.query(
        "SELECT * FROM usage_events WHERE event_id = {event_id:String} ORDER BY ingested_at",
        parameters={"event_id": event_id},
    )
    return list(result.named_results())


def raw_row_count(client: Client) -> int:
    """Rows physically stored, before any dedupe."""
    return int(client.query("SELECT count() FROM usage_events").result_rows[0][0])


# --- migrations -------------------------------------------------------------------------------


def test_session_store_is_already_migrated(chdb_client: Client) -> None:
    assert apply_migrations(chdb_client) == []


def test_migrations_apply_once_then_are_a_no_op(chdb_client: Client) -> None:
    chdb_client.command("CREATE DATABASE IF NOT EXISTS fresh_migrations")
    fresh = clickhouse_connect.get_client(dsn=f"chdb://{chdb_client.path}", database="fresh_migrations")
    try:
        versions = [m.version for m in load_migrations()]
        assert apply_migrations(fresh) == versions
        assert apply_migrations(fresh) == []
        tables = {row[0] for row in fresh.query("SHOW TABLES").result_rows}
        assert {"schema_migrations", "usage_events"} <= tables
        recorded = fresh.query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert recorded.result_rows == [(m.version, m.checksum) for m in load_migrations()]
    finally:
        fresh.command("DROP DATABASE IF EXISTS fresh_migrations")
        fresh.close()


def test_an_applied_migration_that_changed_is_refused(chdb_client: Client) -> None:
    first, *rest = load_migrations()
    edited = replace(first, sql=first.sql + "\n-- an innocent-looking edit\n")
    with pytest.raises(StoreError, match=r"0001_priced_events was changed after it was applied"):
        apply_migrations(chdb_client, [edited, *rest])


def test_the_table_has_every_column_the_writer_fills(chdb_client: Client) -> None:
    described = {row[0] for row in chdb_client.query("DESCRIBE TABLE usage_events").result_rows}
    assert set(COLUMNS) | {"ingested_at", "pricing_version"} == described


# --- exact money --------------------------------------------------------------------------------


def test_costs_come_back_exact_to_the_picodollar(store: Client) -> None:
    costs = [PICO, BIG, Decimal("0.1"), Decimal("0.2"), Decimal("-0.000000000003")]
    assert float(BIG) != BIG  # what floats do
    assert sum(float(c) for c in costs) != float(sum(costs))
    events = [priced(f"money-{i}", cost=cost, list_cost=cost * 2) for i, cost in enumerate(costs)]
    PricedEventWriter(store).write(events)

    for i, cost in enumerate(costs):
        (row,) = stored_rows(store, f"money-{i}")
        assert row["effective_cost"] == cost
        assert row["cost_output_visible"] == cost
        assert row["list_cost"] == cost * 2
        assert isinstance(row["effective_cost"], Decimal)

    summary = fetch_spend_summary(store, SINCE, UNTIL)
    assert summary.effective_cost == sum(costs) == Decimal("12345678901234.423456789010")
    assert summary.list_cost == 2 * sum(costs)
    assert summary.events == len(costs)


def test_a_cost_with_more_than_twelve_decimals_is_refused_not_truncated() -> None:
    with pytest.raises(StoreError, match="more than 12 decimals"):
        priced_event_to_row(priced("too-fine", cost=Decimal("0.0000000000015")))
    with pytest.raises(StoreError, match="too large"):
        priced_event_to_row(priced("huge", cost=Decimal(10) ** 26))


# --- hostile parameters -------------------------------------------------------------------------


HOSTILE_TEAMS = [
    "x' OR 1=1 --",
    "'; DROP TABLE usage_events; --",
    "back\\slash",
    "\\",
    "équipe 日本 🚀",
    "{teams:Array(String)}",
]


def test_hostile_team_names_match_only_themselves(store: Client) -> None:
    PricedEventWriter(store).write(
        [
            priced("plain", team="search"),
            priced("quote", team="x' OR 1=1 --"),
            priced("slash", team="back\\slash"),
            priced("unicode", team="équipe 日本 🚀"),
        ]
    )
    expected = {"x' OR 1=1 --": 1, "back\\slash": 1, "équipe 日本 🚀": 1}
    for team in HOSTILE_TEAMS:
        summary = fetch_spend_summary(store, SINCE, UNTIL, [team])
        assert summary.events == expected.get(team, 0), team
        groups = fetch_spend_by(store, "team", SINCE, UNTIL, [team])
        assert [g.key for g in groups] == ([team] if team in expected else []), team
    assert fetch_spend_summary(store, SINCE, UNTIL, HOSTILE_TEAMS).events == 3
    assert fetch_spend_summary(store, SINCE, UNTIL, []).events == 0
    assert fetch_count_events(store) == 4  # the table survived


def test_a_dimension_is_never_spliced_into_sql(store: Client) -> None:
    with pytest.raises(StoreError, match="cannot group spend by"):
        fetch_spend_by(store, "team; DROP TABLE usage_events", SINCE, UNTIL)


# --- dedupe ---------------------------------------------------------------------------------


def test_an_event_written_twice_counts_once_in_every_query(store: Client) -> None:
    writer = PricedEventWriter(store)
    first = priced("dup-a", cost=Decimal("1.000000000001"))
    other = priced("dup-b", cost=Decimal("2"), team="ads", occurred_at=START_OF_NOVEMBER)
    writer.write([priced_event_to_row(first, kafka_partition=3, kafka_offset=41)])
    writer.write([first, other])  # a differently cut batch: a new token, so the copy lands
    assert raw_row_count(store) == 3  # the duplicate really is stored...

    assert fetch_count_events(store) == 2  # ...and no query counts them
    summary = fetch_spend_summary(store, SINCE, UNTIL)
    assert summary.events == 2
    assert summary.effective_cost == Decimal("3.000000000001")
    assert summary.tokens["output_visible"] == 2000
    assert fetch_spend_summary(store, SINCE, UNTIL, ["search"]).effective_cost == Decimal("1.000000000001")
    for dimension in DIMENSIONS:
        groups = fetch_spend_by(store, dimension, SINCE, UNTIL)
        assert sum(g.totals.events for g in groups) == 2, dimension
        assert sum(g.totals.effective_cost for g in groups) == Decimal("3.000000000001"), dimension
    by_team = {g.key: g.totals for g in fetch_spend_by(store, "team", SINCE, UNTIL)}
    assert by_team["search"].events == 1
    assert by_team["search"].effective_cost == Decimal("1.000000000001")
    assert [g.key for g in fetch_spend_by(store, "team", SINCE, UNTIL)] == ["ads", "search"]

    copies = stored_rows(store, "dup-a")
    assert [(c["kafka_partition"], c["kafka_offset"]) for c in copies] == [(3, 41), (-1, -1)]


def test_a_retried_batch_is_dropped_by_the_deduplication_token(store: Client) -> None:
    batch = [priced("retry-a"), priced("retry-b", occurred_at=START_OF_NOVEMBER)]  # two partitions
    writer = PricedEventWriter(store)
    writer.write(batch)
    writer.write(list(reversed(batch)))  # a retry, in another order
    writer.write([priced_event_to_row(p, kafka_partition=1, kafka_offset=7) for p in batch])  # a redelivery
    assert raw_row_count(store) == 2


def test_a_repriced_copy_lands_and_replaces_the_old_price(store: Client) -> None:
    writer = PricedEventWriter(store)
    writer.write([priced("repriced", cost=Decimal("1"))])
    writer.write([priced("repriced", cost=Decimal("0.75"))])
    assert raw_row_count(store) == 2
    summary = fetch_spend_summary(store, SINCE, UNTIL)
    assert (summary.events, summary.effective_cost) == (1, Decimal("0.75"))


def test_time_range_is_half_open(store: Client) -> None:
    PricedEventWriter(store).write(
        [priced("oct", occurred_at=END_OF_OCTOBER), priced("nov", occurred_at=START_OF_NOVEMBER)]
    )
    assert fetch_spend_summary(store, SINCE, START_OF_NOVEMBER).events == 1
    assert fetch_spend_summary(store, START_OF_NOVEMBER, UNTIL).events == 1
    assert fetch_spend_summary(store, END_OF_OCTOBER, START_OF_NOVEMBER).events == 1


def test_unpriced_and_partial_events_are_counted(store: Client) -> None:
    PricedEventWriter(store).write(
        [
            priced("p", cost=Decimal("1")),
            priced("u", status="unpriced", request_model="my-llama"),
            priced("partial", status="partial", cost=Decimal("0.5")),
        ]
    )
    summary = fetch_spend_summary(store, SINCE, UNTIL)
    assert (summary.events, summary.unpriced_events, summary.partial_events) == (3, 1, 1)
    assert summary.effective_cost == Decimal("1.5")


# --- round trip -------------------------------------------------------------------------------


def test_a_priced_event_round_trips_to_the_same_usage_event(store: Client) -> None:
    full = priced(
        "full-1",
        cost=BIG,
        team="search",
        response_model="gpt-5-2026-08-07",
        operation="chat",
        tokens={
            "input_uncached": 1,
            "cache_read": 2,
            "cache_write_5m": 3,
            "cache_write_30m": 4,
            "cache_write_1h": 5,
            "cache_write_12h": 6,
            "output_visible": 50_000_000,
            "output_reasoning": 8,
        },
        requests={"web_search_requests": 1, "web_fetch_requests": 2, "code_execution_requests": 3},
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        session_id="sess-1",
        raw_usage={"prompt_tokens": 3, "details": {"cached": [1, 2]}, "note": "ünï"},
        signals={
            "prompt_prefix_hash": hash_prompt_prefix("You are helpful."),
            "caching_requested": False,
            "reasoning_effort": "high",
            "output_chars": 1234,
            "latency_ms": 2500,
            "time_to_first_token_ms": 300,
            "status": "partial",
            "error_type": "",
            "finish_reason": "length",
            "service_tier": "flex",
            "region": "eu-west-1",
            "batch": True,
            "stream": True,
        },
    )
    attribution = full.event.attribution.model_copy(
        update={
            "user_hash": hash_user("alice"),
            "environment": "prod",
            "tags": {"app": "wiki", "k:v": "日本"},
        }
    )
    full = full.model_copy(update={"event": full.event.model_copy(update={"attribution": attribution})})
    minimal = priced("min-1", team=None, attribution={})

    PricedEventWriter(store).write([full, minimal])
    for original in (full, minimal):
        (row,) = stored_rows(store, original.event.event_id)
        assert row_to_usage_event(row) == original.event
        assert row["effective_cost"] == original.effective_cost
        assert row["model"] == original.event.model
    (row,) = stored_rows(store, "min-1")
    assert row["team"] == ""


# --- connect ----------------------------------------------------------------------------------


def test_a_second_client_of_the_open_path_sees_the_same_data(store: Client, chdb_dsn: str) -> None:
    PricedEventWriter(store).write([priced("shared")])
    second = connect(chdb_dsn)
    try:
        assert fetch_count_events(second) == 1
    finally:
        second.close()
    assert fetch_count_events(store) == 1  # closing one client leaves the engine up


def test_a_second_chdb_path_in_the_same_process_is_a_clear_error(chdb_client: Client, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="chDB allows one data path per process"):
        connect(f"chdb://{tmp_path / 'other'}")
    assert fetch_count_events(chdb_client) >= 0  # the open store is unharmed


@pytest.mark.parametrize(
    "dsn",
    ["", "ftp://host/db", "chdb://relative/path", "chdb://memory", "chdb:///tmp/x?opt=1", "http://:8123/db"],
)
def test_a_bad_dsn_is_a_clear_error(dsn: str) -> None:
    with pytest.raises(StoreError, match=r"DSN"):
        connect(dsn)


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    dsn = "http://costline:s3cret-pw@127.0.0.1:1/costline"
    with pytest.raises(StoreError, match="cannot reach ClickHouse") as raised:
        connect(dsn)
    assert "s3cret-pw" not in str(raised.value)
    assert redact_dsn(dsn) == "http://costline:***@127.0.0.1:1/costline"
