"""Finance: chargeback, FOCUS export, closed periods and provider reconciliation.

Team tokens read the chargeback and the FOCUS export of their own teams only (by team, with the
allocation computed over every team so their share is the true one); closing a period and
reconciling an invoice need the admin or finance role.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response

from costline.dashboard.api.auth import CurrentPrincipal, Principal, require_roles
from costline.dashboard.api.params import money
from costline.dashboard.api.store import Store
from costline.dashboard.finance.chargeback import (
    Allocation,
    chargeback_json,
    chargeback_report,
    parse_by,
)
from costline.dashboard.finance.common import Period, PeriodNotEnded
from costline.dashboard.finance.focus import focus_export, to_csv, to_parquet
from costline.dashboard.finance.periods import close_period, list_periods
from costline.dashboard.finance.reconcile import Tolerance, reconcile, reconciliation_json

router = APIRouter(tags=["finance"])

#: Largest invoice file accepted by POST /reconcile.
MAX_INVOICE_BYTES = 50 * 1024 * 1024

PeriodParam = Annotated[str, Query(description="Calendar month in UTC, YYYY-MM.")]
ByParam = Annotated[str, Query(description="team or cost_center.")]
AllocationParam = Annotated[str, Query(description="proportional, even or owner:<key>.")]

_MEDIA = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def _teams(principal: Principal, by: str) -> list[str] | None:
    if principal.sees_all_teams:
        return None
    if by != "team":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a team token can only read finance reports by team")
    return sorted(principal.teams)


@router.get("/chargeback")
async def chargeback(
    principal: CurrentPrincipal,
    store: Store,
    period: PeriodParam,
    by: ByParam = "team",
    allocation: AllocationParam = "proportional",
) -> dict[str, Any]:
    """Cost per team or cost center for a month, pools allocated, with corrections of closed months."""
    month, grouping, method = Period.parse(period), parse_by(by), Allocation.parse(allocation)
    report = await store.run(chargeback_report, month, grouping, method, _teams(principal, grouping))
    return chargeback_json(report, money)


@router.get("/focus", response_class=Response)
async def focus(
    principal: CurrentPrincipal,
    store: Store,
    period: PeriodParam,
    format: Annotated[str, Query(description="csv or parquet.")] = "csv",
    by: ByParam = "team",
    allocation: Annotated[
        str | None, Query(description="Allocate pools (proportional, even, owner:<key>); none when omitted.")
    ] = None,
) -> Response:
    """The month as a FOCUS dataset file (team tokens: their teams' rows only)."""
    if format not in _MEDIA:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "format must be csv or parquet")
    month, grouping = Period.parse(period), parse_by(by)
    method = Allocation.parse(allocation) if allocation else None
    teams = _teams(principal, grouping)

    def build(client: Any) -> bytes:
        export = focus_export(client, month, by=grouping, allocation=method, teams=teams)
        return to_csv(export) if format == "csv" else to_parquet(export)

    content = await store.run(build)
    filename = f"costline-focus-{month}.{format}"
    return Response(
        content,
        media_type=_MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/periods")
async def periods(principal: CurrentPrincipal, store: Store) -> dict[str, Any]:
    """Closed months (frozen totals) and open months with events (current totals; null for team tokens)."""
    rows = await store.run(list_periods)
    return {
        "rows": [
            {
                "period": str(row.period),
                "closed": row.closed_at is not None,
                "closed_at": _iso(row.closed_at),
                "closed_by": row.closed_by,
                "total": money(row.total) if principal.sees_all_teams else None,
                "events": row.events if principal.sees_all_teams else None,
            }
            for row in rows
        ]
    }


@router.post("/periods/{period}/close", dependencies=[require_roles("admin", "finance")])
async def close(principal: CurrentPrincipal, store: Store, period: str) -> dict[str, Any]:
    """Freeze a month that has ended; closing it again answers the first close."""
    month = Period.parse(period)
    try:
        record, closed_now = await store.run(close_period, month, principal.name)
    except PeriodNotEnded as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return {
        "period": str(record.period),
        "closed_now": closed_now,
        "closed_at": _iso(record.closed_at),
        "closed_by": record.closed_by,
        "total": money(record.total),
        "corrections_total": money(record.corrections_total),
        "events": record.events,
    }


@router.post("/reconcile", dependencies=[require_roles("admin", "finance")])
async def reconcile_invoice(
    request: Request,
    store: Store,
    provider: Annotated[str, Query(description="openai or anthropic.")],
    tolerance: Annotated[
        str | None, Query(description="Flag beyond USD (0.01), percent (2%) or both (0.01,2%).")
    ] = None,
) -> dict[str, Any]:
    """Compare the provider's cost export (request body: their CSV or JSON) with ours by day and model."""
    bounds = Tolerance.parse(tolerance)
    body = await request.body()
    if len(body) > MAX_INVOICE_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "invoice files are limited to 50 MB")
    result = await store.run(reconcile, provider, body, bounds)
    return reconciliation_json(result, money)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
