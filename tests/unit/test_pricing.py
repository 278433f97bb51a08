"""Pricing engine: exact costs, tiers, effective dates, adjustments, additivity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costline.pipeline.pricing import Pricer, cost_lines, resolve_prices
from costline.pipeline.ratecard.model import RateCard
from costline.schemas.usage_event import Signals, TokenBuckets, UsageEvent

WHEN = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)  # a Tuesday, 02:00 UTC
SWITCH = datetime(2026, 6, 1, tzinfo=UTC)

CARD = RateCard.model_validate(
    {
        "schema": "costline.ratecard/v1",
        "entries": [
            {
                "id": "anthropic/claude-sonnet-4-6@2026-01-01",
                "provider": "anthropic",
                "model": "claude-sonnet-4-6",
                "effective_from": "2026-01-01",
                "prices": {
                    "input": "3",
                    "cache_write_5m": "3.75",
                    "cache_write_1h": "6",
                    "cache_read": "0.30",
                    "output": "15",
                },
                "request_prices": {"web_search_requests": "0.01"},
                "context_tiers": [
                    {
                        "above_input_tokens": 200_000,
                        "prices": {"input": "6", "output": "22.5", "cache_read": "0.6"},
                    }
                ],
                "service_tiers": {"batch": {"multiplier": "0.5"}},
                "geo": {"us": {"multiplier": "1.1"}},
            },
            {
                "id": "openai/gpt-5@2026-01-01",
                "provider": "openai",
                "model": "gpt-5",
                "aliases": ["gpt-5-2025-08-07"],
                "effective_from": "2026-01-01",
                "effective_to": "2026-06-01",
                "prices": {"input": "1.25", "cache_read": "0.125", "output": "10"},
            },
            {
                "id": "openai/gpt-5@2026-06-01",
                "provider": "openai",
                "model": "gpt-5",
                "aliases": ["gpt-5-2025-08-07"],
                "effective_from": "2026-06-01",
                "prices": {"input": "1", "cache_read": "0.1", "output": "8", "reasoning": "9"},
            },
            {
                "id": "gcp.gemini/gemini-2.5-pro@2026-01-01",
                "provider": "gcp.gemini",
                "model": "gemini-2.5-pro",
                "effective_from": "2026-01-01",
                "prices": {"input": "1.25", "cache_read": "0.125", "output": "10"},
                "context_tiers": [
                    {"above_input_tokens": 200_000, "prices": {"input": "2.5", "output": "15"}}
                ],
            },
            {
                "id": "deepseek/deepseek-v4-pro@2026-01-01",
                "provider": "deepseek",
                "model": "deepseek-v4-pro",
                "effective_from": "2026-01-01",
                "prices": {"input": "1.32", "cache_read": "0.044", "output": "3.96"},
                "time_windows": [
                    {
                        "name": "off_peak",
                        "start": "08:00",
                        "end": "16:00",
                        "timezone": "UTC",
                        "adjustment": {"multiplier": "0.5"},
                    }
                ],
            },
            {
                "id": "float-trap",
                "provider": "acme",
                "model": "trap",
                "effective_from": "2026-01-01",
                "prices": {"input": "0.1", "output": "0.2", "cache_read": "0.000001"},
            },
        ],
    }
)
PRICER = Pricer(CARD)


def event(provider: str, model: str, when: datetime = WHEN, **fields: Any) -> UsageEvent:
    tokens = {k: fields.pop(k) for k in list(fields) if k in TokenBuckets.model_fields}
    return UsageEvent(
        event_id="e-1",
        occurred_at=when,
        source="test",
        provider=provider,
        response_model=model,
        tokens=TokenBuckets(**tokens),
        **fields,
    )


def test_claude_sonnet_worked_example_to_the_picodollar() -> None:
    priced = PRICER.price(
        event(
            "anthropic",
            "claude-sonnet-4-6",
            input_uncached=1_000,
            cache_write_5m=2_000,
            cache_read=10_000,
            output_visible=500,
        )
    )
    assert priced.status == "priced"
    assert priced.effective_cost == Decimal("0.021")
    assert priced.cost_of("cache_write_5m") == Decimal("0.0075")
    assert priced.ratecard_entry_id == "anthropic/claude-sonnet-4-6@2026-01-01"


def test_gpt5_worked_example_reasoning_billed_as_output() -> None:
    priced = PRICER.price(
        event(
            "openai",
            "gpt-5-2025-08-07",
            when=datetime(2026, 3, 1, tzinfo=UTC),
            input_uncached=2_000,
            cache_read=10_000,
            output_visible=500,
            output_reasoning=1_500,
        )
    )
    assert priced.effective_cost == Decimal("0.02375")
    assert priced.cost_of("output_reasoning") == Decimal("0.015")


def test_gemini_long_context_tier_reprices_the_whole_request() -> None:
    priced = PRICER.price(
        event(
            "gcp.gemini",
            "gemini-2.5-pro",
            input_uncached=250_000,
            output_visible=1_000,
            output_reasoning=3_000,
        )
    )
    assert priced.context_tier == ">200000"
    assert priced.effective_cost == Decimal("0.685")


def test_tier_switches_only_above_the_threshold() -> None:
    at = PRICER.price(
        event("gcp.gemini", "gemini-2.5-pro", input_uncached=150_000, cache_read=50_000, output_visible=1_000)
    )
    above = PRICER.price(
        event("gcp.gemini", "gemini-2.5-pro", input_uncached=150_001, cache_read=50_000, output_visible=1_000)
    )
    assert at.context_tier is None
    assert at.effective_cost == Decimal("0.1875") + Decimal("0.00625") + Decimal("0.01")  # all at base
    assert above.context_tier == ">200000"
    # the tier lists no cache_read price: the base one stays, every other token re-prices
    assert above.cost_of("input_uncached") == Decimal("0.3750025")
    assert above.cost_of("cache_read") == Decimal("0.00625")
    assert above.cost_of("output_visible") == Decimal("0.015")


def test_deepseek_peak_and_off_peak_worked_example() -> None:
    usage = {"input_uncached": 20_000, "cache_read": 80_000, "output_visible": 1_000}
    peak = PRICER.price(event("deepseek", "deepseek-v4-pro", when=WHEN, **usage))
    off_peak = PRICER.price(event("deepseek", "deepseek-v4-pro", when=WHEN.replace(hour=12), **usage))
    assert peak.effective_cost == Decimal("0.03388")
    assert off_peak.effective_cost == Decimal("0.01694")
    assert off_peak.list_cost == Decimal("0.03388")
    assert off_peak.adjustments == ["time_window:off_peak"]


def test_effective_date_boundary_instant_selects_the_new_entry() -> None:
    usage = {"input_uncached": 1_000_000}
    before = PRICER.price(event("openai", "gpt-5", when=SWITCH - timedelta(microseconds=1), **usage))
    at = PRICER.price(event("openai", "gpt-5", when=SWITCH, **usage))
    assert before.ratecard_entry_id == "openai/gpt-5@2026-01-01"
    assert before.effective_cost == Decimal("1.25")
    assert at.ratecard_entry_id == "openai/gpt-5@2026-06-01"
    assert at.effective_cost == Decimal("1")


def test_explicit_reasoning_price_wins_over_output() -> None:
    priced = PRICER.price(
        event("openai", "gpt-5", when=SWITCH, output_visible=1_000_000, output_reasoning=1_000_000)
    )
    assert priced.cost_of("output_reasoning") == Decimal("9")
    assert priced.cost_of("output_visible") == Decimal("8")


def test_batch_and_geo_multipliers_apply_after_list_price() -> None:
    base = event("anthropic", "claude-sonnet-4-6", input_uncached=100_000, output_visible=100_000)
    batch_us = base.model_copy(
        update={"signals": base.signals.model_copy(update={"batch": True, "region": "us"})}
    )
    priced = PRICER.price(batch_us)
    assert priced.list_cost == Decimal("1.8")
    assert priced.effective_cost == Decimal("0.99")  # 1.8 × 0.5 × 1.1
    assert priced.adjustments == ["service_tier:batch", "geo:us"]


def test_unknown_service_tier_is_priced_standard_with_a_note() -> None:
    base = event("anthropic", "claude-sonnet-4-6", input_uncached=1_000)
    flex = base.model_copy(update={"signals": base.signals.model_copy(update={"service_tier": "flex"})})
    priced = PRICER.price(flex)
    assert priced.status == "priced"
    assert priced.effective_cost == Decimal("0.003")
    assert priced.reason is not None
    assert "flex" in priced.reason


def test_unknown_model_is_unpriced_with_a_reason() -> None:
    priced = PRICER.price(event("anthropic", "claude-9", input_uncached=10))
    assert priced.status == "unpriced"
    assert priced.effective_cost == 0
    assert priced.reason is not None
    assert "claude-9" in priced.reason


def test_model_known_only_at_other_dates_says_so() -> None:
    priced = PRICER.price(
        event("openai", "gpt-5", when=datetime(2025, 12, 31, tzinfo=UTC), input_uncached=10)
    )
    assert priced.status == "unpriced"
    assert priced.reason is not None
    assert "other dates" in priced.reason


def test_bucket_without_a_price_makes_the_event_partial() -> None:
    priced = PRICER.price(event("openai", "gpt-5", when=SWITCH, input_uncached=1_000_000, cache_write_30m=5))
    assert priced.status == "partial"
    assert priced.unpriced_buckets == ["cache_write_30m"]
    assert priced.effective_cost == Decimal("1")


def test_request_charges_are_priced_per_request() -> None:
    base = event("anthropic", "claude-sonnet-4-6")
    searched = base.model_copy(
        update={
            "requests": base.requests.model_copy(update={"web_search_requests": 3, "web_fetch_requests": 1})
        }
    )
    priced = PRICER.price(searched)
    assert priced.cost_of("web_search_requests") == Decimal("0.03")
    assert priced.status == "partial"
    assert priced.unpriced_buckets == ["web_fetch_requests"]


def test_no_float_in_the_money_path() -> None:
    # per-token float prices get these wrong: 3e6 tokens × (0.1 / 1e6) is 0.30000000000000004
    assert 3_000_000 * (0.1 / 1e6) != 0.3
    priced = PRICER.price(
        event("acme", "trap", input_uncached=3_000_000, output_visible=1_000_000, cache_read=1)
    )
    assert priced.cost_of("input_uncached") == Decimal("0.3")
    assert priced.effective_cost == Decimal("0.500000000001")
    assert str(priced.cost_of("cache_read")) == "1E-12"

    def no_floats(value: object) -> None:
        assert not isinstance(value, float), value
        if isinstance(value, dict):
            for item in value.values():
                no_floats(item)
        if isinstance(value, list):
            for item in value:
                no_floats(item)

    no_floats(priced.model_dump())


bucket_counts = st.integers(min_value=0, max_value=40_000)
token_buckets = st.builds(
    TokenBuckets,
    input_uncached=bucket_counts,
    cache_read=bucket_counts,
    cache_write_5m=bucket_counts,
    cache_write_1h=bucket_counts,
    output_visible=bucket_counts,
    output_reasoning=bucket_counts,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(token_buckets, min_size=1, max_size=40), st.booleans(), st.sampled_from([None, "us"]))
def test_pricing_events_one_by_one_sums_to_pricing_their_totals(
    buckets: list[TokenBuckets], batch: bool, region: str | None
) -> None:
    signals = Signals(batch=batch, region=region)
    events = [event("anthropic", "claude-sonnet-4-6", signals=signals, **b.model_dump()) for b in buckets]
    priced = [PRICER.price(e) for e in events]
    entry = CARD.entries[0]
    resolved = resolve_prices(events[0], entry)
    totals = TokenBuckets(**{k: sum(getattr(b, k) for b in buckets) for k in TokenBuckets.model_fields})
    lines, _ = cost_lines(totals, events[0].requests, resolved)
    assert sum(p.effective_cost for p in priced) == sum(line.effective_cost for line in lines)
    assert sum(p.list_cost for p in priced) == sum(line.list_cost for line in lines)


@pytest.mark.parametrize("bad", ["3.1234567", "-1"])
def test_prices_off_the_grid_or_negative_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="input"):
        RateCard.model_validate(
            {
                "entries": [
                    {
                        "id": "x",
                        "provider": "p",
                        "model": "m",
                        "effective_from": "2026-01-01",
                        "prices": {"input": bad},
                    }
                ]
            }
        )


def test_a_gateway_cache_hit_costs_nothing_whatever_its_tokens() -> None:
    hit = event(
        "anthropic",
        "claude-sonnet-4-6",
        input_uncached=50_000,
        output_visible=900,
        signals=Signals(gateway_cache_hit=True),
    )
    priced = PRICER.price(hit)
    assert (priced.status, priced.effective_cost, priced.list_cost) == ("priced", 0, 0)
    assert priced.reason == "gateway cache hit: no provider charge"
