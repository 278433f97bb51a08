"""Finance test data: a small rate card, event builders, and a writer into the session chDB store.

The tests of the finance reports import these; the test here checks that the builders price as
the card says, so a wrong fixture fails on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.priced_event import PricedEvent
from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

FINANCE_TABLES = ("finance_periods", "finance_period_lines", "finance_corrections")


def card(gpt5_input: str = "1.25", gpt5_output: str = "10") -> RateCard:
    """gpt-5 (batch at half price, web search per request) and claude-sonnet-4-6; acme is not priced."""
    return RateCard.model_validate(
        {
            "schema": "costline.ratecard/v1",
            "entries": [
                {
                    "id": f"t/gpt-5@{gpt5_input}",
                    "provider": "openai",
                    "model": "gpt-5",
                    "effective_from": "2025-01-01",
                    "prices": {"input": gpt5_input, "cache_read": "0.125", "output": gpt5_output},
                    "request_prices": {"web_search_requests": "0.01"},
                    "service_tiers": {"batch": {"multiplier": "0.5"}},
                },
                {
                    "id": "t/sonnet",
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-6",
                    "effective_from": "2025-01-01",
                    "prices": {"input": "3", "cache_read": "0.3", "cache_write_5m": "3.75", "output": "15"},
                },
            ],
        }
    )


def event(
    event_id: str,
    at: datetime,
    *,
    team: str | None = None,
    cost_center: str | None = None,
    workload: str | None = None,
    project: str | None = None,
    provider: str = "openai",
    model: str = "gpt-5",
    tags: dict[str, str] | None = None,
    batch: bool = False,
    web_search: int = 0,
    **tokens: int,
) -> UsageEvent:
    """One usage event (any age: the ingestion time window is not checked)."""
    data: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": at,
        "source": "test",
        "provider": provider,
        "response_model": model,
        "tokens": tokens or {"input_uncached": 1000, "output_visible": 100},
        "requests": {"web_search_requests": web_search},
        "attribution": {
            "team": team,
            "cost_center": cost_center,
            "workload": workload,
            "project": project,
            "tags": tags or {},
        },
        "signals": {"batch": batch},
    }
    return UsageEvent.model_validate(data, context={CHECK_TIME_WINDOW: False})


def write(
    client: Client, events: Iterable[UsageEvent], rate_card: RateCard | None = None
) -> list[PricedEvent]:
    """Price with `rate_card` (default `card()`) and store."""
    priced = Pricer(rate_card or card()).price_many(events)
    PricedEventWriter(client).write(priced)
    return priced


def at(day: str, hour: int = 12) -> datetime:
    """`2026-10-05` at `hour`:00 UTC."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def clear_finance(client: Client) -> None:
    """Empty the finance tables (the session store is shared by every test)."""
    for table in FINANCE_TABLES:
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")


@pytest.fixture
def finance_store(store: Client) -> Iterator[Client]:
    """The session store with no usage events and no closed periods."""
    clear_finance(store)
    yield store
    clear_finance(store)


def test_builders_price_as_the_card_says() -> None:
    priced = Pricer(card()).price_many(
        [
            event("b1", at("2026-10-01"), input_uncached=1_000_000, output_visible=1_000_000),
            event("b2", at("2026-10-01"), batch=True, input_uncached=1_000_000),
            event("b3", at("2026-10-01"), model="acme"),
            event("b4", at("2026-10-01"), web_search=3, input_uncached=10),
        ]
    )
    assert [p.effective_cost for p in priced] == [
        Decimal("11.25"),
        Decimal("0.625"),
        Decimal(0),
        Decimal("0.0300125"),
    ]
    assert [p.status for p in priced] == ["priced", "priced", "unpriced", "priced"]
