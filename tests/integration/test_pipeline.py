"""The whole flow against the real broker and engine: Kafka → Faust worker → ClickHouse.

One worker (in a thread, on the session's chDB store) serves every test of this module; each
test uses its own event ids and team names, so they never see each other's rows.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from kafka import KafkaConsumer, TopicPartition

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name, unused_port
from tests.integration.pipeline_data import (
    expected_by_team_hour,
    expected_totals,
    make_events,
    produce,
    produce_events,
)
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(broker: LocalBroker, chdb_dsn: str, chdb_client: Client) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_usage_topic=unique_name("usage"),
        kafka_dlq_topic=unique_name("dlq"),
        kafka_signals_topic=unique_name("signals"),
        kafka_partitions=3,
        worker_group=unique_name("worker"),
        clickhouse_dsn=chdb_dsn,
        metrics_port=unused_port(),
        api_port=unused_port(),
        sink_flush_seconds=0.3,
        rollup_interval_s=1.0,
    )


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[ThreadedWorker]:
    create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))
    running = ThreadedWorker(settings).start()
    yield running
    running.stop()


def run_id() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def stored(client: Client, run: str) -> dict[str, Any]:
    row = client.query(
        "SELECT count(), sum(effective_cost), sum(list_cost), countIf(pricing_status = 'unpriced'), "
        "sum(tokens_output_visible) FROM usage_events FINAL WHERE startsWith(event_id, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows[0]
    return {
        "events": row[0],
        "effective_cost": row[1],
        "list_cost": row[2],
        "unpriced": row[3],
        "output_tokens": row[4],
    }


def stored_count(client: Client, run: str) -> int:
    return int(stored(client, run)["events"])


def rollup_by_team_hour(client: Client, run: str) -> dict[tuple[str, Any], Decimal]:
    rows = client.query(
        "SELECT team, hour, sum(effective_cost) FROM usage_rollup_hourly FINAL "
        "WHERE startsWith(team, {run:String}) GROUP BY team, hour",
        parameters={"run": f"{run}-"},
    ).result_rows
    return {(team, hour): cost for team, hour, cost in rows}


def rollup_daily_total(client: Client, run: str) -> Decimal:
    rows = client.query(
        "SELECT sum(effective_cost) FROM usage_rollup_daily FINAL WHERE startsWith(team, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows
    return Decimal(rows[0][0])


def test_events_land_priced_and_totals_match_independent_pricing(
    worker: ThreadedWorker, settings: Settings, chdb_client: Client
) -> None:
    run = run_id()
    events = make_events(run, 3_000)
    produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
    wait_for(
        lambda: (worker.check(), stored_count(chdb_client, run))[1] >= len(events),
        JOIN_TIMEOUT_S,
        "3,000 events in ClickHouse",
    )

    expected = expected_totals(events)
    assert stored(chdb_client, run) == expected
    assert expected["unpriced"] > 0  # the demo's self-hosted model is unknown: stored, not dropped

    by_hour = expected_by_team_hour(events)
    wait_for(lambda: rollup_by_team_hour(chdb_client, run) == by_hour, 30, "hourly rollups to catch up")
    # the daily rollup is written after the hourly ones, in the same refresh
    wait_for(
        lambda: rollup_daily_total(chdb_client, run) == expected["effective_cost"],
        30,
        "daily rollups to catch up",
    )


def test_redelivered_and_resent_events_count_once(
    worker: ThreadedWorker, settings: Settings, chdb_client: Client
) -> None:
    run = run_id()
    events = make_events(run, 1_000, seed=12)
    produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
    # the producer re-sends a slice (new envelopes, other cuts) after the first copies were written
    wait_for(lambda: stored_count(chdb_client, run) >= len(events), JOIN_TIMEOUT_S, "first copies")
    produce_events(
        settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events[200:700], per_message=37
    )
    before = worker.metrics.duplicates_dropped
    wait_for(lambda: worker.metrics.duplicates_dropped >= before + 500, 60, "the re-sent slice to be seen")

    assert stored(chdb_client, run) == expected_totals(events)
    wait_for(lambda: rollup_by_team_hour(chdb_client, run) == expected_by_team_hour(events), 30, "rollups")


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=2_000,
    )
    try:
        tp = TopicPartition(settings.kafka_dlq_topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()


def test_poison_input_goes_to_the_dead_letter_topic_and_good_events_are_stored(
    worker: ThreadedWorker, settings: Settings, chdb_client: Client
) -> None:
    run = run_id()
    good = make_events(run, 6, seed=13)
    good_json = [json.loads(e.model_dump_json()) for e in good]
    negative = {**good_json[0], "event_id": f"{run}-negative", "tokens": {"input_uncached": -5}}
    wrong_type = {**good_json[0], "event_id": f"{run}-wrongtype", "tokens": {"cache_read": "lots"}}
    missing = {k: v for k, v in good_json[0].items() if k != "occurred_at"} | {"event_id": f"{run}-missing"}
    huge = {**good_json[0], "event_id": f"{run}-huge", "attribution": {"team": "x" * 1_000_000}}
    poison = [
        b"{not json at all",
        b"\xff\xfe\x00binary",
        json.dumps([1, 2, 3]).encode(),
        json.dumps({"v": 99, "events": []}).encode(),
        json.dumps({"v": 1, "events": [negative]}).encode(),
        json.dumps({"v": 1, "events": [wrong_type]}).encode(),
        json.dumps({"v": 1, "events": [missing]}).encode(),
        json.dumps({"v": 1, "events": [huge]}).encode(),
        json.dumps(
            {
                "v": 1,
                "events": [
                    good_json[0],
                    "not an object",
                    good_json[1],
                    negative | {"event_id": f"{run}-mixed"},
                ],
            }
        ).encode(),
        json.dumps({"v": 1, "events": good_json[2:]}).encode(),
    ]
    produce(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, poison)
    wait_for(lambda: stored_count(chdb_client, run) >= len(good), JOIN_TIMEOUT_S, "the good events")

    assert stored(chdb_client, run) == expected_totals(good)
    letters = dead_letters(settings)
    originals = [base64.b64decode(letter["original_b64"]) for letter in letters]
    reasons = [letter["reason"] for letter in letters]

    def letter_for(marker: bytes) -> str:
        matches = [reason for original, reason in zip(originals, reasons, strict=True) if marker in original]
        assert len(matches) == 1, (marker, matches)
        return matches[0]

    assert "not valid UTF-8 JSON" in letter_for(b"{not json at all")
    assert "not valid UTF-8 JSON" in letter_for(b"\xff\xfe\x00binary")
    assert "JSON object envelope" in letter_for(b"[1, 2, 3]")
    assert "unsupported envelope version 99" in letter_for(b'"v": 99')
    assert "tokens.input_uncached" in letter_for(f"{run}-negative".encode())
    assert "tokens.cache_read" in letter_for(f"{run}-wrongtype".encode())
    assert "occurred_at: Field required" in letter_for(f"{run}-missing".encode())
    assert "attribution.team" in letter_for(f"{run}-huge".encode())
    assert "not an object" in letter_for(b'"not an object"')
    assert "tokens.input_uncached" in letter_for(f"{run}-mixed".encode())
    for letter in letters:
        assert letter["topic"] == settings.kafka_usage_topic
        assert letter["offset"] >= 0
    assert worker.metrics.events_dead_lettered >= 6


def test_a_store_outage_pauses_consumption_and_loses_nothing(
    worker: ThreadedWorker, settings: Settings, chdb_client: Client
) -> None:
    run = run_id()
    events = make_events(run, 1_500, seed=14)
    errors_before = worker.metrics.sink_errors
    chdb_client.command("DETACH TABLE usage_events")
    try:
        produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
        wait_for(lambda: worker.metrics.sink_errors >= errors_before + 3, JOIN_TIMEOUT_S, "failed inserts")
    finally:
        chdb_client.command("ATTACH TABLE usage_events")
    wait_for(lambda: stored_count(chdb_client, run) >= len(events), 60, "the backlog after the outage")
    assert stored(chdb_client, run) == expected_totals(events)
    raw = chdb_client.query(
        "SELECT count() FROM usage_events WHERE startsWith(event_id, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows[0][0]
    assert raw == len(events)  # not even a duplicate row to collapse
    total = expected_totals(events)["effective_cost"]
    wait_for(lambda: rollup_daily_total(chdb_client, run) == total, 30, "rollups after the outage")
