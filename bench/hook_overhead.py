"""What the SDK hooks add to an OpenAI call, measured with the real `openai` client.

Run: .venv/bin/python bench/hook_overhead.py [--calls 2000] [--delay-ms 5]

(a) Network: `chat.completions.create` against the local stub server (tests/unit/stub_llm_server.py,
    in a process of its own) answering after `--delay-ms`. Plain and instrumented calls alternate
    one by one (the hooks are installed and removed between calls, untimed), so drift hits both
    sides alike; before each timed call the recorder has finished the previous one (see (c)).
    Added time = instrumented − plain, at the median and at p99, in µs and as a share of the
    plain call. Run once with an in-memory sink and once with the real `BackgroundProducer`
    pointed at an unreachable broker (it spools to a temporary directory).
(b) In process: the same client over an in-memory HTTP transport that answers at once, so the
    few microseconds of the hook are not buried in socket jitter.
(c) Off the request path: what the recorder thread spends per event (normalize, build and
    validate the UsageEvent, hand it to the sink). This runs concurrently, not inside the call.
(d) The hook's own code: the wrapper around a stand-in method that returns a ready response.

Goal (issue 4): ≤ 50 µs added at the median and ≤ 2 % of the call, also while spooling.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the stub server lives with the unit tests

import httpx2  # noqa: E402 - after the sys.path line above, like the rest
import openai  # noqa: E402

from costline.ingest import emit as emit_module  # noqa: E402
from costline.ingest import hooks  # noqa: E402
from costline.ingest.hooks import common  # noqa: E402
from costline.schemas.settings import Settings  # noqa: E402
from tests.unit.stub_llm_server import chat_completion  # noqa: E402

GOAL_MEDIAN_US = 50.0
GOAL_SHARE = 0.02
WARM_UP = 50
BOOTSTRAP_ROUNDS = 300
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant for the billing team. " * 8},
    {"role": "user", "content": "Summarize invoice 2026-0042 in one line."},
]
SETTINGS = Settings.model_construct()


class MemorySink:
    def __init__(self) -> None:
        self.count = 0

    def emit(self, event: Any) -> None:
        self.count += 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def alternate(calls: int, call: Callable[[], Any]) -> tuple[list[float], list[float]]:
    """Per-call seconds, plain and instrumented, alternating call by call."""
    plain: list[float] = []
    instrumented: list[float] = []
    for i in range(calls + WARM_UP):
        for with_hooks in (False, True) if i % 2 else (True, False):
            if with_hooks:
                hooks.instrument(settings=SETTINGS)
            else:
                hooks.uninstrument()
            hooks.flush(30.0)  # the recorder's work on the previous call is measured in (c)
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            if i >= WARM_UP:
                (instrumented if with_hooks else plain).append(elapsed)
    hooks.uninstrument()
    hooks.flush(30.0)
    return plain, instrumented


def median_interval(plain: list[float], instrumented: list[float]) -> tuple[float, float]:
    """95 % bootstrap interval of the added median (how much of it is noise)."""
    rng = random.Random(7)
    diffs = sorted(
        statistics.median(rng.choices(instrumented, k=len(instrumented)))
        - statistics.median(rng.choices(plain, k=len(plain)))
        for _ in range(BOOTSTRAP_ROUNDS)
    )
    return diffs[int(0.025 * len(diffs))], diffs[int(0.975 * len(diffs)) - 1]


def report(name: str, plain: list[float], instrumented: list[float]) -> dict[str, float]:
    p50, i50 = statistics.median(plain), statistics.median(instrumented)
    p99, i99 = percentile(plain, 0.99), percentile(instrumented, 0.99)
    low, high = median_interval(plain, instrumented)
    row = {
        "plain_median_us": p50 * 1e6,
        "added_median_us": (i50 - p50) * 1e6,
        "added_median_share": (i50 - p50) / p50,
        "plain_p99_us": p99 * 1e6,
        "added_p99_us": (i99 - p99) * 1e6,
        "added_p99_share": (i99 - p99) / p99,
        "added_median_low_us": low * 1e6,
    }
    print(
        f"{name}\n    plain median {row['plain_median_us']:.0f} µs | added: median "
        f"{row['added_median_us']:.1f} µs ({row['added_median_share']:+.2%}; 95% interval "
        f"{low * 1e6:.1f} to {high * 1e6:.1f} µs), p99 {row['added_p99_us']:.1f} µs "
        f"({row['added_p99_share']:+.2%})"
    )
    return row


@contextmanager
def stub_process(delay_ms: float) -> Iterator[str]:
    """The stub server in a process of its own, so it does not share this process's GIL."""
    command = [sys.executable, "-m", "tests.unit.stub_llm_server", "--delay-ms", str(delay_ms)]
    server = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


def network(url: str, calls: int, delay_ms: float, sink_name: str) -> dict[str, float]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="test-dummy", max_retries=0)
    plain, instrumented = alternate(
        calls, lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    )
    client.close()
    return report(f"(a) network, stub {delay_ms:g} ms, {sink_name}", plain, instrumented)


def in_process(calls: int) -> dict[str, float]:
    body = json.dumps(chat_completion({"model": "gpt-4o-mini"}, "plain")).encode()

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "application/json"})

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    client = openai.OpenAI(base_url="http://stub.invalid/v1", api_key="test-dummy", http_client=http)
    plain, instrumented = alternate(
        calls, lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    )
    client.close()
    return report("(b) in process (instant in-memory transport)", plain, instrumented)


def hook_code(calls: int) -> dict[str, float]:
    """The wrapper around a stand-in SDK method that returns a ready ChatCompletion at once."""
    body = json.dumps(chat_completion({"model": "gpt-4o-mini"}, "plain")).encode()
    response = openai.types.chat.ChatCompletion.model_validate_json(body)

    def create(self: Any, **kwargs: Any) -> Any:
        return response

    switch = common.Switch()
    switch.on = True
    wrapped = common.sync_wrapper(create, hooks.openai.ChatAdapter(), switch)
    plain: list[float] = []
    instrumented: list[float] = []
    for i in range(calls + WARM_UP):
        for fn, out in ((create, plain), (wrapped, instrumented)):
            hooks.flush(30.0)
            start = time.perf_counter()
            fn(None, model="gpt-4o-mini", messages=MESSAGES)
            if i >= WARM_UP:
                out.append(time.perf_counter() - start)
    return report("(d) hook code alone (stand-in SDK method)", plain, instrumented)


def recorder_cost(calls: int) -> float:
    """Seconds of recorder-thread work per event, measured by building records synchronously."""
    body = json.dumps(chat_completion({"model": "gpt-4o-mini"}, "plain")).encode()
    response = openai.types.chat.ChatCompletion.model_validate_json(body)
    adapter = hooks.openai.ChatAdapter()
    sink = MemorySink()
    emit_module.set_sink(sink)
    start = time.perf_counter()
    for _ in range(calls):
        record, _kwargs = adapter.start(None, {"model": "gpt-4o-mini", "messages": MESSAGES})
        record.response, record.extract = response, hooks.openai.extract_chat
        emit_module.emit(common.build_event(record))
    return (time.perf_counter() - start) / calls


def producer_sink(spool_dir: str) -> Any:
    from costline.ingest.producer import BackgroundProducer

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init option
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing listens there: the broker is down
        spool_dir=Path(spool_dir),
    )
    return BackgroundProducer.from_settings(settings, connect_timeout_s=0.5)


def network_with_producer(url: str, calls: int, delay_ms: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="costline-bench-spool-") as spool_dir:
        producer = producer_sink(spool_dir)
        emit_module.set_sink(producer)
        row = network(url, calls, delay_ms, "BackgroundProducer, broker down")
        producer.flush(10.0)
        stats = producer.stats()
        print(
            f"    producer: spooled {stats['spooled']}, sent {stats['sent']}, "
            f"dropped {stats['dropped']}, broker_up {stats['broker_up']}"
        )
        producer.close(5.0)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per side and measurement")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="the stub's answer delay")
    args = parser.parse_args()

    print(f"os.cpu_count() = {os.cpu_count()}, python {sys.version.split()[0]}, openai {openai.__version__}")
    print(f"{args.calls} calls per side; goal: ≤ {GOAL_MEDIAN_US:.0f} µs median and ≤ {GOAL_SHARE:.0%}")
    results: dict[str, dict[str, float]] = {}

    with stub_process(args.delay_ms) as url:
        emit_module.set_sink(MemorySink())
        results["network_memory"] = network(url, args.calls, args.delay_ms, "in-memory sink")
        try:
            import costline.ingest.producer  # noqa: F401
        except ImportError:
            print("(a) network, producer: skipped (costline.ingest.producer is not available)")
        else:
            results["network_producer_down"] = network_with_producer(url, args.calls, args.delay_ms)

    emit_module.set_sink(MemorySink())
    results["in_process"] = in_process(args.calls)
    results["hook_code"] = hook_code(args.calls)
    per_event = recorder_cost(args.calls)
    print(f"(c) recorder thread, off the request path: {per_event * 1e6:.0f} µs of CPU per event")
    emit_module.set_sink(None)
    print(f"hook failures: {hooks.hook_failures()}, dropped records: {hooks.dropped_records()}")

    for name, row in results.items():
        limit = GOAL_MEDIAN_US
        if name.startswith("network"):
            limit = min(limit, GOAL_SHARE * row["plain_median_us"])
        if row["added_median_us"] <= limit:
            verdict = "meets the goal"
        elif row["added_median_low_us"] <= limit:
            verdict = "within noise of the goal (the 95% interval reaches it): run with more --calls"
        else:
            verdict = "misses the goal"
        print(f"{name}: added median {row['added_median_us']:.1f} µs vs ≤ {limit:.0f} µs: {verdict}")


if __name__ == "__main__":
    main()
