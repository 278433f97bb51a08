"""Budgets and alerts in the worker: a leader-only timer that runs the alert engine.

Every `COSTLINE_BUDGET_INTERVAL_S` the leader of the consumer group evaluates the budgets file
(`COSTLINE_BUDGETS_PATH`) against the store and fires or resolves alerts; deliveries run as
background tasks. Store calls go through the sink's store thread, like every store call of the
worker. A budget that notifies a route without a URL stops the worker at start with a clear error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mode.types.signals import BaseSignalT

from costline.pipeline.alerts.deliver import Deliverer, RetryPolicy, Route
from costline.pipeline.alerts.engine import AlertEngine
from costline.pipeline.alerts.model import DeliveryAttempt
from costline.pipeline.alerts.slack import build_message
from costline.pipeline.alerts.webhook import build_payload
from costline.pipeline.budgets.config import check_routes, load_optional_budgets
from costline.pipeline.store.alerts import insert_deliveries
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.pipeline.worker import Worker

logger = logging.getLogger(__name__)

#: On shutdown, deliveries in flight get this long to finish; the rest resume on the next start.
SHUTDOWN_GRACE_S = 3.0


def configured_routes(settings: Settings) -> dict[str, Route]:
    """The routes whose URL is set: `slack` (Block Kit) and `webhook` (generic JSON)."""
    routes: dict[str, Route] = {}
    if settings.slack_webhook_url is not None and settings.slack_webhook_url.get_secret_value():
        routes["slack"] = Route("slack", settings.slack_webhook_url, build_message)
    if settings.alert_webhook_url is not None and settings.alert_webhook_url.get_secret_value():
        routes["webhook"] = Route("webhook", settings.alert_webhook_url, build_payload)
    return routes


def register_budget_alerts(worker: Worker, policy: RetryPolicy | None = None) -> AlertEngine | None:
    """Add the budget/alert timer to the worker; None (and nothing added) when nothing is configured."""
    settings = worker.settings
    config = load_optional_budgets(settings.budgets_path)
    if config.empty:
        logger.debug("no budgets file (COSTLINE_BUDGETS_PATH) or an empty one: budget alerts are off")
        return None
    routes = configured_routes(settings)
    check_routes(config, routes)

    async def store(fn: Any, *args: Any) -> Any:
        return await worker.sink.call(fn, worker.client, *args)

    async def record(attempt: DeliveryAttempt) -> None:
        await worker.sink.call(insert_deliveries, worker.client, [attempt])

    deliverer = Deliverer(routes, record, policy)
    engine = AlertEngine(config, store, deliverer, dashboard_url=settings.resolved_dashboard_url())
    app = worker.app

    @app.timer(interval=settings.budget_interval_s)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def budget_alerts() -> None:
        """A failure is logged and counted; the next tick starts over from the store."""
        try:
            await engine.tick(leader=app.is_leader())
        except Exception:
            engine.errors += 1
            logger.warning("budget alert evaluation failed; retrying next tick", exc_info=True)

    async def stop_deliveries(sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any) -> None:
        await deliverer.drain(SHUTDOWN_GRACE_S)
        await deliverer.close()

    app.on_before_shutdown.connect(stop_deliveries)

    logger.info(
        "budget alerts on: %d budget(s), anomaly alerts %s, routes %s, every %.1fs on the leader",
        len(config.budgets),
        "on" if config.anomaly_alerts is not None else "off",
        ", ".join(sorted(routes)) or "none",
        settings.budget_interval_s,
    )
    return engine
