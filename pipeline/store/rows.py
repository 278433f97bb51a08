"""PricedEvent <-> `usage_events` row: the one place that knows how the event is flattened.

Absent attribution values and identifiers are stored as empty strings (the schema forbids empty
values there, so the mapping is lossless). Costs are checked to be whole picodollars before they
leave: clickhouse-connect truncates extra decimals without a word, and money must not move.
`ingested_at` is left to the server's default so the newest copy of an event wins the merge.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

from costline.schemas.errors import StoreError
from costline.schemas.priced_event import PricedEvent
from costline.schemas.usage_event import CHECK_TIME_WINDOW, REQUEST_COUNTERS, TOKEN_BUCKETS, UsageEvent

logger = logging.getLogger(__name__)

#: Decimals of every cost column (`Decimal(38, 12)`).
COST_SCALE = 12
#: Costs must stay below this in absolute value to fit `Decimal(38, 12)`.
MAX_COST = Decimal(10) ** (38 - COST_SCALE)

_PICODOLLAR = Decimal(1).scaleb(-COST_SCALE)
_ZERO = Decimal(0)
_WIDE = Context(prec=80)

#: Columns of `usage_events` that the writer fills, in row order (`ingested_at` has a server default).
COLUMNS: tuple[str, ...] = (
    "event_id",
    "schema_version",
    "occurred_at",
    "source",
    "provider",
    "operation",
    "request_model",
    "response_model",
    "model",
    *(f"tokens_{bucket}" for bucket in TOKEN_BUCKETS),
    *REQUEST_COUNTERS,
    "team",
    "project",
    "workload",
    "user_hash",
    "environment",
    "cost_center",
    "tags",
    "trace_id",
    "span_id",
    "session_id",
    "prompt_prefix_hash",
    "caching_requested",
    "reasoning_effort",
    "output_chars",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_type",
    "finish_reason",
    "service_tier",
    "region",
    "batch",
    "stream",
    "gateway_cache_hit",
    "reported_cost",
    "raw_usage",
    "pricing_status",
    "pricing_reason",
    "ratecard_entry_id",
    "context_tier",
    "adjustments",
    "unpriced_buckets",
    "currency",
    "list_cost",
    "effective_cost",
    *(f"cost_{bucket}" for bucket in TOKEN_BUCKETS),
    "cost_requests",
    "repriced_effective_cost",
    "repriced_entry_id",
    "repriced_status",
    "repriced_at",
    "kafka_partition",
    "kafka_offset",
)

_ATTRIBUTION_COLUMNS = ("team", "project", "workload", "user_hash", "environment", "cost_center")
_ID_COLUMNS = ("trace_id", "span_id", "session_id")


def exact_cost(value: Decimal, what: str, where: str = "") -> Decimal:
    """`value` as an exact 12-decimal Decimal, or a StoreError if the column would change it."""
    if where:
        what = f"{what} of {where}"  # the hot path passes parts, so no message is built per call
    if not isinstance(value, Decimal) or not value.is_finite():
        raise StoreError(f"{what} is {value!r}, not a finite Decimal; the pricing engine must give Decimals")
    if abs(value) >= MAX_COST:
        raise StoreError(f"{what} is {value}, too large for Decimal(38, {COST_SCALE}); this is a pricing bug")
    quantized = value.quantize(_PICODOLLAR, context=_WIDE)
    if quantized != value:
        raise StoreError(
            f"{what} is {value} with more than {COST_SCALE} decimals; costs are whole picodollars, "
            "so round them in the pricing engine before storing"
        )
    return quantized


def priced_event_to_row(p: PricedEvent, *, kafka_partition: int = -1, kafka_offset: int = -1) -> list[object]:
    """One `usage_events` row, values in `COLUMNS` order (transpose a batch for a columnar insert)."""
    event = p.event
    attribution = event.attribution
    signals = event.signals
    where = event.event_id
    line_costs: dict[str, Decimal] = {}
    for line in p.lines:
        line_costs[line.bucket] = line_costs.get(line.bucket, _ZERO) + line.effective_cost
    costs_by_bucket = [
        exact_cost(line_costs.get(bucket, _ZERO), "bucket cost", where) for bucket in TOKEN_BUCKETS
    ]
    cost_requests = exact_cost(
        sum((line_costs.get(counter, _ZERO) for counter in REQUEST_COUNTERS), _ZERO), "request cost", where
    )
    known = set(TOKEN_BUCKETS) | set(REQUEST_COUNTERS)
    stray = sorted({line.bucket for line in p.lines} - known)
    if stray:
        logger.warning("event %s has cost lines for unknown buckets %s", event.event_id, stray)
    row: list[object] = [
        event.event_id,
        event.schema_version,
        event.occurred_at.astimezone(UTC),
        event.source,
        event.provider,
        event.operation,
        event.request_model or "",
        event.response_model or "",
        event.model,
        *(getattr(event.tokens, bucket) for bucket in TOKEN_BUCKETS),
        *(getattr(event.requests, counter) for counter in REQUEST_COUNTERS),
        *(getattr(attribution, name) or "" for name in _ATTRIBUTION_COLUMNS),
        dict(attribution.tags),
        *(getattr(event, name) or "" for name in _ID_COLUMNS),
        signals.prompt_prefix_hash or "",
        signals.caching_requested,
        signals.reasoning_effort or "",
        signals.output_chars,
        signals.latency_ms,
        signals.time_to_first_token_ms,
        signals.status,
        signals.error_type,
        signals.finish_reason,
        signals.service_tier,
        signals.region,
        signals.batch,
        signals.stream,
        signals.gateway_cache_hit,
        event.reported_cost,
        _dump_raw_usage(event.raw_usage),
        p.status,
        p.reason,
        p.ratecard_entry_id,
        p.context_tier,
        list(p.adjustments),
        list(p.unpriced_buckets),
        p.currency,
        exact_cost(p.list_cost, "list_cost", where),
        exact_cost(p.effective_cost, "effective_cost", where),
        *costs_by_bucket,
        cost_requests,
        None,
        None,
        None,
        None,
        kafka_partition,
        kafka_offset,
    ]
    if len(row) != len(COLUMNS):  # pragma: no cover - guards edits of COLUMNS
        raise AssertionError(f"row has {len(row)} values for {len(COLUMNS)} columns")
    return row


def row_to_usage_event(row: Mapping[str, Any]) -> UsageEvent:
    """The stored event back as a UsageEvent (any age accepted), so history can be re-priced."""
    occurred_at = row["occurred_at"]
    if isinstance(occurred_at, datetime) and occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    data: dict[str, Any] = {
        "schema_version": row["schema_version"],
        "event_id": row["event_id"],
        "occurred_at": occurred_at,
        "source": row["source"],
        "provider": row["provider"],
        "operation": row["operation"],
        "request_model": row["request_model"] or None,
        "response_model": row["response_model"] or None,
        "tokens": {bucket: row[f"tokens_{bucket}"] for bucket in TOKEN_BUCKETS},
        "requests": {counter: row[counter] for counter in REQUEST_COUNTERS},
        "attribution": {
            **{name: row[name] or None for name in _ATTRIBUTION_COLUMNS},
            "tags": dict(row["tags"] or {}),
        },
        "signals": {
            "prompt_prefix_hash": row["prompt_prefix_hash"] or None,
            "caching_requested": row["caching_requested"],
            "reasoning_effort": row["reasoning_effort"] or None,
            "output_chars": row["output_chars"],
            "latency_ms": row["latency_ms"],
            "time_to_first_token_ms": row["ttft_ms"],
            "status": row["status"],
            "error_type": row["error_type"],
            "finish_reason": row["finish_reason"],
            "service_tier": row["service_tier"],
            "region": row["region"],
            "batch": row["batch"],
            "stream": row["stream"],
            "gateway_cache_hit": row["gateway_cache_hit"],
        },
        **{name: row[name] or None for name in _ID_COLUMNS},
        "raw_usage": json.loads(row["raw_usage"]) if row["raw_usage"] else None,
        "reported_cost": row["reported_cost"],
    }
    return UsageEvent.model_validate(data, context={CHECK_TIME_WINDOW: False})


def _dump_raw_usage(raw_usage: dict[str, Any] | None) -> str:
    if raw_usage is None:
        return ""
    return json.dumps(raw_usage, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
