"""How API handlers reach the store: off the event loop, through one `run` function.

In the worker, `run` is the sink's single store thread (chDB is used from one thread, and reads
queue behind the writes they must see); standalone against a ClickHouse server it is a thread.
Handlers pass plain functions `fn(client, *args)`, so the same report code runs in both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from clickhouse_connect.driver import Client
from fastapi import Depends, Request

T = TypeVar("T")

Caller = Callable[..., Awaitable[Any]]


class StoreAccess:
    """The store client and the way to call functions with it."""

    def __init__(self, client: Client, call: Caller | None = None) -> None:
        self.client = client
        self._call = call

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(client, *args)` on the store's thread."""
        if self._call is not None:
            result: T = await self._call(fn, self.client, *args)
            return result
        return await asyncio.to_thread(fn, self.client, *args)


def store_access(request: Request) -> StoreAccess:
    """FastAPI dependency: the app's store."""
    store: StoreAccess = request.app.state.store
    return store


Store = Annotated[StoreAccess, Depends(store_access)]
