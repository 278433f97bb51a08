"""Per-event work of the stream: decode the envelope, validate, dedupe, price, or dead-letter.

Pure and synchronous, so the Faust agent stays a thin loop and this logic is unit-tested alone.
One bad event in an envelope is dead-lettered on its own; its neighbours go on.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError

from costline.ingest.wire import WireFormatError, decode_envelope
from costline.pipeline.pricing import Pricer
from costline.schemas.errors import describe_validation_error
from costline.schemas.priced_event import PricedEvent
from costline.schemas.usage_event import UsageEvent

#: Largest original payload copied into a dead letter; the source offset points at the rest.
MAX_DEAD_LETTER_ORIGINAL = 512_000


@dataclass(frozen=True)
class SourceMessage:
    """A Kafka message as the processor needs it: bytes and where they came from."""

    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class DeadLetter:
    """Why a message (or one event inside it) could not be used, and where it came from."""

    reason: str
    original: bytes
    topic: str
    partition: int
    offset: int
    event_index: int | None = None

    def to_bytes(self) -> bytes:
        """The DLQ record: JSON with the original bytes in base64 (truncated past a limit)."""
        original = self.original[:MAX_DEAD_LETTER_ORIGINAL]
        return json.dumps(
            {
                "reason": self.reason,
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "event_index": self.event_index,
                "original_b64": base64.b64encode(original).decode(),
                "original_bytes": len(self.original),
                "original_truncated": len(original) < len(self.original),
                "dead_lettered_at": datetime.now(UTC).isoformat(),
            }
        ).encode()


@dataclass
class ProcessedBatch:
    """What one batch of messages turned into."""

    priced: list[tuple[PricedEvent, SourceMessage]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0

    @property
    def event_ids(self) -> list[str]:
        """Ids of the events to be written."""
        return [priced.event.event_id for priced, _ in self.priced]


class RecentEventIds:
    """A bounded memory of event ids already written, to drop redeliveries before they cost an insert.

    Exactness never depends on it (the store collapses duplicates); it only saves work, so losing it on
    restart is fine.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def remember(self, event_ids: Iterable[str]) -> None:
        """Record ids after their write succeeded, forgetting the oldest beyond capacity."""
        for event_id in event_ids:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


class _Envelope(BaseModel):
    """The fast path's view of a wire envelope (see `costline.ingest.wire`)."""

    v: Literal[1]
    events: list[UsageEvent]


_ENVELOPE = TypeAdapter(_Envelope)


class EventProcessor:
    """Turns Kafka messages into priced events and dead letters."""

    def __init__(self, pricer: Pricer, recent: RecentEventIds | None = None) -> None:
        self.pricer = pricer
        self.recent = recent if recent is not None else RecentEventIds()

    def process(self, messages: Sequence[SourceMessage]) -> ProcessedBatch:
        """Decode, validate, dedupe (within the batch and against recent writes) and price."""
        batch = ProcessedBatch()
        seen: set[str] = set()
        for message in messages:
            for event in self._events(message, batch):
                if event.event_id in seen or event.event_id in self.recent:
                    batch.duplicates += 1
                    continue
                seen.add(event.event_id)
                batch.priced.append((self.pricer.price(event), message))
        return batch

    def _events(self, message: SourceMessage, batch: ProcessedBatch) -> list[UsageEvent]:
        """The valid events of a message; the bad ones (or the whole message) go to dead letters.

        The common case, a well-formed envelope, is parsed and validated in one call inside
        pydantic-core; only a message that fails is taken apart event by event to find the culprits.
        """
        if message.value:
            try:
                return _ENVELOPE.validate_json(message.value).events
            except ValidationError:
                pass
        try:
            raw_events = decode_envelope(message.value)
        except WireFormatError as exc:
            batch.dead_letters.append(self._dead(str(exc), message.value or b"", message))
            return []
        events = []
        for index, raw in enumerate(raw_events):
            event = self._validate(raw, index, message, batch)
            if event is not None:
                events.append(event)
        return events

    def _validate(
        self, raw: Any, index: int, message: SourceMessage, batch: ProcessedBatch
    ) -> UsageEvent | None:
        try:
            if not isinstance(raw, dict):
                raise TypeError(f"event {index} is a JSON {type(raw).__name__}, not an object")
            return UsageEvent.model_validate(raw)
        except ValidationError as exc:
            reason = f"invalid event: {describe_validation_error(exc)}"
        except (TypeError, ValueError) as exc:
            reason = f"invalid event: {exc}"
        original = json.dumps(raw, default=str).encode()
        batch.dead_letters.append(self._dead(reason, original, message, index))
        return None

    @staticmethod
    def _dead(reason: str, original: bytes, message: SourceMessage, index: int | None = None) -> DeadLetter:
        return DeadLetter(reason, original, message.topic, message.partition, message.offset, index)
