"""Closed periods: a closed month's report is frozen; later changes arrive as corrections, once.

Closing month P stores P's charge lines (a snapshot) and, from then on, every report of P is
computed from the snapshot, so it never changes. When P's stored cost changes afterwards
(re-pricing, late events), the difference is not hidden and not rewritten into P: it becomes
correction lines in the *carrier* of P, the first month after P that is still open.

    outstanding(P) = current(P) − snapshot(P) − corrections already carried by closed months

computed per (team, cost center, project, workload, provider, model, shared). The carrier's
report shows the outstanding corrections; reading it any number of times shows the same ones
(nothing is recorded on read). Closing the carrier freezes them into `finance_corrections`
under its snapshot, so they leave the outstanding amount and the next carrier never repeats
them. Months are closed only after they ended; closing is idempotent (the first close wins).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.dashboard.finance.common import ZERO, FinanceError, Period, PeriodNotEnded
from costline.dashboard.finance.lines import (
    LINE_FIELDS,
    Line,
    MonthLines,
    fetch_key_lines,
    fetch_lines,
    sort_key,
)
from costline.pipeline.store.queries import Query, run
from costline.schemas.errors import StoreError

#: The attribution grain corrections are computed at.
CORRECTION_GRAIN: tuple[str, ...] = (
    "team",
    "cost_center",
    "project",
    "workload",
    "provider",
    "model",
    "shared",
)

_CLOSED = """
SELECT period,
    argMin(tuple(snapshot_id, closed_at, closed_by, total, corrections_total, events),
           tuple(closed_at, snapshot_id)) AS winner
FROM finance_periods
GROUP BY period
ORDER BY period"""

_SNAPSHOT_LINES = f"""
SELECT {", ".join(LINE_FIELDS)}
FROM finance_period_lines
WHERE period = {{period:Date}} AND snapshot_id = {{snapshot_id:String}}"""

_CORRECTIONS = """
SELECT carrier_period, snapshot_id, corrected_period, team, cost_center, project, workload, provider,
    model, shared, amount, events_delta, reason
FROM finance_corrections
WHERE (carrier_period, snapshot_id) IN {winners:Array(Tuple(Date, String))}
ORDER BY carrier_period, corrected_period, team, cost_center, project, workload, provider, model, shared"""

_OPEN_MONTHS = """
SELECT toStartOfMonth(occurred_at) AS period, count() AS events,
    sum(ifNull(repriced_effective_cost, effective_cost)) AS total
FROM usage_events FINAL
GROUP BY period
ORDER BY period"""


@dataclass(frozen=True)
class ClosedPeriod:
    """The winning close of a month."""

    period: Period
    snapshot_id: str
    closed_at: datetime
    closed_by: str
    total: Decimal
    corrections_total: Decimal
    events: int


@dataclass(frozen=True)
class Correction:
    """Change of a closed month's cost after it was closed, carried by a later open month."""

    carrier: Period
    corrected: Period
    team: str
    cost_center: str
    project: str
    workload: str
    provider: str
    model: str
    shared: bool
    amount: Decimal
    events_delta: int
    reason: str

    def key(self, by: str) -> str:
        return self.team if by == "team" else self.cost_center


@dataclass(frozen=True)
class PeriodLines:
    """What a report of one month is computed from."""

    period: Period
    lines: list[Line]
    current_lines: list[Line]
    stored_total: Decimal
    closed: ClosedPeriod | None
    corrections: list[Correction]

    def stored_total_of(self, teams: Sequence[str] | None) -> Decimal:
        """Current stored cost of the month, of some teams only when `teams` is given."""
        if teams is None:
            return self.stored_total
        allowed = set(teams)
        return sum((line.cost for line in self.current_lines if line.team in allowed), ZERO)


@dataclass(frozen=True)
class PeriodRow:
    """One month in the period list: closed (with its frozen total) or open (current total)."""

    period: Period
    closed_at: datetime | None
    closed_by: str | None
    total: Decimal
    events: int


def closed_periods(client: Client) -> dict[Period, ClosedPeriod]:
    """Every closed month with its winning close."""
    found: dict[Period, ClosedPeriod] = {}
    for row in run(client, Query(_CLOSED, {})):
        period = Period.of(row["period"])
        snapshot_id, closed_at, closed_by, total, corrections_total, events = row["winner"]
        found[period] = ClosedPeriod(
            period=period,
            snapshot_id=str(snapshot_id),
            closed_at=_aware(closed_at),
            closed_by=str(closed_by),
            total=total,
            corrections_total=corrections_total,
            events=int(events),
        )
    return found


def carrier_of(period: Period, closed: Sequence[Period] | set[Period] | dict[Period, Any]) -> Period:
    """The first month after `period` that is not closed: where its corrections appear."""
    carrier = period.next()
    while carrier in closed:
        carrier = carrier.next()
    return carrier


def period_lines(client: Client, period: Period, *, per_key: bool = False) -> PeriodLines:
    """The lines of `period`: its snapshot when closed, else the stored events; and its corrections.

    `per_key` reads the open month's events summed per chargeback key only (`fetch_key_lines`):
    enough for a chargeback, and far cheaper than the full FOCUS grain on a large month.
    """
    closed = closed_periods(client)
    record = closed.get(period)
    current = fetch_key_lines(client, period) if per_key else fetch_lines(client, period)
    if record is not None:
        lines = snapshot_lines(client, record)
        corrections = [c for c in carried_corrections(client, closed) if c.carrier == period]
    else:
        lines = current.lines
        corrections = outstanding_corrections(client, period, closed)
    return PeriodLines(period, lines, current.lines, current.stored_total, record, corrections)


def snapshot_lines(client: Client, record: ClosedPeriod) -> list[Line]:
    """The frozen lines of a closed month."""
    rows = run(
        client,
        Query(_SNAPSHOT_LINES, {"period": record.period.first_day, "snapshot_id": record.snapshot_id}),
    )
    lines = [Line(**{name: _field(name, row[name]) for name in LINE_FIELDS}) for row in rows]
    lines.sort(key=sort_key)
    return lines


def carried_corrections(client: Client, closed: dict[Period, ClosedPeriod]) -> list[Correction]:
    """Corrections frozen into closed months (winning snapshots only)."""
    if not closed:
        return []
    winners = [(record.period.first_day, record.snapshot_id) for record in closed.values()]
    rows = run(client, Query(_CORRECTIONS, {"winners": winners}))
    return [
        Correction(
            carrier=Period.of(row["carrier_period"]),
            corrected=Period.of(row["corrected_period"]),
            team=str(row["team"]),
            cost_center=str(row["cost_center"]),
            project=str(row["project"]),
            workload=str(row["workload"]),
            provider=str(row["provider"]),
            model=str(row["model"]),
            shared=bool(row["shared"]),
            amount=row["amount"],
            events_delta=int(row["events_delta"]),
            reason=str(row["reason"]),
        )
        for row in rows
    ]


def outstanding_corrections(
    client: Client, carrier: Period, closed: dict[Period, ClosedPeriod] | None = None
) -> list[Correction]:
    """Corrections the open month `carrier` carries: changes of closed months not carried yet."""
    closed = closed_periods(client) if closed is None else closed
    if carrier in closed:
        raise FinanceError(f"{carrier} is closed; its corrections are frozen, read them from its report")
    sources = sorted(p for p in closed if p < carrier and carrier_of(p, closed) == carrier)
    if not sources:
        return []
    carried = carried_corrections(client, closed)
    corrections: list[Correction] = []
    for source in sources:
        current = _by_grain(fetch_lines(client, source).lines)
        frozen = _by_grain(snapshot_lines(client, closed[source]))
        already: dict[tuple[Any, ...], list[Decimal | int]] = defaultdict(lambda: [ZERO, 0])
        for c in carried:
            if c.corrected == source:
                slot = already[tuple(getattr(c, name) for name in CORRECTION_GRAIN)]
                slot[0] += c.amount
                slot[1] += c.events_delta
        for grain in sorted(set(current) | set(frozen) | set(already)):
            cost_now, events_now = current.get(grain, (ZERO, 0))
            cost_then, events_then = frozen.get(grain, (ZERO, 0))
            carried_cost, carried_events = already.get(grain, (ZERO, 0))
            amount = cost_now - cost_then - Decimal(carried_cost)
            events_delta = events_now - events_then - int(carried_events)
            if amount == 0 and events_delta == 0:
                continue
            corrections.append(
                Correction(
                    carrier,
                    source,
                    **dict(zip(CORRECTION_GRAIN, grain, strict=True)),
                    amount=amount,
                    events_delta=events_delta,
                    reason=_reason(source, grain, amount, events_delta),
                )
            )
    return corrections


def close_period(
    client: Client, period: Period, closed_by: str, *, now: datetime | None = None
) -> tuple[ClosedPeriod, bool]:
    """Freeze `period`; returns its close and whether this call closed it (False: it already was)."""
    now = now or datetime.now(UTC)
    if now < period.end:
        raise PeriodNotEnded(
            f"{period} has not ended yet (it ends {period.end.isoformat()}); close a month after it ends"
        )
    closed = closed_periods(client)
    if period in closed:
        return closed[period], False
    month: MonthLines = fetch_lines(client, period)
    corrections = outstanding_corrections(client, period, closed)
    snapshot_id = uuid.uuid4().hex
    _insert(
        client,
        "finance_period_lines",
        ("period", "snapshot_id", *LINE_FIELDS),
        [[period.first_day, snapshot_id, *(getattr(line, f) for f in LINE_FIELDS)] for line in month.lines],
    )
    _insert(
        client,
        "finance_corrections",
        (
            "carrier_period",
            "snapshot_id",
            "corrected_period",
            *CORRECTION_GRAIN,
            "amount",
            "events_delta",
            "reason",
        ),
        [
            [
                period.first_day,
                snapshot_id,
                c.corrected.first_day,
                *(getattr(c, name) for name in CORRECTION_GRAIN),
                c.amount,
                c.events_delta,
                c.reason,
            ]
            for c in corrections
        ],
    )
    events = sum(line.events for line in month.lines if line.kind == "events")
    corrections_total = sum((c.amount for c in corrections), ZERO)
    _insert(
        client,
        "finance_periods",
        ("period", "snapshot_id", "closed_at", "closed_by", "total", "corrections_total", "events"),
        [[period.first_day, snapshot_id, now, closed_by, month.total, corrections_total, events]],
    )
    winner = closed_periods(client)[period]
    return winner, winner.snapshot_id == snapshot_id


def list_periods(client: Client) -> list[PeriodRow]:
    """Closed months (frozen totals) and months with events that are still open (current totals)."""
    closed = closed_periods(client)
    rows: dict[Period, PeriodRow] = {
        p: PeriodRow(p, c.closed_at, c.closed_by, c.total, c.events) for p, c in closed.items()
    }
    for row in run(client, Query(_OPEN_MONTHS, {})):
        period = Period.of(row["period"])
        if period not in rows:
            rows[period] = PeriodRow(period, None, None, row["total"], int(row["events"]))
    return [rows[p] for p in sorted(rows)]


def _by_grain(lines: Sequence[Line]) -> dict[tuple[Any, ...], tuple[Decimal, int]]:
    totals: dict[tuple[Any, ...], tuple[Decimal, int]] = {}
    for line in lines:
        grain = tuple(getattr(line, name) for name in CORRECTION_GRAIN)
        cost, events = totals.get(grain, (ZERO, 0))
        totals[grain] = (cost + line.cost, events + (line.events if line.kind == "events" else 0))
    return totals


def _reason(source: Period, grain: tuple[Any, ...], amount: Decimal, events_delta: int) -> str:
    fields = dict(zip(CORRECTION_GRAIN, grain, strict=True))
    what = f"{fields['provider']}/{fields['model']}"
    if events_delta:
        cause = f"{events_delta:+d} event(s) stored after the close"
    else:
        cause = "re-priced after the close"
    return f"{what} in {source} changed by {amount} ({cause})"


def _insert(client: Client, table: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
    if not rows:
        return
    try:
        client.insert(table, rows, column_names=list(columns))
    except ClickHouseError as exc:
        raise StoreError(f"cannot write {table}: {exc}; were the migrations (0005_periods) applied?") from exc


def _field(name: str, value: Any) -> Any:
    if name == "day" and isinstance(value, datetime):
        return value.date()
    if name in {"quantity", "events", "unpriced_events", "partial_events"}:
        return int(value)
    if name == "shared":
        return bool(value)
    return value


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, datetime.min.time(), tzinfo=UTC) if isinstance(value, date) else value


__all__ = [
    "ClosedPeriod",
    "Correction",
    "PeriodLines",
    "PeriodRow",
    "carrier_of",
    "close_period",
    "closed_periods",
    "list_periods",
    "outstanding_corrections",
    "period_lines",
]
