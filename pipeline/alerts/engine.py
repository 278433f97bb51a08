"""The alert engine: evaluate budgets and anomalies, fire or resolve alerts, hand them to delivery.

One `tick` (run by the leader only):

1. read every budget's spend in its current period (one scan of `usage_events FINAL`) and the
   anomalies worth alerting on;
2. turn them into observations; ask the store about every id the book does not know yet;
3. let the state machine decide what fires and what resolves;
4. write those alert rows to ClickHouse (the outbox) and only then start their deliveries.

When this worker becomes leader (first tick, or again after a rebalance) it forgets what it knew,
loads the open alerts from the store and resumes every delivery that has no terminal outcome. So a
restart, a rebalance or a replay can neither fire an alert twice nor lose a delivery. Deliveries
run as background tasks, so a slow webhook never holds up the tick or the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from costline.pipeline.alerts.anomalies import anomaly_observation
from costline.pipeline.alerts.deliver import Deliverer
from costline.pipeline.alerts.model import Alert
from costline.pipeline.alerts.state import AlertBook, Observation, Transitions
from costline.pipeline.budgets.config import BudgetsConfig
from costline.pipeline.budgets.observe import budget_observations
from costline.pipeline.budgets.spend import fetch_drivers
from costline.pipeline.budgets.status import BudgetStatus, budget_statuses
from costline.pipeline.store.alerts import (
    anomalies_table_exists,
    fetch_alertable_anomalies,
    fetch_alerts,
    fetch_firing_alerts,
    fetch_pending_deliveries,
    insert_alerts,
)

logger = logging.getLogger(__name__)

#: `await store(fn, *args)` runs `fn(client, *args)` on the store's thread.
StoreCall = Callable[..., Awaitable[Any]]
Clock = Callable[[], datetime]

#: Anomalies detected this long ago or earlier no longer raise new alerts.
ANOMALY_LOOKBACK = timedelta(hours=24)
#: Deliveries of alerts fired this long ago or earlier are not resumed after a restart.
RESUME_WINDOW = timedelta(days=7)
#: Resolved alerts are dropped from memory this long after they resolved (the store keeps them).
FORGET_AFTER = timedelta(days=2)
TOP_DRIVERS = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickResult:
    """What one tick changed."""

    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    resumed: int = 0
    statuses: list[BudgetStatus] = field(default_factory=list)


class AlertEngine:
    """Budgets and anomaly alerts for one worker; only the leader's ticks do anything."""

    def __init__(
        self,
        config: BudgetsConfig,
        store: StoreCall,
        deliverer: Deliverer | None,
        *,
        dashboard_url: str = "",
        clock: Clock = _utc_now,
    ) -> None:
        self.config = config
        self.store = store
        self.deliverer = deliverer
        self.dashboard_url = dashboard_url
        self.clock = clock
        self.book = AlertBook()
        self.leading = False
        self.anomalies_available = False
        self.ticks = 0
        self.errors = 0

    async def tick(self, *, leader: bool = True) -> TickResult:
        """One evaluation at `clock()`; a follower only notes that it is not leading."""
        if not leader:
            if self.leading:
                logger.info("no longer the leader: budget alerts are evaluated elsewhere")
            self.leading = False
            return TickResult()
        result = TickResult()
        if not self.leading:
            result.resumed = await self.take_over()
            self.leading = True
        now = self.clock()
        statuses = await self.store(budget_statuses, self.config.budgets, now) if self.config.budgets else []
        result.statuses = statuses
        observations: list[Observation] = []
        for status in statuses:
            observations.extend(budget_observations(status, now, self.dashboard_url))
        observations.extend(await self._anomaly_observations(now))
        unknown = self.book.unknown(o.draft.alert_id for o in observations)
        if unknown:
            self.book.remember(await self.store(fetch_alerts, unknown))
        transitions = self.book.decide(observations, now)
        if transitions:
            await self._apply(transitions, statuses)
        result.fired, result.resolved = transitions.fire, transitions.resolve
        self.book.forget_resolved_before(now - FORGET_AFTER)
        self.ticks += 1
        return result

    async def take_over(self) -> int:
        """Become the leader: reload open alerts, find anomalies, resume owed deliveries."""
        self.book.clear()
        self.book.remember(await self.store(fetch_firing_alerts))
        if self.config.anomaly_alerts is not None:
            self.anomalies_available = bool(await self.store(anomalies_table_exists))
            if not self.anomalies_available:
                logger.warning("anomaly alerts are configured but the anomalies table does not exist yet")
        if self.deliverer is None:
            return 0
        pending = await self.store(fetch_pending_deliveries, self.clock() - RESUME_WINDOW)
        for item in pending:
            self.deliverer.schedule(item.alert, item.route, item.attempts_made)
        if pending:
            logger.info("resuming %d alert deliveries that had no outcome yet", len(pending))
        return len(pending)

    async def _anomaly_observations(self, now: datetime) -> list[Observation]:
        rule = self.config.anomaly_alerts
        if rule is None:
            return []
        if not self.anomalies_available:
            self.anomalies_available = bool(await self.store(anomalies_table_exists))
            if not self.anomalies_available:
                return []
        tracked = [alert.anomaly_id for alert in self.book.firing() if alert.kind == "anomaly"]
        records = await self.store(
            fetch_alertable_anomalies, now - ANOMALY_LOOKBACK, list(rule.kinds), rule.min_wasted_usd, tracked
        )
        return [anomaly_observation(record, rule, now, self.dashboard_url) for record in records]

    async def _apply(self, transitions: Transitions, statuses: list[BudgetStatus]) -> None:
        fired = [await self._with_drivers(alert, statuses) for alert in transitions.fire]
        transitions.fire = fired
        # The outbox: rows first. If this raises, nothing is delivered and the next tick retries.
        await self.store(insert_alerts, [*fired, *transitions.resolve])
        self.book.remember([*fired, *transitions.resolve])
        for alert in fired:
            logger.info("alert fired: %s (%s)", alert.subject, alert.alert_id)
        for alert in transitions.resolve:
            logger.info("alert resolved: %s (%s)", alert.subject, alert.alert_id)
        if self.deliverer is not None:
            for alert in fired:
                for route in alert.routes:
                    self.deliverer.schedule(alert, route)

    async def _with_drivers(self, alert: Alert, statuses: list[BudgetStatus]) -> Alert:
        """A fired budget alert with the models and workloads that spent most in its period."""
        status = next((s for s in statuses if s.budget.name == alert.budget), None)
        if status is None or alert.kind == "anomaly":
            return alert
        details = dict(alert.details)
        for dimension, key in (("model", "top_models"), ("workload", "top_workloads")):
            drivers = await self.store(fetch_drivers, status.window, dimension, TOP_DRIVERS)
            details[key] = [{"key": d.key, "cost": format(d.cost, "f")} for d in drivers]
        return replace(alert, details=details)
