"""Report queries: small builders that return (sql, parameters), and runners that execute them.

Every value reaches ClickHouse as a server-side parameter (`{name:Type}` placeholders bound by
clickhouse-connect), never through string formatting; the only words spliced into SQL are column
names taken from a fixed whitelist. Every query reads `usage_events FINAL`, so an event written
twice (Kafka redelivery, a retried batch) counts once even before ClickHouse merges the copies.
Time ranges are half-open: `since <= occurred_at < until`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.schemas.errors import StoreError
from costline.schemas.usage_event import TOKEN_BUCKETS

logger = logging.getLogger(__name__)

TABLE = "usage_events"

#: Dimensions spend can be grouped by, each the name of its column.
DIMENSIONS: tuple[str, ...] = ("team", "workload", "provider", "model", "project", "cost_center")

_TIME_TYPE = "DateTime64(6, 'UTC')"

_TOTALS = ",\n".join(
    [
        "    count() AS events",
        "    countIf(ifNull(repriced_status, pricing_status) = 'unpriced') AS unpriced_events",
        "    countIf(ifNull(repriced_status, pricing_status) = 'partial') AS partial_events",
        "    sum(list_cost) AS list_cost_total",
        "    sum(ifNull(repriced_effective_cost, effective_cost)) AS effective_cost_total",
        "    sum(effective_cost) AS as_priced_cost_total",
        *(f"    sum(tokens_{bucket}) AS tokens_{bucket}_total" for bucket in TOKEN_BUCKETS),
    ]
)


class Query(NamedTuple):
    """SQL with `{name:Type}` placeholders and the values to bind to them."""

    sql: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class SpendTotals:
    """Events, money and tokens of a slice of usage; costs are exact Decimals in USD.

    `effective_cost` is the current cost (re-priced where a re-pricing happened); `as_priced_cost`
    the cost when the events were ingested.
    """

    events: int
    unpriced_events: int
    partial_events: int
    list_cost: Decimal
    effective_cost: Decimal
    as_priced_cost: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def repricing_difference(self) -> Decimal:
        """Current (re-priced) cost minus the cost as priced at ingestion."""
        return self.effective_cost - self.as_priced_cost

    @property
    def total_tokens(self) -> int:
        """Every token in every bucket."""
        return sum(self.tokens.values())


@dataclass(frozen=True)
class SpendGroup:
    """Spend of one value of a dimension (empty string: unattributed)."""

    key: str
    totals: SpendTotals


def spend_summary(since: datetime, until: datetime, teams: Sequence[str] | None = None) -> Query:
    """Totals over a time range, optionally only for some teams (an empty list matches nothing)."""
    where, parameters = _where(since, until, teams)
    sql = f"SELECT\n{_TOTALS}\nFROM {TABLE} FINAL\n{where}"
    return Query(sql, parameters)


def spend_by(dimension: str, since: datetime, until: datetime, teams: Sequence[str] | None = None) -> Query:
    """Totals per value of a dimension, most expensive first."""
    column = _dimension_column(dimension)
    where, parameters = _where(since, until, teams)
    sql = (
        f"SELECT\n    {column},\n{_TOTALS}\nFROM {TABLE} FINAL\n{where}\n"
        f"GROUP BY {column}\nORDER BY effective_cost_total DESC, {column} ASC"
    )
    return Query(sql, parameters)


def count_events() -> Query:
    """Distinct events stored (duplicates collapsed)."""
    return Query(f"SELECT count() AS events FROM {TABLE} FINAL", {})


def run(client: Client, query: Query) -> list[dict[str, Any]]:
    """Execute a built query; rows as dicts keyed by column alias."""
    try:
        result = client.query(query.sql, parameters=query.parameters)
    except ClickHouseError as exc:
        raise StoreError(f"store query failed: {exc}; check that the migrations were applied") from exc
    return list(result.named_results())


def fetch_spend_summary(
    client: Client, since: datetime, until: datetime, teams: Sequence[str] | None = None
) -> SpendTotals:
    """Run `spend_summary`."""
    rows = run(client, spend_summary(since, until, teams))
    return _totals(rows[0])


def fetch_spend_by(
    client: Client, dimension: str, since: datetime, until: datetime, teams: Sequence[str] | None = None
) -> list[SpendGroup]:
    """Run `spend_by`."""
    rows = run(client, spend_by(dimension, since, until, teams))
    return [SpendGroup(key=str(row[dimension]), totals=_totals(row)) for row in rows]


def fetch_count_events(client: Client) -> int:
    """Run `count_events`."""
    return int(run(client, count_events())[0]["events"])


def _where(since: datetime, until: datetime, teams: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    parameters: dict[str, Any] = {"since": _utc(since, "since"), "until": _utc(until, "until")}
    conditions = [
        f"occurred_at >= {{since:{_TIME_TYPE}}}",
        f"occurred_at < {{until:{_TIME_TYPE}}}",
    ]
    if teams is not None:
        if isinstance(teams, str):
            raise StoreError(f"teams must be a list of team names, not the string {teams!r}")
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = [str(team) for team in teams]
    return "WHERE " + "\n  AND ".join(conditions), parameters


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{name} must be a timezone-aware datetime, e.g. datetime(2026, 11, 1, tzinfo=UTC)")
    return value.astimezone(UTC)


def _dimension_column(dimension: str) -> str:
    if dimension not in DIMENSIONS:
        raise StoreError(f"cannot group spend by {dimension!r}; use one of {', '.join(DIMENSIONS)}")
    return dimension


def _totals(row: dict[str, Any]) -> SpendTotals:
    return SpendTotals(
        events=int(row["events"]),
        unpriced_events=int(row["unpriced_events"]),
        partial_events=int(row["partial_events"]),
        list_cost=_decimal(row["list_cost_total"]),
        effective_cost=_decimal(row["effective_cost_total"]),
        as_priced_cost=_decimal(row["as_priced_cost_total"]),
        tokens={bucket: int(row[f"tokens_{bucket}_total"]) for bucket in TOKEN_BUCKETS},
    )


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, Decimal):  # a float here would mean money was rounded on the way
        raise StoreError(f"expected an exact Decimal from the store, got {type(value).__name__} {value!r}")
    return value
