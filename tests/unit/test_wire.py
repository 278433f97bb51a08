"""The Kafka envelope: batches round-trip, malformed messages get a clear WireFormatError."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from costline.ingest.demo import demo_events
from costline.ingest.wire import (
    MAX_MESSAGE_BYTES,
    WireFormatError,
    batch_messages,
    decode_envelope,
    encode_events,
)
from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_batch_round_trips_event_for_event() -> None:
    events = list(demo_events(50, end=END))
    raw = decode_envelope(encode_events(events))
    assert [UsageEvent.model_validate(r, context={CHECK_TIME_WINDOW: False}) for r in raw] == events


def test_batching_respects_the_event_and_byte_limits() -> None:
    events = list(demo_events(1_234, end=END))
    messages = batch_messages(events, max_events=100)
    assert len(messages) == 13
    assert all(len(m) <= MAX_MESSAGE_BYTES for m in messages)
    decoded = [e["event_id"] for m in messages for e in decode_envelope(m)]
    assert decoded == [e.event_id for e in events]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty message"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"{not json", "not valid UTF-8 JSON"),
        (b"[1, 2]", "JSON object envelope"),
        (json.dumps({"v": 2, "events": []}).encode(), "unsupported envelope version 2"),
        (json.dumps({"v": 1}).encode(), "no `events` list"),
    ],
)
def test_malformed_messages_say_what_is_wrong(value: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        decode_envelope(value)


def test_one_bad_event_does_not_hide_the_others() -> None:
    good = next(demo_events(1, end=END)).model_dump(mode="json")
    raw = decode_envelope(json.dumps({"v": 1, "events": [good, {"event_id": 5}, "x"]}).encode())
    assert len(raw) == 3
    assert raw[0] == good
