"""Charge lines: the one aggregation of `usage_events` that chargeback, FOCUS and snapshots share.

A month's stored events become lines at the grain (UTC day, provider, model, team, cost center,
project, workload, shared flag) and, for usage, per token bucket or request counter and per
price (rate-card entry, context tier, adjustments). Three kinds:

* `usage` — tokens (or requests) of one bucket at one price, with their as-priced cost. The unit
  price is the cost divided by the quantity, exact, because every event of a line was priced with
  the same per-token price (whole picodollars). Unpriced buckets have no unit price and cost 0.
* `repricing` — current minus as-priced cost of re-priced events (per current rate-card entry):
  the store keeps a re-priced total per event, not per bucket, so the difference is its own line.
* `events` — event counts (all, unpriced, partial under the current prices), no money.

So the money of all lines adds up exactly to `sum(ifNull(repriced_effective_cost, effective_cost))`
of the same events: the stored total every report reconciles to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, localcontext
from typing import Any, Literal

from clickhouse_connect.driver import Client

from costline.dashboard.api.queries import fetch_dirty_hours, plan_range
from costline.dashboard.finance.common import PICO, ZERO, FinanceError, Period
from costline.pipeline.store.queries import Query, fetch_spend_summary, run
from costline.pipeline.store.rollups import SHARED_SQL, SHARED_TAG_VALUES
from costline.schemas.usage_event import REQUEST_COUNTERS, TOKEN_BUCKETS

LineKind = Literal["usage", "repricing", "events"]

#: A team or cost center with this name is shared too.
SHARED_KEY = "shared"
#: Bucket of request charges when one event used several request kinds (their split is not stored).
MIXED_REQUESTS = "requests_mixed"

_TIME = "DateTime64(6, 'UTC')"
_SHARED = f"{SHARED_SQL} AS shared"
_GRAIN = f"toDate(occurred_at) AS day, provider, model, team, cost_center, project, workload, {_SHARED}"
_GRAIN_GROUP = "day, provider, model, team, cost_center, project, workload, shared"
_PRICE = (
    "ifNull(ratecard_entry_id, '') AS entry_id, ifNull(context_tier, '') AS context_tier, "
    "arrayStringConcat(adjustments, ',') AS adjustments"
)

_TOKEN_LINES = f"""
SELECT {_GRAIN}, b.1 AS bucket, {_PRICE},
    multiIf(gateway_cache_hit, 'cache_hit',
            pricing_status = 'unpriced' OR has(unpriced_buckets, b.1), 'unpriced', 'priced') AS status,
    sum(b.2) AS quantity, sum(b.3) AS cost, count() AS events, uniqExact(b.3 / b.2) AS prices
FROM usage_events FINAL
ARRAY JOIN [{", ".join(f"tuple('{b}', tokens_{b}, cost_{b})" for b in TOKEN_BUCKETS)}] AS b
{{where}} AND b.2 > 0
GROUP BY {_GRAIN_GROUP}, bucket, entry_id, context_tier, adjustments, status"""

_REQUESTS = " + ".join(f"toUInt64({c})" for c in REQUEST_COUNTERS)
_KINDS = " + ".join(f"({c} > 0)" for c in REQUEST_COUNTERS)
_REQUEST_LINES = f"""
SELECT {_GRAIN},
    multiIf(({_KINDS}) > 1, '{MIXED_REQUESTS}',
            {", ".join(f"{c} > 0, '{c}'" for c in REQUEST_COUNTERS[:-1])},
            '{REQUEST_COUNTERS[-1]}') AS bucket,
    {_PRICE},
    multiIf(gateway_cache_hit, 'cache_hit',
            pricing_status = 'unpriced'
              OR hasAny(unpriced_buckets, {{counters:Array(String)}}), 'unpriced', 'priced') AS status,
    sum({_REQUESTS}) AS quantity, sum(cost_requests) AS cost, count() AS events,
    uniqExact(cost_requests / ({_REQUESTS})) AS prices
FROM usage_events FINAL
{{where}} AND ({_REQUESTS}) > 0
GROUP BY {_GRAIN_GROUP}, bucket, entry_id, context_tier, adjustments, status"""

_REPRICING_LINES = f"""
SELECT {_GRAIN}, ifNull(repriced_entry_id, '') AS repriced_entry_id,
    sum(assumeNotNull(repriced_effective_cost) - effective_cost) AS cost, count() AS events
FROM usage_events FINAL
{{where}} AND repriced_effective_cost IS NOT NULL
GROUP BY {_GRAIN_GROUP}, repriced_entry_id
HAVING cost != 0"""

_EVENT_LINES = f"""
SELECT {_GRAIN}, count() AS events,
    countIf(ifNull(repriced_status, pricing_status) = 'unpriced') AS unpriced_events,
    countIf(ifNull(repriced_status, pricing_status) = 'partial') AS partial_events
FROM usage_events FINAL
{{where}}
GROUP BY {_GRAIN_GROUP}"""


#: The chargeback needs only cost and event counts per (team, cost center, shared): whole clean
#: hours from their rollup, the rest (dirty hours, hours not rolled up yet) from the events.
_KEY_LINES = f"""
SELECT team, cost_center, shared, sum(c) AS cost, sum(e) AS events, sum(u) AS unpriced_events,
    sum(p) AS partial_events
FROM (
    SELECT team, cost_center, shared, effective_cost AS c, events AS e, unpriced_events AS u,
        partial_events AS p
    FROM usage_rollup_chargeback_hourly FINAL
    WHERE hour >= {{h0:DateTime('UTC')}} AND hour < {{h1:DateTime('UTC')}}
      AND hour NOT IN {{dirty_hours:Array(DateTime('UTC'))}}
    UNION ALL
    SELECT team, cost_center, {SHARED_SQL} AS shared, ifNull(repriced_effective_cost, effective_cost) AS c,
        1 AS e, ifNull(repriced_status, pricing_status) = 'unpriced' AS u,
        ifNull(repriced_status, pricing_status) = 'partial' AS p
    FROM usage_events FINAL
    WHERE occurred_at >= {{since:{_TIME}}} AND occurred_at < {{until:{_TIME}}}
      AND (occurred_at < {{h0:DateTime('UTC')}} OR occurred_at >= {{h1:DateTime('UTC')}}
           OR toStartOfHour(occurred_at) IN {{dirty_hours:Array(DateTime('UTC'))}})
)
GROUP BY team, cost_center, shared"""


@dataclass(frozen=True)
class Line:
    """One charge line (see the module docstring for the kinds)."""

    kind: LineKind
    day: date
    provider: str
    model: str
    team: str
    cost_center: str
    project: str
    workload: str
    shared: bool
    bucket: str = ""
    unit: str = ""
    entry_id: str = ""
    context_tier: str = ""
    adjustments: str = ""
    repriced_entry_id: str = ""
    status: str = ""
    quantity: int = 0
    unit_price: Decimal | None = None
    cost: Decimal = ZERO
    events: int = 0
    unpriced_events: int = 0
    partial_events: int = 0

    def key(self, by: str) -> str:
        """The chargeback key of this line: its team or cost center ('' when unattributed)."""
        return self.team if by == "team" else self.cost_center

    def is_shared(self, by: str) -> bool:
        """Shared cost: tagged `shared`, or booked to the team / cost center named `shared`."""
        return self.shared or self.key(by) == SHARED_KEY


#: Columns of a line, in the order the snapshot table stores them.
LINE_FIELDS: tuple[str, ...] = tuple(Line.__dataclass_fields__)


@dataclass(frozen=True)
class MonthLines:
    """A month's lines and the stored total they must add up to."""

    period: Period
    lines: list[Line]
    stored_total: Decimal

    @property
    def total(self) -> Decimal:
        return sum((line.cost for line in self.lines), ZERO)


def fetch_lines(client: Client, period: Period, teams: Sequence[str] | None = None) -> MonthLines:
    """Every line of `period` (optionally only some teams), checked against the stored total."""
    lines: list[Line] = []
    for sql, kind in (
        (_TOKEN_LINES, "usage"),
        (_REQUEST_LINES, "usage"),
        (_REPRICING_LINES, "repricing"),
        (_EVENT_LINES, "events"),
    ):
        for row in run(client, _query(sql, period, teams)):
            lines.append(_line(kind, row))
    lines.sort(key=sort_key)
    stored = fetch_spend_summary(client, period.start, period.end, teams).effective_cost
    month = MonthLines(period, lines, stored)
    if month.total != stored:  # pragma: no cover - would mean the line queries miss a cost column
        raise FinanceError(
            f"charge lines of {period} add up to {month.total} but the stored events to {stored}; "
            "a cost column is not covered by the line queries"
        )
    return month


def fetch_key_lines(client: Client, period: Period) -> MonthLines:
    """The month summed per (team, cost center, shared): what a chargeback needs, read fast
    (clean whole hours from `usage_rollup_chargeback_hourly`, the rest from the events).

    Each key gives a `usage` line with its current cost (re-pricing included) and an `events`
    line with its counts; day, provider, model, project and workload are left empty.
    """
    lines: list[Line] = []
    total = ZERO
    plan = plan_range(period.start, period.end, fetch_dirty_hours(client, period.start, period.end))
    parameters = {
        "since": period.start,
        "until": period.end,
        "h0": plan.h0,
        "h1": plan.h1,
        "dirty_hours": list(plan.dirty_hours),
        "shared_values": list(SHARED_TAG_VALUES),
    }
    for row in run(client, Query(_KEY_LINES, parameters)):
        cost = row["cost"]
        if not isinstance(cost, Decimal):  # pragma: no cover - clickhouse-connect returns Decimals
            raise FinanceError(f"expected an exact Decimal cost from the store, got {cost!r}")
        base = Line(
            kind="usage",
            day=period.first_day,
            provider="",
            model="",
            team=str(row["team"]),
            cost_center=str(row["cost_center"]),
            project="",
            workload="",
            shared=bool(row["shared"]),
        )
        lines.append(replace(base, cost=cost))
        lines.append(
            replace(
                base,
                kind="events",
                events=int(row["events"]),
                unpriced_events=int(row["unpriced_events"]),
                partial_events=int(row["partial_events"]),
            )
        )
        total += cost
    lines.sort(key=sort_key)
    return MonthLines(period, lines, total)


def sort_key(line: Line) -> tuple[Any, ...]:
    """A stable order: day, then attribution, then kind and price."""
    return (
        line.day,
        line.team,
        line.cost_center,
        line.project,
        line.workload,
        line.provider,
        line.model,
        line.shared,
        line.kind,
        line.bucket,
        line.entry_id,
        line.context_tier,
        line.adjustments,
        line.repriced_entry_id,
        line.status,
    )


def _query(sql: str, period: Period, teams: Sequence[str] | None) -> Query:
    conditions = [f"occurred_at >= {{since:{_TIME}}}", f"occurred_at < {{until:{_TIME}}}"]
    parameters: dict[str, Any] = {
        "since": period.start,
        "until": period.end,
        "shared_values": list(SHARED_TAG_VALUES),
        "counters": list(REQUEST_COUNTERS),
    }
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = list(teams)
    return Query(sql.replace("{where}", "WHERE " + " AND ".join(conditions)), parameters)


def _line(kind: str, row: dict[str, Any]) -> Line:
    base = Line(
        kind="events" if kind == "events" else "repricing" if kind == "repricing" else "usage",
        day=_day(row["day"]),
        provider=str(row["provider"]),
        model=str(row["model"]),
        team=str(row["team"]),
        cost_center=str(row["cost_center"]),
        project=str(row["project"]),
        workload=str(row["workload"]),
        shared=bool(row["shared"]),
        events=int(row["events"]),
    )
    if kind == "events":
        return replace(
            base, unpriced_events=int(row["unpriced_events"]), partial_events=int(row["partial_events"])
        )
    cost = row["cost"]
    if not isinstance(cost, Decimal):  # pragma: no cover - clickhouse-connect returns Decimals
        raise FinanceError(f"expected an exact Decimal cost from the store, got {cost!r}")
    if kind == "repricing":
        return replace(base, repriced_entry_id=str(row["repriced_entry_id"]), cost=cost)
    bucket = str(row["bucket"])
    quantity = int(row["quantity"])
    status = str(row["status"])
    unit_price = _unit_price(cost, quantity, int(row["prices"]), status, bucket)
    return replace(
        base,
        bucket=bucket,
        unit="tokens" if bucket in TOKEN_BUCKETS else "requests",
        entry_id=str(row["entry_id"]),
        context_tier=str(row["context_tier"]),
        adjustments=str(row["adjustments"]),
        status=status,
        quantity=quantity,
        unit_price=unit_price,
        cost=cost,
    )


def _unit_price(cost: Decimal, quantity: int, prices: int, status: str, bucket: str) -> Decimal | None:
    """USD per token (or request) when one exact price covers the whole line, else None."""
    if status == "unpriced" or bucket == MIXED_REQUESTS or prices != 1 or quantity <= 0:
        return None
    with localcontext() as context:
        context.prec = 80
        price = cost / quantity
        exact = price.quantize(PICO)
        if exact * quantity != cost:
            return None
    return exact


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
