"""Versioned DDL, applied once and in order at start-up.

Migration files live in the `costline.schemas` package under `migrations/`, named
`NNNN_name.sql`. A file may hold several statements separated by `;`. Each applied file is
recorded in `schema_migrations` with a checksum; editing a file after it was applied is refused,
because the change would never reach stores that already ran it: write a new migration instead.

ClickHouse DDL is not transactional. A migration that fails half-way leaves its first statements
applied and is not recorded, so it runs again on the next start: write statements that can run
twice (`CREATE TABLE IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`).

Cluster mode (`COSTLINE_CLICKHOUSE_CLUSTER`): the same files run on a sharded, replicated
ClickHouse. `ClusterDDL` rewrites each statement as it is applied: a MergeTree-family table `t`
becomes `t_local ON CLUSTER` with the Replicated engine, plus a Distributed table `t` over it, so
every query and insert of costline keeps using `t`. The Distributed table shards by a hash of
the local table's sorting key: rows that ReplacingMergeTree treats as copies of one row (same
sorting key) always land on the same shard, so `FINAL` (which each shard applies to its own
part of the data) still removes every duplicate. Files stay written for one node, without
`ON CLUSTER`; checksums are those of the files, whichever mode applied them.
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


def apply_migrations(
    client: Client, migrations: Sequence[Migration] | None = None, *, cluster: str | None = None
) -> list[str]:
    """Apply the migrations the store has not run yet; returns the versions applied now.

    With `cluster` (a name from the servers' `remote_servers`), every statement is rewritten by
    `ClusterDDL` for that cluster, the bookkeeping table included.
    """
    pending = list(load_migrations() if migrations is None else migrations)
    ddl: ClusterDDL | None = None
    if cluster:
        try:
            database = str(client.command("SELECT currentDatabase()"))
        except ClickHouseError as exc:
            raise StoreError(f"cannot reach ClickHouse to apply migrations: {exc}") from exc
        ddl = ClusterDDL.for_migrations(cluster, database, pending)
    try:
        for statement in ddl.rewrite(_CREATE_MIGRATIONS_TABLE) if ddl else [_CREATE_MIGRATIONS_TABLE]:
            client.command(statement)
        applied = client.query(
            f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE} ORDER BY version, applied_at"
        ).result_rows
    except ClickHouseError as exc:
        hint = (
            f"check that cluster {cluster!r} (COSTLINE_CLICKHOUSE_CLUSTER) is in every server's "
            "remote_servers and Keeper is configured"
            if ddl
            else "check the DSN's database and grants"
        )
        raise StoreError(f"cannot read {MIGRATIONS_TABLE}: {exc}; {hint}") from exc

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
        _apply_one(client, migration, ddl)
        newly_applied.append(migration.version)
    if newly_applied:
        logger.info("applied migrations %s", ", ".join(newly_applied))
    else:
        logger.debug("store schema is up to date (%d migrations)", len(recorded))
    return newly_applied


def _apply_one(client: Client, migration: Migration, ddl: ClusterDDL | None = None) -> None:
    statements = migration.statements()
    for number, statement in enumerate(statements, start=1):
        for rewritten in ddl.rewrite(statement, source=migration.label) if ddl else [statement]:
            try:
                client.command(rewritten)
            except ClickHouseError as exc:
                shown = f" (cluster DDL: {rewritten.splitlines()[0]} ...)" if ddl else ""
                raise StoreError(
                    f"migration {migration.label} failed at statement {number} of {len(statements)}"
                    f"{shown}: {exc}; fix the statement (statements must be safe to re-run) and start again"
                ) from exc
    try:
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
            # On a cluster, return only once the row is on its shard, so the next reader sees it.
            settings={"insert_distributed_sync": 1} if ddl else None,
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


# --------------------------------------------------------------------------- cluster mode

#: Suffix of the per-shard table behind a Distributed table of the same name.
LOCAL_SUFFIX = "_local"
#: Keeper path of a replicated table: one replica set per shard, per database, per table.
REPLICA_PATH = "/clickhouse/tables/{{shard}}/{{database}}/{table}"
#: Table settings that only mean something on a non-replicated table (Replicated* engines
#: deduplicate retried inserts through Keeper, `replicated_deduplication_window`).
SINGLE_NODE_SETTINGS = frozenset({"non_replicated_deduplication_window"})
#: ALTER commands that change a table's columns, so the Distributed table must follow them.
_COLUMN_COMMAND = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)

_NAME = r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_.\-{}]+$")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_CREATE_TABLE = re.compile(rf"^CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?{_NAME}\b", re.I)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+{_NAME}\s+", re.I)
_DROP_TABLE = re.compile(rf"^DROP\s+TABLE\s+(?P<ie>IF\s+EXISTS\s+)?{_NAME}\b", re.I)
_TABLE_COMMAND = re.compile(
    rf"^(?P<verb>TRUNCATE\s+TABLE|OPTIMIZE\s+TABLE)\s+(?P<ie>IF\s+EXISTS\s+)?{_NAME}\b", re.I
)
_CREATE_OTHER = re.compile(
    rf"^CREATE\s+(OR\s+REPLACE\s+)?(VIEW|DICTIONARY|FUNCTION)\s+(IF\s+NOT\s+EXISTS\s+)?{_NAME}\b", re.I
)
_MATERIALIZED_VIEW = re.compile(r"^CREATE\s+(OR\s+REPLACE\s+)?MATERIALIZED\s+VIEW\b", re.I)
_DATA_STATEMENT = re.compile(r"^(INSERT|SELECT|WITH)\b", re.I)
_ON_CLUSTER = re.compile(r"\bON\s+CLUSTER\b", re.I)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<engine>[A-Za-z][A-Za-z0-9_]*)", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+", re.I)
_SETTINGS = re.compile(r"\s*\bSETTINGS\s+", re.I)
_CLAUSE = re.compile(r"\b(PARTITION\s+BY|PRIMARY\s+KEY|ORDER\s+BY|SAMPLE\s+BY|TTL|SETTINGS|COMMENT)\b", re.I)


@dataclass(frozen=True)
class ClusterDDL:
    """Rewrites single-node DDL for a sharded, replicated cluster (see the module docstring).

    `sharded` holds the tables created with a MergeTree-family engine anywhere in the migrations,
    so a later `ALTER TABLE t` knows that `t` is a Distributed table over `t_local`.
    """

    cluster: str
    database: str
    sharded: frozenset[str]

    def __post_init__(self) -> None:
        if not _CLUSTER_NAME.match(self.cluster):
            raise StoreError(
                f"ClickHouse cluster name {self.cluster!r} (COSTLINE_CLICKHOUSE_CLUSTER) must be a name "
                "from the servers' remote_servers (letters, digits, _ . - or a {macro})"
            )
        if not _DATABASE_NAME.match(self.database):
            raise StoreError(f"database name {self.database!r} cannot be used in cluster DDL; rename it")

    @classmethod
    def for_migrations(cls, cluster: str, database: str, migrations: Sequence[Migration]) -> ClusterDDL:
        """The rewriter for `migrations` (every file shipped, applied or not, plus the bookkeeping table)."""
        sharded = {MIGRATIONS_TABLE}
        for migration in migrations:
            for statement in migration.statements():
                table = _sharded_table(strip_comments(statement))
                if table is not None:
                    sharded.add(table)
        return cls(cluster, database, frozenset(sharded))

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER '{self.cluster}'"

    def rewrite(self, statement: str, *, source: str = "<sql>") -> list[str]:
        """The cluster statements, in order, that stand for one single-node statement."""
        sql = strip_comments(statement)
        if _ON_CLUSTER.search(sql):
            raise StoreError(
                f"{source}: write migrations for one node, without ON CLUSTER; "
                f"cluster mode adds it: {sql[:80]}"
            )
        if match := _CREATE_TABLE.match(sql):
            return self._create_table(sql, match, source)
        if match := _ALTER_TABLE.match(sql):
            return self._alter_table(sql, match)
        if match := _DROP_TABLE.match(sql):
            name = match["name"]
            tables = [name, name + LOCAL_SUFFIX] if name in self.sharded else [name]
            return [
                f"DROP TABLE {match['ie'] or ''}{t} {self.on_cluster}{sql[match.end() :]}" for t in tables
            ]
        if match := _TABLE_COMMAND.match(sql):
            name = match["name"] + (LOCAL_SUFFIX if match["name"] in self.sharded else "")
            verb = " ".join(match["verb"].split()).upper()
            return [f"{verb} {match['ie'] or ''}{name} {self.on_cluster}{sql[match.end() :]}"]
        if _MATERIALIZED_VIEW.match(sql):
            raise StoreError(
                f"{source}: materialized views are not rewritten for cluster mode (they would have to read "
                "and write the _local tables); recompute derived tables from FINAL reads instead"
            )
        if match := _CREATE_OTHER.match(sql):
            return [f"{sql[: match.end()]} {self.on_cluster}{sql[match.end() :]}"]
        if _DATA_STATEMENT.match(sql):
            return [sql]  # runs once, through the Distributed tables
        raise StoreError(
            f"{source}: cluster mode cannot rewrite this statement (CREATE TABLE/VIEW, ALTER, DROP, "
            f"TRUNCATE, OPTIMIZE TABLE, INSERT and SELECT are supported): {sql[:80]}"
        )

    def _create_table(self, sql: str, match: re.Match[str], source: str) -> list[str]:
        name = match["name"]
        head = sql[: match.start("name")]
        if name not in self.sharded:
            return [f"{head}{name} {self.on_cluster}{sql[match.end() :]}"]
        engine = _find_top(sql, _ENGINE, match.end())
        if engine is None:
            raise StoreError(f"{source}: CREATE TABLE {name} needs an ENGINE clause for cluster mode")
        engine_end, args = engine.end(), ""
        open_paren = _skip_space(sql, engine_end)
        if open_paren < len(sql) and sql[open_paren] == "(":
            engine_end = _matching_paren(sql, open_paren, source) + 1
            args = sql[open_paren + 1 : engine_end - 1].strip()
        path = REPLICA_PATH.format(table=name)
        replicated = (
            f"ENGINE = Replicated{engine['engine']}('{path}', '{{replica}}'{', ' + args if args else ''})"
        )
        order = _find_top(sql, _ORDER_BY, engine_end)
        if order is None:
            raise StoreError(f"{source}: CREATE TABLE {name} needs ORDER BY for cluster mode")
        sharding_key = _sharding_key(sql[order.end() : _clause_end(sql, order.end())].strip())
        tail = _without_single_node_settings(sql, engine_end, source)
        local_name = name + LOCAL_SUFFIX
        local = f"{head}{local_name} {self.on_cluster}{sql[match.end() : engine.start()]}{replicated}{tail}"
        distributed = (
            f"CREATE TABLE {match['ine'] or ''}{name} {self.on_cluster} AS {local_name}\n"
            f"ENGINE = Distributed('{self.cluster}', '{self.database}', '{local_name}', {sharding_key})"
        )
        return [local, distributed]

    def _alter_table(self, sql: str, match: re.Match[str]) -> list[str]:
        name, commands = match["name"], sql[match.end() :]
        if name not in self.sharded:
            return [f"ALTER TABLE {name} {self.on_cluster} {commands}"]
        local = f"ALTER TABLE {name}{LOCAL_SUFFIX} {self.on_cluster} {commands}"
        column_commands = [c for c in _split_top(commands, ",") if _COLUMN_COMMAND.match(c)]
        if not column_commands:
            return [local]
        distributed = f"ALTER TABLE {name} {self.on_cluster} {', '.join(column_commands)}"
        # A column is added below the Distributed table first and dropped from it first, so the
        # Distributed table never names a column its shards lack.
        if any(c.upper().startswith("DROP") for c in column_commands):
            return [distributed, local]
        return [local, distributed]


def _sharded_table(sql: str) -> str | None:
    """The table a `CREATE TABLE ... ENGINE = <non-replicated>MergeTree` statement creates, if it is one."""
    match = _CREATE_TABLE.match(sql)
    if match is None:
        return None
    engine = _find_top(sql, _ENGINE, match.end())
    if engine is None:
        return None
    kind = engine["engine"]
    return match["name"] if kind.endswith("MergeTree") and not kind.startswith("Replicated") else None


def _sharding_key(order_by: str) -> str:
    """A hash of the sorting key: rows with the same key (copies of one row) go to the same shard."""
    inner = order_by
    if order_by.startswith("(") and _matching_paren(order_by, 0, "ORDER BY") == len(order_by) - 1:
        inner = order_by[1:-1].strip()
    if inner.lower() in ("", "tuple()"):
        return "rand()"  # no sorting key: nothing is deduplicated, any shard will do
    return f"cityHash64({inner})"


def _without_single_node_settings(sql: str, start: int, source: str) -> str:
    """`sql[start:]` with the settings that mean nothing on a replicated table dropped."""
    found = _find_top(sql, _SETTINGS, start)
    if found is None:
        return sql[start:]
    end = _clause_end(sql, found.end())
    kept = [
        item
        for item in _split_top(sql[found.end() : end], ",")
        if item.split("=", 1)[0].strip().lower() not in SINGLE_NODE_SETTINGS
    ]
    settings = f"\nSETTINGS {', '.join(kept)}" if kept else ""
    return f"{sql[start : found.start()]}{settings}{sql[end:]}"


def strip_comments(sql: str) -> str:
    """The statement without `--` and `/* */` comments; lines that held only a comment are dropped."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        if sql[i] in "'\"`":
            end = _end_of_quoted(sql, i, "<sql>")
            out.append(sql[i:end])
            i = end
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline == -1 else newline
            out.append("\0")
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            out.append("\0")
        else:
            out.append(sql[i])
            i += 1
    lines = []
    for line in "".join(out).split("\n"):
        if "\0" in line:
            line = line.replace("\0", "").rstrip()
            if not line.strip():
                continue
        lines.append(line)
    return "\n".join(lines).strip()


def _top_level(sql: str, start: int = 0) -> list[int]:
    """Positions from `start` that are outside quotes and parentheses."""
    positions: list[int] = []
    depth, i = 0, start
    while i < len(sql):
        char = sql[i]
        if char in "'\"`":
            i = _end_of_quoted(sql, i, "<sql>")
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0:
            positions.append(i)
        i += 1
    return positions


def _find_top(sql: str, pattern: re.Pattern[str], start: int) -> re.Match[str] | None:
    """The first match of `pattern` from `start` that begins outside quotes and parentheses."""
    top = set(_top_level(sql, start))
    return next((m for m in pattern.finditer(sql, start) if m.start() in top or m.end() - 1 in top), None)


def _clause_end(sql: str, start: int) -> int:
    """Where the clause starting at `start` ends: at the next top-level clause keyword, or the end."""
    found = _find_top(sql, _CLAUSE, start)
    if found is None:
        return len(sql)
    end = found.start()
    while end > start and sql[end - 1].isspace():
        end -= 1
    return end


def _split_top(text: str, separator: str) -> list[str]:
    """`text` split on `separator` outside quotes and parentheses, each piece stripped."""
    cuts = [i for i in _top_level(text) if text[i] == separator]
    pieces, previous = [], 0
    for cut in [*cuts, len(text)]:
        pieces.append(text[previous:cut].strip())
        previous = cut + 1
    return [piece for piece in pieces if piece]


def _matching_paren(sql: str, open_index: int, source: str) -> int:
    depth, i = 0, open_index
    while i < len(sql):
        char = sql[i]
        if char in "'\"`":
            i = _end_of_quoted(sql, i, source)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise StoreError(f"{source}: unbalanced parentheses from character {open_index}")


def _skip_space(sql: str, i: int) -> int:
    while i < len(sql) and sql[i].isspace():
        i += 1
    return i
