"""Provider usage objects → disjoint token buckets.

Providers disagree on whether "input" includes cached tokens and whether "output" includes
reasoning (PROVIDER_FACTS 3.7). Each module here owns one provider's mapping as a pure
function; everything downstream prices `TokenBuckets` without knowing the provider.

SDK objects are read by shape (a dict or any object with attributes, such as the pydantic
models of the openai/anthropic/google-genai SDKs), never by `isinstance` against SDK classes,
so no SDK has to be installed. A missing or null field counts as 0; a negative count (seen
from buggy OpenAI-compatible servers) is clamped to 0 and logged at debug level. A count above
the schema's per-bucket ceiling still raises (pydantic's ValidationError, a ValueError): it is
an upstream bug to dead-letter, not a number to price.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from costline.schemas.usage_event import RequestCounters, TokenBuckets

logger = logging.getLogger(__name__)

_MAX_RAW_DEPTH = 12
#: Types that cannot be a usage object (nor a nested part of one that has fields).
_NOT_USAGE = (str, bytes, bytearray, int, float, bool, list, tuple, set, frozenset)


@dataclass(frozen=True)
class NormalizedUsage:
    """One provider usage object as disjoint buckets, plus the signals it carried."""

    tokens: TokenBuckets
    requests: RequestCounters = field(default_factory=RequestCounters)
    service_tier: str | None = None
    region: str | None = None
    #: The provider's usage object as a JSON-safe dict, kept for audit (`UsageEvent.raw_usage`).
    raw: dict[str, Any] = field(default_factory=dict)


#: Signature shared by every normalizer; `service_tier`/`region` are fallbacks for providers
#: that report them on the response rather than inside the usage object.
Normalizer = Callable[..., NormalizedUsage]


def check_usage(usage: object) -> None:
    """Reject inputs that cannot be a usage object; everything else is read leniently."""
    if usage is None or isinstance(usage, _NOT_USAGE):
        raise ValueError(
            f"usage must be a mapping or an SDK object with attributes, got {type(usage).__name__}; "
            "pass the provider's usage object (e.g. response.usage), not the response text"
        )


def get_field(source: object, *path: str) -> Any:
    """Read `a.b.c` from nested dicts or attribute objects alike; None when any step is missing."""
    current: Any = source
    for name in path:
        if current is None:
            return None
        if isinstance(current, Mapping):
            current = current.get(name)
        elif isinstance(current, _NOT_USAGE):
            return None
        else:
            current = getattr(current, name, None)
    return current


def to_count(value: object, *, name: str = "count") -> int:
    """A token or request count from whatever was reported: junk and null are 0, negatives clamp to 0."""
    if value is None or isinstance(value, bool):
        return 0
    number: int
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return 0
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            return 0
    else:
        return 0
    if number < 0:
        logger.debug("negative %s %d reported by the provider, clamped to 0", name, number)
        return 0
    return number


def get_count(source: object, *path: str) -> int:
    """`get_field` read as a count (missing → 0)."""
    return to_count(get_field(source, *path), name=".".join(path))


def has_field(source: object, *path: str) -> bool:
    """Whether the provider reported the field at all (distinguishes "0" from "unknown")."""
    return get_field(source, *path) is not None


def difference(total: int, *parts: int, name: str) -> int:
    """`total − parts` clamped at 0: inconsistent provider counts never make a negative bucket."""
    rest = total - sum(parts)
    if rest < 0:
        logger.debug("%s would be %d (total %d, parts %s); clamped to 0", name, rest, total, parts)
        return 0
    return rest


def get_label(source: object, *path: str) -> str | None:
    """A short string signal (tier, geo); enums give their value, blanks and non-strings give None."""
    value = get_field(source, *path)
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:64] or None


def to_jsonable(value: object, _depth: int = 0) -> Any:
    """JSON-safe copy of a usage object (dicts, SDK pydantic models, plain objects) for audit."""
    if _depth > _MAX_RAW_DEPTH:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return to_jsonable(value.value, _depth + 1)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item, _depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item, _depth + 1) for item in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models of the provider SDKs: only what the API actually sent
        try:
            dumped = dump(mode="json", exclude_unset=True)
        except TypeError:
            dumped = dump()
        return to_jsonable(dumped, _depth + 1)
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        return {
            key: to_jsonable(item, _depth + 1)
            for key, item in attributes.items()
            if not key.startswith("_") and not callable(item)
        }
    return str(value)


def raw_dict(usage: object) -> dict[str, Any]:
    """The usage object as a JSON-safe dict (`{}` if it has no readable fields)."""
    raw = to_jsonable(usage)
    return raw if isinstance(raw, dict) else {}


# The provider modules import the helpers above, so they are imported after them.
from costline.ingest.normalize.anthropic import anthropic_usage  # noqa: E402
from costline.ingest.normalize.bedrock import bedrock_converse_usage  # noqa: E402
from costline.ingest.normalize.deepseek import deepseek_usage  # noqa: E402
from costline.ingest.normalize.gemini import gemini_usage  # noqa: E402
from costline.ingest.normalize.openai import (  # noqa: E402
    openai_chat_usage,
    openai_responses_usage,
    openai_usage,
)

#: The normalizer for each provider id (OTel `gen_ai.provider.name`). OpenAI-compatible
#: providers without a module of their own use the Chat Completions/Responses mapping.
NORMALIZERS: Mapping[str, Normalizer] = {
    "openai": openai_usage,
    "azure.ai.openai": openai_usage,
    "azure.ai.inference": openai_usage,
    "anthropic": anthropic_usage,
    "aws.bedrock": bedrock_converse_usage,
    "gcp.gemini": gemini_usage,
    "gcp.vertex_ai": gemini_usage,
    "gcp.gen_ai": gemini_usage,
    "deepseek": deepseek_usage,
    "mistral_ai": openai_usage,
    "x_ai": openai_usage,
    "groq": openai_usage,
    "perplexity": openai_usage,
}


def normalizer_for_shape(usage: object) -> Normalizer:
    """The normalizer whose field names `usage` carries (for gateways that route to unknown providers).

    Anthropic-style usage without any cache field reads the same through the OpenAI Responses
    mapping, so the ambiguous case cannot be priced wrong.
    """
    if has_field(usage, "prompt_cache_hit_tokens") or has_field(usage, "prompt_cache_miss_tokens"):
        return deepseek_usage
    if has_field(usage, "promptTokenCount") or has_field(usage, "prompt_token_count"):
        return gemini_usage
    if has_field(usage, "inputTokens") or has_field(usage, "outputTokens"):
        return bedrock_converse_usage
    if any(has_field(usage, name) for name in ("cache_creation_input_tokens", "cache_read_input_tokens")):
        return anthropic_usage
    return openai_usage


def normalize_usage(
    provider: str, usage: object, *, service_tier: str | None = None, region: str | None = None
) -> NormalizedUsage:
    """Normalize `usage` with the provider's mapping; unknown providers are recognized by shape."""
    check_usage(usage)
    normalizer = NORMALIZERS.get(provider) or normalizer_for_shape(usage)
    return normalizer(usage, service_tier=service_tier, region=region)


__all__ = [
    "NORMALIZERS",
    "NormalizedUsage",
    "Normalizer",
    "anthropic_usage",
    "bedrock_converse_usage",
    "deepseek_usage",
    "gemini_usage",
    "normalize_usage",
    "normalizer_for_shape",
    "openai_chat_usage",
    "openai_responses_usage",
    "openai_usage",
]
