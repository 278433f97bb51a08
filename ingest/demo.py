"""Realistic demo usage: several teams and workloads on the main providers, deterministic by seed.

The profiles mimic what costline is meant to find: a classifier burning reasoning tokens on
one-word answers, a support bot whose prompt prefix repeats without cache reads, an offline
job that could use batch pricing, a self-hosted model the rate card does not know yet.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from costline.schemas.usage_event import (
    Attribution,
    ReasoningEffort,
    RequestCounters,
    Signals,
    TokenBuckets,
    UsageEvent,
    hash_prompt_prefix,
    hash_user,
)


@dataclass(frozen=True)
class WorkloadProfile:
    """How one workload calls its model: sizes, caching, reasoning, batch."""

    team: str
    project: str
    workload: str
    cost_center: str
    provider: str
    model: str
    weight: int
    input_tokens: tuple[int, int]
    output_tokens: tuple[int, int]
    reasoning_tokens: tuple[int, int] = (0, 0)
    reasoning_effort: ReasoningEffort | None = None
    caching_requested: bool = False
    cache_hit_rate: float = 0.0
    cache_ttl: str = "5m"
    prefixes: int = 3
    batch: bool = False
    web_search_rate: float = 0.0
    region: str | None = None


PROFILES: tuple[WorkloadProfile, ...] = (
    WorkloadProfile(
        "search",
        "answers",
        "rag-answer",
        "CC-100",
        "openai",
        "gpt-5",
        20,
        (6_000, 30_000),
        (200, 900),
        (300, 2_500),
        "medium",
        True,
        0.7,
        "30m",
        4,
    ),
    WorkloadProfile(
        "search", "answers", "query-rewrite", "CC-100", "openai", "gpt-5-mini", 25, (400, 1_500), (20, 80)
    ),
    WorkloadProfile(
        "support",
        "helpdesk",
        "ticket-triage",
        "CC-200",
        "anthropic",
        "claude-sonnet-4-6",
        18,
        (3_000, 9_000),
        (2, 12),
        (2_000, 8_000),
        "high",
        False,
        0.0,
        "5m",
        2,
    ),
    WorkloadProfile(
        "support",
        "helpdesk",
        "reply-draft",
        "CC-200",
        "anthropic",
        "claude-sonnet-4-6",
        15,
        (8_000, 40_000),
        (300, 1_200),
        caching_requested=True,
        cache_hit_rate=0.85,
        cache_ttl="1h",
        prefixes=2,
        web_search_rate=0.1,
    ),
    WorkloadProfile(
        "growth",
        "marketing",
        "email-copy",
        "CC-300",
        "gcp.gemini",
        "gemini-2.5-flash",
        12,
        (1_000, 4_000),
        (300, 800),
        (100, 600),
        "low",
    ),
    WorkloadProfile(
        "growth",
        "research",
        "market-report",
        "CC-300",
        "gcp.gemini",
        "gemini-2.5-pro",
        3,
        (150_000, 260_000),
        (2_000, 6_000),
        (3_000, 12_000),
        "high",
    ),
    WorkloadProfile(
        "data-platform",
        "etl",
        "doc-extraction",
        "CC-400",
        "deepseek",
        "deepseek-chat",
        10,
        (2_000, 12_000),
        (100, 600),
        caching_requested=True,
        cache_hit_rate=0.5,
    ),
    WorkloadProfile(
        "data-platform",
        "etl",
        "nightly-summaries",
        "CC-400",
        "anthropic",
        "claude-haiku-4-5",
        8,
        (4_000, 20_000),
        (200, 700),
        batch=True,
    ),
    WorkloadProfile(
        "legal",
        "contracts",
        "clause-review",
        "CC-500",
        "anthropic",
        "claude-opus-4-6",
        2,
        (20_000, 80_000),
        (800, 3_000),
        (1_000, 6_000),
        "high",
        True,
        0.6,
        "1h",
        1,
        region="us",
    ),
    WorkloadProfile(
        "research",
        "lab",
        "local-llama",
        "CC-600",
        "self_hosted",
        "acme-llama-ft-v2",
        3,
        (1_000, 3_000),
        (100, 400),
    ),
)

_USERS = tuple(f"user-{n:03d}" for n in range(40))


def _tokens(rng: random.Random, profile: WorkloadProfile) -> TokenBuckets:
    total_input = rng.randint(*profile.input_tokens)
    cache_read = cache_write = 0
    if profile.caching_requested:
        if rng.random() < profile.cache_hit_rate:
            cache_read = int(total_input * rng.uniform(0.6, 0.95))
        else:
            cache_write = int(total_input * rng.uniform(0.5, 0.9))
    write_bucket = f"cache_write_{profile.cache_ttl}"
    buckets = {
        "input_uncached": total_input - cache_read - cache_write,
        "cache_read": cache_read,
        write_bucket: cache_write,
        "output_visible": rng.randint(*profile.output_tokens),
        "output_reasoning": rng.randint(*profile.reasoning_tokens) if profile.reasoning_tokens[1] else 0,
    }
    return TokenBuckets(**buckets)


def demo_events(
    count: int, *, seed: int = 7, end: datetime | None = None, span: timedelta = timedelta(days=7)
) -> Iterator[UsageEvent]:
    """`count` events spread over `span` before `end`, reproducible for a given seed and end."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    weights = [p.weight for p in PROFILES]
    for n in range(count):
        profile = rng.choices(PROFILES, weights)[0]
        occurred_at = end - span * rng.random()
        failed = rng.random() < 0.01
        tokens = _tokens(rng, profile)
        yield UsageEvent(
            event_id=f"demo-{seed}-{n}",
            occurred_at=occurred_at,
            source="demo",
            provider=profile.provider,
            request_model=profile.model,
            response_model=profile.model,
            tokens=TokenBuckets() if failed else tokens,
            requests=RequestCounters(web_search_requests=int(rng.random() < profile.web_search_rate)),
            attribution=Attribution(
                team=profile.team,
                project=profile.project,
                workload=profile.workload,
                user_hash=hash_user(rng.choice(_USERS), salt="demo"),
                environment="production",
                cost_center=profile.cost_center,
                tags={"demo": "true"},
            ),
            signals=Signals(
                prompt_prefix_hash=hash_prompt_prefix(
                    f"{profile.workload}-{rng.randrange(profile.prefixes)}"
                ),
                caching_requested=profile.caching_requested,
                reasoning_effort=profile.reasoning_effort,
                output_chars=tokens.output_visible * 4,
                latency_ms=rng.randint(300, 20_000),
                status="error" if failed else "ok",
                error_type="RateLimitError" if failed else None,
                batch=profile.batch,
                region=profile.region,
            ),
            session_id=f"sess-{rng.randrange(500)}",
        )
