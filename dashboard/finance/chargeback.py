"""Chargeback: a month's cost per team or cost center, with unattributed and shared cost allocated.

Direct cost of a key is the current cost of its lines. Two pools are allocated to the keys:

* unattributed — usage with no team (or no cost center, when grouping by cost center);
* shared — usage tagged `shared: "true"` (or booked to the team / cost center named `shared`),
  e.g. a platform team's embedding index that every team uses.

Methods: `proportional` (to each key's direct cost; even when every direct cost is zero),
`even` (equal parts per key with usage), `owner:X` (everything to key X). Each pool is split on
the picodollar grid with the largest-remainder rule, so the parts add up to the pool exactly and
the report total equals the stored total. Pool rows stay in the report with their direct cost,
a negative allocated cost and a total of zero, so nothing is hidden; unpriced events are counted
on every row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from clickhouse_connect.driver import Client

from costline.dashboard.finance.common import ZERO, FinanceError, Period, ratio_text, split_amount
from costline.dashboard.finance.lines import SHARED_KEY, Line
from costline.dashboard.finance.periods import Correction, PeriodLines, period_lines

By = Literal["team", "cost_center"]
BY_VALUES: tuple[str, ...] = ("team", "cost_center")
METHODS: tuple[str, ...] = ("proportional", "even", "owner")
UNATTRIBUTED_POOL = "unattributed"
SHARED_POOL = "shared"
#: Key of a pool's row in the report.
POOL_KEYS = {UNATTRIBUTED_POOL: "", SHARED_POOL: SHARED_KEY}
#: How many line reasons a correction row quotes.
MAX_REASONS = 5


@dataclass(frozen=True)
class Allocation:
    """How pools are split: `proportional`, `even` or `owner` (with the owner's key)."""

    method: str
    owner: str | None = None

    @classmethod
    def parse(cls, text: str) -> Allocation:
        value = (text or "").strip()
        if value.startswith("owner:"):
            owner = value[len("owner:") :].strip()
            if not owner:
                raise FinanceError("allocation owner:X needs the owner's key, e.g. owner:platform")
            return cls("owner", owner)
        if value in ("proportional", "even"):
            return cls(value)
        raise FinanceError(f"allocation {text!r} is not one of proportional, even, owner:<key>")

    def __str__(self) -> str:
        return f"owner:{self.owner}" if self.method == "owner" else self.method


def parse_by(text: str) -> By:
    """`team` or `cost_center`, else a FinanceError."""
    if text not in BY_VALUES:
        raise FinanceError(f"cannot charge back by {text!r}; use team or cost_center")
    return "team" if text == "team" else "cost_center"


@dataclass(frozen=True)
class Plan:
    """Who receives the pools, with which weights, and what the basis says."""

    targets: list[str]
    weights: list[Fraction]
    basis: str

    def ratios(self) -> list[Fraction]:
        total = sum(self.weights, Fraction(0))
        return [w / total for w in self.weights]


@dataclass
class ChargebackRow:
    """One key of the report."""

    key: str
    direct_cost: Decimal = ZERO
    allocated_cost: Decimal = ZERO
    events: int = 0
    unpriced_events: int = 0
    partial_events: int = 0
    allocation_basis: str = "direct"
    pool: str | None = None

    @property
    def total_cost(self) -> Decimal:
        return self.direct_cost + self.allocated_cost


@dataclass(frozen=True)
class CorrectionRow:
    """Corrections of one closed month for one key."""

    period: Period
    key: str
    amount: Decimal
    events_delta: int
    reason: str


@dataclass
class Chargeback:
    """A chargeback report."""

    period: Period
    by: By
    allocation: Allocation
    closed_at: datetime | None
    closed_by: str | None
    stored_total: Decimal
    rows: list[ChargebackRow]
    corrections: list[CorrectionRow]
    plan: Plan | None = None
    pools: dict[str, Decimal] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def total(self) -> Decimal:
        return sum((row.total_cost for row in self.rows), ZERO)

    @property
    def corrections_total(self) -> Decimal:
        return sum((row.amount for row in self.corrections), ZERO)


def pool_of(line: Line, by: str) -> str | None:
    """Which pool a line's cost belongs to, or None for direct cost."""
    if line.key(by) == "":
        return UNATTRIBUTED_POOL
    if line.is_shared(by):
        return SHARED_POOL
    return None


def plan_allocation(direct: dict[str, Decimal], allocation: Allocation) -> Plan | None:
    """Targets and weights for the pools; None when there is nobody to allocate to."""
    if allocation.method == "owner":
        owner = allocation.owner or ""
        if owner in ("", SHARED_KEY):
            raise FinanceError(f"owner {owner!r} is a pool; name a team or cost center")
        return Plan([owner], [Fraction(1)], f"owner of the unattributed and shared pools ({owner})")
    targets = sorted(direct)
    if not targets:
        return None
    if allocation.method == "proportional":
        weights = [Fraction(direct[key]) for key in targets]
        if sum(weights, Fraction(0)) > 0:
            return Plan(targets, weights, "proportional to direct cost")
        return Plan(targets, [Fraction(1)] * len(targets), "even split (no key has direct cost)")
    return Plan(targets, [Fraction(1)] * len(targets), "even split")


def build_chargeback(source: PeriodLines, by: By, allocation: Allocation) -> Chargeback:
    """The report for every key (scope it with `visible`)."""
    rows: dict[str, ChargebackRow] = {}
    direct: dict[str, Decimal] = defaultdict(lambda: ZERO)
    pools: dict[str, Decimal] = {}
    for line in source.lines:
        pool = pool_of(line, by)
        key = POOL_KEYS[pool] if pool is not None else line.key(by)
        row = rows.setdefault(key, ChargebackRow(key, pool=pool))
        row.direct_cost += line.cost
        if line.kind == "events":
            row.events += line.events
            row.unpriced_events += line.unpriced_events
            row.partial_events += line.partial_events
        if pool is None:
            direct[key] += line.cost
        else:
            pools[pool] = pools.get(pool, ZERO) + line.cost
    plan = plan_allocation(dict(direct), allocation)
    if plan is not None:
        for name, amount in sorted(pools.items()):
            pool_row = rows[POOL_KEYS[name]]
            pool_row.allocated_cost -= amount
            pool_row.allocation_basis = f"{name} pool, allocated to {len(plan.targets)} key(s): {plan.basis}"
            for key, part, ratio in zip(
                plan.targets, split_amount(amount, plan.weights), plan.ratios(), strict=True
            ):
                target = rows.setdefault(key, ChargebackRow(key))
                target.allocated_cost += part
                target.allocation_basis = f"direct + share {ratio_text(ratio)} of pools: {plan.basis}"
    else:
        for name in pools:
            rows[POOL_KEYS[name]].allocation_basis = f"{name} pool, not allocated: no key to allocate to"
    ordered = sorted(rows.values(), key=lambda r: (r.pool is not None, -r.total_cost, r.key))
    closed = source.closed
    return Chargeback(
        period=source.period,
        by=by,
        allocation=allocation,
        closed_at=closed.closed_at if closed else None,
        closed_by=closed.closed_by if closed else None,
        stored_total=source.stored_total,
        rows=ordered,
        corrections=correction_rows(source.corrections, by),
        plan=plan,
        pools=pools,
    )


def correction_rows(corrections: Sequence[Correction], by: str) -> list[CorrectionRow]:
    """Corrections summed per (corrected month, key), with the reasons of their lines."""
    grouped: dict[tuple[Period, str], list[Correction]] = defaultdict(list)
    for correction in corrections:
        grouped[(correction.corrected, correction.key(by))].append(correction)
    rows = []
    for (period, key), items in sorted(grouped.items()):
        reasons = [c.reason for c in items]
        reason = "; ".join(reasons[:MAX_REASONS])
        if len(reasons) > MAX_REASONS:
            reason += f"; and {len(reasons) - MAX_REASONS} more"
        rows.append(
            CorrectionRow(
                period=period,
                key=key,
                amount=sum((c.amount for c in items), ZERO),
                events_delta=sum(c.events_delta for c in items),
                reason=reason,
            )
        )
    return rows


def scoped(report: Chargeback, teams: Sequence[str] | None, source: PeriodLines) -> Chargeback:
    """Only the rows (and corrections) of `teams`; None keeps everything."""
    if teams is None:
        return report
    allowed = set(teams)
    report.rows = [row for row in report.rows if row.pool is None and row.key in allowed]
    report.corrections = [row for row in report.corrections if row.key in allowed]
    report.stored_total = source.stored_total_of(teams)
    return report


def chargeback_report(
    client: Client, period: Period, by: By, allocation: Allocation, teams: Sequence[str] | None = None
) -> Chargeback:
    """The chargeback of `period` (frozen when closed), scoped to `teams` when given."""
    if teams is not None and by != "team":
        raise FinanceError("a team token can only charge back by team")
    source = period_lines(client, period, per_key=True)
    return scoped(build_chargeback(source, by, allocation), teams, source)


def chargeback_json(report: Chargeback, money: Any) -> dict[str, Any]:
    """The API shape; `money` formats Decimals (costline.dashboard.api.params.money)."""
    return {
        "period": str(report.period),
        "by": report.by,
        "allocation": str(report.allocation),
        "closed": report.closed,
        "closed_at": report.closed_at.isoformat().replace("+00:00", "Z") if report.closed_at else None,
        "closed_by": report.closed_by,
        "total": money(report.total),
        "stored_total": money(report.stored_total),
        "corrections_total": money(report.corrections_total),
        "unpriced_events": sum(row.unpriced_events for row in report.rows),
        "rows": [
            {
                "key": row.key,
                "direct_cost": money(row.direct_cost),
                "allocated_cost": money(row.allocated_cost),
                "total_cost": money(row.total_cost),
                "events": row.events,
                "unpriced_events": row.unpriced_events,
                "partial_events": row.partial_events,
                "allocation_basis": row.allocation_basis,
            }
            for row in report.rows
        ],
        "corrections": [
            {
                "period": str(row.period),
                "key": row.key,
                "amount": money(row.amount),
                "events_delta": row.events_delta,
                "reason": row.reason,
            }
            for row in report.corrections
        ],
    }
