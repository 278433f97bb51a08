"""How long an event takes from `producer.send` to being queryable in ClickHouse, under steady load.

Run: .venv/bin/python bench/freshness.py [--seconds 60] [--rate 2000] [--per-message 100]

One run starts a local broker and the real worker in this process (ThreadedWorker, its own fresh
chDB store), waits until the worker has joined its group and stored a warm-up envelope, then:

* a producer thread sends demo traffic (costline.ingest.traffic, no malformed messages) at `rate`
  events/s in envelopes of `per_message`, noting the wall-clock time of each send per event id;
* the main thread opens a second client on the same chDB path and every 100 ms asks for the rows
  ingested since its last look, noting when each event id first shows up.

Latency per event is "first seen by a query" minus "handed to producer.send", so it includes the
producer's linger, Kafka, the worker's batching, processing, the insert and up to one poll interval.
It also prints the part up to the insert (`ingested_at`, stamped by ClickHouse). Goal: p95 <= 2 s.
Everything shares one interpreter here (producer, worker, poller), which costs the worker some CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the worker harness lives with the integration tests

from kafka import KafkaProducer  # noqa: E402 - after the sys.path line above, like the rest

from costline.broker import LocalBroker, costline_topics, create_topics  # noqa: E402
from costline.ingest.demo import demo_events  # noqa: E402
from costline.ingest.traffic import TrafficStats, generate_traffic  # noqa: E402
from costline.ingest.wire import batch_messages  # noqa: E402
from costline.pipeline.store.client import connect  # noqa: E402
from costline.schemas.settings import Settings  # noqa: E402
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for  # noqa: E402

GOAL_P95_S = 2.0
POLL_S = 0.1
#: How long to wait after the last send for the last events to become visible.
DRAIN_TIMEOUT_S = 120.0
#: Rows stamped this long before the last one seen are asked for again (inserts may overlap).
OVERLAP_MS = 2_000

POLL_SQL = (
    "SELECT event_id, toUnixTimestamp64Milli(ingested_at) FROM usage_events "
    "WHERE ingested_at >= fromUnixTimestamp64Milli({since:Int64}) AND startsWith(event_id, {prefix:String})"
)


def free_port() -> int:
    """A port nothing listens on right now, picked by the OS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Ledger:
    """Send times per event id (producer thread) and when each id became visible (poller)."""

    sent_at: dict[str, float] = field(default_factory=dict)
    visible_at: dict[str, float] = field(default_factory=dict)
    ingested_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Producer(threading.Thread):
    """Paced demo traffic on its own thread, recording when each event was handed to Kafka."""

    def __init__(self, settings: Settings, ledger: Ledger, args: argparse.Namespace, run_id: str) -> None:
        super().__init__(name="bench-producer", daemon=True)
        self.ledger = ledger
        self.args = args
        self.run_id = run_id
        self.topic = settings.kafka_usage_topic
        self.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20)
        self.stats: TrafficStats | None = None
        self.error: BaseException | None = None

    def send(self, message: bytes) -> object:
        now = time.time()
        future = self.producer.send(self.topic, message)
        ids = [event["event_id"] for event in json.loads(message)["events"]]
        with self.ledger.lock:
            for event_id in ids:
                self.ledger.sent_at[event_id] = now
        return future

    def run(self) -> None:
        try:
            self.stats = generate_traffic(
                self.send,
                rate=self.args.rate,
                duration=self.args.seconds,
                per_message=self.args.per_message,
                malformed_every=0,
                run_id=self.run_id,
            )
            self.producer.flush(timeout=30)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.producer.close(timeout=10)


def poll_once(client, ledger: Ledger, prefix: str, since_ms: int) -> int:  # type: ignore[no-untyped-def]
    """Record ids that became visible; returns the newest ingested_at seen (ms)."""
    rows = client.query(POLL_SQL, parameters={"since": since_ms, "prefix": prefix}).result_rows
    now = time.time()
    newest = since_ms
    for event_id, ingested_ms in rows:
        newest = max(newest, int(ingested_ms))
        if event_id not in ledger.visible_at:
            ledger.visible_at[event_id] = now
            ledger.ingested_at[event_id] = ingested_ms / 1000
    return newest


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[index]


def summary(name: str, latencies: list[float]) -> str:
    values = sorted(latencies)
    if not values:
        return f"{name}: no events"
    figures = ", ".join(f"p{q} {percentile(values, q):.3f} s" for q in (50, 95, 99))
    return f"{name}: {figures}, max {values[-1]:.3f} s, mean {sum(values) / len(values):.3f} s"


def print_timeline(ledger: Ledger, step: float = 10.0) -> None:
    """Latency by when events were sent: flat means the worker keeps up, rising means a backlog grows."""
    if not ledger.sent_at:
        return
    first = min(ledger.sent_at.values())
    windows: dict[int, list[float]] = {}
    for event_id, sent in ledger.sent_at.items():
        if event_id in ledger.visible_at:
            windows.setdefault(int((sent - first) // step), []).append(ledger.visible_at[event_id] - sent)
    parts = []
    for index in sorted(windows):
        values = sorted(windows[index])
        parts.append(f"{index * step:.0f}s p50 {percentile(values, 50):.1f} p95 {percentile(values, 95):.1f}")
    print("by send time: " + " | ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to produce")
    parser.add_argument("--rate", type=float, default=2_000.0, help="events per second")
    parser.add_argument("--per-message", type=int, default=100, help="events per envelope")
    parser.add_argument("--partitions", type=int, default=4)
    defaults = Settings()
    parser.add_argument("--batch-messages", type=int, default=defaults.sink_batch_messages)
    parser.add_argument("--flush-seconds", type=float, default=defaults.sink_flush_seconds)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="costline-freshness-") as tmp:
        work = Path(tmp)
        broker = LocalBroker(free_port(), log_path=work / "tansu.log")
        broker.start()
        try:
            settings = Settings(
                data_dir=work,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                kafka_usage_topic="bench.usage",
                kafka_dlq_topic="bench.dlq",
                kafka_partitions=args.partitions,
                worker_group="bench-freshness",
                clickhouse_dsn=f"chdb://{work / 'store'}",
                metrics_port=free_port(),
                api_port=free_port(),
                sink_batch_messages=args.batch_messages,
                sink_flush_seconds=args.flush_seconds,
            )
            create_topics(broker.bootstrap_servers, costline_topics(settings))
            worker = ThreadedWorker(settings).start()
            try:
                run(settings, worker, args)
            finally:
                worker.stop()
        finally:
            broker.stop()


def run(settings: Settings, worker: ThreadedWorker, args: argparse.Namespace) -> None:
    warm_up = batch_messages(demo_events(10, seed=8), max_events=10)
    warm_producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for message in warm_up:
        warm_producer.send(settings.kafka_usage_topic, message)
    warm_producer.close(timeout=10)
    started = time.monotonic()

    def warmed_up() -> bool:
        worker.check()
        return bool(worker.metrics.sink_rows > 0)

    wait_for(warmed_up, JOIN_TIMEOUT_S, "the warm-up")
    print(f"worker joined and stored the warm-up after {time.monotonic() - started:.1f} s")

    client = connect(settings.resolved_clickhouse_dsn())
    ledger = Ledger()
    run_id = uuid.uuid4().hex[:8]
    prefix = f"traffic-{run_id}-"
    producer = Producer(settings, ledger, args, run_id)
    newest_ms = int(time.time() * 1000)
    poll_seconds: list[float] = []
    producer.start()
    drain_deadline: float | None = None
    while True:
        worker.check()
        polled = time.perf_counter()
        newest_ms = poll_once(client, ledger, prefix, newest_ms - OVERLAP_MS)
        poll_seconds.append(time.perf_counter() - polled)
        if not producer.is_alive():
            if producer.error is not None:
                raise RuntimeError("the producer thread failed") from producer.error
            with ledger.lock:
                done = len(ledger.visible_at) >= len(ledger.sent_at)
            if done:
                break
            drain_deadline = drain_deadline or time.monotonic() + DRAIN_TIMEOUT_S
            if time.monotonic() > drain_deadline:
                break
        time.sleep(max(0.0, POLL_S - (time.perf_counter() - polled)))
    client.close()
    report(ledger, producer.stats, worker, poll_seconds, args)


def report(
    ledger: Ledger,
    stats: TrafficStats | None,
    worker: ThreadedWorker,
    poll_seconds: list[float],
    args: argparse.Namespace,
) -> None:
    assert stats is not None
    visible = [ledger.visible_at[i] - sent for i, sent in ledger.sent_at.items() if i in ledger.visible_at]
    ingested = [ledger.ingested_at[i] - sent for i, sent in ledger.sent_at.items() if i in ledger.visible_at]
    missing = len(ledger.sent_at) - len(visible)
    metrics = worker.metrics
    print(
        f"produced {stats.events:,} events in {stats.messages:,} envelopes of {args.per_message} over "
        f"{stats.seconds:.1f} s ({stats.events_per_second:,.0f} events/s, asked {args.rate:,.0f})"
    )
    print(
        f"worker: {metrics.sink_rows:,} rows in {metrics.sink_batches:,} inserts "
        f"(mean {metrics.sink_batch_seconds_sum / max(metrics.sink_batches, 1):.3f} s each), "
        f"sink batches of up to {args.batch_messages} envelopes or {args.flush_seconds} s"
    )
    poll_mean = sum(poll_seconds) / max(len(poll_seconds), 1)
    print(f"poller: {len(poll_seconds):,} queries every {POLL_S} s, mean {poll_mean * 1000:.1f} ms each")
    print(f"events measured: {len(visible):,} of {len(ledger.sent_at):,} sent ({missing:,} never seen)")
    print(summary("produce -> queryable", visible))
    print(summary("produce -> insert (ingested_at)", ingested))
    print_timeline(ledger)
    p95 = percentile(sorted(visible), 95) if visible else float("inf")
    verdict = "met" if p95 <= GOAL_P95_S and not missing else "MISSED"
    print(f"goal p95 <= {GOAL_P95_S:g} s: {verdict}")
    print(f"cpu_count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
