"""Open the store from one DSN: embedded chDB or a ClickHouse server, through clickhouse-connect.

`chdb:///abs/path` runs the ClickHouse engine inside this process; `http(s)://user:pass@host:port/db`
talks to a server. Both return the same clickhouse-connect `Client`, so migrations, the writer and
the queries never know which one they use.

chDB hosts one engine per process, bound to one data path, and one process per path (the engine
locks `<path>/status`). Any number of clients may share the open path; they see the same data.
Opening a second path while a client of the first is open fails, as does opening a path another
process owns: `connect` turns both into a `StoreError` that says which path owns the engine.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to a ClickHouse server before giving up.
CONNECT_TIMEOUT_S = 10

_ENGINE_PATH_IN_USE = re.compile(r"already initialized with path '([^']*)'")


def connect(dsn: str) -> Client:
    """A client for `chdb:///abs/path` (created if missing) or `http(s)://user:pass@host:port/db`."""
    dsn = dsn.strip()
    scheme = dsn.partition(":")[0].lower()
    if scheme == "chdb":
        return _connect_chdb(dsn)
    if scheme in ("http", "https"):
        return _connect_http(dsn)
    raise StoreError(
        f"unsupported ClickHouse DSN {redact_dsn(dsn)!r}: use chdb:///absolute/path for the embedded "
        "store or http(s)://user:password@host:8123/database for a server (COSTLINE_CLICKHOUSE_DSN)"
    )


def chdb_path(dsn: str) -> Path:
    """The data directory of a `chdb:///abs/path` DSN, resolved the way chDB compares paths."""
    parts = urlsplit(dsn)
    if parts.scheme.lower() != "chdb" or parts.netloc or not parts.path.startswith("/"):
        raise StoreError(
            f"chDB DSN {dsn!r} must name an absolute directory as chdb:///absolute/path "
            "(three slashes); chdb://memory and relative paths are not supported"
        )
    if parts.query or parts.fragment:
        raise StoreError(f"chDB DSN {dsn!r} takes no ?options or #fragment; remove them")
    return Path(parts.path).resolve()


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced, fit for logs and error messages."""
    try:
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))
    except ValueError:
        return "<unparseable DSN>"


def _connect_chdb(dsn: str) -> Client:
    path = chdb_path(dsn)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the embedded store directory {path}: {exc}; "
            "choose a writable path in COSTLINE_CLICKHOUSE_DSN or COSTLINE_DATA_DIR"
        ) from exc
    try:
        client = clickhouse_connect.get_client(dsn=f"chdb://{path}", tz_mode="aware")
    except (ClickHouseError, RuntimeError) as exc:
        raise StoreError(_chdb_open_failure(path, exc)) from exc
    logger.info("opened embedded ClickHouse store at %s", path)
    return client


def _chdb_open_failure(path: Path, exc: Exception) -> str:
    """Explain why chDB refused a path: which owner holds the engine and what to do."""
    message = str(exc)
    in_use = _ENGINE_PATH_IN_USE.search(message)
    if in_use:
        return (
            f"this process already runs the embedded store at {in_use.group(1)}, and chDB allows one "
            f"data path per process, so {path} cannot be opened; connect with the same DSN, or close "
            "every client of the open store (client.close()) before opening another path"
        )
    if _locked_by_another_process(path):
        return (
            f"another process owns the embedded store at {path} (chDB lets one process open a data "
            "path); read through that process's API, stop it first, or use a different path"
        )
    return f"cannot open the embedded store at {path}: {message}"


def _locked_by_another_process(path: Path) -> bool:
    """Whether the engine lock file `<path>/status` is held; only asked after chDB refused the path."""
    status = path / "status"
    if not status.exists():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - chDB runs on Linux and macOS only
        return False
    try:
        with status.open("rb") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _connect_http(dsn: str) -> Client:
    shown = redact_dsn(dsn)
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise StoreError(
            f"ClickHouse DSN {shown!r} is malformed ({exc}); use http(s)://user:password@host:8123/db"
        ) from exc
    if not parts.hostname:
        raise StoreError(f"ClickHouse DSN {shown!r} has no host; use http(s)://user:password@host:8123/db")
    logger.debug("connecting to ClickHouse at %s (port %s)", shown, port or "default")
    try:
        client = clickhouse_connect.get_client(
            dsn=dsn,
            connect_timeout=CONNECT_TIMEOUT_S,
            tz_mode="aware",
            # One client is shared by threads (read API, sink); a session id would serialize them.
            autogenerate_session_id=False,
        )
    except ClickHouseError as exc:
        raise StoreError(
            f"cannot reach ClickHouse at {shown}: {exc}; check that the server is up and that "
            "COSTLINE_CLICKHOUSE_DSN has the right host, port, user, password and database"
        ) from exc
    logger.info("connected to ClickHouse at %s", shown)
    return client
