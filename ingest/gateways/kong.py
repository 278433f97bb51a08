"""Kong AI Gateway request logs (file-log lines, http-log batches, any logging plugin).

The AI plugins add an `ai` object to Kong's per-request log when `config.logging.log_statistics`
is on: `ai.proxy` in current releases, `ai["ai-proxy"]` in older ones (GATEWAY_FACTS 5). Kong
rewrites usage into the OpenAI shape whatever the provider, so cached tokens are a subset of
`prompt_tokens` and reasoning a subset of `completion_tokens`. Older docs spell
`prompt_token`/`completion_token`; both spellings are read. Lines without an `ai` section
(non-AI routes) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from costline.ingest.gateways.base import (
    Adapter,
    AttributionDraft,
    ParseResult,
    as_int,
    as_list,
    as_mapping,
    build_event,
    clean_name,
    duration_ms,
    make_event_id,
    otel_provider,
    parse_time,
    pick,
    to_money,
)
from costline.ingest.normalize import openai_chat_usage
from costline.schemas.usage_event import TokenBuckets

SOURCE = "gateway.kong"
#: Names the AI proxy plugins log under, newest first.
_NAMESPACES = ("proxy", "ai-proxy", "ai-proxy-advanced")
_SINGULAR = {"prompt_token": "prompt_tokens", "completion_token": "completion_tokens"}


def _ai_section(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    ai = record.get("ai")
    if not isinstance(ai, Mapping):
        return None
    for name in _NAMESPACES:
        section = ai.get(name)
        if isinstance(section, Mapping) and ("meta" in section or "usage" in section):
            return section
    for section in ai.values():  # another AI plugin that logs the same meta/usage pair
        if isinstance(section, Mapping) and "meta" in section and "usage" in section:
            return section
    return None


def parse(record: Mapping[str, Any]) -> ParseResult:
    """One Kong request log object."""
    section = _ai_section(record)
    if section is None:
        return ParseResult.skip("no ai.proxy section (not an AI route, or log_statistics is off)")
    meta = as_mapping(section.get("meta"))
    usage = dict(as_mapping(section.get("usage")))
    for singular, plural in _SINGULAR.items():
        if usage.get(plural) is None and usage.get(singular) is not None:
            usage[plural] = usage[singular]
    request_model = clean_name(meta.get("request_model"))
    response_model = clean_name(meta.get("response_model"))
    if request_model is None and response_model is None:
        return ParseResult.fail("ai.proxy.meta names no request_model or response_model")
    occurred = parse_time(record.get("started_at"), unit="ms")
    if occurred is None:
        return ParseResult.fail(f"no usable started_at (got {record.get('started_at')!r})")
    normalized = openai_chat_usage(usage)
    cache_hit = str(pick(section, "cache.cache_status") or "").lower() == "hit"
    status = _status(record)
    failed = status is not None and status >= 400
    signals: dict[str, Any] = {
        "status": "error" if failed else "ok",
        "error_type": f"http_{status}" if failed else None,
        "stream": str(meta.get("request_mode") or "").lower() == "stream",
        "gateway_cache_hit": cache_hit,
        "latency_ms": duration_ms(pick(meta, "llm_latency") or pick(record, "latencies.proxy")),
        "time_to_first_token_ms": duration_ms(usage.get("time_to_first_token")),
    }
    cost = to_money(usage.get("cost"))
    if cost is not None and cost == 0 and normalized.tokens.input_total + normalized.tokens.output_total:
        cost = None  # 0 means "no prices configured on the route", not a free call
    fields: dict[str, Any] = {
        "event_id": make_event_id("kong", pick(record, "request.id"), record),
        "occurred_at": occurred,
        "source": SOURCE,
        "provider": otel_provider(meta.get("provider_name")),
        "request_model": request_model,
        "response_model": response_model,
        "tokens": TokenBuckets() if cache_hit else normalized.tokens,
        "attribution": _attribution(record),
        "signals": {key: value for key, value in signals.items() if value is not None},
        "raw_usage": normalized.raw or None,
        "reported_cost": cost,
    }
    return build_event(fields)


def _status(record: Mapping[str, Any]) -> int | None:
    """The client-facing status, else the last upstream try's (`"502, 200"` after retries)."""
    status = as_int(pick(record, "response.status"))
    if status is None:
        upstream = str(record.get("upstream_status") or "").split(",")[-1]
        status = as_int(upstream)
    return status


def _attribution(record: Mapping[str, Any]) -> dict[str, Any]:
    """Consumer tags (`team:search`, `cost_center:42`) first, then the consumer itself as team;
    the route is the workload."""
    draft = AttributionDraft()
    consumer = as_mapping(record.get("consumer"))
    draft.tag_list(as_list(consumer.get("tags")))
    draft.set("team", pick(consumer, "username", "custom_id"))
    draft.set("workload", pick(record, "route.name"))
    draft.tag("kong.consumer", clean_name(pick(consumer, "username", "custom_id", "id")))
    draft.tag("kong.service", clean_name(pick(record, "service.name")))
    draft.tag("kong.workspace", clean_name(record.get("workspace_name")))
    return draft.build()


ADAPTER = Adapter("kong", parse)
