"""Provider usage normalizers: every token lands in exactly one bucket, whatever the provider's shape.

Usage objects are the realistic shapes of PROVIDER_FACTS section 3; the same cases run again as
SDK-like attribute objects, since hooks receive pydantic models rather than dicts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from costline.ingest.normalize import (
    NORMALIZERS,
    NormalizedUsage,
    anthropic_usage,
    bedrock_converse_usage,
    deepseek_usage,
    gemini_usage,
    normalize_usage,
    normalizer_for_shape,
    openai_chat_usage,
    openai_responses_usage,
    openai_usage,
)
from costline.schemas.otel import INPUT_TOKENS, OUTPUT_TOKENS, to_otel_attributes
from costline.schemas.usage_event import RequestCounters, TokenBuckets, UsageEvent

Normalizer = Callable[..., NormalizedUsage]


@dataclass(frozen=True)
class Case:
    """A provider usage object, what it must normalize to, and the provider's own totals."""

    id: str
    normalizer: Normalizer
    usage: dict[str, Any]
    tokens: TokenBuckets
    total_input: int
    total_output: int
    requests: RequestCounters = field(default_factory=RequestCounters)
    service_tier: str | None = None
    region: str | None = None


CASES = [
    Case(
        "gpt-5 chat, cached and reasoning",
        openai_chat_usage,
        {
            "prompt_tokens": 12_000,
            "completion_tokens": 2_000,
            "total_tokens": 14_000,
            "prompt_tokens_details": {"cached_tokens": 10_000, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 1_500,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        TokenBuckets(input_uncached=2_000, cache_read=10_000, output_visible=500, output_reasoning=1_500),
        total_input=12_000,
        total_output=2_000,
    ),
    Case(
        "gpt-5.6 chat, cache writes at the default 30-minute retention",
        openai_chat_usage,
        {
            "prompt_tokens": 12_000,
            "completion_tokens": 800,
            "prompt_tokens_details": {"cached_tokens": 8_000, "cache_write_tokens": 3_000},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        TokenBuckets(input_uncached=1_000, cache_read=8_000, cache_write_30m=3_000, output_visible=800),
        total_input=12_000,
        total_output=800,
    ),
    Case(
        "chat, rejected prediction tokens stay billed as visible output",
        openai_chat_usage,
        {
            "prompt_tokens": 500,
            "completion_tokens": 1_000,
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "accepted_prediction_tokens": 400,
                "rejected_prediction_tokens": 300,
            },
        },
        TokenBuckets(input_uncached=500, output_visible=1_000),
        total_input=500,
        total_output=1_000,
    ),
    Case(
        "responses API, writes split by retention",
        openai_responses_usage,
        {
            "input_tokens": 20_000,
            "input_tokens_details": {
                "cached_tokens": 5_000,
                "cache_write_tokens": 6_000,
                "cache_write_tokens_details": {"ttl_30m_tokens": 4_000, "ttl_12h_tokens": 2_000},
            },
            "output_tokens": 3_000,
            "output_tokens_details": {"reasoning_tokens": 2_500},
            "total_tokens": 23_000,
        },
        TokenBuckets(
            input_uncached=9_000,
            cache_read=5_000,
            cache_write_30m=4_000,
            cache_write_12h=2_000,
            output_visible=500,
            output_reasoning=2_500,
        ),
        total_input=20_000,
        total_output=3_000,
    ),
    Case(
        "claude sonnet 4.6 worked example",
        anthropic_usage,
        {
            "input_tokens": 1_000,
            "cache_creation_input_tokens": 2_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 0},
            "cache_read_input_tokens": 10_000,
            "output_tokens": 500,
            "server_tool_use": None,
            "service_tier": "standard",
            "inference_geo": "global",
        },
        TokenBuckets(input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500),
        total_input=13_000,
        total_output=500,
        service_tier="standard",
        region="global",
    ),
    Case(
        "claude with 1h writes, thinking, web search and a US geo",
        anthropic_usage,
        {
            "input_tokens": 300,
            "cache_creation_input_tokens": 5_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 4_000},
            "cache_read_input_tokens": 20_000,
            "output_tokens": 2_400,
            "output_tokens_details": {"thinking_tokens": 2_000},
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
            "service_tier": "priority",
            "inference_geo": "us",
        },
        TokenBuckets(
            input_uncached=300,
            cache_read=20_000,
            cache_write_5m=1_000,
            cache_write_1h=4_000,
            output_visible=400,
            output_reasoning=2_000,
        ),
        total_input=25_300,
        total_output=2_400,
        requests=RequestCounters(web_search_requests=3, web_fetch_requests=1),
        service_tier="priority",
        region="us",
    ),
    Case(
        "claude, cache writes without a TTL breakdown are 5-minute writes",
        anthropic_usage,
        {"input_tokens": 50, "cache_creation_input_tokens": 7_000, "output_tokens": 20},
        TokenBuckets(input_uncached=50, cache_write_5m=7_000, output_visible=20),
        total_input=7_050,
        total_output=20,
    ),
    Case(
        "gemini 2.5 pro worked example, thoughts on top of candidates",
        gemini_usage,
        {
            "promptTokenCount": 250_000,
            "candidatesTokenCount": 1_000,
            "thoughtsTokenCount": 3_000,
            "totalTokenCount": 254_000,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 250_000}],
        },
        TokenBuckets(input_uncached=250_000, output_visible=1_000, output_reasoning=3_000),
        total_input=250_000,
        total_output=4_000,
    ),
    Case(
        "gemini with cached content, tool results and a Vertex traffic type",
        gemini_usage,
        {
            "promptTokenCount": 100_000,
            "cachedContentTokenCount": 60_000,
            "toolUsePromptTokenCount": 5_000,
            "candidatesTokenCount": 800,
            "thoughtsTokenCount": 200,
            "totalTokenCount": 106_000,
            "trafficType": "ON_DEMAND_FLEX",
        },
        TokenBuckets(input_uncached=45_000, cache_read=60_000, output_visible=800, output_reasoning=200),
        total_input=105_000,
        total_output=1_000,
        service_tier="flex",
    ),
    Case(
        "gemini variant whose candidates already include the thoughts",
        gemini_usage,
        {
            "promptTokenCount": 250_000,
            "candidatesTokenCount": 4_000,
            "thoughtsTokenCount": 3_000,
            "totalTokenCount": 254_000,
        },
        TokenBuckets(input_uncached=250_000, output_visible=1_000, output_reasoning=3_000),
        total_input=250_000,
        total_output=4_000,
    ),
    Case(
        "gemini through the google-genai SDK's snake_case names",
        gemini_usage,
        {
            "prompt_token_count": 10_000,
            "cached_content_token_count": 4_000,
            "candidates_token_count": 300,
            "thoughts_token_count": 700,
            "total_token_count": 11_000,
            "traffic_type": "ON_DEMAND",
        },
        TokenBuckets(input_uncached=6_000, cache_read=4_000, output_visible=300, output_reasoning=700),
        total_input=10_000,
        total_output=1_000,
        service_tier="standard",
    ),
    Case(
        "deepseek worked example, 80k hit / 20k miss",
        deepseek_usage,
        {
            "prompt_tokens": 100_000,
            "completion_tokens": 1_000,
            "total_tokens": 101_000,
            "prompt_cache_hit_tokens": 80_000,
            "prompt_cache_miss_tokens": 20_000,
        },
        TokenBuckets(input_uncached=20_000, cache_read=80_000, output_visible=1_000),
        total_input=100_000,
        total_output=1_000,
    ),
    Case(
        "deepseek reasoner with OpenAI-style cached tokens only",
        deepseek_usage,
        {
            "prompt_tokens": 9_000,
            "completion_tokens": 5_000,
            "prompt_tokens_details": {"cached_tokens": 6_000},
            "completion_tokens_details": {"reasoning_tokens": 4_200},
        },
        TokenBuckets(input_uncached=3_000, cache_read=6_000, output_visible=800, output_reasoning=4_200),
        total_input=9_000,
        total_output=5_000,
    ),
    Case(
        "bedrock converse with cacheDetails (1h listed before 5m)",
        bedrock_converse_usage,
        {
            "inputTokens": 1_000,
            "outputTokens": 500,
            "totalTokens": 1_500,
            "cacheReadInputTokens": 10_000,
            "cacheWriteInputTokens": 3_000,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 1_000}, {"ttl": "5m", "inputTokens": 2_000}],
        },
        TokenBuckets(
            input_uncached=1_000,
            cache_read=10_000,
            cache_write_5m=2_000,
            cache_write_1h=1_000,
            output_visible=500,
        ),
        total_input=14_000,
        total_output=500,
    ),
    Case(
        "bedrock converse, cache writes without details default to 5m",
        bedrock_converse_usage,
        {"inputTokens": 40, "outputTokens": 900, "cacheWriteInputTokens": 2_500, "cacheReadInputTokens": 0},
        TokenBuckets(input_uncached=40, cache_write_5m=2_500, output_visible=900),
        total_input=2_540,
        total_output=900,
    ),
    Case(
        "bedrock InvokeModel returning Anthropic's own usage",
        bedrock_converse_usage,
        {
            "input_tokens": 1_000,
            "cache_creation_input_tokens": 2_000,
            "cache_read_input_tokens": 10_000,
            "output_tokens": 500,
        },
        TokenBuckets(input_uncached=1_000, cache_read=10_000, cache_write_5m=2_000, output_visible=500),
        total_input=13_000,
        total_output=500,
    ),
]


def ids(case: Case) -> str:
    return case.id


def as_namespace(value: Any) -> Any:
    """The shape of an SDK object: nested attributes instead of keys."""
    if isinstance(value, dict):
        return SimpleNamespace(**{key: as_namespace(item) for key, item in value.items()})
    if isinstance(value, list):
        return [as_namespace(item) for item in value]
    return value


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_usage_dicts_normalize_to_disjoint_buckets(case: Case) -> None:
    result = case.normalizer(case.usage)
    assert result.tokens == case.tokens
    assert result.requests == case.requests
    assert (result.service_tier, result.region) == (case.service_tier, case.region)
    assert result.raw == case.usage


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_sdk_attribute_objects_give_the_same_result(case: Case) -> None:
    assert case.normalizer(as_namespace(case.usage)) == case.normalizer(case.usage)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_otel_totals_equal_the_providers_own_totals(case: Case) -> None:
    normalized = case.normalizer(case.usage)
    event = UsageEvent(
        event_id="evt-1",
        occurred_at=datetime.now(UTC),
        source="test",
        provider="openai",
        request_model="some-model",
        tokens=normalized.tokens,
    )
    attrs = to_otel_attributes(event)
    assert attrs[INPUT_TOKENS] == case.total_input
    assert attrs[OUTPUT_TOKENS] == case.total_output


class PromptTokensDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    cached_tokens: int | None = None
    audio_tokens: int | None = None


class CompletionTokensDetails(BaseModel):
    model_config = ConfigDict(extra="allow")
    reasoning_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(BaseModel):
    """Shaped like openai-python's `CompletionUsage` (a pydantic model allowing extra fields)."""

    model_config = ConfigDict(extra="allow")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


def test_pydantic_sdk_models_are_read_like_dicts_and_raw_keeps_only_what_was_sent() -> None:
    usage = CompletionUsage(
        prompt_tokens=12_000,
        completion_tokens=2_000,
        total_tokens=14_000,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=10_000),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=1_500),
    )
    result = openai_chat_usage(usage, service_tier="priority")
    assert result.tokens == CASES[0].tokens
    assert result.service_tier == "priority"
    assert result.raw == {
        "prompt_tokens": 12_000,
        "completion_tokens": 2_000,
        "total_tokens": 14_000,
        "prompt_tokens_details": {"cached_tokens": 10_000},
        "completion_tokens_details": {"reasoning_tokens": 1_500},
    }


class TrafficType(Enum):
    ON_DEMAND_PRIORITY = "ON_DEMAND_PRIORITY"


def test_raw_usage_is_json_safe_whatever_the_sdk_object_holds() -> None:
    usage = SimpleNamespace(
        prompt_token_count=10,
        candidates_token_count=5,
        traffic_type=TrafficType.ON_DEMAND_PRIORITY,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        ratio=float("nan"),
        details=(SimpleNamespace(modality="TEXT", token_count=10),),
        _private="dropped",
    )
    result = gemini_usage(usage)
    assert result.service_tier == "priority"
    assert json.loads(json.dumps(result.raw)) == result.raw
    assert result.raw == {
        "prompt_token_count": 10,
        "candidates_token_count": 5,
        "traffic_type": "ON_DEMAND_PRIORITY",
        "created": "2026-01-01T00:00:00+00:00",
        "ratio": None,
        "details": [{"modality": "TEXT", "token_count": 10}],
    }


def test_responses_writes_without_retention_detail_are_30_minute_writes() -> None:
    result = openai_responses_usage(
        {"input_tokens": 5_000, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 4_000}}
    )
    assert result.tokens == TokenBuckets(input_uncached=1_000, cache_write_30m=4_000)


def test_response_level_signals_are_fallbacks_and_the_usage_own_values_win() -> None:
    assert openai_chat_usage({"prompt_tokens": 1}, service_tier="flex").service_tier == "flex"
    claude = {"input_tokens": 1, "service_tier": "batch", "inference_geo": "us"}
    result = anthropic_usage(claude, service_tier="standard", region="eu")
    assert (result.service_tier, result.region) == ("batch", "us")
    converse = bedrock_converse_usage({"inputTokens": 1}, service_tier="priority", region="eu-west-1")
    assert (converse.service_tier, converse.region) == ("priority", "eu-west-1")


ALL_NORMALIZERS = [
    openai_chat_usage,
    openai_responses_usage,
    openai_usage,
    anthropic_usage,
    gemini_usage,
    bedrock_converse_usage,
    deepseek_usage,
]


@pytest.mark.parametrize("normalizer", ALL_NORMALIZERS, ids=lambda f: f.__name__)
def test_empty_usage_is_all_zero(normalizer: Normalizer) -> None:
    result = normalizer({})
    assert result.tokens == TokenBuckets()
    assert result.requests == RequestCounters()
    assert (result.service_tier, result.region, result.raw) == (None, None, {})
    assert normalizer(SimpleNamespace()).tokens == TokenBuckets()


@pytest.mark.parametrize("normalizer", ALL_NORMALIZERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("junk", [None, "12,000 tokens", 12_000, [1, 2], b"{}", True])
def test_only_non_objects_are_rejected(normalizer: Normalizer, junk: object) -> None:
    with pytest.raises(ValueError, match="usage must be a mapping or an SDK object"):
        normalizer(junk)


def test_null_and_junk_fields_count_as_zero() -> None:
    result = openai_chat_usage(
        {
            "prompt_tokens": "1200",
            "completion_tokens": None,
            "prompt_tokens_details": None,
            "completion_tokens_details": {"reasoning_tokens": "lots"},
        }
    )
    assert result.tokens == TokenBuckets(input_uncached=1_200)
    assert anthropic_usage({"input_tokens": 10, "cache_creation": None, "server_tool_use": {}}).tokens == (
        TokenBuckets(input_uncached=10)
    )
    assert gemini_usage({"promptTokenCount": 10.0, "candidatesTokenCount": float("inf")}).tokens == (
        TokenBuckets(input_uncached=10)
    )
    assert bedrock_converse_usage({"inputTokens": 5, "cacheDetails": "oops"}).tokens == TokenBuckets(
        input_uncached=5
    )


def test_negative_and_inconsistent_counts_clamp_at_zero() -> None:
    # xAI-style bug: more cached tokens than prompt tokens; reasoning larger than completion.
    result = openai_chat_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "prompt_tokens_details": {"cached_tokens": 150},
            "completion_tokens_details": {"reasoning_tokens": 80},
        }
    )
    assert result.tokens == TokenBuckets(
        input_uncached=0, cache_read=150, output_visible=0, output_reasoning=80
    )
    negative = anthropic_usage({"input_tokens": -5, "cache_read_input_tokens": -1, "output_tokens": 10})
    assert negative.tokens == TokenBuckets(output_visible=10)
    assert deepseek_usage({"prompt_tokens": 10, "prompt_cache_hit_tokens": 40}).tokens == TokenBuckets(
        cache_read=40
    )
    assert gemini_usage({"promptTokenCount": 10, "cachedContentTokenCount": 30}).tokens == TokenBuckets(
        cache_read=30
    )


def test_claude_on_vertex_usage_is_read_as_anthropic() -> None:
    claude = CASES[4].usage
    assert gemini_usage(claude) == anthropic_usage(claude)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_unknown_providers_are_recognized_by_shape(case: Case) -> None:
    assert normalize_usage("some.gateway", case.usage).tokens == case.tokens


def test_registry_covers_the_main_providers_and_dispatches() -> None:
    assert NORMALIZERS["anthropic"] is anthropic_usage
    assert NORMALIZERS["aws.bedrock"] is bedrock_converse_usage
    assert NORMALIZERS["gcp.vertex_ai"] is gemini_usage
    assert NORMALIZERS["deepseek"] is deepseek_usage
    assert normalizer_for_shape({"prompt_tokens": 1}) is openai_usage
    responses = CASES[3].usage
    assert normalize_usage("openai", responses) == openai_responses_usage(responses)
    assert normalize_usage("openai", CASES[0].usage, service_tier="flex").service_tier == "flex"


counts = st.integers(min_value=0, max_value=10_000_000)


@given(
    cached=counts,
    writes=counts,
    uncached=counts,
    reasoning=counts,
    visible=counts,
    api=st.sampled_from(["chat", "responses"]),
)
def test_consistent_openai_usage_keeps_the_provider_totals(
    cached: int, writes: int, uncached: int, reasoning: int, visible: int, api: str
) -> None:
    prompt, completion = cached + writes + uncached, reasoning + visible
    if api == "chat":
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": writes},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    else:
        usage = {
            "input_tokens": prompt,
            "output_tokens": completion,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": writes},
            "output_tokens_details": {"reasoning_tokens": reasoning},
        }
    tokens = openai_usage(usage).tokens
    assert (tokens.input_total, tokens.output_total) == (prompt, completion)
    assert (tokens.input_uncached, tokens.cache_read, tokens.cache_write_30m) == (uncached, cached, writes)


@given(
    uncached=counts,
    write_5m=counts,
    write_1h=counts,
    read=counts,
    thinking=counts,
    visible=counts,
)
def test_consistent_anthropic_and_bedrock_usage_keep_the_provider_totals(
    uncached: int, write_5m: int, write_1h: int, read: int, thinking: int, visible: int
) -> None:
    claude = anthropic_usage(
        {
            "input_tokens": uncached,
            "cache_creation_input_tokens": write_5m + write_1h,
            "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
            "cache_read_input_tokens": read,
            "output_tokens": thinking + visible,
            "output_tokens_details": {"thinking_tokens": thinking},
        }
    ).tokens
    assert claude == TokenBuckets(
        input_uncached=uncached,
        cache_read=read,
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output_visible=visible,
        output_reasoning=thinking,
    )
    converse = bedrock_converse_usage(
        {
            "inputTokens": uncached,
            "outputTokens": thinking + visible,
            "cacheReadInputTokens": read,
            "cacheWriteInputTokens": write_5m + write_1h,
            "cacheDetails": [{"ttl": "1h", "inputTokens": write_1h}, {"ttl": "5m", "inputTokens": write_5m}],
        }
    ).tokens
    assert converse.input_total == claude.input_total
    assert converse.output_total == claude.output_total
    assert (converse.cache_write_5m, converse.cache_write_1h) == (write_5m, write_1h)


json_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1_000_000, max_value=1_000_000),
    st.floats(max_value=1e6, allow_nan=False),
    st.sampled_from([float("nan"), float("inf")]),
    st.text(max_size=8),
)
usage_keys = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
        "prompt_tokens_details",
        "input_tokens_details",
        "completion_tokens_details",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cache_creation",
        "cache_creation_input_tokens",
        "ephemeral_1h_input_tokens",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "totalTokenCount",
        "cacheDetails",
        "cacheWriteInputTokens",
        "inputTokens",
        "ttl",
        "prompt_cache_hit_tokens",
        "prompt_cache_miss_tokens",
        "server_tool_use",
        "web_search_requests",
        "service_tier",
    ]
)
nested_junk = st.dictionaries(usage_keys, json_junk, max_size=4)
usage_junk = st.dictionaries(
    usage_keys, json_junk | nested_junk | st.lists(nested_junk, max_size=2), max_size=8
)


@given(usage=usage_junk, normalizer=st.sampled_from(ALL_NORMALIZERS))
def test_arbitrary_junk_never_raises(usage: dict[str, Any], normalizer: Normalizer) -> None:
    result = normalizer(usage)
    assert min(result.tokens.model_dump().values()) >= 0
    json.dumps(result.raw, allow_nan=False)
