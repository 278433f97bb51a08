"""`costline ingest tail` against the real broker: backfill, restart, append — every event exactly once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from costline.broker import LocalBroker, create_topics
from costline.ingest.gateways import litellm
from costline.ingest.tail import CheckpointStore, KafkaSender, Tail
from costline.ingest.wire import decode_envelope
from tests.integration.conftest import unique_name

pytestmark = pytest.mark.integration

PARTITIONS = 2
STARTED = float(int(time.time()) - 3_600)


def payload(call_id: str) -> str:
    record: dict[str, Any] = {
        "id": f"chatcmpl-{call_id}",
        "litellm_call_id": call_id,
        "call_type": "acompletion",
        "status": "success",
        "custom_llm_provider": "openai",
        "model": "gpt-5-mini",
        "model_group": "gpt-5-mini",
        "prompt_tokens": 1_000,
        "completion_tokens": 100,
        "response_cost": 0.00045,
        "startTime": STARTED,
        "endTime": STARTED + 0.8,
        "metadata": {"user_api_key_team_alias": "search"},
    }
    return json.dumps(record) + "\n"


def read_event_ids(bootstrap: str, topic: str) -> list[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        assigned = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return [event["event_id"] for record in consumer for event in decode_envelope(record.value)]
    finally:
        consumer.close()


def run_tail(log: Path, store: CheckpointStore, bootstrap: str, topic: str) -> int:
    sender = KafkaSender(bootstrap, topic, timeout=20)
    tail = Tail([log], litellm.ADAPTER, store, sender, batch_events=25)
    try:
        return tail.run().events
    finally:
        tail.close()
        sender.close()


def test_tail_restart_and_append_deliver_each_event_exactly_once(broker: LocalBroker, tmp_path: Path) -> None:
    topic = unique_name("ingest-tail")
    create_topics(broker.bootstrap_servers, {topic: PARTITIONS})
    log = tmp_path / "litellm.jsonl"
    store = CheckpointStore(tmp_path / "checkpoints")
    log.write_text(
        "".join(payload(f"first-{n}") for n in range(60)) + '{"level": "info"}\n', encoding="utf-8"
    )

    assert run_tail(log, store, broker.bootstrap_servers, topic) == 60
    assert run_tail(log, store, broker.bootstrap_servers, topic) == 0  # restart: nothing re-sent
    with log.open("a", encoding="utf-8") as stream:
        stream.write("".join(payload(f"second-{n}") for n in range(15)))
    assert run_tail(log, store, broker.bootstrap_servers, topic) == 15

    delivered = read_event_ids(broker.bootstrap_servers, topic)
    expected = [f"litellm:first-{n}" for n in range(60)] + [f"litellm:second-{n}" for n in range(15)]
    assert sorted(delivered) == sorted(expected)  # each exactly once
