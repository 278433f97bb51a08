"""Machinery shared by the SDK hooks: patch tables, call records, stream proxies and the recorder.

Inside the host's call a hook does as little as it can: it notes the request's shape, times the
call and keeps a reference to what came back in a `CallRecord`. Everything that costs
(normalizing usage, hashing the prompt prefix, building and validating the `UsageEvent`) runs on
one background recorder thread, which hands each event to `costline.ingest.emit.emit`.

The host's call is sacred: its result and its exceptions pass through unchanged, and any failure
of the hook's own code is caught, logged at debug level and counted (`hook_failures`).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard

from costline.ingest.attribution import current_attribution
from costline.ingest.emit import emit, is_enabled
from costline.ingest.normalize import Normalizer, raw_dict
from costline.schemas.usage_event import (
    RequestCounters,
    Signals,
    TokenBuckets,
    UsageEvent,
    hash_prompt_prefix,
)

logger = logging.getLogger("costline.ingest.hooks")

#: Header the SDKs add to ask for the raw HTTP response (`with_raw_response` and friends).
RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
#: Records waiting for the recorder beyond this are dropped (and counted): memory stays bounded.
MAX_PENDING = 100_000
#: How often the idle recorder thread looks for new records.
RECORDER_POLL_SECONDS = 0.1
#: How long the interpreter-exit drain may take.
EXIT_DRAIN_SECONDS = 2.0
#: How often the recorder moves its exit hook behind the sink's (see `_Recorder._handle`).
EXIT_HOOK_REFRESH_SECONDS = 1.0
#: Marks a function as a costline wrapper; holds the original.
WRAPPED_ATTR = "__costline_original__"

#: Exceptions that end a stream without being an error.
_ENDINGS = (StopIteration, StopAsyncIteration, GeneratorExit)
_EFFORTS = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})
_EFFORT_ALIASES = {"max": "xhigh", "maximum": "xhigh"}


# --- configuration, switches and counters -------------------------------------------------------


@dataclass
class HookConfig:
    """What `instrument()` was asked for; read by the hooks on every call."""

    include_stream_usage: bool = True
    prompt_prefix_chars: int = 2_000


CONFIG = HookConfig()


class Switch:
    """Whether one SDK's wrappers record (off: they call straight through)."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = False


class _Counters:
    failures = 0
    dropped = 0
    lock = threading.Lock()


_counters = _Counters()


def hook_failed(where: str) -> None:
    """Count and log (debug) a failure of the hook's own code; never raises."""
    with _counters.lock:
        _counters.failures += 1
    # Called from `except` blocks: the exception being handled is logged with the message.
    logger.debug("costline hook failed while %s; the host call is unaffected", where, exc_info=sys.exc_info())


def hook_failures() -> int:
    """Failures of the hook's own code since the process started (each logged at debug level)."""
    return _counters.failures


def dropped_records() -> int:
    """Calls not recorded because the recorder's queue was full."""
    return _counters.dropped


# --- the table of wrapped methods ----------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One SDK method that is wrapped: `module.owner.name`, handled by the adapter `api`."""

    module: str
    owner: str
    name: str
    api: str
    is_async: bool

    @property
    def qualname(self) -> str:
        """`module.Owner.name`, for logs and docs."""
        return f"{self.module}.{self.owner}.{self.name}"


@dataclass
class Patch:
    """One applied wrapper and what to put back."""

    owner: type
    name: str
    original: Any
    had_own: bool
    wrapper: Any


def sdk_installed(name: str) -> bool:
    """Whether an SDK can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[name] is None
        return False


def apply_patches(methods: Iterable[Method], make_wrapper: Callable[[Method, Any], Any]) -> list[Patch]:
    """Wrap every method of the table that this SDK version has; missing ones are logged and skipped."""
    patches: list[Patch] = []
    for method in methods:
        try:
            owner = getattr(importlib.import_module(method.module), method.owner)
            had_own = method.name in owner.__dict__
            original = owner.__dict__[method.name] if had_own else getattr(owner, method.name)
        except (ImportError, AttributeError, KeyError):
            logger.info("costline: %s not found in this SDK version; not instrumented", method.qualname)
            continue
        if getattr(original, WRAPPED_ATTR, None) is not None:
            continue  # already ours (instrumented twice)
        wrapper = make_wrapper(method, original)
        setattr(wrapper, WRAPPED_ATTR, original)
        setattr(owner, method.name, wrapper)
        patches.append(Patch(owner, method.name, original, had_own, wrapper))
    return patches


def remove_patches(patches: list[Patch]) -> None:
    """Put the original attributes back, unless someone wrapped ours since (then ours stays, inert)."""
    for patch in reversed(patches):
        current = patch.owner.__dict__.get(patch.name)
        if current is not patch.wrapper:
            logger.debug("costline: %s.%s was re-wrapped since; left in place", patch.owner, patch.name)
            continue
        if patch.had_own:
            setattr(patch.owner, patch.name, patch.original)
        else:
            delattr(patch.owner, patch.name)
    patches.clear()


class SdkPatches:
    """One SDK's instrumentation: the switch its wrappers check and the patches that undo it."""

    def __init__(self, sdk: str, methods: Sequence[Method]) -> None:
        self.sdk = sdk
        self.methods = methods
        self.switch = Switch()
        self.patches: list[Patch] = []

    def instrument(self, make_wrapper: Callable[[Method, Any], Any]) -> list[str]:
        """Wrap the SDK's methods (idempotent); the names of the wrapped methods."""
        if not sdk_installed(self.sdk):
            logger.debug("costline: %s is not installed; not instrumented", self.sdk)
            return []
        self.switch.on = True
        self.patches.extend(apply_patches(self.methods, make_wrapper))
        return [f"{patch.owner.__name__}.{patch.name}" for patch in self.patches]

    def uninstrument(self) -> None:
        """Restore the SDK's original methods (idempotent)."""
        self.switch.on = False
        remove_patches(self.patches)


# --- one call ------------------------------------------------------------------------------------

#: Reads the final response (an SDK object or the JSON dict of a raw response) into the record.
Extractor = Callable[["CallRecord", Any], None]


@dataclass(slots=True)
class CallRecord:
    """What a hook learned about one call; turned into a `UsageEvent` by the recorder."""

    source: str
    provider: str
    operation: str
    request_model: str | None
    normalizer: Normalizer
    #: Wall clock (epoch seconds) and monotonic clock at the start of the call.
    started_at: float
    started: float
    #: The caller's context, so attribution scopes are read as they were at the call.
    context: contextvars.Context
    stream: bool = False
    #: The hook added `stream_options.include_usage`: hide the extra usage-only chunk.
    hide_usage_chunk: bool = False
    #: What the prompt-prefix hash covers (references, serialized on the recorder thread).
    prefix_parts: list[Any] | None = None
    caching_requested: bool | None = None
    reasoning_effort: str | None = None
    status: str = "ok"
    error_type: str | None = None
    latency_ms: int | None = None
    ttft_ms: int | None = None
    finish_reason: str | None = None
    response_model: str | None = None
    service_tier: str | None = None
    region: str | None = None
    output_chars: int | None = None
    #: The provider's usage object (or dict), normalized by `normalizer` on the recorder thread.
    usage: Any = None
    #: Cumulative usage updates applied over `usage`, in order (Anthropic `message_delta.usage`).
    usage_updates: list[Any] | None = None
    #: A final response still to be read by `extract` on the recorder thread.
    response: Any = None
    #: The body of a raw response, already read by the SDK, to be parsed on the recorder thread.
    body: bytes | None = None
    extract: Extractor | None = None

    def elapsed_ms(self) -> int:
        """Milliseconds since the call started."""
        return max(0, int((time.perf_counter() - self.started) * 1000))

    def mark_first_token(self) -> None:
        """Note the time to the first token (first call wins)."""
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()


def new_record(
    *,
    source: str,
    provider: str,
    operation: str,
    request_model: object,
    normalizer: Normalizer,
    stream: bool = False,
) -> CallRecord:
    """A record stamped with the call's start (wall clock for the event, monotonic for latency)."""
    return CallRecord(
        source=source,
        provider=provider,
        operation=operation,
        request_model=request_model if isinstance(request_model, str) and request_model else None,
        normalizer=normalizer,
        started_at=time.time(),
        started=time.perf_counter(),
        context=contextvars.copy_context(),
        stream=stream,
    )


def record_error(record: CallRecord, exc: BaseException) -> None:
    """Record a call the SDK failed (the caller re-raises the same exception object)."""
    try:
        record.status = "error"
        record.error_type = type(exc).__name__
        record.latency_ms = record.elapsed_ms()
        submit(record)
    except Exception:
        hook_failed("recording an error")


def record_response(record: CallRecord, response: Any, extract: Extractor) -> None:
    """Record a call that returned a complete response (read on the recorder thread)."""
    record.latency_ms = record.elapsed_ms()
    record.response = response
    record.extract = extract
    submit(record)


# --- request helpers (run inside the host call: cheap, and never consume an iterator) ------------


def is_sequence(value: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """Lists and tuples only: a generator passed to the SDK must not be read by the hook."""
    return isinstance(value, list | tuple)


def effort_level(value: object) -> str | None:
    """A reasoning-effort level the schema knows (`max` → `xhigh`), else None."""
    if not isinstance(value, str):
        return None
    level = value.strip().lower()
    level = _EFFORT_ALIASES.get(level, level)
    return level if level in _EFFORTS else None


def is_raw_request(kwargs: Mapping[str, Any]) -> bool:
    """Whether the call goes through `with_raw_response`/`with_streaming_response`."""
    headers = kwargs.get("extra_headers")
    return isinstance(headers, Mapping) and RAW_RESPONSE_HEADER in headers


def host_of(base_url: object) -> str:
    """Lower-case host of a client's base URL (an httpx URL or a string)."""
    host = getattr(base_url, "host", None)
    if isinstance(host, str):
        return host.lower()
    if isinstance(base_url, str):
        rest = base_url.split("://", 1)[-1]
        return rest.split("/", 1)[0].split(":", 1)[0].lower()
    return ""


# --- wrappers ------------------------------------------------------------------------------------


class Adapter(Protocol):
    """How one API is hooked: what to note before the call and what to do with its result."""

    def start(self, resource: Any, kwargs: dict[str, Any]) -> tuple[CallRecord, dict[str, Any]]: ...

    def finish(self, record: CallRecord, result: Any, kwargs: Mapping[str, Any]) -> Any: ...


def sync_wrapper(original: Callable[..., Any], adapter: Adapter, switch: Switch) -> Callable[..., Any]:
    """Wrap a sync SDK method: record around the call, pass result and exceptions through."""

    @functools.wraps(original)
    def costline_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not switch.on or not is_enabled():
            return original(self, *args, **kwargs)
        try:
            record, call_kwargs = adapter.start(self, kwargs)
        except Exception:
            hook_failed("preparing a call")
            return original(self, *args, **kwargs)
        try:
            result = original(self, *args, **call_kwargs)
        except BaseException as exc:
            record_error(record, exc)
            raise
        try:
            return adapter.finish(record, result, call_kwargs)
        except Exception:
            hook_failed("reading a result")
            return result

    return costline_wrapper


def async_wrapper(original: Callable[..., Any], adapter: Adapter, switch: Switch) -> Callable[..., Any]:
    """Wrap an async SDK method (the wrapper is a coroutine function too)."""

    @functools.wraps(original)
    async def costline_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not switch.on or not is_enabled():
            return await original(self, *args, **kwargs)
        try:
            record, call_kwargs = adapter.start(self, kwargs)
        except Exception:
            hook_failed("preparing a call")
            return await original(self, *args, **kwargs)
        try:
            result = await original(self, *args, **call_kwargs)
        except BaseException as exc:
            record_error(record, exc)
            raise
        try:
            return adapter.finish(record, result, call_kwargs)
        except Exception:
            hook_failed("reading a result")
            return result

    return costline_wrapper


# --- results: recognized by shape ---------------------------------------------------------------


#: Result classes already told apart: "sync" and "async" streams, or "other".
_KINDS: dict[type, str] = {}


def _kind_of(cls: type) -> str:
    kind = _KINDS.get(cls)
    if kind is None:
        kind = "other"
        for klass in cls.__mro__:  # class dicts only: no attribute lookup, no __getattr__ hooks
            if "__next__" in vars(klass):
                kind = "sync"
                break
            if "__anext__" in vars(klass):
                kind = "async"
                break
        if len(_KINDS) < 1_024:
            _KINDS[cls] = kind
    return kind


def is_sync_stream(result: object) -> bool:
    """A sync SDK stream: an iterator (pydantic models iterate too, but have no `__next__`)."""
    return _kind_of(type(result)) == "sync"


def is_async_stream(result: object) -> bool:
    """An async SDK stream."""
    return _kind_of(type(result)) == "async"


def is_raw_response(result: object) -> bool:
    """A raw HTTP response wrapper (`with_raw_response`, `with_streaming_response`)."""
    return "http_response" in getattr(result, "__dict__", ()) and callable(getattr(result, "parse", None))


def finish_result(
    record: CallRecord,
    result: Any,
    *,
    extract: Extractor,
    make_tap: Callable[[CallRecord], StreamTap],
) -> Any:
    """The result the caller gets: streams proxied, raw responses handled, models recorded."""
    kind = _kind_of(type(result))
    if kind == "sync":
        return SyncStreamProxy(result, make_tap(record))
    if kind == "async":
        return AsyncStreamProxy(result, make_tap(record))
    if is_raw_response(result):
        return finish_raw(record, result, extract=extract, make_tap=make_tap)
    record_response(record, result, extract)
    return result


def finish_raw(
    record: CallRecord,
    raw: Any,
    *,
    extract: Extractor,
    make_tap: Callable[[CallRecord], StreamTap],
) -> Any:
    """Raw responses: a body the SDK already read is parsed on the recorder thread (nothing the
    caller needs is touched); an unread body (a stream, `with_streaming_response`) is recorded
    when, and only if, the caller calls `parse()`."""
    http = getattr(raw, "http_response", None)
    if not record.stream and getattr(http, "is_stream_consumed", False):
        content = getattr(http, "content", None)
        if isinstance(content, bytes):
            record.latency_ms = record.elapsed_ms()
            record.body = content
            record.extract = extract
            submit(record)
            return raw
    _record_on_parse(record, raw, extract=extract, make_tap=make_tap)
    return raw


def _record_on_parse(
    record: CallRecord,
    raw: Any,
    *,
    extract: Extractor,
    make_tap: Callable[[CallRecord], StreamTap],
) -> None:
    original_parse = raw.parse
    state: dict[str, Any] = {}

    def after_parse(parsed: Any) -> Any:
        try:
            if "result" in state and state["parsed"] is parsed:
                return state["result"]
            if "parsed" in state:
                return parsed  # parsed again into another type: recorded already
            state["parsed"] = parsed
            if is_sync_stream(parsed):
                state["result"] = SyncStreamProxy(parsed, make_tap(record))
            elif is_async_stream(parsed):
                state["result"] = AsyncStreamProxy(parsed, make_tap(record))
            else:
                record_response(record, parsed, extract)
                state["result"] = parsed
            return state["result"]
        except Exception:
            hook_failed("recording a parsed raw response")
            return parsed

    if inspect.iscoroutinefunction(original_parse):

        @functools.wraps(original_parse)
        async def parse_async(*args: Any, **kwargs: Any) -> Any:
            return after_parse(await original_parse(*args, **kwargs))

        raw.parse = parse_async
    else:

        @functools.wraps(original_parse)
        def parse(*args: Any, **kwargs: Any) -> Any:
            return after_parse(original_parse(*args, **kwargs))

        raw.parse = parse


# --- streams -------------------------------------------------------------------------------------


class StreamTap:
    """Watches the items of one stream and records the call exactly once when it ends."""

    def __init__(self, record: CallRecord) -> None:
        self.record = record
        self.done = False

    def observe(self, item: Any) -> bool:
        """Look at one item; True hides it from the caller (a usage chunk the hook asked for)."""
        return False

    def completed(self) -> bool:
        """Whether the final usage was seen."""
        return False

    def settle(self) -> None:
        """Copy what the stream taught into the record (just before it is submitted)."""

    def observe_safely(self, item: Any) -> bool:
        """`observe`, with the hook's own failures contained."""
        if self.done:
            return False
        try:
            return self.observe(item)
        except Exception:
            hook_failed("reading a stream item")
            return False

    def close(self, exc: BaseException | None = None) -> None:
        """Record the call (once): ok with the final usage, else partial with what is known."""
        if self.done:
            return
        self.done = True
        try:
            self.settle()
            record = self.record
            record.latency_ms = record.elapsed_ms()
            if not self.completed():
                record.status = "partial"
                if exc is not None and not isinstance(exc, _ENDINGS):
                    record.error_type = type(exc).__name__
            submit(record)
        except Exception:
            hook_failed("recording a stream")


class Proxy:
    """Forwards everything it does not define to the wrapped object."""

    _costline_wrapped: Any
    _costline_tap: StreamTap | None

    def __init__(self, wrapped: Any, tap: StreamTap | None) -> None:
        object.__setattr__(self, "_costline_wrapped", wrapped)
        object.__setattr__(self, "_costline_tap", tap)

    # isinstance(proxy, openai.Stream) keeps working for code that checks the type.
    @property  # type: ignore[misc]  # deliberately shadows __class__, as wrapt's ObjectProxy does
    def __class__(self) -> type:
        return type(self._costline_wrapped)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_costline_"):
            raise AttributeError(name)
        return getattr(self._costline_wrapped, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._costline_wrapped, name, value)

    def __repr__(self) -> str:
        return repr(self._costline_wrapped)

    def __del__(self) -> None:
        # Abandoned without being exhausted or closed: record what is known.
        try:
            tap = self._costline_tap
            if tap is not None:
                tap.close(None)
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class SyncStreamProxy(Proxy):
    """An SDK stream as the caller knows it (iterator, context manager), recorded once at its end."""

    _costline_tap: StreamTap

    def __init__(self, wrapped: Any, tap: StreamTap) -> None:
        super().__init__(wrapped, tap)

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        tap = self._costline_tap
        while True:
            try:
                item = self._costline_wrapped.__next__()
            except StopIteration:
                tap.close(None)
                raise
            except BaseException as exc:
                tap.close(exc)
                raise
            if not tap.observe_safely(item):
                return item

    def __enter__(self) -> SyncStreamProxy:
        self._costline_wrapped.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return self._costline_wrapped.__exit__(exc_type, exc, tb)
        finally:
            self._costline_tap.close(exc)

    def close(self) -> Any:
        try:
            return self._costline_wrapped.close()
        finally:
            self._costline_tap.close(None)


class AsyncStreamProxy(Proxy):
    """The async counterpart of `SyncStreamProxy`."""

    _costline_tap: StreamTap

    def __init__(self, wrapped: Any, tap: StreamTap) -> None:
        super().__init__(wrapped, tap)

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        tap = self._costline_tap
        while True:
            try:
                item = await self._costline_wrapped.__anext__()
            except StopAsyncIteration:
                tap.close(None)
                raise
            except BaseException as exc:
                tap.close(exc)
                raise
            if not tap.observe_safely(item):
                return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self._costline_wrapped.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        try:
            return await self._costline_wrapped.__aexit__(exc_type, exc, tb)
        finally:
            self._costline_tap.close(exc)

    async def close(self) -> Any:
        try:
            return await self._costline_wrapped.close()
        finally:
            self._costline_tap.close(None)


# --- the recorder: builds events off the request path -------------------------------------------


def _json_default(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    return str(value)


def _dumps(value: object) -> str | None:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(
            value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=_json_default
        )
    except (TypeError, ValueError):
        return None


def prefix_text(parts: Iterable[object], limit: int) -> str | None:
    """The first `limit` characters of the serialized parts (serialized one by one, stopping early)."""
    if limit <= 0:
        return None
    pieces: list[str] = []
    size = 0
    for part in parts:
        if part is None:
            continue
        text = _dumps(part)
        if not text:
            continue
        pieces.append(text)
        size += len(text) + 1
        if size >= limit:
            break
    return "\n".join(pieces)[:limit] if pieces else None


def _clip(value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] or None


def _plain(usage: Any) -> Any:
    """An SDK usage model as the dict the API sent (the normalizers read dicts fastest)."""
    dump = getattr(usage, "model_dump", None)
    if callable(dump) and not isinstance(usage, Mapping):
        try:
            return dump(exclude_unset=True)
        except Exception:
            return usage
    return usage


def _merged_usage(record: CallRecord) -> Any:
    if not record.usage_updates:
        return _plain(record.usage) if record.usage is not None else None
    merged = raw_dict(record.usage) if record.usage is not None else {}
    for update in record.usage_updates:
        for key, value in raw_dict(update).items():
            if value is not None:  # cumulative values: the last one wins, omitted ones survive
                merged[key] = value
    return merged


def build_event(record: CallRecord) -> UsageEvent:
    """The `UsageEvent` of one record (runs on the recorder thread)."""
    if record.body is not None and record.extract is not None:
        record.extract(record, json.loads(record.body))
    elif record.response is not None and record.extract is not None:
        record.extract(record, record.response)
    usage = _merged_usage(record)
    prefix = prefix_text(record.prefix_parts, CONFIG.prompt_prefix_chars) if record.prefix_parts else None
    tokens, requests = TokenBuckets(), RequestCounters()
    tier, region, raw = _clip(record.service_tier, 32), _clip(record.region, 64), None
    if usage is not None:
        normalized = record.normalizer(usage, service_tier=tier, region=region)
        tokens, requests, raw = normalized.tokens, normalized.requests, normalized.raw or None
        tier, region = _clip(normalized.service_tier, 32), _clip(normalized.region, 64)
    signals = Signals(
        prompt_prefix_hash=hash_prompt_prefix(prefix) if prefix else None,
        caching_requested=record.caching_requested,
        reasoning_effort=effort_level(record.reasoning_effort),
        output_chars=record.output_chars,
        latency_ms=record.latency_ms,
        time_to_first_token_ms=record.ttft_ms,
        status=record.status,
        error_type=_clip(record.error_type, 256),
        finish_reason=_clip(record.finish_reason, 64),
        service_tier=tier,
        region=region,
        stream=record.stream,
    )
    fields: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "occurred_at": datetime.fromtimestamp(record.started_at, UTC),
        "source": record.source,
        "provider": record.provider,
        "operation": record.operation,
        "request_model": _clip(record.request_model, 256),
        "response_model": _clip(record.response_model, 256),
        "tokens": tokens,
        "requests": requests,
        "attribution": record.context.run(current_attribution),
        "signals": signals,
        "raw_usage": raw,
    }
    try:
        return UsageEvent(**fields)
    except ValueError:
        if raw is None:
            raise
        fields["raw_usage"] = None  # an oversized or odd audit copy must not cost the event
        return UsageEvent(**fields)


def _register_exit_drain(drain: Callable[[], None]) -> None:
    """Drain at exit twice: first when threading shuts down, before any atexit hook, so a sink
    built by that drain still gets its own exit hook run (concurrent.futures uses the same
    hook); then as an atexit hook for calls that threads still running made meanwhile."""
    register_early = getattr(threading, "_register_atexit", None)
    if callable(register_early):
        with contextlib.suppress(RuntimeError):  # the interpreter is already shutting down
            register_early(drain)
    atexit.register(drain)


class _Recorder:
    """One daemon thread per process that turns records into events and emits them.

    `submit` appends to a deque and wakes nobody: waking a sleeping thread is a system call, and
    inside the host's call that costs more than everything else the hook does. The recorder
    looks at the deque every `RECORDER_POLL_SECONDS` instead (sooner when `flush` asks).
    """

    def __init__(self) -> None:
        self.pending: deque[Any] = deque()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.exit_hook_due = 0.0

    def submit(self, record: CallRecord) -> None:
        if len(self.pending) >= MAX_PENDING:
            with _counters.lock:
                _counters.dropped += 1
            logger.debug("costline recorder queue full; a %s call was not recorded", record.source)
            return
        self.pending.append(record)
        if self.thread is None:
            self._start()

    def _start(self) -> None:
        with self.lock:
            if self.thread is not None:
                return
            thread = threading.Thread(target=self._run, name="costline-hooks-recorder", daemon=True)
            thread.start()
            self.thread = thread
            _register_exit_drain(self.drain)

    def _run(self) -> None:
        while True:  # the first record is taken at once, so the sink is built early, not at exit
            self._drain_pending(deadline=None)
            self.wake.wait(RECORDER_POLL_SECONDS)
            self.wake.clear()

    def _drain_pending(self, deadline: float | None) -> None:
        while self.pending and (deadline is None or time.monotonic() < deadline):
            try:
                item = self.pending.popleft()
            except IndexError:  # taken by the exit drain meanwhile
                return
            try:
                self._handle(item)
            except Exception:  # the recorder must outlive any bad record
                hook_failed("recording")

    def _handle(self, item: Any) -> None:
        if isinstance(item, threading.Event):
            item.set()
            return
        try:
            event = build_event(item)
        except Exception:
            hook_failed("building an event")
            return
        emit(event)
        now = time.monotonic()
        if now >= self.exit_hook_due:
            # The sink (e.g. the producer) registers its exit flush when first used, and may do
            # so again later (on reconnect): keep ours registered after it, so that ours runs
            # first (atexit is LIFO) and hands over what is still queued before the sink closes.
            self.exit_hook_due = now + EXIT_HOOK_REFRESH_SECONDS
            atexit.unregister(self.drain)
            atexit.register(self.drain)

    def flush(self, timeout: float) -> bool:
        if self.thread is None:
            return not self.pending
        done = threading.Event()
        self.pending.append(done)
        self.wake.set()
        return done.wait(timeout)

    def drain(self) -> None:
        """Record what is still queued, within `EXIT_DRAIN_SECONDS` (at interpreter exit).

        The recorder thread still runs at exit (daemon threads stop after the atexit hooks), so
        it is asked to finish, including the record it may be handling right now; only if it
        does not answer in time is the rest handled here.
        """
        deadline = time.monotonic() + EXIT_DRAIN_SECONDS
        thread = self.thread
        if thread is not None and thread.is_alive() and self.flush(EXIT_DRAIN_SECONDS):
            return
        self._drain_pending(deadline=deadline)

    def reset_after_fork(self) -> None:
        self.pending = deque()
        self.wake = threading.Event()
        self.thread = None
        self.lock = threading.Lock()


_recorder = _Recorder()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_recorder.reset_after_fork)


def submit(record: CallRecord) -> None:
    """Queue a finished record for the recorder thread (cheap, never blocks)."""
    _recorder.submit(record)


def flush(timeout: float = 5.0) -> bool:
    """Wait until every call recorded so far has been handed to the sink; False on timeout."""
    return _recorder.flush(timeout)
