"""Budget statuses as alert observations: one per threshold, and one for the forecast.

A threshold alert fires when spend reaches `percent × amount` in the current period and holds
while it stays there (it resolves at the period end, or earlier if spend falls back, e.g. after a
re-pricing or a raised amount). The forecast alert fires when the linear forecast reaches the
amount before spend does, and holds until the forecast drops back under, or the period ends.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from costline.pipeline.alerts.model import Alert, budget_alert_id, epoch_ms, to_ms
from costline.pipeline.alerts.state import Observation
from costline.pipeline.budgets.status import BudgetStatus


def _money(value: Decimal) -> str:
    return format(value, "f")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else to_ms(moment).isoformat().replace("+00:00", "Z")


def status_details(status: BudgetStatus, dashboard_url: str) -> dict[str, Any]:
    """JSON-safe facts about a budget status that every alert of it carries."""
    budget = status.budget
    return {
        "scope": {
            "team": budget.scope.team,
            "workload": budget.scope.workload,
            "project": budget.scope.project,
        },
        "scope_text": budget.scope.describe(),
        "period": {
            "kind": budget.period,
            "time_zone": budget.time_zone,
            "label": status.period.label(),
            "start": _iso(status.period.start),
            "end": _iso(status.period.end),
        },
        "percent": _money(status.percent),
        "events": status.events,
        "exhausted_at": _iso(status.exhausted_at),
        "dashboard_url": dashboard_url,
    }


def _draft(status: BudgetStatus, threshold: int | None, now: datetime, dashboard_url: str) -> Alert:
    budget = status.budget
    if threshold is None:
        kind = "budget_forecast"
        subject = (
            f"Budget {budget.name} is forecast to exceed {budget.amount_usd} USD ({status.period.label()})"
        )
    else:
        kind = "budget_threshold"
        subject = f"Budget {budget.name} crossed {threshold}% ({status.period.label()})"
    now = to_ms(now)
    return Alert(
        alert_id=budget_alert_id(budget.name, status.period.start, threshold),
        kind=kind,  # type: ignore[arg-type]  # one of the two literals above
        subject=subject,
        state="firing",
        team=budget.scope.team or "",
        workload=budget.scope.workload or "",
        project=budget.scope.project or "",
        budget=budget.name,
        period_start=status.period.start,
        period_end=status.period.end,
        threshold=threshold,
        spent=status.spent,
        amount=budget.amount_usd,
        forecast=status.forecast,
        fired_at=now,
        version=epoch_ms(now),
        routes=tuple(budget.notify),
        details=status_details(status, dashboard_url),
    )


def budget_observations(status: BudgetStatus, now: datetime, dashboard_url: str) -> list[Observation]:
    """What `status` says about each of its budget's alerts."""
    crossed = set(status.crossed)
    observations = [
        Observation(
            _draft(status, threshold, now, dashboard_url),
            fire=threshold in crossed,
            holds=threshold in crossed,
            resolution="spend fell back under the threshold",
        )
        for threshold in status.budget.thresholds
    ]
    if status.budget.forecast:
        exceeded = status.spent >= status.amount
        observations.append(
            Observation(
                _draft(status, None, now, dashboard_url),
                fire=status.forecast_exceeds,
                holds=status.forecast_exceeds or exceeded,
                resolution="the forecast dropped back under the amount",
            )
        )
    return observations
