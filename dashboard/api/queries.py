"""Report SQL of the read API: usage profiles, time series and the event drill-down.

Every value is a server-side parameter; the only words spliced into SQL come from fixed
whitelists (dimension columns, bucket expressions). Results are exact:

* Aggregates that carry token buckets (summary, spend, usage stats) read `usage_events FINAL`:
  the rollups sum the cache-write lifetimes into one column, and the API reports every bucket.
  Scoped to a team they read only that team's slice of the primary key, which is what keeps the
  team view fast.
* Time series need no tokens, so they read the rollups where the rollups are known to be
  complete, and `usage_events FINAL` for the rest: whole days from `usage_rollup_daily`, whole
  hours from `usage_rollup_hourly`, and from the base table the partial hours at the range's
  edges plus every "dirty" hour, i.e. every hour holding rows ingested since the last rollup
  computation (the same watermark and margin `rollups.refresh_rollups` uses). A rollup row is a
  pure function of `usage_events FINAL` for its hour, so the union equals the base table exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from clickhouse_connect.driver import Client

from costline.pipeline.store.queries import DIMENSIONS, TABLE, Query, run
from costline.pipeline.store.rollups import WATERMARK_MARGIN, WATERMARK_SQL
from costline.schemas.errors import StoreError
from costline.schemas.usage_event import TOKEN_BUCKETS

#: Dimensions the rollup tables keep (time series by these read the rollups).
ROLLUP_DIMENSIONS: tuple[str, ...] = ("team", "workload", "provider", "model")

Granularity = Literal["hour", "day", "month"]
GRANULARITIES: tuple[str, ...] = ("hour", "day", "month")

_TIME = "DateTime64(6, 'UTC')"
_HOUR = "DateTime('UTC')"
_CURRENT_STATUS = "ifNull(repriced_status, pricing_status)"
_CURRENT_COST = "ifNull(repriced_effective_cost, effective_cost)"
_CACHE_WRITE = " + ".join(f"tokens_{b}" for b in TOKEN_BUCKETS if b.startswith("cache_write"))
_INPUT_ALL = f"tokens_input_uncached + tokens_cache_read + {_CACHE_WRITE}"
#: An event "reports cache usage" when it carries cache tokens or asked for caching.
_CACHE_REPORTED = f"(tokens_cache_read + {_CACHE_WRITE} > 0 OR ifNull(caching_requested, false))"

_PROFILE_SUMS = ",\n".join(
    [
        "    count() AS events",
        f"    countIf({_CURRENT_STATUS} = 'unpriced') AS unpriced_events",
        f"    countIf({_CURRENT_STATUS} = 'partial') AS partial_events",
        "    sum(list_cost) AS list_cost_sum",
        f"    sum({_CURRENT_COST}) AS effective_cost_sum",
        "    sum(effective_cost) AS as_priced_cost_sum",
        *(f"    sum(tokens_{bucket}) AS tokens_{bucket}_sum" for bucket in TOKEN_BUCKETS),
        f"    countIf({_CACHE_REPORTED}) AS cache_reported_events",
        f"    sumIf(tokens_cache_read, {_CACHE_REPORTED}) AS cache_reported_read",
        f"    sumIf({_INPUT_ALL}, {_CACHE_REPORTED}) AS cache_reported_input",
    ]
)

#: Aliases end in `_sum` so that none shadows the column it sums.
#: Ratios (cache hit rate, reasoning share) are given to this many decimals.
RATIO_PLACES = Decimal("0.000001")
_PICODOLLAR = Decimal("0.000000000001")


# ----------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    """Exact counts, money and tokens of a slice of usage, plus the inputs of the usage ratios."""

    events: int = 0
    unpriced_events: int = 0
    partial_events: int = 0
    list_cost: Decimal = Decimal(0)
    effective_cost: Decimal = Decimal(0)
    as_priced_cost: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_BUCKETS, 0))
    cache_reported_events: int = 0
    cache_reported_read: int = 0
    cache_reported_input: int = 0

    def add(self, other: Profile) -> None:
        """Fold `other` into this profile (sums only, so folding is exact)."""
        self.events += other.events
        self.unpriced_events += other.unpriced_events
        self.partial_events += other.partial_events
        self.list_cost += other.list_cost
        self.effective_cost += other.effective_cost
        self.as_priced_cost += other.as_priced_cost
        for bucket in TOKEN_BUCKETS:
            self.tokens[bucket] += other.tokens[bucket]
        self.cache_reported_events += other.cache_reported_events
        self.cache_reported_read += other.cache_reported_read
        self.cache_reported_input += other.cache_reported_input

    @property
    def cache_hit_rate(self) -> Decimal | None:
        """Share of input tokens read from cache, over events that report cache usage; None without any."""
        if not self.cache_reported_events or not self.cache_reported_input:
            return None
        return ratio(self.cache_reported_read, self.cache_reported_input)

    @property
    def reasoning_share(self) -> Decimal | None:
        """Share of output tokens spent on reasoning; None without output tokens."""
        output = self.tokens["output_visible"] + self.tokens["output_reasoning"]
        return ratio(self.tokens["output_reasoning"], output) if output else None


def ratio(part: int, whole: int) -> Decimal:
    """`part / whole` rounded half-even to `RATIO_PLACES`."""
    return (Decimal(part) / Decimal(whole)).quantize(RATIO_PLACES, rounding=ROUND_HALF_EVEN)


def profile_query(
    group_by: Sequence[str], since: datetime, until: datetime, teams: Sequence[str] | None
) -> Query:
    """Profiles per combination of `group_by` dimensions (none: one row), from `usage_events FINAL`."""
    columns = [_dimension(dimension) for dimension in group_by]
    where, parameters = where_clause(since, until, teams)
    select = "".join(f"    {column},\n" for column in columns)
    sql = f"SELECT\n{select}{_PROFILE_SUMS}\nFROM {TABLE} FINAL\n{where}"
    if columns:
        sql += f"\nGROUP BY {', '.join(columns)}"
    return Query(sql, parameters)


def fetch_profiles(
    client: Client, group_by: Sequence[str], since: datetime, until: datetime, teams: Sequence[str] | None
) -> list[tuple[tuple[str, ...], Profile]]:
    """Run `profile_query`: (dimension values, profile) per group; one `((), profile)` without groups."""
    rows = run(client, profile_query(group_by, since, until, teams))
    return [(tuple(str(row[d]) for d in group_by), _profile(row)) for row in rows]


def fetch_profile(client: Client, since: datetime, until: datetime, teams: Sequence[str] | None) -> Profile:
    """One profile over the whole range."""
    return fetch_profiles(client, (), since, until, teams)[0][1]


def fold(rows: Iterable[tuple[tuple[str, ...], Profile]], position: int | None) -> list[tuple[str, Profile]]:
    """Re-group finer profiles by the dimension at `position` (None: one total), most expensive first."""
    folded: dict[str, Profile] = {}
    for keys, profile in rows:
        key = keys[position] if position is not None else ""
        folded.setdefault(key, Profile()).add(profile)
    return sorted(folded.items(), key=lambda item: (-item[1].effective_cost, item[0]))


def by_cost(rows: Iterable[tuple[tuple[str, ...], Profile]]) -> list[tuple[str, Profile]]:
    """Single-dimension profiles as (key, profile), most expensive first."""
    return fold(rows, 0)


def _profile(row: dict[str, Any]) -> Profile:
    return Profile(
        events=int(row["events"]),
        unpriced_events=int(row["unpriced_events"]),
        partial_events=int(row["partial_events"]),
        list_cost=_decimal(row["list_cost_sum"]),
        effective_cost=_decimal(row["effective_cost_sum"]),
        as_priced_cost=_decimal(row["as_priced_cost_sum"]),
        tokens={bucket: int(row[f"tokens_{bucket}_sum"]) for bucket in TOKEN_BUCKETS},
        cache_reported_events=int(row["cache_reported_events"]),
        cache_reported_read=int(row["cache_reported_read"]),
        cache_reported_input=int(row["cache_reported_input"]),
    )


# ----------------------------------------------------------------------------- time series


@dataclass(frozen=True)
class Point:
    """One bucket of a time series (key '' when not grouped)."""

    bucket: datetime
    key: str
    events: int
    unpriced_events: int
    list_cost: Decimal
    effective_cost: Decimal


@dataclass(frozen=True)
class Plan:
    """Where each part of `[since, until)` is read from.

    Whole hours `[h0, h1)` come from the rollups, minus `dirty_hours`; of those, whole days
    `[d0, d1)` not in `dirty_days` come from the daily rollup. The base table covers
    `[since, h0)`, `[h1, until)` and the dirty hours.
    """

    since: datetime
    until: datetime
    h0: datetime
    h1: datetime
    d0: date
    d1: date
    dirty_hours: tuple[datetime, ...]
    dirty_days: tuple[date, ...]


def plan_range(
    since: datetime,
    until: datetime,
    dirty_hours: Iterable[datetime],
    *,
    use_daily: bool = True,
    use_rollups: bool = True,
) -> Plan:
    """Split a range into rollup-served whole days/hours and base-table parts (pure; see `Plan`).

    `use_rollups=False` sends the whole range to the base table (dimensions the rollups lack).
    """
    since, until = _aware(since, "since"), _aware(until, "until")
    h0 = _ceil_hour(since)
    h1 = max(until.replace(minute=0, second=0, microsecond=0), h0) if use_rollups else h0
    dirty = tuple(
        sorted({_aware(h, "dirty hour") for h in dirty_hours if h0 <= _aware(h, "dirty hour") < h1})
    )
    d0 = _ceil_day(h0)
    d1 = max(h1.replace(hour=0), d0)
    if not use_daily:
        d1 = d0
    days = tuple(sorted({h.date() for h in dirty if d0 <= h < d1}))
    return Plan(since, until, h0, h1, d0.date(), d1.date(), dirty, days)


DIRTY_HOURS_SQL = f"""
SELECT DISTINCT toStartOfHour(occurred_at) AS hour
FROM {TABLE}
WHERE ingested_at >= {WATERMARK_SQL} - toIntervalSecond({{margin:UInt32}})
  AND occurred_at >= {{h0:{_HOUR}}} AND occurred_at < {{h1:{_HOUR}}}
ORDER BY hour"""


def fetch_dirty_hours(client: Client, h0: datetime, h1: datetime) -> list[datetime]:
    """Hours in `[h0, h1)` the rollups may not cover yet (rows ingested after the last computation)."""
    if h0 >= h1:
        return []
    margin = int(WATERMARK_MARGIN.total_seconds())
    rows = run(client, Query(DIRTY_HOURS_SQL, {"margin": margin, "h0": h0, "h1": h1}))
    return [_aware(row["hour"], "hour") for row in rows]


_BUCKETS: dict[str, tuple[str, str, str]] = {
    # granularity: (from occurred_at, from the hourly rollup's hour, from the daily rollup's day)
    "hour": ("toStartOfHour(occurred_at)", "hour", ""),
    "day": (
        "toDateTime(toDate(occurred_at, 'UTC'), 'UTC')",
        "toDateTime(toDate(hour, 'UTC'), 'UTC')",
        "toDateTime(day, 'UTC')",
    ),
    "month": (
        "toDateTime(toStartOfMonth(occurred_at, 'UTC'), 'UTC')",
        "toDateTime(toStartOfMonth(hour, 'UTC'), 'UTC')",
        "toDateTime(toStartOfMonth(day), 'UTC')",
    ),
}


def timeseries_query(
    plan: Plan, granularity: str, group_by: str | None, teams: Sequence[str] | None
) -> Query:
    """Events and cost per time bucket (and per value of `group_by`), from rollups and the base tail."""
    if granularity not in _BUCKETS:
        raise StoreError(f"unknown granularity {granularity!r}; use one of {', '.join(GRANULARITIES)}")
    key = _dimension(group_by) if group_by is not None else "''"
    base_bucket, hourly_bucket, daily_bucket = _BUCKETS[granularity]
    parameters: dict[str, Any] = {
        "since": plan.since,
        "until": plan.until,
        "h0": plan.h0,
        "h1": plan.h1,
        "d0": plan.d0,
        "d1": plan.d1,
        "d0h": datetime.combine(plan.d0, datetime.min.time(), UTC),
        "d1h": datetime.combine(plan.d1, datetime.min.time(), UTC),
        "dirty_hours": list(plan.dirty_hours),
        "dirty_days": list(plan.dirty_days),
    }
    team_filter = ""
    if teams is not None:
        team_filter = "\n  AND team IN {teams:Array(String)}"
        parameters["teams"] = _teams(teams)
    rollup_sums = "sum(events), sum(unpriced_events), sum(list_cost), sum(effective_cost)"
    parts = []
    if plan.since < plan.h0 or plan.h1 < plan.until or plan.dirty_hours or plan.h0 == plan.h1:
        parts.append(
            f"SELECT {base_bucket} AS b, {key} AS k, count(), countIf({_CURRENT_STATUS} = 'unpriced'), "
            f"sum(list_cost), sum({_CURRENT_COST})\nFROM {TABLE} FINAL\n"
            f"WHERE occurred_at >= {{since:{_TIME}}} AND occurred_at < {{until:{_TIME}}}\n"
            f"  AND (occurred_at < {{h0:{_HOUR}}} OR occurred_at >= {{h1:{_HOUR}}}"
            f" OR toStartOfHour(occurred_at) IN {{dirty_hours:Array({_HOUR})}}){team_filter}\nGROUP BY b, k"
        )
    d0h, d1h = parameters["d0h"], parameters["d1h"]
    if plan.h0 < plan.h1 and (plan.h0 < d0h or d1h < plan.h1 or plan.dirty_days):
        # whole hours outside the whole days, and the hours of days the daily rollup cannot serve
        parts.append(
            f"SELECT {hourly_bucket} AS b, {key} AS k, {rollup_sums}\nFROM usage_rollup_hourly FINAL\n"
            f"WHERE hour >= {{h0:{_HOUR}}} AND hour < {{h1:{_HOUR}}}\n"
            f"  AND (hour < {{d0h:{_HOUR}}} OR hour >= {{d1h:{_HOUR}}}"
            f" OR toDate(hour, 'UTC') IN {{dirty_days:Array(Date)}})\n"
            f"  AND hour NOT IN {{dirty_hours:Array({_HOUR})}}{team_filter}\nGROUP BY b, k"
        )
    if daily_bucket and plan.d0 < plan.d1:
        parts.append(
            f"SELECT {daily_bucket} AS b, {key} AS k, {rollup_sums}\nFROM usage_rollup_daily FINAL\n"
            "WHERE day >= {d0:Date} AND day < {d1:Date} AND day NOT IN {dirty_days:Array(Date)}"
            f"{team_filter}\nGROUP BY b, k"
        )
    union = "\nUNION ALL\n".join(parts)
    sql = (
        "SELECT b AS bucket, k AS key, sum(e) AS events, sum(u) AS unpriced_events,\n"
        "    sum(l) AS list_cost, sum(c) AS effective_cost\n"
        f"FROM (\n{union}\n) AS parts (b, k, e, u, l, c)\n"
        "GROUP BY bucket, key\nORDER BY bucket, key"
    )
    return Query(sql, parameters)


def fetch_timeseries(
    client: Client,
    granularity: str,
    group_by: str | None,
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None,
) -> list[Point]:
    """Plan the range against the rollup watermark, then run `timeseries_query`."""
    use_rollups = group_by is None or group_by in ROLLUP_DIMENSIONS
    rough = plan_range(since, until, (), use_rollups=use_rollups)
    plan = plan_range(
        since,
        until,
        fetch_dirty_hours(client, rough.h0, rough.h1),
        use_daily=granularity != "hour",
        use_rollups=use_rollups,
    )
    rows = run(client, timeseries_query(plan, granularity, group_by, teams))
    return [
        Point(
            bucket=_aware(row["bucket"], "bucket"),
            key=str(row["key"]),
            events=int(row["events"]),
            unpriced_events=int(row["unpriced_events"]),
            list_cost=_decimal(row["list_cost"]),
            effective_cost=_decimal(row["effective_cost"]),
        )
        for row in rows
    ]


def fetch_effective_cost(
    client: Client, since: datetime, until: datetime, teams: Sequence[str] | None
) -> Decimal:
    """Current cost over a range (rollups plus tail, like the time series)."""
    points = fetch_timeseries(client, "month", None, since, until, teams)
    return sum((point.effective_cost for point in points), Decimal(0))


# ----------------------------------------------------------------------------- forecast


@dataclass(frozen=True)
class Forecast:
    """Linear burn: the month's spend so far, extended at the same rate to the end of the month."""

    period_start: datetime
    period_end: datetime
    spent: Decimal
    forecast_cost: Decimal
    method: str = "linear"


def forecast_period(until: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) holding the range's last instant, i.e. the one just before `until`."""
    last = _aware(until, "until") - timedelta(microseconds=1)
    start = last.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def linear_forecast(
    period_start: datetime, period_end: datetime, observed_until: datetime, spent: Decimal
) -> Forecast:
    """`spent` over `[period_start, observed_until)` scaled to the whole period (exact to a picodollar)."""
    observed_until = min(max(observed_until, period_start), period_end)
    elapsed = observed_until - period_start
    if elapsed <= timedelta(0) or observed_until >= period_end:
        projected = spent
    else:
        whole = Decimal((period_end - period_start) // timedelta(microseconds=1))
        part = Decimal(elapsed // timedelta(microseconds=1))
        projected = (spent * whole / part).quantize(_PICODOLLAR, rounding=ROUND_HALF_EVEN)
    return Forecast(period_start, period_end, spent, projected)


# ----------------------------------------------------------------------------- events


#: Columns of an event row in the drill-down; never any prompt or completion content.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "occurred_at",
    "team",
    "project",
    "workload",
    "provider",
    "model",
    *(f"tokens_{bucket}" for bucket in TOKEN_BUCKETS),
    "list_cost",
    f"{_CURRENT_COST} AS current_cost",
    f"{_CURRENT_STATUS} AS current_status",
    "ifNull(repriced_entry_id, ratecard_entry_id) AS current_entry_id",
    "latency_ms",
    "status",
    "trace_id",
    "session_id",
    "prompt_prefix_hash",
    "caching_requested",
    "reasoning_effort",
)

#: Exact-match filters of the drill-down: query parameter -> SQL expression.
EVENT_FILTERS: dict[str, str] = {
    "model": "model",
    "workload": "workload",
    "provider": "provider",
    "project": "project",
    "status": "status",
    "pricing_status": _CURRENT_STATUS,
    "trace_id": "trace_id",
    "session_id": "session_id",
}


def events_query(
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None,
    filters: dict[str, str | None],
    limit: int,
    offset: int,
) -> tuple[Query, Query]:
    """(page of events newest first, total count) for the drill-down."""
    where, parameters = where_clause(since, until, teams)
    for name, value in filters.items():
        if value is None:
            continue
        if name not in EVENT_FILTERS:
            raise StoreError(f"cannot filter events by {name!r}; use one of {', '.join(EVENT_FILTERS)}")
        where += f"\n  AND {EVENT_FILTERS[name]} = {{f_{name}:String}}"
        parameters[f"f_{name}"] = str(value)
    page = Query(
        f"SELECT\n    {', '.join(EVENT_COLUMNS)}\nFROM {TABLE} FINAL\n{where}\n"
        "ORDER BY occurred_at DESC, event_id DESC\nLIMIT {limit:UInt32} OFFSET {offset:UInt64}",
        {**parameters, "limit": int(limit), "offset": int(offset)},
    )
    total = Query(f"SELECT count() AS total\nFROM {TABLE} FINAL\n{where}", parameters)
    return page, total


def fetch_events(
    client: Client,
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None,
    filters: dict[str, str | None],
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    """Run `events_query`: (total matching, rows of the page)."""
    page, total = events_query(since, until, teams, filters, limit, offset)
    count = int(run(client, total)[0]["total"])
    rows = run(client, page) if count > offset else []
    return count, rows


# ----------------------------------------------------------------------------- helpers


def where_clause(since: datetime, until: datetime, teams: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    """`WHERE` over a half-open time range and (unless None) a list of teams, with its parameters."""
    parameters: dict[str, Any] = {"since": _aware(since, "since"), "until": _aware(until, "until")}
    conditions = [f"occurred_at >= {{since:{_TIME}}}", f"occurred_at < {{until:{_TIME}}}"]
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = _teams(teams)
    return "WHERE " + "\n  AND ".join(conditions), parameters


def _teams(teams: Sequence[str]) -> list[str]:
    if isinstance(teams, str):
        raise StoreError(f"teams must be a list of team names, not the string {teams!r}")
    return [str(team) for team in teams]


def _dimension(dimension: str) -> str:
    if dimension not in DIMENSIONS:
        raise StoreError(f"cannot group by {dimension!r}; use one of {', '.join(DIMENSIONS)}")
    return dimension


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise StoreError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ceil_hour(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


def _ceil_day(moment: datetime) -> datetime:
    floor = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(days=1)


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, Decimal):  # a float here would mean money was rounded on the way
        raise StoreError(f"expected an exact Decimal from the store, got {type(value).__name__} {value!r}")
    return value
