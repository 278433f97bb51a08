"""Cloudflare AI Gateway log items (the logs REST API, or Logpush NDJSON).

Cloudflare reports one `tokens_in` and one `tokens_out` with no cached or reasoning split
(GATEWAY_FACTS 4, 13.3), so input is counted as uncached and output as visible: costline cannot
see cache discounts through this gateway. `metadata` is the `cf-aig-metadata` header as a JSON
*string*; its well-known keys (team, project, user, ...) become attribution, the rest tags.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costline.ingest.gateways.base import (
    Adapter,
    AttributionDraft,
    ParseResult,
    as_bool,
    as_int,
    as_mapping,
    build_event,
    clean_name,
    duration_ms,
    make_event_id,
    otel_provider,
    parse_time,
    to_money,
    unwrap_records,
)
from costline.ingest.normalize import openai_chat_usage
from costline.schemas.usage_event import TokenBuckets

SOURCE = "gateway.cloudflare"


def parse(record: Mapping[str, Any]) -> ParseResult:
    """One AI Gateway log item."""
    if "provider" not in record or not ({"tokens_in", "tokens_out", "model", "cached"} & record.keys()):
        return ParseResult.skip("not a Cloudflare AI Gateway log item (no provider, model or tokens)")
    failed = as_bool(record.get("success")) is False
    model = clean_name(record.get("model"))
    if model is None:
        if failed:
            return ParseResult.skip("failed before reaching a model (the item names none)")
        return ParseResult.fail("no model in the log item")
    occurred = parse_time(record.get("created_at"))
    if occurred is None:
        return ParseResult.fail(f"no usable created_at (got {record.get('created_at')!r})")
    usage = openai_chat_usage(
        {"prompt_tokens": record.get("tokens_in"), "completion_tokens": record.get("tokens_out")}
    )
    cache_hit = as_bool(record.get("cached")) is True
    status_code = as_int(record.get("status_code"))
    signals: dict[str, Any] = {
        "status": "error" if failed else "ok",
        "error_type": (f"http_{status_code}" if status_code else "error") if failed else None,
        "gateway_cache_hit": cache_hit,
        "latency_ms": duration_ms(record.get("duration")),
    }
    fields: dict[str, Any] = {
        "event_id": make_event_id("cloudflare", record.get("id"), record),
        "occurred_at": occurred,
        "source": SOURCE,
        "provider": otel_provider(record.get("provider")),
        "operation": _operation(record),
        "request_model": model,
        "tokens": TokenBuckets() if cache_hit else usage.tokens,
        "attribution": _attribution(record),
        "signals": {key: value for key, value in signals.items() if value is not None},
        "raw_usage": {key: record[key] for key in ("tokens_in", "tokens_out") if key in record} or None,
        "reported_cost": to_money(record.get("cost")),
    }
    return build_event(fields)


def _operation(record: Mapping[str, Any]) -> str:
    path = str(record.get("path") or "").lower()
    if "embedding" in path:
        return "embeddings"
    if path.endswith("completions") and "chat" not in path:
        return "text_completion"
    return "chat"


def _attribution(record: Mapping[str, Any]) -> dict[str, Any]:
    draft = AttributionDraft()
    draft.labels(as_mapping(record.get("metadata")))
    if as_bool(record.get("custom_cost")):
        draft.tag("cloudflare.custom_cost", "true")
    step = as_int(record.get("step"))
    if step:  # a fallback provider of a universal request, not the first choice
        draft.tag("cloudflare.step", step)
    return draft.build()


def unwrap(document: Any) -> list[Any]:
    """The REST API envelope `{"success": ..., "result": [...]}` gives its items."""
    if isinstance(document, Mapping) and isinstance(document.get("result"), list) and "success" in document:
        return unwrap_records(document["result"])
    return unwrap_records(document)


ADAPTER = Adapter("cloudflare", parse, unwrap)
