"""Spend of budgets, read from the deduplicated priced events (`usage_events FINAL`), on event time.

No counter is kept anywhere: a budget's spend is the sum of the current cost
(`ifNull(repriced_effective_cost, effective_cost)`) of the events whose `occurred_at` falls in its
period and whose attribution matches its scope. A redelivered or replayed event is collapsed by
FINAL, a re-priced one counts at its new price, and a restarted worker reads the same number.

All budgets of one evaluation are summed in one pass (`sumIf` per budget) so the check costs one
scan per tick, not one per budget. Values reach ClickHouse only as server-side parameters; the
only words spliced into the SQL are fixed column names and parameter names built from indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client

from costline.pipeline.budgets.config import BudgetScope
from costline.pipeline.store.queries import Query, run
from costline.schemas.errors import StoreError

TABLE = "usage_events"
COST = "ifNull(repriced_effective_cost, effective_cost)"
_TIME = "DateTime64(6, 'UTC')"
#: Dimensions an alert names as "driving" a budget's spend.
DRIVER_DIMENSIONS: tuple[str, ...] = ("model", "workload", "team", "project")


@dataclass(frozen=True)
class SpendWindow:
    """A scope and a half-open UTC range of event time."""

    scope: BudgetScope
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Spend:
    """Current cost and distinct events of one window."""

    spent: Decimal
    events: int


@dataclass(frozen=True)
class Driver:
    """One value of a dimension and what it spent in a window."""

    key: str
    cost: Decimal


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _scope_conditions(scope: BudgetScope, prefix: str, parameters: dict[str, Any]) -> list[str]:
    conditions = []
    for column, value in scope.items():
        name = f"{prefix}_{column}"
        conditions.append(f"{column} = {{{name}:String}}")
        parameters[name] = value
    return conditions


def spend_query(windows: Sequence[SpendWindow]) -> Query:
    """One query answering `spent_<i>` and `events_<i>` for every window, in order."""
    if not windows:
        raise StoreError("spend_query needs at least one window")
    parameters: dict[str, Any] = {}
    columns = []
    for i, window in enumerate(windows):
        parameters[f"s{i}"] = _utc(window.start, "start")
        parameters[f"e{i}"] = _utc(window.end, "end")
        condition = " AND ".join(
            [
                f"occurred_at >= {{s{i}:{_TIME}}}",
                f"occurred_at < {{e{i}:{_TIME}}}",
                *_scope_conditions(window.scope, f"w{i}", parameters),
            ]
        )
        columns.append(f"    sumIf({COST}, {condition}) AS spent_{i}")
        columns.append(f"    countIf({condition}) AS events_{i}")
    parameters["since"] = min(parameters[f"s{i}"] for i in range(len(windows)))
    parameters["until"] = max(parameters[f"e{i}"] for i in range(len(windows)))
    where = [f"occurred_at >= {{since:{_TIME}}}", f"occurred_at < {{until:{_TIME}}}"]
    teams = [window.scope.team for window in windows]
    if all(team is not None for team in teams):  # every window names a team: let the key prune
        where.append("team IN {teams:Array(String)}")
        parameters["teams"] = sorted({str(team) for team in teams})
    sql = "SELECT\n" + ",\n".join(columns) + f"\nFROM {TABLE} FINAL\nWHERE " + "\n  AND ".join(where)
    return Query(sql, parameters)


def fetch_spend(client: Client, windows: Sequence[SpendWindow]) -> list[Spend]:
    """Spend of every window, in order (one scan)."""
    if not windows:
        return []
    row = run(client, spend_query(windows))[0]
    return [Spend(_decimal(row[f"spent_{i}"]), int(row[f"events_{i}"])) for i in range(len(windows))]


def drivers_query(window: SpendWindow, dimension: str, limit: int) -> Query:
    """The `limit` values of `dimension` that spent most in the window."""
    if dimension not in DRIVER_DIMENSIONS:
        raise StoreError(f"cannot rank spend by {dimension!r}; use one of {', '.join(DRIVER_DIMENSIONS)}")
    parameters: dict[str, Any] = {
        "start": _utc(window.start, "start"),
        "end": _utc(window.end, "end"),
        "limit": int(limit),
    }
    where = [
        f"occurred_at >= {{start:{_TIME}}}",
        f"occurred_at < {{end:{_TIME}}}",
        *_scope_conditions(window.scope, "w", parameters),
    ]
    sql = (
        f"SELECT {dimension} AS key, sum({COST}) AS cost\nFROM {TABLE} FINAL\nWHERE "
        + "\n  AND ".join(where)
        + f"\nGROUP BY {dimension}\nORDER BY cost DESC, key ASC\nLIMIT {{limit:UInt32}}"
    )
    return Query(sql, parameters)


def fetch_drivers(client: Client, window: SpendWindow, dimension: str, limit: int = 3) -> list[Driver]:
    """Run `drivers_query`."""
    return [
        Driver(str(row["key"]), _decimal(row["cost"]))
        for row in run(client, drivers_query(window, dimension, limit))
    ]


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, Decimal):  # a float would mean money was rounded on the way
        raise StoreError(f"expected an exact Decimal from the store, got {type(value).__name__} {value!r}")
    return value
