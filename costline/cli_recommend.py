"""`costline recommend` and `costline evals`: routing recommendations and eval results, via the read API.

Registered in `costline.cli` with `app.add_typer(recommend_app, name="recommend")` and
`app.add_typer(evals_app, name="evals")`. Every command talks to `COSTLINE_API_URL` with
`COSTLINE_API_TOKEN`: the API is where the store lives in embedded mode and where scope is enforced.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from costline.schemas.errors import CostlineError
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.dashboard.api.client import ApiClient

recommend_app = typer.Typer(
    invoke_without_command=True,
    help="Routing recommendations ranked by monthly saving (`costline recommend export` for a gateway).",
)
evals_app = typer.Typer(no_args_is_help=True, help="Eval results that gate model downgrades.")

#: Exit status for a usage, configuration or API error.
EXIT_ERROR = 2


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _client() -> ApiClient:
    from costline.dashboard.api.client import ApiClient

    return ApiClient.from_settings(Settings())


def _setting(values: dict[str, Any]) -> str:
    shown = {k: v for k, v in values.items() if k not in ("monthly_cost", "ratecard_entry") and v is not None}
    if "first" in shown:  # cascade
        first, then = shown.pop("first"), shown.pop("escalate_to")
        return f"{first['model']} first, then {then['model']} (pass rate {shown.get('pass_rate')})"
    parts = [str(shown.pop("model", ""))]
    shown.pop("provider", None)
    parts += [f"{k}={v}" for k, v in shown.items()]
    return " ".join(p for p in parts if p)


def _cents(amount: str) -> str:
    """USD for a table: whole cents, half-even (the API keeps the exact amount)."""
    return format(Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_EVEN), ",f")


@recommend_app.callback()
def recommend(
    ctx: typer.Context,
    team: Annotated[list[str] | None, typer.Option("--team", help="Only this team (repeatable).")] = None,
    workload: Annotated[str | None, typer.Option("--workload", help="Only this workload.")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Recompute now (admin or finance token).")
    ] = False,
    show_queries: Annotated[bool, typer.Option("--queries", help="Print each evidence query.")] = False,
) -> None:
    """Show the latest recommendations, ranked by projected monthly saving."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    try:
        with _client() as client:
            if refresh:
                client.post("/recommendations/refresh")
            answer = client.get("/recommendations", team=team, workload=workload)
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    console = Console()
    rows = answer.get("rows", [])
    if answer.get("computed_at") is None:
        console.print(
            "No recommendations computed yet: run `costline recommend --refresh` or wait for the worker."
        )
        return
    table = Table(title=f"Recommendations computed {answer['computed_at']}")
    columns = ("#", "kind", "team / workload", "current", "proposed", "USD/month", "%", "status", "evidence")
    for column in columns:
        table.add_column(column, justify="right" if column in ("#", "USD/month", "%") else "left")
    for number, row in enumerate(rows, start=1):
        confidence = row["confidence"]
        evidence = f"{confidence['sample_calls']} calls / {confidence['window_days']} d"
        if confidence.get("eval_evidence"):
            evidence += ", eval"
        table.add_row(
            str(number),
            row["kind"],
            f"{row['team'] or '(none)'} / {row['workload']}",
            _setting(row["current"]),
            _setting(row["proposed"]),
            _cents(row["monthly_saving"]),
            row["saving_pct"],
            row["status"],
            evidence,
        )
    console.print(table)
    if not rows:
        console.print("Nothing to recommend in scope.")
    if show_queries:
        for number, row in enumerate(rows, start=1):
            query = row["evidence_query"]
            console.print(f"\n[bold]#{number}[/bold] {query['parameters']}")
            console.print(query["sql"], markup=False, highlight=False)


@recommend_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="litellm or yaml (neutral rules).")] = "yaml",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    team: Annotated[list[str] | None, typer.Option("--team", help="Only this team (repeatable).")] = None,
) -> None:
    """Export the recommended rows as a gateway routing policy."""
    if fmt not in ("litellm", "yaml"):
        raise _fail(f"unknown format {fmt!r}; use litellm or yaml")
    try:
        with _client() as client:
            text = client.get_bytes("/recommendations/export", format=fmt, team=team).decode()
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc}") from exc
    typer.echo(f"wrote {output}", err=True)


@evals_app.command("import")
def import_evals(
    file: Annotated[Path, typer.Argument(help="Eval results: .yaml/.yml (a list under `evals:`) or .csv.")],
) -> None:
    """Check an eval file line by line, then store it through the API (nothing is stored if a line is bad)."""
    from costline.pipeline.recommend.evals import EvalFileError, parse_eval_file

    try:
        results = parse_eval_file(file)
    except EvalFileError as exc:
        typer.echo(f"error: {file}: nothing imported", err=True)
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(EXIT_ERROR) from exc
    if not results:
        raise _fail(f"{file} holds no eval results")
    try:
        with _client() as client:
            body = {"evals": [r.to_json() for r in results], "source": file.name}
            answer = client.post("/evals", json=body)
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"imported {answer['stored']} eval result(s) from {file}")


@evals_app.command("list")
def list_evals(
    team: Annotated[list[str] | None, typer.Option("--team", help="Only this team (repeatable).")] = None,
    workload: Annotated[str | None, typer.Option("--workload", help="Only this workload.")] = None,
) -> None:
    """Show stored eval results."""
    from rich.console import Console
    from rich.table import Table

    try:
        with _client() as client:
            rows = client.get("/evals", team=team, workload=workload)["rows"]
    except CostlineError as exc:
        raise _fail(str(exc)) from exc
    table = Table(title="Eval results")
    for column in ("team", "workload", "model", "metric", "score", "samples", "evaluated", "floor", "source"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r["team"],
            r["workload"],
            r["model"],
            r["metric"],
            r["score"],
            str(r["sample_size"]),
            r["evaluated_at"][:10],
            r["quality_floor"] or "",
            r["source"],
        )
    Console().print(table)
