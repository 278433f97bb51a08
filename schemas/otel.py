"""UsageEvent ⇄ OpenTelemetry GenAI span attributes (semantic conventions v1.41).

The standard attributes carry totals: `gen_ai.usage.input_tokens` includes cached tokens and
`gen_ai.usage.output_tokens` includes reasoning, so any OTel backend shows the right totals.
What OTel cannot express (the cache-write split per TTL, attribution, costline's detector
signals, the idempotency key) travels in `costline.*` attributes, so an event exported as a
span comes back identical. Spans from third-party instrumentations carry only the standard
attributes; they are mapped with the conventions' inclusion rules (cache and reasoning are
subsets of the totals) and get a deterministic `event_id`, so a re-sent span dedupes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from costline.schemas.usage_event import (
    REQUEST_COUNTERS,
    Attribution,
    Identifier,
    Signals,
    UsageEvent,
)

AttributeValue = str | int | float | bool | list[str]

# Standard attributes (gen_ai.* of semconv v1.41, plus the general `error.type`).
PROVIDER_NAME = "gen_ai.provider.name"
OPERATION_NAME = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
CONVERSATION_ID = "gen_ai.conversation.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
ERROR_TYPE = "error.type"
#: Deprecated names still sent by older instrumentations; read as fallbacks, never written.
DEPRECATED_SYSTEM = "gen_ai.system"
DEPRECATED_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"
DEPRECATED_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"

# costline's own attributes: what the conventions have no attribute for.
EVENT_ID = "costline.event_id"
SOURCE = "costline.source"
RAW_USAGE = "costline.raw_usage"
#: A gateway's own cost of the call, as a decimal string (never a float).
REPORTED_COST = "costline.reported_cost"
TAG_PREFIX = "costline.tag."
#: Cache writes per TTL; their sum is `gen_ai.usage.cache_creation.input_tokens`.
CACHE_WRITE_ATTRIBUTES: dict[str, str] = {
    bucket: f"costline.usage.{bucket}"
    for bucket in ("cache_write_5m", "cache_write_30m", "cache_write_1h", "cache_write_12h")
}
REQUEST_ATTRIBUTES: dict[str, str] = {counter: f"costline.requests.{counter}" for counter in REQUEST_COUNTERS}
#: Attribution fields; tags go to `costline.tag.<key>`. Applications may set these on their own spans.
ATTRIBUTION_ATTRIBUTES: dict[str, str] = {
    name: f"costline.{name}" for name in Attribution.model_fields if name != "tags"
}
#: Signals without a standard attribute (finish_reason and error_type have one).
SIGNAL_ATTRIBUTES: dict[str, str] = {
    name: f"costline.{name}" for name in Signals.model_fields if name not in ("finish_reason", "error_type")
}

#: Our provider ids are OTel `gen_ai.provider.name` values; this lists the well-known ones.
OTEL_PROVIDER_NAMES: Mapping[str, str] = {
    name: name
    for name in (
        "openai",
        "anthropic",
        "aws.bedrock",
        "azure.ai.openai",
        "azure.ai.inference",
        "gcp.gemini",
        "gcp.vertex_ai",
        "gcp.gen_ai",
        "deepseek",
        "mistral_ai",
        "cohere",
        "groq",
        "ibm.watsonx.ai",
        "perplexity",
        "x_ai",
    )
}
#: `gen_ai.system` values of earlier semconv versions → today's provider names.
LEGACY_PROVIDER_NAMES: Mapping[str, str] = {
    "az.ai.openai": "azure.ai.openai",
    "az.ai.inference": "azure.ai.inference",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "xai": "x_ai",
}
#: Provider of spans that name none: stored and counted, priced once someone maps it.
UNKNOWN_PROVIDER = "unknown"

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)


def to_otel_attributes(event: UsageEvent) -> dict[str, AttributeValue]:
    """Span attributes for `event`: standard GenAI totals plus `costline.*` for an exact round trip."""
    tokens, signals, attribution = event.tokens, event.signals, event.attribution
    attrs: dict[str, AttributeValue] = {
        PROVIDER_NAME: event.provider,
        OPERATION_NAME: event.operation,
        INPUT_TOKENS: tokens.input_total,
        OUTPUT_TOKENS: tokens.output_total,
        CACHE_READ_INPUT_TOKENS: tokens.cache_read,
        CACHE_CREATION_INPUT_TOKENS: tokens.cache_write,
        REASONING_OUTPUT_TOKENS: tokens.output_reasoning,
        EVENT_ID: event.event_id,
        SOURCE: event.source,
    }
    if event.request_model is not None:
        attrs[REQUEST_MODEL] = event.request_model
    if event.response_model is not None:
        attrs[RESPONSE_MODEL] = event.response_model
    if event.session_id is not None:
        attrs[CONVERSATION_ID] = event.session_id
    if signals.finish_reason is not None:
        attrs[FINISH_REASONS] = [signals.finish_reason]
    if signals.error_type is not None:
        attrs[ERROR_TYPE] = signals.error_type
    if signals.service_tier is not None and event.provider == "openai":
        attrs[OPENAI_RESPONSE_SERVICE_TIER] = signals.service_tier
    for bucket, key in CACHE_WRITE_ATTRIBUTES.items():
        if written := getattr(tokens, bucket):
            attrs[key] = written
    for counter, key in REQUEST_ATTRIBUTES.items():
        if count := getattr(event.requests, counter):
            attrs[key] = count
    for name, key in ATTRIBUTION_ATTRIBUTES.items():
        if (value := getattr(attribution, name)) is not None:
            attrs[key] = value
    for tag, tag_value in attribution.tags.items():
        attrs[TAG_PREFIX + tag] = tag_value
    for name, key in SIGNAL_ATTRIBUTES.items():
        if (value := getattr(signals, name)) is not None:
            attrs[key] = value  # status and False flags too: absence means "not known"
    if event.raw_usage is not None:
        attrs[RAW_USAGE] = json.dumps(event.raw_usage, sort_keys=True, separators=(",", ":"))
    if event.reported_cost is not None:
        attrs[REPORTED_COST] = str(event.reported_cost)
    return attrs


def from_otel_attributes(
    attrs: Mapping[str, object],
    *,
    occurred_at: datetime | int | None = None,
    event_id: str | None = None,
    source: str = "otel",
    trace_id: str | None = None,
    span_id: str | None = None,
) -> UsageEvent:
    """A UsageEvent from span attributes (ours or a third party's).

    `occurred_at` is the span's start (a datetime, or `start_time_unix_nano`); without it the
    event is stamped now. Raises pydantic's ValidationError when the span is not a valid
    inference call (no model, malformed `costline.*` values).
    """
    when = _when(occurred_at)
    provider = _text(attrs, PROVIDER_NAME)
    if not provider:  # only the deprecated attribute used the old names
        system = _text(attrs, DEPRECATED_SYSTEM)
        provider = LEGACY_PROVIDER_NAMES.get(system, system) if system else UNKNOWN_PROVIDER
    event_id = event_id or _text(attrs, EVENT_ID) or derive_event_id(attrs, trace_id, span_id, occurred_at)
    data: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": when,
        "source": _text(attrs, SOURCE) or source,
        "provider": provider,
        "operation": _text(attrs, OPERATION_NAME) or "chat",
        "request_model": _text(attrs, REQUEST_MODEL) or None,
        "response_model": _text(attrs, RESPONSE_MODEL) or None,
        "tokens": _tokens(attrs),
        "requests": {counter: _count(attrs, key) for counter, key in REQUEST_ATTRIBUTES.items()},
        "attribution": _attribution(attrs),
        "signals": _signals(attrs),
        "trace_id": trace_id,
        "span_id": span_id,
        "session_id": _identifier(_text(attrs, CONVERSATION_ID)),
        "raw_usage": _raw_usage(attrs),
        "reported_cost": _text(attrs, REPORTED_COST) or None,
    }
    return UsageEvent.model_validate(data)


def derive_event_id(
    attrs: Mapping[str, object],
    trace_id: str | None = None,
    span_id: str | None = None,
    occurred_at: datetime | int | None = None,
) -> str:
    """Deterministic id of a span without `costline.event_id`: a re-sent span gets the same id.

    Trace and span ids identify a span; without them the attributes and the start time do (two
    identical calls at the same nanosecond, without span ids, are indistinguishable anyway).
    """
    if trace_id and span_id:
        basis = f"span\x00{trace_id}\x00{span_id}"
    else:
        stamp = "" if occurred_at is None else _when(occurred_at).isoformat()
        canonical = json.dumps(dict(attrs), sort_keys=True, separators=(",", ":"), default=str)
        basis = f"attrs\x00{trace_id or ''}\x00{span_id or ''}\x00{stamp}\x00{canonical}"
    return "otel-" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def _tokens(attrs: Mapping[str, object]) -> dict[str, int]:
    """Disjoint buckets from OTel totals: cache and reasoning are subsets of input and output."""
    input_total = _count(attrs, INPUT_TOKENS, DEPRECATED_PROMPT_TOKENS)
    output_total = _count(attrs, OUTPUT_TOKENS, DEPRECATED_COMPLETION_TOKENS)
    cache_read = _count(attrs, CACHE_READ_INPUT_TOKENS)
    reasoning = _count(attrs, REASONING_OUTPUT_TOKENS)
    writes = {bucket: _count(attrs, key) for bucket, key in CACHE_WRITE_ATTRIBUTES.items()}
    # Writes the TTL split does not explain (every write, on a third-party span) are 5-minute
    # writes, the default TTL of the providers that report writes separately.
    writes["cache_write_5m"] += max(0, _count(attrs, CACHE_CREATION_INPUT_TOKENS) - sum(writes.values()))
    return {
        "input_uncached": max(0, input_total - cache_read - sum(writes.values())),
        "cache_read": cache_read,
        **writes,
        "output_visible": max(0, output_total - reasoning),
        "output_reasoning": reasoning,
    }


def _attribution(attrs: Mapping[str, object]) -> dict[str, Any]:
    attribution: dict[str, Any] = {
        name: attrs[key] for name, key in ATTRIBUTION_ATTRIBUTES.items() if attrs.get(key) is not None
    }
    attribution["tags"] = {
        key.removeprefix(TAG_PREFIX): _tag_value(value)
        for key, value in attrs.items()
        if key.startswith(TAG_PREFIX) and value is not None
    }
    return attribution


def _signals(attrs: Mapping[str, object]) -> dict[str, Any]:
    signals: dict[str, Any] = {
        name: attrs[key] for name, key in SIGNAL_ATTRIBUTES.items() if attrs.get(key) is not None
    }
    reasons = attrs.get(FINISH_REASONS)
    if isinstance(reasons, str):
        signals["finish_reason"] = reasons
    elif isinstance(reasons, list | tuple) and reasons:
        signals["finish_reason"] = str(reasons[0])
    if (error_type := attrs.get(ERROR_TYPE)) is not None:
        signals["error_type"] = str(error_type)
        signals.setdefault("status", "error")  # error.type is only set when the call failed
    if "service_tier" not in signals and (tier := _text(attrs, OPENAI_RESPONSE_SERVICE_TIER)) is not None:
        signals["service_tier"] = tier
    return signals


def _raw_usage(attrs: Mapping[str, object]) -> dict[str, Any] | None:
    encoded = attrs.get(RAW_USAGE)
    if not isinstance(encoded, str):
        return None
    try:
        decoded = json.loads(encoded)
    except ValueError:
        return None  # audit copy only: a damaged one must not cost the event
    return decoded if isinstance(decoded, dict) else None


def _text(attrs: Mapping[str, object], key: str) -> str | None:
    value = attrs.get(key)
    return value if isinstance(value, str) else None


def _count(attrs: Mapping[str, object], *keys: str) -> int:
    """The first of `keys` present, as a non-negative int (OTLP/JSON sends ints as strings)."""
    for key in keys:
        value = attrs.get(key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, int):
            return max(0, value)
        if isinstance(value, float) and math.isfinite(value):
            return max(0, int(value))
        if isinstance(value, str):
            try:
                return max(0, int(value.strip()))
            except ValueError:
                continue
    return 0


def _tag_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _identifier(value: str | None) -> str | None:
    """Ids from other systems that do not fit `Identifier` are hashed, so grouping survives."""
    if value is None:
        return None
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        return "h-" + hashlib.sha256(value.encode()).hexdigest()[:32]


def _when(occurred_at: datetime | int | None) -> datetime:
    if occurred_at is None:
        return datetime.now(UTC)
    if isinstance(occurred_at, int):  # nanoseconds since the epoch, without float rounding
        seconds, nanos = divmod(occurred_at, 1_000_000_000)
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)
    return occurred_at
