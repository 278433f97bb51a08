"""Detector thresholds: sane defaults, overridden per workload from a YAML file.

The file (`COSTLINE_DETECTORS_PATH`) looks like::

    defaults:                  # applies to every workload
      spikes: {min_excess_usd: "5.00"}
    workloads:
      support/ticket-triage:   # team/workload; a bare workload name matches it in every team
        overthinking: {short_output_tokens: 16}
      nightly-summaries:
        spikes: {enabled: false}
    providers:                 # prompt-cache facts, merged over the built-in ones
      anthropic:
        min_cacheable_tokens: {claude-haiku-4: 4096}

Workload settings are merged key by key over the defaults, so an override names only what it
changes. Money thresholds are decimal strings in USD and become integer picodollars.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from costline.schemas.errors import ConfigError

PICO = 10**12

Ratio = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Tokens = Annotated[int, Field(ge=0)]
Seconds = Annotated[int, Field(gt=0)]
Usd = Annotated[Decimal, Field(ge=0, max_digits=26, decimal_places=12)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def usd_to_pico(amount: Decimal) -> int:
    """Exact picodollars of a USD amount with at most 12 decimals."""
    return int(amount.scaleb(12))


class OverthinkingConfig(_Section):
    """When reasoning is large against the visible answer and the task."""

    enabled: bool = True
    #: Rule `reasoning_vs_answer`: reasoning ≥ ratio × visible output while the output is short.
    ratio: Ratio = 10.0
    short_output_tokens: Tokens = 64
    #: No rule flags a call with less reasoning than this.
    min_reasoning_tokens: Tokens = 1_024
    #: Rule `above_workload_baseline`: reasoning above factor × the workload's percentile for
    #: calls of similar input size, once that size class has enough calls.
    baseline_percentile: Share = 0.95
    baseline_factor: Ratio = 2.0
    min_baseline_samples: Annotated[int, Field(ge=1)] = 50
    #: Rule `high_effort_tiny_answers`: high effort on a workload whose answers are consistently tiny.
    tiny_output_tokens: Tokens = 16
    tiny_answer_share: Share = 0.9
    min_workload_samples: Annotated[int, Field(ge=1)] = 30
    high_efforts: list[str] = Field(default_factory=lambda: ["high", "xhigh"])
    #: Reasoning considered necessary when estimating waste: max(allowance_tokens, ratio × output),
    #: capped by the workload's median for that input size when it is lower.
    allowance_tokens: Tokens = 256
    allowance_ratio: Ratio = 2.0


class CacheConfig(_Section):
    """Prompt-cache misses, writes never read, TTL choice, hit-rate collapse."""

    enabled: bool = True
    #: Hit rate per bucket of this many seconds, against an EWMA of past buckets.
    hit_rate_bucket_seconds: Seconds = 3_600
    hit_rate_alpha: Share = 0.2
    #: Collapse: the bucket's hit rate is below baseline × (1 − drop).
    hit_rate_drop: Share = 0.5
    hit_rate_min_baseline: Share = 0.2
    hit_rate_min_calls: Annotated[int, Field(ge=1)] = 20
    hit_rate_warmup_buckets: Annotated[int, Field(ge=1)] = 3
    #: TTL choice: reuse intervals seen on a prefix before its write TTL is judged. A 1-hour write
    #: is longer than needed when at most ttl_long_max_share of the intervals fall between 5 and 60
    #: minutes (the only gaps it bridges); a 5-minute re-write after such a gap is shorter than
    #: needed when at least ttl_short_min_share of them do.
    ttl_min_intervals: Annotated[int, Field(ge=1)] = 5
    ttl_long_max_share: Share = 0.1
    ttl_short_min_share: Share = 0.5
    #: Prefixes remembered per workload (oldest forgotten first).
    max_prefixes: Annotated[int, Field(ge=10)] = 5_000
    #: A write is judged "never read" this long after its lifetime ended (late calls still count).
    grace_seconds: Annotated[int, Field(ge=0)] = 60


class SpikeConfig(_Section):
    """Cost rate of a workload per time bucket against its own EWMA baseline."""

    enabled: bool = True
    bucket_seconds: Seconds = 3_600
    alpha: Share = 0.1
    #: Spike: cost ≥ factor × baseline, ≥ baseline + z × deviation, and above it by min_excess_usd.
    factor: Ratio = 3.0
    z: Annotated[float, Field(ge=0)] = 5.0
    min_excess_usd: Usd = Decimal("1.00")
    #: A bucket with fewer calls never spikes (two expensive calls of a sparse workload are not a rate).
    min_calls: Annotated[int, Field(ge=1)] = 5
    warmup_buckets: Annotated[int, Field(ge=1)] = 12
    #: Events this late (event time behind the newest seen) still count in their bucket.
    lateness_seconds: Annotated[int, Field(ge=0)] = 600


class ContextConfig(_Section):
    """Per agent run (session, else trace): context accumulating and runs with too many calls."""

    enabled: bool = True
    #: A run ends after this much idle event time.
    session_gap_seconds: Seconds = 1_800
    #: Context growth: at least this many calls, input rising on most turns, and the last input
    #: at least growth_factor × the first.
    growth_min_turns: Annotated[int, Field(ge=2)] = 6
    growth_factor: Ratio = 3.0
    growth_rising_share: Share = 0.8
    #: Agent loop: more calls than max(loop_min_calls, loop_factor × the workload's percentile
    #: of calls per run, once loop_min_runs runs have ended).
    loop_min_calls: Annotated[int, Field(ge=2)] = 25
    loop_factor: Ratio = 3.0
    loop_percentile: Share = 0.95
    loop_min_runs: Annotated[int, Field(ge=1)] = 20
    max_sessions: Annotated[int, Field(ge=10)] = 5_000


class SeverityConfig(_Section):
    """Severity of an anomaly from its wasted cost."""

    warning_usd: Usd = Decimal("1.00")
    critical_usd: Usd = Decimal("25.00")


class WorkloadConfig(_Section):
    """Every detector's thresholds, as they apply to one workload."""

    overthinking: OverthinkingConfig = Field(default_factory=OverthinkingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    spikes: SpikeConfig = Field(default_factory=SpikeConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    severity: SeverityConfig = Field(default_factory=SeverityConfig)


class ProviderCacheFacts(_Section):
    """How a provider's prompt cache behaves (built-in defaults below; override in the file).

    `automatic`: the provider caches repeated prefixes without being asked (OpenAI, DeepSeek,
    Gemini implicit caching). `reports_cache_usage`: its usage objects carry cache token counts;
    when false, zero cache reads mean "not reported", never "0% hits".
    """

    reports_cache_usage: bool = True
    automatic: bool = False
    #: Lifetime of a cached prefix without writes being billed separately (automatic caches).
    lifetime_seconds: Seconds = 300
    #: Smallest cacheable prompt in tokens: by model-name prefix (longest match wins), else default.
    min_cacheable_tokens: dict[str, Tokens] = Field(default_factory=lambda: {"default": 1_024})

    def min_tokens(self, model: str) -> int:
        """The minimum cacheable prompt for `model`."""
        name = model.lower()
        best, best_len = self.min_cacheable_tokens.get("default", 1_024), -1
        for prefix, tokens in self.min_cacheable_tokens.items():
            if prefix != "default" and name.startswith(prefix.lower()) and len(prefix) > best_len:
                best, best_len = tokens, len(prefix)
        return best


#: Built-in provider facts (from the providers' prompt-caching documentation at the time of
#: writing; prices and limits change, so each can be overridden under `providers:`).
DEFAULT_PROVIDER_FACTS: dict[str, dict[str, Any]] = {
    "openai": {"automatic": True, "lifetime_seconds": 600, "min_cacheable_tokens": {"default": 1_024}},
    "azure.ai.openai": {
        "automatic": True,
        "lifetime_seconds": 600,
        "min_cacheable_tokens": {"default": 1_024},
    },
    "anthropic": {
        "lifetime_seconds": 300,
        "min_cacheable_tokens": {
            "default": 1_024,
            "claude-haiku-3": 2_048,
            "claude-3-haiku": 2_048,
            "claude-3-5-haiku": 2_048,
            "claude-haiku-4-5": 4_096,
            "claude-opus-4-5": 4_096,
        },
    },
    "aws.bedrock": {"lifetime_seconds": 300, "min_cacheable_tokens": {"default": 1_024}},
    "gcp.gemini": {
        "automatic": True,
        "lifetime_seconds": 300,
        "min_cacheable_tokens": {"default": 1_024, "gemini-2.5-pro": 4_096},
    },
    "gcp.vertex_ai": {
        "automatic": True,
        "lifetime_seconds": 300,
        "min_cacheable_tokens": {"default": 1_024, "gemini-2.5-pro": 4_096},
    },
    "deepseek": {"automatic": True, "lifetime_seconds": 3_600, "min_cacheable_tokens": {"default": 64}},
}
#: A provider costline knows nothing about: its cache usage is taken as not reported.
UNKNOWN_PROVIDER: dict[str, Any] = {"reports_cache_usage": False}


class DetectorsFile(_Section):
    """The YAML document: raw per-section overrides, validated when merged."""

    defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
    workloads: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)


class DetectorsConfig:
    """Thresholds per workload (cached) and cache facts per provider."""

    def __init__(self, document: DetectorsFile | None = None) -> None:
        self.document = document or DetectorsFile()
        self._workloads: dict[str, WorkloadConfig] = {}
        self._providers: dict[str, ProviderCacheFacts] = {}
        self.defaults = self._build(self.document.defaults, "defaults")
        for key, override in self.document.workloads.items():  # fail at load, not mid-stream
            self._build(_merge(self.document.defaults, override), f"workloads.{key}")
        for name in {*DEFAULT_PROVIDER_FACTS, *self.document.providers}:
            self.provider(name)

    def for_workload(self, team: str, workload: str) -> WorkloadConfig:
        """The thresholds of `team/workload`: its own entry, else the bare workload's, else defaults."""
        key = f"{team}/{workload}"
        found = self._workloads.get(key)
        if found is None:
            override = self.document.workloads.get(key)
            if override is None:
                override = self.document.workloads.get(workload)
            found = (
                self.defaults
                if override is None
                else self._build(_merge(self.document.defaults, override), f"workloads.{key}")
            )
            self._workloads[key] = found
        return found

    def provider(self, name: str) -> ProviderCacheFacts:
        """Cache facts of a provider (an unknown provider does not report cache usage)."""
        found = self._providers.get(name)
        if found is None:
            base = DEFAULT_PROVIDER_FACTS.get(name, UNKNOWN_PROVIDER)
            override = self.document.providers.get(name, {})
            merged = {**base, **override}
            if "min_cacheable_tokens" in override:  # model limits add to the built-in ones
                merged["min_cacheable_tokens"] = {
                    **base.get("min_cacheable_tokens", {}),
                    **(override["min_cacheable_tokens"] or {}),
                }
            try:
                found = ProviderCacheFacts.model_validate(merged)
            except ValidationError as exc:
                raise ConfigError(f"detector settings providers.{name}: {exc}") from exc
            self._providers[name] = found
        return found

    @staticmethod
    def _build(sections: dict[str, dict[str, Any]], where: str) -> WorkloadConfig:
        try:
            return WorkloadConfig.model_validate(sections)
        except ValidationError as exc:
            raise ConfigError(f"detector settings {where}: {exc}") from exc


def _merge(base: dict[str, dict[str, Any]], override: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Section by section, key by key: the override's values win."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in override.items():
        if not isinstance(values, dict):
            raise ConfigError(f"detector settings: section {name!r} must be a mapping, got {values!r}")
        merged.setdefault(name, {}).update(values)
    return merged


def load_detectors_config(path: Path | None) -> DetectorsConfig:
    """The file at `path` (COSTLINE_DETECTORS_PATH), or the built-in defaults when None."""
    if path is None:
        return DetectorsConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read detector settings {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"detector settings {path} must be a mapping with defaults/workloads/providers")
    try:
        document = DetectorsFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"detector settings {path}: {exc}") from exc
    return DetectorsConfig(document)
