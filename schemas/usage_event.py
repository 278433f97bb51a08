"""The UsageEvent: one LLM call, normalized so that every token sits in exactly one bucket.

Providers disagree on whether "input" includes cached tokens and whether "output" includes
reasoning; the normalizer of each source (``costline.ingest.normalize``) owns that mapping.
Once an event is a ``UsageEvent``, its buckets are disjoint and can be priced and summed
without knowing where it came from.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1

#: No single request carries more tokens than this in one bucket; larger counts are a bug upstream.
MAX_TOKENS_PER_BUCKET = 50_000_000
#: No single request makes more billable server-tool calls than this.
MAX_REQUESTS_PER_COUNTER = 100_000
#: Clock skew tolerated for events stamped in the future.
MAX_FUTURE_SKEW = timedelta(minutes=10)
#: Events older than this are rejected at ingestion (a backfill of last year's logs still fits).
MAX_EVENT_AGE = timedelta(days=400)
#: Serialized size limit of the provider's raw usage object kept for audit.
MAX_RAW_USAGE_BYTES = 16_384
MAX_TAGS = 32

#: Validation context key: set it to False to accept any timestamp (re-reading stored history).
CHECK_TIME_WINDOW = "check_time_window"
#: Validation context key: the "now" that the time window is measured from (tests, replays).
NOW = "now"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+=-]+$")
]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/-]+$")]
TagValue = Annotated[str, StringConstraints(max_length=256)]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_BUCKET)]
RequestCount = Annotated[int, Field(ge=0, le=MAX_REQUESTS_PER_COUNTER)]

Status = Literal["ok", "error", "partial"]
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]

_HEX_HASH = re.compile(r"^[0-9a-f]{16,64}$")


class _Strict(BaseModel):
    """Unknown fields are rejected so a typo never silently drops data."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096)


class TokenBuckets(_Strict):
    """Disjoint token counts: a token is billed in exactly one of these."""

    input_uncached: TokenCount = 0
    cache_read: TokenCount = 0
    cache_write_5m: TokenCount = 0
    cache_write_30m: TokenCount = 0
    cache_write_1h: TokenCount = 0
    cache_write_12h: TokenCount = 0
    output_visible: TokenCount = 0
    output_reasoning: TokenCount = 0

    @property
    def cache_write(self) -> int:
        """All cache writes, whatever their lifetime."""
        return self.cache_write_5m + self.cache_write_30m + self.cache_write_1h + self.cache_write_12h

    @property
    def input_total(self) -> int:
        """Every input token, cached or not (OTel `gen_ai.usage.input_tokens`)."""
        return self.input_uncached + self.cache_read + self.cache_write

    @property
    def output_total(self) -> int:
        """Visible plus reasoning output (OTel `gen_ai.usage.output_tokens`)."""
        return self.output_visible + self.output_reasoning


#: Names of the token buckets, in the order reports show them.
TOKEN_BUCKETS: tuple[str, ...] = tuple(TokenBuckets.model_fields)


class RequestCounters(_Strict):
    """Billable per-request charges that are not tokens."""

    web_search_requests: RequestCount = 0
    web_fetch_requests: RequestCount = 0
    code_execution_requests: RequestCount = 0


REQUEST_COUNTERS: tuple[str, ...] = tuple(RequestCounters.model_fields)


class Attribution(_Strict):
    """Who the money is charged to."""

    team: Name | None = None
    project: Name | None = None
    workload: Name | None = None
    user_hash: str | None = Field(
        None, description="Hex digest of the user id (see `hash_user`); never the raw id."
    )
    environment: Name | None = None
    cost_center: Name | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)

    @field_validator("user_hash")
    @classmethod
    def _user_hash_is_a_digest(cls, value: str | None) -> str | None:
        if value is not None and not _HEX_HASH.match(value):
            raise ValueError(
                "user_hash must be a lowercase hex digest of 16-64 characters; "
                "hash the user id with costline.schemas.usage_event.hash_user"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _bounded_tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags are allowed, got {len(value)}")
        return value


class Signals(_Strict):
    """What detectors need to know about the call, without any prompt content."""

    prompt_prefix_hash: str | None = Field(
        None, description="Hex digest of the stable prompt prefix (system prompt, tools)."
    )
    caching_requested: bool | None = None
    reasoning_effort: ReasoningEffort | None = None
    output_chars: Annotated[int, Field(ge=0, le=100_000_000)] | None = Field(
        None, description="Length of the visible answer in characters."
    )
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    time_to_first_token_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    status: Status = "ok"
    error_type: Annotated[str, StringConstraints(max_length=256)] | None = None
    finish_reason: Annotated[str, StringConstraints(max_length=64)] | None = None
    service_tier: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        None, description="Tier that actually served the call: standard, batch, flex, priority, ..."
    )
    region: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="Inference geo or cloud region, as the provider reports it."
    )
    batch: bool = False
    stream: bool = False
    gateway_cache_hit: bool = Field(
        False, description="Answered from a gateway's response cache: no provider call, no provider cost."
    )

    @field_validator("prompt_prefix_hash")
    @classmethod
    def _prefix_hash_is_a_digest(cls, value: str | None) -> str | None:
        if value is not None and not _HEX_HASH.match(value):
            raise ValueError("prompt_prefix_hash must be a lowercase hex digest of 16-64 characters")
        return value


class UsageEvent(_Strict):
    """One LLM call. `event_id` is the idempotency key: the same call always has the same id."""

    schema_version: Literal[1] = 1
    event_id: Identifier
    occurred_at: datetime = Field(description="When the call started, timezone-aware (stored as UTC).")
    source: Identifier = Field(description="What produced the event, e.g. sdk.openai, gateway.litellm.")
    provider: Identifier = Field(description="OTel gen_ai.provider.name: openai, anthropic, aws.bedrock, ...")
    operation: Identifier = Field("chat", description="OTel gen_ai.operation.name.")
    request_model: Name | None = None
    response_model: Name | None = None
    tokens: TokenBuckets = Field(default_factory=TokenBuckets)
    requests: RequestCounters = Field(default_factory=RequestCounters)
    attribution: Attribution = Field(default_factory=Attribution)
    signals: Signals = Field(default_factory=Signals)
    trace_id: Identifier | None = None
    span_id: Identifier | None = None
    session_id: Identifier | None = None
    raw_usage: dict[str, Any] | None = Field(
        None, description="The provider's usage object as received, for audit."
    )
    reported_cost: Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=26, decimal_places=12)] | None = (
        Field(
            None, description="The cost a gateway reported for this call (USD), kept beside costline's own."
        )
    )

    @field_validator("occurred_at")
    @classmethod
    def _aware_utc_within_window(cls, value: datetime, info: ValidationInfo) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("occurred_at must carry a timezone, e.g. 2026-11-23T10:00:00Z")
        # canonical form: UTC, whole milliseconds (what the store keeps), so a stored event round-trips
        value = value.astimezone(UTC)
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
        context = info.context or {}
        if context.get(CHECK_TIME_WINDOW, True):
            now = context.get(NOW) or datetime.now(UTC)
            if value > now + MAX_FUTURE_SKEW:
                raise ValueError(f"occurred_at {value.isoformat()} is in the future (now {now.isoformat()})")
            if value < now - MAX_EVENT_AGE:
                raise ValueError(
                    f"occurred_at {value.isoformat()} is older than {MAX_EVENT_AGE.days} days; "
                    "backfill older history with the store's import, not the live stream"
                )
        return value

    @field_validator("raw_usage")
    @classmethod
    def _bounded_raw_usage(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        size = len(json.dumps(value, default=str))
        if size > MAX_RAW_USAGE_BYTES:
            raise ValueError(f"raw_usage is {size} bytes serialized; the limit is {MAX_RAW_USAGE_BYTES}")
        return value

    @model_validator(mode="after")
    def _has_a_model(self) -> UsageEvent:
        if self.request_model is None and self.response_model is None:
            raise ValueError("an event needs request_model or response_model (the model that was called)")
        return self

    @property
    def model(self) -> str:
        """The model to price: the one that answered when known, else the one asked for."""
        return self.response_model or self.request_model or ""


def hash_user(user_id: str, salt: str = "") -> str:
    """Hash a user id locally so only the digest leaves the process."""
    return hashlib.sha256(f"{salt}\x00{user_id}".encode()).hexdigest()


def hash_prompt_prefix(prefix: str) -> str:
    """Digest of a prompt prefix: equal prefixes give equal hashes, content never leaves."""
    return hashlib.sha256(prefix.encode()).hexdigest()[:32]
