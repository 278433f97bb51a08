"""Hooks for the Anthropic Python SDK: `messages.create`, `messages.parse` and `messages.stream`.

`messages.create(stream=True)` returns a stream of raw events: usage arrives in `message_start`
and, cumulatively, in each `message_delta` (the last value counts, never the sum).
`messages.stream(...)` returns a context manager whose `MessageStream` accumulates the message
itself; the call is recorded when the context exits, from that accumulated message, however the
caller consumed it (iteration, `text_stream`, `get_final_message()`, or not at all).
The SDK itself is imported only by `instrument_anthropic()`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from costline.ingest.emit import is_enabled
from costline.ingest.hooks.common import (
    AsyncStreamProxy,
    CallRecord,
    Method,
    Proxy,
    SdkPatches,
    StreamTap,
    SyncStreamProxy,
    async_wrapper,
    finish_result,
    hook_failed,
    is_sequence,
    new_record,
    record_error,
    sync_wrapper,
)
from costline.ingest.normalize import anthropic_usage, get_field, get_label

logger = logging.getLogger(__name__)

SOURCE = "sdk.anthropic"

_MESSAGES = "anthropic.resources.messages.messages"

#: Every Anthropic SDK method the hooks wrap.
ANTHROPIC_METHODS: tuple[Method, ...] = (
    Method(_MESSAGES, "Messages", "create", "create", is_async=False),
    Method(_MESSAGES, "AsyncMessages", "create", "create", is_async=True),
    Method(_MESSAGES, "Messages", "parse", "create", is_async=False),
    Method(_MESSAGES, "AsyncMessages", "parse", "create", is_async=True),
    # `stream` is a plain method in both classes: it returns a (sync or async) context manager.
    Method(_MESSAGES, "Messages", "stream", "stream", is_async=False),
    Method(_MESSAGES, "AsyncMessages", "stream", "stream_async", is_async=False),
)

#: Extended-thinking budgets (tokens) → the schema's effort levels; larger budgets are `xhigh`.
_BUDGET_LEVELS = ((2_048, "low"), (8_192, "medium"), (32_768, "high"))

_sdk = SdkPatches("anthropic", ANTHROPIC_METHODS)
_switch = _sdk.switch


def provider_of(resource: object) -> str:
    """`anthropic`, or the cloud behind `AnthropicBedrock` / `AnthropicVertex` clients."""
    name = type(getattr(resource, "_client", None)).__name__
    if "Bedrock" in name:
        return "aws.bedrock"
    if "Vertex" in name:
        return "gcp.vertex_ai"
    return "anthropic"


def _has_cache_control(blocks: object) -> bool:
    if not is_sequence(blocks):
        return False
    return any(get_field(block, "cache_control") is not None for block in blocks)


def caching_requested(kwargs: Mapping[str, Any]) -> bool:
    """Whether the request asks for prompt caching anywhere (top level, system, tools, messages)."""
    if isinstance(kwargs.get("cache_control"), Mapping):
        return True
    if _has_cache_control(kwargs.get("system")) or _has_cache_control(kwargs.get("tools")):
        return True
    messages = kwargs.get("messages")
    if is_sequence(messages):
        for message in reversed(messages):  # markers usually sit on the latest turns
            if _has_cache_control(get_field(message, "content")):
                return True
    return False


def reasoning_effort(kwargs: Mapping[str, Any]) -> str | None:
    """`output_config.effort`, else the extended-thinking budget mapped to a level."""
    effort = get_field(kwargs.get("output_config"), "effort")
    if isinstance(effort, str):
        return effort
    thinking = kwargs.get("thinking")
    kind = get_field(thinking, "type")
    if kind == "disabled":
        return "none"
    budget = get_field(thinking, "budget_tokens")
    if kind == "enabled" and isinstance(budget, int):
        return next((level for limit, level in _BUDGET_LEVELS if budget <= limit), "xhigh")
    return None


def _prefix_parts(kwargs: Mapping[str, Any]) -> list[Any] | None:
    """System prompt and tools, else the conversation (references; hashed on the recorder thread)."""
    parts: list[Any] = []
    system, tools = kwargs.get("system"), kwargs.get("tools")
    if isinstance(system, str) and system:
        parts.append(system)
    elif is_sequence(system):
        parts.extend(system)
    if is_sequence(tools):
        parts.extend(tools)
    if not parts:
        messages = kwargs.get("messages")
        parts = list(messages) if is_sequence(messages) else []
    return parts or None


def _new_record(resource: object, kwargs: Mapping[str, Any], *, stream: bool) -> CallRecord:
    record = new_record(
        source=SOURCE,
        provider=provider_of(resource),
        operation="chat",
        request_model=kwargs.get("model"),
        normalizer=anthropic_usage,
        stream=stream,
    )
    record.prefix_parts = _prefix_parts(kwargs)
    record.caching_requested = caching_requested(kwargs)
    record.reasoning_effort = reasoning_effort(kwargs)
    return record


def extract_message(record: CallRecord, message: Any) -> None:
    """A `Message` (or a stream's accumulated one): usage, model, stop reason, text length."""
    record.usage = get_field(message, "usage")
    record.response_model = get_label(message, "model")
    record.finish_reason = get_label(message, "stop_reason")
    chars = 0
    content = get_field(message, "content")
    for block in content if isinstance(content, list) else ():
        text = get_field(block, "text")
        if get_field(block, "type") == "text" and isinstance(text, str):
            chars += len(text)
    record.output_chars = chars


class MessagesTap(StreamTap):
    """Raw stream events: `message_start` usage, then cumulative `message_delta` usage."""

    def __init__(self, record: CallRecord) -> None:
        super().__init__(record)
        self.usage: Any = None
        self.deltas: list[Any] = []
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.chars = 0

    def observe(self, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if kind == "content_block_delta":
            self.record.mark_first_token()
            delta = getattr(item, "delta", None)
            if getattr(delta, "type", None) == "text_delta":
                self.chars += len(getattr(delta, "text", "") or "")
        elif kind == "message_start":
            message = getattr(item, "message", None)
            self.usage = getattr(message, "usage", None)
            self.model = getattr(message, "model", None)
        elif kind == "message_delta":
            usage = getattr(item, "usage", None)
            if usage is not None:
                self.deltas.append(usage)
            self.stop_reason = getattr(getattr(item, "delta", None), "stop_reason", None) or self.stop_reason
        return False

    def completed(self) -> bool:
        return bool(self.deltas)

    def settle(self) -> None:
        record = self.record
        record.usage = self.usage
        record.usage_updates = self.deltas
        record.response_model = self.model
        record.finish_reason = self.stop_reason
        record.output_chars = self.chars


class MessageStreamTap(MessagesTap):
    """A `MessageStream`: recorded from the message the SDK accumulated, however it was consumed."""

    def __init__(self, record: CallRecord, stream: Any) -> None:
        super().__init__(record)
        self.stream = stream
        self.finished = False

    def settle(self) -> None:
        try:
            snapshot = self.stream.current_message_snapshot
        except (AssertionError, AttributeError):  # nothing received yet
            snapshot = None
        if snapshot is None:
            super().settle()
            return
        self.finished = get_field(snapshot, "stop_reason") is not None
        self.record.response = snapshot
        self.record.extract = extract_message

    def completed(self) -> bool:
        return self.finished or super().completed()


def _watch_text(texts: Iterator[str], record: CallRecord) -> Iterator[str]:
    for text in texts:
        record.mark_first_token()
        yield text


async def _watch_text_async(texts: AsyncIterator[str], record: CallRecord) -> AsyncIterator[str]:
    async for text in texts:
        record.mark_first_token()
        yield text


class MessageStreamProxy(SyncStreamProxy):
    """A `MessageStream`; its `text_stream` is watched too (for the time to first token)."""

    _costline_text: Iterator[str]

    def __init__(self, wrapped: Any, tap: MessageStreamTap) -> None:
        super().__init__(wrapped, tap)
        object.__setattr__(self, "_costline_text", _watch_text(wrapped.text_stream, tap.record))

    @property
    def text_stream(self) -> Iterator[str]:
        return self._costline_text


class AsyncMessageStreamProxy(AsyncStreamProxy):
    """An `AsyncMessageStream`, with its `text_stream` watched."""

    _costline_text: AsyncIterator[str]

    def __init__(self, wrapped: Any, tap: MessageStreamTap) -> None:
        super().__init__(wrapped, tap)
        object.__setattr__(self, "_costline_text", _watch_text_async(wrapped.text_stream, tap.record))

    @property
    def text_stream(self) -> AsyncIterator[str]:
        return self._costline_text


def _restart(record: CallRecord) -> None:
    """The request of `messages.stream` starts when its context is entered."""
    record.started_at = time.time()
    record.started = time.perf_counter()


class MessageStreamManagerProxy(Proxy):
    """`MessageStreamManager`: the request is made on enter; the call is recorded on exit."""

    def __init__(self, wrapped: Any, record: CallRecord) -> None:
        super().__init__(wrapped, None)
        object.__setattr__(self, "_costline_record", record)
        object.__setattr__(self, "_costline_stream", None)

    def __enter__(self) -> Any:
        record: CallRecord = object.__getattribute__(self, "_costline_record")
        _restart(record)
        try:
            stream = self._costline_wrapped.__enter__()
        except BaseException as exc:
            record_error(record, exc)
            raise
        try:
            proxy = MessageStreamProxy(stream, MessageStreamTap(record, stream))
        except Exception:
            hook_failed("wrapping a message stream")
            return stream
        object.__setattr__(self, "_costline_stream", proxy)
        return proxy

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return self._costline_wrapped.__exit__(exc_type, exc, tb)
        finally:
            proxy = object.__getattribute__(self, "_costline_stream")
            if proxy is not None:
                proxy._costline_tap.close(exc)


class AsyncMessageStreamManagerProxy(Proxy):
    """`AsyncMessageStreamManager`, the async counterpart."""

    def __init__(self, wrapped: Any, record: CallRecord) -> None:
        super().__init__(wrapped, None)
        object.__setattr__(self, "_costline_record", record)
        object.__setattr__(self, "_costline_stream", None)

    async def __aenter__(self) -> Any:
        record: CallRecord = object.__getattribute__(self, "_costline_record")
        _restart(record)
        try:
            stream = await self._costline_wrapped.__aenter__()
        except BaseException as exc:
            record_error(record, exc)
            raise
        try:
            proxy = AsyncMessageStreamProxy(stream, MessageStreamTap(record, stream))
        except Exception:
            hook_failed("wrapping a message stream")
            return stream
        object.__setattr__(self, "_costline_stream", proxy)
        return proxy

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return await self._costline_wrapped.__aexit__(exc_type, exc, tb)
        finally:
            proxy = object.__getattribute__(self, "_costline_stream")
            if proxy is not None:
                proxy._costline_tap.close(exc)


class CreateAdapter:
    """`messages.create` / `parse`, streamed or not."""

    def start(self, resource: Any, kwargs: dict[str, Any]) -> tuple[CallRecord, dict[str, Any]]:
        return _new_record(resource, kwargs, stream=kwargs.get("stream") is True), kwargs

    def finish(self, record: CallRecord, result: Any, kwargs: Mapping[str, Any]) -> Any:
        return finish_result(record, result, extract=extract_message, make_tap=MessagesTap)


def _stream_wrapper(original: Any, manager_proxy: Callable[[Any, CallRecord], Proxy]) -> Any:
    @functools.wraps(original)
    def costline_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        manager = original(self, *args, **kwargs)  # no request yet: it is made on enter
        if not _switch.on or not is_enabled():
            return manager
        try:
            return manager_proxy(manager, _new_record(self, kwargs, stream=True))
        except Exception:
            hook_failed("wrapping messages.stream")
            return manager

    return costline_wrapper


_CREATE = CreateAdapter()


def _make_wrapper(method: Method, original: Any) -> Any:
    if method.api == "stream":
        return _stream_wrapper(original, MessageStreamManagerProxy)
    if method.api == "stream_async":
        return _stream_wrapper(original, AsyncMessageStreamManagerProxy)
    wrap = async_wrapper if method.is_async else sync_wrapper
    return wrap(original, _CREATE, _switch)


def instrument_anthropic() -> list[str]:
    """Wrap the Anthropic SDK (idempotent); the names of the wrapped methods."""
    return _sdk.instrument(_make_wrapper)


def uninstrument_anthropic() -> None:
    """Restore the original SDK methods (idempotent)."""
    _sdk.uninstrument()
