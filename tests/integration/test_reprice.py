"""Re-pricing history: new card, both costs kept, reports follow the re-priced cost, no double count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver import Client

from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.reprice import parse_range, reprice
from costline.pipeline.store.queries import fetch_count_events, fetch_spend_summary
from costline.pipeline.store.rollups import refresh_rollups
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.usage_event import TokenBuckets, UsageEvent

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def card(entries: list[dict[str, object]]) -> RateCard:
    return RateCard.model_validate({"schema": "costline.ratecard/v1", "entries": entries})


OLD = card(
    [
        {
            "id": "old/gpt-5",
            "provider": "openai",
            "model": "gpt-5",
            "effective_from": "2025-01-01",
            "prices": {"input": "1.25", "output": "10"},
        }
    ]
)
NEW = card(
    [
        {
            "id": "new/gpt-5",
            "provider": "openai",
            "model": "gpt-5",
            "effective_from": "2025-01-01",
            "prices": {"input": "1", "output": "8"},
        },
        {
            "id": "new/acme",
            "provider": "self_hosted",
            "model": "acme-model",
            "effective_from": "2025-01-01",
            "prices": {"input": "1", "output": "2"},
        },
    ]
)


def events() -> list[UsageEvent]:
    made = []
    for n, (provider, model) in enumerate([("openai", "gpt-5")] * 3 + [("self_hosted", "acme-model")] * 2):
        made.append(
            UsageEvent(
                event_id=f"rp-{n}",
                occurred_at=NOW - timedelta(hours=n),
                source="test",
                provider=provider,
                response_model=model,
                attribution={"team": "reprice-team"},
                tokens=TokenBuckets(input_uncached=1_000_000, output_visible=1_000_000),
            )
        )
    return made


def test_repricing_keeps_both_costs_and_reports_follow_the_new_one(store: Client) -> None:
    writer = PricedEventWriter(store)
    originals = [Pricer(OLD).price(e) for e in events()]
    writer.write(originals)
    since, until = NOW - timedelta(days=1), NOW + timedelta(hours=1)

    before = fetch_spend_summary(store, since, until)
    assert (before.unpriced_events, before.effective_cost) == (2, Decimal("33.75"))

    result = reprice(store, Pricer(NEW), since, until)
    assert (result.events, result.changed, result.unpriced_before, result.unpriced_after) == (5, 5, 2, 0)
    assert result.difference == Decimal("27") + Decimal("6") - Decimal("33.75")

    after = fetch_spend_summary(store, since, until)
    assert after.effective_cost == Decimal("33")  # 3 × (1 + 8) + 2 × (1 + 2)
    assert after.as_priced_cost == Decimal("33.75")
    assert after.repricing_difference == Decimal("-0.75")
    assert after.unpriced_events == 0
    assert fetch_count_events(store) == 5
    stored = store.query(
        "SELECT effective_cost, repriced_effective_cost, ratecard_entry_id, repriced_entry_id "
        "FROM usage_events FINAL WHERE event_id = 'rp-0'"
    ).result_rows[0]
    assert stored == (Decimal("11.25"), Decimal("9"), "old/gpt-5", "new/gpt-5")

    # a late redelivery of the as-priced event does not undo the re-pricing
    writer.write(originals[:1])
    assert fetch_spend_summary(store, since, until).effective_cost == Decimal("33")

    # re-running is harmless
    reprice(store, Pricer(NEW), since, until)
    assert fetch_spend_summary(store, since, until).effective_cost == Decimal("33")
    assert fetch_count_events(store) == 5

    refresh_rollups(store)
    rollup = store.query(
        "SELECT sum(effective_cost), sum(as_priced_effective_cost), sum(unpriced_events) "
        "FROM usage_rollup_daily FINAL WHERE team = 'reprice-team'"
    ).result_rows[0]
    assert rollup == (Decimal("33"), Decimal("33.75"), 0)


def test_range_parsing_reads_dates_as_utc_midnight_and_rejects_empty_ranges() -> None:
    since, until = parse_range("2026-10-01", "2026-11-01")
    assert since == datetime(2026, 10, 1, tzinfo=UTC)
    assert until == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="must be after"):
        parse_range("2026-11-01", "2026-10-01")
    with pytest.raises(ValueError, match="--since"):
        parse_range(None, None)
