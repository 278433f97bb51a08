"""Rollups repair themselves after a crash between the hourly and the daily insert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clickhouse_connect.driver import Client

from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.store import rollups
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.usage_event import TokenBuckets, UsageEvent

pytestmark = pytest.mark.integration

DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


def event(event_id: str, at: datetime) -> UsageEvent:
    return UsageEvent(
        event_id=event_id,
        occurred_at=at,
        source="test",
        provider="openai",
        response_model="gpt-5",
        attribution={"team": "rollup-team"},
        tokens=TokenBuckets(input_uncached=1_000_000, output_visible=100_000),
    )


def daily_cost(client: Client) -> object:
    return client.query(
        "SELECT sum(effective_cost) FROM usage_rollup_daily FINAL WHERE day = {day:Date}",
        parameters={"day": DAY.date()},
    ).result_rows[0][0]


def stored_cost(client: Client) -> object:
    return client.query(
        "SELECT sum(ifNull(repriced_effective_cost, effective_cost)) FROM usage_events FINAL"
    ).result_rows[0][0]


def test_a_crash_between_hourly_and_daily_insert_is_repaired_on_the_next_refresh(
    store: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollups, "WATERMARK_MARGIN", timedelta(0))  # only the watermark decides
    pricer = Pricer(load_default_rate_card())
    writer = PricedEventWriter(store)
    writer.write(pricer.price_many([event("r-1", DAY + timedelta(hours=1))]))
    assert rollups.refresh_rollups(store) == 1
    writer.write(pricer.price_many([event("r-2", DAY + timedelta(hours=5))]))
    # the crash: the hourly rollup of the new hour is written, the daily one never is
    hour = DAY + timedelta(hours=5)
    store.command(rollups.REFRESH_HOURLY_SQL, parameters={"hours": [hour], "first": hour, "last": hour})
    assert daily_cost(store) != stored_cost(store)

    rollups.refresh_rollups(store)

    assert daily_cost(store) == stored_cost(store)
