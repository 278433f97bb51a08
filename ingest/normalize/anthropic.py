"""Anthropic Messages usage (PROVIDER_FACTS 3.3).

`input_tokens` is *uncached* input only: cache reads and writes come on top of it, so nothing
is subtracted from the input. `output_tokens` is the billing total and includes thinking.
For a stream, pass the last cumulative usage (`message_delta.usage` values are running
totals, not increments).
"""

from __future__ import annotations

from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    difference,
    get_count,
    get_label,
    raw_dict,
)
from costline.schemas.usage_event import RequestCounters, TokenBuckets


def anthropic_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """`message.usage`; the usage's own `service_tier`/`inference_geo` win over the arguments."""
    check_usage(usage)
    write_5m = get_count(usage, "cache_creation", "ephemeral_5m_input_tokens")
    write_1h = get_count(usage, "cache_creation", "ephemeral_1h_input_tokens")
    writes = get_count(usage, "cache_creation_input_tokens")
    # Writes without a TTL breakdown (older API versions, some gateways) are 5-minute writes,
    # Anthropic's default TTL.
    write_5m += max(0, writes - write_5m - write_1h)
    output = get_count(usage, "output_tokens")
    thinking = get_count(usage, "output_tokens_details", "thinking_tokens")
    tokens = TokenBuckets(
        input_uncached=get_count(usage, "input_tokens"),
        cache_read=get_count(usage, "cache_read_input_tokens"),
        cache_write_5m=write_5m,
        cache_write_1h=write_1h,
        output_visible=difference(output, thinking, name="anthropic visible output"),
        output_reasoning=thinking,
    )
    requests = RequestCounters(
        web_search_requests=get_count(usage, "server_tool_use", "web_search_requests"),
        web_fetch_requests=get_count(usage, "server_tool_use", "web_fetch_requests"),
        code_execution_requests=get_count(usage, "server_tool_use", "code_execution_requests"),
    )
    return NormalizedUsage(
        tokens=tokens,
        requests=requests,
        service_tier=get_label(usage, "service_tier") or service_tier,
        region=get_label(usage, "inference_geo") or region,
        raw=raw_dict(usage),
    )
