"""LiteLLM: the proxy's StandardLoggingPayload, its SpendLogs rows, and an SDK callback.

Token semantics (GATEWAY_FACTS 2.2, 13.2): LiteLLM rewrites every provider's usage into the
OpenAI shape, so `prompt_tokens` *includes* cache reads for every provider, and for Anthropic
(current releases) also cache writes. Fresh input is therefore `prompt − cache read − cache
write`, clamped at 0 — the same rule for OpenAI-through-LiteLLM and Anthropic-through-LiteLLM,
which is exactly what differs from Anthropic's own API. (Older LiteLLM releases left Anthropic
cache writes out of `prompt_tokens`; on those, fresh input is under-stated by the writes.)
Reasoning tokens are a subset of `completion_tokens`.

The detail fields live in `hidden_params.usage_object` (or `metadata.usage_object`); without
them only the top-level `prompt_tokens`/`completion_tokens` are known and nothing is cached.

Event ids use `litellm_call_id`, unique per LiteLLM call (a proxy cache hit repeats the cached
response's `id`), falling back to `id`. The litellm package is never imported by the parsers.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from costline.ingest.attribution import current_attribution, set_defaults
from costline.ingest.gateways.base import (
    Adapter,
    AttributionDraft,
    ParseResult,
    as_bool,
    as_list,
    as_mapping,
    build_event,
    clean_identifier,
    clean_name,
    duration_ms,
    make_event_id,
    otel_provider,
    parse_time,
    pick,
    reasoning_effort,
    to_money,
)
from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    difference,
    get_count,
    get_field,
    raw_dict,
)
from costline.ingest.normalize.openai import cache_writes
from costline.schemas.settings import Settings
from costline.schemas.usage_event import Attribution, RequestCounters, TokenBuckets, UsageEvent

logger = logging.getLogger(__name__)

SOURCE = "gateway.litellm"
SPENDLOGS_SOURCE = "gateway.litellm.spendlogs"
SDK_SOURCE = "sdk.litellm"

#: LiteLLM `call_type` (without the async `a` prefix) → OTel `gen_ai.operation.name`.
_OPERATIONS: Mapping[str, str] = {
    "completion": "chat",
    "responses": "chat",
    "anthropic_messages": "chat",
    "text_completion": "text_completion",
    "embedding": "embeddings",
    "generate_content": "generate_content",
    "image_generation": "image_generation",
    "transcription": "transcription",
    "speech": "speech",
    "rerank": "rerank",
    "moderation": "moderation",
}
#: Call types that never reach a model (MCP tool traffic through the proxy).
_NOT_MODEL_CALLS = frozenset({"call_mcp_tool", "list_mcp_tools", "mcp_tool_call"})
#: Keys of which at least one marks a record as a StandardLoggingPayload or SpendLogs row.
_PAYLOAD_MARKERS = ("litellm_call_id", "call_type", "model_group", "request_id", "response_cost", "spend")
#: Attribution fields a payload may lack and a scope may supply.
_SCOPE_FIELDS = ("team", "project", "workload", "environment", "cost_center", "user_hash")
#: A `provider/` prefix of a LiteLLM model string (not the `arn:aws:…/` of a Bedrock ARN).
_PROVIDER_PREFIX = re.compile(r"^[a-z0-9_.-]+$")


def litellm_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """A LiteLLM `Usage` object (OpenAI shape, whatever the provider) as disjoint buckets."""
    check_usage(usage)
    details = get_field(usage, "prompt_tokens_details")
    prompt = get_count(usage, "prompt_tokens")
    cache_read = max(get_count(details, "cached_tokens"), get_count(usage, "cache_read_input_tokens"))
    # Anthropic-style writes (Anthropic, Bedrock/Vertex Claude): 5-minute unless the TTL is given.
    write_1h = max(
        get_count(details, "cache_creation_token_details", "ephemeral_1h_input_tokens"),
        get_count(usage, "cache_creation", "ephemeral_1h_input_tokens"),
    )
    write_5m = max(
        get_count(details, "cache_creation_token_details", "ephemeral_5m_input_tokens"),
        get_count(usage, "cache_creation", "ephemeral_5m_input_tokens"),
    )
    writes = max(
        get_count(details, "cache_creation_tokens"),
        get_count(usage, "cache_creation_input_tokens"),
        write_5m + write_1h,
    )
    write_5m = writes - write_1h
    # OpenAI-style writes (30-minute / 12-hour retention) pass through LiteLLM unchanged.
    write_30m, write_12h, openai_writes = cache_writes(details)
    completion = get_count(usage, "completion_tokens")
    reasoning = get_count(usage, "completion_tokens_details", "reasoning_tokens")
    tokens = TokenBuckets(
        input_uncached=difference(prompt, cache_read, writes, openai_writes, name="litellm uncached input"),
        cache_read=cache_read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        cache_write_30m=write_30m,
        cache_write_12h=write_12h,
        output_visible=difference(completion, reasoning, name="litellm visible output"),
        output_reasoning=reasoning,
    )
    requests = RequestCounters(
        web_search_requests=get_count(usage, "server_tool_use", "web_search_requests"),
        web_fetch_requests=get_count(usage, "server_tool_use", "web_fetch_requests"),
        code_execution_requests=get_count(usage, "server_tool_use", "code_execution_requests"),
    )
    tier = get_field(usage, "service_tier")
    return NormalizedUsage(
        tokens=tokens,
        requests=requests,
        service_tier=tier if isinstance(tier, str) and tier else service_tier,
        region=region,
        raw=raw_dict(usage),
    )


def parse(record: Mapping[str, Any], *, source: str = SOURCE) -> ParseResult:
    """One StandardLoggingPayload (proxy callback, generic_api logger, bucket loggers)."""
    if not any(key in record for key in _PAYLOAD_MARKERS):
        return ParseResult.skip("not a LiteLLM StandardLoggingPayload (no litellm_call_id, call_type, ...)")
    event_id = make_event_id("litellm", pick(record, "litellm_call_id", "id"), record)
    return _parse_payload(record, event_id=event_id, source=source)


def parse_spendlog(record: Mapping[str, Any]) -> ParseResult:
    """One `LiteLLM_SpendLogs` row (Postgres export, `/spend/logs`, GCS Pub/Sub body)."""
    if "request_id" not in record and "spend" not in record:
        return ParseResult.skip("not a LiteLLM SpendLogs row (no request_id or spend)")
    metadata = dict(as_mapping(record.get("metadata")))
    for column, key in (
        ("team_id", "user_api_key_team_id"),
        ("user", "user_api_key_user_id"),
        ("organization_id", "user_api_key_org_id"),
    ):
        if clean_name(record.get(column)) and not clean_name(metadata.get(key)):
            metadata[key] = record[column]
    status = pick(record, "status", "metadata.status")
    if status is None and as_mapping(metadata.get("error_information")):
        status = "failure"
    payload = {
        **record,
        "metadata": metadata,
        "hidden_params": {"usage_object": metadata.get("usage_object")},
        "response_cost": record.get("spend"),
        "cache_hit": as_bool(record.get("cache_hit")),
        "request_tags": as_list(record.get("request_tags")),
        "status": status,
        "error_information": metadata.get("error_information"),
    }
    event_id = make_event_id("litellm-spendlogs", record.get("request_id"), record)
    return _parse_payload(payload, event_id=event_id, source=SPENDLOGS_SOURCE)


def _parse_payload(record: Mapping[str, Any], *, event_id: str, source: str) -> ParseResult:
    call_type = clean_name(record.get("call_type")) or ""
    if call_type in _NOT_MODEL_CALLS:
        return ParseResult.skip(f"call_type {call_type} is MCP tool traffic, not a model call")
    failed = str(record.get("status") or "").lower() in {"failure", "failed", "error"}
    response = as_mapping(record.get("response"))
    model = clean_name(record.get("model"))
    request_model = clean_name(record.get("model_group")) or model
    response_model = clean_name(response.get("model")) or model
    if request_model is None and response_model is None:
        if failed:
            return ParseResult.skip("failed before reaching a model (the record names none)")
        return ParseResult.fail("no model or model_group in the record")
    started = parse_time(pick(record, "startTime", "endTime"))
    if started is None:
        return ParseResult.fail(f"no usable startTime (got {record.get('startTime')!r})")
    ended = parse_time(record.get("endTime"))
    first_token = parse_time(record.get("completionStartTime"))
    metadata = as_mapping(record.get("metadata"))
    # The detailed usage object when logged; the top-level counts fill whatever it lacks.
    top_level = {key: record.get(key) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    detailed = pick(record, "hidden_params.usage_object", "metadata.usage_object")
    usage_object = {
        **{key: value for key, value in top_level.items() if value is not None},
        **(
            {key: value for key, value in detailed.items() if value is not None}
            if isinstance(detailed, Mapping)
            else {}
        ),
    }
    usage = litellm_usage(usage_object, service_tier=clean_name(response.get("service_tier")))
    cache_hit = as_bool(record.get("cache_hit")) is True
    stream = as_bool(record.get("stream")) is True
    error = as_mapping(record.get("error_information"))
    signals: dict[str, Any] = {
        "status": "error" if failed else "ok",
        "stream": stream,
        "gateway_cache_hit": cache_hit,
        "service_tier": usage.service_tier,
        "reasoning_effort": reasoning_effort(pick(record, "model_parameters.reasoning_effort")),
        "finish_reason": _finish_reason(response),
        "output_chars": _output_chars(response),
    }
    if failed:
        signals["error_type"] = clean_name(
            pick(error, "error_class", "error_code") or record.get("error_str") or "error", limit=256
        )
    if ended is not None and ended >= started:
        signals["latency_ms"] = duration_ms((ended - started).total_seconds(), scale=1000)
    if (
        stream
        and first_token is not None
        and started <= first_token
        and (ended is None or first_token < ended)
    ):
        signals["time_to_first_token_ms"] = duration_ms((first_token - started).total_seconds(), scale=1000)
    fields: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": started,
        "source": source,
        "provider": _provider(record, model),
        "operation": _operation(call_type),
        "request_model": request_model,
        "response_model": response_model,
        # A proxy cache hit made no provider call: nothing is billable (raw_usage keeps the counts).
        "tokens": TokenBuckets() if cache_hit else usage.tokens,
        "requests": RequestCounters() if cache_hit else usage.requests,
        "attribution": _attribution(record, metadata),
        "signals": {key: value for key, value in signals.items() if value is not None},
        "trace_id": clean_identifier(record.get("trace_id")),
        "session_id": clean_identifier(record.get("session_id")),
        "raw_usage": usage.raw or None,
        "reported_cost": to_money(record.get("response_cost")),
    }
    return build_event(fields)


def _provider(record: Mapping[str, Any], model: str | None) -> str:
    """`custom_llm_provider`, else the `provider/` prefix of the model, else the API host."""
    named = clean_name(record.get("custom_llm_provider"))
    if named:
        return otel_provider(named)
    prefix = model.split("/", 1)[0] if model and "/" in model else ""
    if _PROVIDER_PREFIX.match(prefix):
        return otel_provider(prefix)
    api_base = str(record.get("api_base") or "")
    for host, provider in (
        ("api.openai.com", "openai"),
        ("api.anthropic.com", "anthropic"),
        ("bedrock-runtime", "aws.bedrock"),
        ("openai.azure.com", "azure.ai.openai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ):
        if host in api_base:
            return provider
    return otel_provider(None)


def _operation(call_type: str) -> str:
    if call_type in _OPERATIONS:
        return _OPERATIONS[call_type]
    if call_type.startswith("a") and call_type[1:] in _OPERATIONS:
        return _OPERATIONS[call_type[1:]]
    return clean_identifier(call_type) or "chat"


def _attribution(record: Mapping[str, Any], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Team from the virtual key's team, user from `end_user`, tags from request tags and
    `spend_logs_metadata` (where cost-centre style labels are documented to go)."""
    draft = AttributionDraft()
    draft.set(
        "team", pick(metadata, "user_api_key_team_alias", "user_api_key_team_id", "team_alias", "team_id")
    )
    draft.set("project", pick(metadata, "user_api_key_project_alias", "user_api_key_project_id"))
    draft.set("user", pick(record, "end_user", "metadata.user_api_key_end_user_id"))
    draft.labels(as_mapping(metadata.get("spend_logs_metadata")))
    draft.tag_list(as_list(record.get("request_tags")))
    draft.tag("litellm.key_alias", clean_name(metadata.get("user_api_key_alias")))
    draft.tag("litellm.org", clean_name(pick(metadata, "user_api_key_org_alias", "user_api_key_org_id")))
    return draft.build()


def _finish_reason(response: Mapping[str, Any]) -> str | None:
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return clean_name(choices[0].get("finish_reason"), limit=64)
    return clean_name(response.get("stop_reason"), limit=64)


def _output_chars(response: Mapping[str, Any]) -> int | None:
    """Length of the visible answer (its length only; the text itself is never kept)."""
    choices = response.get("choices")
    if not (isinstance(choices, list) and choices and isinstance(choices[0], Mapping)):
        return None
    content = pick(choices[0], "message.content")
    return len(content) if isinstance(content, str) else None


ADAPTER = Adapter("litellm", parse)
SPENDLOGS_ADAPTER = Adapter("litellm-spendlogs", parse_spendlog)
_SDK_ADAPTER = Adapter("litellm", functools.partial(parse, source=SDK_SOURCE))


# --- the SDK callback ----------------------------------------------------------------------------


class CostlineCallbackBase:
    """LiteLLM CustomLogger methods that turn `kwargs["standard_logging_object"]` into events.

    Register an instance: `litellm.callbacks = [CostlineLiteLLMCallback()]`. LiteLLM only calls
    loggers that subclass its `CustomLogger`, so `CostlineLiteLLMCallback` is built on first use
    as a subclass of it when litellm is installed (a plain class otherwise). Like `instrument()`,
    it installs the `COSTLINE_*` attribution defaults and user-hash salt (`settings` overrides
    the environment); attribution the payload lacks comes from the enclosing
    `costline.attribute(...)` scope or those defaults. Nothing here ever raises into LiteLLM:
    failures are counted and logged at debug level.
    """

    def __init__(self, *, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.recorded = 0
        self.skipped = 0
        self.failures = 0
        _install_defaults(settings)

    def _record(self, kwargs: object) -> None:
        try:
            from costline.ingest.emit import emit, is_enabled

            if not is_enabled():
                return
            payload = kwargs.get("standard_logging_object") if isinstance(kwargs, Mapping) else None
            if not isinstance(payload, Mapping):
                self.skipped += 1
                return
            result = _SDK_ADAPTER.parse_record(payload)
            if result.event is not None:
                emit(_with_scope(result.event))
                self.recorded += 1
            elif result.kind == "skipped":
                self.skipped += 1
            else:
                self.failures += 1
                logger.debug("costline could not read a LiteLLM payload: %s", result.reason)
        except Exception:
            self.failures += 1
            logger.debug("costline LiteLLM callback failed", exc_info=True)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Sync success hook (`litellm.completion`)."""
        self._record(kwargs)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """Sync failure hook."""
        self._record(kwargs)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async success hook (`litellm.acompletion`, the proxy)."""
        self._record(kwargs)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Async failure hook."""
        self._record(kwargs)


def _install_defaults(settings: Settings | None) -> None:
    """The attribution defaults and user-hash salt of the `COSTLINE_*` settings, as `instrument()` does."""
    try:
        settings = settings if settings is not None else Settings()
        defaults = {
            name: getattr(settings, f"default_{name}") for name in _SCOPE_FIELDS if name != "user_hash"
        }
        salt = settings.user_hash_salt.get_secret_value()
        if any(defaults.values()) or salt:
            set_defaults(defaults, user_hash_salt=salt)
    except Exception:
        logger.warning(
            "costline: invalid COSTLINE_* settings; the LiteLLM callback uses no defaults", exc_info=True
        )


def _with_scope(event: UsageEvent) -> UsageEvent:
    """Fill attribution the payload lacks from the caller's scope and the defaults."""
    scope = current_attribution()
    have = event.attribution
    fills = {
        name: getattr(scope, name)
        for name in _SCOPE_FIELDS
        if getattr(have, name) is None and getattr(scope, name) is not None
    }
    extra_tags = {key: value for key, value in scope.tags.items() if key not in have.tags}
    if not fills and not extra_tags:
        return event
    try:
        attribution = Attribution(**{**have.model_dump(), **fills, "tags": {**extra_tags, **have.tags}})
    except ValueError:  # e.g. too many tags together: the payload's own attribution stands
        return event
    return event.model_copy(update={"attribution": attribution})


def _custom_logger_class() -> type | None:
    """litellm's CustomLogger when litellm is installed; found without importing it otherwise."""
    if "litellm" not in sys.modules:
        try:
            if importlib.util.find_spec("litellm") is None:
                return None
        except (ImportError, ValueError):
            return None
    try:
        from litellm.integrations.custom_logger import CustomLogger
    except Exception:
        logger.debug("litellm is installed but its CustomLogger could not be imported", exc_info=True)
        return None
    return CustomLogger if isinstance(CustomLogger, type) else None


@functools.cache
def callback_class() -> type[CostlineCallbackBase]:
    """`CostlineLiteLLMCallback`: a CustomLogger subclass when litellm is importable."""
    base = _custom_logger_class()
    bases: tuple[type, ...] = (CostlineCallbackBase,) if base is None else (CostlineCallbackBase, base)
    namespace = {"__module__": __name__, "__doc__": CostlineCallbackBase.__doc__}
    built: type[CostlineCallbackBase] = type("CostlineLiteLLMCallback", bases, namespace)
    return built


if TYPE_CHECKING:
    CostlineLiteLLMCallback = CostlineCallbackBase
else:

    def __getattr__(name: str) -> Any:
        if name == "CostlineLiteLLMCallback":
            return callback_class()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
