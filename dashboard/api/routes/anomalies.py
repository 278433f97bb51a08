"""`GET /anomalies`: what the waste detectors found, scoped to the caller's teams.

Rows are anomalies whose window overlaps [since, until) (default: month to date), newest window
first, with per-kind totals over the same filter. Money is decimal strings, times ISO 8601 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from costline.dashboard.api.auth import Scope
from costline.dashboard.api.params import Range, money
from costline.dashboard.api.store import Store
from costline.pipeline.store.anomalies import MAX_LIMIT, fetch_anomalies, fetch_anomaly_totals

router = APIRouter(tags=["anomalies"])

Kind = Literal["overthinking", "cache_miss", "spend_spike", "context_growth", "agent_loop"]


class AnomalyRow(BaseModel):
    """One anomaly (its latest version)."""

    anomaly_id: str
    kind: str
    cause: str
    team: str
    project: str
    workload: str
    provider: str
    model: str
    trace_id: str
    session_id: str
    window_start: str
    window_end: str
    detected_at: str
    calls: int
    wasted_cost: str
    observed_cost: str
    severity: str
    state: str
    evidence: dict[str, Any]
    sample_event_ids: list[str]


class KindTotal(BaseModel):
    """Anomalies, calls and wasted cost of one kind."""

    kind: str
    anomalies: int
    calls: int
    wasted_cost: str


class Anomalies(BaseModel):
    """The rows and the per-kind totals."""

    rows: list[AnomalyRow]
    totals: list[KindTotal]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row(row: dict[str, Any]) -> AnomalyRow:
    return AnomalyRow(
        anomaly_id=row["anomaly_id"],
        kind=row["kind"],
        cause=row["cause"],
        team=row["team"],
        project=row["project"],
        workload=row["workload"],
        provider=row["provider"],
        model=row["model"],
        trace_id=row["trace_id"],
        session_id=row["session_id"],
        window_start=_iso(row["window_start"]),
        window_end=_iso(row["window_end"]),
        detected_at=_iso(row["detected_at"]),
        calls=int(row["calls"]),
        wasted_cost=money(row["wasted_cost"]),
        observed_cost=money(row["observed_cost"]),
        severity=row["severity"],
        state=row["state"],
        evidence=row["evidence"],
        sample_event_ids=list(row["sample_event_ids"]),
    )


@router.get("/anomalies", response_model=Anomalies)
async def anomalies(
    store: Store,
    scope: Scope,
    window: Range,
    kind: Annotated[Kind | None, Query(description="Only this kind of anomaly.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Most rows returned.")] = 100,
) -> Anomalies:
    """Anomalies overlapping the range, newest first, and totals per kind."""
    rows = await store.run(fetch_anomalies, kind, window.since, window.until, scope.teams, limit)
    totals = await store.run(fetch_anomaly_totals, kind, window.since, window.until, scope.teams)
    return Anomalies(
        rows=[_row(row) for row in rows],
        totals=[
            KindTotal(
                kind=t["kind"],
                anomalies=int(t["anomalies"]),
                calls=int(t["calls"]),
                wasted_cost=money(t["wasted_cost"]),
            )
            for t in totals
        ],
    )
