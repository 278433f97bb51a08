"""How long a budget alert takes: from producing the event that crosses a threshold to the webhook
request arriving, under a steady stream.

Run: .venv/bin/python bench/alert_latency.py [--seconds 60] [--rate 200] [--budgets 20]

One run starts a local broker, a real HTTP server standing in for the webhook, and the real worker
as a child process (`python -m costline worker`, its own chDB store, settings passed through
`Settings.to_env()`), with a budgets file of `--budgets` budgets, each scoped to one workload of
the run's team, thresholds 50% and 100%, monthly, routed to the generic webhook. A producer then
sends `--rate` events per second round-robin over those workloads, each costing exactly $0.01
(gpt-4.1, 1,250 output tokens), stamped "now". Budget amounts are spread so that the crossings
happen one after another during the run (2 per budget).

For each (budget, threshold) the crossing event is the first event, in send order, at which the
workload's cumulative produced spend reaches the threshold; its latency is the arrival time of that
alert's webhook request minus the time that event was handed to `producer.send`. That includes
the producer's linger, Kafka, the sink's batching and insert, up to one budget tick
(`--interval`, default the setting's 1 s), the spend query, the alert row insert and the POST.
Goal: p95 <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the worker harness lives with the integration tests

from kafka import KafkaProducer  # noqa: E402 - after the sys.path line above, like the rest

from costline.broker import LocalBroker, costline_topics, create_topics  # noqa: E402
from costline.ingest.wire import batch_messages  # noqa: E402
from costline.schemas.settings import Settings  # noqa: E402
from costline.schemas.usage_event import UsageEvent  # noqa: E402
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ProcessWorker, wait_for  # noqa: E402

GOAL_P95_S = 5.0
EVENT_COST = Decimal("0.01")
OUTPUT_TOKENS = 1_250  # gpt-4.1 output is $8 per million tokens: 1,250 tokens cost $0.01
THRESHOLDS = (50, 100)
SEND_EVERY_S = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Arrivals:
    """Webhook requests as they arrive: (budget, threshold) -> arrival time, plus every body."""

    at: dict[tuple[str, int], float] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_webhook(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            now = time.time()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            with arrivals.lock:
                arrivals.bodies.append(body)
                key = (body.get("budget"), body.get("threshold"))
                arrivals.at.setdefault(key, now)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_budgets(path: Path, team: str, amounts: list[Decimal]) -> None:
    lines = ["budgets:"]
    for i, amount in enumerate(amounts):
        lines += [
            f"  - name: b{i:03d}",
            f"    scope: {{team: {team}, workload: w{i:03d}}}",
            "    period: monthly",
            f'    amount_usd: "{amount}"',
            f"    thresholds: [{', '.join(str(t) for t in THRESHOLDS)}]",
            "    forecast: false",
            "    notify: [webhook]",
        ]
    path.write_text("\n".join(lines) + "\n")


def event(run: str, n: int, team: str, workload: str) -> UsageEvent:
    return UsageEvent.model_validate(
        {
            "event_id": f"{run}-{n}",
            "occurred_at": datetime.now(UTC),
            "source": "bench",
            "provider": "openai",
            "response_model": "gpt-4.1",
            "tokens": {"output_visible": OUTPUT_TOKENS},
            "attribution": {"team": team, "workload": workload},
        }
    )


@dataclass
class Sent:
    """Send time of the event that crossed each (budget, threshold), in send order."""

    crossing_sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    events: int = 0
    seconds: float = 0.0


def produce(
    settings: Settings, run: str, team: str, amounts: list[Decimal], rate: float, seconds: float
) -> Sent:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5)
    spent = [Decimal(0)] * len(amounts)
    sent = Sent()
    per_tick = max(1, round(rate * SEND_EVERY_S))
    started = time.monotonic()
    next_at = started
    n = 0
    while time.monotonic() - started < seconds:
        batch, crossings = [], []
        for _ in range(per_tick):
            i = n % len(amounts)
            batch.append(event(run, n, team, f"w{i:03d}"))
            before = spent[i]
            spent[i] += EVENT_COST
            for threshold in THRESHOLDS:
                limit = amounts[i] * threshold / 100
                if before < limit <= spent[i]:
                    crossings.append((f"b{i:03d}", threshold))
            n += 1
        for message in batch_messages(batch, max_events=per_tick):
            producer.send(settings.kafka_usage_topic, message)
        now = time.time()
        for key in crossings:
            sent.crossing_sent_at[key] = now
        next_at += SEND_EVERY_S
        time.sleep(max(0.0, next_at - time.monotonic()))
    producer.flush(timeout=30)
    producer.close(timeout=10)
    sent.events = n
    sent.seconds = time.monotonic() - started
    return sent


def percentile(values: list[float], q: float) -> float:
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return sorted(values)[index]


def metrics(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to produce")
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--budgets", type=int, default=20, help="budgets (each crossed twice)")
    parser.add_argument(
        "--interval", type=float, default=Settings().budget_interval_s, help="budget tick (s)"
    )
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    team = f"bench-{run}"
    per_workload_rate = Decimal(str(args.rate)) / args.budgets * EVENT_COST  # USD per second per workload
    first, last = 5.0, max(args.seconds - 5.0, 6.0)
    amounts = [
        (per_workload_rate * Decimal(str(first + (last - first) * i / max(args.budgets - 1, 1)))).quantize(
            Decimal("0.01")
        )
        for i in range(args.budgets)
    ]
    arrivals = Arrivals()
    webhook = start_webhook(arrivals)
    with tempfile.TemporaryDirectory(prefix="costline-alert-latency-") as tmp:
        work = Path(tmp)
        budgets_path = work / "budgets.yaml"
        write_budgets(budgets_path, team, amounts)
        broker = LocalBroker(free_port(), log_path=work / "tansu.log")
        broker.start()
        worker: ProcessWorker | None = None
        try:
            settings = Settings(
                data_dir=work,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                kafka_usage_topic="bench.usage",
                kafka_dlq_topic="bench.dlq",
                worker_group="bench-alerts",
                clickhouse_dsn=f"chdb://{work / 'store'}",
                metrics_port=free_port(),
                api_port=free_port(),
                budgets_path=budgets_path,
                budget_interval_s=args.interval,
                alert_webhook_url=f"http://127.0.0.1:{webhook.server_address[1]}/hooks/secret",
            )
            create_topics(broker.bootstrap_servers, costline_topics(settings))
            worker = ProcessWorker(settings, work / "worker.log").start()
            warm = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
            for message in batch_messages([event(run, -1, "warmup", "warmup")], max_events=1):
                warm.send(settings.kafka_usage_topic, message)
            warm.close(timeout=10)
            started = time.monotonic()
            wait_for(
                lambda: metrics(settings.metrics_port).get("costline_worker_sink_rows", 0) >= 1,
                JOIN_TIMEOUT_S,
                "the worker to join and store the warm-up event",
            )
            print(f"worker joined and stored the warm-up after {time.monotonic() - started:.1f} s")
            sent = produce(settings, run, team, amounts, args.rate, args.seconds)
            expected = set(sent.crossing_sent_at)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with arrivals.lock:
                    if expected <= set(arrivals.at):
                        break
                time.sleep(0.1)
            wait_for(
                lambda: metrics(settings.metrics_port).get("costline_worker_sink_rows", 0) >= sent.events + 1,
                60,
                "every event to be stored",
            )
            report(sent, arrivals, expected, args, metrics(settings.metrics_port))
        finally:
            if worker is not None:
                worker.stop()
            broker.stop()
            webhook.shutdown()


def report(
    sent: Sent,
    arrivals: Arrivals,
    expected: set[tuple[str, int]],
    args: argparse.Namespace,
    counters: dict[str, float],
) -> None:
    with arrivals.lock:
        latencies = [arrivals.at[key] - sent.crossing_sent_at[key] for key in expected if key in arrivals.at]
        duplicates = len(arrivals.bodies) - len(arrivals.at)
        unexpected = set(arrivals.at) - expected
    rate = sent.events / sent.seconds
    print(
        f"produced {sent.events:,} events over {sent.seconds:.1f} s ({rate:,.0f} events/s, "
        f"asked {args.rate:,.0f}); {args.budgets} budgets, thresholds {list(THRESHOLDS)}, "
        f"tick {args.interval} s"
    )
    missing = len(expected) - len(latencies)
    print(
        f"crossings: {len(expected)} expected, {len(latencies)} alerted, {missing} missing, "
        f"{duplicates} duplicate requests, {len(unexpected)} unexpected alerts"
    )
    print(f"worker rows stored: {counters.get('costline_worker_sink_rows', 0):,.0f}")
    if latencies:
        figures = ", ".join(f"p{q} {percentile(latencies, q):.3f} s" for q in (50, 95))
        print(
            f"produce -> webhook arrival: {figures}, max {max(latencies):.3f} s, min {min(latencies):.3f} s"
        )
        verdict = (
            "met" if percentile(latencies, 95) <= GOAL_P95_S and len(latencies) == len(expected) else "MISSED"
        )
        print(f"goal p95 <= {GOAL_P95_S:g} s: {verdict}")
    print(f"cpu_count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
