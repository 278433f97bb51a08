"""Continuous demo traffic for a running pipeline: realistic events at a steady rate, plus poison.

A live demo and the benchmarks need a producer that behaves like a fleet of hooked applications:
events stamped "now" with ids unique to the run, a long-run rate that stays exact however the
process is scheduled, and a trickle of malformed messages so the dead-letter path is always busy.

Events are the demo workloads of `costline.ingest.demo`, generated once as a pool of templates and
re-stamped per message (new id, timestamps shifted to the present): building UsageEvents from
scratch costs ~100 µs each, which would eat a core at a few thousand events per second.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from costline.ingest.demo import demo_events
from costline.ingest.wire import WIRE_VERSION, batch_messages
from costline.schemas.errors import BrokerError, ConfigError
from costline.schemas.usage_event import UsageEvent

logger = logging.getLogger(__name__)

#: The kinds of malformed message, sent in turn: each exercises another dead-letter path.
MALFORMED_KINDS: tuple[str, ...] = ("invalid_json", "negative_tokens", "unknown_version")
#: Good events sent alongside the bad one in a `negative_tokens` envelope.
MIXED_GOOD_EVENTS = 4
#: Demo events generated once and re-stamped; enough that repeats are not obvious in a dashboard.
TEMPLATE_POOL = 2_000
#: Credit saved while the producer is stalled (GC pause, busy host): a stall up to this long is made up,
#: so the long-run rate holds, and the burst that follows is bounded by it.
BURST_SECONDS = 1.0
#: Below this a wait is not worth a sleep; the bucket's debt carries it over, so nothing drifts.
MIN_SLEEP_S = 1e-4
PROGRESS_EVERY_S = 10.0
#: How long run_demo_traffic waits for the broker to acknowledge what is buffered at the end.
FLUSH_TIMEOUT_S = 10.0


@dataclass
class TrafficStats:
    """What a traffic run sent; the counts a consumer of the topic should find."""

    run_id: str
    #: Valid events in envelopes a worker accepts: what ends up stored.
    events: int = 0
    #: Every message sent, malformed ones included.
    messages: int = 0
    #: Messages a worker dead-letters whole (bad JSON, unknown version) or in part (a bad event).
    malformed_messages: int = 0
    #: Invalid events inside otherwise valid envelopes, dead-lettered one by one.
    bad_events: int = 0
    #: Messages the broker did not acknowledge (filled by run_demo_traffic only).
    delivery_errors: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        """The achieved rate of valid events."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


class TokenBucket:
    """Credit accrues at `rate` per second up to `capacity`; spending may run the balance negative.

    Spending first and waiting off the debt afterwards sends the first message at once and keeps the
    long-run rate exact: a late wake-up leaves surplus credit that the next message uses, instead of
    every oversleep slowing the stream down a little.
    """

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = 0.0
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def delay(self) -> float:
        """Seconds until the balance is back to zero (0 when it is)."""
        self._refill()
        return max(0.0, -self._tokens / self.rate)

    def spend(self, tokens: float) -> None:
        """Take `tokens` now, into debt if need be."""
        self._refill()
        self._tokens -= tokens


class _EventSource:
    """Demo events with ids numbered per run and timestamps shifted to the present."""

    def __init__(self, run_id: str, seed: int, span: timedelta) -> None:
        self.run_id = run_id
        self._base = datetime.now(UTC)
        self._templates = list(demo_events(TEMPLATE_POOL, seed=seed, end=self._base, span=span))
        self._taken = 0

    def take(self, count: int) -> list[UsageEvent]:
        """The next `count` events of the numbered stream."""
        shift = self._shift()
        events = []
        for _ in range(count):
            events.append(self._stamp(self._taken, f"traffic-{self.run_id}-{self._taken}", shift))
            self._taken += 1
        return events

    def extra(self, event_id: str) -> UsageEvent:
        """An event outside the numbered stream, for malformed messages."""
        return self._stamp(self._taken, event_id, self._shift())

    def _shift(self) -> timedelta:
        """Time since the templates were made, in whole milliseconds (occurred_at's precision)."""
        return timedelta(milliseconds=(datetime.now(UTC) - self._base) // timedelta(milliseconds=1))

    def _stamp(self, index: int, event_id: str, shift: timedelta) -> UsageEvent:
        template = self._templates[index % len(self._templates)]
        return template.model_copy(update={"event_id": event_id, "occurred_at": template.occurred_at + shift})


def _event_json(event: UsageEvent) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event.model_dump_json(exclude_defaults=True))
    return parsed


def _malformed_message(kind: str, number: int, source: _EventSource) -> tuple[bytes, int, int]:
    """One malformed message of `kind`: (bytes, good events inside, bad events inside)."""
    marker = f"traffic-{source.run_id}-{kind.replace('_', '-')}-{number}"
    if kind == "invalid_json":
        return b'{"v":%d,"events":[{"event_id":"%s","occurred_at":' % (WIRE_VERSION, marker.encode()), 0, 0
    if kind == "unknown_version":
        sample = _event_json(source.extra(marker))
        return json.dumps({"v": WIRE_VERSION + 98, "events": [sample]}).encode(), 0, 0
    good = [_event_json(event) for event in source.take(MIXED_GOOD_EVENTS)]
    bad = {**good[0], "event_id": marker, "tokens": {"input_uncached": -1}}
    events = [*good[:2], bad, *good[2:]]
    return json.dumps({"v": WIRE_VERSION, "events": events}).encode(), len(good), 1


def generate_traffic(
    producer_send: Callable[[bytes], object],
    *,
    rate: float,
    duration: float | None,
    per_message: int = 100,
    malformed_every: int = 500,
    seed: int = 7,
    run_id: str | None = None,
    span: timedelta = timedelta(minutes=3),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrafficStats:
    """Send demo envelopes of `per_message` events at `rate` events/s for `duration` seconds.

    After every `malformed_every` valid events one malformed message follows (0 turns them off),
    cycling through MALFORMED_KINDS. Event ids are `traffic-<run_id>-<n>`, numbered in send order;
    timestamps fall within `span` before the moment their message is built. `duration=None` runs
    until Ctrl-C, which ends the run normally. `producer_send` takes the bytes of one message; its
    exceptions stop the run.
    """
    if rate <= 0:
        raise ConfigError(f"the traffic rate must be above 0 events/s, got {rate}")
    if duration is not None and duration < 0:
        raise ConfigError(f"the traffic duration must be 0 s or more (or unbounded), got {duration}")
    if per_message < 1:
        raise ConfigError(f"an envelope must carry at least 1 event, got per_message={per_message}")
    if malformed_every < 0:
        raise ConfigError(f"malformed_every must be 0 (none) or a number of events, got {malformed_every}")
    source = _EventSource(run_id or uuid.uuid4().hex[:8], seed, span)
    stats = TrafficStats(run_id=source.run_id)
    kinds = itertools.cycle(MALFORMED_KINDS)
    next_malformed = malformed_every
    bucket = TokenBucket(rate, max(float(per_message), rate * BURST_SECONDS), clock)
    started = clock()
    deadline = None if duration is None else started + duration
    next_progress = started + PROGRESS_EVERY_S
    logger.info("demo traffic %s: %g events/s in envelopes of %d", source.run_id, rate, per_message)
    try:
        while True:
            wait = bucket.delay()
            now = clock()
            if deadline is not None and now + wait >= deadline:
                sleep(max(0.0, deadline - now))
                break
            if wait > MIN_SLEEP_S:
                sleep(wait)
                continue
            for message in batch_messages(source.take(per_message), max_events=per_message):
                producer_send(message)
                stats.messages += 1
            stats.events += per_message
            bucket.spend(per_message)
            if malformed_every and stats.events >= next_malformed:
                next_malformed = (stats.events // malformed_every + 1) * malformed_every
                message, good, bad = _malformed_message(next(kinds), stats.malformed_messages, source)
                producer_send(message)
                stats.messages += 1
                stats.malformed_messages += 1
                stats.events += good
                stats.bad_events += bad
                bucket.spend(good)
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY_S
                logger.info(
                    "demo traffic %s: %d events in %d messages so far (%d malformed)",
                    source.run_id,
                    stats.events,
                    stats.messages,
                    stats.malformed_messages,
                )
    except KeyboardInterrupt:
        logger.info("demo traffic %s interrupted", source.run_id)
    stats.seconds = clock() - started
    logger.info(
        "demo traffic %s: sent %d events (%.0f/s) in %d messages, %d malformed, %d bad events",
        source.run_id,
        stats.events,
        stats.events_per_second,
        stats.messages,
        stats.malformed_messages,
        stats.bad_events,
    )
    return stats


def run_demo_traffic(
    bootstrap_servers: str,
    topic: str,
    *,
    rate: float,
    duration: float | None,
    per_message: int = 100,
    malformed_every: int = 500,
    seed: int = 7,
    max_block_ms: int = 1_000,
) -> TrafficStats:
    """Produce demo traffic to `topic` with kafka-python; see `generate_traffic` for the stream.

    The producer never waits long for Kafka: a send that cannot be buffered within `max_block_ms`
    (broker down, topic missing) stops the run with a BrokerError; failed deliveries are counted.
    """
    try:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="costline-demo-traffic",
            linger_ms=20,
            max_block_ms=max_block_ms,
        )
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap_servers} for demo traffic: {exc}; "
            "start the local broker (`costline up`) or set COSTLINE_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    failures: list[BaseException] = []

    def on_error(exc: BaseException) -> None:
        if not failures:
            logger.warning("Kafka at %s did not take a demo message: %s", bootstrap_servers, exc)
        failures.append(exc)

    def send(value: bytes) -> object:
        try:
            future = producer.send(topic, value)
        except KafkaTimeoutError as exc:
            raise BrokerError(
                f"Kafka at {bootstrap_servers} did not accept a message for {topic!r} within "
                f"{max_block_ms} ms ({exc}); check that the broker is up and the topic exists"
            ) from exc
        future.add_errback(on_error)
        return future

    try:
        stats = generate_traffic(
            send,
            rate=rate,
            duration=duration,
            per_message=per_message,
            malformed_every=malformed_every,
            seed=seed,
        )
        try:
            producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaTimeoutError:
            logger.warning("demo traffic: some messages were still unsent after %g s", FLUSH_TIMEOUT_S)
    finally:
        producer.close(timeout=FLUSH_TIMEOUT_S)
    stats.delivery_errors = len(failures)
    return stats
