"""Gateway log adapters: the request logs of LLM gateways → UsageEvents.

Format names (as on the command line):

* `litellm` — LiteLLM proxy StandardLoggingPayload (custom callback, generic_api logger, buckets)
* `litellm-spendlogs` — rows of LiteLLM's `LiteLLM_SpendLogs` table / `/spend/logs`
* `bedrock` — AWS Bedrock model invocation logs (CloudWatch or S3)
* `kong` — Kong AI Gateway request logs (`ai.proxy`, older `ai["ai-proxy"]`)
* `cloudflare` — Cloudflare AI Gateway log items
* `mapped` — any JSON-lines log through a YAML field mapping (Envoy AI Gateway, custom proxies)

Every adapter reads records by shape and tolerates missing and extra fields; none imports a
gateway's own package. See docs/gateways.md.
"""

from __future__ import annotations

from pathlib import Path

from costline.ingest.gateways import bedrock, cloudflare, kong, litellm
from costline.ingest.gateways.base import Adapter, ParseResult
from costline.ingest.gateways.mapped import FieldMapping, load_mapping
from costline.schemas.errors import ConfigError

#: The adapters that need no configuration, by format name.
ADAPTERS: dict[str, Adapter] = {
    "litellm": litellm.ADAPTER,
    "litellm-spendlogs": litellm.SPENDLOGS_ADAPTER,
    "bedrock": bedrock.ADAPTER,
    "kong": kong.ADAPTER,
    "cloudflare": cloudflare.ADAPTER,
}
MAPPED = "mapped"
FORMATS: tuple[str, ...] = (*ADAPTERS, MAPPED)


def get_adapter(name: str, mapping: Path | str | None = None) -> Adapter:
    """The adapter of a format name; `mapped` needs the mapping file. ConfigError otherwise."""
    if name == MAPPED:
        if mapping is None:
            raise ConfigError(
                "format `mapped` needs a mapping file: pass --mapping FILE (see docs/gateways.md)"
            )
        return load_mapping(mapping).adapter
    if name not in ADAPTERS:
        raise ConfigError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    if mapping is not None:
        raise ConfigError(f"--mapping only applies to format `mapped`, not {name!r}")
    return ADAPTERS[name]


__all__ = ["ADAPTERS", "FORMATS", "Adapter", "FieldMapping", "ParseResult", "get_adapter", "load_mapping"]
