"""Pricing: pure functions from (UsageEvent, rate card) to a PricedEvent.

All arithmetic is on integers of picodollars (see `ratecard.model`): a token bucket's cost is
`tokens × picodollars-per-token`, exact, and converted to a 12-decimal `Decimal` only at the end.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property

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

    @cached_property
    def unit_prices(self) -> dict[str, tuple[Decimal, Decimal, int, int] | None]:
        """Per bucket: list and effective price per MTok and their picodollars per token (None: no price)."""
        table: dict[str, tuple[Decimal, Decimal, int, int] | None] = {}
        for bucket, key in BUCKET_PRICE_KEY.items():
            listed, effective = self.list_prices.get(key), self.effective_prices.get(key)
            table[bucket] = (
                None
                if listed is None or effective is None
                else (listed, effective, picodollars_per_token(listed), picodollars_per_token(effective))
            )
        return table


@dataclass
class RateCardIndex:
    """Entries of a card by (provider, model or alias), for fast lookup by event time."""

    card: RateCard
    _by_name: dict[tuple[str, str], list[RateCardEntry]] = field(init=False, repr=False)
    _lookups: dict[tuple[str, str], list[RateCardEntry]] = field(init=False, repr=False, default_factory=dict)

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
        cached = self._lookups.get((provider, model))
        if cached is None:
            cached = self._lookups[(provider, model)] = self._candidates(provider, model)
        return cached

    def _candidates(self, provider: str, model: str) -> list[RateCardEntry]:
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


#: What decides an event's prices besides its entry: (context tier threshold, service tier,
#: time window index, geo). Events with equal selections share one ResolvedPrices.
Selection = tuple[int | None, str | None, int | None, str]


def select_prices(event: UsageEvent, entry: RateCardEntry) -> Selection:
    """Which context tier, service tier, time window and geo of `entry` apply to `event`."""
    threshold = None
    input_total = event.tokens.input_total
    for tier in entry.context_tiers:  # increasing thresholds: the last one exceeded wins
        if input_total > tier.above_input_tokens:
            threshold = tier.above_input_tokens
    window = next((i for i, w in enumerate(entry.time_windows) if w.contains(event.occurred_at)), None)
    return threshold, _service_tier(event), window, (event.signals.region or "").strip().lower()


def build_prices(entry: RateCardEntry, selection: Selection) -> ResolvedPrices:
    """The context tier's prices as list, then service tier, time window and geo applied in that order."""
    threshold, service_tier, window_index, region = selection
    prices = entry.base_prices()
    context_tier = None
    if threshold is not None:
        tier = next(t for t in entry.context_tiers if t.above_input_tokens == threshold)
        prices = tier.prices.merged_over(prices)
        context_tier = f">{threshold}"
    list_prices = prices
    adjustments: list[str] = []
    notes: list[str] = []
    if service_tier is not None:
        adjustment = entry.service_tiers.get(service_tier)
        if adjustment is None:
            notes.append(f"service tier {service_tier!r} has no price in {entry.id}; standard prices used")
        else:
            prices = adjustment.apply(prices)
            adjustments.append(f"service_tier:{service_tier}")
    if window_index is not None:
        window = entry.time_windows[window_index]
        prices = window.adjustment.apply(prices)
        adjustments.append(f"time_window:{window.name}")
    if region and region in entry.geo:
        prices = entry.geo[region].apply(prices)
        adjustments.append(f"geo:{region}")
    return ResolvedPrices(entry, list_prices, prices, context_tier, tuple(adjustments), tuple(notes))


def resolve_prices(event: UsageEvent, entry: RateCardEntry) -> ResolvedPrices:
    """Pick the context tier on the request's whole input, then apply service tier, time window, geo."""
    return build_prices(entry, select_prices(event, entry))


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
        prices = resolved.unit_prices[bucket]
        if prices is None:
            unpriced.append(bucket)
            continue
        list_price, effective_price, list_pico, effective_pico = prices
        lines.append(
            CostLine(
                bucket=bucket,
                quantity=quantity,
                unit="tokens",
                list_unit_price=list_price,
                effective_unit_price=effective_price,
                list_cost=to_usd(quantity * list_pico),
                effective_cost=to_usd(quantity * effective_pico),
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


def price_event(
    event: UsageEvent,
    index: RateCardIndex,
    resolve: Callable[[UsageEvent, RateCardEntry], ResolvedPrices] = resolve_prices,
) -> PricedEvent:
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
    resolved = resolve(event, entry)
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
        self._resolved: dict[tuple[str, Selection], ResolvedPrices] = {}

    def _resolve(self, event: UsageEvent, entry: RateCardEntry) -> ResolvedPrices:
        """`resolve_prices`, memoized: few price combinations, many events."""
        key = (entry.id, select_prices(event, entry))
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = build_prices(entry, key[1])
        return resolved

    def price(self, event: UsageEvent) -> PricedEvent:
        """Price one event (see `price_event`)."""
        return price_event(event, self.index, self._resolve)

    def price_many(self, events: Iterable[UsageEvent]) -> list[PricedEvent]:
        """Price a batch of events."""
        return [self.price(event) for event in events]
