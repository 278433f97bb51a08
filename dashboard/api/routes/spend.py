"""Spend: the summary with its month-end forecast, spend by dimension, time series, usage stats.

Handlers only translate: the scope's teams and the range go to `costline.dashboard.api.queries`
(one store call per request), and exact results come back as JSON with money as decimal strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from clickhouse_connect.driver import Client
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from costline.dashboard.api import queries
from costline.dashboard.api.auth import Scope
from costline.dashboard.api.params import Range, money
from costline.dashboard.api.store import Store

router = APIRouter(tags=["spend"])

Dimension = Literal["team", "workload", "provider", "model", "project", "cost_center"]
Granularity = Literal["hour", "day", "month"]
#: Hourly series over longer ranges would be tens of thousands of points; ask for days instead.
MAX_HOURLY_DAYS = 92

Money = Annotated[str, Field(pattern=r"^-?[0-9]+(\.[0-9]+)?$", examples=["12.345000000000"])]
Ratio = Annotated[
    str | None, Field(pattern=r"^[0-9]+(\.[0-9]+)?$", description="Decimal string between 0 and 1, or null.")
]


class Tokens(BaseModel):
    """Tokens per disjoint bucket (their sum is every token)."""

    input_uncached: int
    cache_read: int
    cache_write_5m: int
    cache_write_30m: int
    cache_write_1h: int
    cache_write_12h: int
    output_visible: int
    output_reasoning: int


class ForecastOut(BaseModel):
    """Linear burn: spend of the month so far, extended at the same rate to the month's end."""

    period_start: datetime
    period_end: datetime
    spent: Money
    forecast_cost: Money
    method: str = Field(description="`linear`: spent / elapsed time × the whole month.")


class Summary(BaseModel):
    """Totals of a range, and the forecast for the calendar month holding its end."""

    since: datetime
    until: datetime
    events: int
    unpriced_events: int
    partial_events: int
    list_cost: Money
    effective_cost: Money = Field(description="Current cost (re-priced where a re-pricing happened).")
    as_priced_cost: Money = Field(description="Cost as priced when the events were ingested.")
    repricing_difference: Money = Field(description="effective_cost − as_priced_cost.")
    tokens: Tokens
    forecast: ForecastOut


class SpendRow(BaseModel):
    """Spend of one value of the dimension ('' = unattributed)."""

    key: str
    events: int
    unpriced_events: int
    partial_events: int
    list_cost: Money
    effective_cost: Money
    as_priced_cost: Money
    tokens: Tokens


class Spend(BaseModel):
    """Spend per value of `group_by`, most expensive first."""

    group_by: Dimension
    rows: list[SpendRow]


class Point(BaseModel):
    """One time bucket (start, UTC) of one key (null when the series is not grouped)."""

    bucket: datetime
    key: str | None
    events: int
    unpriced_events: int
    list_cost: Money
    effective_cost: Money


class Timeseries(BaseModel):
    """Buckets that hold usage, oldest first (empty buckets are left out)."""

    granularity: Granularity
    group_by: Dimension | None
    points: list[Point]


class UsageStatsRow(BaseModel):
    """How one value of the dimension uses tokens: caching and reasoning."""

    key: str
    events: int
    cache_hit_rate: Ratio = Field(
        description="Cache-read share of input tokens over events that report cache usage; "
        "null when none does."
    )
    cache_reported_events: int = Field(
        description="Events with cache reads or writes, or that asked for caching."
    )
    reasoning_share: Ratio = Field(description="Reasoning share of output tokens; null without output.")
    tokens: Tokens
    effective_cost: Money


class UsageStats(BaseModel):
    """Usage stats per value of `group_by`, most expensive first."""

    group_by: Dimension
    rows: list[UsageStatsRow]


GroupBy = Annotated[Dimension, Query(description="The dimension to group by.")]


@router.get("/summary", response_model=Summary)
async def summary(scope: Scope, window: Range, store: Store) -> Summary:
    """Totals over `since`..`until` (default: month to date) and the month-end forecast."""
    profile, forecast = await store.run(summary_data, window.since, window.until, scope.teams)
    return summary_out(window.since, window.until, profile, forecast)


@router.get("/spend", response_model=Spend)
async def spend(scope: Scope, window: Range, store: Store, group_by: GroupBy = "team") -> Spend:
    """Spend per team, workload, provider, model, project or cost center; '' is unattributed."""
    rows = await store.run(queries.fetch_profiles, (group_by,), window.since, window.until, scope.teams)
    return Spend(group_by=group_by, rows=[spend_row(key, p) for key, p in queries.by_cost(rows)])


@router.get("/timeseries", response_model=Timeseries)
async def timeseries(
    scope: Scope,
    window: Range,
    store: Store,
    granularity: Annotated[Granularity, Query(description="Bucket size (UTC).")] = "day",
    group_by: Annotated[Dimension | None, Query(description="Split each bucket by this dimension.")] = None,
) -> Timeseries:
    """Events and cost per hour, day or month, optionally per value of a dimension."""
    if granularity == "hour" and window.until - window.since > timedelta(days=MAX_HOURLY_DAYS):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"hourly series span at most {MAX_HOURLY_DAYS} days; use granularity=day for longer ranges",
        )
    points = await store.run(
        queries.fetch_timeseries, granularity, group_by, window.since, window.until, scope.teams
    )
    return Timeseries(
        granularity=granularity,
        group_by=group_by,
        points=[point_out(p, group_by is not None) for p in points],
    )


@router.get("/usage-stats", response_model=UsageStats)
async def usage_stats(scope: Scope, window: Range, store: Store, group_by: GroupBy = "team") -> UsageStats:
    """Cache hit rate and reasoning share per value of a dimension."""
    rows = await store.run(queries.fetch_profiles, (group_by,), window.since, window.until, scope.teams)
    return UsageStats(group_by=group_by, rows=[usage_row(key, p) for key, p in queries.by_cost(rows)])


# ----------------------------------------------------------------------------- shared with teams.py


def summary_data(
    client: Client, since: datetime, until: datetime, teams: Sequence[str] | None
) -> tuple[queries.Profile, queries.Forecast]:
    """The range's profile and the forecast of the month holding its end (on the store's thread)."""
    profile = queries.fetch_profile(client, since, until, teams)
    return profile, forecast_for(client, since, until, teams, profile.effective_cost)


def forecast_for(
    client: Client, since: datetime, until: datetime, teams: Sequence[str] | None, range_cost: Decimal
) -> queries.Forecast:
    """Linear forecast to the end of `until`'s month; reuses the range's cost when it starts the month."""
    period_start, period_end = queries.forecast_period(until)
    if since == period_start:
        spent = range_cost
    else:
        spent = queries.fetch_effective_cost(client, period_start, until, teams)
    return queries.linear_forecast(period_start, period_end, min(until, datetime.now(UTC)), spent)


def summary_out(
    since: datetime, until: datetime, profile: queries.Profile, forecast: queries.Forecast
) -> Summary:
    """The JSON of a summary."""
    return Summary(
        since=since,
        until=until,
        events=profile.events,
        unpriced_events=profile.unpriced_events,
        partial_events=profile.partial_events,
        list_cost=money(profile.list_cost),
        effective_cost=money(profile.effective_cost),
        as_priced_cost=money(profile.as_priced_cost),
        repricing_difference=money(profile.effective_cost - profile.as_priced_cost),
        tokens=Tokens(**profile.tokens),
        forecast=ForecastOut(
            period_start=forecast.period_start,
            period_end=forecast.period_end,
            spent=money(forecast.spent),
            forecast_cost=money(forecast.forecast_cost),
            method=forecast.method,
        ),
    )


def spend_row(key: str, profile: queries.Profile) -> SpendRow:
    """The JSON of one spend row."""
    return SpendRow(
        key=key,
        events=profile.events,
        unpriced_events=profile.unpriced_events,
        partial_events=profile.partial_events,
        list_cost=money(profile.list_cost),
        effective_cost=money(profile.effective_cost),
        as_priced_cost=money(profile.as_priced_cost),
        tokens=Tokens(**profile.tokens),
    )


def usage_row(key: str, profile: queries.Profile) -> UsageStatsRow:
    """The JSON of one usage-stats row."""
    hit_rate, reasoning = profile.cache_hit_rate, profile.reasoning_share
    return UsageStatsRow(
        key=key,
        events=profile.events,
        cache_hit_rate=money(hit_rate) if hit_rate is not None else None,
        cache_reported_events=profile.cache_reported_events,
        reasoning_share=money(reasoning) if reasoning is not None else None,
        tokens=Tokens(**profile.tokens),
        effective_cost=money(profile.effective_cost),
    )


def point_out(point: queries.Point, grouped: bool) -> Point:
    """The JSON of one time-series point."""
    return Point(
        bucket=point.bucket,
        key=point.key if grouped else None,
        events=point.events,
        unpriced_events=point.unpriced_events,
        list_cost=money(point.list_cost),
        effective_cost=money(point.effective_cost),
    )
