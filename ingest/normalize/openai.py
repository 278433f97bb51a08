"""OpenAI Chat Completions and Responses usage (PROVIDER_FACTS 3.1, 3.2).

Both APIs report input *including* cached tokens and output *including* reasoning, so cached
tokens and cache writes are subtracted from the input and reasoning from the output. Rejected
prediction tokens stay in the visible output: they are billed at the output rate.
"""

from __future__ import annotations

from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    difference,
    get_count,
    get_field,
    get_label,
    has_field,
    raw_dict,
)
from costline.schemas.usage_event import TokenBuckets


def openai_chat_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """Chat Completions `response.usage`; pass `response.service_tier` as `service_tier`."""
    check_usage(usage)
    return _normalize(
        usage,
        input_name="prompt_tokens",
        input_details="prompt_tokens_details",
        output_name="completion_tokens",
        output_details="completion_tokens_details",
        service_tier=service_tier,
        region=region,
    )


def openai_responses_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """Responses API `response.usage`; pass `response.service_tier` as `service_tier`."""
    check_usage(usage)
    return _normalize(
        usage,
        input_name="input_tokens",
        input_details="input_tokens_details",
        output_name="output_tokens",
        output_details="output_tokens_details",
        service_tier=service_tier,
        region=region,
    )


def openai_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """Either OpenAI shape, told apart by its field names (gateways log both)."""
    check_usage(usage)
    if has_field(usage, "input_tokens") or has_field(usage, "output_tokens"):
        return openai_responses_usage(usage, service_tier=service_tier, region=region)
    return openai_chat_usage(usage, service_tier=service_tier, region=region)


def _normalize(
    usage: object,
    *,
    input_name: str,
    input_details: str,
    output_name: str,
    output_details: str,
    service_tier: str | None,
    region: str | None,
) -> NormalizedUsage:
    prompt = get_count(usage, input_name)
    cached = get_count(usage, input_details, "cached_tokens")
    ttl_30m, ttl_12h, writes = cache_writes(get_field(usage, input_details))
    completion = get_count(usage, output_name)
    reasoning = get_count(usage, output_details, "reasoning_tokens")
    tokens = TokenBuckets(
        input_uncached=difference(prompt, cached, writes, name="openai uncached input"),
        cache_read=cached,
        cache_write_30m=ttl_30m,
        cache_write_12h=ttl_12h,
        output_visible=difference(completion, reasoning, name="openai visible output"),
        output_reasoning=reasoning,
    )
    return NormalizedUsage(
        tokens=tokens,
        service_tier=get_label(usage, "service_tier") or service_tier,
        region=region,
        raw=raw_dict(usage),
    )


def cache_writes(details: object) -> tuple[int, int, int]:
    """(30-minute writes, 12-hour writes, all writes) from an OpenAI `*_tokens_details` object.

    Writes without a retention breakdown are 30-minute writes, OpenAI's default retention.
    """
    total = get_count(details, "cache_write_tokens")
    ttl_30m = get_count(details, "cache_write_tokens_details", "ttl_30m_tokens")
    ttl_12h = get_count(details, "cache_write_tokens_details", "ttl_12h_tokens")
    total = max(total, ttl_30m + ttl_12h)
    return total - ttl_12h, ttl_12h, total
