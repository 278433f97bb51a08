"""The rate card: effective-dated prices per provider route and model.

Prices are decimal strings in USD per million tokens (per request for request charges). A price
change is a new entry with a later `effective_from`, never an edit, so history can be re-priced.

Every price must have at most six decimals per million tokens (a micro-dollar per MTok), so
a per-token price is a whole number of picodollars and every cost is an exact integer of
picodollars that fits a ClickHouse `Decimal(38, 12)` column. Adjusted prices (multipliers for
batch, geo, off-peak, GPU-hour derivations) are rounded half-even to that grid once, per price:
after that, costs of single events always sum exactly to the cost of their token totals.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RATECARD_SCHEMA = "costline.ratecard/v1"

#: Picodollars per dollar: the unit every cost is computed in.
PICO = 10**12
#: Tokens per pricing unit.
PER_MILLION = 10**6
#: Decimals allowed in a price per million tokens (and in the adjusted price).
PRICE_DECIMALS = 6
#: Decimals allowed in a per-request price (dollars per request).
REQUEST_PRICE_DECIMALS = 12

PriceKey = Literal[
    "input",
    "cache_read",
    "cache_write_5m",
    "cache_write_30m",
    "cache_write_1h",
    "cache_write_12h",
    "output",
    "reasoning",
]
PRICE_KEYS: tuple[str, ...] = (
    "input",
    "cache_read",
    "cache_write_5m",
    "cache_write_30m",
    "cache_write_1h",
    "cache_write_12h",
    "output",
    "reasoning",
)
#: Which price key bills each UsageEvent token bucket.
BUCKET_PRICE_KEY: dict[str, str] = {
    "input_uncached": "input",
    "cache_read": "cache_read",
    "cache_write_5m": "cache_write_5m",
    "cache_write_30m": "cache_write_30m",
    "cache_write_1h": "cache_write_1h",
    "cache_write_12h": "cache_write_12h",
    "output_visible": "output",
    "output_reasoning": "reasoning",
}
#: A price key with no price of its own falls back to this one (reasoning is billed as output).
PRICE_FALLBACK: dict[str, str] = {"reasoning": "output"}

NonNegativeDecimal = Annotated[Decimal, Field(ge=0)]
PositiveDecimal = Annotated[Decimal, Field(gt=0)]


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_decimals(value: Decimal, places: int, what: str) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite decimal, got {value}")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise ValueError(f"{what} {value} has more than {places} decimals")
    return value


class PriceSet(_Card):
    """USD per million tokens, per price key. A missing key means "no price known"."""

    input: NonNegativeDecimal | None = None
    cache_read: NonNegativeDecimal | None = None
    cache_write_5m: NonNegativeDecimal | None = None
    cache_write_30m: NonNegativeDecimal | None = None
    cache_write_1h: NonNegativeDecimal | None = None
    cache_write_12h: NonNegativeDecimal | None = None
    output: NonNegativeDecimal | None = None
    reasoning: NonNegativeDecimal | None = None

    @field_validator("*")
    @classmethod
    def _on_the_micro_grid(cls, value: Decimal | None) -> Decimal | None:
        if value is None:
            return None
        return _check_decimals(value, PRICE_DECIMALS, "a price per million tokens")

    def get(self, key: str) -> Decimal | None:
        """The price for `key`, falling back (reasoning → output) when it has none of its own."""
        value: Decimal | None = getattr(self, key)
        if value is None and key in PRICE_FALLBACK:
            value = getattr(self, PRICE_FALLBACK[key])
        return value

    def merged_over(self, base: PriceSet) -> PriceSet:
        """This set's prices where given, `base`'s elsewhere."""
        return PriceSet(
            **{k: getattr(self, k) if getattr(self, k) is not None else getattr(base, k) for k in PRICE_KEYS}
        )


class Adjustment(_Card):
    """A multiplier on the prices in force, per-key multipliers, or explicit prices (merged over them).

    `multipliers` exists because some discounts do not apply to every bucket (Gemini batch halves
    input and output but not cache reads) and, unlike explicit prices, still follow context tiers.
    """

    multiplier: PositiveDecimal | None = None
    multipliers: dict[PriceKey, PositiveDecimal] | None = Field(
        None, description="Per price key; a key not listed keeps its price."
    )
    prices: PriceSet | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Adjustment:
        given = [f for f in ("multiplier", "multipliers", "prices") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError("an adjustment needs exactly one of `multiplier`, `multipliers` or `prices`")
        if self.multipliers is not None and not self.multipliers:
            raise ValueError("`multipliers` needs at least one price key")
        return self

    def apply(self, prices: PriceSet) -> PriceSet:
        """The prices after this adjustment, rounded to the micro-dollar-per-MTok grid."""
        if self.prices is not None:
            return self.prices.merged_over(prices)
        if self.multipliers is not None:
            return scale_prices_per_key(prices, self.multipliers)
        assert self.multiplier is not None
        return scale_prices(prices, self.multiplier)


class ContextTier(_Card):
    """Above this many input tokens in one request, the whole request is priced at these prices."""

    above_input_tokens: Annotated[int, Field(gt=0)]
    prices: PriceSet


class TimeWindow(_Card):
    """A daily window in a named time zone (e.g. DeepSeek's off-peak hours) with its own prices.

    `start == end` means the whole day (useful with `weekdays`, e.g. weekends off-peak).
    """

    name: str
    start: time
    end: time
    timezone: str = "UTC"
    weekdays: list[Annotated[int, Field(ge=1, le=7)]] = Field(
        default_factory=list,
        description="ISO weekdays (1 = Monday … 7 = Sunday) of the local date; empty means every day.",
    )
    adjustment: Adjustment

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name like Asia/Shanghai") from exc
        return value

    def contains(self, instant: datetime) -> bool:
        """Whether `instant` falls in the window; a window may wrap past midnight."""
        moment = instant.astimezone(ZoneInfo(self.timezone))
        if self.weekdays and moment.isoweekday() not in self.weekdays:
            return False
        local = moment.time().replace(tzinfo=None)
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class SelfHosted(_Card):
    """A self-hosted model priced from what its GPUs cost and how fast they serve tokens."""

    gpu_hour_usd: PositiveDecimal
    gpus: Annotated[int, Field(ge=1)] = 1
    input_tokens_per_second: PositiveDecimal
    output_tokens_per_second: PositiveDecimal

    def prices(self) -> PriceSet:
        """Per-MTok prices: fleet cost per second divided by throughput, on the micro grid."""
        cost_per_second = self.gpu_hour_usd * self.gpus / Decimal(3600)
        with localcontext() as ctx:
            ctx.prec = 50
            input_price = cost_per_second / self.input_tokens_per_second * PER_MILLION
            output_price = cost_per_second / self.output_tokens_per_second * PER_MILLION
        return PriceSet(input=_on_grid(input_price), output=_on_grid(output_price))


class RateCardEntry(_Card):
    """Prices of one model on one provider route over one effective period."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    provider: Annotated[str, Field(min_length=1, max_length=64)]
    model: Annotated[str, Field(min_length=1, max_length=200)]
    aliases: list[str] = Field(default_factory=list)
    effective_from: datetime
    effective_to: datetime | None = None
    currency: Literal["USD"] = "USD"
    prices: PriceSet | None = None
    self_hosted: SelfHosted | None = None
    request_prices: dict[str, NonNegativeDecimal] = Field(
        default_factory=dict, description="USD per request, keyed by RequestCounters field."
    )
    context_tiers: list[ContextTier] = Field(default_factory=list)
    service_tiers: dict[str, Adjustment] = Field(default_factory=dict)
    geo: dict[str, Adjustment] = Field(default_factory=dict)
    time_windows: list[TimeWindow] = Field(default_factory=list)
    context_window: Annotated[int, Field(gt=0)] | None = None
    max_output_tokens: Annotated[int, Field(gt=0)] | None = None
    capabilities: list[str] = Field(default_factory=list)
    source: str | None = Field(None, description="Where these prices came from (a page, an import).")

    @field_validator("effective_from", "effective_to", mode="before")
    @classmethod
    def _dates_are_utc_midnight(cls, value: object) -> object:
        if isinstance(value, str) and len(value) == 10:
            value = date.fromisoformat(value)
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("effective_from", "effective_to")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("effective dates need a timezone (or give a plain date, read as 00:00 UTC)")
        return value.astimezone(UTC)

    @field_validator("request_prices")
    @classmethod
    def _request_prices_on_grid(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for key, price in value.items():
            _check_decimals(price, REQUEST_PRICE_DECIMALS, f"request price {key}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RateCardEntry:
        if (self.prices is None) == (self.self_hosted is None):
            raise ValueError("an entry needs exactly one of `prices` or `self_hosted`")
        if self.effective_to is not None and self.effective_to <= self.effective_from:
            raise ValueError("effective_to must be after effective_from")
        thresholds = [tier.above_input_tokens for tier in self.context_tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("context_tiers must be in increasing order of above_input_tokens, no repeats")
        return self

    def base_prices(self) -> PriceSet:
        """Standard-tier prices (derived from GPU cost for self-hosted models)."""
        if self.self_hosted is not None:
            return self.self_hosted.prices()
        assert self.prices is not None
        return self.prices

    def covers(self, instant: datetime) -> bool:
        """Whether the entry is in force at `instant` (from inclusive, to exclusive)."""
        return self.effective_from <= instant and (self.effective_to is None or instant < self.effective_to)


class RateCard(_Card):
    """A whole card: the schema tag and its entries."""

    schema_: Literal["costline.ratecard/v1"] = Field("costline.ratecard/v1", alias="schema")
    entries: list[RateCardEntry]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> RateCard:
        seen: set[str] = set()
        for entry in self.entries:
            if entry.id in seen:
                raise ValueError(f"duplicate entry id {entry.id!r}")
            seen.add(entry.id)
        return self


def _on_grid(price: Decimal) -> Decimal:
    """Round a derived price half-even to the micro-dollar-per-MTok grid."""
    return price.quantize(Decimal(1).scaleb(-PRICE_DECIMALS), rounding=ROUND_HALF_EVEN).normalize()


def scale_prices(prices: PriceSet, multiplier: Decimal) -> PriceSet:
    """Every price times `multiplier`, rounded once to the grid."""
    with localcontext() as ctx:
        ctx.prec = 50
        return PriceSet(
            **{
                key: None if (p := getattr(prices, key)) is None else _on_grid(p * multiplier)
                for key in PRICE_KEYS
            }
        )


def scale_prices_per_key(prices: PriceSet, multipliers: Mapping[PriceKey, Decimal]) -> PriceSet:
    """Each listed price times its own multiplier, rounded once to the grid; others unchanged."""
    by_name: dict[str, Decimal] = {str(k): v for k, v in multipliers.items()}
    with localcontext() as ctx:
        ctx.prec = 50
        return PriceSet(
            **{
                key: p
                if (p := getattr(prices, key)) is None or key not in by_name
                else _on_grid(p * by_name[key])
                for key in PRICE_KEYS
            }
        )


def picodollars_per_token(price_per_million: Decimal) -> int:
    """The exact integer picodollars per token of a grid price per million tokens."""
    value = price_per_million * (PICO // PER_MILLION)
    if value != value.to_integral_value():
        raise ValueError(f"price {price_per_million} per MTok is not on the micro-dollar grid")
    return int(value)


def picodollars_per_request(price: Decimal) -> int:
    """The exact integer picodollars of a per-request price."""
    value = price * PICO
    if value != value.to_integral_value():
        raise ValueError(f"request price {price} has more than {REQUEST_PRICE_DECIMALS} decimals")
    return int(value)
