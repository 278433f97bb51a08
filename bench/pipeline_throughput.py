"""How close the real pipeline comes to the cheapest possible consumer of the same events.

Run: .venv/bin/python bench/pipeline_throughput.py [--events 200000] [--stages] [--py-spy SECONDS [--native]]

One run starts a local broker and builds N demo events (stamped over the last two hours) into
envelopes of 500, then measures two consumers, each a fresh child process:

(a) a bare aiokafka consumer (no group) that only json-decodes each envelope and walks its events,
    reading the whole backlog from a pre-filled 4-partition topic; timed from its first batch;
(b) `costline worker` (validate, dedupe, price, build rows, insert into its own chDB store) with its
    own consumer group. It first joins and stores a 500-event warm-up envelope; the clock starts when
    the backlog is produced to its (empty, 4-partition) topic and stops when /metrics shows every
    event inserted. Producing is far faster than the worker, so it never waits for input, and its
    start-up and the group join are left out, like (a)'s.

The ratio (b)/(a) is what the pipeline costs on top of reading Kafka; the goal is at least 0.5.
`--stages` adds an in-process breakdown of the worker's per-event work (and its GC share);
`--py-spy SECONDS` samples the worker during its timed run (py-spy must be installed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the worker harness lives with the integration tests

from kafka import KafkaProducer  # noqa: E402 - after the sys.path line above, like the rest

from costline.broker import LocalBroker, costline_topics, create_topics  # noqa: E402
from costline.ingest.demo import demo_events  # noqa: E402
from costline.ingest.wire import batch_messages  # noqa: E402
from costline.schemas.settings import Settings  # noqa: E402
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ProcessWorker  # noqa: E402

GOAL_RATIO = 0.5
WARM_UP_EVENTS = 500
BACKLOG_PREFIX = "demo-7"  # ids of demo_events(seed=7); the warm-up uses seed 8
POLL_S = 0.1
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port nothing listens on right now, picked by the OS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A memory figure of a live process from /proc, in MiB: VmHWM is the peak resident set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Measured:
    """One consumer's run over the backlog."""

    name: str
    events: int
    seconds: float
    peak_rss_mb: float
    cpu_seconds: float
    broker_cpu_seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        cpu = self.cpu_seconds / self.seconds
        broker = self.broker_cpu_seconds / self.seconds
        return (
            f"{self.name:<23} {self.rate:>9,.0f} events/s  ({self.events:,} events in {self.seconds:.2f} s; "
            f"CPU {cpu:.0%} of a core, broker {broker:.0%}; peak RSS {self.peak_rss_mb:,.0f} MiB{self.note})"
        )


def build_messages(count: int, per_message: int, seed: int = 7) -> list[bytes]:
    """`count` demo events stamped over the last 2 hours, as envelopes of `per_message`."""
    events = demo_events(count, seed=seed, span=timedelta(hours=2))
    messages: list[bytes] = batch_messages(events, max_events=per_message)
    return messages


def produce(bootstrap: str, topic: str, partitions: int, messages: Iterable[bytes]) -> int:
    """Send the messages round-robin over the partitions and wait until the broker has them all."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=1_048_576, max_request_size=1_048_576
    )
    sent = 0
    try:
        for message in messages:
            producer.send(topic, message, partition=sent % partitions)
            sent += 1
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=10)
    return sent


# (a) the bare consumer, run as `pipeline_throughput.py --bare-consumer ...` in a child process


async def bare_consume(
    bootstrap: str, topic: str, partitions: int, expected: int, broker_pid: int
) -> dict[str, float]:
    """Read the topic from the beginning without a group; json-decode envelopes, walk their events."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        events = first_events = 0
        first: float | None = None
        first_cpu = first_broker_cpu = 0.0
        while events < expected:
            batches = await consumer.getmany(timeout_ms=1_000)
            for records in batches.values():
                for record in records:
                    for event in json.loads(record.value)["events"]:
                        events += event["event_id"] is not None
            if first is None and events:
                first, first_events = time.perf_counter(), events
                first_cpu, first_broker_cpu = own_cpu_seconds(), cpu_seconds(broker_pid)
        assert first is not None
        return {
            "events": events - first_events,
            "seconds": time.perf_counter() - first,
            "cpu_seconds": own_cpu_seconds() - first_cpu,
            "broker_cpu_seconds": cpu_seconds(broker_pid) - first_broker_cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        await consumer.stop()


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_bare(broker: LocalBroker, topic: str, partitions: int, expected: int) -> Measured:
    command = [sys.executable, __file__, "--bare-consumer", broker.bootstrap_servers, topic]
    command += [str(partitions), str(expected), str(broker.pid)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return Measured(
        "bare aiokafka consumer",
        int(result["events"]),
        result["seconds"],
        result["peak_rss_mb"],
        result["cpu_seconds"],
        result["broker_cpu_seconds"],
    )


# (b) the real worker


def run_worker(
    broker: LocalBroker,
    settings: Settings,
    messages: Sequence[bytes],
    expected: int,
    work: Path,
    py_spy: float,
    native: bool,
) -> tuple[Measured, dict[str, float], Path | None]:
    bootstrap, topic, partitions = (
        broker.bootstrap_servers,
        settings.kafka_usage_topic,
        settings.kafka_partitions,
    )
    worker = ProcessWorker(settings, work / "worker.log").start()
    assert worker.process is not None
    pid = worker.process.pid
    profile: Path | None = None
    try:
        produce(bootstrap, topic, partitions, build_messages(WARM_UP_EVENTS, WARM_UP_EVENTS, seed=8))
        wait_until(
            worker, lambda m: m["costline_worker_sink_rows"] >= WARM_UP_EVENTS, JOIN_TIMEOUT_S, "warm-up"
        )
        idle_rss = rss_mb(pid, "VmRSS")
        started = time.perf_counter()
        cpu_at_start, broker_at_start = cpu_seconds(pid), cpu_seconds(broker.pid or 0)
        spy = start_py_spy(pid, py_spy, work / "worker.pyspy", native) if py_spy else None
        produce(bootstrap, topic, partitions, messages)
        total = WARM_UP_EVENTS + expected
        metrics = wait_until(
            worker, lambda m: m["costline_worker_sink_rows"] >= total, 3_600, f"{total:,} rows"
        )
        elapsed = time.perf_counter() - started
        measured = Measured(
            "costline worker",
            int(metrics["costline_worker_sink_rows"]) - WARM_UP_EVENTS,
            elapsed,
            rss_mb(pid),
            cpu_seconds(pid) - cpu_at_start,
            cpu_seconds(broker.pid or 0) - broker_at_start,
            f", {idle_rss:,.0f} MiB after warm-up",
        )
        if spy is not None:
            spy.wait(timeout=py_spy + 60)
            if (work / "worker.pyspy").exists():
                profile = work / "worker.pyspy"
            else:
                print(f"py-spy wrote no profile (exit status {spy.returncode})", file=sys.stderr)
    except BaseException:
        print(worker.log_tail(), file=sys.stderr)
        raise
    finally:
        worker.stop()
    return measured, metrics, profile


def wait_until(
    worker: ProcessWorker, condition: Callable[[dict[str, float]], bool], timeout: float, what: str
) -> dict[str, float]:
    """Poll /metrics; the page answers late while the worker's event loop is busy with a batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = dict(worker.metrics())
        if metrics and condition(metrics):
            return metrics
        if worker.process is not None and worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({worker.process.returncode}) before {what}")
        time.sleep(POLL_S)
    raise TimeoutError(f"no {what} after {timeout:.0f} s")


def stored_events(dsn: str, prefix: str) -> dict[str, object]:
    """Read the stopped worker's store from a fresh process (chDB: one owner per path)."""
    probe = ROOT / "tests" / "integration" / "store_probe.py"
    command = [sys.executable, str(probe), dsn, prefix]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300).stdout
    result: dict[str, object] = json.loads(output.strip().splitlines()[-1])
    return result


# --py-spy: where the worker's threads spend their samples

#: Stages of handle_batch, by the first frame (from the root) that names one.
MAIN_STAGES: tuple[tuple[str, str], ...] = (
    ("decode_envelope ", "decode envelope (json)"),
    ("EventProcessor._validate ", "validate (pydantic)"),
    ("Pricer.price ", "price"),
    ("to_rows ", "build rows"),
    ("send_dead_letters ", "dead letters"),
    ("StoreSink.write ", "sink.write (awaiting the store thread)"),
    ("RecentEventIds.remember ", "remember ids"),
    ("count (pipeline/agents/ingest.py", "metrics"),
)


def start_py_spy(pid: int, seconds: float, output: Path, native: bool) -> subprocess.Popen[bytes] | None:
    """Sample `pid` for `seconds`; native stacks (which show the garbage collector) pause it per sample."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(binary).exists():
        print("py-spy is not installed (.venv/bin/pip install py-spy); no profile", file=sys.stderr)
        return None
    command = [binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100"]
    command += ["--native"] if native else ["--nonblocking"]
    command += ["--threads", "--idle", "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def classify_sample(frames: list[str]) -> tuple[str, str]:
    """(thread, stage) of one py-spy stack."""
    thread = frames[0]
    if "MainThread" in thread:
        for frame in frames[1:]:
            for prefix, stage in MAIN_STAGES:
                if frame.startswith(prefix):
                    return "main", stage
        if any(frame.startswith("EpollSelector.select ") for frame in frames):
            return "main", "event loop waiting (insert in flight, or no input)"
        return "main", "Faust, aiokafka, event loop"
    if "costline-store" in thread:
        joined = ";".join(frames)
        if "deduplication_token " in joined:
            return "store", "dedup token"
        if "clickhouse_connect/datatypes" in joined:
            return "store", "serialize columns (clickhouse-connect)"
        if "Client.insert " in joined or "data_insert" in joined:
            return "store", "chDB insert"
        if "PricedEventWriter.write " in joined:
            return "store", "copy and transpose rows (writer)"
        if "refresh_rollups" in joined:
            return "store", "rollups"
        if "_WorkItem.run " not in joined:
            return "store", "idle (no insert queued)"
        return "store", "other"
    return "other threads", "aiokafka consumer thread and the rest"


def print_py_spy(profile: Path, native: bool) -> None:
    """Share of each thread's samples per stage, and (native stacks only) how much of it was GC."""
    samples: Counter[tuple[str, str]] = Counter()
    in_gc: Counter[tuple[str, str]] = Counter()
    for line in profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        key = classify_sample(frames)
        samples[key] += int(count)
        if any(frame.startswith("gc_collect_main ") for frame in frames):
            in_gc[key] += int(count)
    kind = "native stacks, blocking" if native else "Python stacks, non-blocking"
    print(f"\npy-spy on the worker during the timed run ({kind}); share of each thread's samples:")
    for thread in ("main", "store", "other threads"):
        total = sum(n for (t, _), n in samples.items() if t == thread) or 1
        rows = sorted(((n, stage) for (t, stage), n in samples.items() if t == thread), reverse=True)
        for n, stage in rows:
            gc_note = f"   of it GC {in_gc[(thread, stage)] / total:>4.0%}" if native else ""
            print(f"  {thread:<13} {stage:<52} {n / total:>5.0%}{gc_note}")


# --stages: the worker's per-event work timed stage by stage, in this process


class StageClock:
    """Wall time per stage, and how much of it the cyclic garbage collector took (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.gc_seconds: dict[str, float] = {}
        self._gc_total = 0.0
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_total += time.perf_counter() - self._gc_started

    def __enter__(self) -> StageClock:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._on_gc)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time the block takes (and the GC time inside it) to stage `name`."""
        started, gc_before = time.perf_counter(), self._gc_total
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.gc_seconds[name] = self.gc_seconds.get(name, 0.0) + self._gc_total - gc_before


def time_stages(messages: list[bytes], batch_size: int, dsn: str) -> StageClock:
    """Run `handle_batch`'s steps one after the other over `messages`, `batch_size` envelopes per insert."""
    from costline.ingest.wire import decode_envelope
    from costline.pipeline.pricing import Pricer
    from costline.pipeline.ratecard.load import load_default_rate_card
    from costline.pipeline.store.client import connect
    from costline.pipeline.store.migrations import apply_migrations
    from costline.pipeline.store.rows import priced_event_to_row
    from costline.pipeline.store.writer import PricedEventWriter, deduplication_token
    from costline.schemas.usage_event import UsageEvent

    pricer = Pricer(load_default_rate_card())
    client = connect(dsn)
    apply_migrations(client)
    writer = PricedEventWriter(client)
    with StageClock() as clock:
        for start in range(0, len(messages), batch_size):
            with clock.stage("decode envelope (json.loads)"):
                raws = [decode_envelope(m) for m in messages[start : start + batch_size]]
            with clock.stage("validate (UsageEvent.model_validate)"):
                events = [UsageEvent.model_validate(raw) for envelope in raws for raw in envelope]
            with clock.stage("price (Pricer.price)"):
                priced = [pricer.price(event) for event in events]
            with clock.stage("build rows (priced_event_to_row)"):
                rows = [
                    priced_event_to_row(p, kafka_partition=0, kafka_offset=start + i)
                    for i, p in enumerate(priced)
                ]
            with clock.stage("insert: dedup token"):
                deduplication_token(rows)
            with clock.stage("insert: serialize + chDB"):
                writer.write(rows)
            del raws, events, priced, rows  # a batch dies before the next one, as in the agent
    client.close()
    # writer.write computes the token again: count that part once, under its own name
    clock.seconds["insert: serialize + chDB"] -= clock.seconds["insert: dedup token"]
    clock.gc_seconds["insert: serialize + chDB"] -= clock.gc_seconds["insert: dedup token"]
    return clock


#: GC settings the stage breakdown compares: Python's default, a tuned collector, and none at all.
GC_VARIANTS: tuple[tuple[str, tuple[int, int, int] | None, bool], ...] = (
    ("default GC", (700, 10, 10), False),
    ("freeze+50k", (50_000, 20, 100), True),
    ("GC off", None, False),
)


def print_stage_breakdown(count: int, per_message: int, batch_messages_per_insert: int, rounds: int) -> None:
    """Time each step of `handle_batch` on the bench's kind of data, without Faust or Kafka.

    Runs in this process (the worker of the main run has stopped), each round on a fresh temporary
    chDB store so no insert is deduplicated away, under each GC setting of GC_VARIANTS in turn; the
    best round of each counts, which filters out most of a noisy machine's interference.
    """
    messages = batch_messages(list(demo_events(count, span=timedelta(hours=2))), max_events=per_message)
    thresholds = gc.get_threshold()
    best: dict[str, StageClock] = {}
    with tempfile.TemporaryDirectory(prefix="costline-stages-") as tmp:
        for round_ in range(rounds):
            for number, (name, threshold, freeze) in enumerate(GC_VARIANTS):
                gc.collect()
                if freeze:
                    gc.freeze()
                if threshold is None:
                    gc.disable()
                else:
                    gc.set_threshold(*threshold)
                try:
                    dsn = f"chdb://{Path(tmp) / f'store-{round_}-{number}'}"
                    clock = time_stages(messages, batch_messages_per_insert, dsn)
                finally:
                    gc.enable()
                    gc.unfreeze()
                    gc.set_threshold(*thresholds)
                if name not in best or sum(clock.seconds.values()) < sum(best[name].seconds.values()):
                    best[name] = clock
    default = best[GC_VARIANTS[0][0]]
    whole = sum(default.seconds.values())
    names = [name for name, _, _ in GC_VARIANTS]
    print(
        f"\nstages in-process, {count:,} events, inserts of {per_message * batch_messages_per_insert:,}, "
        f"best of {rounds} rounds (µs per event):"
    )
    print(
        f"  {'stage':<38} {names[0]:>10} {'of it GC':>9} {'share':>6} "
        + " ".join(f"{n:>10}" for n in names[1:])
    )
    for stage, seconds in default.seconds.items():
        others = " ".join(f"{best[n].seconds[stage] / count * 1e6:>10.1f}" for n in names[1:])
        print(
            f"  {stage:<38} {seconds / count * 1e6:>10.1f} {default.gc_seconds[stage] / count * 1e6:>9.1f} "
            f"{seconds / whole:>6.0%} {others}"
        )
    gc_whole = sum(default.gc_seconds.values())
    totals = [sum(best[n].seconds.values()) for n in names]
    print(
        f"  {'sum':<38} {whole / count * 1e6:>10.1f} {gc_whole / count * 1e6:>9.1f} {gc_whole / whole:>6.0%} "
        + " ".join(f"{t / count * 1e6:>10.1f}" for t in totals[1:])
    )
    print(
        "  serial ceiling (events/s): "
        + ", ".join(f"{name} {count / t:,.0f}" for name, t in zip(names, totals, strict=True))
        + "  [freeze+50k = gc.freeze() + gc.set_threshold(50_000, 20, 100)]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="events in the backlog")
    parser.add_argument("--per-message", type=int, default=500, help="events per envelope")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-messages", type=int, default=40, help="COSTLINE_SINK_BATCH_MESSAGES")
    parser.add_argument("--flush-seconds", type=float, default=0.5, help="COSTLINE_SINK_FLUSH_SECONDS")
    parser.add_argument("--stages", action="store_true", help="also time the worker's stages in-process")
    parser.add_argument("--py-spy", type=float, default=0, metavar="SECONDS", help="sample the worker")
    parser.add_argument(
        "--native", action="store_true", help="with --py-spy: native stacks, to see GC (slows the worker)"
    )
    parser.add_argument("--bare-consumer", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_consumer:
        bootstrap, topic, partitions, expected, broker_pid = args.bare_consumer
        result = asyncio.run(bare_consume(bootstrap, topic, int(partitions), int(expected), int(broker_pid)))
        print(json.dumps(result))
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # slow-poll warnings while the producer is busy

    with tempfile.TemporaryDirectory(prefix="costline-bench-") as tmp:
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
                worker_group="bench-worker",
                clickhouse_dsn=f"chdb://{work / 'store'}",
                metrics_port=free_port(),
                api_port=free_port(),
                sink_batch_messages=args.batch_messages,
                sink_flush_seconds=args.flush_seconds,
            )
            bare_topic = "bench.bare"
            create_topics(broker.bootstrap_servers, costline_topics(settings) | {bare_topic: args.partitions})
            started = time.perf_counter()
            messages = build_messages(args.events, args.per_message)
            produce(broker.bootstrap_servers, bare_topic, args.partitions, messages)
            print(
                f"backlog: {args.events:,} events in {len(messages):,} envelopes of {args.per_message}, "
                f"{sum(map(len, messages)) / 2**20:,.0f} MiB, {args.partitions} partitions "
                f"(built and produced in {time.perf_counter() - started:.1f} s)"
            )
            bare = run_bare(broker, bare_topic, args.partitions, args.events)
            print(bare.line())
            pipeline, metrics, profile = run_worker(
                broker, settings, messages, args.events, work, args.py_spy, args.native
            )
            print(pipeline.line())
            if profile is not None:
                print_py_spy(profile, args.native)
        finally:
            broker.stop()
        stored = stored_events(settings.resolved_clickhouse_dsn(), BACKLOG_PREFIX)
    problems = {
        name: metrics[f"costline_worker_{name}"]
        for name in ("events_dead_lettered", "messages_dead_lettered", "duplicates_dropped", "sink_errors")
    }
    m = {name.removeprefix("costline_worker_"): value for name, value in metrics.items()}
    print(
        f"worker metrics: events_in {m['events_in']:,.0f}, sink_rows {m['sink_rows']:,.0f} in "
        f"{m['sink_batches']:.0f} inserts ({m['sink_batch_seconds_sum']:.1f} s inside inserts), "
        + ", ".join(f"{name} {value:.0f}" for name, value in problems.items())
    )
    print(f"store check (fresh process): {stored['events']:,} stored, {stored['raw_rows']:,} rows")
    ratio = pipeline.rate / bare.rate
    verdict = "met" if ratio >= GOAL_RATIO else "MISSED"
    print(f"ratio pipeline/bare: {ratio:.3f} (goal >= {GOAL_RATIO}: {verdict})")
    print(f"cpu_count: {os.cpu_count()}")
    if stored["events"] != args.events or any(problems.values()):
        raise SystemExit("the worker did not store every backlog event exactly once; see above")
    if args.stages:
        print_stage_breakdown(min(args.events, 40_000), args.per_message, args.batch_messages, rounds=2)


if __name__ == "__main__":
    main()
