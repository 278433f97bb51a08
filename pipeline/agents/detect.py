"""The detect agent: signals of one workload per message → detectors → `anomalies` rows.

The ingest agent forwards the signals of newly stored events, keyed `team/workload`, so one
workload's calls always arrive on one partition of the signals topic, in order. Detector state
lives in four Faust tables co-partitioned with that topic and backed by changelog topics, so it
survives restarts and follows partitions on a rebalance: workload baselines, prompt prefixes,
agent runs, and anomaly records. Tables are only changed inside the agent (Faust's rule); the
flush timer only reads them and writes the anomalies that changed through the store thread,
about once a second. A record resolved long ago is dropped from its table only after the store
confirmed its last version, and every record still in the tables is re-written after a restart,
so a crash between a table update and a store write loses no anomaly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust
from faust.types import EventT, StreamT
from faust.web import Request, Response, View
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from costline.pipeline.detectors.anomalies import Record
from costline.pipeline.detectors.config import DetectorsConfig, load_detectors_config
from costline.pipeline.detectors.engine import process, sweep_idle
from costline.pipeline.detectors.signals import SignalFormatError, SignalForwarder, decode_batch
from costline.pipeline.store.anomalies import write_anomalies
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.pipeline.worker import Worker

logger = logging.getLogger(__name__)

#: Anomalies are written to the store this often.
FLUSH_INTERVAL_S = 1.0
#: Every this many flushes, records whose stored version is unknown are written again.
FULL_FLUSH_EVERY = 30
#: Quiet workloads of a partition are swept when its event time advanced this much.
IDLE_SWEEP_MS = 60_000
#: ... and only those whose last message is at least this old (wall clock seconds).
IDLE_WALL_S = 30.0
_SEP = "\x1f"


@dataclass
class DetectorTables:
    """The detectors' Faust tables (JSON keys and values)."""

    workloads: Any
    prefixes: Any
    sessions: Any
    anomalies: Any


@dataclass
class DetectorMetrics:
    """Counters of the detect agent, served at /detectors."""

    messages: int = 0
    signals: int = 0
    bad_messages: int = 0
    errors: int = 0
    anomalies_written: int = 0
    flush_errors: int = 0


@dataclass
class AnomalyOutbox:
    """Records waiting to be written, and the versions the store has confirmed."""

    pending: dict[str, Record] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)
    flushes: int = 0

    def add(self, records: list[Record]) -> None:
        for record in records:
            known = self.pending.get(record["anomaly_id"])
            if known is None or record["version"] >= known["version"]:
                self.pending[record["anomaly_id"]] = dict(record)


class TableState:
    """`StateAccess` over the tables for one workload.

    Writes are buffered (and read back from the buffer) until `commit`, so a value changed many
    times while one message is processed becomes one changelog message.
    """

    def __init__(self, tables: DetectorTables, key: str, outbox: AnomalyOutbox) -> None:
        self.tables = tables
        self.key = key
        self.outbox = outbox
        self._writes: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _get(self, name: str, table: Any, key: str) -> Any:
        buffered = self._writes.get((name, key))
        if buffered is not None:
            return buffered[1]
        return table.get(key)

    def _put(self, name: str, table: Any, key: str, value: Any) -> None:
        self._writes[(name, key)] = (table, value)

    def workload(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._get("w", self.tables.workloads, self.key)
        return value

    def set_workload(self, value: dict[str, Any]) -> None:
        self._put("w", self.tables.workloads, self.key, value)

    def prefix(self, prefix_hash: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._get("p", self.tables.prefixes, self.key + _SEP + prefix_hash)
        return value

    def set_prefix(self, prefix_hash: str, value: dict[str, Any]) -> None:
        self._put("p", self.tables.prefixes, self.key + _SEP + prefix_hash, value)

    def drop_prefix(self, prefix_hash: str) -> None:
        self._put("p", self.tables.prefixes, self.key + _SEP + prefix_hash, None)

    def session(self, run_key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._get("s", self.tables.sessions, self.key + _SEP + run_key)
        return value

    def set_session(self, run_key: str, value: dict[str, Any]) -> None:
        self._put("s", self.tables.sessions, self.key + _SEP + run_key, value)

    def drop_session(self, run_key: str) -> None:
        self._put("s", self.tables.sessions, self.key + _SEP + run_key, None)

    def anomaly(self, anomaly: str) -> Record | None:
        value: Record | None = self._get("a", self.tables.anomalies, anomaly)
        return value

    def set_anomaly(self, anomaly: str, record: Record) -> None:
        self._put("a", self.tables.anomalies, anomaly, record)

    def drop_anomaly(self, anomaly: str) -> bool:
        record = self.anomaly(anomaly)
        if record is not None and self.outbox.confirmed.get(anomaly) != record["version"]:
            return False
        self._put("a", self.tables.anomalies, anomaly, None)
        self.outbox.confirmed.pop(anomaly, None)
        return True

    def commit(self) -> None:
        """Apply the writes: one changelog message per changed key."""
        for (_, key), (table, value) in self._writes.items():
            if value is None:
                if key in table:
                    del table[key]
            else:
                table[key] = value
        self._writes.clear()


@dataclass
class DetectAgent:
    """What the agent keeps between messages: config, tables, outbox and partition clocks."""

    config: DetectorsConfig
    tables: DetectorTables
    outbox: AnomalyOutbox = field(default_factory=AnomalyOutbox)
    metrics: DetectorMetrics = field(default_factory=DetectorMetrics)
    clocks: dict[int, int] = field(default_factory=dict)
    swept_at: dict[int, int] = field(default_factory=dict)
    #: Workload keys seen per partition, with when (monotonic seconds) their last message came.
    keys: dict[int, dict[str, float]] = field(default_factory=dict)

    def handle(self, event: EventT[bytes]) -> None:
        """Process one signals message (inside the stream: tables may be changed)."""
        self.metrics.messages += 1
        key = (event.key or b"").decode("utf-8", "replace")
        try:
            signals = decode_batch(event.value)
        except SignalFormatError as exc:
            self.metrics.bad_messages += 1
            logger.warning("skipping signals message at offset %s: %s", event.message.offset, exc)
            return
        if not signals:
            return
        now_ms = int(time.time() * 1000)
        partition = event.message.partition
        state = TableState(self.tables, key, self.outbox)
        self.outbox.add(process(self.config, state, signals, now_ms))
        state.commit()
        self.metrics.signals += len(signals)
        known = self.keys.setdefault(partition, {})
        known[key] = time.monotonic()
        clock = self.clocks[partition] = max(self.clocks.get(partition, 0), max(s.at_ms for s in signals))
        if clock - self.swept_at.get(partition, 0) >= IDLE_SWEEP_MS:
            self.swept_at[partition] = clock
            # only workloads that really went quiet: one being backfilled still sends (its event time
            # may trail the partition's by days, and must not be pushed past its own calls)
            quiet_since = time.monotonic() - IDLE_WALL_S
            for other in [k for k, seen in known.items() if seen <= quiet_since]:
                quiet = TableState(self.tables, other, self.outbox)
                self.outbox.add(sweep_idle(self.config, quiet, clock, now_ms))
                quiet.commit()

    async def flush(self, worker: Worker) -> None:
        """Write pending records (and, now and then, any record not known to be stored)."""
        outbox = self.outbox
        if outbox.flushes % FULL_FLUSH_EVERY == 0:
            for anomaly, record in list(self.tables.anomalies.items()):
                if outbox.confirmed.get(anomaly) != record["version"]:
                    outbox.add([record])
        outbox.flushes += 1
        if not outbox.pending:
            return
        batch, outbox.pending = outbox.pending, {}
        try:
            written = await worker.sink.call(write_anomalies, worker.client, list(batch.values()))
        except Exception:  # retried on the next tick; the records are still in the tables
            self.metrics.flush_errors += 1
            logger.warning("writing %d anomalies failed; retrying", len(batch), exc_info=True)
            outbox.add(list(batch.values()))
            return
        self.metrics.anomalies_written += written
        for anomaly, record in batch.items():
            outbox.confirmed[anomaly] = record["version"]


def signals_partitions(settings: Settings, timeout_ms: int = 5_000) -> int:
    """Partitions of the signals topic as it exists (tables must match it), else the setting."""
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="costline-detect",
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        logger.warning(
            "cannot look up %s (%s); assuming %d partitions",
            settings.kafka_signals_topic,
            exc,
            settings.kafka_partitions,
        )
        return settings.kafka_partitions
    try:
        if settings.kafka_signals_topic not in admin.list_topics():
            return settings.kafka_partitions
        described = admin.describe_topics([settings.kafka_signals_topic])
        found = len(described[0].get("partitions") or []) if described else 0
    except KafkaError as exc:
        logger.warning("cannot describe %s (%s)", settings.kafka_signals_topic, exc)
        return settings.kafka_partitions
    finally:
        admin.close()
    if found and found != settings.kafka_partitions:
        logger.warning(
            "signals topic %s has %d partitions, not %d; the detector tables follow the topic",
            settings.kafka_signals_topic,
            found,
            settings.kafka_partitions,
        )
    return found or settings.kafka_partitions


def register_detectors(worker: Worker) -> None:
    """Signals topic, detector tables, the detect agent, the flush timer and /detectors."""
    settings, app = worker.settings, worker.app
    config = load_detectors_config(settings.detectors_path)
    partitions = signals_partitions(settings)
    topic = app.topic(settings.kafka_signals_topic, value_type=bytes, key_type=bytes, partitions=partitions)
    schema: faust.Schema[Any, Any] = faust.Schema(key_serializer="json", value_serializer="json")

    def table(name: str) -> Any:
        return app.Table(f"costline-detect-{name}", default=None, partitions=partitions, schema=schema)

    tables = DetectorTables(table("workloads"), table("prefixes"), table("sessions"), table("anomalies"))
    agent = DetectAgent(config, tables)

    async def send(key: bytes, value: bytes) -> Any:
        return await topic.send(key=key, value=value)

    forwarder = SignalForwarder(send)
    worker.deps.signals = forwarder

    @app.agent(topic, name="costline.detect")
    async def detect(stream: StreamT[bytes]) -> AsyncIterator[int]:
        async for event in stream.events():
            try:
                agent.handle(event)
            except Exception:  # a detector bug must not stop the worker; the events are stored
                agent.metrics.errors += 1
                logger.exception("detectors failed on a signals message; skipped")
            yield 1

    @app.timer(interval=FLUSH_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def flush_anomalies() -> None:
        await agent.flush(worker)

    @app.page("/detectors")
    class DetectorsView(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    **agent.metrics.__dict__,
                    "signals_forwarded": forwarder.signals_sent,
                    "signal_messages_forwarded": forwarder.messages_sent,
                    "forward_errors": forwarder.errors,
                    "pending_anomalies": len(agent.outbox.pending),
                }
            )
