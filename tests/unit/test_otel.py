"""UsageEvent ⇄ OTel GenAI span attributes: an exact round trip; third-party spans by the conventions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from costline.schemas.otel import (
    ATTRIBUTION_ATTRIBUTES,
    CACHE_WRITE_ATTRIBUTES,
    LEGACY_PROVIDER_NAMES,
    OTEL_PROVIDER_NAMES,
    REQUEST_ATTRIBUTES,
    SIGNAL_ATTRIBUTES,
    derive_event_id,
    from_otel_attributes,
    to_otel_attributes,
)
from costline.schemas.usage_event import (
    MAX_TOKENS_PER_BUCKET,
    REQUEST_COUNTERS,
    TOKEN_BUCKETS,
    Attribution,
    Signals,
    UsageEvent,
    hash_prompt_prefix,
    hash_user,
)

STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def claude_event(**overrides: Any) -> UsageEvent:
    data: dict[str, Any] = {
        "event_id": "evt-42",
        "occurred_at": STARTED,
        "source": "sdk.anthropic",
        "provider": "anthropic",
        "request_model": "claude-sonnet-4-6",
        "response_model": "claude-sonnet-4-6-20260101",
        "tokens": {
            "input_uncached": 1_000,
            "cache_read": 10_000,
            "cache_write_5m": 2_000,
            "cache_write_1h": 500,
            "output_visible": 400,
            "output_reasoning": 100,
        },
        "requests": {"web_search_requests": 2},
        "attribution": {
            "team": "search",
            "project": "ranker",
            "user_hash": hash_user("alice"),
            "tags": {"feature": "rerank", "ab.arm": "b"},
        },
        "signals": {
            "prompt_prefix_hash": hash_prompt_prefix("You are a ranker."),
            "caching_requested": True,
            "finish_reason": "end_turn",
            "service_tier": "standard",
            "region": "us",
            "latency_ms": 1_234,
        },
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "session_id": "conv-7",
        "raw_usage": {"input_tokens": 1_000, "cache_read_input_tokens": 10_000},
    }
    data.update(overrides)
    return UsageEvent.model_validate(data)


def test_attributes_follow_the_genai_conventions_and_carry_the_rest_under_costline() -> None:
    assert to_otel_attributes(claude_event()) == {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.response.model": "claude-sonnet-4-6-20260101",
        "gen_ai.usage.input_tokens": 13_500,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 10_000,
        "gen_ai.usage.cache_creation.input_tokens": 2_500,
        "gen_ai.usage.reasoning.output_tokens": 100,
        "gen_ai.conversation.id": "conv-7",
        "gen_ai.response.finish_reasons": ["end_turn"],
        "costline.event_id": "evt-42",
        "costline.source": "sdk.anthropic",
        "costline.usage.cache_write_5m": 2_000,
        "costline.usage.cache_write_1h": 500,
        "costline.requests.web_search_requests": 2,
        "costline.team": "search",
        "costline.project": "ranker",
        "costline.user_hash": hash_user("alice"),
        "costline.tag.feature": "rerank",
        "costline.tag.ab.arm": "b",
        "costline.prompt_prefix_hash": hash_prompt_prefix("You are a ranker."),
        "costline.caching_requested": True,
        "costline.latency_ms": 1_234,
        "costline.status": "ok",
        "costline.service_tier": "standard",
        "costline.region": "us",
        "costline.batch": False,
        "costline.stream": False,
        "costline.gateway_cache_hit": False,
        "costline.raw_usage": '{"cache_read_input_tokens":10000,"input_tokens":1000}',
    }


def test_openai_events_also_carry_the_openai_service_tier_attribute() -> None:
    event = claude_event(provider="openai", request_model="gpt-5", signals={"service_tier": "flex"})
    attrs = to_otel_attributes(event)
    assert attrs["openai.response.service_tier"] == "flex"
    assert "openai.response.service_tier" not in to_otel_attributes(claude_event())


def round_trip(event: UsageEvent) -> UsageEvent:
    return from_otel_attributes(
        to_otel_attributes(event),
        occurred_at=event.occurred_at,
        trace_id=event.trace_id,
        span_id=event.span_id,
    )


def test_an_event_comes_back_identical() -> None:
    event = claude_event()
    assert round_trip(event) == event


def test_every_field_of_the_contract_has_an_attribute() -> None:
    """A field added to UsageEvent's parts must get an attribute, or the round trip silently drops it."""
    assert set(CACHE_WRITE_ATTRIBUTES) == {
        bucket for bucket in TOKEN_BUCKETS if bucket.startswith("cache_write")
    }
    assert set(REQUEST_ATTRIBUTES) == set(REQUEST_COUNTERS)
    assert set(ATTRIBUTION_ATTRIBUTES) | {"tags"} == set(Attribution.model_fields)
    assert set(SIGNAL_ATTRIBUTES) | {"finish_reason", "error_type"} == set(Signals.model_fields)
    assert set(UsageEvent.model_fields) == {
        "schema_version",
        "event_id",
        "occurred_at",
        "source",
        "provider",
        "operation",
        "request_model",
        "response_model",
        "tokens",
        "requests",
        "attribution",
        "signals",
        "trace_id",
        "span_id",
        "session_id",
        "raw_usage",
        "reported_cost",
    }


identifiers = st.from_regex(r"[A-Za-z0-9._:/@+=-]{1,40}", fullmatch=True)
names = st.text(min_size=1, max_size=30).filter(lambda text: text.strip() != "")
hex_digests = st.from_regex(r"[0-9a-f]{16,64}", fullmatch=True)
token_counts = st.integers(min_value=0, max_value=MAX_TOKENS_PER_BUCKET)
small_text = st.text(max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | small_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(small_text, children, max_size=3),
    max_leaves=8,
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def usage_events(draw: st.DrawFn) -> UsageEvent:
    request_model = draw(optional(names))
    data = {
        "event_id": draw(identifiers),
        "occurred_at": draw(
            st.datetimes(
                min_value=(STARTED - timedelta(days=300)).replace(tzinfo=None),
                max_value=STARTED.replace(tzinfo=None),
                timezones=st.sampled_from([UTC, datetime.now().astimezone().tzinfo]),
            )
        ),
        "source": draw(identifiers),
        "provider": draw(st.sampled_from(sorted(OTEL_PROVIDER_NAMES)) | identifiers),
        "operation": draw(st.sampled_from(["chat", "generate_content", "embeddings"]) | identifiers),
        "request_model": request_model,
        "response_model": draw(names if request_model is None else optional(names)),
        "tokens": draw(
            st.fixed_dictionaries({}, optional={bucket: token_counts for bucket in TOKEN_BUCKETS})
        ),
        "requests": draw(
            st.fixed_dictionaries(
                {},
                optional={counter: st.integers(min_value=0, max_value=100) for counter in REQUEST_COUNTERS},
            )
        ),
        "attribution": {
            "team": draw(optional(names)),
            "project": draw(optional(names)),
            "workload": draw(optional(names)),
            "user_hash": draw(optional(hex_digests)),
            "environment": draw(optional(names)),
            "cost_center": draw(optional(names)),
            "tags": draw(
                st.dictionaries(
                    st.from_regex(r"[A-Za-z0-9._:/-]{1,20}", fullmatch=True), small_text, max_size=4
                )
            ),
        },
        "signals": {
            "prompt_prefix_hash": draw(optional(hex_digests)),
            "caching_requested": draw(optional(st.booleans())),
            "reasoning_effort": draw(optional(st.sampled_from(["none", "minimal", "low", "high", "xhigh"]))),
            "output_chars": draw(optional(st.integers(min_value=0, max_value=100_000_000))),
            "latency_ms": draw(optional(st.integers(min_value=0, max_value=86_400_000))),
            "time_to_first_token_ms": draw(optional(st.integers(min_value=0, max_value=86_400_000))),
            "status": draw(st.sampled_from(["ok", "error", "partial"])),
            "error_type": draw(optional(small_text)),
            "finish_reason": draw(optional(small_text)),
            "service_tier": draw(optional(small_text)),
            "region": draw(optional(small_text)),
            "batch": draw(st.booleans()),
            "stream": draw(st.booleans()),
        },
        "trace_id": draw(optional(identifiers)),
        "span_id": draw(optional(identifiers)),
        "session_id": draw(optional(identifiers)),
        "raw_usage": draw(optional(st.dictionaries(small_text, json_values, max_size=4))),
    }
    return UsageEvent.model_validate(data)


@settings(max_examples=300)
@given(event=usage_events())
def test_any_valid_event_round_trips_exactly(event: UsageEvent) -> None:
    attrs = to_otel_attributes(event)
    for value in attrs.values():  # only value types an OTel attribute can hold
        assert isinstance(value, str | bool | int | float) or (
            isinstance(value, list) and all(isinstance(item, str) for item in value)
        )
    assert round_trip(event) == event


@given(event=usage_events())
def test_standard_totals_include_cache_and_reasoning(event: UsageEvent) -> None:
    attrs = to_otel_attributes(event)
    tokens = event.tokens
    assert attrs["gen_ai.usage.input_tokens"] == sum(
        getattr(tokens, bucket) for bucket in TOKEN_BUCKETS if not bucket.startswith("output")
    )
    assert attrs["gen_ai.usage.output_tokens"] == tokens.output_visible + tokens.output_reasoning


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_third_party_anthropic_span_is_split_by_the_inclusion_rules() -> None:
    attrs = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.usage.input_tokens": 13_000,
        "gen_ai.usage.cache_read.input_tokens": 10_000,
        "gen_ai.usage.cache_creation.input_tokens": 2_000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.reasoning.output_tokens": 200,
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.conversation.id": "thread-1",
        "server.address": "api.anthropic.com",
    }
    event = from_otel_attributes(attrs, occurred_at=STARTED, trace_id=TRACE, span_id=SPAN)
    assert event.tokens.model_dump() == {
        "input_uncached": 1_000,
        "cache_read": 10_000,
        "cache_write_5m": 2_000,
        "cache_write_30m": 0,
        "cache_write_1h": 0,
        "cache_write_12h": 0,
        "output_visible": 300,
        "output_reasoning": 200,
    }
    assert (event.provider, event.operation, event.model) == ("anthropic", "chat", "claude-sonnet-4-6")
    assert (event.source, event.session_id, event.signals.finish_reason) == ("otel", "thread-1", "end_turn")
    assert (event.trace_id, event.span_id, event.occurred_at) == (TRACE, SPAN, STARTED)
    assert event.raw_usage is None


def test_deprecated_attribute_names_are_accepted() -> None:
    attrs = {
        "gen_ai.system": "az.ai.openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 1_200,
        "gen_ai.usage.completion_tokens": 80,
    }
    event = from_otel_attributes(attrs, occurred_at=STARTED)
    assert event.provider == "azure.ai.openai"
    assert (event.tokens.input_uncached, event.tokens.output_visible) == (1_200, 80)
    assert (
        from_otel_attributes({**attrs, "gen_ai.system": "openai"}, occurred_at=STARTED).provider == "openai"
    )
    assert set(LEGACY_PROVIDER_NAMES.values()) <= set(OTEL_PROVIDER_NAMES)


def test_current_names_win_over_deprecated_ones() -> None:
    attrs = {
        "gen_ai.provider.name": "x_ai",
        "gen_ai.system": "xai",
        "gen_ai.request.model": "grok-4",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.prompt_tokens": 99,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.completion_tokens": 99,
    }
    event = from_otel_attributes(attrs, occurred_at=STARTED)
    assert event.provider == "x_ai"
    assert (event.tokens.input_total, event.tokens.output_total) == (10, 5)


def test_inconsistent_third_party_counts_clamp_instead_of_failing() -> None:
    attrs = {
        "gen_ai.provider.name": "x_ai",
        "gen_ai.response.model": "grok-4",
        "gen_ai.usage.input_tokens": "100",  # OTLP/JSON carries ints as strings
        "gen_ai.usage.cache_read.input_tokens": 150,
        "gen_ai.usage.output_tokens": -3,
        "gen_ai.usage.reasoning.output_tokens": 10,
    }
    tokens = from_otel_attributes(attrs, occurred_at=STARTED).tokens
    assert (tokens.input_uncached, tokens.cache_read) == (0, 150)
    assert (tokens.output_visible, tokens.output_reasoning) == (0, 10)


def test_application_set_costline_attributes_attribute_third_party_spans() -> None:
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-5",
        "gen_ai.usage.input_tokens": 10,
        "openai.response.service_tier": "priority",
        "error.type": "RateLimitError",
        "costline.team": "search",
        "costline.environment": "prod",
        "costline.tag.feature": "autocomplete",
        "costline.tag.retries": 2,
        "costline.tag.canary": True,
    }
    event = from_otel_attributes(attrs, occurred_at=STARTED)
    assert (event.attribution.team, event.attribution.environment) == ("search", "prod")
    assert event.attribution.tags == {"feature": "autocomplete", "retries": "2", "canary": "true"}
    assert (event.signals.service_tier, event.signals.status) == ("priority", "error")
    assert event.signals.error_type == "RateLimitError"


def test_foreign_conversation_ids_that_are_not_identifiers_are_hashed_consistently() -> None:
    attrs = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5"}
    one = from_otel_attributes({**attrs, "gen_ai.conversation.id": "thread with spaces"}, occurred_at=STARTED)
    two = from_otel_attributes({**attrs, "gen_ai.conversation.id": "thread with spaces"}, occurred_at=STARTED)
    assert one.session_id == two.session_id
    assert one.session_id is not None
    assert one.session_id.startswith("h-")


def test_resent_spans_get_the_same_event_id_and_different_spans_do_not() -> None:
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-5",
        "gen_ai.usage.input_tokens": 7,
    }
    first = from_otel_attributes(attrs, occurred_at=STARTED, trace_id=TRACE, span_id=SPAN)
    again = from_otel_attributes(dict(attrs), occurred_at=STARTED, trace_id=TRACE, span_id=SPAN)
    other = from_otel_attributes(attrs, occurred_at=STARTED, trace_id=TRACE, span_id="00f067aa0ba902b8")
    assert first.event_id == again.event_id != other.event_id
    # Without span ids, the attributes and the start time identify the span.
    no_ids = from_otel_attributes(attrs, occurred_at=STARTED).event_id
    assert no_ids == from_otel_attributes(attrs, occurred_at=STARTED).event_id
    assert no_ids != from_otel_attributes(attrs, occurred_at=STARTED + timedelta(seconds=1)).event_id
    assert (
        no_ids
        != from_otel_attributes({**attrs, "gen_ai.usage.input_tokens": 8}, occurred_at=STARTED).event_id
    )
    assert from_otel_attributes(attrs).event_id == derive_event_id(attrs)


def test_explicit_event_id_and_span_start_in_nanoseconds() -> None:
    attrs = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-5",
        "costline.event_id": "from-attr",
    }
    nanos = int(STARTED.timestamp()) * 1_000_000_000 + 123_456_789
    event = from_otel_attributes(attrs, occurred_at=nanos, event_id="explicit")
    assert event.event_id == "explicit"
    assert event.occurred_at == STARTED + timedelta(milliseconds=123)  # the contract keeps milliseconds
    assert from_otel_attributes(attrs, occurred_at=STARTED).event_id == "from-attr"


def test_a_span_without_a_model_is_not_an_inference_event() -> None:
    with pytest.raises(ValidationError, match="request_model or response_model"):
        from_otel_attributes(
            {"gen_ai.provider.name": "openai", "gen_ai.request.model": ""}, occurred_at=STARTED
        )


def test_a_span_without_a_provider_is_kept_as_unknown() -> None:
    event = from_otel_attributes({"gen_ai.request.model": "local-llama"}, occurred_at=STARTED)
    assert (event.provider, event.operation) == ("unknown", "chat")


def test_a_damaged_raw_usage_copy_does_not_cost_the_event() -> None:
    attrs = to_otel_attributes(claude_event())
    attrs["costline.raw_usage"] = "{not json"
    event = from_otel_attributes(attrs, occurred_at=STARTED)
    assert event.raw_usage is None
    assert event.tokens == claude_event().tokens
