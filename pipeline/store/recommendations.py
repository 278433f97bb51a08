"""Storing recommendation runs and eval results, and reading them back (tables of migration 0006).

A run's rows are inserted first and its `recommendation_runs` row last, so readers (who take the
latest run with a runs row) never see half a computation. Eval results are upserted: the same
(team, workload, model, metric, evaluated_at) imported again replaces the earlier row (FINAL).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.recommend.engine import compute
from costline.pipeline.recommend.evals import EvalResult
from costline.pipeline.recommend.model import Recommendation, Window, money
from costline.pipeline.store.queries import Query, run
from costline.schemas.errors import StoreError

RECOMMENDATION_COLUMNS: tuple[str, ...] = (
    "run_id",
    "computed_at",
    "rank",
    "id",
    "kind",
    "status",
    "team",
    "workload",
    "provider",
    "model",
    "current",
    "proposed",
    "window_cost",
    "window_saving",
    "monthly_saving",
    "saving_pct",
    "sample_calls",
    "window_start",
    "window_end",
    "eval_evidence",
    "notes",
    "evidence_sql",
    "evidence_parameters",
)
EVAL_COLUMNS: tuple[str, ...] = (
    "team",
    "workload",
    "model",
    "metric",
    "score",
    "sample_size",
    "evaluated_at",
    "source",
    "quality_floor",
    "imported_at",
)


def _insert(client: Client, table: str, rows: list[list[object]], columns: Sequence[str]) -> None:
    if not rows:
        return
    try:
        client.insert(table, rows, column_names=list(columns))
    except ClickHouseError as exc:
        raise StoreError(f"cannot write {table}: {exc}; check that migration 0006 was applied") from exc


def write_run(
    client: Client,
    recommendations: Sequence[Recommendation],
    window: Window,
    *,
    trigger: str = "worker",
    computed_at: datetime | None = None,
) -> str:
    """Store one computation (ranked as given); returns its run id."""
    run_id = uuid.uuid4().hex
    at = (computed_at or datetime.now(UTC)).astimezone(UTC)
    rows: list[list[object]] = []
    for position, r in enumerate(recommendations, start=1):
        rows.append(
            [
                run_id,
                at,
                position,
                r.id,
                r.kind,
                r.status,
                r.team,
                r.workload,
                r.provider,
                r.model,
                json.dumps(r.current, sort_keys=True),
                json.dumps(r.proposed, sort_keys=True),
                r.window_cost,
                r.window_saving,
                r.monthly_saving,
                r.saving_pct,
                r.sample_calls,
                r.window.since,
                r.window.until,
                "" if r.eval_evidence is None else json.dumps(r.eval_evidence, sort_keys=True),
                list(r.notes),
                r.evidence.sql,
                json.dumps(r.evidence.parameters, sort_keys=True),
            ]
        )
    _insert(client, "recommendations", rows, RECOMMENDATION_COLUMNS)
    _insert(
        client,
        "recommendation_runs",
        [[run_id, at, window.since, window.until, len(rows), trigger]],
        ("run_id", "computed_at", "window_start", "window_end", "recommendations", "trigger"),
    )
    return run_id


def latest_run(client: Client) -> dict[str, Any] | None:
    """The latest complete run: run_id, computed_at, window_start, window_end (None before any)."""
    rows = run(
        client,
        Query(
            "SELECT run_id, computed_at, window_start, window_end, recommendations FROM recommendation_runs "
            "ORDER BY computed_at DESC, run_id DESC LIMIT 1",
            {},
        ),
    )
    return rows[0] if rows else None


def fetch_latest(
    client: Client,
    teams: Sequence[str] | None = None,
    workload: str | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest run and its rows (API shape), ranked by saving, filtered by scope and parameters."""
    latest = latest_run(client)
    if latest is None:
        return None, []
    conditions = ["run_id = {run_id:String}"]
    parameters: dict[str, Any] = {"run_id": latest["run_id"]}
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = list(teams)
    for name, value in (("workload", workload), ("kind", kind), ("status", status)):
        if value is not None:
            conditions.append(f"{name} = {{{name}:String}}")
            parameters[name] = value
    sql = (
        f"SELECT {', '.join(RECOMMENDATION_COLUMNS)} FROM recommendations\n"
        f"WHERE {' AND '.join(conditions)}\nORDER BY rank"
    )
    return latest, [_api_row(row) for row in run(client, Query(sql, parameters))]


def _api_row(row: dict[str, Any]) -> dict[str, Any]:
    start, end = row["window_start"], row["window_end"]
    days = Decimal(int((end - start).total_seconds() * 1000)) / Decimal(86_400_000)
    return {
        "id": row["id"],
        "kind": row["kind"],
        "team": row["team"],
        "workload": row["workload"],
        "current": json.loads(row["current"]),
        "proposed": json.loads(row["proposed"]),
        "monthly_saving": money(row["monthly_saving"]),
        "saving_pct": money(row["saving_pct"].quantize(Decimal("0.01"))),
        "status": row["status"],
        "confidence": {
            "sample_calls": int(row["sample_calls"]),
            "window_days": money(days.quantize(Decimal("0.01"))),
            "eval_evidence": json.loads(row["eval_evidence"]) if row["eval_evidence"] else None,
            "notes": list(row["notes"]),
        },
        "evidence_query": {"sql": row["evidence_sql"], "parameters": json.loads(row["evidence_parameters"])},
    }


def insert_evals(
    client: Client, results: Sequence[EvalResult], *, imported_at: datetime | None = None
) -> int:
    """Upsert eval results; returns how many were written."""
    at = (imported_at or datetime.now(UTC)).astimezone(UTC)
    rows: list[list[object]] = [
        [
            r.team,
            r.workload,
            r.model,
            r.metric,
            r.score,
            r.sample_size,
            r.evaluated_at,
            r.source,
            r.quality_floor,
            at,
        ]
        for r in results
    ]
    _insert(client, "evals", rows, EVAL_COLUMNS)
    return len(rows)


def fetch_evals(
    client: Client, teams: Sequence[str] | None = None, workload: str | None = None
) -> list[EvalResult]:
    """Stored eval results (deduplicated), newest first within each workload and model."""
    conditions = ["1"]
    parameters: dict[str, Any] = {}
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = list(teams)
    if workload is not None:
        conditions.append("workload = {workload:String}")
        parameters["workload"] = workload
    sql = (
        "SELECT team, workload, model, metric, score, sample_size, evaluated_at, source, quality_floor\n"
        f"FROM evals FINAL\nWHERE {' AND '.join(conditions)}\n"
        "ORDER BY team, workload, model, metric, evaluated_at DESC"
    )
    return [
        EvalResult(
            team=row["team"],
            workload=row["workload"],
            model=row["model"],
            metric=row["metric"],
            score=row["score"],
            sample_size=int(row["sample_size"]),
            evaluated_at=row["evaluated_at"],
            source=row["source"],
            quality_floor=row["quality_floor"],
        )
        for row in run(client, Query(sql, parameters))
    ]


def compute_and_store(
    client: Client, card: RateCard, window: Window, trigger: str = "worker"
) -> tuple[str, int]:
    """Recompute from the store and store the run: (run id, recommendations)."""
    recommendations = compute(client, card, window, fetch_evals(client))
    run_id = write_run(client, recommendations, window, trigger=trigger)
    return run_id, len(recommendations)
