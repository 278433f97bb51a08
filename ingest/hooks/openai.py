"""Hooks for the OpenAI Python SDK: Chat Completions, Responses and Embeddings, sync and async.

Methods are wrapped on the resource classes, so every client (`OpenAI`, `AsyncOpenAI`,
`AzureOpenAI`, ...) is covered, and so are the SDK helpers built on them (`with_raw_response`,
`with_streaming_response`, `chat.completions.stream`, `responses.stream`). The SDK itself is
imported only by `instrument_openai()`.

Streamed Chat Completions report usage only in an extra final chunk, and only when the request
sets `stream_options.include_usage`. When the caller did not set it, the hook does (unless
`instrument(include_stream_usage=False)`) and hides that extra usage-only chunk again, so the
caller sees exactly the chunks it would have seen without the hook.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from costline.ingest.hooks.common import (
    CONFIG,
    Adapter,
    CallRecord,
    Method,
    SdkPatches,
    StreamTap,
    async_wrapper,
    finish_result,
    host_of,
    is_raw_request,
    is_sequence,
    new_record,
    sync_wrapper,
)
from costline.ingest.normalize import (
    Normalizer,
    deepseek_usage,
    get_field,
    get_label,
    openai_chat_usage,
    openai_responses_usage,
)

logger = logging.getLogger(__name__)

SOURCE = "sdk.openai"

_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_EMBEDDINGS = "openai.resources.embeddings"

#: Every OpenAI SDK method the hooks wrap.
OPENAI_METHODS: tuple[Method, ...] = (
    Method(_CHAT, "Completions", "create", "chat", is_async=False),
    Method(_CHAT, "AsyncCompletions", "create", "chat", is_async=True),
    Method(_CHAT, "Completions", "parse", "chat", is_async=False),
    Method(_CHAT, "AsyncCompletions", "parse", "chat", is_async=True),
    Method(_RESPONSES, "Responses", "create", "responses", is_async=False),
    Method(_RESPONSES, "AsyncResponses", "create", "responses", is_async=True),
    Method(_RESPONSES, "Responses", "parse", "responses", is_async=False),
    Method(_RESPONSES, "AsyncResponses", "parse", "responses", is_async=True),
    Method(_EMBEDDINGS, "Embeddings", "create", "embeddings", is_async=False),
    Method(_EMBEDDINGS, "AsyncEmbeddings", "create", "embeddings", is_async=True),
)

_AZURE_HOST_SUFFIXES = (".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")
#: OpenAI-compatible APIs reached through the OpenAI SDK (OTel `gen_ai.provider.name`).
_HOST_PROVIDERS = {
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.groq.com": "groq",
    "api.perplexity.ai": "perplexity",
}
_SYSTEM_ROLES = ("system", "developer")

_sdk = SdkPatches("openai", OPENAI_METHODS)
_switch = _sdk.switch


#: client → provider: a client's type and base URL are read at its first call only (reading
#: `base_url` costs more than the rest of the hook); a client's base URL rarely changes.
_PROVIDERS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _provider_of_client(client: object) -> str:
    if "Azure" in type(client).__name__:
        return "azure.ai.openai"
    host = host_of(getattr(client, "base_url", None))
    if host.endswith(_AZURE_HOST_SUFFIXES):
        return "azure.ai.openai"
    return _HOST_PROVIDERS.get(host, "openai")


def provider_of(resource: object) -> str:
    """The provider behind a resource's client, told by the client's type and base URL."""
    client = getattr(resource, "_client", None)
    if client is None:
        return "openai"
    try:
        provider = _PROVIDERS.get(client)
    except TypeError:  # not weak-referenceable
        return _provider_of_client(client)
    if provider is None:
        provider = _PROVIDERS[client] = _provider_of_client(client)
    return provider


def _leading_system(items: Iterable[Any]) -> list[Any]:
    leading = []
    for item in items:
        role = item.get("role") if type(item) is dict else getattr(item, "role", None)
        if role not in _SYSTEM_ROLES:
            break
        leading.append(item)
    return leading


def _prefix_parts(items: object, instructions: object, tools: object) -> list[Any] | None:
    """System/developer messages (or `instructions`) and tools; else the whole conversation.

    Only references are taken here; they are serialized and hashed on the recorder thread.
    """
    sequence = items if is_sequence(items) else ()
    parts: list[Any] = []
    if isinstance(instructions, str) and instructions:
        parts.append(instructions)
    parts.extend(_leading_system(sequence))
    if is_sequence(tools):
        parts.extend(tools)
    if parts:
        return parts
    if isinstance(items, str):
        return [items]
    return list(sequence) or None


def _cache_key_given(kwargs: Mapping[str, Any]) -> bool | None:
    key = kwargs.get("prompt_cache_key")
    return True if isinstance(key, str) and key else None  # OpenAI caches by itself: unknown


# --- extractors (run on the recorder thread; responses are SDK objects or raw JSON dicts) -------


def extract_chat(record: CallRecord, response: Any) -> None:
    """A `ChatCompletion`: usage, model, tier, finish reason, visible text length."""
    record.usage = get_field(response, "usage")
    record.response_model = get_label(response, "model")
    record.service_tier = get_label(response, "service_tier")
    choices = get_field(response, "choices")
    chars = 0
    if isinstance(choices, list):
        for choice in choices:
            content = get_field(choice, "message", "content")
            if isinstance(content, str):
                chars += len(content)
            if record.finish_reason is None:
                record.finish_reason = get_label(choice, "finish_reason")
    record.output_chars = chars


def extract_responses(record: CallRecord, response: Any) -> None:
    """A Responses API `Response`: usage, model, tier, status, visible text length."""
    record.usage = get_field(response, "usage")
    record.response_model = get_label(response, "model")
    record.service_tier = get_label(response, "service_tier")
    status = get_label(response, "status")
    record.finish_reason = get_label(response, "incomplete_details", "reason") or status
    if status == "failed":
        record.status = "error"
        record.error_type = get_label(response, "error", "code") or "response.failed"
    chars = 0
    output = get_field(response, "output")
    if isinstance(output, list):
        for item in output:
            if get_field(item, "type") != "message":
                continue
            content = get_field(item, "content")
            for part in content if isinstance(content, list) else ():
                text = get_field(part, "text")
                if get_field(part, "type") == "output_text" and isinstance(text, str):
                    chars += len(text)
    record.output_chars = chars


def extract_embeddings(record: CallRecord, response: Any) -> None:
    """A `CreateEmbeddingResponse`: usage and model."""
    record.usage = get_field(response, "usage")
    record.response_model = get_label(response, "model")


# --- stream taps (run inside the caller's iteration: a few attribute reads per item) ------------


class ChatTap(StreamTap):
    """`ChatCompletionChunk`s: text length, finish reason, and the usage of the final chunk."""

    def __init__(self, record: CallRecord) -> None:
        super().__init__(record)
        self.usage: Any = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.finish_reason: str | None = None
        self.chars = 0

    def observe(self, item: Any) -> bool:
        if self.model is None:
            self.model = getattr(item, "model", None)
        tier = getattr(item, "service_tier", None)
        if tier is not None:
            self.service_tier = tier
        choices = getattr(item, "choices", None)
        if choices:
            for choice in choices:
                delta = getattr(choice, "delta", None)
                content = getattr(delta, "content", None)
                if content:
                    self.chars += len(content)
                    self.record.mark_first_token()
                elif getattr(delta, "tool_calls", None) or getattr(delta, "refusal", None):
                    self.record.mark_first_token()
                reason = getattr(choice, "finish_reason", None)
                if reason is not None:
                    self.finish_reason = reason
        usage = getattr(item, "usage", None)
        if usage is None:
            return False
        self.usage = usage
        return self.record.hide_usage_chunk and not choices

    def completed(self) -> bool:
        return self.usage is not None

    def settle(self) -> None:
        record = self.record
        record.usage = self.usage
        record.response_model = self.model
        record.service_tier = self.service_tier
        record.finish_reason = self.finish_reason
        record.output_chars = self.chars


class ResponsesTap(StreamTap):
    """Responses API stream events: the terminal event carries the whole response and its usage."""

    _TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

    def __init__(self, record: CallRecord) -> None:
        super().__init__(record)
        self.final: Any = None
        self.model: str | None = None

    def observe(self, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if not isinstance(kind, str):
            return False
        if kind.endswith(".delta"):
            self.record.mark_first_token()
        elif kind in self._TERMINAL:
            self.final = getattr(item, "response", None)
        elif self.model is None and kind == "response.created":
            self.model = get_label(item, "response", "model")
        return False

    def completed(self) -> bool:
        return self.final is not None

    def settle(self) -> None:
        if self.final is not None:
            self.record.response = self.final
            self.record.extract = extract_responses
        else:
            self.record.response_model = self.model


class EmbeddingsTap(StreamTap):
    """Embeddings never stream; present so every adapter has a tap."""


# --- adapters ------------------------------------------------------------------------------------


def _record(
    resource: object, kwargs: Mapping[str, Any], operation: str, normalizer: Normalizer
) -> CallRecord:
    return new_record(
        source=SOURCE,
        provider=provider_of(resource),
        operation=operation,
        request_model=kwargs.get("model"),
        normalizer=normalizer,
        stream=kwargs.get("stream") is True,
    )


class ChatAdapter:
    """`chat.completions.create` / `parse`."""

    def start(self, resource: Any, kwargs: dict[str, Any]) -> tuple[CallRecord, dict[str, Any]]:
        record = _record(resource, kwargs, "chat", openai_chat_usage)
        if record.provider == "deepseek":
            record.normalizer = deepseek_usage
        record.prefix_parts = _prefix_parts(kwargs.get("messages"), None, kwargs.get("tools"))
        record.caching_requested = _cache_key_given(kwargs)
        record.reasoning_effort = kwargs.get("reasoning_effort")
        if record.stream and CONFIG.include_stream_usage and not is_raw_request(kwargs):
            options = kwargs.get("stream_options")
            if not isinstance(options, Mapping):
                kwargs["stream_options"] = {"include_usage": True}
                record.hide_usage_chunk = True
            elif "include_usage" not in options:
                kwargs["stream_options"] = {**options, "include_usage": True}  # a copy: the caller's stays
                record.hide_usage_chunk = True
        return record, kwargs

    def finish(self, record: CallRecord, result: Any, kwargs: Mapping[str, Any]) -> Any:
        return finish_result(record, result, extract=extract_chat, make_tap=ChatTap)


class ResponsesAdapter:
    """`responses.create` / `parse`."""

    def start(self, resource: Any, kwargs: dict[str, Any]) -> tuple[CallRecord, dict[str, Any]]:
        record = _record(resource, kwargs, "chat", openai_responses_usage)
        record.prefix_parts = _prefix_parts(
            kwargs.get("input"), kwargs.get("instructions"), kwargs.get("tools")
        )
        record.caching_requested = _cache_key_given(kwargs)
        record.reasoning_effort = get_field(kwargs.get("reasoning"), "effort")
        return record, kwargs

    def finish(self, record: CallRecord, result: Any, kwargs: Mapping[str, Any]) -> Any:
        return finish_result(record, result, extract=extract_responses, make_tap=ResponsesTap)


class EmbeddingsAdapter:
    """`embeddings.create`."""

    def start(self, resource: Any, kwargs: dict[str, Any]) -> tuple[CallRecord, dict[str, Any]]:
        return _record(resource, kwargs, "embeddings", openai_chat_usage), kwargs

    def finish(self, record: CallRecord, result: Any, kwargs: Mapping[str, Any]) -> Any:
        return finish_result(record, result, extract=extract_embeddings, make_tap=EmbeddingsTap)


_ADAPTERS: dict[str, Adapter] = {
    "chat": ChatAdapter(),
    "responses": ResponsesAdapter(),
    "embeddings": EmbeddingsAdapter(),
}


def _make_wrapper(method: Method, original: Any) -> Any:
    adapter = _ADAPTERS[method.api]
    wrap = async_wrapper if method.is_async else sync_wrapper
    return wrap(original, adapter, _switch)


def instrument_openai() -> list[str]:
    """Wrap the OpenAI SDK (idempotent); the names of the wrapped methods."""
    return _sdk.instrument(_make_wrapper)


def uninstrument_openai() -> None:
    """Restore the original SDK methods (idempotent)."""
    _sdk.uninstrument()
