"""`costline worker`: build the Faust app with its agent, timers and pages, and run it.

In embedded mode this process owns the chDB store, so it is also the only process that reads
it (the read API lives here in that mode).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from clickhouse_connect.driver import Client
from faust.web import Request, Response, View

from costline.dashboard.api.server import register_read_api
from costline.pipeline.agents.budgets import register_budget_alerts
from costline.pipeline.agents.detect import register_detectors
from costline.pipeline.agents.ingest import IngestDeps, register_ingest_agent
from costline.pipeline.agents.recommend import register_recommendations
from costline.pipeline.app import create_app
from costline.pipeline.metrics import WorkerMetrics
from costline.pipeline.pricing import Pricer
from costline.pipeline.processing import EventProcessor
from costline.pipeline.ratecard.load import load_default_rate_card, load_rate_card
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.reprice import parse_range, reprice, reprice_summary
from costline.pipeline.sink import StoreSink
from costline.pipeline.store.client import connect
from costline.pipeline.store.migrations import apply_migrations
from costline.pipeline.store.queries import SpendTotals, fetch_spend_by, fetch_spend_summary
from costline.pipeline.store.rollups import refresh_rollups
from costline.pipeline.store.writer import PricedEventWriter
from costline.pipeline.topics import dlq_topic, usage_topic
from costline.schemas.errors import CostlineError
from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Worker:
    """The assembled worker: its Faust app and the objects tests, pages and extensions reach into.

    `client` is the store; every call on it goes through `sink.call`, the store's one thread.
    """

    app: faust.App
    deps: IngestDeps
    agent: faust.types.AgentT[Any]
    settings: Settings
    client: Client
    sink: StoreSink
    metrics: WorkerMetrics


def spend_overview(client: Client, days: int) -> dict[str, object]:
    """JSON-safe totals of the last `days` days, overall and by team and model."""
    until = datetime.now(UTC) + timedelta(minutes=10)
    since = until - timedelta(days=days)

    def totals(t: SpendTotals) -> dict[str, object]:
        return {
            "events": t.events,
            "unpriced_events": t.unpriced_events,
            "partial_events": t.partial_events,
            "list_cost": str(t.list_cost),
            "effective_cost": str(t.effective_cost),
        }

    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "total": totals(fetch_spend_summary(client, since, until)),
        **{
            f"by_{dimension}": [
                {"key": g.key, **totals(g.totals)} for g in fetch_spend_by(client, dimension, since, until)
            ]
            for dimension in ("team", "model")
        },
    }


def load_card(settings: Settings) -> RateCard:
    """The rate card of the settings, or the bundled one."""
    return load_rate_card(settings.ratecard_path) if settings.ratecard_path else load_default_rate_card()


def build_worker(settings: Settings) -> Worker:
    """Connect the store (applying migrations), load the rate card, and wire the Faust app."""
    client = connect(settings.resolved_clickhouse_dsn())
    apply_migrations(client, cluster=settings.clickhouse_cluster)
    card = load_card(settings)
    app = create_app(settings)
    metrics = WorkerMetrics()
    sink = StoreSink(PricedEventWriter(client), metrics)
    deps = IngestDeps(
        processor=EventProcessor(Pricer(card)),
        sink=sink,
        dlq=dlq_topic(app, settings),
        metrics=metrics,
        batch_messages=settings.sink_batch_messages,
        flush_seconds=settings.sink_flush_seconds,
    )
    agent = register_ingest_agent(app, usage_topic(app, settings), deps)
    worker = Worker(
        app=app, deps=deps, agent=agent, settings=settings, client=client, sink=sink, metrics=metrics
    )
    # Extensions register their agents, timers and servers on `worker` here, one line each:
    # -- detectors (issue 5) --
    register_detectors(worker)
    # -- budgets and alerts (issue 5) --
    register_budget_alerts(worker)
    # -- recommendations (issue 7) --
    register_recommendations(worker)
    # -- read API (issue 6) --
    register_read_api(worker)

    @app.timer(interval=settings.rollup_interval_s)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def rollups() -> None:
        """Derived data only: a failure is logged, counted and repaired on the next tick."""
        try:
            if await sink.call(refresh_rollups, client):
                metrics.rollup_refreshes += 1
        except Exception:
            metrics.rollup_errors += 1
            logger.warning("rollup refresh failed; retrying next tick", exc_info=True)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]  # faust is untyped here
    async def consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.kafka_usage_topic:
                continue
            highwater: int | None = consumer.highwater(tp)
            if highwater is None:  # nothing fetched from this partition yet: its lag is unknown, not 0
                continue
            read = getattr(consumer, "_read_offset", {}).get(tp)  # Faust keeps no public read position
            metrics.consumer_lag[f"{tp.topic}/{tp.partition}"] = max(
                highwater - (read + 1 if read is not None else 0), 0
            )

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.text(metrics.render(), content_type="text/plain; version=0.0.4")

    @app.page("/reprice")
    class RepriceView(View):
        """POST ?since=ISO&until=ISO: reload the rate card, then re-price that range (embedded mode)."""

        async def post(self, request: Request) -> Response:
            try:
                since, until = parse_range(request.query.get("since"), request.query.get("until"))
                pricer = Pricer(load_card(settings))
            except (ValueError, CostlineError) as exc:
                return self.json({"error": str(exc)}, status=400)
            deps.processor.pricer = pricer  # new events use the new card too
            result = await sink.call(reprice, client, pricer, since, until)
            return self.json(reprice_summary(result))

    @app.page("/summary")
    class SummaryView(View):
        """GET ?days=N: spend of the last N days by team and model (embedded mode's quick look)."""

        async def get(self, request: Request) -> Response:
            days = int(request.query.get("days", "7"))
            return self.json(await sink.call(spend_overview, client, days))

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", "events_in": metrics.events_in})

    return worker


def run_worker(settings: Settings, *, loglevel: str = "info") -> None:
    """Run until SIGINT/SIGTERM; Faust finishes the batch in flight and commits before exiting."""
    worker = build_worker(settings)
    # A batch keeps tens of thousands of young objects alive; with the default thresholds the cyclic
    # collector keeps re-scanning them (about a third of the worker's CPU in bench/). Everything built
    # so far lives for the whole process, so freeze it out of collection and collect less often.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    faust.Worker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
