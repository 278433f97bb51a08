"""Display strings for the dashboard: money, percentages, token counts, months.

The API carries money as exact decimal strings; these helpers round only what is shown (the
stored value and every download stay exact). Small amounts keep more digits, so a call that
cost a fraction of a cent does not read as `$0.00`.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

#: Shown where a value is unknown (null in the API), never a made-up zero.
MISSING = "—"


def to_decimal(value: str | Decimal | int | None) -> Decimal | None:
    """A money or ratio value from the API as a Decimal; None (or junk) stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def money(value: str | Decimal | int | None, *, places: int | None = None) -> str:
    """`$1,234.57`; amounts under a dollar keep four decimals (`$0.0042`); None is `—`."""
    amount = to_decimal(value)
    if amount is None:
        return MISSING
    if places is None:
        places = 2 if abs(amount) >= 1 or amount == 0 else 4
    quantum = Decimal(1).scaleb(-places)
    rounded = amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,.{places}f}"


def percent(fraction: str | Decimal | float | None, *, places: int = 1) -> str:
    """A ratio in 0..1 as `42.0%`; None (no data to compute it from) is `—`."""
    if isinstance(fraction, float):  # numpy floats too; NaN is "unknown"
        fraction = None if math.isnan(fraction) else Decimal(str(float(fraction)))
    value = to_decimal(fraction)
    if value is None:
        return MISSING
    return f"{(value * 100).quantize(Decimal(1).scaleb(-places)):,.{places}f}%"


def whole_percent(value: str | Decimal | int | None) -> str:
    """A value already in percent (budgets report `percent` as 0..100+) as `87%`."""
    number = to_decimal(value)
    if number is None:
        return MISSING
    return f"{number.quantize(Decimal(1)):,.0f}%"


def tokens(count: int | None) -> str:
    """Token counts compactly: `950`, `12.3K`, `4.56M`, `1.2B`."""
    if count is None:
        return MISSING
    for limit, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if abs(count) >= limit:
            scaled = count / limit
            digits = 2 if abs(scaled) < 10 else 1
            return f"{scaled:.{digits}f}{suffix}"
    return str(count)


def count(value: int | None) -> str:
    """An integer with thousands separators."""
    return MISSING if value is None else f"{value:,}"


def label(key: str | None, *, none: str = "(unattributed)") -> str:
    """A group key for display: the API's empty key means the usage carried no attribution."""
    return key if key else none


def month_label(period: str) -> str:
    """`2026-11` → `November 2026`; anything else is returned unchanged."""
    try:
        return datetime.strptime(period, "%Y-%m").strftime("%B %Y")
    except ValueError:
        return period


def recent_months(today: date | None = None, count: int = 12) -> list[str]:
    """The current month and the `count - 1` before it, newest first, as `YYYY-MM`."""
    today = today or datetime.now(UTC).date()
    year, month = today.year, today.month
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def timestamp(value: str | None) -> str:
    """An ISO 8601 time from the API as `2026-11-20 10:00 UTC`."""
    if not value:
        return MISSING
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
