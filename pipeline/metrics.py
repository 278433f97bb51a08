"""Worker counters, exposed in the Prometheus text format on the worker's web port."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

METRIC_HELP: dict[str, str] = {
    "events_in": "Usage events decoded from Kafka messages.",
    "events_priced": "Events stored with status priced.",
    "events_partial": "Events stored with status partial (a bucket had no price).",
    "events_unpriced": "Events stored with status unpriced (model not in the rate card).",
    "events_dead_lettered": "Events sent to the dead-letter topic.",
    "messages_dead_lettered": "Whole Kafka messages sent to the dead-letter topic.",
    "duplicates_dropped": "Events dropped as already written (same event_id).",
    "sink_batches": "Batches inserted into ClickHouse.",
    "sink_rows": "Rows inserted into ClickHouse.",
    "sink_errors": "Failed insert attempts (retried with backoff).",
    "sink_batch_seconds_sum": "Total seconds spent in batch inserts.",
    "sink_last_batch_seconds": "Seconds the last batch insert took.",
    "rollup_refreshes": "Rollup refreshes that recomputed at least one hour.",
    "rollup_errors": "Failed rollup refreshes (retried on the next tick).",
}


@dataclass
class WorkerMetrics:
    """Monotonic counters and last-observed gauges of one worker process."""

    events_in: int = 0
    events_priced: int = 0
    events_partial: int = 0
    events_unpriced: int = 0
    events_dead_lettered: int = 0
    messages_dead_lettered: int = 0
    duplicates_dropped: int = 0
    sink_batches: int = 0
    sink_rows: int = 0
    sink_errors: int = 0
    sink_batch_seconds_sum: float = 0.0
    sink_last_batch_seconds: float = 0.0
    rollup_refreshes: int = 0
    rollup_errors: int = 0
    consumer_lag: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        """Prometheus exposition text."""
        lines: list[str] = []
        for item in fields(self):
            if item.name == "consumer_lag":
                continue
            name = f"costline_worker_{item.name}"
            kind = "gauge" if item.name == "sink_last_batch_seconds" else "counter"
            lines += [
                f"# HELP {name} {METRIC_HELP[item.name]}",
                f"# TYPE {name} {kind}",
                f"{name} {getattr(self, item.name)}",
            ]
        lines += [
            "# HELP costline_worker_consumer_lag Messages behind the end of each partition.",
            "# TYPE costline_worker_consumer_lag gauge",
        ]
        for partition, lag in sorted(self.consumer_lag.items()):
            lines.append(f'costline_worker_consumer_lag{{partition="{partition}"}} {lag}')
        return "\n".join(lines) + "\n"
