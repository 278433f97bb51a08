"""The detectors inside the real worker: demo traffic in, anomalies of every kind out, replays idempotent.

Kafka (the session's Tansu broker) → ingest agent → signals topic → detect agent with its Faust
tables → `anomalies` in the session's chDB store. Events are produced keyed by workload, the way a
hooked application's calls of one workload arrive in order.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver import Client
from kafka import KafkaProducer

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.ingest.demo import demo_events, expected_anomalies
from costline.ingest.wire import batch_messages
from costline.pipeline.store.anomalies import KINDS
from costline.schemas.settings import Settings
from costline.schemas.usage_event import UsageEvent
from tests.integration.conftest import unique_name, unused_port
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
        worker_group=unique_name("detect"),
        clickhouse_dsn=chdb_dsn,
        metrics_port=unused_port(),
        api_port=unused_port(),
        sink_flush_seconds=0.3,
        rollup_interval_s=5.0,
    )


@pytest.fixture(scope="module")
def worker(settings: Settings) -> Iterator[ThreadedWorker]:
    create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))
    running = ThreadedWorker(settings).start()
    yield running
    running.stop()


def demo(run: str) -> list[UsageEvent]:
    end = datetime.now(UTC) - timedelta(minutes=1)
    events = []
    for event in demo_events(2_000, seed=5, end=end, span=timedelta(hours=36)):
        attribution = event.attribution.model_copy(update={"team": f"{run}-{event.attribution.team}"})
        events.append(
            event.model_copy(update={"event_id": f"{run}-{event.event_id}", "attribution": attribution})
        )
    return events


def produce_by_workload(bootstrap: str, topic: str, events: list[UsageEvent]) -> None:
    by_workload: dict[str, list[UsageEvent]] = defaultdict(list)
    for event in events:
        by_workload[f"{event.attribution.team}/{event.attribution.workload}"].append(event)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2_000_000)
    try:
        for key, group in by_workload.items():
            for message in batch_messages(group, max_events=100):
                producer.send(topic, message, key=key.encode())
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def stored_events(client: Client, run: str) -> int:
    rows = client.query(
        "SELECT count() FROM usage_events FINAL WHERE startsWith(event_id, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows
    return int(rows[0][0])


def anomaly_rows(client: Client, run: str) -> dict[str, tuple[str, str, str, int, int]]:
    rows = client.query(
        "SELECT anomaly_id, kind, cause, workload, calls, version FROM anomalies FINAL "
        "WHERE startsWith(team, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows
    return {row[0]: (row[1], row[2], row[3], int(row[4]), int(row[5])) for row in rows}


def test_demo_traffic_yields_every_kind_and_a_replay_adds_no_rows(
    worker: ThreadedWorker, settings: Settings, chdb_client: Client
) -> None:
    run = f"d{uuid.uuid4().hex[:8]}"
    events = demo(run)
    expected = expected_anomalies(events)
    produce_by_workload(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
    wait_for(
        lambda: (worker.check(), stored_events(chdb_client, run))[1] >= len(events),
        JOIN_TIMEOUT_S,
        "the demo events in ClickHouse",
    )

    def every_expected_anomaly() -> bool:
        worker.check()
        found = {
            (kind, cause, workload) for kind, cause, workload, _, _ in anomaly_rows(chdb_client, run).values()
        }
        return all(
            (kind, cause, w) in found for (kind, cause), workloads in expected.items() for w in workloads
        )

    try:
        wait_for(every_expected_anomaly, JOIN_TIMEOUT_S, f"anomalies {sorted(expected)}")
    except AssertionError:  # say what was found, and what the detect agent counted
        print(sorted({row[:3] for row in anomaly_rows(chdb_client, run).values()}))
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/detectors", timeout=5) as page:
            print(page.read().decode())
        raise
    first = anomaly_rows(chdb_client, run)
    assert {kind for kind, _, _, _, _ in first.values()} == set(KINDS)
    loop = [row for row in first.values() if row[0] == "agent_loop"]
    assert [row[3] for row in loop] == [40]

    # the same events again: the ingest agent drops them as duplicates, the detectors never see them
    duplicates_before = worker.metrics.duplicates_dropped
    produce_by_workload(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
    wait_for(
        lambda: (worker.check(), worker.metrics.duplicates_dropped - duplicates_before)[1] >= len(events),
        JOIN_TIMEOUT_S,
        "the replay to be consumed",
    )
    wait_for(lambda: anomaly_rows(chdb_client, run) == first, 10, "the flushes after the replay to settle")
    assert stored_events(chdb_client, run) == len(events)
    assert anomaly_rows(chdb_client, run) == first
