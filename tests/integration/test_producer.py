"""The background producer against real brokers: delivery, and "broker down → spool → broker up".

The outage test runs a broker of its own, started only after the first producer has spooled its
events against the (then dead) port and exited, and proves every event is stored exactly once by
the real worker (in a thread, on the session's chDB store).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from kafka import KafkaConsumer, TopicPartition

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.ingest.producer import BackgroundProducer
from costline.ingest.spool import Spool
from costline.ingest.wire import decode_envelope
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name, unused_port
from tests.integration.pipeline_data import make_events
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for

pytestmark = pytest.mark.integration

SPOOL_BYTES = 64 * 1024 * 1024


def topic_event_ids(bootstrap: str, topic: str) -> Counter[str]:
    """Every event id on `topic`, read from the beginning of each partition, with multiplicity."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return Counter(event["event_id"] for record in consumer for event in decode_envelope(record.value))
    finally:
        consumer.close()


def stored_count(client: Client, run: str) -> int:
    rows = client.query(
        "SELECT count() FROM usage_events FINAL WHERE startsWith(event_id, {run:String})",
        parameters={"run": f"{run}-"},
    ).result_rows
    return int(rows[0][0])


def test_every_emitted_event_reaches_the_topic(broker: LocalBroker, tmp_path: Path) -> None:
    topic = unique_name("producer")
    create_topics(broker.bootstrap_servers, {topic: 3})
    events = make_events(f"p{uuid.uuid4().hex[:8]}", 3_000, seed=31)
    producer = BackgroundProducer(
        broker.bootstrap_servers, topic, spool=Spool(tmp_path / "spool", SPOOL_BYTES), exit_timeout_s=None
    )
    try:
        for event in events:
            producer.emit(event)
        assert producer.flush(timeout=30)
        stats = producer.stats()
    finally:
        producer.close(timeout=10)
    assert (stats["sent"], stats["spooled"], stats["dropped"]) == (3_000, 0, 0)
    assert topic_event_ids(broker.bootstrap_servers, topic) == Counter(e.event_id for e in events)


def test_broker_down_then_up_after_a_restart_loses_nothing_and_stores_once(
    tmp_path: Path, chdb_dsn: str, chdb_client: Client, record_property: Callable[[str, object], None]
) -> None:
    port = unused_port()
    bootstrap = f"127.0.0.1:{port}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_usage_topic=unique_name("usage"),
        kafka_dlq_topic=unique_name("dlq"),
        kafka_signals_topic=unique_name("signals"),
        kafka_partitions=3,
        worker_group=unique_name("producer-worker"),
        clickhouse_dsn=chdb_dsn,
        metrics_port=unused_port(),
        api_port=unused_port(),
        sink_flush_seconds=0.3,
        rollup_interval_s=1.0,
    )
    run = f"s{uuid.uuid4().hex[:8]}"
    events = make_events(run, 4_000, seed=32)
    before, after = events[:2_500], events[2_500:]
    spool_dir = tmp_path / "spool"

    # 1. No broker on the port yet: the first "process" spools everything, then exits.
    first = BackgroundProducer(
        bootstrap,
        settings.kafka_usage_topic,
        spool=Spool(spool_dir, SPOOL_BYTES),
        connect_timeout_s=0.5,
        exit_timeout_s=None,
    )
    for event in before:
        first.emit(event)
    assert first.flush(timeout=30)
    first.close(timeout=10)
    assert first.stats()["spooled"] == len(before)
    assert first.stats()["sent"] == first.stats()["dropped"] == 0

    # 2. The broker comes up; a new process with the same spool replays it and sends new events.
    local = LocalBroker(port, binary=settings.broker_binary, log_path=tmp_path / "tansu.log")
    local.start()
    worker: ThreadedWorker | None = None
    try:
        create_topics(bootstrap, costline_topics(settings))
        second = BackgroundProducer(
            bootstrap, settings.kafka_usage_topic, spool=Spool(spool_dir, SPOOL_BYTES), exit_timeout_s=None
        )
        try:
            for event in after:
                second.emit(event)
            wait_for(lambda: second.stats()["replayed"] == len(before), 60, "the spool to be replayed")
            assert second.flush(timeout=30)
            stats = second.stats()
        finally:
            second.close(timeout=10)
        assert (stats["sent"], stats["replayed"], stats["dropped"]) == (len(after), len(before), 0)
        assert stats["spool_pending_bytes"] == 0

        # 3. Kafka holds every event (at-least-once: a duplicate would be allowed, and is counted).
        on_topic = topic_event_ids(bootstrap, settings.kafka_usage_topic)
        assert set(on_topic) == {e.event_id for e in events}
        record_property("kafka_duplicate_deliveries", sum(on_topic.values()) - len(on_topic))

        # 4. The real worker stores each event exactly once.
        worker = ThreadedWorker(settings).start()
        wait_for(
            lambda: (worker.check(), stored_count(chdb_client, run))[1] >= len(events),
            JOIN_TIMEOUT_S,
            "every event in ClickHouse",
        )
        assert stored_count(chdb_client, run) == len(events)
    finally:
        if worker is not None:
            worker.stop()
        local.stop()
    assert not list(spool_dir.glob("segment-*.spool"))
