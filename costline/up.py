"""`costline up`: everything on 127.0.0.1 with the embedded defaults.

Starts the local broker and creates the topics, starts `costline worker` (which owns the embedded
store and serves the read API and its metrics pages), starts the dashboard (`costline dashboard`),
sends a demo batch through the broker, waits until the worker has stored it and prints a summary
the worker read back from the store, the dashboard URL and a fresh demo admin token; then keeps
demo traffic flowing until Ctrl-C, which stops every child.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.dashboard.api.auth import TokenStore, add_token
from costline.ingest.demo import demo_events
from costline.ingest.wire import batch_messages
from costline.schemas.errors import ConfigError, CostlineError
from costline.schemas.settings import Settings

#: Longest wait for the detectors' first findings on the demo batch (they run a second or two
#: behind the store: signals go through Kafka, anomalies are flushed every second).
FINDINGS_TIMEOUT_S = 20.0

#: Longest wait for the worker to join its group and store the demo batch (Tansu joins are slow).
DEMO_TIMEOUT_S = 120.0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _check_ports(settings: Settings) -> None:
    """Fail before starting anything when a port `up` needs is taken, naming the setting to change."""
    ports = (
        ("COSTLINE_METRICS_PORT", settings.metrics_port),
        ("COSTLINE_API_PORT", settings.api_port),
        ("COSTLINE_DASHBOARD_PORT", settings.dashboard_port),
    )
    seen: dict[int, str] = {}
    for name, port in ports:
        if port in seen:
            raise ConfigError(f"{name} and {seen[port]} are both {port}; give each its own port")
        seen[port] = name
        if not _port_free(port):
            raise ConfigError(f"port {port} on 127.0.0.1 is already in use; stop what uses it or set {name}")


#: Name of the admin token `up` creates (and replaces on every run) for the demo.
DEMO_TOKEN_NAME = "demo-admin"


def rotate_demo_token(path: Path) -> str:
    """A fresh admin token named `demo-admin` in the tokens file; the previous one stops working.

    Other tokens in the file are kept. The file is rewritten atomically, owner-readable only.
    """
    if path.exists():
        TokenStore.from_file(path)  # refuse to rewrite a broken file
        document = yaml.safe_load(path.read_text()) or {"tokens": []}
        kept = [entry for entry in document.get("tokens") or [] if entry.get("name") != DEMO_TOKEN_NAME]
        if len(kept) != len(document.get("tokens") or []):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(yaml.safe_dump({**document, "tokens": kept}, sort_keys=False))
            tmp.chmod(0o600)
            tmp.replace(path)
    return add_token(path, DEMO_TOKEN_NAME, "admin")


def _child_env(settings: Settings, bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")}
    return env | settings.to_env() | {"COSTLINE_KAFKA_BOOTSTRAP_SERVERS": bootstrap}


@contextmanager
def _child(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A costline child process in its own session, stopped (TERM, then KILL) on the way out."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "costline", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _wait(
    condition: Callable[[], bool],
    process: subprocess.Popen[bytes],
    log_path: Path,
    what: str,
    *,
    child: str = "worker",
    timeout: float = DEMO_TIMEOUT_S,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CostlineError(
                f"the {child} exited with status {process.returncode} while {what}:\n{_tail(log_path)}"
            )
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise CostlineError(f"timed out after {timeout:.0f}s while {what}; see {log_path}")


def _tail(log_path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log_path})"


def _api_answers(api_url: str, token: str) -> bool:
    """True once the read API is up and accepts the demo token (`GET /api/v1/me`)."""
    if not _get_json(f"{api_url}/healthz"):
        return False
    request = urllib.request.Request(f"{api_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(json.loads(response.read()).get("role") == "admin")
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise CostlineError(
                "the read API does not accept the demo admin token; does the worker read "
                "COSTLINE_API_TOKENS_PATH?"
            ) from exc
        raise


def _dashboard_answers(dashboard_url: str) -> bool:
    """True once Streamlit's health endpoint answers `ok`."""
    with urllib.request.urlopen(f"{dashboard_url}/_stcore/health", timeout=5) as response:
        return response.read().strip() == b"ok"


def _sink_rows(metrics_url: str) -> int:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("costline_worker_sink_rows "):
                return int(float(line.split()[1]))
    return 0


def _send_demo_batch(bootstrap: str, topic: str, count: int) -> int:
    end = datetime.now(UTC)
    events = list(demo_events(count, seed=int(end.timestamp()), end=end, span=timedelta(days=6)))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=1_048_576)
    try:
        for message in batch_messages(events):
            producer.send(topic, message)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return len(events)


def _usd(amount: str) -> str:
    """A decimal string rounded for display (to 1/100 of a cent); the stored value stays exact."""
    return str(Decimal(amount).quantize(Decimal("0.0001")))


def _api_get(api_url: str, token: str, path: str, **params: str) -> Any:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    request = urllib.request.Request(
        f"{api_url}/api/v1{path}{query}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _print_findings(console: Console, api_url: str, token: str) -> None:
    """What the detectors found in the demo batch, read through the read API like any client."""
    since = (datetime.now(UTC) - timedelta(days=7)).isoformat()
    deadline = time.monotonic() + FINDINGS_TIMEOUT_S
    totals: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        totals = _api_get(api_url, token, "/anomalies", since=since)["totals"]
        if totals:
            break
        time.sleep(1)
    if not totals:
        console.print("detectors: nothing flagged yet; findings appear on the dashboard's Anomalies page")
        return
    table = Table(title="waste the detectors found so far (more arrive as traffic flows)")
    for name in ("kind", "anomalies", "calls", "wasted USD"):
        table.add_column(name, justify="left" if name == "kind" else "right")
    for total in totals:
        table.add_row(total["kind"], str(total["anomalies"]), str(total["calls"]), _usd(total["wasted_cost"]))
    console.print(table)


def _api_post(api_url: str, token: str, path: str) -> Any:
    request = urllib.request.Request(
        f"{api_url}/api/v1{path}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _print_recommendations(console: Console, api_url: str, token: str) -> None:
    """Recompute recommendations over the demo batch now (the worker's own run is hourly) and sum them."""
    _api_post(api_url, token, "/recommendations/refresh")
    rows = _api_get(api_url, token, "/recommendations")["rows"]
    groups: dict[tuple[str, str], list[Decimal]] = {}
    for row in rows:
        groups.setdefault((row["kind"], row["status"]), []).append(Decimal(row["monthly_saving"]))
    if not groups:
        console.print("recommendations: none on the demo batch yet")
        return
    table = Table(title="routing recommendations on the demo batch (projected per month)")
    for name in ("kind", "status", "count", "saving USD/month"):
        table.add_column(name, justify="left" if name in ("kind", "status") else "right")
    for (kind, status), savings in sorted(groups.items(), key=lambda item: -sum(item[1])):
        table.add_row(kind, status, str(len(savings)), _usd(str(sum(savings))))
    console.print(table)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    total = summary["total"]
    console.print(
        f"\nstored (last 7 days): {total['events']} events, effective cost "
        f"[bold]${_usd(total['effective_cost'])}[/] (list ${_usd(total['list_cost'])}); "
        f"unpriced events: {total['unpriced_events']}, "
        f"partially priced: {total['partial_events']}"
    )
    for dimension in ("team", "model"):
        table = Table(title=f"spend by {dimension}, read back from the store")
        table.add_column(dimension)
        for name in ("events", "unpriced", "effective USD"):
            table.add_column(name, justify="right")
        for group in summary[f"by_{dimension}"]:
            table.add_row(
                group["key"] or "(none)",
                str(group["events"]),
                str(group["unpriced_events"]),
                f"{float(group['effective_cost']):.4f}",
            )
        console.print(table)


def run_up(
    settings: Settings, *, demo_count: int, once: bool, traffic_rate: float, console: Console | None = None
) -> None:
    """Start broker, worker (with the read API) and dashboard, run the demo batch through them,
    then stream demo traffic until Ctrl-C (`once`: exit after the demo summary)."""
    console = console or Console(soft_wrap=True)
    _check_ports(settings)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir})
    # Before the worker starts, so the worker's token store has it whenever it reads the file.
    token = rotate_demo_token(settings.resolved_api_tokens_path().resolve())
    api_url = f"http://127.0.0.1:{settings.api_port}"
    dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}"
    broker_log = data_dir / "broker.log"
    with LocalBroker(settings.broker_port, binary=settings.broker_binary, log_path=broker_log) as broker:
        bootstrap = broker.bootstrap_servers
        create_topics(bootstrap, costline_topics(settings))
        console.print(
            f"broker    [bold]{bootstrap}[/] (Tansu, memory only), pid {broker.pid}, log {broker_log}"
        )
        env = _child_env(settings, bootstrap) | {"COSTLINE_API_URL": api_url}
        worker_log = data_dir / "worker.log"
        with _child(["worker"], env, worker_log) as worker:
            base = f"http://127.0.0.1:{settings.metrics_port}"
            console.print(
                f"worker    pid {worker.pid}, store [bold]{data_dir / 'store'}[/] (chDB), log {worker_log}"
            )
            _wait(lambda: bool(_get_json(f"{base}/healthz")), worker, worker_log, "starting")
            _wait(
                lambda: _api_answers(api_url, token),
                worker,
                worker_log,
                f"starting the read API on {api_url}",
            )
            console.print(f"api       [bold]{api_url}/api/v1[/] (OpenAPI at {api_url}/api/v1/docs)")
            dashboard_log = data_dir / "dashboard.log"
            with _child(["dashboard"], env, dashboard_log) as dashboard:
                console.print(f"dashboard pid {dashboard.pid}, log {dashboard_log}")
                before = _sink_rows(f"{base}/metrics")
                sent = _send_demo_batch(bootstrap, settings.kafka_usage_topic, demo_count)
                console.print(
                    f"demo      {sent} events sent to {settings.kafka_usage_topic}; "
                    "waiting for the worker to store them"
                )
                _wait(
                    lambda: _sink_rows(f"{base}/metrics") >= before + sent,
                    worker,
                    worker_log,
                    "storing the demo batch",
                )
                _print_summary(console, _get_json(f"{base}/summary?days=7"))
                _print_findings(console, api_url, token)
                _print_recommendations(console, api_url, token)
                _wait(
                    lambda: _dashboard_answers(dashboard_url),
                    dashboard,
                    dashboard_log,
                    "starting",
                    child="dashboard",
                    timeout=60,
                )
                console.print(
                    f"\n[bold]dashboard {dashboard_url}[/]\n"
                    f"token     [bold]{token}[/] (demo admin; sign in with it; replaced on the next run)"
                )
                if once:
                    return
                _run_until_stopped(
                    console, env, data_dir, traffic_rate, base, {"worker": worker, "dashboard": dashboard}
                )
    console.print("stopped.")


def _run_until_stopped(
    console: Console,
    env: dict[str, str],
    data_dir: Path,
    traffic_rate: float,
    metrics_url: str,
    children: dict[str, subprocess.Popen[bytes]],
) -> None:
    """Stream demo traffic until Ctrl-C (or SIGTERM); a child that dies ends the run with its log."""
    traffic_log = data_dir / "traffic.log"
    stop_requested = _install_stop_handlers()
    with _child(["demo-traffic", "--rate", str(traffic_rate)], env, traffic_log) as traffic:
        console.print(
            f"traffic   pid {traffic.pid}, {traffic_rate:g} events/s of demo usage (with some malformed "
            f"messages), log {traffic_log}\n"
            f"metrics   {metrics_url}/metrics (counters, consumer lag) and {metrics_url}/summary (spend)\n"
            "Running. Press Ctrl-C to stop everything."
        )
        while not stop_requested():
            for name, process in children.items():
                if process.poll() is not None:
                    log_path = data_dir / f"{name}.log"
                    raise CostlineError(
                        f"the {name} exited with status {process.returncode}; stopping everything. "
                        f"Last lines of {log_path}:\n{_tail(log_path)}"
                    )
            time.sleep(0.5)


def _install_stop_handlers() -> Callable[[], bool]:
    """Ctrl-C and SIGTERM end the run normally, so every child is stopped on the way out."""
    requested = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal requested
        requested = True

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return lambda: requested
