"""`costline init` (the deployments' one-shot job) and `costline healthcheck` (their probes).

Against real components: a real local HTTP server for the probe, the Tansu broker and the session's
chDB store for init, and unreachable ports for the bounded waits.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from costline.cli import app
from costline.cli_init import Component, detect_component

if TYPE_CHECKING:
    from costline.broker import LocalBroker

runner = CliRunner()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path in ("/healthz", "/_stcore/health") else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, int]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Health,), {}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("component", "setting"),
    [
        ("worker", "METRICS_PORT"),
        ("api", "API_PORT"),
        ("collector", "COLLECTOR_PORT"),
        ("dashboard", "DASHBOARD_PORT"),
    ],
)
def test_healthcheck_asks_the_components_own_port(
    health_server: tuple[ThreadingHTTPServer, int], component: str, setting: str
) -> None:
    server, port = health_server
    env = {f"COSTLINE_{setting}": str(port)}
    ok = runner.invoke(app, ["healthcheck", component], env=env)
    assert ok.exit_code == 0, ok.output
    assert f"{component} healthy: http://127.0.0.1:{port}/" in ok.output
    server.RequestHandlerClass.status = 503  # type: ignore[attr-defined]
    failing = runner.invoke(app, ["healthcheck", component], env=env)
    assert failing.exit_code == 1
    assert "HTTP 503" in failing.output


def test_healthcheck_fails_when_nothing_listens() -> None:
    result = runner.invoke(
        app,
        ["healthcheck", "collector", "--timeout", "1"],
        env={"COSTLINE_COLLECTOR_PORT": str(_unused_port())},
    )
    assert result.exit_code == 1
    assert "collector unhealthy" in result.output
    assert "no answer" in result.output


@pytest.mark.parametrize(
    ("cmdline", "component"),
    [
        (["/opt/costline/bin/python3.11", "/opt/costline/bin/costline", "worker"], Component.worker),
        (["/sbin/docker-init", "--", "costline", "api", "serve"], Component.api),
        (["/opt/costline/bin/costline", "collector", "--host", "0.0.0.0"], Component.collector),
        (["/opt/costline/bin/python", "-m", "streamlit", "run", "/x/dashboard/app.py"], Component.dashboard),
        (["/opt/costline/bin/costline", "init", "--timeout", "300"], None),
        (["/opt/costline/bin/costline"], None),
        ([], None),
    ],
)
def test_the_image_health_check_finds_the_command_process_1_runs(
    cmdline: list[str], component: Component | None
) -> None:
    assert detect_component(cmdline) is component


def test_init_gives_up_on_an_unreachable_kafka_after_the_timeout_clearly() -> None:
    port = _unused_port()
    result = runner.invoke(
        app, ["init", "--timeout", "2"], env={"COSTLINE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    )
    assert result.exit_code == 1
    assert f"gave up waiting for Kafka at 127.0.0.1:{port} after" in result.output


def test_init_refuses_cluster_mode_on_the_embedded_store(tmp_path: Path) -> None:
    env = {"COSTLINE_CLICKHOUSE_CLUSTER": "prod", "COSTLINE_CLICKHOUSE_DSN": f"chdb://{tmp_path}/store"}
    result = runner.invoke(app, ["init", "--timeout", "1"], env=env)
    assert result.exit_code == 1
    assert "COSTLINE_CLICKHOUSE_CLUSTER needs a ClickHouse server" in result.output


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    from costline.broker import LocalBroker

    with LocalBroker(_unused_port()) as started:
        yield started


@pytest.mark.integration
def test_init_creates_the_topics_and_migrates_and_is_idempotent(broker: LocalBroker, chdb_dsn: str) -> None:
    from kafka import KafkaAdminClient

    topic = f"init-usage-{uuid.uuid4().hex[:8]}"
    env = {
        "COSTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "COSTLINE_KAFKA_USAGE_TOPIC": topic,
        "COSTLINE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        "COSTLINE_KAFKA_PARTITIONS": "6",
        "COSTLINE_CLICKHOUSE_DSN": chdb_dsn,
    }
    first = runner.invoke(app, ["init", "--timeout", "30"], env=env)
    assert first.exit_code == 0, first.output
    assert (
        f"topics created: {topic}, {topic}.dlq" in first.output
        or f"topics created: {topic}.dlq, {topic}" in first.output
    )
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        described = {
            t["topic"] if "topic" in t else t["name"]: t
            for t in admin.describe_topics([topic, f"{topic}.dlq"])
        }
    finally:
        admin.close()
    assert len(described[topic]["partitions"]) == 6
    assert len(described[f"{topic}.dlq"]["partitions"]) == 1

    again = runner.invoke(app, ["init", "--timeout", "30"], env=env)
    assert again.exit_code == 0, again.output
    assert "topics created: none" in again.output
    assert "migrations: already up to date" in again.output


@pytest.mark.integration
def test_init_gives_up_on_an_unreachable_clickhouse_without_showing_the_password(broker: LocalBroker) -> None:
    port = _unused_port()
    topic = f"init-ch-{uuid.uuid4().hex[:8]}"
    result = runner.invoke(
        app,
        ["init", "--timeout", "3"],
        env={
            "COSTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "COSTLINE_KAFKA_USAGE_TOPIC": topic,
            "COSTLINE_KAFKA_DLQ_TOPIC": f"{topic}.dlq",
            "COSTLINE_CLICKHOUSE_DSN": f"http://costline:hunter2@127.0.0.1:{port}/costline",
        },
    )
    assert result.exit_code == 1
    assert f"gave up waiting for ClickHouse at http://costline:***@127.0.0.1:{port}/costline" in result.output
    assert "hunter2" not in result.output
