"""The real worker (Kafka → store → leader-only budget timer → webhook): one alert per threshold."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.pipeline.store.alerts import fetch_deliveries
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name, unused_port
from tests.integration.pipeline_data import produce_events
from tests.integration.test_alert_delivery import WebhookServer
from tests.integration.test_budget_alerts import spend_event
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for

pytestmark = pytest.mark.integration


def test_a_budget_crossing_in_the_running_worker_alerts_once_per_threshold(
    broker: LocalBroker, chdb_dsn: str, chdb_client: Client, tmp_path: Path
) -> None:
    team = unique_name("wteam")
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        f"budgets:\n  - name: {team}-monthly\n    scope: {{team: {team}}}\n    period: monthly\n"
        "    amount_usd: 4\n    thresholds: [50, 100]\n    forecast: false\n    notify: [webhook]\n"
    )
    with WebhookServer() as server:
        settings = Settings(
            data_dir=tmp_path,
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_usage_topic=unique_name("usage"),
            kafka_dlq_topic=unique_name("dlq"),
            kafka_signals_topic=unique_name("signals"),
            kafka_partitions=2,
            worker_group=unique_name("worker"),
            clickhouse_dsn=chdb_dsn,
            metrics_port=unused_port(),
            api_port=unused_port(),
            sink_flush_seconds=0.2,
            budgets_path=budgets,
            budget_interval_s=0.3,
            alert_webhook_url=server.url,
        )
        create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))
        worker = ThreadedWorker(settings).start()
        try:
            now = datetime.now(UTC) - timedelta(seconds=5)
            events = [spend_event(f"{team}-{i}", now, team, "rag", 1).event for i in range(5)]
            produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events[:2])

            def alerts_arrived(count: int) -> bool:
                worker.check()
                return len(server.requests) >= count

            wait_for(lambda: alerts_arrived(1), JOIN_TIMEOUT_S, "the 50% alert")
            produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events[2:])
            wait_for(lambda: alerts_arrived(2), 60, "the 100% alert")
            # Kafka redelivers everything: spend does not move, nothing fires again
            produce_events(settings.kafka_bootstrap_servers, settings.kafka_usage_topic, events)
            wait_for(lambda: worker.metrics.duplicates_dropped >= 5, 60, "the replay to be consumed")
            time.sleep(2.0)  # several budget ticks
            bodies = server.bodies()
            assert [(b["budget"], b["threshold"], b["state"]) for b in bodies] == [
                (f"{team}-monthly", 50, "firing"),
                (f"{team}-monthly", 100, "firing"),
            ]
            assert bodies[1]["spent"] == "5.000000000000"
            attempts = fetch_deliveries(chdb_client, [b["alert_id"] for b in bodies])
            assert [(a.route, a.outcome, a.status_code) for a in attempts] == [
                ("webhook", "delivered", 200)
            ] * 2
        finally:
            worker.stop()
