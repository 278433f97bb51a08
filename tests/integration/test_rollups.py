"""Rollups: repaired after a crash between inserts; the chargeback rollup plus dirty hours is exact."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from clickhouse_connect.driver import Client

from costline.dashboard.api import queries as api_queries
from costline.dashboard.finance.common import Period
from costline.dashboard.finance.lines import Line, fetch_key_lines, fetch_lines
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


def tagged(
    event_id: str, at: datetime, team: str | None, cost_center: str | None, shared: bool
) -> UsageEvent:
    attribution = {"team": team, "cost_center": cost_center, "tags": {"shared": "true"} if shared else {}}
    return event(event_id, at).model_copy(
        update={"attribution": event(event_id, at).attribution.model_copy(update=attribution)}
    )


def cost_by_key(lines: list[Line]) -> dict[tuple[str, str, bool], Decimal]:
    sums: dict[tuple[str, str, bool], Decimal] = defaultdict(Decimal)
    for line in lines:
        sums[(line.team, line.cost_center, line.shared)] += line.cost
    return dict(sums)


def events_by_key(lines: list[Line]) -> dict[tuple[str, str, bool], int]:
    sums: dict[tuple[str, str, bool], int] = defaultdict(int)
    for line in lines:
        if line.kind == "events":
            sums[(line.team, line.cost_center, line.shared)] += line.events
    return dict(sums)


def test_the_chargeback_rollup_plus_dirty_hours_equals_the_events(
    store: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the watermark decides which hours are dirty (no safety margin for just-ingested rows)
    monkeypatch.setattr(rollups, "WATERMARK_MARGIN", timedelta(0))
    monkeypatch.setattr(api_queries, "WATERMARK_MARGIN", timedelta(0))
    period = Period.of(datetime.now(UTC).replace(day=1) - timedelta(days=1))  # last month
    start = period.start
    pricer = Pricer(load_default_rate_card())
    writer = PricedEventWriter(store)
    keys = [
        ("search", "CC-1", False),
        ("support", "CC-2", False),
        (None, None, False),
        ("infra", "CC-3", True),
    ]
    writer.write(
        pricer.price_many(
            [tagged(f"k-{n}", start + timedelta(hours=n % 7, minutes=n), *keys[n % 4]) for n in range(40)]
        )
    )
    assert rollups.refresh_rollups(store) > 0
    # more events: one into an hour already rolled up (now dirty), one into a new hour
    writer.write(
        pricer.price_many(
            [
                tagged("late-1", start + timedelta(hours=2, minutes=59), *keys[0]),
                tagged("late-2", start + timedelta(days=3), *keys[3]),
            ]
        )
    )

    fast = fetch_key_lines(store, period)
    full = fetch_lines(store, period)

    assert fast.stored_total == full.stored_total
    assert cost_by_key(fast.lines) == cost_by_key(full.lines)
    assert events_by_key(fast.lines) == events_by_key(full.lines)
    assert sum(events_by_key(fast.lines).values()) == 42

    # the clean hours really come from the rollup: changing it changes the answer
    store.command(
        "ALTER TABLE usage_rollup_chargeback_hourly UPDATE events = events + 1 WHERE 1",
        settings={"mutations_sync": 2},
    )
    assert sum(line.events for line in fetch_key_lines(store, period).lines) > 42
