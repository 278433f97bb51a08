"""The pure parts of the read API's report SQL: range planning against the rollups, forecasts, SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from costline.dashboard.api import queries
from costline.schemas.errors import StoreError


def dt(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_plan_of_whole_days() -> None:
    plan = queries.plan_range(dt(1), dt(11), [])
    assert (plan.h0, plan.h1, plan.d0, plan.d1) == (dt(1), dt(11), date(2026, 3, 1), date(2026, 3, 11))
    assert plan.dirty_hours == ()


def test_plan_with_ragged_edges_and_dirty_hours() -> None:
    dirty = [dt(3, 5), dt(3, 5), dt(1, 9), dt(20, 1), dt(10, 23)]  # dt(20) is outside the range
    plan = queries.plan_range(dt(1, 7, 30), dt(10, 23, 15), dirty)
    assert (plan.h0, plan.h1) == (dt(1, 8), dt(10, 23))
    assert (plan.d0, plan.d1) == (date(2026, 3, 2), date(2026, 3, 10))
    assert plan.dirty_hours == (dt(1, 9), dt(3, 5))  # in [h0, h1) only, sorted, unique
    assert plan.dirty_days == (date(2026, 3, 3),)  # the daily rollup cannot serve that day


def test_plan_inside_one_hour_reads_only_the_base_table() -> None:
    plan = queries.plan_range(dt(1, 7, 10), dt(1, 7, 50), [])
    assert plan.h0 == plan.h1
    assert plan.d0 == plan.d1
    sql = queries.timeseries_query(plan, "day", None, None).sql
    assert "usage_rollup" not in sql
    assert "usage_events FINAL" in sql


def test_plan_without_daily_or_rollups() -> None:
    assert (
        queries.plan_range(dt(1), dt(11), [], use_daily=False).d0
        == queries.plan_range(dt(1), dt(11), [], use_daily=False).d1
    )
    plan = queries.plan_range(dt(1), dt(11), [], use_rollups=False)
    assert plan.h0 == plan.h1
    sql = queries.timeseries_query(plan, "day", "project", ["a"]).sql
    assert "usage_rollup" not in sql


def test_aligned_daily_series_reads_only_the_daily_rollup() -> None:
    query = queries.timeseries_query(queries.plan_range(dt(1), dt(11), []), "day", "team", ["search"])
    assert "usage_rollup_daily FINAL" in query.sql
    assert "usage_rollup_hourly" not in query.sql
    assert "usage_events" not in query.sql
    assert query.parameters["teams"] == ["search"]
    assert "search" not in query.sql


def test_hourly_series_never_reads_the_daily_rollup() -> None:
    plan = queries.plan_range(dt(1), dt(3), [], use_daily=False)
    sql = queries.timeseries_query(plan, "hour", None, None).sql
    assert "usage_rollup_daily" not in sql
    assert "usage_rollup_hourly FINAL" in sql


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: queries.timeseries_query(queries.plan_range(dt(1), dt(2), []), "week", None, None),
            "granularity",
        ),
        (
            lambda: queries.timeseries_query(queries.plan_range(dt(1), dt(2), []), "day", "tags", None),
            "group by",
        ),
        (lambda: queries.profile_query(("user_hash",), dt(1), dt(2), None), "group by"),
        (lambda: queries.profile_query((), dt(1), dt(2), "search"), "not the string"),
        (lambda: queries.events_query(dt(1), dt(2), None, {"raw_usage": "x"}, 10, 0), "cannot filter"),
    ],
)
def test_unknown_words_never_reach_sql(call: object, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        call()  # type: ignore[operator]


def test_values_are_parameters() -> None:
    page, total = queries.events_query(dt(1), dt(2), ["x' OR 1=1"], {"model": "m'--", "status": None}, 5, 10)
    assert "OR 1=1" not in page.sql
    assert "m'--" not in page.sql
    assert page.parameters["f_model"] == "m'--"
    assert "f_status" not in page.parameters
    assert (page.parameters["limit"], page.parameters["offset"]) == (5, 10)
    assert "LIMIT" not in total.sql
    for column in ("raw_usage", "tags", "user_hash", "span_id"):
        assert column not in page.sql  # never content or personal data


def test_profile_sql_groups_and_filters() -> None:
    query = queries.profile_query(("workload", "model"), dt(1), dt(2), [])
    assert "GROUP BY workload, model" in query.sql
    assert "usage_events FINAL" in query.sql
    assert query.parameters["teams"] == []  # an empty scope matches nothing


def test_forecast_period_is_the_month_holding_the_last_instant() -> None:
    assert queries.forecast_period(dt(11)) == (dt(1), dt(1, month=4))
    assert queries.forecast_period(dt(1, month=4)) == (dt(1), dt(1, month=4))  # until is exclusive
    assert queries.forecast_period(datetime(2026, 12, 31, 5, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_linear_forecast() -> None:
    start, end = dt(1), dt(1, month=4)
    assert queries.linear_forecast(start, end, dt(11), Decimal("10")).forecast_cost == Decimal(
        "31.000000000000"
    )
    third = queries.linear_forecast(start, end, start + timedelta(days=3), Decimal("1"))
    assert third.forecast_cost == Decimal("10.333333333333")
    assert queries.linear_forecast(start, end, end, Decimal("7")).forecast_cost == Decimal("7")
    assert queries.linear_forecast(start, end, start, Decimal("0")).forecast_cost == Decimal("0")
    assert queries.linear_forecast(start, end, dt(20, month=5), Decimal("5")).forecast_cost == Decimal("5")


def test_profile_ratios() -> None:
    profile = queries.Profile(
        events=3,
        cache_reported_events=2,
        cache_reported_read=1,
        cache_reported_input=3,
        tokens={**queries.Profile().tokens, "output_visible": 2, "output_reasoning": 1},
    )
    assert profile.cache_hit_rate == Decimal("0.333333")
    assert profile.reasoning_share == Decimal("0.333333")
    assert queries.Profile().cache_hit_rate is None
    assert queries.Profile().reasoning_share is None
