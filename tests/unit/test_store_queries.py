"""Exact SQL of the store's query builders, and the migration statement splitter (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from costline.pipeline.store.migrations import load_migrations, split_statements
from costline.pipeline.store.queries import DIMENSIONS, Query, count_events, spend_by, spend_summary
from costline.schemas.errors import StoreError

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)

TOTALS = """\
    count() AS events,
    countIf(ifNull(repriced_status, pricing_status) = 'unpriced') AS unpriced_events,
    countIf(ifNull(repriced_status, pricing_status) = 'partial') AS partial_events,
    sum(list_cost) AS list_cost_total,
    sum(ifNull(repriced_effective_cost, effective_cost)) AS effective_cost_total,
    sum(effective_cost) AS as_priced_cost_total,
    sum(tokens_input_uncached) AS tokens_input_uncached_total,
    sum(tokens_cache_read) AS tokens_cache_read_total,
    sum(tokens_cache_write_5m) AS tokens_cache_write_5m_total,
    sum(tokens_cache_write_30m) AS tokens_cache_write_30m_total,
    sum(tokens_cache_write_1h) AS tokens_cache_write_1h_total,
    sum(tokens_cache_write_12h) AS tokens_cache_write_12h_total,
    sum(tokens_output_visible) AS tokens_output_visible_total,
    sum(tokens_output_reasoning) AS tokens_output_reasoning_total"""


def test_spend_summary_for_every_team() -> None:
    assert spend_summary(SINCE, UNTIL) == Query(
        f"""\
SELECT
{TOTALS}
FROM usage_events FINAL
WHERE occurred_at >= {{since:DateTime64(6, 'UTC')}}
  AND occurred_at < {{until:DateTime64(6, 'UTC')}}""",
        {"since": SINCE, "until": UNTIL},
    )


def test_spend_summary_scoped_to_teams_binds_them_as_one_array_parameter() -> None:
    hostile = ["x' OR 1=1 --", "'; DROP TABLE usage_events; --"]
    sql, parameters = spend_summary(SINCE, UNTIL, hostile)
    assert sql == (
        f"""\
SELECT
{TOTALS}
FROM usage_events FINAL
WHERE occurred_at >= {{since:DateTime64(6, 'UTC')}}
  AND occurred_at < {{until:DateTime64(6, 'UTC')}}
  AND team IN {{teams:Array(String)}}"""
    )
    assert parameters == {"since": SINCE, "until": UNTIL, "teams": hostile}
    assert "DROP" not in sql
    assert "OR 1=1" not in sql


def test_an_empty_team_list_still_filters_and_so_matches_nothing() -> None:
    sql, parameters = spend_summary(SINCE, UNTIL, [])
    assert sql.endswith("AND team IN {teams:Array(String)}")
    assert parameters["teams"] == []


def test_spend_by_groups_by_the_whitelisted_column() -> None:
    assert spend_by("cost_center", SINCE, UNTIL, ["search"]) == Query(
        f"""\
SELECT
    cost_center,
{TOTALS}
FROM usage_events FINAL
WHERE occurred_at >= {{since:DateTime64(6, 'UTC')}}
  AND occurred_at < {{until:DateTime64(6, 'UTC')}}
  AND team IN {{teams:Array(String)}}
GROUP BY cost_center
ORDER BY effective_cost_total DESC, cost_center ASC""",
        {"since": SINCE, "until": UNTIL, "teams": ["search"]},
    )


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_spend_by_every_dimension(dimension: str) -> None:
    sql, _ = spend_by(dimension, SINCE, UNTIL)
    assert sql.startswith(f"SELECT\n    {dimension},\n")
    assert f"GROUP BY {dimension}\nORDER BY effective_cost_total DESC, {dimension} ASC" in sql


@pytest.mark.parametrize("dimension", ["user_hash", "team; DROP TABLE usage_events", "TEAM", ""])
def test_spend_by_refuses_other_dimensions(dimension: str) -> None:
    with pytest.raises(StoreError, match="cannot group spend by"):
        spend_by(dimension, SINCE, UNTIL)


def test_count_events() -> None:
    assert count_events() == Query("SELECT count() AS events FROM usage_events FINAL", {})


def test_every_query_reads_deduplicated_rows() -> None:
    queries = [spend_summary(SINCE, UNTIL), count_events()]
    queries += [spend_by(d, SINCE, UNTIL) for d in DIMENSIONS]
    assert all("FROM usage_events FINAL" in query.sql for query in queries)


def test_times_are_bound_in_utc_and_must_carry_a_zone() -> None:
    paris = timezone(timedelta(hours=1))
    _, parameters = spend_summary(datetime(2026, 11, 1, 1, 0, tzinfo=paris), UNTIL)
    assert parameters["since"] == SINCE
    assert parameters["since"].tzinfo is UTC
    with pytest.raises(StoreError, match="timezone-aware"):
        spend_summary(datetime(2026, 11, 1), UNTIL)


def test_a_single_team_string_is_refused_rather_than_split_into_letters() -> None:
    with pytest.raises(StoreError, match="list of team names"):
        spend_summary(SINCE, UNTIL, "search")  # type: ignore[arg-type]


# --- migration files ------------------------------------------------------------------------


def test_statements_split_on_semicolons_outside_quotes_and_comments() -> None:
    sql = """
-- a comment; with a semicolon
CREATE TABLE a (s String DEFAULT ';', t String DEFAULT 'it''s; \\' ;') ENGINE = Memory;
/* block; comment */
CREATE TABLE `b;c` ("d;e" UInt8) ENGINE = Memory
;
-- trailing comment only;
"""
    assert split_statements(sql) == [
        "-- a comment; with a semicolon\n"
        "CREATE TABLE a (s String DEFAULT ';', t String DEFAULT 'it''s; \\' ;') ENGINE = Memory",
        '/* block; comment */\nCREATE TABLE `b;c` ("d;e" UInt8) ENGINE = Memory',
    ]


def test_a_statement_without_a_final_semicolon_is_kept() -> None:
    assert split_statements("SELECT 1;SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert split_statements(" ;; -- nothing\n") == []


@pytest.mark.parametrize("sql", ["SELECT 'open", "SELECT 1 /* open", 'SELECT "x'])
def test_unterminated_quotes_and_comments_are_errors(sql: str) -> None:
    with pytest.raises(StoreError, match="unterminated"):
        split_statements(sql, source="0009_broken")


def test_shipped_migrations_are_numbered_and_parse() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == [f"{n:04d}" for n in range(1, len(migrations) + 1)]
    assert migrations[0].label == "0001_priced_events"
    assert all(m.statements() for m in migrations)
    assert all(len(m.checksum) == 64 for m in migrations)


def test_a_crlf_checkout_has_the_same_checksum() -> None:
    migration = load_migrations()[0]
    crlf = type(migration)(migration.version, migration.name, migration.sql.replace("\n", "\r\n"))
    assert crlf.checksum == migration.checksum
