"""Versioned DDL, applied once and in order at start-up.

Migration files live in the `costline.schemas` package under `migrations/`, named
`NNNN_name.sql`. A file may hold several statements separated by `;`. Each applied file is
recorded in `schema_migrations` with a checksum; editing a file after it was applied is refused,
because the change would never reach stores that already ran it: write a new migration instead.

ClickHouse DDL is not transactional. A migration that fails half-way leaves its first statements
applied and is not recorded, so it runs again on the next start: write statements that can run
twice (`CREATE TABLE IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)

MIGRATIONS_PACKAGE = "costline.schemas"
MIGRATIONS_FOLDER = "migrations"
MIGRATIONS_TABLE = "schema_migrations"

_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_MIGRATIONS_TABLE = f"""\
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version String,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY version"""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version (`0001`), name and SQL text."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL with line endings normalized, so a CRLF checkout does not count as an edit."""
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode()).hexdigest()

    @property
    def label(self) -> str:
        """`0001_priced_events`, as the file is named."""
        return f"{self.version}_{self.name}"

    def statements(self) -> list[str]:
        """The statements of the file, in order."""
        return split_statements(self.sql, source=self.label)


def load_migrations() -> list[Migration]:
    """Every migration shipped with the package, ordered by version."""
    folder = resources.files(MIGRATIONS_PACKAGE).joinpath(MIGRATIONS_FOLDER)
    migrations: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise StoreError(
                f"migration file {entry.name!r} is misnamed; "
                "name it NNNN_snake_case.sql, e.g. 0002_rollups.sql"
            )
        migrations.append(Migration(match["version"], match["name"], entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise StoreError(f"several migration files share version(s) {', '.join(duplicates)}; renumber them")
    return migrations


def apply_migrations(client: Client, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply the migrations the store has not run yet; returns the versions applied now."""
    pending = list(load_migrations() if migrations is None else migrations)
    try:
        client.command(_CREATE_MIGRATIONS_TABLE)
        applied = client.query(
            f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version, applied_at"
        ).result_rows
    except ClickHouseError as exc:
        raise StoreError(
            f"cannot read {MIGRATIONS_TABLE}: {exc}; check the DSN's database and grants"
        ) from exc

    recorded: dict[str, str] = {}
    for version, name, checksum in applied:
        recorded.setdefault(version, checksum)
        known = next((m for m in pending if m.version == version), None)
        if known is None:
            logger.warning(
                "store has migration %s_%s that this costline does not know; is a newer version deployed?",
                version,
                name,
            )
        elif checksum != known.checksum:
            raise StoreError(
                f"migration {known.label} was changed after it was applied (checksum {checksum[:12]} in "
                f"the store, {known.checksum[:12]} in the file); restore the file and put the change "
                "in a new migration"
            )

    newly_applied: list[str] = []
    for migration in pending:
        if migration.version in recorded:
            continue
        _apply_one(client, migration)
        newly_applied.append(migration.version)
    if newly_applied:
        logger.info("applied migrations %s", ", ".join(newly_applied))
    else:
        logger.debug("store schema is up to date (%d migrations)", len(recorded))
    return newly_applied


def _apply_one(client: Client, migration: Migration) -> None:
    statements = migration.statements()
    for number, statement in enumerate(statements, start=1):
        try:
            client.command(statement)
        except ClickHouseError as exc:
            raise StoreError(
                f"migration {migration.label} failed at statement {number} of {len(statements)}: {exc}; "
                "fix the statement (statements must be safe to re-run) and start again"
            ) from exc
    try:
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
    except ClickHouseError as exc:
        raise StoreError(f"migration {migration.label} ran but could not be recorded: {exc}") from exc
    logger.info("applied migration %s (%d statements)", migration.label, len(statements))


def split_statements(sql: str, *, source: str = "<sql>") -> list[str]:
    """Split SQL on `;` outside quotes and comments; comment-only pieces are dropped."""
    statements: list[str] = []
    start = 0
    has_code = False
    i = 0
    n = len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            i = _end_of_quoted(sql, i, source)
            has_code = True
            continue
        if sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline == -1 else newline + 1
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end == -1:
                raise StoreError(f"{source}: unterminated /* comment; close it with */")
            i = end + 2
            continue
        if char == ";":
            if has_code:
                statements.append(sql[start:i].strip())
            start = i + 1
            has_code = False
        elif not char.isspace():
            has_code = True
        i += 1
    if has_code:
        statements.append(sql[start:].strip())
    return statements


def _end_of_quoted(sql: str, start: int, source: str) -> int:
    """Index just past the quoted literal or identifier opening at `start` (backslash and doubled quotes)."""
    quote = sql[start]
    i = start + 1
    while i < len(sql):
        char = sql[i]
        if char == "\\":
            i += 2
            continue
        if char == quote:
            if sql.startswith(quote * 2, i):
                i += 2
                continue
            return i + 1
        i += 1
    raise StoreError(f"{source}: unterminated {quote} quote starting at character {start}; close it")
