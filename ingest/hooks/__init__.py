"""SDK hooks: record every OpenAI and Anthropic call as a `UsageEvent`, without touching the call.

    from costline.ingest.hooks import instrument
    instrument()

`instrument()` wraps the SDK methods listed in `OPENAI_METHODS` and `ANTHROPIC_METHODS` (at the
class level, so clients created before or after are covered); `uninstrument()` puts the original
attributes back. Both are idempotent. The SDKs are imported only when instrumented, so this
module imports without them. Events go to `costline.ingest.emit` (the background producer unless
another sink is installed); attribution comes from `costline.attribute(...)` scopes.
"""

from __future__ import annotations

import logging
import threading

from costline.ingest.attribution import set_defaults
from costline.ingest.emit import set_enabled
from costline.ingest.hooks.anthropic import ANTHROPIC_METHODS, instrument_anthropic, uninstrument_anthropic
from costline.ingest.hooks.common import CONFIG, Method, dropped_records, flush, hook_failures
from costline.ingest.hooks.openai import OPENAI_METHODS, instrument_openai, uninstrument_openai
from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_wrapped: dict[str, list[str]] = {}

_DEFAULT_FIELDS = ("team", "project", "workload", "environment", "cost_center")


def _load_settings() -> Settings:
    try:
        return Settings()
    except Exception:
        logger.warning("costline: invalid COSTLINE_* settings; hooks use the defaults", exc_info=True)
        return Settings.model_construct()


def instrument(
    *,
    openai: bool = True,
    anthropic: bool = True,
    include_stream_usage: bool = True,
    settings: Settings | None = None,
) -> None:
    """Wrap the installed SDKs (idempotent: a second call wraps nothing twice).

    `include_stream_usage`: for streamed Chat Completions that did not ask for usage, set
    `stream_options.include_usage` so the final usage is known (the extra usage-only chunk is
    hidden from the caller). `settings` defaults to the `COSTLINE_*` environment: with
    `COSTLINE_HOOKS_ENABLED=false` nothing is wrapped and nothing is recorded.
    """
    settings = settings if settings is not None else _load_settings()
    with _lock:
        if not settings.hooks_enabled:
            set_enabled(False)
            logger.info("costline: hooks disabled by COSTLINE_HOOKS_ENABLED; nothing instrumented")
            return
        CONFIG.include_stream_usage = include_stream_usage
        CONFIG.prompt_prefix_chars = settings.prompt_prefix_chars
        defaults = {name: getattr(settings, f"default_{name}") for name in _DEFAULT_FIELDS}
        salt = settings.user_hash_salt.get_secret_value()
        if any(defaults.values()) or salt:
            set_defaults(defaults, user_hash_salt=salt)
        if openai:
            _wrapped["openai"] = instrument_openai()
        if anthropic:
            _wrapped["anthropic"] = instrument_anthropic()
        logger.debug("costline: instrumented %s", _wrapped)


def uninstrument() -> None:
    """Restore every original SDK attribute (idempotent). Recorded events are kept."""
    with _lock:
        uninstrument_openai()
        uninstrument_anthropic()
        _wrapped.clear()


def instrumented_methods() -> list[str]:
    """`Class.method` names currently wrapped, e.g. `Completions.create`."""
    return [name for names in _wrapped.values() for name in names]


__all__ = [
    "ANTHROPIC_METHODS",
    "OPENAI_METHODS",
    "Method",
    "dropped_records",
    "flush",
    "hook_failures",
    "instrument",
    "instrumented_methods",
    "uninstrument",
]
