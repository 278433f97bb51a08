"""Budget periods in named zones (DST included) and the exact linear forecast."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from costline.pipeline.budgets.forecast import elapsed_fraction, linear_forecast, projected_exhaustion
from costline.pipeline.budgets.periods import first_instant, next_period, period_containing, previous_period


def test_daily_period_in_a_zone_is_local_midnight_to_midnight() -> None:
    period = period_containing("daily", "Europe/Paris", datetime(2026, 6, 10, 21, 30, tzinfo=UTC))
    # 21:30 UTC is 23:30 in Paris (UTC+2): still June 10th there
    assert period.start == datetime(2026, 6, 9, 22, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 6, 10, 22, 0, tzinfo=UTC)
    after = period_containing("daily", "Europe/Paris", datetime(2026, 6, 10, 22, 0, tzinfo=UTC))
    assert after.start == period.end  # half-open, no gap, no overlap
    assert next_period(period) == after
    assert previous_period(after) == period


def test_dst_days_are_23_and_25_hours() -> None:
    spring = period_containing("daily", "America/New_York", datetime(2026, 3, 8, 12, tzinfo=UTC))
    autumn = period_containing("daily", "America/New_York", datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert spring.end - spring.start == timedelta(hours=23)
    assert autumn.end - autumn.start == timedelta(hours=25)
    assert spring.start == datetime(2026, 3, 8, 5, tzinfo=UTC)


def test_a_day_whose_midnight_is_skipped_starts_at_the_transition() -> None:
    # Chile (America/Santiago) moves its clocks forward at 00:00 local: 2026-09-06 starts at 01:00.
    zone = ZoneInfo("America/Santiago")
    start = first_instant(date(2026, 9, 6), zone)
    local = start.astimezone(zone)
    assert local.date() == date(2026, 9, 6)
    assert local.hour == 1
    assert local.minute == 0
    assert (start - timedelta(seconds=1)).astimezone(zone).date() == date(2026, 9, 5)


def test_weekly_starts_monday_and_monthly_on_the_first() -> None:
    week = period_containing("weekly", "UTC", datetime(2026, 11, 26, 9, tzinfo=UTC))  # a Thursday
    assert week.start == datetime(2026, 11, 23, tzinfo=UTC)
    assert week.end == datetime(2026, 11, 30, tzinfo=UTC)
    december = period_containing("monthly", "Asia/Kolkata", datetime(2026, 12, 31, 20, tzinfo=UTC))
    # 20:00 UTC on Dec 31 is 01:30 on Jan 1 in India (UTC+5:30)
    assert december.local_start == date(2027, 1, 1)
    assert december.start == datetime(2026, 12, 31, 18, 30, tzinfo=UTC)
    assert december.end == datetime(2027, 1, 31, 18, 30, tzinfo=UTC)
    assert december.label() == "2027-01 (Asia/Kolkata)"


def test_linear_forecast_is_exact() -> None:
    period = period_containing("daily", "UTC", datetime(2026, 6, 1, 8, tzinfo=UTC))
    now = datetime(2026, 6, 1, 8, tzinfo=UTC)  # a third of the day
    assert abs(elapsed_fraction(period, now) * 3 - 1) < Decimal("1e-70")
    assert linear_forecast(Decimal("10.000000000001"), period, now) == Decimal("30.000000000003")
    assert linear_forecast(Decimal(7), period, period.start) == Decimal(7)  # no elapsed time: no guess
    assert linear_forecast(Decimal(7), period, period.end + timedelta(hours=1)) == Decimal(7)
    assert projected_exhaustion(Decimal(10), Decimal(20), period, now) == datetime(2026, 6, 1, 16, tzinfo=UTC)
    assert projected_exhaustion(Decimal(1), Decimal(20), period, now) is None  # not within the day
    assert projected_exhaustion(Decimal(30), Decimal(20), period, now) is None  # already over
