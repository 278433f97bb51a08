"""The Faust application of the worker, configured from Settings (no module-level app)."""

from __future__ import annotations

import faust

from costline.schemas.settings import Settings


def faust_broker_url(bootstrap_servers: str) -> str:
    """Faust's broker URL for a comma-separated bootstrap list: kafka://h1:9092;h2:9092."""
    hosts = [host.strip() for host in bootstrap_servers.split(",") if host.strip()]
    return ";".join(f"kafka://{host}" for host in hosts)


def create_app(settings: Settings) -> faust.App:
    """A Faust app whose consumer commits only what agents acknowledged, and serves /metrics."""
    session_timeout = settings.kafka_session_timeout_s
    return faust.App(
        settings.worker_group,
        broker=faust_broker_url(settings.kafka_bootstrap_servers),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        topic_partitions=settings.kafka_partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(session_timeout / 3, 0.5),
        broker_rebalance_timeout=max(session_timeout * 2, 10.0),
        broker_commit_interval=0.5,
        web_enabled=True,
        web_bind="127.0.0.1",
        web_port=settings.metrics_port,
        web_host="127.0.0.1",
        producer_max_request_size=1_048_576,
        stream_buffer_maxsize=settings.sink_batch_messages * 2,
    )
