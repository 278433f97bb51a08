"""The ClickHouse sink: one insert per batch, retried with backoff until it returns.

The stream's take() loop calls `write` inside its body and acknowledges the batch only when
the body returns, so offsets are committed only after the insert succeeded. While ClickHouse is
unreachable `write` keeps retrying: the loop body does not return, the take buffer fills, and
consumption stops until the store is back. Nothing is skipped and no error dies unseen in a
background task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.pipeline.metrics import WorkerMetrics
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that mean "the store is not there right now", as opposed to a bug in costline.
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (StoreError, ClickHouseError, OSError)


class StoreSink:
    """Serializes every store call on one thread (chDB and the HTTP client are not shared safely)."""

    def __init__(
        self,
        writer: PricedEventWriter,
        metrics: WorkerMetrics,
        *,
        initial_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        self.writer = writer
        self.metrics = metrics
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="costline-store")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store function on the store thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def write(self, rows: list[list[object]]) -> None:
        """Insert `rows`, retrying with capped exponential backoff until ClickHouse accepts them."""
        if not rows:
            return
        delay = self.initial_backoff
        while True:
            started = time.perf_counter()
            try:
                await self.call(self.writer.write, rows)
            except STORE_UNAVAILABLE as exc:
                self.metrics.sink_errors += 1
                logger.warning(
                    "insert of %d rows failed (%s); consumption is paused, retrying in %.1fs",
                    len(rows),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            elapsed = time.perf_counter() - started
            self.metrics.sink_batches += 1
            self.metrics.sink_rows += len(rows)
            self.metrics.sink_batch_seconds_sum += elapsed
            self.metrics.sink_last_batch_seconds = elapsed
            return

    def close(self) -> None:
        """Let the store thread finish what it runs, then stop it."""
        self.executor.shutdown(wait=True)
