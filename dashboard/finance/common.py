"""What every finance report shares: calendar-month periods, exact splitting of money, errors.

Money here is `Decimal` on the picodollar grid (12 decimals, the `Decimal(38, 12)` columns).
Splitting an amount by weights uses the largest-remainder rule on integer units, so the parts
always add up to the whole, exactly, and the same inputs always give the same parts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

from costline.schemas.errors import CostlineError

#: Decimals of money (whole picodollars).
MONEY_SCALE = 12
PICO = Decimal(1).scaleb(-MONEY_SCALE)
ZERO = Decimal(0)

_PERIOD = re.compile(r"^(?P<year>\d{4})-(?P<month>\d{2})$")


class FinanceError(CostlineError):
    """A finance request cannot be answered as asked; the message says why and what to do."""


class PeriodNotEnded(FinanceError):
    """A month that has not ended yet cannot be closed."""


@dataclass(frozen=True, order=True)
class Period:
    """A calendar month in UTC: `start <= occurred_at < end`."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-10` → Period(2026, 10); anything else is a FinanceError naming the format."""
        match = _PERIOD.match(text.strip()) if isinstance(text, str) else None
        if match is None or not 1 <= int(match["month"]) <= 12 or int(match["year"]) < 1970:
            raise FinanceError(f"period {text!r} is not a month; write it as YYYY-MM, e.g. 2026-10")
        return cls(int(match["year"]), int(match["month"]))

    @classmethod
    def of(cls, moment: datetime | date) -> Period:
        """The month containing `moment` (UTC)."""
        if isinstance(moment, datetime):
            moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        return cls(moment.year, moment.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def to_units(amount: Decimal, scale: int = MONEY_SCALE) -> int:
    """`amount` as an integer number of 10^-scale units; refuses amounts off that grid."""
    scaled = amount.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise FinanceError(f"amount {amount} has more than {scale} decimals; it cannot be split exactly")
    return int(scaled)


def split_units(units: int, weights: Sequence[Fraction | int | Decimal]) -> list[int]:
    """Split `units` (may be negative) in proportion to `weights`, largest remainder, exact sum.

    Each part gets the floor of its exact quota; the units left over go one each to the parts
    with the largest fractional remainders, ties to the earlier part, so the result is
    deterministic for a given order. Weights must be >= 0 with a positive sum.
    """
    exact = [Fraction(w) for w in weights]
    if any(w < 0 for w in exact):
        raise FinanceError("allocation weights must not be negative")
    total_weight = sum(exact, Fraction(0))
    if total_weight <= 0:
        raise FinanceError("allocation weights must have a positive sum")
    sign = -1 if units < 0 else 1
    magnitude = abs(units)
    quotas = [magnitude * w / total_weight for w in exact]
    parts = [q.numerator // q.denominator for q in quotas]
    left = magnitude - sum(parts)
    order = sorted(range(len(parts)), key=lambda i: (-(quotas[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return [sign * p for p in parts]


def split_amount(
    amount: Decimal, weights: Sequence[Fraction | int | Decimal], scale: int = MONEY_SCALE
) -> list[Decimal]:
    """`split_units` on the 10^-scale grid: Decimal parts that add up exactly to `amount`."""
    return [Decimal(p).scaleb(-scale) for p in split_units(to_units(amount, scale), weights)]


def ratio_text(value: Fraction | Decimal) -> str:
    """A ratio as a plain decimal string (12 decimals at most) for JSON details."""
    decimal_value = (
        value if isinstance(value, Decimal) else Decimal(value.numerator) / Decimal(value.denominator)
    )
    return format(decimal_value.quantize(PICO).normalize(), "f")


def money_sum(values: Mapping[str, Decimal] | Sequence[Decimal]) -> Decimal:
    """Exact sum of Decimals (ZERO for none)."""
    items = values.values() if isinstance(values, Mapping) else values
    return sum(items, ZERO)
