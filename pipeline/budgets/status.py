"""Where each budget stands now: its period, spend, forecast, crossed thresholds and a status word.

Computed from the store every time (never remembered), so the API, the alert engine and a
restarted worker all read the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from clickhouse_connect.driver import Client

from costline.pipeline.budgets.config import Budget
from costline.pipeline.budgets.forecast import elapsed_fraction, linear_forecast, projected_exhaustion
from costline.pipeline.budgets.periods import Period, period_containing
from costline.pipeline.budgets.spend import SpendWindow, fetch_spend

StatusWord = Literal["ok", "warning", "forecast_exceeds", "exceeded"]

_HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True)
class BudgetStatus:
    """One budget in its current period, as of `now`."""

    budget: Budget
    period: Period
    now: datetime
    spent: Decimal
    events: int

    @property
    def amount(self) -> Decimal:
        """The budget amount in USD."""
        return self.budget.amount_usd

    @property
    def percent(self) -> Decimal:
        """Spend as a percent of the amount, rounded down to the hundredth (99.999 shows as 99.99)."""
        return (self.spent * 100 / self.amount).quantize(_HUNDREDTH, rounding=ROUND_FLOOR)

    @property
    def crossed(self) -> list[int]:
        """Thresholds reached: spent × 100 >= percent × amount, compared exactly."""
        return [t for t in self.budget.thresholds if self.spent * 100 >= self.amount * t]

    @property
    def forecast(self) -> Decimal | None:
        """Linear burn forecast to the period end; None when the budget does not forecast."""
        return linear_forecast(self.spent, self.period, self.now) if self.budget.forecast else None

    @property
    def exhausted_at(self) -> datetime | None:
        """When the amount runs out at the average rate so far (None: not within the period)."""
        return projected_exhaustion(self.spent, self.amount, self.period, self.now)

    @property
    def forecast_exceeds(self) -> bool:
        """The forecast alert's condition: not yet over, but heading over, late enough to trust the rate."""
        forecast = self.forecast
        if forecast is None or self.spent >= self.amount or forecast < self.amount:
            return False
        elapsed = elapsed_fraction(self.period, self.now)
        return elapsed * 100 >= self.budget.forecast_min_elapsed_percent

    @property
    def status(self) -> StatusWord:
        """exceeded (100% or more spent), forecast_exceeds, warning (a threshold crossed) or ok."""
        if self.spent >= self.amount:
            return "exceeded"
        if self.forecast_exceeds:
            return "forecast_exceeds"
        if self.crossed:
            return "warning"
        return "ok"

    @property
    def window(self) -> SpendWindow:
        """The budget's scope over its current period."""
        return SpendWindow(self.budget.scope, self.period.start, self.period.end)


def current_periods(budgets: Sequence[Budget], now: datetime) -> list[Period]:
    """The period each budget is in at `now`."""
    return [period_containing(b.period, b.time_zone, now) for b in budgets]


def budget_statuses(client: Client, budgets: Sequence[Budget], now: datetime) -> list[BudgetStatus]:
    """Every budget's status at `now`, from one scan of the store."""
    periods = current_periods(budgets, now)
    windows = [SpendWindow(b.scope, p.start, p.end) for b, p in zip(budgets, periods, strict=True)]
    spends = fetch_spend(client, windows)
    return [
        BudgetStatus(budget, period, now, spend.spent, spend.events)
        for budget, period, spend in zip(budgets, periods, spends, strict=True)
    ]
