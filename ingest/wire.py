"""The Kafka wire format of usage events: a versioned JSON envelope carrying a batch of events.

One Kafka message holds many events (per-message overhead in the stream processor dominates
otherwise); validation, dedupe, pricing and dead-lettering stay per event. Layout::

    {"v": 1, "events": [<UsageEvent JSON>, ...]}

The envelope is decoded in two steps so one bad event never takes its neighbours down:
`decode_envelope` checks the outer shape and returns the events as raw objects; the consumer
validates each one against `UsageEvent` on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from costline.schemas.errors import CostlineError
from costline.schemas.usage_event import UsageEvent

WIRE_VERSION = 1
#: Largest message the producer builds; Kafka's default max.message.bytes is about 1 MB.
MAX_MESSAGE_BYTES = 900_000


class WireFormatError(CostlineError):
    """A Kafka message is not a costline envelope; the message says what was found instead."""


def encode_events(events: Iterable[UsageEvent]) -> bytes:
    """One envelope holding `events` (the caller keeps batches under MAX_MESSAGE_BYTES)."""
    return _envelope([event.model_dump_json(exclude_defaults=True) for event in events])


def batch_messages(events: Iterable[UsageEvent], *, max_events: int = 500) -> list[bytes]:
    """Split events into envelopes of at most `max_events` events and MAX_MESSAGE_BYTES bytes."""
    messages: list[bytes] = []
    chunk: list[str] = []
    size = 0
    for event in events:
        encoded = event.model_dump_json(exclude_defaults=True)
        if chunk and (len(chunk) >= max_events or size + len(encoded) > MAX_MESSAGE_BYTES):
            messages.append(_envelope(chunk))
            chunk, size = [], 0
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        messages.append(_envelope(chunk))
    return messages


def _envelope(encoded_events: list[str]) -> bytes:
    return b'{"v":%d,"events":[%s]}' % (WIRE_VERSION, ",".join(encoded_events).encode())


def decode_envelope(value: bytes | None) -> list[Any]:
    """The raw events of an envelope; WireFormatError when the message is not one."""
    if not value:
        raise WireFormatError('empty message: expected a costline envelope {"v": 1, "events": [...]}')
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireFormatError(f"message is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise WireFormatError(f"expected a JSON object envelope, got {type(document).__name__}")
    version = document.get("v")
    if version != WIRE_VERSION:
        raise WireFormatError(f"unsupported envelope version {version!r}; this worker reads v{WIRE_VERSION}")
    events = document.get("events")
    if not isinstance(events, list):
        raise WireFormatError("envelope has no `events` list")
    return events
