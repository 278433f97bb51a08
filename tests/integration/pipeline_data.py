"""Test traffic for the pipeline: demo events renamed per test, produced as real envelopes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from kafka import KafkaProducer

from costline.ingest.demo import demo_events
from costline.ingest.wire import batch_messages
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.schemas.usage_event import UsageEvent


def make_events(run: str, count: int, *, seed: int = 11) -> list[UsageEvent]:
    """`count` demo events whose ids and teams carry `run`, so tests sharing a store stay apart."""
    end = datetime.now(UTC) - timedelta(minutes=1)
    events = []
    for event in demo_events(count, seed=seed, end=end, span=timedelta(hours=30)):
        attribution = event.attribution.model_copy(update={"team": f"{run}-{event.attribution.team}"})
        events.append(
            event.model_copy(update={"event_id": f"{run}-{event.event_id}", "attribution": attribution})
        )
    return events


def produce(bootstrap: str, topic: str, messages: Iterable[bytes]) -> int:
    """Send raw messages and wait until the broker acknowledged every one."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=2_000_000)
    sent = 0
    try:
        for message in messages:
            producer.send(topic, message)
            sent += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return sent


def produce_events(
    bootstrap: str, topic: str, events: Sequence[UsageEvent], *, per_message: int = 100
) -> int:
    """Send events as envelopes of `per_message` events."""
    return produce(bootstrap, topic, batch_messages(events, max_events=per_message))


def expected_totals(events: Sequence[UsageEvent]) -> dict[str, Decimal | int]:
    """Totals of events priced one by one, independently of the pipeline."""
    pricer = Pricer(load_default_rate_card())
    priced = [pricer.price(event) for event in events]
    return {
        "events": len(priced),
        "unpriced": sum(1 for p in priced if p.status == "unpriced"),
        "list_cost": sum((p.list_cost for p in priced), Decimal(0)),
        "effective_cost": sum((p.effective_cost for p in priced), Decimal(0)),
        "output_tokens": sum(p.event.tokens.output_visible for p in priced),
    }


def expected_by_team_hour(events: Sequence[UsageEvent]) -> dict[tuple[str, datetime], Decimal]:
    """Effective cost per (team, hour), for comparing with the hourly rollup."""
    pricer = Pricer(load_default_rate_card())
    totals: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
    for event in events:
        hour = event.occurred_at.replace(minute=0, second=0, microsecond=0)
        totals[(event.attribution.team or "", hour)] += pricer.price(event).effective_cost
    return dict(totals)
