"""Crash safety: SIGKILLed workers and a producer that re-sends never change a total.

The worker runs as a child process on its own chDB path (the test process may own the session
store), so the test reads the result through a probe process once the last worker stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name, unused_port
from tests.integration.pipeline_data import (
    expected_by_team_hour,
    expected_totals,
    make_events,
    produce_events,
)
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ProcessWorker, wait_for

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("store_probe.py")


def all_committed(settings: Settings) -> bool:
    """Whether the worker group has committed every partition of the usage topic up to its end."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        partitions = [TopicPartition(settings.kafka_usage_topic, p) for p in range(settings.kafka_partitions)]
        committed = admin.list_group_offsets({settings.worker_group: partitions})[settings.worker_group]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
        admin.close()
    return all(tp in committed and (committed[tp].offset or 0) >= ends[tp] for tp in partitions)


def test_sigkilled_workers_and_resent_events_leave_exact_totals(broker: LocalBroker, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_usage_topic=unique_name("usage"),
        kafka_dlq_topic=unique_name("dlq"),
        kafka_signals_topic=unique_name("signals"),
        kafka_partitions=3,
        worker_group=unique_name("crash"),
        clickhouse_dsn=f"chdb://{(tmp_path / 'store').resolve()}",
        metrics_port=unused_port(),
        api_port=unused_port(),
        sink_batch_messages=4,
        sink_flush_seconds=0.2,
        rollup_interval_s=0.5,
        kafka_session_timeout_s=3.0,
    )
    create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))
    run = f"c{int(time.time())}"
    events = make_events(run, 12_000, seed=21)
    resent = events[3_000:5_000]

    # a steady stream over ~45 s, so both kills land mid-stream (a rejoin after a kill takes 5-20 s)
    def stream() -> None:
        for start in range(0, len(events), 200):
            produce_events(
                settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events[start : start + 200]
            )
            time.sleep(0.75)
        produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, resent, per_message=53)

    producer = threading.Thread(target=stream)
    producer.start()
    log = tmp_path / "worker.log"
    try:
        for kill in range(2):
            worker = ProcessWorker(settings, log).start()
            target = (kill + 1) * 1_500
            wait_for(
                lambda w=worker, t=target: w.metrics().get("costline_worker_sink_rows", 0) >= 1,
                JOIN_TIMEOUT_S,
                f"worker {kill + 1} to write its first batch",
            )
            time.sleep(0.5 + kill)
            assert producer.is_alive(), "the kill must land mid-stream"
            worker.kill()
        producer.join(timeout=120)
        final = ProcessWorker(settings, log).start()
        try:

            def caught_up() -> bool:
                metrics = final.metrics()
                lags = [v for k, v in metrics.items() if k.startswith("costline_worker_consumer_lag")]
                # every partition's lag known (fetched) and zero, not just the first ones assigned
                return (
                    len(lags) == settings.kafka_partitions
                    and sum(lags) == 0
                    and metrics.get("costline_worker_sink_rows", 0) > 0
                )

            wait_for(caught_up, JOIN_TIMEOUT_S + 60, "the last worker to drain the topic")
            # read is not written: offsets are committed only after a batch is in the store
            wait_for(lambda: all_committed(settings), 60, "the last worker to commit every offset")
            refreshes = final.metrics()["costline_worker_rollup_refreshes"]
            wait_for(
                lambda: final.metrics().get("costline_worker_rollup_refreshes", 0) > refreshes,
                30,
                "a rollup refresh after the drain",
            )
        finally:
            final.stop()
    except AssertionError:
        print(log.read_text(errors="replace")[-5_000:])
        raise

    probe = json.loads(
        subprocess.run(
            [sys.executable, str(PROBE), settings.resolved_clickhouse_dsn(), run],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    expected = expected_totals(events)
    assert probe["events"] == len(events)
    assert Decimal(probe["effective_cost"]) == expected["effective_cost"]
    assert probe["raw_rows"] >= len(events)  # duplicates may exist on disk; FINAL and rollups ignore them
    by_hour = {
        (team, hour): cost
        for (team, hour), cost in ((k, v) for k, v in expected_by_team_hour(events).items())
    }
    stored_hours = {(team, hour): Decimal(cost) for team, hour, cost, _ in probe["hourly"]}
    assert stored_hours == {
        (team, hour.strftime("%Y-%m-%d %H:%M:%S")): cost for (team, hour), cost in by_hour.items()
    }
    assert Decimal(probe["daily_cost"]) == expected["effective_cost"]
    assert probe["daily_events"] == len(events)
