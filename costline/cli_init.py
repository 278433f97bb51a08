"""`costline init` and `costline healthcheck`: what a deployment runs beside the services.

`init` is the one-shot job of the compose stack and of the Kubernetes Job: it waits (bounded)
for Kafka and ClickHouse, creates costline's topics with their partition counts and applies the
migrations (rewritten for the cluster when `COSTLINE_CLICKHOUSE_CLUSTER` is set). Every step is
idempotent, so the same job runs again before each upgrade.

`healthcheck` is the image's HEALTHCHECK and the Kubernetes exec probe: one image runs several
commands, so the probe names the command and asks that command's endpoint on this host. An exec
probe also reaches the worker, whose metrics server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from costline.schemas.errors import BrokerError, ConfigError, CostlineError, StoreError
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

logger = logging.getLogger(__name__)

ops_app = typer.Typer(add_completion=False)

T = TypeVar("T")

#: Exit status of `init` when Kafka or ClickHouse stayed unreachable or refused a step.
EXIT_INIT_FAILED = 1
#: Seconds between attempts while a dependency is not reachable yet (doubling up to the cap).
RETRY_FIRST_S = 1.0
RETRY_CAP_S = 5.0


class Component(StrEnum):
    """The long-running commands of the image."""

    worker = "worker"
    api = "api"
    collector = "collector"
    dashboard = "dashboard"


#: Per component: the setting holding its port, and the path that answers 200 when it is up.
HEALTH_ENDPOINTS: dict[Component, tuple[str, str]] = {
    Component.worker: ("metrics_port", "/healthz"),
    Component.api: ("api_port", "/healthz"),
    Component.collector: ("collector_port", "/healthz"),
    Component.dashboard: ("dashboard_port", "/_stcore/health"),
}


def health_url(settings: Settings, component: Component) -> str:
    """The local URL that tells whether `component` is up."""
    port_setting, path = HEALTH_ENDPOINTS[component]
    return f"http://127.0.0.1:{getattr(settings, port_setting)}{path}"


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, what was seen): healthy means a 2xx answer within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
            return 200 <= status < 300, f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"no answer ({reason})"


def detect_component(cmdline: list[str]) -> Component | None:
    """The component a container's main process runs, from its argv (`costline worker`, `costline api
    serve`, or Streamlit, which `costline dashboard` replaces itself with); None for one-shot commands."""
    if any(arg.endswith("streamlit") for arg in cmdline) and "run" in cmdline:
        return Component.dashboard
    for index, arg in enumerate(cmdline):
        if arg == "costline" or arg.endswith("/costline"):
            command = cmdline[index + 1] if index + 1 < len(cmdline) else ""
            return Component(command) if command in Component.__members__ else None
    return None


def main_process_cmdline(pid: int = 1) -> list[str]:
    """argv of process `pid` (the container's main process), empty when it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@ops_app.command()
def healthcheck(
    component: Annotated[
        Component | None,
        typer.Argument(help="Which command to check (default: the one this container's main process runs)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the answer.")
    ] = 3.0,
) -> None:
    """Exit 0 when the component's local health endpoint answers 2xx, else 1 (container health checks).

    Without an argument the component is read from process 1's command line, so the image's single
    HEALTHCHECK fits every command; a one-shot command (init, migrate) has nothing to check and passes.
    """
    if component is None:
        cmdline = main_process_cmdline()
        component = detect_component(cmdline)
        if component is None:
            typer.echo(f"no health endpoint for {' '.join(cmdline) or 'this process'}; nothing to check")
            raise typer.Exit(0)
    url = health_url(Settings(), component)
    healthy, seen = probe(url, timeout)
    typer.echo(f"{component.value} {'healthy' if healthy else 'unhealthy'}: {url} → {seen}")
    raise typer.Exit(0 if healthy else 1)


@dataclass
class InitResult:
    """What `init` found and did."""

    topics_created: list[str] = field(default_factory=list)
    topics_existing: list[str] = field(default_factory=list)
    migrations_applied: list[str] = field(default_factory=list)

    def summary(self) -> str:
        topics = (
            f"topics created: {', '.join(self.topics_created) or 'none'}; "
            f"already there: {', '.join(self.topics_existing) or 'none'}"
        )
        applied = self.migrations_applied
        return f"{topics}\nmigrations: {'applied ' + ', '.join(applied) if applied else 'already up to date'}"


def retry_until(
    what: str,
    action: Callable[[], T],
    deadline: float,
    errors: tuple[type[Exception], ...],
    give_up: type[CostlineError],
) -> T:
    """Run `action` until it succeeds or `deadline` (monotonic) passes, then raise `give_up` saying why."""
    delay = RETRY_FIRST_S
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except errors as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise give_up(
                    f"gave up waiting for {what} after {time.monotonic() - started:.0f} s "
                    f"({attempt} attempt(s)): {exc}"
                ) from exc
            logger.warning("waiting for %s (attempt %d): %s", what, attempt, exc)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, RETRY_CAP_S)


def run_init(settings: Settings, *, timeout: float, replication_factor: int = 1) -> InitResult:
    """Create the topics and apply the migrations, waiting at most `timeout` seconds for each dependency."""
    from costline.broker import costline_topics, create_topics
    from costline.pipeline.store.client import connect, redact_dsn
    from costline.pipeline.store.migrations import apply_migrations

    dsn = settings.resolved_clickhouse_dsn()
    if settings.clickhouse_cluster and dsn.startswith("chdb:"):
        raise ConfigError(
            "COSTLINE_CLICKHOUSE_CLUSTER needs a ClickHouse server: set COSTLINE_CLICKHOUSE_DSN to "
            "http(s)://user:password@host:8123/database, or unset the cluster for the embedded store"
        )
    result = InitResult()
    topics = costline_topics(settings)
    bootstrap = settings.kafka_bootstrap_servers
    deadline = time.monotonic() + timeout

    def make_topics() -> list[str]:
        attempt_timeout = max(1.0, min(10.0, deadline - time.monotonic()))
        return create_topics(
            bootstrap, topics, replication_factor=replication_factor, timeout=attempt_timeout
        )

    result.topics_created = retry_until(
        f"Kafka at {bootstrap}", make_topics, deadline, (BrokerError,), BrokerError
    )
    result.topics_existing = sorted(set(topics) - set(result.topics_created))

    deadline = time.monotonic() + timeout

    def reach_store() -> Client:
        client = connect(dsn)
        client.command("SELECT 1")
        return client

    from clickhouse_connect.driver.exceptions import ClickHouseError

    client = retry_until(
        f"ClickHouse at {redact_dsn(dsn)}",
        reach_store,
        deadline,
        (StoreError, ClickHouseError, OSError),
        StoreError,
    )
    result.migrations_applied = apply_migrations(client, cluster=settings.clickhouse_cluster)
    return result


@ops_app.command()
def init(
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for Kafka, then for ClickHouse.")
    ] = 300.0,
    replication_factor: Annotated[
        int, typer.Option("--replication-factor", min=1, help="Replicas of each new topic (3 in production).")
    ] = 1,
) -> None:
    """Create the Kafka topics (usage topic with COSTLINE_KAFKA_PARTITIONS partitions, DLQ) and apply the
    ClickHouse migrations, waiting for both to be reachable. Idempotent: run it before every upgrade."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # retries are reported once per attempt here
    try:
        result = run_init(Settings(), timeout=timeout, replication_factor=replication_factor)
    except CostlineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_INIT_FAILED) from exc
    typer.echo(result.summary())
