"""Re-pricing a workload's observed usage on a rate-card entry, exactly, in integer picodollars.

Each pricing cell is priced the way the Pricer prices each of its calls: `build_prices` picks the
entry's long-context tier from the cell's context band, then its service tier and region; then
tokens × picodollars-per-token per bucket, requests × picodollars-per-request. Time windows
(off-peak prices) are not applied, to the current model or the candidate: a projection compares
list-time prices. A bucket or request counter the entry has no price for makes the whole
re-pricing `None`: the entry cannot bill the workload as it runs today.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from costline.pipeline.pricing import ResolvedPrices, Selection, build_prices
from costline.pipeline.ratecard.model import RateCardEntry, picodollars_per_request
from costline.pipeline.recommend.profile import PricingCell, WorkloadProfile


class CellPricer:
    """Prices cells on entries; resolved prices are memoized (few combinations, many cells)."""

    def __init__(self) -> None:
        self._resolved: dict[tuple[str, Selection], ResolvedPrices] = {}

    def resolve(self, entry: RateCardEntry, selection: Selection) -> ResolvedPrices:
        key = (entry.id, selection)
        found = self._resolved.get(key)
        if found is None:
            found = self._resolved[key] = build_prices(entry, selection)
        return found

    def selection(self, entry: RateCardEntry, cell: PricingCell, bands: Sequence[int]) -> Selection:
        """The entry's context tier for the cell's band, and the cell's service tier and region."""
        lower_bound = bands[cell.band - 1] if cell.band > 0 else 0
        threshold = None
        for tier in entry.context_tiers:  # ascending; bands include every threshold of the card
            if tier.above_input_tokens <= lower_bound:
                threshold = tier.above_input_tokens
        return threshold, cell.service_tier, None, cell.region

    def cell_cost(self, entry: RateCardEntry, cell: PricingCell, bands: Sequence[int]) -> int | None:
        """Picodollars of one cell on `entry`, or None when a used bucket has no price there."""
        resolved = self.resolve(entry, self.selection(entry, cell, bands))
        total = 0
        for bucket, quantity in cell.tokens.items():
            if quantity == 0:
                continue
            prices = resolved.unit_prices[bucket]
            if prices is None:
                return None
            total += quantity * prices[3]
        for counter, quantity in cell.requests.items():
            if quantity == 0:
                continue
            price = entry.request_prices.get(counter)
            if price is None:
                return None
            total += quantity * picodollars_per_request(price)
        return total

    def cost(
        self,
        entry: RateCardEntry,
        profile: WorkloadProfile,
        cells: Iterable[PricingCell] | None = None,
    ) -> int | None:
        """Picodollars of the profile's cells (or of `cells`) on `entry`; None when not billable."""
        total = 0
        for cell in profile.cells if cells is None else cells:
            cost = self.cell_cost(entry, cell, profile.bands)
            if cost is None:
                return None
            total += cost
        return total

    def unit(
        self, entry: RateCardEntry, bucket: str, service_tier: str | None = None, region: str = ""
    ) -> int | None:
        """Effective picodollars per token of `bucket` at the base context tier."""
        prices = self.resolve(entry, (None, service_tier, None, region)).unit_prices[bucket]
        return None if prices is None else prices[3]


def transform(profile: WorkloadProfile, change: Callable[[PricingCell], PricingCell]) -> list[PricingCell]:
    """The profile's cells with `change` applied to each (e.g. reasoning tokens removed)."""
    return [change(cell) for cell in profile.cells]


def without_reasoning(cell: PricingCell) -> PricingCell:
    """The cell as if the model had not reasoned (reasoning tokens gone, nothing else changed)."""
    return replace(cell, tokens={**cell.tokens, "output_reasoning": 0})


def as_batch(cell: PricingCell) -> PricingCell:
    """The cell sent through the provider's batch API."""
    return replace(cell, service_tier="batch")
