"""Demo traffic through the real broker: everything it says it sent is on the topic, poison included."""

from __future__ import annotations

from collections import Counter

import pytest
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from costline.broker import LocalBroker, create_topics
from costline.ingest.traffic import MALFORMED_KINDS, run_demo_traffic
from costline.ingest.wire import WireFormatError, decode_envelope
from costline.schemas.usage_event import UsageEvent
from tests.integration.conftest import unique_name

pytestmark = pytest.mark.integration


def read_topic(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Every message of the topic, by offset and without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_two_seconds_of_traffic_arrive_complete_with_their_malformed_trickle(broker: LocalBroker) -> None:
    topic = unique_name("traffic")
    create_topics(broker.bootstrap_servers, {topic: 2})

    stats = run_demo_traffic(broker.bootstrap_servers, topic, rate=500, duration=2.0, malformed_every=200)

    messages = read_topic(broker.bootstrap_servers, topic, 2)
    assert stats.delivery_errors == 0
    assert len(messages) == stats.messages
    kinds: Counter[str] = Counter()
    valid: list[UsageEvent] = []
    invalid = 0
    for message in messages:
        try:
            raw_events = decode_envelope(message)
        except WireFormatError as exc:
            kinds["unknown_version" if "version" in str(exc) else "invalid_json"] += 1
            continue
        bad_here = 0
        for raw in raw_events:
            try:
                valid.append(UsageEvent.model_validate(raw))
            except ValidationError:
                bad_here += 1
        kinds["negative_tokens" if bad_here else "good"] += 1
        invalid += bad_here
    assert len(valid) == stats.events > 0
    assert len({event.event_id for event in valid}) == len(valid)
    assert all(event.event_id.startswith(f"traffic-{stats.run_id}-") for event in valid)
    assert invalid == stats.bad_events
    assert sum(kinds[kind] for kind in MALFORMED_KINDS) == stats.malformed_messages
    assert all(kinds[kind] > 0 for kind in MALFORMED_KINDS), kinds
