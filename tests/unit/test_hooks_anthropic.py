"""Anthropic SDK hooks, driven through the real `anthropic` clients against the local stub server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import anthropic
import httpx2
import pytest

from costline.ingest import emit as emit_module
from costline.ingest import hooks
from costline.ingest.hooks import anthropic as anthropic_hooks
from costline.schemas.usage_event import RequestCounters, TokenBuckets, UsageEvent
from tests.unit.conftest import SETTINGS, one, uninstrumented
from tests.unit.stub_llm_server import ANSWER, RecordingSink, StubLLMServer

MODEL = "claude-sonnet-4-6"
SYSTEM = "You answer questions about invoices."
MESSAGES = [{"role": "user", "content": "Which invoice is overdue?"}]


def call(**extra: Any) -> dict[str, Any]:
    scenario = extra.pop("scenario", "plain")
    return {
        "model": MODEL,
        "max_tokens": 2_048,
        "system": SYSTEM,
        "messages": MESSAGES,
        "extra_headers": {"x-stub-scenario": scenario},
        **extra,
    }


@pytest.fixture
def client(stub: StubLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=stub.url, api_key="test-dummy", max_retries=0) as c:
        yield c


WEB_SEARCH_TOKENS = TokenBuckets(input_uncached=1_845, output_visible=310)


@pytest.mark.parametrize(
    ("scenario", "tokens", "requests", "tier", "region"),
    [
        (
            "plain",
            TokenBuckets(input_uncached=25, output_visible=12),
            RequestCounters(),
            "standard",
            "global",
        ),
        (
            "cached",
            TokenBuckets(input_uncached=12, cache_read=4_096, output_visible=12),
            RequestCounters(),
            "standard",
            "global",
        ),
        (
            "cache_write",
            TokenBuckets(input_uncached=12, cache_write_5m=2_048, cache_write_1h=4_096, output_visible=12),
            RequestCounters(),
            "standard",
            "global",
        ),
        (
            "thinking",
            TokenBuckets(input_uncached=25, output_visible=12, output_reasoning=1_500),
            RequestCounters(),
            "standard",
            "global",
        ),
        ("web_search", WEB_SEARCH_TOKENS, RequestCounters(web_search_requests=2), "priority", "us"),
    ],
)
def test_create_event_field_by_field(
    client: anthropic.Anthropic,
    sink: RecordingSink,
    scenario: str,
    tokens: TokenBuckets,
    requests: RequestCounters,
    tier: str,
    region: str,
) -> None:
    message = client.messages.create(**call(scenario=scenario))
    event = one(sink)
    assert (event.source, event.provider, event.operation) == ("sdk.anthropic", "anthropic", "chat")
    assert (event.request_model, event.response_model) == (MODEL, MODEL)
    assert event.tokens == tokens
    assert event.requests == requests
    s = event.signals
    assert (s.status, s.finish_reason, s.service_tier, s.region) == ("ok", "end_turn", tier, region)
    assert s.output_chars == len(ANSWER)
    assert s.stream is False
    assert s.caching_requested is False
    assert s.prompt_prefix_hash is not None
    assert event.raw_usage is not None
    assert event.raw_usage["input_tokens"] == tokens.input_uncached
    baseline = uninstrumented(lambda: client.messages.create(**call(scenario=scenario)))
    assert message.model_dump() == baseline.model_dump()


def test_create_stream_takes_the_last_cumulative_delta(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    with client.messages.create(**call(scenario="web_search", stream=True)) as stream:
        assert isinstance(stream, anthropic.Stream)
        events = [event.model_dump() for event in stream]
    assert [e["type"] for e in events].count("message_delta") == 2
    event = one(sink)
    assert event.tokens == WEB_SEARCH_TOKENS  # 310 output and 2 searches, not 430 and 3
    assert event.requests.web_search_requests == 2
    s = event.signals
    assert (s.status, s.stream, s.finish_reason, s.service_tier, s.region) == (
        "ok",
        True,
        "end_turn",
        "priority",
        "us",
    )
    assert s.output_chars == len(ANSWER)
    assert s.time_to_first_token_ms is not None
    baseline = uninstrumented(
        lambda: [e.model_dump() for e in client.messages.create(**call(scenario="web_search", stream=True))]
    )
    assert events == baseline


def test_create_stream_thinking(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    list(client.messages.create(**call(scenario="thinking", stream=True)))
    assert one(sink).tokens == TokenBuckets(input_uncached=25, output_visible=12, output_reasoning=1_500)


def test_error_event_mid_stream_is_partial_with_known_input(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    with pytest.raises(anthropic.APIStatusError):
        for _ in client.messages.create(**call(scenario="stream_error", stream=True)):
            pass
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", "APIStatusError")
    assert event.tokens == TokenBuckets(input_uncached=25, output_visible=1)  # message_start's counts


def test_interrupted_stream_error_is_unchanged(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    def run() -> type[BaseException]:
        try:
            list(client.messages.create(**call(scenario="interrupted", stream=True)))
        except Exception as exc:
            return type(exc)
        raise AssertionError("the stream should have failed")

    assert run() is httpx2.RemoteProtocolError
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", "RemoteProtocolError")
    assert uninstrumented(run) is httpx2.RemoteProtocolError


@pytest.mark.parametrize("consume", ["iterate", "text_stream", "final_message", "until_done"])
def test_messages_stream_recorded_on_exit(
    client: anthropic.Anthropic, sink: RecordingSink, consume: str
) -> None:
    with client.messages.stream(**call(scenario="web_search")) as stream:
        if consume == "iterate":
            kinds = [event.type for event in stream]
            assert "text" in kinds
            assert kinds[-1] == "message_stop"
        elif consume == "text_stream":
            assert "".join(stream.text_stream) == ANSWER
        elif consume == "final_message":
            assert stream.get_final_message().usage.output_tokens == 310
        else:
            stream.until_done()
    event = one(sink)  # recorded once: at exhaustion through the proxy, or when the context exits
    assert event.tokens == WEB_SEARCH_TOKENS
    assert event.requests.web_search_requests == 2
    assert (event.signals.status, event.signals.stream, event.signals.finish_reason) == (
        "ok",
        True,
        "end_turn",
    )
    assert event.signals.output_chars == len(ANSWER)
    if consume in ("iterate", "text_stream"):
        assert event.signals.time_to_first_token_ms is not None


def test_messages_stream_left_early_is_partial(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    with client.messages.stream(**call()) as stream:
        next(iter(stream))  # message_start only
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", None)
    assert event.tokens == TokenBuckets(input_uncached=25, output_visible=1)


def test_messages_stream_error_on_enter(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    manager = client.messages.stream(**call(scenario="error_429"))
    assert sink.take() == []  # no request until the context is entered
    with pytest.raises(anthropic.RateLimitError), manager:
        pass
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("error", "RateLimitError")


def test_messages_stream_final_message_matches_uninstrumented(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    def run() -> dict[str, Any]:
        with client.messages.stream(**call(scenario="thinking")) as stream:
            return stream.get_final_message().model_dump()

    assert run() == uninstrumented(run)
    assert one(sink).tokens.output_reasoning == 1_500


@pytest.mark.parametrize(
    ("name", "error"), [("error_429", anthropic.RateLimitError), ("error_500", anthropic.InternalServerError)]
)
def test_api_errors_propagate(
    client: anthropic.Anthropic, sink: RecordingSink, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        client.messages.create(**call(scenario=name))
    event = one(sink)
    assert (event.signals.status, event.signals.error_type, event.request_model) == (
        "error",
        error.__name__,
        MODEL,
    )


def test_parse(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    parsed = client.messages.parse(**call(scenario="cached"))
    assert parsed.content[0].text == ANSWER  # type: ignore[union-attr]
    assert one(sink).tokens == TokenBuckets(input_uncached=12, cache_read=4_096, output_visible=12)


def test_with_raw_response(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    raw = client.messages.with_raw_response.create(**call(scenario="cached"))
    assert raw.headers["request-id"] == "req_011STUB"
    event = one(sink)
    assert event.tokens == TokenBuckets(input_uncached=12, cache_read=4_096, output_visible=12)
    assert raw.parse().content[0].text == ANSWER  # type: ignore[union-attr]


def test_async_create_stream_and_message_stream(stub: StubLLMServer, sink: RecordingSink) -> None:
    async def run() -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=stub.url, api_key="test-dummy", max_retries=0) as client:
            message = await client.messages.create(**call(scenario="cache_write"))
            texts = []
            async for event in await client.messages.create(**call(scenario="web_search", stream=True)):
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    texts.append(event.delta.text)
            async with client.messages.stream(**call(scenario="thinking")) as stream:
                streamed = "".join([text async for text in stream.text_stream])
            raw = await client.messages.with_raw_response.create(**call())
            parsed = await raw.parse()
            with pytest.raises(anthropic.RateLimitError):
                async with client.messages.stream(**call(scenario="error_429")):
                    pass
            return [message.content[0].text, "".join(texts), streamed, parsed.content[0].text]  # type: ignore[union-attr]

    assert asyncio.run(run()) == [ANSWER] * 4
    create, stream, message_stream, raw, failed = sink.take()
    assert create.tokens == TokenBuckets(
        input_uncached=12, cache_write_5m=2_048, cache_write_1h=4_096, output_visible=12
    )
    assert stream.tokens == WEB_SEARCH_TOKENS
    assert stream.signals.stream
    assert message_stream.tokens.output_reasoning == 1_500
    assert message_stream.signals.time_to_first_token_ms is not None
    assert raw.tokens.input_uncached == 25
    assert (failed.signals.status, failed.signals.error_type) == ("error", "RateLimitError")


def test_caching_requested_is_read_from_the_request(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    marker = {"type": "ephemeral"}
    system_blocks = [{"type": "text", "text": SYSTEM, "cache_control": marker}]
    cached_turn = [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": marker}]}]
    client.messages.create(**call(system=system_blocks))
    client.messages.create(**call(messages=cached_turn))
    client.messages.create(**call(cache_control=marker))
    client.messages.create(**call())
    assert [e.signals.caching_requested for e in sink.take()] == [True, True, True, False]


def test_reasoning_effort_from_thinking_and_output_config(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    client.messages.create(**call(thinking={"type": "enabled", "budget_tokens": 1_024}))
    client.messages.create(**call(thinking={"type": "enabled", "budget_tokens": 16_000}, max_tokens=20_000))
    client.messages.create(**call(thinking={"type": "disabled"}))
    client.messages.create(**call(output_config={"effort": "max"}))
    client.messages.create(**call())
    assert [e.signals.reasoning_effort for e in sink.take()] == ["low", "high", "none", "xhigh", None]


def test_prefix_hash_follows_system_and_tools_only(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    tools = [{"name": "get_invoice", "description": "Fetch one invoice", "input_schema": {"type": "object"}}]
    client.messages.create(**call(tools=tools))
    client.messages.create(**call(tools=tools, messages=[{"role": "user", "content": "Another question"}]))
    client.messages.create(**call(tools=tools, system="Another system prompt"))
    first, second, third = sink.take()
    assert first.signals.prompt_prefix_hash == second.signals.prompt_prefix_hash
    assert first.signals.prompt_prefix_hash != third.signals.prompt_prefix_hash
    assert SYSTEM not in first.model_dump_json()
    assert "get_invoice" not in first.model_dump_json()


def test_cloud_clients_are_recognized_by_shape() -> None:
    class AnthropicBedrock:
        pass

    class AnthropicVertex:
        pass

    assert anthropic_hooks.provider_of(SimpleNamespace(_client=AnthropicBedrock())) == "aws.bedrock"
    assert anthropic_hooks.provider_of(SimpleNamespace(_client=AnthropicVertex())) == "gcp.vertex_ai"
    assert anthropic_hooks.provider_of(SimpleNamespace(_client=object())) == "anthropic"


def test_failing_sink_and_kill_switch(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    class Broken:
        def emit(self, event: UsageEvent) -> None:
            raise OSError("disk full")

    emit_module.set_sink(Broken())
    assert client.messages.create(**call()).content
    with client.messages.stream(**call()) as stream:
        assert stream.get_final_text() == ANSWER
    assert hooks.flush()
    emit_module.set_sink(sink)
    emit_module.set_enabled(False)
    client.messages.create(**call())
    with client.messages.stream(**call()) as stream:
        stream.until_done()
    emit_module.set_enabled(True)
    assert sink.take() == []


def test_instrument_uninstrument_cycles(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    hooks.uninstrument()
    originals = {
        (m.owner, m.name): vars(getattr(sys.modules[m.module], m.owner))[m.name]
        for m in hooks.ANTHROPIC_METHODS
    }
    for _ in range(2):
        hooks.instrument(openai=False, settings=SETTINGS)
        hooks.instrument(openai=False, settings=SETTINGS)
        with client.messages.stream(**call()) as stream:
            stream.until_done()
        assert len(sink.take()) == 1
        hooks.uninstrument()
        for m in hooks.ANTHROPIC_METHODS:
            assert vars(getattr(sys.modules[m.module], m.owner))[m.name] is originals[(m.owner, m.name)]
        with client.messages.stream(**call()) as stream:
            assert type(stream).__name__ == "MessageStream"
            stream.until_done()
        assert sink.take() == []
    hooks.instrument(settings=SETTINGS)
