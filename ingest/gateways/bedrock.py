"""AWS Bedrock model invocation logs (CloudWatch Logs events or the S3 `.json.gz` objects).

`input.inputTokenCount` *excludes* cache reads and writes (Anthropic semantics, GATEWAY_FACTS 9
and 13.1): cache tokens come on top of it, so nothing is subtracted — the opposite of the
OpenAI-shaped gateways. The counts go through the Converse normalizer, which has the same rule;
the cache-write TTL split (5 m / 1 h) is taken from the logged response body when it has one.
Bedrock reports no cost and does not split reasoning out of the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from costline.ingest.gateways.base import (
    Adapter,
    AttributionDraft,
    ParseResult,
    as_mapping,
    build_event,
    clean_name,
    duration_ms,
    make_event_id,
    parse_time,
    pick,
    unwrap_records,
)
from costline.ingest.normalize import bedrock_converse_usage

SOURCE = "gateway.bedrock"
PROVIDER = "aws.bedrock"
_STOP_REASONS = ("stopReason", "stop_reason", "messageStop.stopReason", "delta.stop_reason")
_FAILED = frozenset({"failure", "failed", "error", "fault"})


def parse(record: Mapping[str, Any]) -> ParseResult:
    """One `ModelInvocationLog` record."""
    schema = record.get("schemaType")
    if schema is not None and schema != "ModelInvocationLog":
        return ParseResult.skip(f"schemaType {schema!r} is not a model invocation log")
    model_id = clean_name(record.get("modelId"))
    if schema is None and (model_id is None or not ("input" in record or "output" in record)):
        return ParseResult.skip("not a Bedrock model invocation log (no schemaType, modelId, input/output)")
    if model_id is None:
        return ParseResult.fail("no modelId in the invocation log")
    occurred = parse_time(record.get("timestamp"))
    if occurred is None:
        return ParseResult.fail(f"no usable timestamp (got {record.get('timestamp')!r})")
    inputs = as_mapping(record.get("input"))
    outputs = as_mapping(record.get("output"))
    body = outputs.get("outputBodyJson")
    counts: dict[str, Any] = {
        "inputTokens": inputs.get("inputTokenCount"),
        "outputTokens": outputs.get("outputTokenCount"),
        "cacheReadInputTokens": inputs.get("cacheReadInputTokenCount"),
        "cacheWriteInputTokens": inputs.get("cacheWriteInputTokenCount"),
    }
    counts = {key: value for key, value in counts.items() if value is not None}
    details = _cache_details(body)
    region = clean_name(pick(record, "inferenceRegion", "region"), limit=64)
    usage = bedrock_converse_usage({**counts, "cacheDetails": details} if details else counts, region=region)
    operation = str(record.get("operation") or "")
    error_code = clean_name(record.get("errorCode"), limit=256)
    failed = error_code is not None or str(record.get("status") or "").lower() in _FAILED
    signals: dict[str, Any] = {
        "status": "error" if failed else "ok",
        "error_type": (error_code or "error") if failed else None,
        "stream": operation.endswith("Stream"),
        "region": region,
        "service_tier": clean_name(pick(record, "serviceTier.type", "serviceTier"), limit=32),
        "latency_ms": duration_ms(
            _search(body, "metrics.latencyMs", "amazon-bedrock-invocationMetrics.invocationLatency")
        ),
        "finish_reason": clean_name(
            _search(body, *_STOP_REASONS),
            limit=64,
        ),
    }
    if signals["stream"]:
        signals["time_to_first_token_ms"] = duration_ms(
            _search(body, "amazon-bedrock-invocationMetrics.firstByteLatency")
        )
    # Inference-profile and foundation-model ARNs price as the model id they end with.
    response_model = model_id.rsplit("/", 1)[1] if model_id.startswith("arn:") and "/" in model_id else None
    fields: dict[str, Any] = {
        "event_id": make_event_id("bedrock", record.get("requestId"), record),
        "occurred_at": occurred,
        "source": SOURCE,
        "provider": PROVIDER,
        "operation": "embeddings" if "embed" in model_id.lower() else "chat",
        "request_model": model_id,
        "response_model": response_model,
        "tokens": usage.tokens,
        "attribution": _attribution(record),
        "signals": {key: value for key, value in signals.items() if value is not None},
        "raw_usage": {
            **{f"input.{key}": value for key, value in inputs.items() if key.endswith("TokenCount")},
            **{f"output.{key}": value for key, value in outputs.items() if key.endswith("TokenCount")},
        }
        or None,
    }
    return build_event(fields)


def _attribution(record: Mapping[str, Any]) -> dict[str, Any]:
    """`requestMetadata` (caller-supplied Converse labels) first; the IAM principal is the user."""
    draft = AttributionDraft()
    draft.labels(as_mapping(record.get("requestMetadata")))
    arn = clean_name(pick(record, "identity.arn"))
    if arn is not None:
        draft.set("user", arn)
        role = _role_name(arn)
        if role is not None:
            draft.tag("aws.role", role)
    draft.tag("aws.account", clean_name(record.get("accountId")))
    return draft.build()


def _role_name(arn: str) -> str | None:
    """`Role` of `arn:aws:sts::123:assumed-role/Role/session` (role naming carries team conventions)."""
    _, _, resource = arn.partition(":assumed-role/")
    role = resource.split("/", 1)[0]
    return role or None


def _events(body: object) -> Iterator[Mapping[str, Any]]:
    """The body object, or a stream body's events from last to first (usage comes at the end)."""
    if isinstance(body, Mapping):
        yield body
    elif isinstance(body, list):
        for event in reversed(body):
            if isinstance(event, Mapping):
                yield event
                for value in event.values():  # Converse streams wrap events: {"metadata": {...}}
                    if isinstance(value, Mapping):
                        yield value


def _search(body: object, *paths: str) -> Any:
    for event in _events(body):
        found = pick(event, *paths)
        if found is not None:
            return found
    return None


def _cache_details(body: object) -> list[dict[str, Any]] | None:
    """Cache writes by TTL from the response body: Converse `cacheDetails` or Anthropic `cache_creation`."""
    for event in _events(body):
        for usage in (event.get("usage"), pick(event, "message.usage")):
            if not isinstance(usage, Mapping):
                continue
            details = usage.get("cacheDetails")
            if isinstance(details, list):
                return [dict(item) for item in details if isinstance(item, Mapping)]
            creation = usage.get("cache_creation")
            if isinstance(creation, Mapping):
                return [
                    {"ttl": "5m", "inputTokens": creation.get("ephemeral_5m_input_tokens")},
                    {"ttl": "1h", "inputTokens": creation.get("ephemeral_1h_input_tokens")},
                ]
    return None


def unwrap(document: Any) -> list[Any]:
    """CloudWatch subscription payloads (`logEvents[].message`) and Insights exports (`@message`)
    carry the invocation log as a JSON string; plain records pass through."""
    if isinstance(document, Mapping):
        if document.get("messageType") == "CONTROL_MESSAGE":
            return []
        messages = document.get("logEvents")
        if isinstance(messages, list):
            return [_decoded(event.get("message")) for event in messages if isinstance(event, Mapping)]
        if isinstance(document.get("@message"), str):
            return [_decoded(document["@message"])]
    return unwrap_records(document)


def _decoded(message: object) -> Any:
    if isinstance(message, str):
        try:
            return json.loads(message)
        except json.JSONDecodeError:
            return message
    return message


ADAPTER = Adapter("bedrock", parse, unwrap)
