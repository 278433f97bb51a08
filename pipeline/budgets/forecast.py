"""Linear burn forecast: where spend lands at the period end if it keeps its average rate so far.

Exact: the forecast is `spent × period length / elapsed`, computed in Decimal on whole
microseconds and rounded to the picodollar, so it compares with budget amounts without floats.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

from costline.pipeline.budgets.periods import Period

_PICODOLLAR = Decimal("1e-12")
_WIDE = Context(prec=80)
_ONE_US = timedelta(microseconds=1)


def _micros(delta: timedelta) -> int:
    return delta // _ONE_US


def elapsed_fraction(period: Period, now: datetime) -> Decimal:
    """Share of the period that has passed at `now`, between 0 and 1."""
    total = _micros(period.end - period.start)
    elapsed = min(max(_micros(now - period.start), 0), total)
    return _WIDE.divide(Decimal(elapsed), Decimal(total))


def linear_forecast(spent: Decimal, period: Period, now: datetime) -> Decimal:
    """Spend at the period end at the average rate so far; `spent` itself once the period is over."""
    total = _micros(period.end - period.start)
    elapsed = _micros(now - period.start)
    if elapsed >= total:
        return spent
    if elapsed <= 0:
        return spent
    projected = _WIDE.divide(_WIDE.multiply(spent, Decimal(total)), Decimal(elapsed))
    return projected.quantize(_PICODOLLAR, rounding=ROUND_HALF_EVEN, context=_WIDE)


def projected_exhaustion(spent: Decimal, amount: Decimal, period: Period, now: datetime) -> datetime | None:
    """When spend reaches `amount` at the average rate so far; None if never within the period.

    Already reached: None too (the threshold alert says so).
    """
    elapsed = _micros(now - period.start)
    if spent <= 0 or elapsed <= 0 or spent >= amount:
        return None
    at_micros = _WIDE.divide(_WIDE.multiply(amount, Decimal(elapsed)), spent)
    moment = period.start + timedelta(microseconds=int(at_micros))
    return moment if moment < period.end else None
