"""Budget periods: the day, ISO week (Monday first) or month containing an instant, in a named zone.

A period runs from the first instant of its first local day to the first instant of the next
period, both returned as UTC instants, so spend is counted on event time with plain UTC
comparisons. Days are not always 24 hours: a DST day is 23 or 25, and in zones whose clocks skip
midnight the local day starts at the transition (e.g. 01:00). Forecasts use real elapsed time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from costline.pipeline.budgets.config import PeriodKind


@dataclass(frozen=True)
class Period:
    """A half-open UTC range `start <= t < end`, and the local day it starts on."""

    kind: PeriodKind
    time_zone: str
    start: datetime
    end: datetime
    local_start: date

    @property
    def seconds(self) -> int:
        """Length in seconds of real time (a DST day is 23 or 25 hours)."""
        return int((self.end - self.start).total_seconds())

    def contains(self, at: datetime) -> bool:
        """Whether `at` falls in the period."""
        return self.start <= at < self.end

    def label(self) -> str:
        """`2026-11-23 (Europe/Paris)`, `week of 2026-11-23 (UTC)`, `2026-11 (America/New_York)`."""
        if self.kind == "daily":
            text = self.local_start.isoformat()
        elif self.kind == "weekly":
            text = f"week of {self.local_start.isoformat()}"
        else:
            text = self.local_start.strftime("%Y-%m")
        return f"{text} ({self.time_zone})"


def first_instant(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which `day` begins in `zone`.

    Usually local midnight (the first one, when midnight repeats). When the clocks skip midnight,
    the day begins at the transition, found by bisection between the two readings of the gap.
    """
    wall = datetime.combine(day, time())
    earliest = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if earliest.astimezone(zone).replace(tzinfo=None) == wall:
        return earliest
    # Midnight falls in a gap: fold=1 reads it with the offset after the transition (an instant
    # before it, still on the previous day), fold=0 with the offset before (an instant after it).
    low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = earliest
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None) >= wall:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def _first_day(kind: PeriodKind, local_day: date) -> date:
    if kind == "daily":
        return local_day
    if kind == "weekly":
        return local_day - timedelta(days=local_day.weekday())
    return local_day.replace(day=1)


def _next_first_day(kind: PeriodKind, first: date) -> date:
    if kind == "daily":
        return first + timedelta(days=1)
    if kind == "weekly":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def period_containing(kind: PeriodKind, time_zone: str, at: datetime) -> Period:
    """The period of `kind` in `time_zone` that contains the instant `at` (timezone-aware)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("period_containing needs a timezone-aware instant")
    zone = ZoneInfo(time_zone)
    first = _first_day(kind, at.astimezone(zone).date())
    start = first_instant(first, zone)
    if at < start:  # only when the clocks went back across midnight: `at` belongs to the day before
        first = _first_day(kind, first - timedelta(days=1))
        start = first_instant(first, zone)
    end = first_instant(_next_first_day(kind, first), zone)
    return Period(kind, time_zone, start, end, first)


def next_period(period: Period) -> Period:
    """The period right after `period`."""
    return period_containing(period.kind, period.time_zone, period.end)


def previous_period(period: Period) -> Period:
    """The period right before `period`."""
    return period_containing(period.kind, period.time_zone, period.start - timedelta(microseconds=1))
