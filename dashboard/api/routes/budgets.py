"""Budgets and alerts: where each budget stands now, and what fired with its deliveries.

`GET /budgets` reads the budgets file (`COSTLINE_BUDGETS_PATH`) and computes every budget's spend
from the store at request time, so it always agrees with what the alert engine sees. A team token
sees the budgets whose scope names one of its teams; admin and finance see all (organisation-wide
budgets, with no team, only them). `GET /alerts` is scoped by the alert's team in the SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from costline.dashboard.api.auth import Scope
from costline.dashboard.api.params import Range, money
from costline.dashboard.api.store import Store
from costline.pipeline.alerts.model import Alert, DeliveryAttempt
from costline.pipeline.budgets.config import BudgetsConfig, load_budgets
from costline.pipeline.budgets.status import BudgetStatus, budget_statuses
from costline.pipeline.store.alerts import AlertRow, list_alerts

router = APIRouter(tags=["budgets"])

_cache: dict[Path, tuple[float, BudgetsConfig]] = {}


def budgets_config(path: Path | None) -> BudgetsConfig:
    """The budgets file, re-read when it changes (its errors answer 500 with the file's problems)."""
    if path is None:
        return BudgetsConfig()
    mtime = path.stat().st_mtime if path.exists() else -1.0
    cached = _cache.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    config = load_budgets(path)
    _cache[path] = (mtime, config)
    return config


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


def budget_row(status: BudgetStatus) -> dict[str, Any]:
    """One budget as the API answers it."""
    budget = status.budget
    forecast = status.forecast
    return {
        "name": budget.name,
        "scope": {
            "team": budget.scope.team,
            "workload": budget.scope.workload,
            "project": budget.scope.project,
        },
        "period": budget.period,
        "time_zone": budget.time_zone,
        "period_start": _iso(status.period.start),
        "period_end": _iso(status.period.end),
        "amount": money(budget.amount_usd),
        "spent": money(status.spent),
        "percent": money(status.percent),
        "forecast": _money(forecast),
        "thresholds": list(budget.thresholds),
        "crossed": status.crossed,
        "status": status.status,
        "events": status.events,
        "exhausted_at": _iso(status.exhausted_at),
        "notify": list(budget.notify),
    }


def _delivery(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "route": attempt.route,
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "at": _iso(attempt.at),
    }


def alert_row(row: AlertRow) -> dict[str, Any]:
    """One alert with its delivery attempts, as the API answers it."""
    alert: Alert = row.alert
    return {
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "subject": alert.subject,
        "state": alert.state,
        "team": alert.team,
        "workload": alert.workload,
        "project": alert.project,
        "budget": alert.budget or None,
        "anomaly_id": alert.anomaly_id or None,
        "threshold": alert.threshold,
        "spent": money(alert.spent),
        "amount": _money(alert.amount),
        "forecast": _money(alert.forecast),
        "wasted": _money(alert.wasted),
        "period_start": _iso(alert.period_start),
        "period_end": _iso(alert.period_end),
        "fired_at": _iso(alert.fired_at),
        "resolved_at": _iso(alert.resolved_at),
        "routes": list(alert.routes),
        "deliveries": [_delivery(attempt) for attempt in row.deliveries],
    }


@router.get("/budgets")
async def budgets(request: Request, scope: Scope, store: Store) -> dict[str, Any]:
    """Every budget in scope, in its current period: spend, forecast, crossed thresholds, status."""
    config = budgets_config(request.app.state.settings.budgets_path)
    visible = [
        budget
        for budget in config.budgets
        if scope.teams is None or (budget.scope.team is not None and budget.scope.team in scope.teams)
    ]
    if not visible:
        return {"rows": []}
    statuses = await store.run(budget_statuses, visible, datetime.now(UTC))
    return {"rows": [budget_row(status) for status in statuses]}


@router.get("/alerts")
async def alerts(
    scope: Scope,
    window: Range,
    store: Store,
    state: Annotated[
        Literal["firing", "resolved"] | None, Query(description="Only alerts in this state.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many alerts, newest first.")] = 200,
) -> dict[str, Any]:
    """Alerts fired in the range (newest first), each with every delivery attempt."""
    rows = await store.run(list_alerts, window.since, window.until, scope.teams, state, limit)
    return {"rows": [alert_row(row) for row in rows]}
