"""Serve the read API: inside the worker (embedded mode) or on its own (`costline api serve`).

In embedded mode the worker owns the chDB store, so the API runs on the worker's event loop as
a Faust service and every query goes through the sink's store thread (`StoreAccess(client,
call=sink.call)`), queued behind the writes it must see. The listening socket is bound when the
worker is built, so a port already in use stops the worker at once with a clear error instead
of failing later inside a running service. Standalone, uvicorn runs the same app against a
ClickHouse server (or a chDB path no other process owns).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI
from mode import Service

from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import Principal, TokenStore
from costline.dashboard.api.store import StoreAccess
from costline.schemas.errors import ConfigError
from costline.schemas.settings import Settings

if TYPE_CHECKING:
    from costline.pipeline.worker import Worker

logger = logging.getLogger(__name__)

#: Seconds a stopping server waits for requests in flight before it closes their connections.
SHUTDOWN_TIMEOUT_S = 10


def bind_api_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (not yet listening), or a ConfigError saying what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(
            f"the read API cannot listen on {host}:{port}: {exc}; check COSTLINE_API_HOST"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"the read API cannot listen on {host}:{port}: {exc.strerror or exc}; another process (a "
            "running worker or `costline api serve`?) uses that port: stop it or set COSTLINE_API_PORT"
        ) from exc
    return sock


class FileTokens(TokenStore):
    """The tokens file, re-read when it changes: `costline api token create` works without a restart.

    A file that turns unreadable keeps the tokens last read (and logs why) rather than locking
    everyone out; at start-up a broken file is an error.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._stamp = self._current_stamp()
        self._store = TokenStore.from_file(path)

    def __len__(self) -> int:
        return len(self._store)

    def authenticate(self, token: str) -> Principal | None:
        stamp = self._current_stamp()
        if stamp != self._stamp:
            try:
                self._store = TokenStore.from_file(self.path)
                self._stamp = stamp
            except ConfigError as exc:
                logger.warning("keeping the previous API tokens: %s", exc)
        return self._store.authenticate(token)

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process's owner (Faust, or uvicorn.run) handles those."""

    def __init__(self, config: uvicorn.Config, *, embedded: bool) -> None:
        super().__init__(config)
        self._embedded = embedded

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._embedded:
            with super().capture_signals():
                yield
            return
        yield


def uvicorn_config(api: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn settings shared by both modes; logging is left to the process (no dictConfig)."""
    return uvicorn.Config(
        api,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_TIMEOUT_S,
    )


class ReadApiService(Service):
    """The read API on the running event loop; started and stopped with the Faust app."""

    api: FastAPI
    settings: Settings
    sock: socket.socket

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        self._server = _Server(uvicorn_config(self.api, self.settings), embedded=True)
        self._task = asyncio.ensure_future(self._server.serve(sockets=[self.sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # re-raise why the server could not start
        logger.info(
            "read API listening on http://%s:%d/api/v1", self.settings.api_host, self.settings.api_port
        )

    async def on_stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), SHUTDOWN_TIMEOUT_S + 5)
            except TimeoutError:
                self._task.cancel()
                logger.warning("read API did not stop within %.0fs; cancelled", SHUTDOWN_TIMEOUT_S + 5)
        self.sock.close()


def register_read_api(worker: Worker) -> None:
    """Serve the read API from `worker` on settings.api_host:api_port (binds the port now)."""
    settings = worker.settings
    if not settings.resolved_clickhouse_dsn().startswith("chdb://"):
        logger.info("store is a ClickHouse server: the read API runs as `costline api serve`, not here")
        return
    tokens = FileTokens(settings.resolved_api_tokens_path())
    if not len(tokens):
        logger.warning(
            "no API tokens in %s: every read API request will get 401; create one with "
            "`costline api token create --name NAME --role admin`",
            settings.resolved_api_tokens_path(),
        )
    api = create_api(StoreAccess(worker.client, call=worker.sink.call), tokens, settings)
    sock = bind_api_socket(settings.api_host, settings.api_port)

    class WorkerReadApi(ReadApiService):
        pass

    WorkerReadApi.api = api
    WorkerReadApi.settings = settings
    WorkerReadApi.sock = sock
    worker.app.service(WorkerReadApi)


def serve_standalone(settings: Settings) -> None:
    """`costline api serve`: the API against COSTLINE_CLICKHOUSE_DSN until SIGINT/SIGTERM."""
    from costline.pipeline.store.client import connect
    from costline.pipeline.store.migrations import apply_migrations

    tokens = FileTokens(settings.resolved_api_tokens_path())
    sock = bind_api_socket(settings.api_host, settings.api_port)
    try:
        client = connect(settings.resolved_clickhouse_dsn())
        apply_migrations(client)
    except BaseException:
        sock.close()
        raise
    api = create_api(StoreAccess(client), tokens, settings)
    logger.info(
        "read API on http://%s:%d/api/v1 (%d token(s))", settings.api_host, settings.api_port, len(tokens)
    )
    try:
        _Server(uvicorn_config(api, settings), embedded=False).run(sockets=[sock])
    finally:
        sock.close()
        client.close()
