"""The background Kafka producer: a hook hands it an event in microseconds, one thread does the rest.

A hook runs inside someone else's request, so `BackgroundProducer.emit` only puts the event on a
bounded in-memory queue (`queue.Queue.put_nowait`) and returns: it never waits for Kafka, never
touches the disk and never raises. When the queue is full the event is dropped and counted; the
caller is never slowed down to save it.

One daemon sender thread does everything else:

* builds the kafka-python `KafkaProducer` (its constructor waits for the broker, so never on the
  caller's thread), retrying with capped exponential backoff until the broker answers;
* drains the queue in batches, encodes them into wire envelopes (`batch_messages`) and sends them
  with callbacks, never waiting on a future;
* writes envelopes to the on-disk spool (`costline.ingest.spool`) whenever they cannot go to Kafka:
  no broker, a send or a delivery that fails, no acknowledgement for `stall_s`, or too much
  already in flight;
* while Kafka is down, probes it with one spooled record at a time; once it answers, replays the
  spool oldest first, one round of records at a time, and moves the spool position only after the
  broker acknowledged the whole round.

Delivery is at-least-once: a batch replayed when the broker had in fact stored it, or an
in-flight envelope spooled at exit that still got through, reaches Kafka twice. `event_id`
makes the pipeline count it once. See docs/producer.md.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from costline.ingest.emit import EventSink
from costline.ingest.spool import Spool, SpoolBatch, SpoolError, open_slot
from costline.ingest.wire import batch_messages
from costline.schemas.settings import Settings
from costline.schemas.usage_event import UsageEvent

logger = logging.getLogger(__name__)

#: How long the interpreter-exit hook may spend sending (and then spooling) what is left.
DEFAULT_EXIT_TIMEOUT_S = 5.0
#: Events per Kafka message: many per message keep the stream processor fast (docs/pipeline.md).
DEFAULT_ENVELOPE_EVENTS = 500
#: Bound of the bytes handed to kafka-python and not acknowledged yet; more goes to the spool.
DEFAULT_MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024
#: Spool records sent per replay round (each round is acknowledged before the position moves).
REPLAY_RECORDS = 256
REPLAY_BYTES = 4 * 1024 * 1024
#: How often the idle sender looks at its flags (close, flush, backoff, replay progress).
_POLL_S = 0.1
_REPLAY_POLL_S = 0.002
_ACK_POLL_S = 0.005
_CLIENT_CLOSE_S = 0.5
_FIRST_BACKOFF_S = 0.5

#: kafka-python errors that mean "this message will never be accepted", not "Kafka is away".
_PERMANENT_ERRORS = (
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "CorruptRecordError",
    "InvalidTimestampError",
    "InvalidRecordError",
)

ProducerFactory = Callable[[dict[str, Any]], Any]
"""Builds the Kafka client from a kafka-python KafkaProducer config (tests pass a fake)."""


class ManagedSink(EventSink, Protocol):
    """An EventSink that reports what happened to the events and can be flushed and closed."""

    def stats(self) -> dict[str, int]: ...

    def flush(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> bool: ...

    def close(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> None: ...


def _kafka_producer(config: dict[str, Any]) -> Any:
    """The real client; imported here so that importing this module never loads kafka-python."""
    from kafka import KafkaProducer

    return KafkaProducer(**config)


def _is_permanent(exc: BaseException) -> bool:
    """True for errors about the message itself: retrying or spooling it can never help."""
    if isinstance(exc, TypeError | ValueError):
        return True
    return type(exc).__name__ in _PERMANENT_ERRORS


@dataclass(frozen=True)
class _Envelope:
    payload: bytes
    events: int


@dataclass(frozen=True)
class _InFlight:
    envelope: _Envelope
    sent_at: float


@dataclass
class _FlushRequest:
    deadline: float
    done: threading.Event
    ok: bool = False


class _ReplayRound:
    """One batch of spool records on their way to Kafka; settled by delivery callbacks."""

    def __init__(self, batch: SpoolBatch) -> None:
        self.batch = batch
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.pending = len(batch.records)
        self.failed = False
        self.rejected = 0

    def delivered(self, items: int, _metadata: object) -> None:
        self.settle(items, None)

    def settle(self, items: int, exc: BaseException | None) -> None:
        with self._lock:
            self.pending -= 1
            if exc is None:
                return
            if _is_permanent(exc):
                self.rejected += items
            else:
                self.failed = True

    @property
    def done(self) -> bool:
        return self.pending <= 0


class _Counters:
    """Event counts, shared by callers (drops), the sender and kafka-python's I/O thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent = 0
        self.spooled = 0
        self.replayed = 0
        self.dropped: dict[str, int] = dict.fromkeys(
            ("queue_full", "closed", "spool_full", "rejected", "invalid"), 0
        )

    def add(self, name: str, events: int) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + events)

    def drop(self, reason: str, events: int) -> None:
        with self.lock:
            self.dropped[reason] += events


class BackgroundProducer:
    """The EventSink hooks use in production: a bounded queue, one sender thread, a disk spool.

    `emit` costs a `queue.Queue.put_nowait` (about a microsecond). The producer owns `spool` and
    closes it on `close`; without a spool, events that cannot reach Kafka are dropped and counted.
    `exit_timeout_s` (None: no hook) bounds what the interpreter-exit hook spends on `close`.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        spool: Spool | None = None,
        queue_size: int = 100_000,
        envelope_events: int = DEFAULT_ENVELOPE_EVENTS,
        linger_s: float = 0.02,
        connect_timeout_s: float = 2.0,
        max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES,
        max_backoff_s: float = 10.0,
        stall_s: float = 5.0,
        exit_timeout_s: float | None = DEFAULT_EXIT_TIMEOUT_S,
        kafka_config: Mapping[str, Any] | None = None,
        producer_factory: ProducerFactory | None = None,
    ) -> None:
        if queue_size < 1 or envelope_events < 1:
            raise ValueError("queue_size and envelope_events must be positive")
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._spool = spool
        self._queue: queue.Queue[UsageEvent] = queue.Queue(maxsize=queue_size)
        self._envelope_events = envelope_events
        self._batch_events = envelope_events * 8
        self._linger_s = linger_s
        self._connect_timeout_s = connect_timeout_s
        self._max_in_flight_bytes = max_in_flight_bytes
        self._max_backoff_s = max_backoff_s
        self._stall_s = stall_s
        self._exit_timeout_s = exit_timeout_s
        self._kafka_config = dict(kafka_config or {})
        self._factory = producer_factory or _kafka_producer

        self._counts = _Counters()
        self._accepting = True
        self._closed = False
        self._close_lock = threading.Lock()
        self._stopping = threading.Event()
        self._close_deadline = 0.0

        self._producer: Any = None
        self._down = False
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF_S
        self._outage_logged = False
        self._tokens = itertools.count()
        self._in_flight: dict[int, _InFlight] = {}
        self._in_flight_bytes = 0
        self._in_flight_events = 0
        self._failed: deque[_Envelope] = deque()
        self._replay: _ReplayRound | None = None
        self._flushes: deque[_FlushRequest] = deque()

        self._thread = threading.Thread(target=self._run, name="costline-producer", daemon=True)
        _INSTANCES.add(self)
        if exit_timeout_s is not None:
            atexit.register(self._at_exit)
        self._thread.start()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> BackgroundProducer:
        """A producer for `settings`: its bootstrap servers, topic, queue size and spool slot.

        The spool is the first free slot under `resolved_spool_dir()` (see `open_slot`); when none
        can be opened the producer runs without one, and says so in a warning.
        """
        spool: Spool | None
        try:
            spool = open_slot(settings.resolved_spool_dir(), settings.spool_max_bytes)
        except SpoolError as exc:
            logger.warning(
                "costline runs without a spool, so events are dropped while Kafka is down: %s", exc
            )
            spool = None
        return cls(
            settings.kafka_bootstrap_servers,
            settings.kafka_usage_topic,
            spool=spool,
            queue_size=settings.producer_queue_size,
            **options,
        )

    # --- the caller's side ---------------------------------------------------------------------

    def emit(self, event: UsageEvent) -> None:
        """Queue `event` for the sender; when the queue is full (or closed) drop and count it."""
        if self._accepting:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                self._counts.drop("queue_full", 1)
                return
        self._counts.drop("closed", 1)

    def stats(self) -> dict[str, int]:
        """Counts of events: sent, spooled, replayed, dropped (with a key per reason), and gauges."""
        counts = self._counts
        with counts.lock:
            stats = {
                "sent": counts.sent,
                "spooled": counts.spooled,
                "replayed": counts.replayed,
                "dropped": sum(counts.dropped.values()),
                **{f"dropped_{reason}": n for reason, n in counts.dropped.items()},
                "queued": self._queue.qsize(),
                "in_flight": self._in_flight_events,
            }
        spool = self._spool
        stats["spool_pending_bytes"] = spool.pending_bytes if spool is not None and not spool.closed else 0
        stats["broker_up"] = int(self._sending_allowed())
        return stats

    def flush(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> bool:
        """Send what was emitted before this call and wait up to `timeout` s for acknowledgements.

        True when none of it is left only in memory: all of it was acknowledged by Kafka, spooled
        (broker down) or dropped and counted. It does not wait for the spool to be replayed.
        """
        if self._closed or not self._thread.is_alive():
            return self._queue.empty() and not self._in_flight
        request = _FlushRequest(time.monotonic() + timeout, threading.Event())
        self._flushes.append(request)
        return request.done.wait(timeout) and request.ok

    def close(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> None:
        """Stop accepting events, send or spool what is left within `timeout` s, release the spool.

        Whatever kafka-python has not acknowledged by then is written to the spool (so it may
        reach Kafka twice, never zero times). Safe to call twice.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._accepting = False
        self._close_deadline = time.monotonic() + timeout
        self._stopping.set()
        atexit.unregister(self._at_exit)
        if threading.current_thread() is self._thread or not self._thread.is_alive():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning(
                "costline producer did not finish within %.1f s; events still in memory may be lost",
                timeout,
            )

    def _at_exit(self) -> None:
        self.close(self._exit_timeout_s if self._exit_timeout_s is not None else DEFAULT_EXIT_TIMEOUT_S)

    def _after_fork_in_child(self) -> None:
        """The sender thread does not exist in a forked child: refuse events, leave the spool alone."""
        self._counts.lock = threading.Lock()  # another thread may have held it at the fork
        self._accepting = False
        self._closed = True
        atexit.unregister(self._at_exit)

    # --- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._connect()
            while not self._stopping.is_set():
                self._step()
        except Exception:
            logger.exception("costline producer thread failed; events are dropped from now on")
            self._accepting = False
            if not self._close_deadline:
                self._close_deadline = time.monotonic() + DEFAULT_EXIT_TIMEOUT_S
        finally:
            self._finish()

    def _step(self) -> None:
        self._spool_failed()
        self._check_stall()
        now = time.monotonic()
        if self._producer is None:
            if now >= self._retry_at:
                self._connect()
        elif self._down and self._replay is None and now >= self._retry_at:
            self._probe()
        # A replay round in progress is checked often: its records are usually acked in a few ms.
        events = self._take(_REPLAY_POLL_S if self._replay is not None else _POLL_S)
        if events:
            self._dispatch(events)
        self._advance_replay()
        if self._flushes:
            self._serve_flushes()

    def _connect(self) -> None:
        if self._stopping.is_set():
            return
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": "costline-producer",
            "acks": "all",
            # Duplicates are harmless (event_id) and idempotence state does not survive outages well.
            "enable_idempotence": False,
            # JSON compresses ~10x; and without the optional `crc32c` package kafka-python computes
            # CRC-32C in pure Python (~3 MB/s), so compressing first also saves most of that CPU.
            "compression_type": "gzip",
            "linger_ms": 5,
            "max_block_ms": 1_000,
            "bootstrap_timeout_ms": max(100, int(self._connect_timeout_s * 1000)),
            "request_timeout_ms": 5_000,
            "delivery_timeout_ms": 15_000,
            "reconnect_backoff_ms": 100,
            "reconnect_backoff_max_ms": 2_000,
        }
        config.update(self._kafka_config)
        try:
            self._producer = self._factory(config)
        except Exception as exc:
            self._mark_down(exc)
            return
        logger.info("costline producer connected to Kafka at %s", self.bootstrap_servers)
        self._broker_answered()
        if self._exit_timeout_s is not None and not self._closed:
            # kafka-python registered its own exit hook just now; ours must run first (LIFO).
            atexit.unregister(self._at_exit)
            atexit.register(self._at_exit)

    def _probe(self) -> None:
        """During an outage: one spooled record is the probe; with nothing spooled, just try again."""
        if self._in_flight:
            return  # sends still waiting for an answer are the probe
        spool = self._spool
        if spool is not None and not spool.closed and spool.has_pending:
            self._start_replay(max_records=1)
        else:
            self._down = False

    def _take(self, wait: float) -> list[UsageEvent]:
        """Block up to `wait` s for one event, then gather more for up to `linger_s`."""
        try:
            batch = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self._linger_s
        while len(batch) < self._batch_events:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _drain(self, limit: int) -> list[UsageEvent]:
        events: list[UsageEvent] = []
        while len(events) < limit:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return events

    def _dispatch(self, events: Sequence[UsageEvent]) -> None:
        for envelope in self._encode(events):
            if self._sending_allowed() and (
                self._in_flight_bytes + len(envelope.payload) <= self._max_in_flight_bytes
            ):
                self._send(envelope)
            else:
                self._to_spool(envelope)

    def _encode(self, events: Sequence[UsageEvent]) -> list[_Envelope]:
        envelopes: list[_Envelope] = []
        for start in range(0, len(events), self._envelope_events):
            self._encode_chunk(events[start : start + self._envelope_events], envelopes)
        return envelopes

    def _encode_chunk(self, chunk: Sequence[UsageEvent], out: list[_Envelope]) -> None:
        """One envelope for `chunk`, halved until it fits (so each envelope's event count is known)."""
        try:
            messages = batch_messages(chunk, max_events=len(chunk))
        except Exception:
            if len(chunk) == 1:
                self._counts.drop("invalid", 1)
                logger.debug("costline could not encode event %r", chunk[0], exc_info=True)
                return
            messages = []
        if len(messages) == 1:
            out.append(_Envelope(messages[0], len(chunk)))
            return
        middle = len(chunk) // 2
        self._encode_chunk(chunk[:middle], out)
        self._encode_chunk(chunk[middle:], out)

    def _sending_allowed(self) -> bool:
        return self._producer is not None and not self._down

    def _check_stall(self) -> None:
        """Kafka-python only fails a record after its delivery timeout; a stall says "down" sooner."""
        if self._down:
            return
        with self._counts.lock:
            oldest = next(iter(self._in_flight.values()), None)
        started = [entry.sent_at for entry in (oldest,) if entry is not None]
        if self._replay is not None:
            started.append(self._replay.started)
        if started and time.monotonic() - min(started) > self._stall_s:
            self._mark_down(TimeoutError(f"no acknowledgement for {self._stall_s:g} s"))

    def _send(self, envelope: _Envelope) -> None:
        try:
            future = self._producer.send(self.topic, envelope.payload)
        except Exception as exc:
            if _is_permanent(exc):
                self._reject(envelope.events, exc)
            else:
                self._mark_down(exc)
                self._to_spool(envelope)
            return
        token = next(self._tokens)
        with self._counts.lock:
            self._in_flight[token] = _InFlight(envelope, time.monotonic())
            self._in_flight_bytes += len(envelope.payload)
            self._in_flight_events += envelope.events
        future.add_callback(self._on_sent, token)
        future.add_errback(self._on_send_failed, token)

    def _settle(self, token: int) -> _InFlight | None:
        """Take an envelope out of the in-flight set (None when close already spooled it)."""
        with self._counts.lock:
            entry = self._in_flight.pop(token, None)
            if entry is not None:
                self._in_flight_bytes -= len(entry.envelope.payload)
                self._in_flight_events -= entry.envelope.events
            return entry

    def _on_sent(self, token: int, _metadata: object) -> None:
        entry = self._settle(token)
        if entry is not None:
            self._counts.add("sent", entry.envelope.events)
            self._broker_answered()

    def _on_send_failed(self, token: int, exc: BaseException) -> None:
        entry = self._settle(token)
        if entry is None:
            return
        if _is_permanent(exc):
            self._reject(entry.envelope.events, exc)
        else:
            self._failed.append(entry.envelope)
            self._mark_down(exc, since=entry.sent_at)

    def _reject(self, events: int, exc: BaseException) -> None:
        self._counts.drop("rejected", events)
        logger.warning("Kafka refused a message of %d costline events for good: %s", events, exc)

    def _broker_answered(self) -> None:
        if self._outage_logged:
            logger.info("Kafka at %s answers again", self.bootstrap_servers)
        self._down = False
        self._backoff = _FIRST_BACKOFF_S
        self._outage_logged = False

    def _mark_down(self, exc: BaseException, since: float | None = None) -> None:
        """Send nothing new until a probe (or, without a producer, a reconnect) succeeds.

        The next attempt is due `backoff` after `since` (when the failed attempt started): a probe
        that took its whole delivery timeout to fail is followed by the next one at once.
        """
        now = time.monotonic()
        if self._down and now < self._retry_at:
            return  # one failure among many of the same outage: the backoff runs already
        backoff = self._backoff
        self._down = True
        self._retry_at = (now if since is None else since) + backoff
        self._backoff = min(backoff * 2, self._max_backoff_s)
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "Kafka at %s is unreachable (%s: %s); spooling events to %s, retrying in %.1f s",
                self.bootstrap_servers,
                type(exc).__name__,
                exc,
                self._spool.directory if self._spool is not None else "nowhere (no spool)",
                backoff,
            )
        else:
            logger.debug("Kafka still unreachable (%s); retrying in %.1f s", exc, backoff)

    def _to_spool(self, envelope: _Envelope) -> None:
        spool = self._spool
        if spool is not None and not spool.closed and spool.append(envelope.payload, envelope.events):
            self._counts.add("spooled", envelope.events)
        else:
            self._counts.drop("spool_full", envelope.events)

    def _spool_failed(self) -> None:
        while self._failed:
            self._to_spool(self._failed.popleft())

    def _advance_replay(self, *, start_next: bool = True) -> None:
        """Commit a finished replay round, then start the next one while the broker is up."""
        spool = self._spool
        current = self._replay
        if current is not None:
            if not current.done:
                return
            self._replay = None
            if current.failed or spool is None or spool.closed:
                return  # not committed: the same records go again (the first failure marked us down)
            spool.commit(current.batch)
            delivered = current.batch.items - current.rejected
            self._counts.add("replayed", delivered)
            if current.rejected:
                self._counts.drop("rejected", current.rejected)
            self._broker_answered()
        if not start_next or not self._sending_allowed() or spool is None or spool.closed:
            return
        if spool.has_pending:
            self._start_replay(max_records=REPLAY_RECORDS)

    def _start_replay(self, max_records: int) -> None:
        """Send the oldest spooled records; the spool position moves when all of them are acked."""
        assert self._spool is not None
        batch = self._spool.read(max_records=max_records, max_bytes=REPLAY_BYTES)
        if not batch.records:
            self._spool.commit(batch)  # only a damaged tail was left: step past it
            return
        replay = _ReplayRound(batch)
        for index, record in enumerate(batch.records):
            try:
                future = self._producer.send(self.topic, record.payload)
            except Exception as exc:
                for unsent in batch.records[index:]:
                    replay.settle(unsent.items, exc)
                if not _is_permanent(exc):
                    self._mark_down(exc)
                break
            future.add_callback(replay.delivered, record.items)
            future.add_errback(self._on_replay_failed, replay, record.items)
        self._replay = replay

    def _on_replay_failed(self, replay: _ReplayRound, items: int, exc: BaseException) -> None:
        replay.settle(items, exc)
        if not _is_permanent(exc):
            self._mark_down(exc, since=replay.started)

    def _serve_flushes(self) -> None:
        requests: list[_FlushRequest] = []
        while self._flushes:
            requests.append(self._flushes.popleft())
        deadline = max(request.deadline for request in requests)
        # Only what was queued when the flush was asked for: emitters may never stop.
        self._dispatch(self._drain(self._queue.qsize()))
        self._wait_for_in_flight(deadline)
        ok = not self._in_flight and not self._failed
        for request in requests:
            request.ok = ok
            request.done.set()

    def _wait_for_in_flight(self, deadline: float, *, replay_too: bool = False) -> None:
        """Wait for acknowledgements (kafka-python sends after `linger_ms`, no flush needed).

        Not while the broker is down: kafka-python would only fail them at its delivery timeout.
        """
        while time.monotonic() < deadline and (
            self._in_flight or (replay_too and self._replay is not None and not self._replay.done)
        ):
            self._spool_failed()
            self._check_stall()
            if self._down:
                break
            time.sleep(_ACK_POLL_S)
        self._spool_failed()

    def _finish(self) -> None:
        """Last work of the sender: send or spool everything, spool the unacknowledged, close."""
        leftovers: list[_InFlight] = []
        try:
            self._dispatch(self._drain(self._queue.qsize() + self._batch_events))
            reserve = min(0.5, max(0.0, self._close_deadline - time.monotonic()) * 0.2)
            self._wait_for_in_flight(self._close_deadline - reserve, replay_too=True)
            self._advance_replay(start_next=False)
            with self._counts.lock:
                leftovers = list(self._in_flight.values())
                self._in_flight.clear()
                self._in_flight_bytes = self._in_flight_events = 0
            for entry in leftovers:
                self._to_spool(entry.envelope)
            # Whatever emit() still slipped in before it saw the close is spooled, not lost silently.
            for envelope in self._encode(self._drain(self._queue.qsize() + self._batch_events)):
                self._to_spool(envelope)
        except Exception:
            logger.exception("costline producer could not save every event at close")
        finally:
            pending = bool(leftovers) or (self._replay is not None and not self._replay.done)
            self._close_clients(abort=pending)
            for request in self._flushes:
                request.done.set()

    def _close_clients(self, *, abort: bool) -> None:
        producer, self._producer = self._producer, None
        if self._spool is not None:
            try:
                self._spool.close()
            except Exception:
                logger.exception("closing the costline spool %s failed", self._spool.directory)
        if producer is None:
            return
        if abort:
            # What kafka-python still holds is in the spool now. It has no public abort: close()
            # flushes first and raises on a dead broker (and so does its __del__, for a second).
            sender = getattr(producer, "_sender", None)
            force_close = getattr(sender, "force_close", None)
            if callable(force_close):
                force_close()
        try:
            producer.close(timeout=_CLIENT_CLOSE_S)
        except Exception as exc:
            logger.debug("closing the Kafka client: %s", exc)


class NullSink:
    """Drops every event and counts it: the default sink when hooks are turned off."""

    def __init__(self, reason: str = "hooks disabled") -> None:
        self.reason = reason
        self._lock = threading.Lock()
        self._dropped = 0

    def emit(self, event: UsageEvent) -> None:
        """Count the event as dropped."""
        with self._lock:
            self._dropped += 1

    def stats(self) -> dict[str, int]:
        """The main keys of BackgroundProducer.stats(); every event is a drop (`dropped_disabled`)."""
        return {
            "sent": 0,
            "spooled": 0,
            "replayed": 0,
            "dropped": self._dropped,
            "dropped_disabled": self._dropped,
            "queued": 0,
            "in_flight": 0,
            "spool_pending_bytes": 0,
            "broker_up": 0,
        }

    def flush(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> bool:
        """Nothing is ever pending."""
        return True

    def close(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> None:
        """Nothing to release."""


class ProcessProducer:
    """The process-wide sink behind `costline.ingest.emit`: built from `Settings()` on first use.

    A forked child cannot use its parent's sender thread or spool, so it builds its own on its
    first event (see `os.register_at_fork` below).
    """

    def __init__(self, build: Callable[[], ManagedSink]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._sink: ManagedSink | None = None

    @property
    def sink(self) -> ManagedSink:
        """The current sink, built now if needed."""
        sink = self._sink
        if sink is None:
            with self._lock:
                if self._sink is None:
                    self._sink = self._build()
                sink = self._sink
        return sink

    def emit(self, event: UsageEvent) -> None:
        """Hand `event` to the sink."""
        sink = self._sink
        if sink is None:
            sink = self.sink
        sink.emit(event)

    def stats(self) -> dict[str, int]:
        """The sink's counters."""
        return self.sink.stats()

    def flush(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> bool:
        """Flush the sink."""
        return self.sink.flush(timeout)

    def close(self, timeout: float = DEFAULT_EXIT_TIMEOUT_S) -> None:
        """Close the sink (later events are dropped and counted)."""
        if self._sink is not None:
            self._sink.close(timeout)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._sink = None


def _build_default_sink() -> ManagedSink:
    """The producer of `Settings()`, or a NullSink when hooks are off or the settings are invalid."""
    try:
        settings = Settings()
    except Exception as exc:
        logger.warning("costline hooks record nothing: the COSTLINE_* settings are invalid: %s", exc)
        return NullSink("invalid settings")
    if not settings.hooks_enabled:
        return NullSink("hooks disabled (COSTLINE_HOOKS_ENABLED=false)")
    return BackgroundProducer.from_settings(settings)


_INSTANCES: weakref.WeakSet[BackgroundProducer] = weakref.WeakSet()
_PROCESS = ProcessProducer(_build_default_sink)


def default_producer() -> ProcessProducer:
    """The process-wide producer that `costline.ingest.emit` uses, built on the first call."""
    _ = _PROCESS.sink
    return _PROCESS


def _after_fork_in_child() -> None:
    for producer in list(_INSTANCES):
        producer._after_fork_in_child()
    _PROCESS._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
