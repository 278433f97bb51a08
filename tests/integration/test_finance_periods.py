"""Chargeback and FOCUS on chDB: totals reconcile, closed months freeze, re-pricing gives corrections once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from clickhouse_connect.driver import Client

from costline.dashboard.finance.chargeback import Allocation, chargeback_report
from costline.dashboard.finance.common import Period, PeriodNotEnded
from costline.dashboard.finance.focus import focus_export, to_csv
from costline.dashboard.finance.lines import fetch_lines
from costline.dashboard.finance.periods import close_period, closed_periods, list_periods
from costline.pipeline.pricing import Pricer
from costline.pipeline.reprice import reprice
from costline.pipeline.store.queries import fetch_spend_summary
from tests.integration import test_finance_data
from tests.integration.test_finance_data import at, card, event, write

pytestmark = pytest.mark.integration

finance_store = test_finance_data.finance_store

SEP, OCT, NOV, DEC = Period(2026, 9), Period(2026, 10), Period(2026, 11), Period(2026, 12)
AFTER_NOV = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)


def october_events() -> list:
    return [
        event("o1", at("2026-10-02"), team="search", cost_center="cc-1", input_uncached=1_000_000),
        event("o2", at("2026-10-03"), team="ads", cost_center="cc-2", output_visible=200_000),
        event("o3", at("2026-10-03"), input_uncached=400_000),  # unattributed
        event("o4", at("2026-10-04"), team="platform", tags={"shared": "true"}, provider="anthropic",
              model="claude-sonnet-4-6", input_uncached=100_000, cache_read=50_000),
        event("o5", at("2026-10-05"), team="ads", model="acme"),  # unpriced
        event("o6", at("2026-10-06"), team="search", cost_center="cc-1", web_search=3, batch=True,
              input_uncached=10_001),
        event("o7", at("2026-10-31", 23), team="search", cost_center="cc-1", input_uncached=1),
        event("s1", at("2026-09-30", 23), team="search", input_uncached=5),  # September: not in October
        event("n1", at("2026-11-02"), team="search", input_uncached=1000),
    ]  # fmt: skip


def test_chargeback_and_focus_reconcile_exactly_to_the_stored_events(finance_store: Client) -> None:
    write(finance_store, october_events())
    stored = fetch_spend_summary(finance_store, OCT.start, OCT.end).effective_cost
    # 1.25 + 2 + 0.5 + sonnet (0.3 + 0.015) + batch (web search 0.03 + 10,001 × 0.625/MTok) + 1 token
    assert stored == Decimal("4.101251875")
    for by in ("team", "cost_center"):
        for allocation in ("proportional", "even", "owner:finops"):
            report = chargeback_report(finance_store, OCT, by, Allocation.parse(allocation))  # type: ignore[arg-type]
            assert report.total == stored == report.stored_total
            assert not report.closed
    report = chargeback_report(finance_store, OCT, "team", Allocation.parse("proportional"))
    rows = {row.key: row for row in report.rows}
    assert rows["ads"].unpriced_events == 1
    assert rows["ads"].events == 2
    assert rows[""].direct_cost == Decimal("0.5")
    assert rows["shared"].direct_cost == Decimal("0.315")
    assert sum(row.events for row in report.rows) == 7
    export = focus_export(finance_store, OCT, allocation=Allocation.parse("even"))
    assert export.total() == stored
    priced = [r for r in export.rows if r["ListUnitPrice"] is not None]
    assert priced
    assert all(r["ListCost"] == r["ListUnitPrice"] * r["PricingQuantity"] for r in priced)
    assert {r["x_TokenBucket"] for r in priced} >= {"input_uncached", "cache_read", "web_search_requests"}
    batch = [r for r in priced if "service_tier:batch" in (r["SkuPriceId"] or "")]
    assert {r["ListUnitPrice"] for r in batch if r["x_TokenBucket"] == "input_uncached"} == {
        Decimal("6.25E-7")
    }


def test_closed_period_is_frozen_and_repricing_becomes_corrections_once(finance_store: Client) -> None:
    write(finance_store, october_events())
    with pytest.raises(PeriodNotEnded, match="has not ended"):
        close_period(finance_store, NOV, "finance", now=datetime(2026, 11, 23, tzinfo=UTC))
    record, closed_now = close_period(finance_store, OCT, "finance")
    assert closed_now
    assert record.total == fetch_lines(finance_store, OCT).total
    again, closed_again = close_period(finance_store, OCT, "someone-else")
    assert not closed_again
    assert again == record

    allocation = Allocation.parse("proportional")
    frozen = chargeback_report(finance_store, OCT, "team", allocation)
    frozen_csv = to_csv(focus_export(finance_store, OCT, allocation=allocation))
    assert frozen.closed
    assert frozen.total == record.total

    # re-price October: gpt-5 input 1.25 → 1.00 per MTok (and acme stays unpriced)
    result = reprice(finance_store, Pricer(card(gpt5_input="1")), OCT.start, OCT.end)
    difference = result.difference
    assert difference < 0
    assert fetch_spend_summary(finance_store, OCT.start, OCT.end).effective_cost == record.total + difference

    after = chargeback_report(finance_store, OCT, "team", allocation)
    assert [(r.key, r.total_cost) for r in after.rows] == [(r.key, r.total_cost) for r in frozen.rows]
    assert after.total == record.total
    assert after.stored_total == record.total + difference
    assert to_csv(focus_export(finance_store, OCT, allocation=allocation)) == frozen_csv

    november = chargeback_report(finance_store, NOV, "team", allocation)
    assert november.corrections_total == difference
    by_key = {(c.period, c.key): c.amount for c in november.corrections}
    assert by_key == {
        (OCT, "search"): Decimal("-0.251250375"),  # 1M + 10,001 at batch (−0.125/MTok) + 1 token
        (OCT, ""): Decimal("-0.1"),
    }
    assert all("re-priced after the close" in c.reason for c in november.corrections)
    assert november.total == fetch_spend_summary(finance_store, NOV.start, NOV.end).effective_cost
    # reading the report again does not double the corrections
    assert chargeback_report(finance_store, NOV, "team", allocation).corrections_total == difference
    focus_nov = focus_export(finance_store, NOV)
    corrections = [r for r in focus_nov.rows if r["ChargeClass"] == "Correction"]
    assert sum(r["EffectiveCost"] for r in corrections) == difference
    assert {r["x_CorrectedPeriod"] for r in corrections} == {"2026-10"}
    assert all(r["ChargePeriodStart"] == OCT.start for r in corrections)

    # a later month that is not the first open one carries nothing yet
    assert chargeback_report(finance_store, DEC, "team", allocation).corrections == []

    # closing November freezes its corrections; December then carries only new changes
    nov_record, _ = close_period(finance_store, NOV, "finance", now=AFTER_NOV)
    assert nov_record.corrections_total == difference
    assert chargeback_report(finance_store, NOV, "team", allocation).corrections_total == difference
    assert chargeback_report(finance_store, DEC, "team", allocation).corrections == []

    write(finance_store, [event("late", at("2026-10-20"), team="ads", input_uncached=1_000_000)], card("1"))
    december = chargeback_report(finance_store, DEC, "team", allocation)
    assert [(c.period, c.key, c.amount, c.events_delta) for c in december.corrections] == [
        (OCT, "ads", Decimal("1"), 1)
    ]
    assert "1 event(s) stored after the close" in december.corrections[0].reason

    listed = {str(row.period): row for row in list_periods(finance_store)}
    assert listed["2026-10"].closed_at == record.closed_at
    assert listed["2026-10"].total == record.total
    assert listed["2026-11"].closed_by == "finance"
    assert listed["2026-09"].closed_at is None
    assert set(closed_periods(finance_store)) == {OCT, NOV}
