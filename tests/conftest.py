"""Shared fixtures: one embedded ClickHouse store for the whole test session.

chDB hosts one data path per process and pytest runs in one process, so every in-process test
that needs ClickHouse must use this store: take `chdb_client`, or `connect(chdb_dsn)` for a
second client on the same path (clients of one path share the engine). Opening another path
while this one is open raises StoreError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """DSN of the session's embedded store."""
    path: Path = tmp_path_factory.mktemp("chdb") / "store"
    return f"chdb://{path.resolve()}"


@pytest.fixture(scope="session")
def chdb_client(chdb_dsn: str) -> Iterator[Client]:
    """A client of the session's embedded store, migrations applied."""
    from costline.pipeline.store.client import connect
    from costline.pipeline.store.migrations import apply_migrations

    client = connect(chdb_dsn)
    apply_migrations(client)
    yield client
    client.close()


@pytest.fixture
def store(chdb_client: Client) -> Client:
    """The session's client with `usage_events` and its rollups emptied: each test starts from no events."""
    for table in (
        "usage_events",
        "usage_rollup_hourly",
        "usage_rollup_chargeback_hourly",
        "usage_rollup_daily",
    ):
        chdb_client.command(f"TRUNCATE TABLE {table}")
    return chdb_client
