"""What an alert is, how its id is made, and what one delivery attempt records.

Ids are deterministic, so the same condition always names the same alert: a budget alert by
(budget, period start, threshold or 'forecast'), an anomaly alert by the anomaly's own id (which
is itself stable across replays). That is what lets the store, not memory, decide "already fired".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

AlertKind = Literal["budget_threshold", "budget_forecast", "anomaly"]
AlertState = Literal["firing", "resolved"]
Outcome = Literal["delivered", "retrying", "failed"]

#: Outcomes after which a route is owed nothing more.
TERMINAL_OUTCOMES: frozenset[str] = frozenset({"delivered", "failed"})


def to_ms(moment: datetime) -> datetime:
    """`moment` in UTC, truncated to whole milliseconds (what DateTime64(3) keeps)."""
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch."""
    return int(to_ms(moment).timestamp() * 1000)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def budget_alert_id(budget: str, period_start: datetime, threshold: int | None) -> str:
    """`budget-<hash>` for a threshold, `forecast-<hash>` for the forecast alert of one period."""
    start = to_ms(period_start).isoformat()
    if threshold is None:
        return "forecast-" + _digest("forecast", budget, start)
    return "budget-" + _digest("threshold", budget, start, str(threshold))


def anomaly_alert_id(anomaly_id: str) -> str:
    """`anomaly-<hash>` of the anomaly id (ids of any length map to one short id)."""
    return "anomaly-" + _digest("anomaly", anomaly_id)


@dataclass(frozen=True)
class Alert:
    """One alert in one state; a state change is a new version of the same `alert_id`."""

    alert_id: str
    kind: AlertKind
    subject: str
    state: AlertState
    period_start: datetime
    period_end: datetime
    spent: Decimal
    fired_at: datetime
    version: int
    team: str = ""
    workload: str = ""
    project: str = ""
    budget: str = ""
    anomaly_id: str = ""
    threshold: int | None = None
    amount: Decimal | None = None
    forecast: Decimal | None = None
    wasted: Decimal | None = None
    resolved_at: datetime | None = None
    routes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        """Whether the alert is open."""
        return self.state == "firing"

    def resolved(self, at: datetime, **updates: Any) -> Alert:
        """This alert resolved at `at`, as a newer version (figures in `updates` refreshed)."""
        at = to_ms(at)
        return replace(
            self,
            state="resolved",
            resolved_at=at,
            version=max(self.version + 1, epoch_ms(at)),
            **updates,
        )


@dataclass(frozen=True)
class DeliveryAttempt:
    """One HTTP attempt to deliver one alert to one route (stored by route name, never URL)."""

    alert_id: str
    route: str
    attempt: int
    at: datetime
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    elapsed_ms: int = 0

    @property
    def terminal(self) -> bool:
        """Delivered or given up: the route is owed nothing more for this alert."""
        return self.outcome in TERMINAL_OUTCOMES


@dataclass(frozen=True)
class PendingDelivery:
    """A route still owed a delivery of an alert, and how many attempts were made already."""

    alert: Alert
    route: str
    attempts_made: int
