"""The `costline` command line: one Typer app, one small function per command.

Commands import their heavy dependencies (chDB, the broker, Faust) inside the function, so
`costline price` stays quick and works with the light install.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer
from pydantic import ValidationError

from costline.cli_api import api_app
from costline.cli_dashboard import dashboard as dashboard_command
from costline.cli_ingest import ingest_app
from costline.cli_init import ops_app
from costline.cli_recommend import evals_app, recommend_app
from costline.cli_report import period_app, report_app
from costline.schemas.errors import CostlineError, describe_validation_error
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.pipeline.ratecard.model import RateCard

app = typer.Typer(no_args_is_help=True, add_completion=False, help="LLM cost observability and chargeback.")
ratecard_app = typer.Typer(no_args_is_help=True, help="Import and check rate cards.")
app.add_typer(ratecard_app, name="ratecard")
app.add_typer(ingest_app, name="ingest")
app.add_typer(recommend_app, name="recommend")
app.add_typer(evals_app, name="evals")
app.add_typer(api_app, name="api")
app.add_typer(ops_app)  # init, healthcheck
app.add_typer(report_app, name="report")
app.add_typer(period_app, name="period")
app.command("dashboard")(dashboard_command)

#: Exit status when some input lines could not be processed (the others were).
EXIT_SOME_LINES_FAILED = 1
#: Exit status for a usage or configuration error (nothing was processed).
EXIT_ERROR = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _load_card(path: Path | None) -> RateCard:
    from costline.pipeline.ratecard.load import load_default_rate_card, load_rate_card

    return load_rate_card(path) if path is not None else load_default_rate_card()


@app.command()
def price(
    file: Annotated[Path | None, typer.Argument(help="UsageEvent JSON lines; stdin when omitted.")] = None,
    ratecard: Annotated[
        Path | None, typer.Option("--ratecard", help="Rate card YAML or LiteLLM JSON (default: bundled).")
    ] = None,
) -> None:
    """Price UsageEvent JSON lines and write PricedEvent JSON lines to stdout.

    A line that is not a valid event is reported on stderr with its line number and skipped;
    the exit status is 1 when any line failed.
    """
    from costline.pipeline.pricing import Pricer
    from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

    settings = Settings()
    try:
        pricer = Pricer(_load_card(ratecard or settings.ratecard_path))
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    failed = 0
    stream: TextIO = file.open(encoding="utf-8") if file is not None else sys.stdin
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                event = UsageEvent.model_validate_json(line, context={CHECK_TIME_WINDOW: False})
            except ValidationError as exc:
                failed += 1
                typer.echo(f"line {number}: {describe_validation_error(exc)}", err=True)
                continue
            sys.stdout.write(pricer.price(event).model_dump_json() + "\n")
    if failed:
        typer.echo(f"{failed} line(s) failed; the others were priced", err=True)
        raise typer.Exit(EXIT_SOME_LINES_FAILED)


@app.command()
def up(
    once: Annotated[bool, typer.Option("--once", help="Exit after the demo summary.")] = False,
    demo_events: Annotated[int, typer.Option("--demo-events", min=1, help="Demo batch size.")] = 2_000,
    traffic_rate: Annotated[
        float, typer.Option("--traffic-rate", min=0.1, help="Demo events/s after.")
    ] = 20.0,
) -> None:
    """Start the local broker and the worker (which owns the embedded store), run a demo batch
    through them, print a summary, then stream demo traffic until Ctrl-C."""
    from costline.up import run_up

    run_up(Settings(), demo_count=demo_events, once=once, traffic_rate=traffic_rate)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option("--loglevel", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the stream worker: Kafka usage events → priced rows in ClickHouse (Ctrl-C stops it)."""
    from costline.pipeline.worker import run_worker

    run_worker(Settings(), loglevel=loglevel)


@app.command()
def collector(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for other hosts).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port (default: COSTLINE_COLLECTOR_PORT, 4318)."),
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", help="debug, info, warning or error.")] = "info",
) -> None:
    """Receive OTLP traces (POST /v1/traces) and LiteLLM logs (POST /v1/litellm) and produce their
    usage events to Kafka (Ctrl-C stops it)."""
    from costline.collector import run_collector

    run_collector(Settings(), host=host, port=port, loglevel=loglevel)


@app.command("demo-traffic")
def demo_traffic(
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Valid events per second.")] = 20.0,
    duration: Annotated[
        float | None, typer.Option("--duration", min=0.1, help="Seconds to run (default: until Ctrl-C).")
    ] = None,
    malformed_every: Annotated[
        int, typer.Option("--malformed-every", min=1, help="One malformed message per this many events.")
    ] = 500,
) -> None:
    """Produce realistic demo usage to the usage topic (several teams, providers, caching, reasoning,
    overthinking, cache misses, an unknown model) with a trickle of malformed messages."""
    from costline.ingest.traffic import run_demo_traffic

    settings = Settings()
    stats = run_demo_traffic(
        settings.kafka_bootstrap_servers,
        settings.kafka_usage_topic,
        rate=rate,
        duration=duration,
        malformed_every=malformed_every,
    )
    typer.echo(
        f"sent {stats.events} events in {stats.messages} messages ({stats.malformed_messages} malformed, "
        f"{stats.bad_events} bad events) in {stats.seconds:.1f}s; delivery errors: {stats.delivery_errors}"
    )


@app.command()
def reprice(
    since: Annotated[str, typer.Option("--since", help="First day (or ISO instant) to re-price, UTC.")],
    until: Annotated[str | None, typer.Option("--until", help="End, exclusive (default: now).")] = None,
) -> None:
    """Re-price stored events against the current rate card, keeping the as-priced cost beside it.

    In embedded mode the running worker owns the store, so the request goes to it; with no worker
    running (or a ClickHouse server) the store is opened directly.
    """
    from costline.pipeline.reprice import parse_range, reprice_summary

    settings = Settings()
    try:
        start, end = parse_range(since, until)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    summary = _reprice_through_worker(settings, start, end)
    if summary is None:
        from costline.pipeline.pricing import Pricer
        from costline.pipeline.reprice import reprice as run_reprice
        from costline.pipeline.store.client import connect
        from costline.pipeline.store.migrations import apply_migrations

        client = connect(settings.resolved_clickhouse_dsn())
        apply_migrations(client, cluster=settings.clickhouse_cluster)
        summary = reprice_summary(run_reprice(client, Pricer(_load_card(settings.ratecard_path)), start, end))
    typer.echo(json.dumps(summary, indent=2))


def _reprice_through_worker(settings: Settings, since: datetime, until: datetime) -> dict[str, object] | None:
    """Ask a local worker that owns the embedded store; None when no worker answers."""
    if not settings.resolved_clickhouse_dsn().startswith("chdb://"):
        return None
    query = urllib.parse.urlencode({"since": since.isoformat(), "until": until.isoformat()})
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.metrics_port}/reprice?{query}", method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            answer: dict[str, object] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise _fail(f"the worker refused the re-pricing: {exc.read().decode(errors='replace')}") from exc
    except OSError:
        return None


@app.command()
def migrate() -> None:
    """Apply ClickHouse migrations to the store named by COSTLINE_CLICKHOUSE_DSN."""
    from costline.pipeline.store.client import connect
    from costline.pipeline.store.migrations import apply_migrations

    settings = Settings()
    client = connect(settings.resolved_clickhouse_dsn())
    applied = apply_migrations(client, cluster=settings.clickhouse_cluster)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "already up to date")


@ratecard_app.command("import-litellm")
def ratecard_import_litellm(
    file: Annotated[
        Path, typer.Argument(help="LiteLLM model price map (model_prices_and_context_window.json).")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Rate card YAML to write.")],
    effective_from: Annotated[
        str | None,
        typer.Option("--effective-from", help="Date the snapshot's prices apply from (default: today)."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the full import report as JSON.")
    ] = None,
) -> None:
    """Convert the LiteLLM price map into a dated rate card, reporting every key it skipped and why."""
    from costline.pipeline.ratecard.litellm_import import import_litellm_file, write_rate_card_yaml

    start = datetime.fromisoformat(effective_from) if effective_from else datetime.now(UTC)
    start = (start if start.tzinfo else start.replace(tzinfo=UTC)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    result = import_litellm_file(file, effective_from=start)
    write_rate_card_yaml(
        result.card, output, header=f"Imported from {file.name} on {datetime.now(UTC):%Y-%m-%d}"
    )
    if report is not None:
        report.write_text(json.dumps(result.report.to_dict(), default=str, indent=2), encoding="utf-8")
    typer.echo(result.report.summary())
    typer.echo(f"wrote {output}")


@ratecard_app.command("validate")
def ratecard_validate(file: Annotated[Path, typer.Argument(help="Rate card YAML to check.")]) -> None:
    """Check a rate card for schema errors, overlapping or missing periods and nonsense prices."""
    from costline.pipeline.ratecard.validate import format_problems, has_errors, validate_rate_card

    problems = validate_rate_card(file)
    typer.echo(format_problems(problems) if problems else f"{file}: no problems found")
    if has_errors(problems):
        raise typer.Exit(EXIT_SOME_LINES_FAILED)


def main() -> None:
    """Console-script entry point: known errors print one clear line, not a traceback."""
    try:
        app()
    except CostlineError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(EXIT_ERROR) from exc


if __name__ == "__main__":
    main()
