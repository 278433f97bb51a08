"""Cluster mode: the single-node migrations rewritten for a sharded, replicated ClickHouse.

Exact SQL for the shipped 0001/0002 and the bookkeeping table; properties that every migration
file present must keep (each MergeTree table gets a Replicated `_local` twin ON CLUSTER and a
Distributed table sharded by its sorting key); and every rewritten statement is parsed by the
real ClickHouse parser (chDB's `formatQuery`). No test here needs a cluster: none runs here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from costline.pipeline.store.migrations import (
    _CREATE_MIGRATIONS_TABLE,
    ClusterDDL,
    Migration,
    apply_migrations,
    load_migrations,
    strip_comments,
)
from costline.schemas.errors import StoreError

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

CLUSTER = "costline_cluster"
DATABASE = "costline"


def _ddl(extra: tuple[str, ...] = ()) -> ClusterDDL:
    migrations = load_migrations()
    if extra:
        migrations.append(Migration("9999", "extra", ";\n".join(extra)))
    return ClusterDDL.for_migrations(CLUSTER, DATABASE, migrations)


def _migration(version: str) -> Migration:
    return next(m for m in load_migrations() if m.version == version)


def _columns_block(sql: str) -> str:
    """The column list of a file's CREATE TABLE exactly as written (read independently of the rewriter)."""
    start = sql.index("\n(\n") + 1
    end = sql.index("\n)\nENGINE", start) + 2
    return sql[start:end]


def test_usage_events_becomes_a_replicated_local_table_and_a_distributed_table() -> None:
    (statement,) = _migration("0001").statements()
    local, distributed = _ddl().rewrite(statement)
    assert local == (
        f"CREATE TABLE IF NOT EXISTS usage_events_local ON CLUSTER '{CLUSTER}'\n"
        + _columns_block(statement)
        + "\nENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/usage_events', '{replica}', pricing_version)\n"
        "PARTITION BY toYYYYMM(occurred_at)\n"
        "ORDER BY (team, occurred_at, event_id)"
    )
    assert distributed == (
        f"CREATE TABLE IF NOT EXISTS usage_events ON CLUSTER '{CLUSTER}' AS usage_events_local\n"
        f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', 'usage_events_local', "
        "cityHash64(team, occurred_at, event_id))"
    )
    # the file's single-node setting is gone (Replicated engines deduplicate inserts through Keeper)
    assert "non_replicated_deduplication_window" in statement
    assert "non_replicated_deduplication_window" not in local


def test_rollups_migration_exact_sql() -> None:
    statements = [s for st in _migration("0002").statements() for s in _ddl().rewrite(st)]
    columns = (
        "    team LowCardinality(String),\n"
        "    workload LowCardinality(String),\n"
        "    provider LowCardinality(String),\n"
        "    model LowCardinality(String),\n"
        "    events UInt64,\n"
        "    unpriced_events UInt64,\n"
        "    partial_events UInt64,\n"
        "    tokens_input_uncached UInt64,\n"
        "    tokens_cache_read UInt64,\n"
        "    tokens_cache_write UInt64,\n"
        "    tokens_output_visible UInt64,\n"
        "    tokens_output_reasoning UInt64,\n"
        "    list_cost Decimal(38, 12),\n"
        "    as_priced_effective_cost Decimal(38, 12),\n"
        "    effective_cost Decimal(38, 12),\n"
        "    computed_at DateTime64(3, 'UTC')\n"
    )
    assert statements == [
        f"ALTER TABLE usage_events_local ON CLUSTER '{CLUSTER}' "
        "ADD INDEX IF NOT EXISTS ingested_at_minmax ingested_at TYPE minmax GRANULARITY 1",
        f"CREATE TABLE IF NOT EXISTS usage_rollup_hourly_local ON CLUSTER '{CLUSTER}'\n"
        "(\n    hour DateTime('UTC'),\n" + columns + ")\n"
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/usage_rollup_hourly', '{replica}', computed_at)\n"
        "PARTITION BY toYYYYMM(hour)\n"
        "ORDER BY (team, hour, workload, provider, model)",
        f"CREATE TABLE IF NOT EXISTS usage_rollup_hourly ON CLUSTER '{CLUSTER}' "
        "AS usage_rollup_hourly_local\n"
        f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', 'usage_rollup_hourly_local', "
        "cityHash64(team, hour, workload, provider, model))",
        f"CREATE TABLE IF NOT EXISTS usage_rollup_daily_local ON CLUSTER '{CLUSTER}'\n"
        "(\n    day Date,\n" + columns + ")\n"
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/usage_rollup_daily', '{replica}', computed_at)\n"
        "PARTITION BY toYYYYMM(day)\n"
        "ORDER BY (team, day, workload, provider, model)",
        f"CREATE TABLE IF NOT EXISTS usage_rollup_daily ON CLUSTER '{CLUSTER}' "
        "AS usage_rollup_daily_local\n"
        f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', 'usage_rollup_daily_local', "
        "cityHash64(team, day, workload, provider, model))",
    ]


def test_the_bookkeeping_table_is_sharded_too_so_every_node_sees_what_was_applied() -> None:
    assert _ddl().rewrite(_CREATE_MIGRATIONS_TABLE) == [
        f"CREATE TABLE IF NOT EXISTS schema_migrations_local ON CLUSTER '{CLUSTER}'\n"
        "(\n"
        "    version String,\n"
        "    name String,\n"
        "    checksum String,\n"
        "    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)\n"
        ")\n"
        "ENGINE = ReplicatedMergeTree("
        "'/clickhouse/tables/{shard}/{database}/schema_migrations', '{replica}')\n"
        "ORDER BY version",
        f"CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER '{CLUSTER}' AS schema_migrations_local\n"
        f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', 'schema_migrations_local', cityHash64(version))",
    ]


_CREATE = re.compile(r"^CREATE TABLE (IF NOT EXISTS )?(?P<name>\w+)\b", re.I)
_ENGINE = re.compile(r"\bENGINE\s*=\s*(?P<engine>\w+)", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+(?P<key>\([^;]*?\)|[^\s(]+(\([^)]*\))?)\s*(\n|$|SETTINGS|TTL)", re.I)


def _every_file_statement() -> list[tuple[str, str]]:
    return [(m.label, s) for m in load_migrations() for s in m.statements()]


@pytest.mark.parametrize(("label", "statement"), _every_file_statement())
def test_every_statement_of_every_migration_runs_on_the_whole_cluster(label: str, statement: str) -> None:
    sql = strip_comments(statement)
    rewritten = _ddl().rewrite(statement, source=label)
    created = _CREATE.match(sql)
    engine = _ENGINE.search(sql)
    if created and engine and engine["engine"].endswith("MergeTree"):
        name = created["name"]
        assert len(rewritten) == 2, label
        local, distributed = rewritten
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local ON CLUSTER '{CLUSTER}'\n"), label
        path = f"/clickhouse/tables/{{shard}}/{{database}}/{name}"
        assert f"ENGINE = Replicated{engine['engine']}('{path}', '{{replica}}'" in local, label
        assert "non_replicated_deduplication_window" not in local, label
        order = _ORDER_BY.search(sql)
        assert order is not None, f"{label}: {name} has no ORDER BY"
        key = order["key"].strip()
        key = key[1:-1] if key.startswith("(") else key
        assert distributed == (
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER '{CLUSTER}' AS {name}_local\n"
            f"ENGINE = Distributed('{CLUSTER}', '{DATABASE}', '{name}_local', cityHash64({key}))"
        ), label
    elif re.match(r"^(INSERT|SELECT|WITH)\b", sql, re.I):
        assert rewritten == [sql]
    else:
        assert all(f"ON CLUSTER '{CLUSTER}'" in s for s in rewritten), label
    for (
        table
    ) in _ddl().sharded:  # DDL on a sharded table goes to its local tables, never only to the Distributed one
        if re.match(rf"^ALTER TABLE {table}\b", sql) and not re.search(r"\bCOLUMN\b", sql, re.I):
            assert all(s.startswith(f"ALTER TABLE {table}_local ON CLUSTER") for s in rewritten), label


def test_alter_column_changes_reach_both_tables_and_indexes_only_the_local_one() -> None:
    ddl = _ddl()
    assert ddl.rewrite(
        "ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS region2 String, "
        "ADD INDEX i x TYPE set(0) GRANULARITY 1"
    ) == [
        f"ALTER TABLE usage_events_local ON CLUSTER '{CLUSTER}' "
        "ADD COLUMN IF NOT EXISTS region2 String, ADD INDEX i x TYPE set(0) GRANULARITY 1",
        f"ALTER TABLE usage_events ON CLUSTER '{CLUSTER}' ADD COLUMN IF NOT EXISTS region2 String",
    ]
    # dropped from the Distributed table first, so it never names a column its shards lack
    assert ddl.rewrite("ALTER TABLE usage_events DROP COLUMN IF EXISTS region2") == [
        f"ALTER TABLE usage_events ON CLUSTER '{CLUSTER}' DROP COLUMN IF EXISTS region2",
        f"ALTER TABLE usage_events_local ON CLUSTER '{CLUSTER}' DROP COLUMN IF EXISTS region2",
    ]
    assert ddl.rewrite("ALTER TABLE usage_events MODIFY TTL toDateTime(occurred_at) + INTERVAL 400 DAY") == [
        f"ALTER TABLE usage_events_local ON CLUSTER '{CLUSTER}' "
        "MODIFY TTL toDateTime(occurred_at) + INTERVAL 400 DAY"
    ]
    assert ddl.rewrite("ALTER TABLE other_table ADD COLUMN c UInt8") == [
        f"ALTER TABLE other_table ON CLUSTER '{CLUSTER}' ADD COLUMN c UInt8"
    ]


def test_other_statements() -> None:
    ddl = _ddl(("CREATE TABLE IF NOT EXISTS scratch (a String) ENGINE = Memory",))
    assert ddl.rewrite("DROP TABLE IF EXISTS usage_rollup_daily SYNC") == [
        f"DROP TABLE IF EXISTS usage_rollup_daily ON CLUSTER '{CLUSTER}' SYNC",
        f"DROP TABLE IF EXISTS usage_rollup_daily_local ON CLUSTER '{CLUSTER}' SYNC",
    ]
    assert ddl.rewrite("optimize table usage_events FINAL") == [
        f"OPTIMIZE TABLE usage_events_local ON CLUSTER '{CLUSTER}' FINAL"
    ]
    assert ddl.rewrite("TRUNCATE TABLE IF EXISTS usage_events") == [
        f"TRUNCATE TABLE IF EXISTS usage_events_local ON CLUSTER '{CLUSTER}'"
    ]
    assert ddl.rewrite("CREATE TABLE IF NOT EXISTS scratch (a String) ENGINE = Memory") == [
        f"CREATE TABLE IF NOT EXISTS scratch ON CLUSTER '{CLUSTER}' (a String) ENGINE = Memory"
    ]
    assert ddl.rewrite("CREATE OR REPLACE VIEW v AS SELECT team FROM usage_events FINAL") == [
        f"CREATE OR REPLACE VIEW v ON CLUSTER '{CLUSTER}' AS SELECT team FROM usage_events FINAL"
    ]
    insert = "INSERT INTO usage_rollup_daily SELECT * FROM usage_rollup_daily FINAL"
    assert ddl.rewrite(f"-- backfill\n{insert}") == [insert]


def test_settings_other_than_the_single_node_one_are_kept() -> None:
    ddl = _ddl()
    statement = (
        "CREATE TABLE t (k String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY tuple()\n"
        "SETTINGS index_granularity = 4096, non_replicated_deduplication_window = 100"
    )
    ddl = _ddl((statement,))
    local, distributed = ddl.rewrite(statement)
    assert local == (
        f"CREATE TABLE t_local ON CLUSTER '{CLUSTER}' (k String, v UInt64) "
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/{database}/t', '{replica}', v) ORDER BY tuple()\n"
        "SETTINGS index_granularity = 4096"
    )
    assert distributed.endswith("'t_local', rand())")  # no sorting key: nothing to keep together


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("CREATE MATERIALIZED VIEW mv TO t AS SELECT 1", "materialized views"),
        ("CREATE TABLE x ON CLUSTER c (a String) ENGINE = MergeTree ORDER BY a", "without ON CLUSTER"),
        ("RENAME TABLE a TO b", "cannot rewrite"),
    ],
)
def test_statements_cluster_mode_cannot_rewrite_are_refused_with_the_reason(
    statement: str, problem: str
) -> None:
    with pytest.raises(StoreError, match=problem):
        _ddl().rewrite(statement, source="0099_x")


def test_a_cluster_name_that_is_not_a_name_is_refused() -> None:
    with pytest.raises(StoreError, match="COSTLINE_CLICKHOUSE_CLUSTER"):
        ClusterDDL.for_migrations("prod'; DROP TABLE x; --", DATABASE, load_migrations())


@pytest.mark.integration
def test_every_rewritten_statement_parses_in_clickhouse(chdb_client: Client) -> None:
    statements = [_CREATE_MIGRATIONS_TABLE] + [s for _, s in _every_file_statement()]
    ddl = _ddl()
    rewritten = [r for s in statements for r in ddl.rewrite(s)]
    assert len(rewritten) > len(statements)
    for sql in rewritten:
        formatted = chdb_client.command("SELECT formatQuery({sql:String})", parameters={"sql": sql})
        assert isinstance(formatted, str)
        if not sql.startswith(("INSERT", "SELECT", "WITH")):
            assert f"ON CLUSTER {CLUSTER}" in formatted, sql


@pytest.mark.integration
def test_cluster_mode_against_a_store_without_that_cluster_fails_clearly(chdb_client: Client) -> None:
    with pytest.raises(StoreError, match=r"cluster 'nowhere'.*COSTLINE_CLICKHOUSE_CLUSTER"):
        apply_migrations(chdb_client, cluster="nowhere")
    assert apply_migrations(chdb_client) == []  # the single-node store is untouched
