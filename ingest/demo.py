"""Realistic demo usage: several teams and workloads on the main providers, deterministic by seed.

The profiles mimic what costline is meant to find: a classifier burning reasoning tokens on
one-word answers, a support bot whose prompt prefix repeats without cache reads, an offline
job that could use batch pricing, a self-hosted model the rate card does not know yet.

On top of them, `pattern_events` adds waste episodes that are labeled by construction, so the
detectors can be checked against them (`expected_anomalies`): a FAQ bot re-sending one prompt
prefix without asking for caching, a page generator paying for 1-hour cache writes nobody reads,
an extraction job whose spend jumps for one hour, and an agent run that loops with its context
growing turn over turn.
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
    count: int,
    *,
    seed: int = 7,
    end: datetime | None = None,
    span: timedelta = timedelta(days=7),
    patterns: bool = True,
) -> Iterator[UsageEvent]:
    """`count` events spread over `span` before `end`, reproducible for a given seed and end, in time order.

    From PATTERN_MIN_EVENTS events on (and unless `patterns` is False), part of the count is the
    labeled waste episodes of `pattern_events` (see `expected_anomalies`); the rest are the
    random calls of PROFILES.
    """
    rng = random.Random(seed)
    end = end or datetime.now(UTC)
    injected = pattern_events(seed, end, span) if patterns and count >= PATTERN_MIN_EVENTS else []
    events = [*_profile_events(rng, count - len(injected), seed, end, span), *injected]
    events.sort(key=lambda event: event.occurred_at)
    yield from events


def _profile_events(
    rng: random.Random, count: int, seed: int, end: datetime, span: timedelta
) -> Iterator[UsageEvent]:
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


#: Below this many events demo_events has no room for the waste episodes and sends profiles only.
PATTERN_MIN_EVENTS = 1_000
#: The labeled episodes: workload → (anomaly kind, cause) the detectors should report on it.
PATTERN_WORKLOADS: dict[str, tuple[str, str]] = {
    "faq-bot": ("cache_miss", "caching_not_requested"),
    "landing-pages": ("cache_miss", "write_never_read"),
    "invoice-extract": ("spend_spike", "cost_rate_above_baseline"),
    "agent-runs": ("agent_loop", "too_many_calls"),
}
#: The agent run that loops (its context grows too: it is also a context_growth anomaly).
LOOPING_SESSION = "agent-loop-1"


def _pattern_event(
    seed: int,
    name: str,
    n: int,
    at: datetime,
    *,
    team: str,
    workload: str,
    provider: str,
    model: str,
    tokens: TokenBuckets,
    prefix: str,
    caching: bool | None,
    session: str | None = None,
) -> UsageEvent:
    return UsageEvent(
        event_id=f"demo-{seed}-{name}-{n}",
        occurred_at=at,
        source="demo",
        provider=provider,
        request_model=model,
        response_model=model,
        tokens=tokens,
        attribution=Attribution(
            team=team,
            project="patterns",
            workload=workload,
            environment="production",
            cost_center="CC-900",
            tags={"demo": "true", "pattern": name},
        ),
        signals=Signals(
            prompt_prefix_hash=hash_prompt_prefix(prefix),
            caching_requested=caching,
            output_chars=tokens.output_visible * 4,
            latency_ms=1_500,
        ),
        session_id=session,
    )


def pattern_events(seed: int, end: datetime, span: timedelta) -> list[UsageEvent]:
    """The labeled waste episodes, placed inside `span` before `end` (squeezed when it is short)."""
    rng = random.Random(seed * 7_919 + 13)
    events: list[UsageEvent] = []

    def spaced(start: datetime, count: int, step: timedelta, room: timedelta) -> list[datetime]:
        step = min(step, room / (count + 1))
        return [start + step * (i + 1) for i in range(count)]

    # a FAQ bot re-sends one long system prompt every half minute without asking for caching
    start = end - span * 0.5
    for n, at in enumerate(spaced(start, 12, timedelta(seconds=30), span * 0.1)):
        events.append(
            _pattern_event(
                seed,
                "faq",
                n,
                at,
                team="support",
                workload="faq-bot",
                provider="anthropic",
                model="claude-sonnet-4-6",
                prefix="faq-bot-system-prompt",
                caching=False,
                tokens=TokenBuckets(
                    input_uncached=rng.randint(3_000, 4_000), output_visible=rng.randint(80, 200)
                ),
            )
        )
    # a page generator writes its prompt to the 1-hour cache with a timestamp inside the cached span
    start = end - span * 0.4
    for n, at in enumerate(spaced(start, 10, timedelta(minutes=7), span * 0.1)):
        written = rng.randint(4_000, 6_000)
        events.append(
            _pattern_event(
                seed,
                "pages",
                n,
                at,
                team="growth",
                workload="landing-pages",
                provider="anthropic",
                model="claude-sonnet-4-6",
                prefix=f"landing-pages-{at.isoformat()}",
                caching=True,
                tokens=TokenBuckets(input_uncached=300, cache_write_1h=written, output_visible=600),
            )
        )
    # an extraction job: two documents an hour for a day, then one hour of eighty
    spike_hour = end - span * 0.25
    spike_hour -= timedelta(
        minutes=spike_hour.minute, seconds=spike_hour.second, microseconds=spike_hour.microsecond
    )
    hours = 24 if span >= timedelta(hours=30) else 0
    times = [
        spike_hour - timedelta(hours=h) + timedelta(minutes=m) for h in range(hours, 0, -1) for m in (10, 40)
    ]
    times += [spike_hour + timedelta(seconds=40 * i + 5) for i in range(80 if hours else 0)]
    for n, at in enumerate(times):
        events.append(
            _pattern_event(
                seed,
                "invoices",
                n,
                at,
                team="data-platform",
                workload="invoice-extract",
                provider="anthropic",
                model="claude-sonnet-4-6",
                prefix=f"invoice-{seed}-{n}",
                caching=False,
                tokens=TokenBuckets(input_uncached=rng.randint(8_000, 12_000), output_visible=300),
            )
        )
    # agent runs: a few short ones, then one that loops forty times re-sending a growing context
    start = end - span * 0.15
    run_times = spaced(start, 4, timedelta(minutes=45), span * 0.05)
    for r, run_start in enumerate(run_times):
        for turn in range(3):
            at = run_start + timedelta(seconds=20 * turn)
            events.append(_agent_call(seed, f"agent-short-{r}", turn, at, context=2_000 + 800 * turn))
    loop_start = end - span * 0.08
    for turn, at in enumerate(spaced(loop_start, 40, timedelta(seconds=25), span * 0.05)):
        events.append(_agent_call(seed, LOOPING_SESSION, turn, at, context=2_000 + 1_500 * turn))
    return events


def _agent_call(seed: int, session: str, turn: int, at: datetime, *, context: int) -> UsageEvent:
    """One turn of an agent run: the context so far comes from the cache, the newest turn is new."""
    new = 800 if turn else context
    return _pattern_event(
        seed,
        session,
        turn,
        at,
        team="research",
        workload="agent-runs",
        provider="openai",
        model="gpt-5",
        prefix=f"agent-{session}",
        caching=None,
        session=session,
        tokens=TokenBuckets(input_uncached=new, cache_read=max(0, context - new), output_visible=250),
    )


def expected_anomalies(events: list[UsageEvent]) -> dict[tuple[str, str], set[str]]:
    """Labels by construction: (kind, cause) → the workloads (or the session) that must carry it.

    The ticket-triage profile is the overthinking classifier: one-word answers after thousands of
    reasoning tokens on every call.
    """
    workloads = {event.attribution.workload for event in events}
    expected: dict[tuple[str, str], set[str]] = {}
    if "ticket-triage" in workloads:
        expected[("overthinking", "reasoning_vs_answer")] = {"ticket-triage"}
    for workload, label in PATTERN_WORKLOADS.items():
        if workload in workloads:
            expected.setdefault(label, set()).add(workload)
    if any(event.session_id == LOOPING_SESSION for event in events):
        expected[("context_growth", "input_accumulating")] = {"agent-runs"}
    return expected
