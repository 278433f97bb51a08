"""`costline report …` and `costline period …`: finance reports, read through the read API.

Registered in `costline.cli` with `app.add_typer(report_app, name="report")` and
`app.add_typer(period_app, name="period")`. Every command talks to COSTLINE_API_URL with
COSTLINE_API_TOKEN (a finance or admin token), never to the store: in embedded mode the worker
owns it, and the API is where scoping is enforced.
"""

from __future__ import annotations

import csv
import html
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.dashboard.api.client import ApiClient

report_app = typer.Typer(
    no_args_is_help=True, help="Finance reports: chargeback, FOCUS export, reconciliation."
)
period_app = typer.Typer(no_args_is_help=True, help="Close finance periods (months) and list them.")

#: Exit status when a reconciliation flagged days.
EXIT_FLAGGED = 1
#: Exit status for a usage, configuration or API error.
EXIT_ERROR = 2

FORMATS = ("table", "csv", "focus", "parquet", "html", "json")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


@contextmanager
def _api() -> Iterator[ApiClient]:
    """A client of the read API; API errors become one clear line and exit status 2."""
    from costline.dashboard.api.client import ApiClient, ApiError

    settings = Settings()
    if settings.api_token is None:
        raise _fail(
            "COSTLINE_API_TOKEN is not set: finance reports read the API with a finance or admin token "
            "(create one with `costline api token create --role finance`)"
        )
    client = ApiClient.from_settings(settings)
    try:
        yield client
    except ApiError as exc:
        if exc.status == 0:
            raise _fail(
                f"{exc.detail}; is costline running (`costline up` or `costline worker`)? "
                "Set COSTLINE_API_URL if the API listens elsewhere"
            ) from exc
        if exc.status == 401:
            raise _fail(f"the read API refused the token ({exc.detail}); check COSTLINE_API_TOKEN") from exc
        raise _fail(str(exc)) from exc
    finally:
        client.close()


def _write(data: bytes, output: Path | None) -> None:
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc}") from exc
    typer.echo(f"wrote {output} ({len(data)} bytes)", err=True)


@report_app.command("chargeback")
def chargeback(
    period: Annotated[str, typer.Option("--period", help="Month in UTC, YYYY-MM, e.g. 2026-10.")],
    by: Annotated[str, typer.Option("--by", help="team or cost_center.")] = "team",
    allocation: Annotated[
        str,
        typer.Option("--allocation", help="Unattributed and shared cost: proportional, even or owner:<key>."),
    ] = "proportional",
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="table, csv, focus (FOCUS CSV), parquet (FOCUS), html or json."),
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Chargeback of a month per team or cost center, with allocation and corrections of closed months."""
    if format not in FORMATS:
        raise _fail(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    if format == "parquet" and output is None:
        raise _fail("--format parquet writes a binary file; give --output FILE")
    with _api() as api:
        if format in ("focus", "parquet"):
            data = api.get_bytes(
                "/focus",
                period=period,
                by=by,
                allocation=allocation,
                format="csv" if format == "focus" else "parquet",
            )
            _write(data, output)
            return
        report = api.get("/chargeback", period=period, by=by, allocation=allocation)
    if format == "table" and output is None:
        _print_chargeback(report)
        return
    if format == "json":
        import json

        data = (json.dumps(report, indent=2) + "\n").encode()
    elif format == "csv":
        data = chargeback_csv(report).encode()
    else:
        data = chargeback_html(report).encode()
    _write(data, output)


@report_app.command("reconcile")
def reconcile(
    invoice: Annotated[Path, typer.Option("--invoice", help="The provider's cost export (CSV or JSON).")],
    provider: Annotated[str, typer.Option("--provider", help="openai or anthropic.")],
    tolerance: Annotated[
        str, typer.Option("--tolerance", help="Flag beyond USD (0.01), percent (2%) or both (0.01,2%).")
    ] = "0.01",
    show: Annotated[str, typer.Option("--show", help="all or flagged rows.")] = "all",
) -> None:
    """Compare a provider's cost export with our cost by day and model; exit 1 when days are flagged."""
    try:
        body = invoice.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {invoice}: {exc}") from exc
    with _api() as api:
        result = api.post("/reconcile", content=body, provider=provider, tolerance=tolerance)
    _print_reconciliation(result, only_flagged=show == "flagged")
    if result["flagged_days"]:
        raise typer.Exit(EXIT_FLAGGED)


@period_app.command("close")
def close(period: Annotated[str, typer.Argument(help="Month in UTC, YYYY-MM; it must have ended.")]) -> None:
    """Freeze a month: its report never changes; later re-pricing shows up as corrections next month."""
    with _api() as api:
        result = api.post(f"/periods/{period}/close")
    verb = "closed" if result["closed_now"] else "was already closed"
    typer.echo(
        f"{result['period']} {verb} at {result['closed_at']} by {result['closed_by']}: "
        f"total {result['total']} USD over {result['events']} events, "
        f"corrections carried {result['corrections_total']} USD"
    )


@period_app.command("list")
def list_periods() -> None:
    """Closed months and open months with usage."""
    from rich.console import Console
    from rich.table import Table

    with _api() as api:
        rows = api.get("/periods")["rows"]
    table = Table(title="finance periods")
    for column in ("period", "status", "total (USD)", "events", "closed at", "closed by"):
        table.add_column(column, justify="right" if column in ("total (USD)", "events") else "left")
    for row in rows:
        table.add_row(
            row["period"],
            "closed" if row["closed"] else "open",
            row["total"] or "",
            "" if row["events"] is None else str(row["events"]),
            row["closed_at"] or "",
            row["closed_by"] or "",
        )
    Console().print(table)


def chargeback_csv(report: dict[str, Any]) -> str:
    """The report as CSV: one line per key, the total, then corrections (exact decimal strings)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "line",
            "period",
            "key",
            "direct_cost",
            "allocated_cost",
            "total_cost",
            "events",
            "unpriced_events",
            "basis_or_reason",
        ]
    )
    for row in report["rows"]:
        writer.writerow(
            [
                "charge",
                report["period"],
                row["key"],
                row["direct_cost"],
                row["allocated_cost"],
                row["total_cost"],
                row["events"],
                row["unpriced_events"],
                row["allocation_basis"],
            ]
        )
    writer.writerow(
        ["total", report["period"], "", "", "", report["total"], "", report["unpriced_events"], ""]
    )
    for row in report["corrections"]:
        writer.writerow(
            ["correction", row["period"], row["key"], "", "", row["amount"], "", "", row["reason"]]
        )
    return buffer.getvalue()


def chargeback_html(report: dict[str, Any]) -> str:
    """A self-contained printable HTML page of the report."""
    e = html.escape
    status = (
        f"closed {report['closed_at']} by {report['closed_by']}" if report["closed"] else "open (may change)"
    )
    body = [
        f"<tr><td>{e(row['key'] or '(unattributed)')}</td><td class=n>{e(row['direct_cost'])}</td>"
        f"<td class=n>{e(row['allocated_cost'])}</td><td class=n>{e(row['total_cost'])}</td>"
        f"<td class=n>{row['events']}</td><td class=n>{row['unpriced_events']}</td>"
        f"<td>{e(row['allocation_basis'])}</td></tr>"
        for row in report["rows"]
    ]
    corrections = [
        f"<tr><td>{e(row['period'])}</td><td>{e(row['key'] or '(unattributed)')}</td>"
        f"<td class=n>{e(row['amount'])}</td><td>{e(row['reason'])}</td></tr>"
        for row in report["corrections"]
    ]
    correction_table = (
        "<h2>Corrections of closed periods</h2><table><thead><tr><th>period</th><th>key</th>"
        "<th>amount (USD)</th><th>reason</th></tr></thead><tbody>" + "".join(corrections) + "</tbody>"
        f"<tfoot><tr><td colspan=2>total</td><td class=n>{e(report['corrections_total'])}</td><td></td></tr>"
        "</tfoot></table>"
        if corrections
        else "<p>No corrections of closed periods.</p>"
    )
    title = f"Chargeback {report['period']} by {report['by']}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #111; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #999; padding: 4px 8px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
thead th {{ background: #eee; }}
tfoot td {{ font-weight: bold; }}
@media print {{ body {{ margin: 0; }} thead {{ display: table-header-group; }} }}
</style></head><body>
<h1>{e(title)}</h1>
<p>Allocation of unattributed and shared cost: <b>{e(report["allocation"])}</b>. Period {e(status)}.
Stored total of the month's events: {e(report["stored_total"])} USD. Amounts in USD.</p>
<table><thead><tr><th>key</th><th>direct</th><th>allocated</th><th>total</th><th>events</th>
<th>unpriced events</th><th>basis</th></tr></thead><tbody>{"".join(body)}</tbody>
<tfoot><tr><td>total</td><td></td><td></td><td class=n>{e(report["total"])}</td><td></td>
<td class=n>{report["unpriced_events"]}</td><td></td></tr></tfoot></table>
{correction_table}
</body></html>
"""


def _print_chargeback(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    status = "closed" if report["closed"] else "open"
    table = Table(title=f"chargeback {report['period']} by {report['by']} ({report['allocation']}, {status})")
    for column in ("key", "direct", "allocated", "total", "events", "unpriced", "basis"):
        table.add_column(column, justify="left" if column in ("key", "basis") else "right")
    for row in report["rows"]:
        table.add_row(
            row["key"] or "(unattributed)",
            row["direct_cost"],
            row["allocated_cost"],
            row["total_cost"],
            str(row["events"]),
            str(row["unpriced_events"]),
            row["allocation_basis"],
        )
    table.add_section()
    table.add_row("total", "", "", report["total"], "", str(report["unpriced_events"]), "")
    console = Console()
    console.print(table)
    console.print(f"stored total {report['stored_total']} USD")
    for row in report["corrections"]:
        console.print(
            f"correction of {row['period']} for {row['key'] or '(unattributed)'}: "
            f"{row['amount']} — {row['reason']}"
        )


def _print_reconciliation(result: dict[str, Any], *, only_flagged: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['provider']} reconciliation (tolerance {result['tolerance']})")
    for column in ("date", "model", "ours", "theirs", "variance", "flag"):
        table.add_column(column, justify="right" if column in ("ours", "theirs", "variance") else "left")
    for row in result["days"]:
        if only_flagged and not row["flagged"]:
            continue
        table.add_row(
            row["date"],
            row["model"],
            row["ours"],
            row["theirs"],
            row["variance"],
            "[bold red]FLAGGED[/]" if row["flagged"] else "ok",
        )
    table.add_section()
    table.add_row("total", "", result["total_ours"], result["total_theirs"], "", "")
    console = Console()
    console.print(table)
    flagged = result["flagged_days"]
    console.print(
        f"{len(flagged)} day(s) beyond tolerance: {', '.join(flagged)}"
        if flagged
        else "no day beyond tolerance"
    )
