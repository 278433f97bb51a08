"""`costline ingest`: read gateway logs — `parse` shows what costline understands, `tail` produces.

Registered in `costline.cli` with `app.add_typer(ingest_app, name="ingest")`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, BinaryIO

import typer

from costline.schemas.errors import CostlineError
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.ingest.gateways.base import Adapter

ingest_app = typer.Typer(
    no_args_is_help=True, help="Read gateway logs (LiteLLM, Bedrock, Kong, Cloudflare, mapped)."
)

#: Exit status when some lines could not be read (the others were).
EXIT_SOME_LINES_FAILED = 1
#: Exit status for a usage, configuration or broker error.
EXIT_ERROR = 2

FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="litellm, litellm-spendlogs, bedrock, kong, cloudflare or mapped (with --mapping).",
    ),
]
MappingOption = Annotated[
    Path | None,
    typer.Option("--mapping", help="Field mapping YAML for --format mapped (see docs/gateways.md)."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _adapter(format_name: str, mapping: Path | None) -> Adapter:
    from costline.ingest.attribution import set_defaults
    from costline.ingest.gateways import get_adapter

    settings = Settings()
    set_defaults({}, user_hash_salt=settings.user_hash_salt.get_secret_value())  # users hash as in hooks
    try:
        return get_adapter(format_name, mapping)
    except CostlineError as exc:
        raise _fail(str(exc)) from exc


def _skip_summary(skipped: Counter[str]) -> str:
    total = sum(skipped.values())
    reasons = "; ".join(f"{count}× {reason}" for reason, count in skipped.most_common(3))
    more = f"; {len(skipped) - 3} other reason(s)" if len(skipped) > 3 else ""
    return f"{total} line(s) skipped as not LLM calls ({reasons}{more})"


@contextmanager
def _open_input(file: Path) -> Iterator[BinaryIO]:
    from costline.ingest.gateways.base import open_log

    if str(file) == "-":
        yield sys.stdin.buffer
        return
    with open_log(file) as stream:
        yield stream


@ingest_app.command("parse")
def parse(
    files: Annotated[list[Path], typer.Argument(help="JSON-lines log files (`.gz` ok; `-` is stdin).")],
    format_name: FormatOption,
    mapping: MappingOption = None,
) -> None:
    """Print the usage events a gateway log holds, as JSON lines (checks what costline understands).

    Lines that cannot be read go to stderr as `FILE:LINE: reason`; lines that are valid but not
    LLM calls (other routes, MCP traffic) are counted. Exit status 1 when any line failed.
    """
    adapter = _adapter(format_name, mapping)
    failed = events = 0
    skipped: Counter[str] = Counter()
    out = sys.stdout
    for file in files:
        if str(file) != "-" and not file.is_file():
            raise _fail(f"{file} is not a file")
        with _open_input(file) as stream:
            for number, result in adapter.parse_lines(stream):
                if result.event is not None:
                    events += 1
                    out.write(result.event.model_dump_json(exclude_none=True) + "\n")
                elif result.kind == "skipped":
                    skipped[result.reason or "skipped"] += 1
                else:
                    failed += 1
                    typer.echo(f"{file}:{number}: {result.reason}", err=True)
    out.flush()
    if skipped:
        typer.echo(_skip_summary(skipped), err=True)
    if failed:
        typer.echo(f"{failed} line(s) failed; {events} event(s) parsed", err=True)
        raise typer.Exit(EXIT_SOME_LINES_FAILED)


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM ends a follow loop cleanly, like Ctrl-C (checkpoints are saved after each batch)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@ingest_app.command("tail")
def tail(
    paths: Annotated[list[Path], typer.Argument(help="Log files to tail (one checkpoint each).")],
    format_name: FormatOption,
    mapping: MappingOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep polling for new lines (Ctrl-C stops).")
    ] = False,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.05, help="Seconds between polls with --follow.")
    ] = 0.5,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir", help="Where checkpoints live (default: <data_dir>/tail-checkpoints)."
        ),
    ] = None,
) -> None:
    """Produce the usage events of gateway logs to Kafka, resuming where the last run stopped.

    Each file's checkpoint (device, inode, byte offset of the last delivered line) moves only
    after Kafka acknowledged the events, so a restart neither skips nor re-sends; rotated and
    truncated files are followed. A progress bar shows the backfill.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from costline.ingest.tail import CheckpointStore, KafkaSender, Tail

    adapter = _adapter(format_name, mapping)
    if not follow:
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise _fail(f"no such file: {', '.join(missing)} (use --follow to wait for files to appear)")
    settings = Settings()
    store = CheckpointStore(checkpoint_dir or settings.data_dir / "tail-checkpoints")

    def problem(file: Path, line: int, reason: str) -> None:
        typer.echo(f"{file}:{line}: {reason}", err=True)

    try:
        sender = KafkaSender(settings.kafka_bootstrap_servers, settings.kafka_usage_topic)
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    runner = Tail(paths, adapter, store, sender, on_problem=problem)
    stop = threading.Event()
    try:
        with _stop_on_sigterm(stop):
            backlog = runner.start()
            if backlog:
                with Progress(
                    TextColumn("backfill"),
                    BarColumn(),
                    DownloadColumn(),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                    transient=follow,
                ) as progress:
                    task = progress.add_task("backfill", total=backlog)
                    runner.set_progress(lambda done: progress.advance(task, done))
                    runner.poll("wait" if follow else "if_json")
                runner.set_progress(None)
            if follow:
                typer.echo(f"following {len(paths)} file(s); Ctrl-C stops", err=True)
                runner.run(follow=True, poll_interval=poll_interval, stop=stop)
    except KeyboardInterrupt:
        pass
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    finally:
        runner.close()
        sender.close()
    stats = runner.stats
    typer.echo(
        f"delivered {stats.events} event(s) in {stats.messages} message(s) from {stats.lines} line(s) "
        f"to {settings.kafka_usage_topic}",
        err=True,
    )
    if stats.skip_reasons:
        typer.echo(_skip_summary(stats.skip_reasons), err=True)
    if stats.errors:
        typer.echo(f"{stats.errors} line(s) failed", err=True)
        raise typer.Exit(EXIT_SOME_LINES_FAILED)
