"""OpenAI SDK hooks, driven through the real `openai` clients against the local stub server.

Every test compares what the caller got with what an uninstrumented client gets, and checks the
emitted `UsageEvent` field by field.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from costline.ingest import emit as emit_module
from costline.ingest import hooks
from costline.ingest.attribution import attribute
from costline.ingest.hooks import openai as openai_hooks
from costline.schemas.settings import Settings
from costline.schemas.usage_event import TokenBuckets, UsageEvent
from tests.unit.conftest import SETTINGS, one, uninstrumented
from tests.unit.stub_llm_server import ANSWER, RecordingSink, StubLLMServer

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant for the billing team."},
    {"role": "user", "content": "What is the capital of France?"},
]
CHAT_MODULE = openai.resources.chat.completions.completions


def scenario(name: str) -> dict[str, Any]:
    return {"extra_headers": {"x-stub-scenario": name}}


@pytest.fixture
def client(stub: StubLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=stub.openai_url, api_key="test-dummy", max_retries=0) as c:
        yield c


# --- Chat Completions ---------------------------------------------------------------------------


def test_chat_plain_event_field_by_field(client: openai.OpenAI, sink: RecordingSink) -> None:
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    event = one(sink)
    assert event.source == "sdk.openai"
    assert event.provider == "openai"
    assert event.operation == "chat"
    assert event.request_model == "gpt-4o-mini"
    assert event.response_model == "gpt-4o-mini-2024-07-18"
    assert event.tokens == TokenBuckets(input_uncached=21, output_visible=5)
    assert event.requests.web_search_requests == 0
    assert len(event.event_id) == 32
    assert event.raw_usage is not None
    assert event.raw_usage["prompt_tokens"] == 21
    s = event.signals
    assert (s.status, s.error_type, s.finish_reason, s.service_tier) == ("ok", None, "stop", "default")
    assert s.output_chars == len(ANSWER)
    assert s.stream is False
    assert s.time_to_first_token_ms is None
    assert s.latency_ms is not None
    assert 0 <= s.latency_ms < 5_000
    assert s.caching_requested is None
    assert s.reasoning_effort is None
    assert s.prompt_prefix_hash is not None
    assert len(s.prompt_prefix_hash) == 32
    baseline = uninstrumented(lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    assert type(result) is type(baseline)
    assert result.model_dump() == baseline.model_dump()


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("cached", TokenBuckets(input_uncached=86, cache_read=1_920, output_visible=5)),
        ("reasoning", TokenBuckets(input_uncached=21, output_visible=5, output_reasoning=1_200)),
    ],
)
def test_chat_cache_and_reasoning_buckets(
    client: openai.OpenAI, sink: RecordingSink, name: str, tokens: TokenBuckets
) -> None:
    client.chat.completions.create(
        model="o4-mini",
        messages=MESSAGES,
        reasoning_effort="low",
        prompt_cache_key="billing-v1",
        **scenario(name),
    )
    event = one(sink)
    assert event.tokens == tokens
    assert event.signals.reasoning_effort == "low"
    assert event.signals.caching_requested is True
    assert event.response_model == "o4-mini-2025-04-16"


def test_no_prompt_content_leaves_and_prefix_hash_is_stable(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup_invoice", "parameters": {"type": "object"}}}]
    other_question = [MESSAGES[0], {"role": "user", "content": "And of Italy?"}]
    other_system = [{"role": "system", "content": "You are verbose."}, MESSAGES[1]]
    for messages in (MESSAGES, other_question, other_system):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools)
    first, second, third = sink.take()
    assert first.signals.prompt_prefix_hash == second.signals.prompt_prefix_hash
    assert first.signals.prompt_prefix_hash != third.signals.prompt_prefix_hash
    for event in (first, second, third):
        dumped = event.model_dump_json()
        for secret in ("capital of France", "terse assistant", "lookup_invoice", "Italy", ANSWER):
            assert secret not in dumped


def test_stream_without_usage_hook_asks_and_hides_the_usage_chunk(
    client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer
) -> None:
    caller_options = {"include_obfuscation": False}
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=caller_options
    )
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)
    sent = stub.requests[-1].body
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert caller_options == {"include_obfuscation": False}  # the caller's dict is untouched
    assert all(chunk.choices for chunk in chunks)  # the extra usage-only chunk was hidden
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ANSWER
    event = one(sink)
    assert event.tokens == TokenBuckets(input_uncached=21, output_visible=5)
    s = event.signals
    assert (s.status, s.stream, s.finish_reason, s.output_chars) == ("ok", True, "stop", len(ANSWER))
    assert s.time_to_first_token_ms is not None
    assert s.time_to_first_token_ms <= (s.latency_ms or 0)
    baseline = uninstrumented(
        lambda: [
            c.model_dump(exclude={"usage"})
            for c in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        ]
    )
    assert [c.model_dump(exclude={"usage"}) for c in chunks] == baseline
    assert "stream_options" not in stub.requests[-1].body  # uninstrumented: nothing added


def test_stream_with_usage_requested_by_caller_is_untouched(
    client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer
) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.chat.completions.create(**kwargs) as stream:
        chunks = [c.model_dump() for c in stream]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 21
    assert stub.requests[-1].body["stream_options"] == {"include_usage": True}
    assert one(sink).tokens.input_uncached == 21
    baseline = uninstrumented(lambda: [c.model_dump() for c in client.chat.completions.create(**kwargs)])
    assert chunks == baseline


def test_stream_usage_opt_out(client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer) -> None:
    hooks.instrument(include_stream_usage=False, settings=SETTINGS)
    try:
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    finally:
        hooks.instrument(settings=SETTINGS)
    assert "stream_options" not in stub.requests[-1].body
    assert len(chunks) == 7
    event = one(sink)
    assert event.signals.status == "partial"  # the call happened; its tokens are unknown
    assert event.tokens == TokenBuckets()
    assert event.signals.output_chars == len(ANSWER)


def test_interrupted_stream_is_partial_and_the_error_unchanged(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    seen: list[str] = []

    def consume() -> None:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("interrupted")
        ):
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        consume()
    assert seen == ["", "Hello", " from"]
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", "APIConnectionError")
    assert event.tokens == TokenBuckets()
    assert event.signals.output_chars == len("Hello from")
    assert event.response_model == "gpt-4o-mini-2024-07-18"


def test_stream_that_ends_without_usage_is_partial(client: openai.OpenAI, sink: RecordingSink) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("no_usage_chunk")
        )
    )
    assert len(chunks) == 7
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", None)


def test_stream_closed_early_is_recorded_once(client: openai.OpenAI, sink: RecordingSink) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(stream)
    next(stream)
    stream.close()
    stream.close()
    with stream:
        pass
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", None)
    assert event.signals.output_chars == len("Hello")


def test_stream_abandoned_is_recorded_when_collected(client: openai.OpenAI, sink: RecordingSink) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for _ in stream:
        break
    del stream
    gc.collect()
    assert one(sink).signals.status == "partial"


def test_stream_exhausted_then_closed_is_recorded_once(client: openai.OpenAI, sink: RecordingSink) -> None:
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            pass
        stream.close()
    assert one(sink).signals.status == "ok"


def test_chat_completions_stream_helper(client: openai.OpenAI, sink: RecordingSink) -> None:
    def run() -> Any:
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
            for _ in stream:
                pass
            return stream.get_final_completion()

    final = run()
    event = one(sink)
    assert event.signals.stream is True
    assert event.signals.status == "ok"
    assert event.tokens.input_uncached == 21
    assert final.model_dump() == uninstrumented(run).model_dump()


@pytest.mark.parametrize(
    ("name", "error"), [("error_429", openai.RateLimitError), ("error_500", openai.InternalServerError)]
)
def test_api_errors_propagate_and_are_recorded(
    client: openai.OpenAI, sink: RecordingSink, name: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **scenario(name))
    assert caught.value.status_code == (429 if name == "error_429" else 500)  # type: ignore[attr-defined]
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("error", error.__name__)
    assert event.request_model == "gpt-4o-mini"
    assert event.response_model is None
    assert event.tokens == TokenBuckets()


def test_the_sdk_exception_object_is_reraised_unchanged(client: openai.OpenAI, sink: RecordingSink) -> None:
    sentinel = openai.APITimeoutError(request=None)  # type: ignore[arg-type]

    def post(*args: Any, **kwargs: Any) -> Any:
        raise sentinel

    client.chat.completions._post = post  # type: ignore[method-assign]
    with pytest.raises(openai.APITimeoutError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value is sentinel
    assert one(sink).signals.error_type == "APITimeoutError"


# --- Responses and Embeddings -------------------------------------------------------------------


def test_responses_plain_and_cached(client: openai.OpenAI, sink: RecordingSink) -> None:
    result = client.responses.create(
        model="gpt-5",
        instructions="Answer briefly.",
        input="Capital of France?",
        reasoning={"effort": "high"},
    )
    client.responses.create(model="gpt-5", input="Capital of France?", **scenario("cached"))
    plain, cached = sink.take()
    assert result.output_text == ANSWER
    assert plain.tokens == TokenBuckets(input_uncached=36, output_visible=5, output_reasoning=1_088)
    assert cached.tokens == TokenBuckets(
        input_uncached=286, cache_read=1_024, output_visible=5, output_reasoning=1_088
    )
    assert (plain.operation, plain.response_model) == ("chat", "gpt-5-2025-08-07")
    s = plain.signals
    assert (s.status, s.finish_reason, s.service_tier, s.reasoning_effort) == (
        "ok",
        "completed",
        "default",
        "high",
    )
    assert s.output_chars == len(ANSWER)
    assert s.prompt_prefix_hash is not None


def test_parse_methods_and_the_responses_stream_helper(client: openai.OpenAI, sink: RecordingSink) -> None:
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)
    response = client.responses.parse(model="gpt-5", input="hi")
    with client.responses.stream(model="gpt-5", input="hi") as stream:
        final = stream.get_final_response()
    assert parsed.choices[0].message.content == ANSWER
    assert response.output_text == ANSWER
    assert final.output_text == ANSWER
    chat, responses, streamed = sink.take()
    assert chat.tokens == TokenBuckets(input_uncached=21, output_visible=5)
    assert responses.tokens.output_reasoning == 1_088
    assert streamed.signals.stream is True
    assert streamed.tokens == responses.tokens


def test_responses_stream(client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer) -> None:
    kinds = [event.type for event in client.responses.create(model="gpt-5", input="hi", stream=True)]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 5
    assert "stream_options" not in stub.requests[-1].body  # the Responses API always reports usage
    event = one(sink)
    assert event.tokens == TokenBuckets(input_uncached=36, output_visible=5, output_reasoning=1_088)
    assert event.signals.stream is True
    assert event.signals.time_to_first_token_ms is not None
    assert event.signals.output_chars == len(ANSWER)


def test_responses_failed_and_interrupted(client: openai.OpenAI, sink: RecordingSink) -> None:
    list(client.responses.create(model="gpt-5", input="hi", stream=True, **scenario("failed")))
    with pytest.raises(openai.APIConnectionError):
        list(client.responses.create(model="gpt-5", input="hi", stream=True, **scenario("interrupted")))
    failed, interrupted = sink.take()
    assert (failed.signals.status, failed.signals.error_type) == ("error", "server_error")
    assert (interrupted.signals.status, interrupted.signals.error_type) == ("partial", "APIConnectionError")
    assert interrupted.response_model == "gpt-5-2025-08-07"


def test_embeddings(client: openai.OpenAI, sink: RecordingSink) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["invoice", "refund"])
    assert len(result.data) == 2
    event = one(sink)
    assert (event.operation, event.response_model) == ("embeddings", "text-embedding-3-small")
    assert event.tokens == TokenBuckets(input_uncached=16)
    assert event.signals.output_chars is None
    assert event.signals.prompt_prefix_hash is None


# --- raw responses ------------------------------------------------------------------------------


def test_with_raw_response(client: openai.OpenAI, sink: RecordingSink) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"] == "req_stub_0001"
    event = one(sink)  # recorded from the body the SDK had already read; parse() not needed
    assert event.tokens == TokenBuckets(input_uncached=21, output_visible=5)
    assert event.signals.output_chars == len(ANSWER)
    assert event.signals.finish_reason == "stop"
    parsed = raw.parse()
    assert parsed is raw.parse()  # the SDK's own cache still works
    assert parsed.choices[0].message.content == ANSWER
    assert sink.take() == []


def test_with_raw_response_stream_is_recorded_when_parsed(
    client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert sink.take() == []  # the body is the caller's: nothing read yet
    chunks = list(raw.parse())
    assert chunks[-1].usage is not None
    event = one(sink)
    assert event.signals.stream is True
    assert event.tokens.input_uncached == 21
    raw_without_usage = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert "stream_options" not in stub.requests[-1].body  # raw bytes are never altered
    assert len(list(raw_without_usage.parse())) == 7
    assert one(sink).signals.status == "partial"


def test_with_streaming_response(client: openai.OpenAI, sink: RecordingSink) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as response:
        assert response.headers["x-request-id"] == "req_stub_0001"
        completion = response.parse()
    assert completion.choices[0].message.content == ANSWER
    assert one(sink).tokens.input_uncached == 21


# --- async --------------------------------------------------------------------------------------


def test_async_chat_stream_responses_embeddings_and_raw(stub: StubLLMServer, sink: RecordingSink) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=stub.openai_url, api_key="test-dummy", max_retries=0
        ) as client:
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            assert isinstance(stream, openai.AsyncStream)
            texts = [chunk.choices[0].delta.content or "" async for chunk in stream]
            await client.responses.create(model="gpt-5", input="hi")
            async with await client.responses.create(model="gpt-5", input="hi", stream=True) as events:
                async for _ in events:
                    pass
            await client.embeddings.create(model="text-embedding-3-small", input="invoice")
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            assert raw.parse().choices[0].message.content == ANSWER
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, **scenario("error_429")
                )
            return [plain.choices[0].message.content or "", "".join(texts)]

    assert asyncio.run(run()) == [ANSWER, ANSWER]
    events = sink.take()
    assert [(e.operation, e.signals.stream, e.signals.status) for e in events] == [
        ("chat", False, "ok"),
        ("chat", True, "ok"),
        ("chat", False, "ok"),
        ("chat", True, "ok"),
        ("embeddings", False, "ok"),
        ("chat", False, "ok"),
        ("chat", False, "error"),
    ]
    assert events[1].tokens == TokenBuckets(input_uncached=21, output_visible=5)
    assert events[3].tokens.output_reasoning == 1_088


def test_async_stream_interrupted(stub: StubLLMServer, sink: RecordingSink) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=stub.openai_url, api_key="test-dummy", max_retries=0
        ) as client:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("interrupted")
            )
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    pass

    asyncio.run(run())
    event = one(sink)
    assert (event.signals.status, event.signals.error_type) == ("partial", "APIConnectionError")


# --- attribution, providers, switches, failures -------------------------------------------------


def test_attribution_scopes_follow_the_call(client: openai.OpenAI, sink: RecordingSink) -> None:
    with attribute(team="search", workload="rag-answer", tags={"feature": "faq"}):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    inside, outside = sink.take()
    assert (inside.attribution.team, inside.attribution.workload) == ("search", "rag-answer")
    assert inside.attribution.tags == {"feature": "faq"}
    assert outside.attribution.team is None


def test_azure_client_is_recognized(stub: StubLLMServer, sink: RecordingSink) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=stub.url, api_key="test-dummy", api_version="2024-10-21", max_retries=0
    ) as azure:
        azure.chat.completions.create(model="my-gpt-4o-mini-deployment", messages=MESSAGES)
    assert "/openai/deployments/my-gpt-4o-mini-deployment/" in stub.requests[-1].path
    event = one(sink)
    assert event.provider == "azure.ai.openai"
    assert event.request_model == "my-gpt-4o-mini-deployment"


def test_openai_compatible_hosts() -> None:
    class Client:
        def __init__(self, base_url: str) -> None:
            self.base_url = base_url

    class Resource:
        def __init__(self, base_url: str) -> None:
            self._client = Client(base_url)

    assert openai_hooks.provider_of(Resource("https://api.deepseek.com/v1")) == "deepseek"
    assert openai_hooks.provider_of(Resource("https://acme.openai.azure.com/openai")) == "azure.ai.openai"
    assert openai_hooks.provider_of(Resource("http://127.0.0.1:8000/v1")) == "openai"


def test_kill_switch_records_nothing_and_changes_nothing(
    client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer
) -> None:
    emit_module.set_enabled(False)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    emit_module.set_enabled(True)
    assert sink.take() == []
    assert len(chunks) == 7
    assert "stream_options" not in stub.requests[-1].body


def test_hooks_disabled_by_settings_wrap_nothing() -> None:
    original = CHAT_MODULE.Completions.__dict__["create"]
    try:
        hooks.instrument(settings=Settings.model_construct(hooks_enabled=False))
        assert CHAT_MODULE.Completions.__dict__["create"] is original
        assert emit_module.is_enabled() is False
    finally:
        emit_module.set_enabled(True)
        hooks.uninstrument()


def test_a_failing_sink_never_reaches_the_host(client: openai.OpenAI, sink: RecordingSink) -> None:
    class Broken:
        def emit(self, event: UsageEvent) -> None:
            raise RuntimeError("producer exploded")

    emit_module.set_sink(Broken())
    before = emit_module.emit_failures()
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert hooks.flush()
    assert result.choices[0].message.content == ANSWER
    assert emit_module.emit_failures() == before + 1


def test_hook_failures_are_contained_and_counted(
    client: openai.OpenAI, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("hook bug")

    before = hooks.hook_failures()
    monkeypatch.setattr(openai_hooks, "provider_of", broken)  # fails before the call
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    monkeypatch.undo()
    monkeypatch.setattr(openai_hooks, "extract_chat", broken)  # fails on the recorder thread
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    monkeypatch.setattr(openai_hooks.ChatTap, "observe", broken)  # fails inside the caller's iteration
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert len(chunks) == 8
    sink.take()
    assert hooks.hook_failures() >= before + 3


def test_one_shot_iterables_are_left_to_the_sdk(
    client: openai.OpenAI, sink: RecordingSink, stub: StubLLMServer
) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=(m for m in MESSAGES))
    assert stub.requests[-1].body["messages"] == MESSAGES
    event = one(sink)
    assert event.signals.prompt_prefix_hash is None  # not readable without consuming it


def test_instrument_uninstrument_cycles_restore_the_originals(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    hooks.uninstrument()
    originals = {
        (m.owner, m.name): vars(getattr(sys.modules[m.module], m.owner))[m.name] for m in hooks.OPENAI_METHODS
    }
    for _ in range(3):
        hooks.instrument(settings=SETTINGS)
        hooks.instrument(settings=SETTINGS)  # idempotent: wrapped once
        wrapper = CHAT_MODULE.Completions.__dict__["create"]
        assert wrapper is not originals[("Completions", "create")]
        assert wrapper.__wrapped__ is originals[("Completions", "create")]
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(sink.take()) == 1
        hooks.uninstrument()
        hooks.uninstrument()
        for m in hooks.OPENAI_METHODS:
            assert vars(getattr(sys.modules[m.module], m.owner))[m.name] is originals[(m.owner, m.name)]
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert sink.take() == []
    hooks.instrument(settings=SETTINGS)


def test_a_cached_raw_wrapper_goes_inert_after_uninstrument(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    raw_api = client.chat.completions.with_raw_response  # binds the wrapper at first access
    hooks.uninstrument()
    raw_api.create(model="gpt-4o-mini", messages=MESSAGES)
    assert sink.take() == []
    hooks.instrument(settings=SETTINGS)


def test_hooks_import_without_the_sdks_or_server_packages() -> None:
    code = """
import sys
for name in ("openai", "anthropic"):
    sys.modules[name] = None
import costline.ingest.hooks as hooks
from costline.ingest import emit
from costline.schemas.settings import Settings
hooks.instrument()  # COSTLINE_HOOKS_ENABLED=false: the kill switch
assert not emit.is_enabled() and hooks.instrumented_methods() == []
emit.set_enabled(True)
hooks.instrument(settings=Settings.model_construct())
assert hooks.instrumented_methods() == [], hooks.instrumented_methods()
hooks.uninstrument()
heavy = [m for m in ("faust", "chdb", "fastapi", "streamlit", "openai", "anthropic") if sys.modules.get(m)]
print(heavy)
"""
    env = {**os.environ, "COSTLINE_HOOKS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().replace("'", '"')) == []


def test_calls_still_queued_at_exit_reach_the_sink(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    code = f"""
import json, httpx2, openai
from costline.ingest import emit, hooks
from costline.schemas.settings import Settings
from tests.unit.stub_llm_server import chat_completion

class FileSink:
    def emit(self, event):
        with open({str(out)!r}, "a") as f:
            f.write(event.model_dump_json() + "\\n")

emit.set_sink(FileSink())
hooks.instrument(settings=Settings.model_construct())
body = json.dumps(chat_completion({{"model": "gpt-4o-mini"}}, "plain")).encode()
http = httpx2.Client(transport=httpx2.MockTransport(lambda request: httpx2.Response(200, content=body)))
client = openai.OpenAI(base_url="http://stub.invalid/v1", api_key="test-dummy", http_client=http)
for _ in range(3):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
"""  # exits at once: the recorder has not looked at its queue yet
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["tokens"]["input_uncached"] == 21
