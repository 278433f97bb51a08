"""Amazon Bedrock Converse / ConverseStream `usage` (PROVIDER_FACTS 3.5).

`inputTokens` excludes cache reads and writes, which come on top of it. `outputTokens`
includes any thinking, but Converse does not say how much, so all output is counted as
visible (same price: reasoning is billed at the output rate). InvokeModel with Anthropic
models returns Anthropic's own snake_case usage, which is handed to `anthropic_usage`.
"""

from __future__ import annotations

from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    get_count,
    get_field,
    get_label,
    has_field,
    raw_dict,
)
from costline.ingest.normalize.anthropic import anthropic_usage
from costline.schemas.usage_event import TokenBuckets

_ANTHROPIC_NATIVE = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def bedrock_converse_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """Converse `response["usage"]` (or the stream's metadata usage); pass the response's
    `serviceTier.type` as `service_tier` and the AWS region as `region`."""
    check_usage(usage)
    if not has_field(usage, "inputTokens") and any(has_field(usage, name) for name in _ANTHROPIC_NATIVE):
        return anthropic_usage(usage, service_tier=service_tier, region=region)
    write_5m, write_1h = _cache_writes(usage)
    output = get_count(usage, "outputTokens")
    tokens = TokenBuckets(
        input_uncached=get_count(usage, "inputTokens"),
        cache_read=get_count(usage, "cacheReadInputTokens"),
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output_visible=output,
    )
    tier = get_label(usage, "serviceTier", "type") or get_label(usage, "serviceTier") or service_tier
    return NormalizedUsage(tokens=tokens, service_tier=tier, region=region, raw=raw_dict(usage))


def _cache_writes(usage: object) -> tuple[int, int]:
    """(5-minute, 1-hour) writes; writes the `cacheDetails` list does not explain are 5-minute ones."""
    by_ttl = {"5m": 0, "1h": 0}
    details = get_field(usage, "cacheDetails")
    if isinstance(details, list | tuple):
        for detail in details:
            ttl = (get_label(detail, "ttl") or "").lower()
            by_ttl["1h" if ttl == "1h" else "5m"] += get_count(detail, "inputTokens")
    unexplained = max(0, get_count(usage, "cacheWriteInputTokens") - by_ttl["5m"] - by_ttl["1h"])
    return by_ttl["5m"] + unexplained, by_ttl["1h"]
