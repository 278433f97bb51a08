"""Where hooks hand their events: one process-wide sink, swappable, behind a kill switch.

Hooks call `emit(event)` and nothing else. The sink is the background Kafka producer unless the
application (or a test) installs another one with `set_sink`. `emit` never raises and never
blocks: a hook runs inside someone else's request.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from costline.schemas.usage_event import UsageEvent

logger = logging.getLogger(__name__)


class EventSink(Protocol):
    """Accepts events without blocking the caller and without raising."""

    def emit(self, event: UsageEvent) -> None: ...


class _State:
    sink: EventSink | None = None
    enabled: bool = True
    failures: int = 0


_state = _State()
_lock = threading.Lock()


def set_sink(sink: EventSink | None) -> None:
    """Install the sink events go to (None: the default producer is built on first use)."""
    with _lock:
        _state.sink = sink


def set_enabled(enabled: bool) -> None:
    """The kill switch: while disabled, `emit` drops events at once."""
    _state.enabled = enabled


def is_enabled() -> bool:
    """Whether hooks should record anything at all."""
    return _state.enabled


def emit_failures() -> int:
    """Events lost because the sink itself failed (each is logged at debug level)."""
    return _state.failures


def _default_sink() -> EventSink:
    from costline.ingest.producer import default_producer

    return default_producer()


def emit(event: UsageEvent) -> None:
    """Hand `event` to the sink; failures are counted and logged, never raised."""
    if not _state.enabled:
        return
    try:
        sink = _state.sink
        if sink is None:
            with _lock:
                if _state.sink is None:
                    _state.sink = _default_sink()
                sink = _state.sink
        sink.emit(event)
    except Exception:
        _state.failures += 1
        logger.debug("costline could not record event %s", event.event_id, exc_info=True)
