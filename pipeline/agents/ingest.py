"""The ingest agent: Kafka envelopes → validated, deduped, priced rows in ClickHouse, or dead letters.

Per batch from `take_events`: process (pure), send dead letters and wait for their delivery,
insert the priced rows (retrying until the store accepts them), remember the ids, then forward the
new events' signals to the detectors (when registered). The batch is acknowledged when the loop
body returns, so offsets never run ahead of durable writes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import EventT, StreamT

from costline.pipeline.detectors.signals import SignalForwarder
from costline.pipeline.metrics import WorkerMetrics
from costline.pipeline.processing import DeadLetter, EventProcessor, ProcessedBatch, SourceMessage
from costline.pipeline.sink import StoreSink
from costline.pipeline.store.rows import priced_event_to_row
from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)


@dataclass
class IngestDeps:
    """What the agent needs, built once per worker."""

    processor: EventProcessor
    sink: StoreSink
    dlq: faust.TopicT
    metrics: WorkerMetrics
    batch_messages: int
    flush_seconds: float
    #: Set by `register_detectors`: forwards the signals of newly stored events to the detectors.
    signals: SignalForwarder | None = None


def source_message(event: EventT[bytes]) -> SourceMessage:
    """The bytes and Kafka position of a Faust event."""
    message = event.message
    return SourceMessage(event.value, message.topic, message.partition, message.offset)


def to_rows(batch: ProcessedBatch) -> list[list[object]]:
    """Rows for the priced events; an event the store cannot represent becomes a dead letter."""
    rows: list[list[object]] = []
    kept = []
    for priced, message in batch.priced:
        try:
            rows.append(
                priced_event_to_row(priced, kafka_partition=message.partition, kafka_offset=message.offset)
            )
            kept.append((priced, message))
        except StoreError as exc:
            original = priced.event.model_dump_json().encode()
            batch.dead_letters.append(
                DeadLetter(
                    f"cannot store event: {exc}", original, message.topic, message.partition, message.offset
                )
            )
    batch.priced = kept
    return rows


async def send_dead_letters(dlq: faust.TopicT, dead_letters: Sequence[DeadLetter]) -> None:
    """Produce dead letters and wait until the broker has them, before the batch is acknowledged."""
    pending = [await dlq.send(value=letter.to_bytes()) for letter in dead_letters]
    for future in pending:
        await future


def count(metrics: WorkerMetrics, batch: ProcessedBatch) -> None:
    """Update the counters for one written batch."""
    statuses = [priced.status for priced, _ in batch.priced]
    metrics.events_priced += statuses.count("priced")
    metrics.events_partial += statuses.count("partial")
    metrics.events_unpriced += statuses.count("unpriced")
    metrics.duplicates_dropped += batch.duplicates
    whole = sum(1 for letter in batch.dead_letters if letter.event_index is None)
    metrics.messages_dead_lettered += whole
    metrics.events_dead_lettered += len(batch.dead_letters) - whole
    metrics.events_in += len(statuses) + batch.duplicates + len(batch.dead_letters) - whole


async def handle_batch(deps: IngestDeps, events: Sequence[EventT[bytes]]) -> ProcessedBatch:
    """Everything one batch goes through before it may be acknowledged."""
    batch = deps.processor.process([source_message(event) for event in events])
    rows = to_rows(batch)
    await send_dead_letters(deps.dlq, batch.dead_letters)
    await deps.sink.write(rows)
    deps.processor.recent.remember(batch.event_ids)
    if deps.signals is not None:  # after the write: only stored, new events reach the detectors
        await deps.signals.forward(deps.processor.pricer, [priced for priced, _ in batch.priced])
    count(deps.metrics, batch)
    return batch


def register_ingest_agent(app: faust.App, topic: faust.TopicT, deps: IngestDeps) -> faust.types.AgentT[Any]:
    """Attach the ingest agent to `app`, reading `topic`."""

    @app.agent(topic, name="costline.ingest")
    async def ingest(stream: StreamT[bytes]) -> AsyncIterator[int]:
        # take_events exists on faust.Stream but is missing from the StreamT protocol
        batches = stream.take_events(deps.batch_messages, within=deps.flush_seconds)  # type: ignore[attr-defined]
        async for events in batches:
            batch = await handle_batch(deps, events)
            yield len(batch.priced)

    return ingest
