"""Chargeback allocation: exact splits, every method sums to the total, pools stay visible."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costline.dashboard.finance.chargeback import Allocation, build_chargeback, parse_by
from costline.dashboard.finance.common import FinanceError, Period, split_amount, split_units
from costline.dashboard.finance.lines import Line
from costline.dashboard.finance.periods import PeriodLines

OCT = Period(2026, 10)


def line(team: str, cost: str, *, cost_center: str = "", shared: bool = False, events: int = 0) -> Line:
    return Line(
        kind="usage",
        day=date(2026, 10, 5),
        provider="openai",
        model="gpt-5",
        team=team,
        cost_center=cost_center,
        project="",
        workload="",
        shared=shared,
        bucket="input_uncached",
        unit="tokens",
        quantity=1000,
        cost=Decimal(cost),
        events=events,
    )


def counts(team: str, events: int, unpriced: int = 0) -> Line:
    return Line(
        kind="events",
        day=date(2026, 10, 5),
        provider="openai",
        model="acme",
        team=team,
        cost_center="",
        project="",
        workload="",
        shared=False,
        events=events,
        unpriced_events=unpriced,
    )


def month(lines: list[Line]) -> PeriodLines:
    total = sum((item.cost for item in lines), Decimal(0))
    return PeriodLines(OCT, lines, lines, total, None, [])


def test_largest_remainder_gives_exact_parts_deterministically() -> None:
    assert split_units(10, [1, 1, 1]) == [4, 3, 3]
    assert split_units(-10, [1, 1, 1]) == [-4, -3, -3]
    assert split_units(2, [Fraction(1, 3), Fraction(2, 3)]) == [1, 1]
    assert split_amount(Decimal("0.000000000001"), [1, 1]) == [Decimal("1E-12"), Decimal(0)]
    assert sum(split_amount(Decimal("100"), [3, 3, 3])) == Decimal("100")
    with pytest.raises(FinanceError):
        split_units(5, [0, 0])
    with pytest.raises(FinanceError):
        split_amount(Decimal("0.0000000000001"), [1])


@settings(max_examples=200, deadline=None)
@given(
    units=st.integers(min_value=-(10**20), max_value=10**20),
    weights=st.lists(st.integers(min_value=0, max_value=10**15), min_size=1, max_size=12).filter(any),
)
def test_split_units_always_sums_and_stays_within_one_unit_of_the_quota(
    units: int, weights: list[int]
) -> None:
    parts = split_units(units, weights)
    assert sum(parts) == units
    total = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(Fraction(part) - Fraction(units * weight, total)) < 1


costs = st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(
    direct=st.lists(costs, min_size=0, max_size=6),
    unattributed=costs,
    shared=costs,
    method=st.sampled_from(["proportional", "even", "owner:platform"]),
)
def test_every_allocation_method_sums_exactly_to_the_total(
    direct: list[Decimal], unattributed: Decimal, shared: Decimal, method: str
) -> None:
    lines = [line(f"team-{i}", str(cost)) for i, cost in enumerate(direct)]
    lines += [line("", str(unattributed)), line("infra", str(shared), shared=True)]
    source = month(lines)
    report = build_chargeback(source, "team", Allocation.parse(method))
    assert report.total == source.stored_total
    assert sum((row.allocated_cost for row in report.rows), Decimal(0)) == 0
    if report.plan is not None:  # pools allocated: the pool rows end at zero
        assert all(row.total_cost == 0 for row in report.rows if row.pool is not None)
    for row in report.rows:
        assert row.total_cost == row.total_cost.quantize(Decimal("1E-12"))


def test_proportional_split_follows_direct_cost() -> None:
    lines = [line("search", "3"), line("ads", "1"), line("", "2"), line("platform", "4", shared=True)]
    report = build_chargeback(month(lines), "team", Allocation.parse("proportional"))
    by_key = {row.key: row for row in report.rows}
    assert by_key["search"].allocated_cost == Decimal("4.5")  # 3/4 of 2 + 4
    assert by_key["ads"].allocated_cost == Decimal("1.5")
    assert by_key[""].direct_cost == Decimal("2")
    assert by_key[""].total_cost == 0
    assert by_key["shared"].direct_cost == Decimal("4")
    assert by_key["shared"].total_cost == 0
    assert report.total == Decimal("10")
    assert "proportional" in by_key["search"].allocation_basis


def test_even_and_owner_splits() -> None:
    lines = [line("a", "1"), line("b", "0"), line("c", "5"), line("", "0.000000000010")]
    even = {
        r.key: r.allocated_cost for r in build_chargeback(month(lines), "team", Allocation.parse("even")).rows
    }
    assert even == {
        "a": Decimal("4E-12"),
        "b": Decimal("3E-12"),
        "c": Decimal("3E-12"),
        "": Decimal("-1.0E-11"),
    }
    owner = build_chargeback(month(lines), "team", Allocation.parse("owner:finops"))
    rows = {r.key: r for r in owner.rows}
    assert rows["finops"].allocated_cost == Decimal("1.0E-11")
    assert rows["finops"].direct_cost == 0
    assert rows["a"].allocated_cost == 0


def test_proportional_with_no_direct_cost_falls_back_to_even() -> None:
    report = build_chargeback(
        month([line("a", "0"), line("b", "0"), line("", "1")]), "team", Allocation("proportional")
    )
    assert {r.key: r.allocated_cost for r in report.rows if r.pool is None} == {
        "a": Decimal("0.5"),
        "b": Decimal("0.5"),
    }
    assert report.plan is not None
    assert "even" in report.plan.basis


def test_pool_without_anyone_to_allocate_to_stays_visible() -> None:
    report = build_chargeback(month([line("", "2")]), "team", Allocation("even"))
    assert [(r.key, r.total_cost) for r in report.rows] == [("", Decimal("2"))]
    assert "not allocated" in report.rows[0].allocation_basis


def test_by_cost_center_uses_the_cost_center_key() -> None:
    lines = [line("search", "1", cost_center="cc-1"), line("ads", "1", cost_center=""), counts("ads", 3, 2)]
    report = build_chargeback(month(lines), "cost_center", Allocation("even"))
    rows = {r.key: r for r in report.rows}
    assert rows["cc-1"].total_cost == Decimal("2")
    assert rows[""].events == 3
    assert rows[""].unpriced_events == 2


def test_parsing_rejects_bad_input_with_clear_messages() -> None:
    assert Period.parse("2026-10") == OCT
    assert str(OCT.next()) == "2026-11"
    assert str(Period(2026, 1).previous()) == "2025-12"
    for bad in ("2026-13", "26-10", "2026/10", ""):
        with pytest.raises(FinanceError, match="YYYY-MM"):
            Period.parse(bad)
    with pytest.raises(FinanceError, match="proportional, even, owner"):
        Allocation.parse("random")
    with pytest.raises(FinanceError, match="owner's key"):
        Allocation.parse("owner:")
    with pytest.raises(FinanceError, match="team or cost_center"):
        parse_by("project")
    with pytest.raises(FinanceError, match="is a pool"):
        build_chargeback(month([line("a", "1")]), "team", Allocation.parse("owner:shared"))
