"""Demo traffic: exact pacing under a fake clock, and the malformed trickle a worker must survive."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from costline.ingest.traffic import BURST_SECONDS, MALFORMED_KINDS, TrafficStats, generate_traffic
from costline.ingest.wire import WireFormatError, decode_envelope
from costline.schemas.errors import ConfigError
from costline.schemas.usage_event import UsageEvent


class FakeTime:
    """A clock that only moves when the code under test sleeps (plus an optional oversleep)."""

    def __init__(self, oversleep: float = 0.0, seed: int = 1) -> None:
        self.now = 1_000.0
        self.oversleep = oversleep
        self.rng = random.Random(seed)
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds * (1 + self.oversleep * self.rng.random())


class Sink:
    """Records each message with the fake time it was sent."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.sent: list[tuple[float, bytes]] = []

    def __call__(self, message: bytes) -> None:
        self.sent.append((self.time.now, message))

    @property
    def messages(self) -> list[bytes]:
        return [message for _, message in self.sent]


def classify(message: bytes) -> tuple[str, list[UsageEvent], int]:
    """(kind, valid events, invalid events) of one message, the way a worker would judge it."""
    try:
        raw_events = decode_envelope(message)
    except WireFormatError as exc:
        return ("unknown_version" if "version" in str(exc) else "invalid_json"), [], 0
    valid, invalid = [], 0
    for raw in raw_events:
        try:
            valid.append(UsageEvent.model_validate(raw))
        except ValidationError:
            invalid += 1
    return ("negative_tokens" if invalid else "good"), valid, invalid


def run(time: FakeTime, **options: Any) -> tuple[Sink, TrafficStats]:
    """generate_traffic on the fake clock with a list as the sink: 500 events/s for 2 s by default."""
    sink = Sink(time)
    defaults: dict[str, Any] = {"rate": 500, "duration": 2.0, "malformed_every": 0, "run_id": "r1"}
    stats = generate_traffic(sink, clock=time.clock, sleep=time.sleep, **(defaults | options))
    return sink, stats


def test_messages_go_out_on_an_exact_schedule() -> None:
    time = FakeTime()
    sink, stats = run(time)

    assert stats.events == 1_000
    assert stats.messages == 10
    offsets = [round(at - 1_000.0, 9) for at, _ in sink.sent]
    assert offsets == [round(0.2 * n, 9) for n in range(10)]
    assert time.now == pytest.approx(1_002.0)  # the run ends at its duration, not a message later
    assert stats.seconds == pytest.approx(2.0)


def test_oversleeping_does_not_slow_the_long_run_rate() -> None:
    time = FakeTime(oversleep=0.5)  # every sleep lasts up to 50% longer than asked
    _, stats = run(time, rate=1_000, duration=60.0, per_message=100)

    # a late wake-up leaves credit that the next message spends, so the total stays exact
    assert abs(stats.events - 60_000) <= 100


def test_a_stalled_sink_is_followed_by_a_bounded_burst() -> None:
    time = FakeTime()
    sink = Sink(time)

    def stalling_send(message: bytes) -> None:
        sink(message)
        if len(sink.sent) == 5:
            time.now += 10.0  # the sink blocks for 10 s once

    stats = generate_traffic(
        stalling_send,
        rate=1_000,
        duration=12.0,
        per_message=100,
        malformed_every=0,
        clock=time.clock,
        sleep=time.sleep,
    )

    after_stall = [at for at, _ in sink.sent if at >= 1_010.4]
    burst = [at for at in after_stall if at == after_stall[0]]
    assert len(burst) <= 1_000 * BURST_SECONDS / 100 + 1  # saved credit is capped, not 10 s worth
    assert stats.events < 12_000  # the stalled time is lost, not made up in one flood


def test_the_malformed_trickle_cycles_through_every_kind_and_is_counted() -> None:
    time = FakeTime()
    sink, stats = run(time, rate=1_000, duration=10.0, per_message=100, malformed_every=500)

    judged = [classify(message) for message in sink.messages]
    kinds = Counter(kind for kind, _, _ in judged)
    malformed = [kind for kind, _, _ in judged if kind != "good"]
    assert malformed[:6] == [*MALFORMED_KINDS, *MALFORMED_KINDS]
    assert kinds["good"] + len(malformed) == stats.messages
    assert len(malformed) == stats.malformed_messages > 0
    assert sum(len(valid) for _, valid, _ in judged) == stats.events
    assert sum(invalid for _, _, invalid in judged) == stats.bad_events == kinds["negative_tokens"]
    # the good events of the mixed envelopes are paced too: the long-run rate stays exact
    assert abs(stats.events - 10_000) <= 100


def test_a_malformed_message_follows_each_threshold() -> None:
    time = FakeTime()
    sink, _ = run(time, rate=1_000, duration=2.0, per_message=100, malformed_every=500)

    kinds = [classify(message)[0] for message in sink.messages]
    assert kinds[:6] == ["good"] * 5 + ["invalid_json"]
    assert kinds[6:12] == ["good"] * 5 + ["negative_tokens"]


def test_events_are_valid_now_unique_and_carry_the_run_id() -> None:
    sink, stats = run(FakeTime(), rate=1_000, duration=5.0, run_id="abc123")
    other, _ = run(FakeTime(), rate=1_000, duration=1.0, run_id="def456")

    def events(sink: Sink) -> list[UsageEvent]:
        # validated with the default time window: stamped near now, neither stale nor in the future
        return [event for message in sink.messages for event in classify(message)[1]]

    ids = [event.event_id for event in events(sink)]
    assert len(ids) == len(set(ids)) == stats.events == 5_000  # beyond the template pool, no repeats
    assert all(event_id.startswith("traffic-abc123-") for event_id in ids)
    assert not set(ids) & {event.event_id for event in events(other)}
    assert {event.provider for event in events(sink)} >= {"openai", "anthropic", "gcp.gemini"}


def test_ctrl_c_ends_an_unbounded_run_with_its_stats() -> None:
    time = FakeTime()
    sink = Sink(time)

    def sleep(seconds: float) -> None:
        if time.now >= 1_001.0:
            raise KeyboardInterrupt
        time.sleep(seconds)

    stats = generate_traffic(sink, rate=500, duration=None, malformed_every=0, clock=time.clock, sleep=sleep)

    assert stats.messages == len(sink.sent) == 6
    assert stats.events == 600


def test_a_message_too_big_for_one_envelope_is_split() -> None:
    time = FakeTime()
    sink, stats = run(time, rate=10_000, duration=0.5, per_message=2_000)

    assert stats.messages > 3  # ~700 bytes per event: 2,000 exceed 900 kB
    assert sum(len(json.loads(message)["events"]) for message in sink.messages) == stats.events


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 0}, "rate must be above 0"),
        ({"duration": -1.0}, "duration must be 0 s or more"),
        ({"per_message": 0}, "at least 1 event"),
        ({"malformed_every": -5}, "malformed_every"),
    ],
)
def test_bad_arguments_say_what_to_pass(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(FakeTime(), **options)
