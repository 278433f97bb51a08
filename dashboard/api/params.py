"""Query parameters shared by the endpoints: time ranges, and money in JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status

#: The widest range one request may read (a little over ten years).
MAX_RANGE_DAYS = 3700
#: Instants the store can hold (`DateTime('UTC')` of the rollups ends in 2106).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2106, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TimeRange:
    """A half-open UTC range `since <= occurred_at < until`."""

    since: datetime
    until: datetime


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of `moment`'s month."""
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def time_range(
    since: Annotated[
        datetime | None,
        Query(description="Start, ISO 8601 (UTC when no offset); default: start of this month."),
    ] = None,
    until: Annotated[datetime | None, Query(description="End (exclusive), ISO 8601; default: now.")] = None,
) -> TimeRange:
    """FastAPI dependency: `since`/`until`, defaulting to month to date; 422 when inverted or too wide."""
    now = datetime.now(UTC)
    end = _utc(until) if until is not None else now
    start = _utc(since) if since is not None else month_start(min(end, now))
    if start < EARLIEST or end > LATEST:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"`since` and `until` must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
        )
    if start >= end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "`since` must be before `until`")
    if (end - start).days > MAX_RANGE_DAYS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"a range may span at most {MAX_RANGE_DAYS} days"
        )
    return TimeRange(start, end)


Range = Annotated[TimeRange, Depends(time_range)]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"time out of range: {exc}") from exc


def money(amount: Decimal) -> str:
    """Exact decimal string of a USD amount (JSON numbers would go through floats in clients)."""
    return format(amount, "f")
