"""PROVIDER_FACTS worked examples end to end: the provider's raw usage → normalizer → bundled card.

Each provider counts cached and reasoning tokens differently; pricing the raw shapes through their
normalizers must still land on the documented cost to the last digit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from costline.ingest.normalize import normalize_usage
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.schemas.usage_event import Signals, UsageEvent

TUESDAY_PEAK = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)
TUESDAY_OFF_PEAK = datetime(2026, 11, 17, 12, 0, tzinfo=UTC)


def priced_cost(provider: str, model: str, usage: dict[str, Any], when: datetime = TUESDAY_PEAK) -> Decimal:
    normalized = normalize_usage(provider, usage)
    event = UsageEvent(
        event_id="worked",
        occurred_at=when,
        source="test",
        provider=provider,
        response_model=model,
        tokens=normalized.tokens,
        requests=normalized.requests,
        signals=Signals(service_tier=normalized.service_tier, region=normalized.region),
        raw_usage=normalized.raw,
    )
    priced = Pricer(load_default_rate_card()).price(event)
    assert priced.status == "priced", priced.reason
    return priced.effective_cost


@pytest.mark.parametrize(
    ("provider", "model", "usage", "when", "cost"),
    [
        pytest.param(
            "anthropic",
            "claude-sonnet-4-6",
            {
                "input_tokens": 1_000,
                "cache_creation_input_tokens": 2_000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2_000, "ephemeral_1h_input_tokens": 0},
                "cache_read_input_tokens": 10_000,
                "output_tokens": 500,
            },
            TUESDAY_PEAK,
            Decimal("0.0210"),
            id="anthropic: input excludes cache",
        ),
        pytest.param(
            "openai",
            "gpt-5",
            {
                "prompt_tokens": 12_000,
                "completion_tokens": 2_000,
                "total_tokens": 14_000,
                "prompt_tokens_details": {"cached_tokens": 10_000},
                "completion_tokens_details": {"reasoning_tokens": 1_500},
            },
            TUESDAY_PEAK,
            Decimal("0.02375"),
            id="openai chat: prompt includes cache, completion reasoning",
        ),
        pytest.param(
            "openai",
            "gpt-5",
            {
                "input_tokens": 12_000,
                "output_tokens": 2_000,
                "total_tokens": 14_000,
                "input_tokens_details": {"cached_tokens": 10_000},
                "output_tokens_details": {"reasoning_tokens": 1_500},
            },
            TUESDAY_PEAK,
            Decimal("0.02375"),
            id="openai responses: same rules, other names",
        ),
        pytest.param(
            "gcp.gemini",
            "gemini-2.5-pro",
            {
                "promptTokenCount": 250_000,
                "candidatesTokenCount": 1_000,
                "thoughtsTokenCount": 3_000,
                "totalTokenCount": 254_000,
            },
            TUESDAY_PEAK,
            Decimal("0.685"),
            id="gemini: thoughts outside candidates, >200K tier",
        ),
        pytest.param(
            "deepseek",
            "deepseek-v4-pro",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "total_tokens": 101_000,
                "prompt_cache_hit_tokens": 80_000,
                "prompt_cache_miss_tokens": 20_000,
            },
            TUESDAY_PEAK,
            Decimal("0.03388"),
            id="deepseek peak",
        ),
        pytest.param(
            "deepseek",
            "deepseek-v4-pro",
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 1_000,
                "total_tokens": 101_000,
                "prompt_cache_hit_tokens": 80_000,
                "prompt_cache_miss_tokens": 20_000,
            },
            TUESDAY_OFF_PEAK,
            Decimal("0.01694"),
            id="deepseek off-peak",
        ),
    ],
)
def test_worked_examples_through_the_normalizers(
    provider: str, model: str, usage: dict[str, Any], when: datetime, cost: Decimal
) -> None:
    assert priced_cost(provider, model, usage, when) == cost


def test_summing_anthropic_input_and_cache_like_openai_would_be_wrong() -> None:
    # the trap of PROVIDER_FACTS 3.7: reading Anthropic usage with OpenAI's rule under-counts
    anthropic = {"input_tokens": 1_000, "cache_read_input_tokens": 10_000, "output_tokens": 500}
    as_openai = {
        "prompt_tokens": 1_000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 10_000},
    }
    right = priced_cost("anthropic", "claude-sonnet-4-6", anthropic)
    assert right == Decimal("0.0135")  # 1,000×3 + 10,000×0.30 + 500×15 µ$
    assert normalize_usage("openai", as_openai).tokens.input_uncached == 0  # clamped, not negative
