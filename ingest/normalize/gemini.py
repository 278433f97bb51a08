"""Gemini / Vertex AI `usageMetadata` (PROVIDER_FACTS 3.4).

`promptTokenCount` includes cached content, so cached tokens are subtracted; tool results fed
back (`toolUsePromptTokenCount`) are separate input and are added. Thinking tokens are normally
*outside* `candidatesTokenCount` and billed as output on top of it. Both the REST camelCase
names and the google-genai SDK's snake_case names are accepted.
"""

from __future__ import annotations

import re

from costline.ingest.normalize import (
    NormalizedUsage,
    check_usage,
    difference,
    get_count,
    get_label,
    has_field,
    raw_dict,
)
from costline.ingest.normalize.anthropic import anthropic_usage
from costline.schemas.usage_event import TokenBuckets

#: Vertex `trafficType` → the service tier names the rate card uses.
TRAFFIC_TYPE_TIERS: dict[str, str] = {
    "ON_DEMAND": "standard",
    "ON_DEMAND_PRIORITY": "priority",
    "ON_DEMAND_FLEX": "flex",
    "ON_DEMAND_OFFPEAK": "offpeak",
    "PROVISIONED_THROUGHPUT": "provisioned",
    "TRAFFIC_TYPE_UNSPECIFIED": "",
}

_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")


def gemini_usage(
    usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """`response.usage_metadata` (SDK) or `usageMetadata` (REST); Claude-on-Vertex usage is delegated."""
    check_usage(usage)
    if not _has(usage, "promptTokenCount") and (
        has_field(usage, "input_tokens") or has_field(usage, "output_tokens")
    ):
        return anthropic_usage(usage, service_tier=service_tier, region=region)
    prompt = _count(usage, "promptTokenCount")
    cached = _count(usage, "cachedContentTokenCount")
    tool_use = _count(usage, "toolUsePromptTokenCount")
    candidates = _count(usage, "candidatesTokenCount") or _count(usage, "responseTokenCount")
    thoughts = _count(usage, "thoughtsTokenCount")
    visible = candidates
    # Some model versions report thoughts inside the candidates; the totals then add up without
    # them (the same guard LiteLLM uses), and adding thoughts again would bill them twice.
    if (
        thoughts
        and _has(usage, "totalTokenCount")
        and prompt + candidates + tool_use == _count(usage, "totalTokenCount")
    ):
        visible = difference(candidates, thoughts, name="gemini candidates without thoughts")
    tokens = TokenBuckets(
        input_uncached=difference(prompt, cached, name="gemini uncached prompt") + tool_use,
        cache_read=cached,
        output_visible=visible,
        output_reasoning=thoughts,
    )
    return NormalizedUsage(
        tokens=tokens,
        service_tier=_tier(_label(usage, "trafficType")) or service_tier,
        region=region,
        raw=raw_dict(usage),
    )


def _snake(camel: str) -> str:
    return _CAMEL_HUMP.sub("_", camel).lower()


def _has(usage: object, camel: str) -> bool:
    return has_field(usage, camel) or has_field(usage, _snake(camel))


def _count(usage: object, camel: str) -> int:
    if has_field(usage, camel):
        return get_count(usage, camel)
    return get_count(usage, _snake(camel))


def _label(usage: object, camel: str) -> str | None:
    return get_label(usage, camel) or get_label(usage, _snake(camel))


def _tier(traffic_type: str | None) -> str | None:
    if traffic_type is None:
        return None
    tier = TRAFFIC_TYPE_TIERS.get(traffic_type.upper(), traffic_type.lower())
    return tier or None
