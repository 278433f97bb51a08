"""Deliver alerts over HTTP: retry with exponential backoff, record every attempt, never log a URL.

Outcomes per attempt:

* 2xx → `delivered` (terminal);
* 5xx, 429, 408 or a transport error (refused, reset, timeout) → `retrying`, then wait
  (`Retry-After` when the server gives one, else exponential backoff, both capped) and try again,
  up to `max_attempts` in all, counted across restarts; the last one is recorded `failed`;
* any other status (a 404 from a deleted webhook, a 400 invalid payload, a 3xx) → `failed` at once:
  retrying cannot fix it.

Webhook URLs are secrets (Slack's carries its token in the path). They live in `SecretStr`, are
never logged or stored, and a logging filter on `httpx` (which logs every request URL at INFO)
replaces them with the route name. Errors recorded are scrubbed of the URL too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from costline.pipeline.alerts.model import Alert, DeliveryAttempt, Outcome
from costline.schemas.errors import ConfigError

logger = logging.getLogger(__name__)

Recorder = Callable[[DeliveryAttempt], Awaitable[None]]
PayloadBuilder = Callable[[Alert], dict[str, Any]]

RETRY_STATUSES = frozenset({408, 429})
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in all, first and longest wait, per-request timeout (seconds)."""

    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 60.0
    timeout: float = 10.0

    def backoff(self, attempt: int) -> float:
        """Wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.initial_backoff * 2 ** (attempt - 1), self.max_backoff))


@dataclass(frozen=True)
class Route:
    """A named destination: its secret URL and how an alert becomes its JSON body."""

    name: str
    url: SecretStr
    build: PayloadBuilder

    def __repr__(self) -> str:  # the dataclass repr would not print the secret, but say so plainly
        return f"Route({self.name!r}, url=**********)"


class _RedactUrls(logging.Filter):
    """Replaces registered secret URLs by `<route name>` in records of the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = redact(message, self.secrets)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = _RedactUrls()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_FILTER)


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with every secret URL replaced by `<route name>`."""
    for url, name in secrets.items():
        if url:
            text = text.replace(url, f"<{name} URL>")
    return text


def _retry_after(response: httpx.Response, policy: RetryPolicy) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), policy.max_backoff)


class Deliverer:
    """Runs deliveries as background tasks, one per (alert, route), and records every attempt."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        record: Recorder,
        policy: RetryPolicy | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.routes = dict(routes)
        self.record = record
        self.policy = policy or RetryPolicy()
        self._client = client
        self._tasks: dict[tuple[str, str], asyncio.Task[DeliveryAttempt | None]] = {}
        for route in self.routes.values():
            _FILTER.secrets[route.url.get_secret_value()] = route.name

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.policy.timeout, follow_redirects=False)
        return self._client

    @property
    def in_flight(self) -> int:
        """Deliveries not finished yet."""
        return sum(1 for task in self._tasks.values() if not task.done())

    def schedule(
        self, alert: Alert, route: str, attempts_made: int = 0
    ) -> asyncio.Task[DeliveryAttempt | None] | None:
        """Start delivering `alert` to `route` unless that delivery already runs here."""
        key = (alert.alert_id, route)
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return None
        if route not in self.routes:
            raise ConfigError(f"alert {alert.alert_id} names route {route!r}, which has no URL configured")
        task = asyncio.get_running_loop().create_task(
            self.deliver(alert, route, attempts_made), name=f"costline-alert-{route}"
        )
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: tuple[str, str], task: asyncio.Task[DeliveryAttempt | None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            logger.error("delivery of alert %s to %s crashed", key[0], key[1], exc_info=task.exception())

    async def deliver(self, alert: Alert, route_name: str, attempts_made: int = 0) -> DeliveryAttempt | None:
        """Try until delivered, refused or out of attempts; returns the last attempt recorded."""
        route = self.routes[route_name]
        body = route.build(alert)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "costline-alerts/1",
            "X-Costline-Alert-Id": alert.alert_id,
        }
        attempt = attempts_made
        last: DeliveryAttempt | None = None
        while attempt < self.policy.max_attempts:
            attempt += 1
            outcome, status_code, error, wait, elapsed_ms = await self._attempt(route, body, headers)
            if outcome == "retrying" and attempt >= self.policy.max_attempts:
                outcome, error = "failed", f"{error}; gave up after {attempt} attempts"
            last = DeliveryAttempt(
                alert_id=alert.alert_id,
                route=route.name,
                attempt=attempt,
                at=datetime.now(UTC),
                outcome=outcome,
                status_code=status_code,
                error=error,
                elapsed_ms=elapsed_ms,
            )
            await self._record(last)
            if outcome != "retrying":
                log = logger.info if outcome == "delivered" else logger.warning
                log(
                    "alert %s to %s: %s after %d attempt(s) %s",
                    alert.alert_id,
                    route.name,
                    outcome,
                    attempt,
                    error,
                )
                return last
            delay = wait if wait is not None else self.policy.backoff(attempt)
            logger.info(
                "alert %s to %s: attempt %d failed (%s); retrying in %.1fs",
                alert.alert_id,
                route.name,
                attempt,
                error,
                delay,
            )
            await asyncio.sleep(delay)
        return last

    async def _attempt(
        self, route: Route, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[Outcome, int | None, str, float | None, int]:
        secrets = {route.url.get_secret_value(): route.name}
        started = time.perf_counter()
        try:
            response = await self._http().post(route.url.get_secret_value(), json=body, headers=headers)
        except httpx.TransportError as exc:
            elapsed = int((time.perf_counter() - started) * 1000)
            reason = redact(f"{type(exc).__name__}: {exc}", secrets)[:MAX_ERROR_CHARS]
            return "retrying", None, reason, None, elapsed
        except httpx.HTTPError as exc:  # e.g. an invalid URL: no retry can fix it
            elapsed = int((time.perf_counter() - started) * 1000)
            return (
                "failed",
                None,
                redact(f"{type(exc).__name__}: {exc}", secrets)[:MAX_ERROR_CHARS],
                None,
                elapsed,
            )
        elapsed = int((time.perf_counter() - started) * 1000)
        status = response.status_code
        if 200 <= status < 300:
            return "delivered", status, "", None, elapsed
        text = redact(response.text.strip(), secrets)[:MAX_ERROR_CHARS]
        error = f"HTTP {status}" + (f": {text}" if text else "")
        if status >= 500 or status in RETRY_STATUSES:
            return "retrying", status, error, _retry_after(response, self.policy), elapsed
        return "failed", status, error, None, elapsed

    async def _record(self, attempt: DeliveryAttempt) -> None:
        try:
            await self.record(attempt)
        except Exception:  # the delivery happened (or not) regardless; a lost record means a resend later
            logger.warning(
                "could not record attempt %d of alert %s to %s",
                attempt.attempt,
                attempt.alert_id,
                attempt.route,
                exc_info=True,
            )

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the deliveries in flight (tests, shutdown)."""
        tasks = [task for task in self._tasks.values() if not task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def close(self) -> None:
        """Cancel deliveries in flight (they resume from the store on the next start) and close HTTP."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
