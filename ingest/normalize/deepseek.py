"""DeepSeek usage (PROVIDER_FACTS 3.6): OpenAI-compatible, with its own cache hit/miss counts.

`prompt_cache_hit_tokens + prompt_cache_miss_tokens = prompt_tokens`; the miss count is what
DeepSeek bills at the input rate, so it is used as-is when present. Responses without the
DeepSeek fields fall back to OpenAI's `prompt_tokens_details.cached_tokens`.
"""

from __future__ import annotations

from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    difference,
    get_count,
    get_label,
    has_field,
    raw_dict,
)
from costline.schemas.usage_event import TokenBuckets


def deepseek_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """`response.usage` of DeepSeek's chat API (reasoning as in OpenAI's `completion_tokens_details`)."""
    check_usage(usage)
    prompt = get_count(usage, "prompt_tokens")
    if has_field(usage, "prompt_cache_hit_tokens") or has_field(usage, "prompt_cache_miss_tokens"):
        cached = get_count(usage, "prompt_cache_hit_tokens")
        if has_field(usage, "prompt_cache_miss_tokens"):
            uncached = get_count(usage, "prompt_cache_miss_tokens")
        else:
            uncached = difference(prompt, cached, name="deepseek cache misses")
    else:
        cached = get_count(usage, "prompt_tokens_details", "cached_tokens")
        uncached = difference(prompt, cached, name="deepseek uncached input")
    completion = get_count(usage, "completion_tokens")
    reasoning = get_count(usage, "completion_tokens_details", "reasoning_tokens")
    tokens = TokenBuckets(
        input_uncached=uncached,
        cache_read=cached,
        output_visible=difference(completion, reasoning, name="deepseek visible output"),
        output_reasoning=reasoning,
    )
    return NormalizedUsage(
        tokens=tokens,
        service_tier=get_label(usage, "service_tier") or service_tier,
        region=region,
        raw=raw_dict(usage),
    )
