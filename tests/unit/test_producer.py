"""The background producer without a broker: emit never blocks, nothing is lost silently.

Most tests use a fake Kafka client (the `producer_factory` hook) whose futures the test controls;
one points the real kafka-python client at a port where nothing listens.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future

from costline.ingest import emit as emit_module
from costline.ingest import producer as producer_module
from costline.ingest.demo import demo_events
from costline.ingest.producer import BackgroundProducer, NullSink, ProcessProducer
from costline.ingest.spool import Spool
from costline.ingest.wire import decode_envelope
from costline.schemas.usage_event import UsageEvent
from tests.integration.conftest import unused_port


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until true; a liveness bound, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def events(count: int, seed: int = 5) -> list[UsageEvent]:
    return list(demo_events(count, seed=seed))


def ids(messages: list[bytes]) -> list[str]:
    return [event["event_id"] for message in messages for event in decode_envelope(message)]


def spooled_ids(directory: Path) -> list[str]:
    """The event ids a spool holds (read without committing)."""
    with Spool(directory, 1 << 30) as spool:
        return ids([record.payload for record in spool.read(max_records=100_000, max_bytes=1 << 30).records])


class FakeKafka:
    """A kafka-python KafkaProducer stand-in: `mode` decides how each send ends."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.mode = "ack"  # ack | fail | hang | too_large
        self.delivered: list[bytes] = []
        self.hanging: list[Future] = []
        self.closed = False

    def send(self, topic: str, value: bytes) -> Future:
        future = Future()
        if self.mode == "ack":
            self.delivered.append(value)
            future.success(object())
        elif self.mode == "fail":
            future.failure(KafkaTimeoutError("Expiring 1 record(s): delivery timeout"))
        elif self.mode == "too_large":
            raise MessageSizeTooLargeError("The message is too large")
        else:
            self.hanging.append(future)
        return future

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class Broker:
    """A factory of FakeKafka clients: down (raises like a bootstrap timeout) until `up()`."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.gate = threading.Event()
        self.gate.set()
        self.clients: list[FakeKafka] = []
        self.mode = "ack"

    def __call__(self, config: dict[str, Any]) -> FakeKafka:
        self.gate.wait()
        if self.down:
            raise KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:1")
        client = FakeKafka(config)
        client.mode = self.mode
        self.clients.append(client)
        return client

    @property
    def delivered(self) -> list[bytes]:
        return [message for client in self.clients for message in client.delivered]


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def make_producer(spool_dir: Path) -> Iterator[Callable[..., BackgroundProducer]]:
    made: list[BackgroundProducer] = []

    def make(factory: Any, bootstrap: str = "127.0.0.1:1", **options: Any) -> BackgroundProducer:
        if "spool" not in options:
            options["spool"] = Spool(spool_dir, 64 << 20)
        options.setdefault("exit_timeout_s", None)
        options.setdefault("max_backoff_s", 0.2)
        producer = BackgroundProducer(bootstrap, "usage", producer_factory=factory, **options)
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close(timeout=5)


def test_emit_returns_while_the_sender_is_stuck_connecting(make_producer: Any, spool_dir: Path) -> None:
    broker = Broker(down=True)
    broker.gate.clear()  # the client's constructor hangs, as kafka-python's does on a dead broker
    producer = make_producer(broker, queue_size=20_000)
    batch = events(10_000)
    for event in batch:
        producer.emit(event)
    # every emit has returned although the sender thread never got past the connect
    assert not broker.gate.is_set()
    assert producer.stats()["queued"] == 10_000
    broker.gate.set()  # the connect now fails: the broker is down, so everything goes to the spool
    wait_for(lambda: producer.stats()["spooled"] == 10_000, "10,000 spooled events")
    stats = producer.stats()
    assert (stats["sent"], stats["dropped"], stats["queued"], stats["broker_up"]) == (0, 0, 0, 0)
    producer.close()
    assert spooled_ids(spool_dir) == [event.event_id for event in batch]


def test_an_unreachable_broker_spools_every_event(make_producer: Any, spool_dir: Path) -> None:
    """The real kafka-python client against a port where nothing listens."""
    producer = make_producer(None, f"127.0.0.1:{unused_port()}", queue_size=20_000, connect_timeout_s=0.5)
    batch = events(10_000, seed=8)
    for event in batch:
        producer.emit(event)
    assert producer.flush(timeout=30)  # "flushed" to disk: nothing is left only in memory
    wait_for(lambda: producer.stats()["spooled"] == 10_000, "10,000 spooled events")
    assert producer.stats()["dropped"] == 0
    producer.close()
    assert sorted(spooled_ids(spool_dir)) == sorted(event.event_id for event in batch)


def test_a_full_queue_drops_and_counts_instead_of_blocking(make_producer: Any) -> None:
    broker = Broker(down=True)
    broker.gate.clear()
    producer = make_producer(broker, queue_size=100)
    for event in events(150):
        producer.emit(event)
    stats = producer.stats()
    assert (stats["queued"], stats["dropped"], stats["dropped_queue_full"]) == (100, 50, 50)
    broker.gate.set()
    wait_for(lambda: producer.stats()["spooled"] == 100, "the queued events to be spooled")


def test_events_go_to_kafka_in_envelopes_while_the_broker_is_up(make_producer: Any) -> None:
    broker = Broker()
    producer = make_producer(broker, envelope_events=50)
    batch = events(1_000)
    for event in batch:
        producer.emit(event)
    assert producer.flush(timeout=30)
    assert producer.stats()["sent"] == 1_000
    assert sorted(ids(broker.delivered)) == sorted(event.event_id for event in batch)
    assert all(len(decode_envelope(message)) <= 50 for message in broker.delivered)
    config = broker.clients[0].config
    assert config["max_block_ms"] <= 1_000
    assert config["acks"] == "all"


def test_the_spool_is_replayed_once_the_broker_answers(make_producer: Any, spool_dir: Path) -> None:
    broker = Broker(down=True)
    producer = make_producer(broker)
    first = events(300, seed=1)
    for event in first:
        producer.emit(event)
    wait_for(lambda: producer.stats()["spooled"] == 300, "spooling while the broker is down")
    broker.down = False
    wait_for(lambda: producer.stats()["replayed"] == 300, "the replay")
    later = events(200, seed=2)
    for event in later:
        producer.emit(event)
    assert producer.flush(timeout=30)
    stats = producer.stats()
    assert (stats["sent"], stats["spooled"], stats["replayed"], stats["dropped"]) == (200, 300, 300, 0)
    assert stats["spool_pending_bytes"] == 0
    assert ids(broker.delivered) == [e.event_id for e in first] + [e.event_id for e in later]


def test_failed_deliveries_are_spooled_and_replayed(make_producer: Any) -> None:
    broker = Broker()
    broker.mode = "fail"  # connected, but every delivery times out (the broker went away)
    producer = make_producer(broker)
    batch = events(400, seed=3)
    for event in batch:
        producer.emit(event)
    wait_for(lambda: producer.stats()["spooled"] == 400, "failed deliveries in the spool")
    assert producer.stats()["sent"] == 0
    broker.clients[0].mode = "ack"  # back
    wait_for(lambda: producer.stats()["replayed"] == 400, "the replay")
    assert sorted(ids(broker.delivered)) == sorted(event.event_id for event in batch)


def test_a_message_kafka_refuses_for_good_is_dropped_not_spooled(make_producer: Any) -> None:
    broker = Broker()
    broker.mode = "too_large"
    producer = make_producer(broker)
    for event in events(10):
        producer.emit(event)
    wait_for(lambda: producer.stats()["dropped_rejected"] == 10, "the rejection")
    assert producer.stats()["spooled"] == 0


def test_close_spools_what_kafka_never_acknowledged(make_producer: Any, spool_dir: Path) -> None:
    broker = Broker()
    broker.mode = "hang"  # sends are accepted, acknowledgements never come
    producer = make_producer(broker)
    batch = events(250, seed=4)
    for event in batch:
        producer.emit(event)
    wait_for(lambda: producer.stats()["in_flight"] == 250, "the sends")
    assert not producer.flush(timeout=0.2)  # not acknowledged: still only in kafka-python's buffer
    producer.close(timeout=2)
    assert producer.stats()["spooled"] == 250
    producer.emit(batch[0])
    assert producer.stats()["dropped_closed"] == 1
    # a late acknowledgement after close changes nothing (the envelope is in the spool already)
    broker.clients[0].hanging[0].success(object())
    assert producer.stats()["sent"] == 0
    assert sorted(spooled_ids(spool_dir)) == sorted(event.event_id for event in batch)


def test_a_broker_that_stops_answering_is_treated_as_down(make_producer: Any) -> None:
    """kafka-python fails a record only after its delivery timeout; a stall says "down" sooner."""
    broker = Broker()
    broker.mode = "hang"
    producer = make_producer(broker, stall_s=0.2)
    for event in events(100, seed=6):
        producer.emit(event)
    wait_for(lambda: producer.stats()["in_flight"] == 100, "the sends")
    wait_for(lambda: producer.stats()["broker_up"] == 0, "the stall to be noticed")
    for event in events(50, seed=7):
        producer.emit(event)
    wait_for(lambda: producer.stats()["spooled"] == 50, "new events to go to the spool")
    broker.clients[0].mode = "ack"  # the broker answers after all
    for future in broker.clients[0].hanging:
        future.success(object())
    wait_for(lambda: producer.stats()["replayed"] == 50, "the replay")
    assert producer.stats()["sent"] == 100


def test_after_a_fork_the_child_builds_its_own_producer(make_producer: Any) -> None:
    """The child has no sender thread: the inherited producer refuses, the process sink rebuilds."""
    built: list[BackgroundProducer] = []

    def build() -> BackgroundProducer:
        built.append(make_producer(Broker()) if not built else make_producer(Broker(), spool=None))
        return built[-1]

    process = ProcessProducer(build)
    process.emit(events(1)[0])
    inherited = built[0]
    # what os.register_at_fork runs in a child (called directly: forking pytest is not safe)
    inherited._after_fork_in_child()
    process._after_fork_in_child()
    process.emit(events(1)[0])
    assert len(built) == 2
    assert inherited.stats()["dropped_closed"] == 0
    inherited.emit(events(1)[0])
    assert inherited.stats()["dropped_closed"] == 1


def test_an_event_that_cannot_be_encoded_is_dropped_alone(make_producer: Any) -> None:
    broker = Broker()
    producer = make_producer(broker)
    batch = events(20)
    for event in batch[:10]:
        producer.emit(event)
    producer.emit({"not": "an event"})  # type: ignore[arg-type]  # a broken hook
    for event in batch[10:]:
        producer.emit(event)
    assert producer.flush(timeout=30)
    stats = producer.stats()
    assert (stats["sent"], stats["dropped_invalid"]) == (20, 1)
    assert sorted(ids(broker.delivered)) == sorted(event.event_id for event in batch)


def test_without_a_spool_an_outage_drops_and_counts(make_producer: Any) -> None:
    producer = make_producer(Broker(down=True), spool=None)
    for event in events(30):
        producer.emit(event)
    wait_for(lambda: producer.stats()["dropped_spool_full"] == 30, "the drops")


def test_the_exit_hook_spools_what_was_not_sent(tmp_path: Path) -> None:
    """A process that never calls close(): the atexit hook saves its events within the timeout."""
    spool_dir = tmp_path / "exit-spool"
    code = f"""
from pathlib import Path
from costline.ingest.demo import demo_events
from costline.ingest.producer import BackgroundProducer
from costline.ingest.spool import Spool
producer = BackgroundProducer(
    "127.0.0.1:{unused_port()}", "usage", spool=Spool(Path({str(spool_dir)!r}), 1 << 26),
    connect_timeout_s=0.3, exit_timeout_s=5,
)
for event in demo_events(2_000, seed=9):
    producer.emit(event)
"""
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(spooled_ids(spool_dir)) == sorted(e.event_id for e in demo_events(2_000, seed=9))


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessProducer]:
    """A process producer of its own, installed as the default, removed afterwards."""
    process = ProcessProducer(producer_module._build_default_sink)
    monkeypatch.setattr(producer_module, "_PROCESS", process)
    emit_module.set_sink(None)
    yield process
    process.close(timeout=5)
    emit_module.set_sink(None)


def test_the_kill_switch_setting_gives_a_sink_that_only_counts(
    monkeypatch: pytest.MonkeyPatch, fresh_default: ProcessProducer
) -> None:
    monkeypatch.setenv("COSTLINE_HOOKS_ENABLED", "false")
    failures = emit_module.emit_failures()
    for event in events(3):
        emit_module.emit(event)
    assert isinstance(fresh_default.sink, NullSink)
    assert fresh_default.stats()["dropped"] == 3
    assert emit_module.emit_failures() == failures


def test_emit_builds_the_default_producer_from_settings(
    monkeypatch: pytest.MonkeyPatch, fresh_default: ProcessProducer, tmp_path: Path
) -> None:
    monkeypatch.setenv("COSTLINE_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{unused_port()}")
    monkeypatch.setenv("COSTLINE_SPOOL_DIR", str(tmp_path / "spools"))
    monkeypatch.setenv("COSTLINE_PRODUCER_QUEUE_SIZE", "1000")
    batch = events(40)
    for event in batch:
        emit_module.emit(event)
    sink = fresh_default.sink
    assert isinstance(sink, BackgroundProducer)
    sink.close(timeout=5)  # the broker is down: the close spools everything
    assert sink.stats()["spooled"] == 40
    assert sorted(spooled_ids(tmp_path / "spools" / "0")) == sorted(e.event_id for e in batch)
