"""Exact rollups: whole hours recomputed from deduplicated events, never summed on insert.

A materialized view sums every inserted row, duplicates included, and a crash between the
insert into the base table and the view leaves them apart. Here a rollup row is a pure function
of `usage_events FINAL` for its hour, so recomputing is idempotent and a crash at any point is
repaired by the next refresh. Which hours to recompute is found from the data itself: every
hour holding rows ingested since the last computation (a watermark on `ingested_at`, with a
safety margin for inserts that straddled it). No state lives outside ClickHouse.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from clickhouse_connect.driver import Client

logger = logging.getLogger(__name__)

#: Rows ingested this long before the last computation are looked at again.
WATERMARK_MARGIN = timedelta(seconds=60)

#: Positional (INSERT ... SELECT): no aliases, so no alias can shadow a column of the same name.
_SUMS = """
    count(),
    countIf(ifNull(repriced_status, pricing_status) = 'unpriced'),
    countIf(ifNull(repriced_status, pricing_status) = 'partial'),
    sum(tokens_input_uncached),
    sum(tokens_cache_read),
    sum(tokens_cache_write_5m + tokens_cache_write_30m + tokens_cache_write_1h + tokens_cache_write_12h),
    sum(tokens_output_visible),
    sum(tokens_output_reasoning),
    sum(list_cost),
    sum(effective_cost),
    sum(ifNull(repriced_effective_cost, effective_cost))"""

_RESUM = """
    sum(events),
    sum(unpriced_events),
    sum(partial_events),
    sum(tokens_input_uncached),
    sum(tokens_cache_read),
    sum(tokens_cache_write),
    sum(tokens_output_visible),
    sum(tokens_output_reasoning),
    sum(list_cost),
    sum(as_priced_effective_cost),
    sum(effective_cost)"""

#: When the rollups last caught up: the oldest of the tables' last computations, so a crash between
#: two of the inserts leaves those hours dirty until all are written (and a new, empty rollup table
#: makes every hour dirty once).
WATERMARK_SQL = (
    "least((SELECT max(computed_at) FROM usage_rollup_hourly),"
    " (SELECT max(computed_at) FROM usage_rollup_chargeback_hourly),"
    " (SELECT max(computed_at) FROM usage_rollup_daily))"
)

#: Usage tagged `shared: true` (or 1, yes) is shared cost, allocated like unattributed cost.
SHARED_TAG = "shared"
SHARED_TAG_VALUES: tuple[str, ...] = ("true", "1", "yes")
#: SQL of the shared flag; binds `shared_values`.
SHARED_SQL = f"tags['{SHARED_TAG}'] IN {{shared_values:Array(String)}}"

DIRTY_HOURS_SQL = f"""
SELECT DISTINCT toStartOfHour(occurred_at) AS hour
FROM usage_events
WHERE ingested_at >= {WATERMARK_SQL} - toIntervalSecond({{margin:UInt32}})
ORDER BY hour"""

REFRESH_HOURLY_SQL = f"""
INSERT INTO usage_rollup_hourly
SELECT toStartOfHour(occurred_at) AS hour, team, workload, provider, model,{_SUMS},
    now64(3) AS computed_at
FROM usage_events FINAL
WHERE toStartOfHour(occurred_at) IN {{hours:Array(DateTime('UTC'))}}
  AND occurred_at >= {{first:DateTime('UTC')}} AND occurred_at < {{last:DateTime('UTC')}} + INTERVAL 1 HOUR
GROUP BY hour, team, workload, provider, model"""

REFRESH_CHARGEBACK_SQL = f"""
INSERT INTO usage_rollup_chargeback_hourly
SELECT toStartOfHour(occurred_at) AS hour, team, cost_center, {SHARED_SQL} AS shared,
    count(),
    countIf(ifNull(repriced_status, pricing_status) = 'unpriced'),
    countIf(ifNull(repriced_status, pricing_status) = 'partial'),
    sum(ifNull(repriced_effective_cost, effective_cost)),
    now64(3) AS computed_at
FROM usage_events FINAL
WHERE toStartOfHour(occurred_at) IN {{hours:Array(DateTime('UTC'))}}
  AND occurred_at >= {{first:DateTime('UTC')}} AND occurred_at < {{last:DateTime('UTC')}} + INTERVAL 1 HOUR
GROUP BY hour, team, cost_center, shared"""

REFRESH_DAILY_SQL = f"""
INSERT INTO usage_rollup_daily
SELECT toDate(hour) AS day, team, workload, provider, model,{_RESUM},
    now64(3) AS computed_at
FROM usage_rollup_hourly FINAL
WHERE toDate(hour) IN {{days:Array(Date)}}
GROUP BY day, team, workload, provider, model"""


def dirty_hours(client: Client) -> list[datetime]:
    """Hours holding rows ingested since the last rollup computation (all hours the first time)."""
    result = client.query(DIRTY_HOURS_SQL, parameters={"margin": int(WATERMARK_MARGIN.total_seconds())})
    return [row[0] for row in result.result_rows]


def refresh_hours(client: Client, hours: list[datetime]) -> None:
    """Recompute the hourly rollups of `hours` and the daily rollup of their days."""
    if not hours:
        return
    window = {"hours": hours, "first": min(hours), "last": max(hours)}
    client.command(REFRESH_HOURLY_SQL, parameters=window)
    client.command(REFRESH_CHARGEBACK_SQL, parameters=window | {"shared_values": list(SHARED_TAG_VALUES)})
    # the daily rollup last: the watermark counts from the oldest table, so a crash before this
    # insert leaves these hours dirty
    days = sorted({hour.date() for hour in hours})
    client.command(REFRESH_DAILY_SQL, parameters={"days": days})


def refresh_rollups(client: Client) -> int:
    """Bring the rollups up to date with the events; returns the number of hours recomputed."""
    hours = dirty_hours(client)
    refresh_hours(client, hours)
    if hours:
        logger.debug("recomputed rollups of %d hour(s) from %s", len(hours), hours[0])
    return len(hours)
