"""Who pays for the calls made inside a block: a context manager and decorator over contextvars.

    with costline.attribute(team="search", workload="rag-answer"):
        client.chat.completions.create(...)

Scopes nest (inner values win, tags merge), follow asyncio tasks, and are copied into threads
started with `contextvars.copy_context()`. Outside any scope, the `COSTLINE_DEFAULT_*` settings
apply (installed once with `set_defaults`). User ids are hashed here, so only the digest leaves.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from costline.schemas.usage_event import Attribution, hash_user

P = ParamSpec("P")
R = TypeVar("R")

_FIELDS = ("team", "project", "workload", "environment", "cost_center")
_current: ContextVar[dict[str, Any] | None] = ContextVar("costline_attribution", default=None)
_defaults: dict[str, Any] = {}
_salt = {"value": ""}


def set_defaults(values: Mapping[str, str | None], *, user_hash_salt: str = "") -> None:
    """Attribution used outside any scope (from settings), and the salt of user hashes."""
    _defaults.clear()
    _defaults.update({k: v for k, v in values.items() if k in _FIELDS and v})
    _salt["value"] = user_hash_salt


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "tags":
            merged["tags"] = {**merged.get("tags", {}), **value}
        else:
            merged[key] = value
    return merged


@contextmanager
def attribute(
    *,
    team: str | None = None,
    project: str | None = None,
    workload: str | None = None,
    user: str | None = None,
    environment: str | None = None,
    cost_center: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Attribute every call inside the block; `user` is hashed before it is stored."""
    overrides = {
        "team": team,
        "project": project,
        "workload": workload,
        "environment": environment,
        "cost_center": cost_center,
        "tags": dict(tags) if tags else None,
        "user_hash": hash_user(user, _salt["value"]) if user is not None else None,
    }
    token = _current.set(_merge(_current.get() or {}, overrides))
    try:
        yield
    finally:
        _current.reset(token)


def attributed(**scope: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of `attribute`, for sync and async functions alike."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                with attribute(**scope):
                    return await fn(*args, **kwargs)

            return run_async  # type: ignore[return-value]  # same signature, awaited result

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with attribute(**scope):
                return fn(*args, **kwargs)

        return run

    return decorate


def current_attribution(**per_call: Any) -> Attribution:
    """Defaults, then the enclosing scopes, then per-call overrides (same names as `attribute`)."""
    merged = _merge(_defaults, _current.get() or {})
    if "user" in per_call:
        user = per_call.pop("user")
        per_call["user_hash"] = hash_user(user, _salt["value"]) if user is not None else None
    return Attribution(**_merge(merged, per_call))
