"""Gateway log adapters: realistic records built from the documented fields (GATEWAY_FACTS), the
cache-inclusion trap per gateway, errors, streams, gateway cache hits, and lines that are not LLM calls.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import time
import types
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from costline.cli_ingest import EXIT_ERROR, EXIT_SOME_LINES_FAILED, ingest_app
from costline.ingest import emit as emit_module
from costline.ingest.attribution import attribute, set_defaults
from costline.ingest.gateways import FORMATS, bedrock, cloudflare, get_adapter, kong, litellm
from costline.ingest.gateways.base import Adapter, ParseResult, parse_time, to_money
from costline.ingest.gateways.mapped import load_mapping, mapping_from_dict, resolve_pointer
from costline.ingest.normalize import anthropic_usage
from costline.schemas.errors import ConfigError
from costline.schemas.settings import Settings
from costline.schemas.usage_event import TokenBuckets, UsageEvent, hash_user

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
#: Recent enough for the schema's ingestion window, whatever day the suite runs.
STARTED = float(int(time.time()) - 3_600)
STARTED_AT = datetime.fromtimestamp(STARTED, UTC)


def event_of(result: ParseResult) -> UsageEvent:
    assert result.kind == "event", result.reason
    assert result.event is not None
    return result.event


# --- LiteLLM StandardLoggingPayload -----------------------------------------------------------


def slp(call_id: str = "c-1", **overrides: Any) -> dict[str, Any]:
    """A StandardLoggingPayload as the proxy logs it (GATEWAY_FACTS 2.2)."""
    record: dict[str, Any] = {
        "id": f"chatcmpl-{call_id}",
        "trace_id": f"trace-{call_id}",
        "litellm_call_id": call_id,
        "call_type": "acompletion",
        "stream": False,
        "status": "success",
        "response_cost": 0.02375,
        "custom_llm_provider": "openai",
        "model": "gpt-5-2025-08-07",
        "model_id": "deployment-1",
        "model_group": "gpt-5",
        "api_base": "https://api.openai.com/v1",
        "prompt_tokens": 12_000,
        "completion_tokens": 2_000,
        "total_tokens": 14_000,
        "startTime": STARTED,
        "endTime": STARTED + 2.5,
        "completionStartTime": STARTED + 2.5,
        "response_time": 2.5,
        "cache_hit": None,
        "cache_key": None,
        "saved_cache_cost": 0.0,
        "request_tags": ["prod", "feature:faq"],
        "end_user": "customer-7",
        "requester_ip_address": "10.0.0.1",
        "messages": "redacted-by-litellm",
        "response": {"model": "gpt-5-2025-08-07", "choices": [{"finish_reason": "stop"}]},
        "model_parameters": {"reasoning_effort": "high"},
        "error_str": None,
        "error_information": None,
        "metadata": {
            "user_api_key_hash": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
            "user_api_key_alias": "rag-key",
            "user_api_key_team_id": "team-uuid-1",
            "user_api_key_team_alias": "search",
            "user_api_key_user_id": "internal-user-1",
            "user_api_key_org_id": None,
            "spend_logs_metadata": {"cost_center": "cc-42", "experiment": "b"},
            "requester_metadata": {},
        },
        "hidden_params": {
            "model_id": "deployment-1",
            "cache_key": None,
            "api_base": "https://api.openai.com/v1",
            "response_cost": 0.02375,
            "litellm_overhead_time_ms": 3.1,
            "usage_object": {
                "prompt_tokens": 12_000,
                "completion_tokens": 2_000,
                "total_tokens": 14_000,
                "prompt_tokens_details": {"cached_tokens": 10_000, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 1_500, "audio_tokens": 0},
            },
        },
    }
    record.update(overrides)
    return record


def anthropic_slp(call_id: str = "a-1", **overrides: Any) -> dict[str, Any]:
    """Claude through LiteLLM: Anthropic said input_tokens=1000, cache read 10000, cache write 2000;
    LiteLLM's current transform puts all three into prompt_tokens (13000)."""
    usage = {
        "prompt_tokens": 13_000,
        "completion_tokens": 500,
        "total_tokens": 13_500,
        "prompt_tokens_details": {"cached_tokens": 10_000, "cache_creation_tokens": 2_000},
        "cache_read_input_tokens": 10_000,
        "cache_creation_input_tokens": 2_000,
    }
    return slp(
        call_id,
        custom_llm_provider="anthropic",
        model="claude-sonnet-4-6",
        model_group="claude-sonnet",
        api_base="https://api.anthropic.com/v1/messages",
        prompt_tokens=13_000,
        completion_tokens=500,
        response_cost=0.021,
        response={"model": "claude-sonnet-4-6", "stop_reason": "end_turn"},
        hidden_params={"usage_object": usage},
        **overrides,
    )


def test_litellm_openai_call_keeps_cached_tokens_inside_the_prompt() -> None:
    event = event_of(litellm.parse(slp()))
    assert event.event_id == "litellm:c-1"
    assert event.source == "gateway.litellm"
    assert (event.provider, event.operation) == ("openai", "chat")
    assert (event.request_model, event.response_model) == ("gpt-5", "gpt-5-2025-08-07")
    assert event.occurred_at == STARTED_AT
    assert event.tokens == TokenBuckets(
        input_uncached=2_000, cache_read=10_000, output_visible=500, output_reasoning=1_500
    )
    assert event.tokens.input_total == 12_000  # nothing double-counted, nothing lost
    assert event.reported_cost == Decimal("0.02375")
    assert event.trace_id == "trace-c-1"
    assert event.signals.latency_ms == 2_500
    assert event.signals.status == "ok"
    assert event.signals.finish_reason == "stop"
    assert event.signals.reasoning_effort == "high"
    assert event.attribution.team == "search"
    assert event.attribution.cost_center == "cc-42"
    assert event.attribution.user_hash == hash_user("customer-7")
    assert event.attribution.tags == {
        "experiment": "b",
        "prod": "true",
        "feature": "faq",
        "litellm.key_alias": "rag-key",
    }
    assert event.raw_usage is not None
    assert event.raw_usage["prompt_tokens"] == 12_000


def test_litellm_anthropic_call_subtracts_reads_and_writes_from_the_prompt() -> None:
    """The trap: LiteLLM's prompt_tokens includes Anthropic's cache reads and writes, Anthropic's
    input_tokens does not. Both must end in the same buckets."""
    event = event_of(litellm.parse(anthropic_slp()))
    direct = anthropic_usage(
        {
            "input_tokens": 1_000,
            "cache_read_input_tokens": 10_000,
            "cache_creation_input_tokens": 2_000,
            "output_tokens": 500,
        }
    ).tokens
    assert event.tokens == direct
    assert event.tokens == TokenBuckets(
        input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500
    )
    assert event.provider == "anthropic"
    assert event.signals.finish_reason == "end_turn"


def test_litellm_anthropic_one_hour_cache_writes_keep_their_ttl() -> None:
    record = anthropic_slp()
    usage = record["hidden_params"]["usage_object"]
    usage["prompt_tokens_details"]["cache_creation_token_details"] = {
        "ephemeral_5m_input_tokens": 500,
        "ephemeral_1h_input_tokens": 1_500,
    }
    event = event_of(litellm.parse(record))
    assert (event.tokens.cache_write_5m, event.tokens.cache_write_1h) == (500, 1_500)
    assert event.tokens.input_uncached == 1_000


def test_litellm_older_anthropic_prompt_without_writes_is_clamped_not_negative() -> None:
    record = anthropic_slp()
    usage = record["hidden_params"]["usage_object"]
    usage["prompt_tokens"] = 1_000  # a pre-cache-aware proxy: prompt smaller than read + write
    event = event_of(litellm.parse(record))
    assert event.tokens.input_uncached == 0
    assert (event.tokens.cache_read, event.tokens.cache_write_5m) == (10_000, 2_000)


def test_litellm_without_usage_object_uses_the_top_level_counts() -> None:
    record = slp(hidden_params={"usage_object": None}, prompt_tokens=800, completion_tokens=40)
    event = event_of(litellm.parse(record))
    assert event.tokens == TokenBuckets(input_uncached=800, output_visible=40)


def test_litellm_failure_becomes_an_error_event() -> None:
    record = slp(
        "f-1",
        status="failure",
        response_cost=0.0,
        prompt_tokens=0,
        completion_tokens=0,
        hidden_params={},
        response=None,
        error_str="litellm.RateLimitError: rate limited",
        error_information={"error_code": "429", "error_class": "RateLimitError", "llm_provider": "openai"},
    )
    event = event_of(litellm.parse(record))
    assert event.signals.status == "error"
    assert event.signals.error_type == "RateLimitError"
    assert event.tokens == TokenBuckets()
    assert event.reported_cost == Decimal("0.0")


def test_litellm_failure_before_any_model_is_skipped() -> None:
    record = slp("f-2", status="failure", model="", model_group=None, response=None)
    result = litellm.parse(record)
    assert result.kind == "skipped"
    assert "no model" in (result.reason or "") or "names none" in (result.reason or "")


def test_litellm_stream_records_time_to_first_token() -> None:
    record = slp("s-1", stream=True, completionStartTime=STARTED + 0.4, endTime=STARTED + 3.0)
    event = event_of(litellm.parse(record))
    assert event.signals.stream is True
    assert (event.signals.time_to_first_token_ms, event.signals.latency_ms) == (400, 3_000)


def test_litellm_proxy_cache_hit_is_a_zero_token_event_with_its_own_id() -> None:
    original = slp("orig-1")
    hit = slp("hit-1", id=original["id"], cache_hit=True, response_cost=0.0)  # cached response: same id
    original_event, hit_event = event_of(litellm.parse(original)), event_of(litellm.parse(hit))
    assert hit_event.signals.gateway_cache_hit is True
    assert hit_event.tokens == TokenBuckets()
    assert hit_event.reported_cost == Decimal("0.0")
    assert hit_event.raw_usage is not None
    assert hit_event.raw_usage["prompt_tokens"] == 12_000
    assert hit_event.event_id != original_event.event_id


def test_litellm_naive_string_times_are_utc() -> None:
    text = STARTED_AT.strftime("%Y-%m-%d %H:%M:%S.%f")
    end = (STARTED_AT + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    event = event_of(litellm.parse(slp(startTime=text, endTime=end, completionStartTime=end)))
    assert event.occurred_at == STARTED_AT
    assert event.signals.latency_ms == 1_000


def test_litellm_provider_comes_from_the_model_prefix_or_api_base_when_not_named() -> None:
    by_prefix = slp(custom_llm_provider=None, model="anthropic/claude-sonnet-4-6", response={})
    by_host = slp(custom_llm_provider=None, model="claude-sonnet-4-6", api_base="https://api.anthropic.com")
    assert event_of(litellm.parse(by_prefix)).provider == "anthropic"
    assert event_of(litellm.parse(by_host)).provider == "anthropic"
    bedrock_call = slp(custom_llm_provider="bedrock", model="us.anthropic.claude-sonnet-4-6", response={})
    assert event_of(litellm.parse(bedrock_call)).provider == "aws.bedrock"
    vertex = slp(custom_llm_provider="vertex_ai-anthropic_models", response={})
    assert event_of(litellm.parse(vertex)).provider == "gcp.vertex_ai"


def test_litellm_arn_models_are_not_mistaken_for_provider_prefixes() -> None:
    record = slp(
        custom_llm_provider=None,
        model="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
        api_base="https://bedrock-runtime.us-east-1.amazonaws.com",
        response={},
    )
    assert event_of(litellm.parse(record)).provider == "aws.bedrock"


def test_litellm_usage_object_without_counts_falls_back_to_the_top_level() -> None:
    record = slp(
        prompt_tokens=800,
        completion_tokens=40,
        hidden_params={"usage_object": {"prompt_tokens_details": {"cached_tokens": 300}}},
    )
    assert event_of(litellm.parse(record)).tokens == TokenBuckets(
        input_uncached=500, cache_read=300, output_visible=40
    )


def test_litellm_embeddings_and_mcp_and_non_payload_lines() -> None:
    embedding = slp("e-1", call_type="aembedding", model="text-embedding-3-small", response={})
    assert event_of(litellm.parse(embedding)).operation == "embeddings"
    mcp = litellm.parse(slp("m-1", call_type="call_mcp_tool"))
    assert mcp.kind == "skipped"
    assert litellm.parse({"level": "INFO", "message": "proxy started"}).kind == "skipped"


def test_litellm_event_ids_are_deterministic() -> None:
    assert litellm.parse(slp()).event == litellm.parse(slp()).event
    no_ids = slp(litellm_call_id=None, id=None)
    first, second = event_of(litellm.parse(no_ids)), event_of(litellm.parse(dict(no_ids)))
    assert first.event_id == second.event_id
    assert first.event_id.startswith("litellm:sha-")


def test_litellm_generic_api_json_array_gives_one_result_per_record() -> None:
    line = json.dumps([slp("b-1"), slp("b-2"), {"not": "a payload"}])
    results = list(litellm.ADAPTER.parse_lines([line]))
    assert [(number, result.kind) for number, result in results] == [
        (1, "event"),
        (1, "event"),
        (1, "skipped"),
    ]


# --- LiteLLM SpendLogs ---------------------------------------------------------------------------


def spendlog(request_id: str = "chatcmpl-s1", **overrides: Any) -> dict[str, Any]:
    """A LiteLLM_SpendLogs row as the GCS Pub/Sub body serializes it (GATEWAY_FACTS 2.3)."""
    metadata = {
        "user_api_key_alias": "rag-key",
        "user_api_key_team_alias": "search",
        "spend_logs_metadata": {"project": "faq-bot"},
        "usage_object": {
            "prompt_tokens": 13_000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 10_000, "cache_creation_tokens": 2_000},
            "cache_read_input_tokens": 10_000,
            "cache_creation_input_tokens": 2_000,
        },
    }
    row: dict[str, Any] = {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "spend": 0.021,
        "total_tokens": 13_500,
        "prompt_tokens": 13_000,
        "completion_tokens": 500,
        "startTime": STARTED_AT.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "endTime": (STARTED_AT + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "completionStartTime": (STARTED_AT + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "model": "claude-sonnet-4-6",
        "model_id": "deployment-2",
        "model_group": "claude-sonnet",
        "custom_llm_provider": "anthropic",
        "api_base": "https://api.anthropic.com/v1/messages",
        "user": "",
        "team_id": "team-uuid-1",
        "organization_id": "",
        "end_user": "",
        "metadata": json.dumps(metadata),
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "request_tags": json.dumps(["prod"]),
        "requester_ip_address": "",
        "messages": {},
        "response": {},
        "status": "success",
    }
    row.update(overrides)
    return row


def test_spendlogs_row_with_string_metadata_and_cache_details() -> None:
    event = event_of(litellm.parse_spendlog(spendlog()))
    assert event.event_id == "litellm-spendlogs:chatcmpl-s1"
    assert event.source == "gateway.litellm.spendlogs"
    assert event.tokens == TokenBuckets(
        input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500
    )
    assert event.reported_cost == Decimal("0.021")
    assert (event.attribution.team, event.attribution.project) == ("search", "faq-bot")
    assert event.attribution.user_hash is None  # "" is no user
    assert event.attribution.tags["prod"] == "true"
    assert event.signals.latency_ms == 2_000


def test_spendlogs_string_cache_hit_and_failure() -> None:
    hit = event_of(litellm.parse_spendlog(spendlog("r-hit", cache_hit="True", spend=0.0)))
    assert hit.signals.gateway_cache_hit is True
    assert hit.tokens == TokenBuckets()
    metadata = {"error_information": {"error_class": "APIConnectionError", "error_code": "500"}}
    failed = spendlog("r-fail", status=None, metadata=json.dumps(metadata), prompt_tokens=0)
    failed_event = event_of(litellm.parse_spendlog(failed))
    assert (failed_event.signals.status, failed_event.signals.error_type) == ("error", "APIConnectionError")
    team_from_column = event_of(litellm.parse_spendlog(spendlog("r-col", metadata="{}")))
    assert team_from_column.attribution.team == "team-uuid-1"
    assert litellm.parse_spendlog({"hello": "world"}).kind == "skipped"


# --- LiteLLM SDK callback ------------------------------------------------------------------------


class ListSink:
    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


@pytest.fixture
def sink() -> Iterator[ListSink]:
    collected = ListSink()
    emit_module.set_sink(collected)
    yield collected
    emit_module.set_sink(None)


def test_callback_without_litellm_is_a_plain_class_that_emits(sink: ListSink) -> None:
    litellm.callback_class.cache_clear()
    callback = litellm.CostlineLiteLLMCallback()
    assert type(callback).__mro__[1:] == (litellm.CostlineCallbackBase, object)
    callback.log_success_event({"standard_logging_object": slp("cb-1")}, None, None, None)
    asyncio.run(callback.async_log_success_event({"standard_logging_object": slp("cb-2")}, None, None, None))
    failure = slp("cb-3", status="failure", error_information={"error_class": "Timeout"})
    asyncio.run(callback.async_log_failure_event({"standard_logging_object": failure}, None, None, None))
    callback.log_failure_event({}, None, None, None)  # no payload: ignored
    callback.log_success_event({"standard_logging_object": {"call_type": "x"}}, None, None, None)  # no model
    callback.log_success_event(None, None, None, None)
    assert [e.event_id for e in sink.events] == ["litellm:cb-1", "litellm:cb-2", "litellm:cb-3"]
    assert {e.source for e in sink.events} == {"sdk.litellm"}
    assert (callback.recorded, callback.skipped, callback.failures) == (3, 2, 1)


@pytest.fixture
def clean_defaults() -> Iterator[None]:
    yield
    set_defaults({}, user_hash_salt="")


def test_callback_takes_salt_and_defaults_from_settings_and_scopes(
    sink: ListSink, clean_defaults: None
) -> None:
    settings = Settings(user_hash_salt="pepper", default_environment="prod")
    callback = litellm.CostlineLiteLLMCallback(settings=settings)
    no_team = slp("scope-1", metadata={})
    with attribute(team="checkout", tags={"feature": "cart", "surface": "web"}):
        callback.log_success_event({"standard_logging_object": no_team}, None, None, None)
    callback.log_success_event({"standard_logging_object": slp("scope-2")}, None, None, None)
    scoped, own = sink.events
    assert (scoped.attribution.team, scoped.attribution.environment) == ("checkout", "prod")
    assert (scoped.attribution.tags["surface"], scoped.attribution.tags["feature"]) == ("web", "faq")
    assert scoped.attribution.user_hash == hash_user("customer-7", "pepper")
    assert own.attribution.team == "search"  # the payload's own attribution wins over defaults
    assert own.attribution.tags["feature"] == "faq"


def test_callback_never_raises_into_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(event: UsageEvent) -> None:
        raise RuntimeError("sink exploded")

    monkeypatch.setattr(emit_module, "_state", emit_module._State())
    emit_module.set_sink(types.SimpleNamespace(emit=broken))  # type: ignore[arg-type]
    try:
        callback = litellm.CostlineLiteLLMCallback()
        callback.log_success_event({"standard_logging_object": slp("cb-x")}, None, None, None)
        assert emit_module.emit_failures() == 1
    finally:
        emit_module.set_sink(None)


def test_callback_subclasses_custom_logger_when_litellm_is_importable(
    monkeypatch: pytest.MonkeyPatch, sink: ListSink
) -> None:
    class CustomLogger:  # the shape of litellm.integrations.custom_logger.CustomLogger
        def __init__(self, turn_off_message_logging: bool = False, **kwargs: Any) -> None:
            self.turn_off_message_logging = turn_off_message_logging

    package = types.ModuleType("litellm")
    integrations = types.ModuleType("litellm.integrations")
    custom_logger = types.ModuleType("litellm.integrations.custom_logger")
    custom_logger.CustomLogger = CustomLogger  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "litellm", package)
    monkeypatch.setitem(sys.modules, "litellm.integrations", integrations)
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", custom_logger)
    litellm.callback_class.cache_clear()
    try:
        callback = litellm.CostlineLiteLLMCallback(turn_off_message_logging=True)
        assert isinstance(callback, CustomLogger)
        assert callback.turn_off_message_logging is True
        callback.log_success_event({"standard_logging_object": slp("sub-1")}, None, None, None)
        assert [e.event_id for e in sink.events] == ["litellm:sub-1"]
    finally:
        litellm.callback_class.cache_clear()


# --- Bedrock ------------------------------------------------------------------------------------


def invocation(request_id: str = "req-1", **overrides: Any) -> dict[str, Any]:
    """A Converse invocation log with prompt caching (GATEWAY_FACTS 9)."""
    record: dict[str, Any] = {
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": STARTED_AT.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "accountId": "123456789012",
        "identity": {"arn": "arn:aws:sts::123456789012:assumed-role/team-search-app/i-0abc"},
        "region": "us-east-1",
        "requestId": request_id,
        "operation": "Converse",
        "modelId": "us.anthropic.claude-sonnet-4-6",
        "inferenceRegion": "us-west-2",
        "requestMetadata": {"team": "search", "feature": "rag"},
        "input": {
            "inputContentType": "application/json",
            "inputBodyJson": {"messages": []},
            "inputTokenCount": 1_000,
            "cacheReadInputTokenCount": 10_000,
            "cacheWriteInputTokenCount": 2_000,
        },
        "output": {
            "outputContentType": "application/json",
            "outputBodyJson": {
                "output": {"message": {"role": "assistant", "content": []}},
                "stopReason": "end_turn",
                "metrics": {"latencyMs": 1834},
                "usage": {
                    "inputTokens": 1_000,
                    "outputTokens": 500,
                    "cacheReadInputTokens": 10_000,
                    "cacheWriteInputTokens": 2_000,
                },
            },
            "outputTokenCount": 500,
        },
    }
    record.update(overrides)
    return record


def test_bedrock_input_count_excludes_cache_so_nothing_is_subtracted() -> None:
    event = event_of(bedrock.parse(invocation()))
    assert event.event_id == "bedrock:req-1"
    assert (event.source, event.provider, event.operation) == ("gateway.bedrock", "aws.bedrock", "chat")
    assert event.tokens == TokenBuckets(
        input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500
    )
    assert event.tokens.input_total == 13_000
    assert event.request_model == "us.anthropic.claude-sonnet-4-6"
    assert event.signals.region == "us-west-2"
    assert event.signals.latency_ms == 1_834
    assert event.signals.finish_reason == "end_turn"
    assert event.reported_cost is None  # Bedrock logs no cost
    assert event.attribution.team == "search"
    assert event.attribution.tags == {
        "feature": "rag",
        "aws.role": "team-search-app",
        "aws.account": "123456789012",
    }
    assert event.attribution.user_hash == hash_user(
        "arn:aws:sts::123456789012:assumed-role/team-search-app/i-0abc"
    )


def test_bedrock_cache_write_ttl_comes_from_the_body() -> None:
    record = invocation()
    record["output"]["outputBodyJson"]["usage"]["cacheDetails"] = [{"ttl": "1h", "inputTokens": 2_000}]
    event = event_of(bedrock.parse(record))
    assert (event.tokens.cache_write_5m, event.tokens.cache_write_1h) == (0, 2_000)


def test_bedrock_stream_body_is_an_event_list() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 1_000,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 2_000,
                    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2_000},
                }
            },
        },
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 300}},
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 1_000,
                "outputTokenCount": 300,
                "invocationLatency": 2_100,
                "firstByteLatency": 350,
            },
        },
        "[DONE]",
    ]
    record = invocation(
        "req-stream",
        operation="InvokeModelWithResponseStream",
        modelId="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6",
        input={"inputTokenCount": 1_000, "cacheWriteInputTokenCount": 2_000},
        output={"outputBodyJson": events, "outputTokenCount": 300},
    )
    event = event_of(bedrock.parse(record))
    assert event.signals.stream is True
    assert (event.signals.latency_ms, event.signals.time_to_first_token_ms) == (2_100, 350)
    assert event.signals.finish_reason == "max_tokens"
    assert event.response_model == "us.anthropic.claude-sonnet-4-6"
    assert event.tokens == TokenBuckets(input_uncached=1_000, cache_write_1h=2_000, output_visible=300)


def test_bedrock_error_and_guardrail_records() -> None:
    error = event_of(bedrock.parse(invocation("req-err", errorCode="ThrottlingException", output={})))
    assert (error.signals.status, error.signals.error_type) == ("error", "ThrottlingException")
    guarded = invocation("req-guard", input={"inputTokenCount": 0}, output={"outputTokenCount": 0})
    assert event_of(bedrock.parse(guarded)).tokens == TokenBuckets()


def test_bedrock_cloudwatch_subscription_envelope_and_other_records() -> None:
    envelope = {
        "messageType": "DATA_MESSAGE",
        "logGroup": "/aws/bedrock/invocations",
        "logEvents": [
            {"id": "1", "timestamp": 0, "message": json.dumps(invocation("cw-1"))},
            {"id": "2", "timestamp": 0, "message": json.dumps(invocation("cw-2"))},
        ],
    }
    results = bedrock.ADAPTER.parse_line(json.dumps(envelope))
    assert [r.event.event_id for r in results if r.event] == ["bedrock:cw-1", "bedrock:cw-2"]
    control = bedrock.ADAPTER.parse_line(json.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []}))
    assert [r.kind for r in control] == ["skipped"]
    assert bedrock.parse({"schemaType": "SomethingElse"}).kind == "skipped"
    assert bedrock.parse({"eventName": "InvokeModel"}).kind == "skipped"


# --- Kong ---------------------------------------------------------------------------------------


def kong_log(request_id: str = "kong-1", **overrides: Any) -> dict[str, Any]:
    """A Kong file-log line with the AI proxy's statistics (GATEWAY_FACTS 5.2, 5.3)."""
    record: dict[str, Any] = {
        "request": {"id": request_id, "method": "POST", "uri": "/openai/chat", "size": 812},
        "response": {"status": 200, "size": 1400},
        "upstream_status": "200",
        "started_at": int(STARTED * 1000),
        "latencies": {"kong": 4, "proxy": 1900, "request": 1910, "receive": 0},
        "consumer": {"id": "c-uuid", "username": "search-app", "custom_id": "app-7", "tags": ["team:search"]},
        "route": {"name": "openai-chat", "id": "r-uuid"},
        "service": {"name": "openai", "id": "s-uuid"},
        "workspace_name": "default",
        "client_ip": "10.0.0.2",
        "ai": {
            "proxy": {
                "meta": {
                    "plugin_id": "p-uuid",
                    "provider_name": "openai",
                    "request_model": "gpt-5",
                    "response_model": "gpt-5-2025-08-07",
                    "llm_latency": 1880,
                    "request_mode": "oneshot",
                },
                "usage": {
                    "prompt_tokens": 12_000,
                    "completion_tokens": 2_000,
                    "total_tokens": 14_000,
                    "prompt_tokens_details": {"cached_tokens": 10_000},
                    "completion_tokens_details": {"reasoning_tokens": 1_500},
                    "cost": 0.035,
                    "time_per_token": 0.9,
                },
            }
        },
    }
    record.update(overrides)
    return record


def test_kong_ai_proxy_is_openai_shaped() -> None:
    event = event_of(kong.parse(kong_log()))
    assert event.event_id == "kong:kong-1"
    assert (event.source, event.provider) == ("gateway.kong", "openai")
    assert (event.request_model, event.response_model) == ("gpt-5", "gpt-5-2025-08-07")
    assert event.occurred_at == STARTED_AT
    assert event.tokens == TokenBuckets(
        input_uncached=2_000, cache_read=10_000, output_visible=500, output_reasoning=1_500
    )
    assert event.reported_cost == Decimal("0.035")
    assert event.signals.latency_ms == 1_880
    assert (event.attribution.team, event.attribution.workload) == ("search", "openai-chat")
    assert event.attribution.tags == {
        "kong.consumer": "search-app",
        "kong.service": "openai",
        "kong.workspace": "default",
    }


def test_kong_older_ai_proxy_namespace_and_singular_names() -> None:
    record = kong_log("kong-old", consumer=None)
    record["ai"] = {
        "ai-proxy": {
            "meta": {"provider_name": "anthropic", "request_model": "claude-sonnet-4-6"},
            "usage": {"prompt_token": 900, "completion_token": 100, "total_tokens": 1_000},
        }
    }
    event = event_of(kong.parse(record))
    assert event.provider == "anthropic"
    assert event.tokens == TokenBuckets(input_uncached=900, output_visible=100)
    assert event.reported_cost is None
    assert event.attribution.team is None


def test_kong_semantic_cache_hit_stream_error_and_unset_prices() -> None:
    hit = kong_log("kong-hit", source="kong")
    hit["ai"]["proxy"]["cache"] = {"cache_status": "Hit", "fetch_latency": 3}
    hit_event = event_of(kong.parse(hit))
    assert hit_event.signals.gateway_cache_hit is True
    assert hit_event.tokens == TokenBuckets()
    stream = kong_log("kong-stream")
    stream["ai"]["proxy"]["meta"]["request_mode"] = "stream"
    stream["ai"]["proxy"]["usage"]["time_to_first_token"] = 240
    stream_event = event_of(kong.parse(stream))
    assert (stream_event.signals.stream, stream_event.signals.time_to_first_token_ms) == (True, 240)
    failed = event_of(kong.parse(kong_log("kong-429", response={"status": 429})))
    assert (failed.signals.status, failed.signals.error_type) == ("error", "http_429")
    unpriced = kong_log("kong-free")
    unpriced["ai"]["proxy"]["usage"]["cost"] = 0
    assert event_of(kong.parse(unpriced)).reported_cost is None  # 0 means "no prices configured"


def test_kong_non_ai_routes_are_skipped_and_http_log_batches_split() -> None:
    plain = {"request": {"id": "k-plain"}, "response": {"status": 200}, "started_at": int(STARTED * 1000)}
    assert kong.parse(plain).kind == "skipped"
    results = kong.ADAPTER.parse_line(json.dumps([kong_log("b1"), plain, kong_log("b2")]))
    assert [r.kind for r in results] == ["event", "skipped", "event"]


# --- Cloudflare ---------------------------------------------------------------------------------


def cloudflare_item(log_id: str = "01JCF0000000000000000000", **overrides: Any) -> dict[str, Any]:
    """A log item of the AI Gateway logs API (GATEWAY_FACTS 4.2)."""
    record: dict[str, Any] = {
        "id": log_id,
        "created_at": STARTED_AT.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "model_type": "chat",
        "path": "chat/completions",
        "success": True,
        "status_code": 200,
        "cached": False,
        "duration": 812,
        "tokens_in": 1_200,
        "tokens_out": 80,
        "cost": 0.000228,
        "custom_cost": False,
        "metadata": json.dumps({"team": "support", "user": "u-42", "feature": "faq", "priority": 2}),
        "request_content_type": "application/json",
        "response_content_type": "application/json",
        "step": 0,
    }
    record.update(overrides)
    return record


def test_cloudflare_item_with_metadata_json_string() -> None:
    event = event_of(cloudflare.parse(cloudflare_item()))
    assert event.event_id == "cloudflare:01JCF0000000000000000000"
    assert (event.source, event.provider, event.request_model) == (
        "gateway.cloudflare",
        "openai",
        "gpt-4o-mini",
    )
    assert event.tokens == TokenBuckets(input_uncached=1_200, output_visible=80)  # no cache split reported
    assert event.reported_cost == Decimal("0.000228")
    assert event.signals.latency_ms == 812
    assert event.attribution.team == "support"
    assert event.attribution.user_hash == hash_user("u-42")
    assert event.attribution.tags == {"feature": "faq", "priority": "2"}


def test_cloudflare_cache_hit_failure_provider_names_and_bad_metadata() -> None:
    hit = event_of(cloudflare.parse(cloudflare_item("cf-hit", cached=True, cost=0)))
    assert hit.signals.gateway_cache_hit is True
    assert hit.tokens == TokenBuckets()
    failed = event_of(
        cloudflare.parse(cloudflare_item("cf-fail", success=False, status_code=500, tokens_out=None))
    )
    assert (failed.signals.status, failed.signals.error_type) == ("error", "http_500")
    gemini = event_of(
        cloudflare.parse(cloudflare_item("cf-g", provider="google-ai-studio", metadata="{oops"))
    )
    assert gemini.provider == "gcp.gemini"
    assert gemini.attribution.team is None
    fallback = event_of(cloudflare.parse(cloudflare_item("cf-step", step=1, custom_cost=True)))
    assert fallback.attribution.tags["cloudflare.step"] == "1"
    assert fallback.attribution.tags["cloudflare.custom_cost"] == "true"


def test_cloudflare_rest_envelope_and_non_items() -> None:
    envelope = {
        "success": True,
        "result": [cloudflare_item("cf-1"), cloudflare_item("cf-2")],
        "result_info": {},
    }
    results = cloudflare.ADAPTER.parse_line(json.dumps(envelope))
    assert [r.event.event_id for r in results if r.event] == ["cloudflare:cf-1", "cloudflare:cf-2"]
    assert cloudflare.parse({"id": "x", "created_at": "2026-01-01T00:00:00Z"}).kind == "skipped"


# --- mapped ---------------------------------------------------------------------------------------


def envoy_line(request_id: str = "envoy-1", **overrides: Any) -> dict[str, Any]:
    """An Envoy AI Gateway access-log line in the documented key convention (GATEWAY_FACTS 6.1)."""
    record: dict[str, Any] = {
        "start_time": STARTED_AT.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "method": "POST",
        "x-envoy-origin-path": "/v1/chat/completions",
        "response_code": 200,
        "response_flags": "-",
        "duration": 930,
        "x-request-id": request_id,
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.response.model": "claude-sonnet-4-6",
        "gen_ai.request.model_override": None,
        "gen_ai.provider.name": "default/anthropic/route/aigw-run/rule/1/ref/0",
        "gen_ai.usage.input_tokens": 13_000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.total_tokens": 13_500,
        "gen_ai.usage.cache_read.input_tokens": 10_000,
        "gen_ai.usage.cache_creation.input_tokens": 2_000,
        "gen_ai.usage.reasoning_tokens": None,
        "session.id": "sess-9",
        "x-tenant-id": "search",
        "route_name": "aigw-run",
        "upstream_cluster": "httproute/default/aigw-run/rule/1",
    }
    record.update(overrides)
    return record


def test_mapped_envoy_example_counts_cache_inside_the_input() -> None:
    mapping = load_mapping(EXAMPLES / "envoy-ai-gateway.yaml")
    event = event_of(mapping.parse(envoy_line()))
    assert event.event_id == "envoy:envoy-1"
    assert (event.source, event.provider) == ("gateway.envoy", "anthropic")
    assert event.tokens == TokenBuckets(
        input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500
    )
    assert event.session_id == "sess-9"
    assert event.attribution.team == "search"
    assert event.attribution.tags == {"route": "aigw-run", "upstream": "httproute/default/aigw-run/rule/1"}
    assert event.signals.latency_ms == 930


def test_mapped_envoy_mcp_lines_are_skipped_and_errors_kept() -> None:
    mapping = load_mapping(EXAMPLES / "envoy-ai-gateway.yaml")
    mcp = {key: None if key.startswith("gen_ai.") else value for key, value in envoy_line("mcp-1").items()}
    assert mapping.parse(mcp).kind == "skipped"
    failed = event_of(
        mapping.parse(envoy_line("e-503", response_code=503, response_code_details="upstream_reset"))
    )
    assert (failed.signals.status, failed.signals.error_type) == ("error", "upstream_reset")
    unknown_backend = event_of(mapping.parse(envoy_line("e-x", **{"gen_ai.provider.name": None})))
    assert unknown_backend.provider == "openai"  # the constant


def test_mapped_custom_proxy_example_is_anthropic_style() -> None:
    mapping = load_mapping(EXAMPLES / "custom-proxy-anthropic-style.yaml")
    record = {
        "ts": int(STARTED * 1000),
        "req": "r-1",
        "model": "claude-sonnet-4-6",
        "tenant": {"team": "search", "user": "u-1"},
        "usage": {
            "input_tokens": 1_000,
            "cache_read_input_tokens": 10_000,
            "cache_creation_input_tokens": 2_000,
            "cache_creation": {"ephemeral_1h_input_tokens": 500},
            "output_tokens": 500,
        },
        "cost_usd": 0.021,
        "ok": False,
    }
    event = event_of(mapping.parse(record))
    assert event.occurred_at == STARTED_AT
    assert event.tokens == TokenBuckets(
        input_uncached=1_000, cache_read=10_000, cache_write_5m=1_500, cache_write_1h=500, output_visible=500
    )
    assert event.reported_cost == Decimal("0.021")
    assert event.signals.status == "error"
    assert event.attribution.user_hash == hash_user("u-1")


def test_mapped_rules_decide_between_subtracting_and_not() -> None:
    record = {"id": "x", "t": STARTED, "m": "some-model", "in": 5_000, "cr": 4_000, "out": 900, "r": 600}
    fields = {
        "event_id": "/id",
        "occurred_at": "/t",
        "request_model": "/m",
        "input_tokens": "/in",
        "cache_read_tokens": "/cr",
        "output_tokens": "/out",
        "reasoning_tokens": "/r",
    }
    inclusive = mapping_from_dict(
        {"rules": {"input_includes_cache_read": True, "output_includes_reasoning": True}, "fields": fields}
    )
    exclusive = mapping_from_dict(
        {"rules": {"input_includes_cache_read": False, "output_includes_reasoning": False}, "fields": fields}
    )
    assert event_of(inclusive.parse(record)).tokens == TokenBuckets(
        input_uncached=1_000, cache_read=4_000, output_visible=300, output_reasoning=600
    )
    assert event_of(exclusive.parse(record)).tokens == TokenBuckets(
        input_uncached=5_000, cache_read=4_000, output_visible=900, output_reasoning=600
    )
    assert event_of(inclusive.parse(record)).event_id == "mapped:x"


def test_mapping_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="input_includes_cache_read"):
        mapping_from_dict({"rules": {"output_includes_reasoning": True}, "fields": {"request_model": "/m"}})
    with pytest.raises(ConfigError, match="not a JSON pointer"):
        mapping_from_dict(
            {
                "rules": {"input_includes_cache_read": True, "output_includes_reasoning": True},
                "fields": {"request_model": "model"},
            }
        )
    with pytest.raises(ConfigError, match="unknown fields"):
        mapping_from_dict(
            {
                "rules": {"input_includes_cache_read": True, "output_includes_reasoning": True},
                "fields": {"request_model": "/m"},
                "constants": {"colour": "blue"},
            }
        )
    with pytest.raises(ConfigError, match="events need a model"):
        mapping_from_dict({"rules": {"input_includes_cache_read": True, "output_includes_reasoning": True}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mapping(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_mapping(tmp_path / "missing.yaml")


def test_json_pointer_escapes_and_arrays() -> None:
    document = {"a/b": {"m~n": [10, {"x": 1}]}, "": 5}
    assert resolve_pointer(document, "/a~1b/m~0n/1/x") == 1
    assert resolve_pointer(document, "/a~1b/m~0n/0") == 10
    assert resolve_pointer(document, "/a~1b/m~0n/9") is None
    assert resolve_pointer(document, "/") == 5
    assert resolve_pointer(document, "") is document


# --- shared machinery -----------------------------------------------------------------------------


def test_lines_that_are_not_json_objects_are_errors_with_their_line_number() -> None:
    lines = [json.dumps(slp("l-1")), "", "{broken", "42", "\xff".encode("latin-1"), json.dumps(slp("l-2"))]
    results = list(litellm.ADAPTER.parse_lines(lines))
    kinds = [(number, result.kind) for number, result in results]
    assert kinds == [(1, "event"), (3, "error"), (4, "error"), (5, "error"), (6, "event")]
    reasons = {number: result.reason for number, result in results}
    assert reasons[3] is not None
    assert reasons[3].startswith("not JSON")
    assert reasons[4] == "expected a JSON object, got a number"
    assert reasons[5] is not None
    assert "UTF-8" in reasons[5]


def test_prefixed_and_docker_wrapped_lines_are_read() -> None:
    prefixed = f"2026-11-23T10:00:00.000Z stdout F {json.dumps(kong_log('p-1'))}"
    docker = json.dumps({"log": json.dumps(kong_log("d-1")) + "\n", "stream": "stdout", "time": "x"})
    results = [r for line in (prefixed, docker) for r in kong.ADAPTER.parse_line(line)]
    assert [r.event.event_id for r in results if r.event] == ["kong:p-1", "kong:d-1"]


def test_an_adapter_bug_is_an_error_result_never_an_exception() -> None:
    def broken(record: Any) -> ParseResult:
        raise KeyError("boom")

    results = list(Adapter("broken", broken).parse_lines(['{"a": 1}']))
    assert results[0][1].kind == "error"
    assert "KeyError" in (results[0][1].reason or "")


def test_gzip_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "bedrock.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write(json.dumps(invocation("gz-1")) + "\n" + json.dumps(invocation("gz-2")) + "\n")
    ids = [result.event.event_id for _, result in bedrock.ADAPTER.parse_file(path) if result.event]
    assert ids == ["bedrock:gz-1", "bedrock:gz-2"]


def test_events_older_than_the_ingestion_window_are_errors() -> None:
    result = litellm.parse(slp(startTime=STARTED - 500 * 86_400, endTime=None))
    assert result.kind == "error"
    assert "older than 400 days" in (result.reason or "")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_763_900_000.5, datetime(2025, 11, 23, 12, 13, 20, 500_000, tzinfo=UTC)),
        (1_763_900_000_500, datetime(2025, 11, 23, 12, 13, 20, 500_000, tzinfo=UTC)),
        ("1763900000", datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)),
        ("2025-11-23T12:13:20Z", datetime(2025, 11, 23, 12, 13, 20, tzinfo=UTC)),
        ("2025-11-23 12:13:20.500000", datetime(2025, 11, 23, 12, 13, 20, 500_000, tzinfo=UTC)),
        ("2025-11-23T12:13:20.5000001Z", datetime(2025, 11, 23, 12, 13, 20, 500_000, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_parse_time(value: object, expected: datetime | None) -> None:
    assert parse_time(value) == expected


def test_money_is_decimal_from_the_string_form() -> None:
    assert to_money(0.1) == Decimal("0.1")
    assert to_money(3.0001999999999996e-07) == Decimal("0.000000300020")
    assert to_money("0.021") == Decimal("0.021")
    assert to_money(-1) is None
    assert to_money(float("nan")) is None
    assert to_money(None) is None


def test_every_format_has_an_adapter(tmp_path: Path) -> None:
    assert FORMATS == ("litellm", "litellm-spendlogs", "bedrock", "kong", "cloudflare", "mapped")
    assert get_adapter("mapped", EXAMPLES / "envoy-ai-gateway.yaml").name == "mapped"
    with pytest.raises(ConfigError, match="--mapping"):
        get_adapter("mapped")
    with pytest.raises(ConfigError, match="unknown format"):
        get_adapter("helicone")
    with pytest.raises(ConfigError, match="only applies"):
        get_adapter("kong", tmp_path / "x.yaml")


# --- costline ingest parse ------------------------------------------------------------------------


def run_parse(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    result = CliRunner().invoke(ingest_app, ["parse", *args])
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, events, result.stderr


def test_parse_cli_prints_events_and_reports_bad_lines_by_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "litellm.jsonl"
    lines = [
        json.dumps(slp("cli-1")),
        json.dumps({"level": "info"}),
        "{oops",
        "",
        json.dumps(anthropic_slp("cli-2")),
    ]
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, events, stderr = run_parse("--format", "litellm", str(log))
    assert code == EXIT_SOME_LINES_FAILED
    assert [e["event_id"] for e in events] == ["litellm:cli-1", "litellm:cli-2"]
    assert events[1]["tokens"]["input_uncached"] == 1_000
    assert f"{log}:3: not JSON" in stderr
    assert "1 line(s) skipped" in stderr
    assert "1 line(s) failed; 2 event(s) parsed" in stderr


def test_parse_cli_clean_file_mapped_format_and_usage_errors(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    log.write_text(json.dumps(envoy_line("cli-e")) + "\n", encoding="utf-8")
    mapping = str(EXAMPLES / "envoy-ai-gateway.yaml")
    code, events, _ = run_parse("--format", "mapped", "--mapping", mapping, str(log))
    assert code == 0
    assert [e["event_id"] for e in events] == ["envoy:cli-e"]
    code, _, stderr = run_parse("--format", "mapped", str(log))
    assert code == EXIT_ERROR
    assert "--mapping" in stderr
    code, _, stderr = run_parse("--format", "nope", str(log))
    assert code == EXIT_ERROR
    assert "unknown format" in stderr
    code, _, stderr = run_parse("--format", "kong", str(tmp_path / "absent.log"))
    assert code == EXIT_ERROR
    assert "is not a file" in stderr
