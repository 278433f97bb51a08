"""A UsageEvent with its price: cost per bucket, list and effective totals, and how it was priced.

Costs are exact `Decimal`s in USD with at most 12 decimals (whole picodollars), so they are
stored unchanged in `Decimal(38, 12)` columns and sum without rounding.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from costline.schemas.usage_event import UsageEvent

PricingStatus = Literal["priced", "partial", "unpriced"]


class CostLine(BaseModel):
    """One billed quantity: a token bucket or a request counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(
        description="UsageEvent bucket or counter name, e.g. cache_read, web_search_requests."
    )
    quantity: int
    unit: Literal["tokens", "requests"]
    list_unit_price: Decimal = Field(description="USD per million tokens (or per request) at list.")
    effective_unit_price: Decimal = Field(description="USD per million tokens (or per request) charged.")
    list_cost: Decimal
    effective_cost: Decimal


class PricedEvent(BaseModel):
    """The result of pricing one event against one rate card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: UsageEvent
    status: PricingStatus
    reason: str | None = Field(None, description="Why the event is partial or unpriced.")
    ratecard_entry_id: str | None = None
    context_tier: str | None = Field(None, description="Long-context tier applied, e.g. '>200000'.")
    adjustments: list[str] = Field(
        default_factory=list, description="Adjustments applied after list price, e.g. service_tier:batch."
    )
    currency: str = "USD"
    lines: list[CostLine] = Field(default_factory=list)
    list_cost: Decimal = Decimal(0)
    effective_cost: Decimal = Decimal(0)
    unpriced_buckets: list[str] = Field(default_factory=list)

    def cost_of(self, bucket: str) -> Decimal:
        """Effective cost of one bucket (zero when it was not billed)."""
        return sum((line.effective_cost for line in self.lines if line.bucket == bucket), Decimal(0))
