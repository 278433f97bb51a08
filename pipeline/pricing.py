"""Pricing: pure functions from (UsageEvent, rate card) to a PricedEvent.

All arithmetic is on integers of picodollars (see `ratecard.model`): a token bucket's cost is
`tokens × picodollars-per-token`, exact, and converted to a 12-decimal `Decimal` only at the end.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from costline.pipeline.ratecard.model import (
    BUCKET_PRICE_KEY,
    PriceSet,
    RateCard,
    RateCardEntry,
    picodollars_per_request,
    picodollars_per_token,
)
from costline.schemas.priced_event import CostLine, PricedEvent
from costline.schemas.usage_event import (
    REQUEST_COUNTERS,
    TOKEN_BUCKETS,
    RequestCounters,
    TokenBuckets,
    UsageEvent,
)

#: The service tier an event falls in when it names none.
STANDARD_TIERS = frozenset({"standard", "default", "auto", "on_demand", ""})
_DATE_SUFFIX = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8})$")


def to_usd(picodollars: int) -> Decimal:
    """Exact USD with 12 decimals from an integer of picodollars."""
    return Decimal(picodollars).scaleb(-12)


@dataclass(frozen=True)
class ResolvedPrices:
    """The prices that apply to one event: at list, and after tier, time and geo adjustments."""

    entry: RateCardEntry
    list_prices: PriceSet
    effective_prices: PriceSet
    context_tier: str | None
    adjustments: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass
class RateCardIndex:
    """Entries of a card by (provider, model or alias), for fast lookup by event time."""

    card: RateCard
    _by_name: dict[tuple[str, str], list[RateCardEntry]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name: dict[tuple[str, str], list[RateCardEntry]] = defaultdict(list)
        for entry in self.card.entries:
            for name in {entry.model, *entry.aliases}:
                by_name[(entry.provider, name.lower())].append(entry)
        for entries in by_name.values():
            entries.sort(key=lambda e: e.effective_from)
        self._by_name = dict(by_name)

    def candidates(self, provider: str, model: str) -> list[RateCardEntry]:
        """Entries for this model, trying the exact name, then without a provider prefix or date suffix."""
        name = model.strip().lower()
        tried = [name]
        if "/" in name:
            tried.append(name.rsplit("/", 1)[1])
        tried.extend(_DATE_SUFFIX.sub("", n) for n in list(tried))
        for candidate in tried:
            entries = self._by_name.get((provider, candidate))
            if entries:
                return entries
        return []

    def find(self, provider: str, model: str, at: datetime) -> RateCardEntry | None:
        """The entry in force at `at` (effective_from inclusive, effective_to exclusive)."""
        found = None
        for entry in self.candidates(provider, model):
            if entry.covers(at):
                found = entry  # sorted by effective_from: the latest one in force wins
        return found


def _service_tier(event: UsageEvent) -> str | None:
    if event.signals.batch:
        return "batch"
    tier = (event.signals.service_tier or "").strip().lower()
    return None if tier in STANDARD_TIERS else tier


def resolve_prices(event: UsageEvent, entry: RateCardEntry) -> ResolvedPrices:
    """Pick the context tier on the request's whole input, then apply service tier, time window, geo."""
    prices = entry.base_prices()
    context_tier = None
    input_total = event.tokens.input_total
    for tier in entry.context_tiers:  # increasing thresholds: the last one exceeded wins
        if input_total > tier.above_input_tokens:
            prices = tier.prices.merged_over(entry.base_prices())
            context_tier = f">{tier.above_input_tokens}"
    list_prices = prices
    adjustments: list[str] = []
    notes: list[str] = []
    service_tier = _service_tier(event)
    if service_tier is not None:
        adjustment = entry.service_tiers.get(service_tier)
        if adjustment is None:
            notes.append(f"service tier {service_tier!r} has no price in {entry.id}; standard prices used")
        else:
            prices = adjustment.apply(prices)
            adjustments.append(f"service_tier:{service_tier}")
    for window in entry.time_windows:
        if window.contains(event.occurred_at):
            prices = window.adjustment.apply(prices)
            adjustments.append(f"time_window:{window.name}")
            break
    region = (event.signals.region or "").strip().lower()
    if region and region in entry.geo:
        prices = entry.geo[region].apply(prices)
        adjustments.append(f"geo:{region}")
    return ResolvedPrices(entry, list_prices, prices, context_tier, tuple(adjustments), tuple(notes))


def cost_lines(
    tokens: TokenBuckets, requests: RequestCounters, resolved: ResolvedPrices
) -> tuple[list[CostLine], list[str]]:
    """Cost lines for every non-zero bucket and counter, and the buckets that had no price."""
    lines: list[CostLine] = []
    unpriced: list[str] = []
    for bucket in TOKEN_BUCKETS:
        quantity: int = getattr(tokens, bucket)
        if quantity == 0:
            continue
        key = BUCKET_PRICE_KEY[bucket]
        list_price = resolved.list_prices.get(key)
        effective_price = resolved.effective_prices.get(key)
        if list_price is None or effective_price is None:
            unpriced.append(bucket)
            continue
        lines.append(
            CostLine(
                bucket=bucket,
                quantity=quantity,
                unit="tokens",
                list_unit_price=list_price,
                effective_unit_price=effective_price,
                list_cost=to_usd(quantity * picodollars_per_token(list_price)),
                effective_cost=to_usd(quantity * picodollars_per_token(effective_price)),
            )
        )
    for counter in REQUEST_COUNTERS:
        quantity = getattr(requests, counter)
        if quantity == 0:
            continue
        price = resolved.entry.request_prices.get(counter)
        if price is None:
            unpriced.append(counter)
            continue
        cost = to_usd(quantity * picodollars_per_request(price))
        lines.append(
            CostLine(
                bucket=counter,
                quantity=quantity,
                unit="requests",
                list_unit_price=price,
                effective_unit_price=price,
                list_cost=cost,
                effective_cost=cost,
            )
        )
    return lines, unpriced


def price_event(event: UsageEvent, index: RateCardIndex) -> PricedEvent:
    """Price one event; an unknown model gives status `unpriced` with the reason, never an error."""
    if event.signals.gateway_cache_hit:  # answered by the gateway's cache: no provider call was billed
        return PricedEvent(event=event, status="priced", reason="gateway cache hit: no provider charge")
    entry = index.find(event.provider, event.model, event.occurred_at)
    if entry is None:
        known = index.candidates(event.provider, event.model)
        if known:
            reason = (
                f"no rate card entry for {event.provider}/{event.model} in force at "
                f"{event.occurred_at.isoformat()} (entries exist for other dates)"
            )
        else:
            reason = f"model {event.model!r} of provider {event.provider!r} is not in the rate card"
        return PricedEvent(event=event, status="unpriced", reason=reason)
    resolved = resolve_prices(event, entry)
    lines, unpriced = cost_lines(event.tokens, event.requests, resolved)
    notes = list(resolved.notes)
    if unpriced:
        notes.insert(0, f"no price in {entry.id} for: {', '.join(unpriced)}")
    return PricedEvent(
        event=event,
        status="partial" if unpriced else "priced",
        reason="; ".join(notes) or None,
        ratecard_entry_id=entry.id,
        context_tier=resolved.context_tier,
        adjustments=list(resolved.adjustments),
        currency=entry.currency,
        lines=lines,
        list_cost=sum((line.list_cost for line in lines), Decimal(0)),
        effective_cost=sum((line.effective_cost for line in lines), Decimal(0)),
        unpriced_buckets=unpriced,
    )


class Pricer:
    """Prices events against one card, indexed once."""

    def __init__(self, card: RateCard) -> None:
        self.index = RateCardIndex(card)

    def price(self, event: UsageEvent) -> PricedEvent:
        """Price one event (see `price_event`)."""
        return price_event(event, self.index)

    def price_many(self, events: Iterable[UsageEvent]) -> list[PricedEvent]:
        """Price a batch of events."""
        return [price_event(event, self.index) for event in events]
