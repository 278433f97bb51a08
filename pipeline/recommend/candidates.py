"""Which rate-card models could take over a workload: what the workload needs, and who can hold it.

A candidate must be in force at the end of the window, be a hosted chat model (it prices input and
output; self-hosted entries need a team to run them and are left out), and fit the workload:

* context window ≥ the workload's p99 input and max output ≥ its p99 output (unknown: no fit);
  Embedding models (no output price) are not candidates.
* `tools` when any call ended in a tool call; `web_search` and a request price when it searched;
* `reasoning` when the workload asks for medium or higher effort or reasons on most calls, unless
  the workload is flagged for overthinking (then a non-reasoning model is a fair answer);
* p95 latency no worse than the workload's own p95 plus `LATENCY_TOLERANCE`, where costline has
  seen the candidate answer (unseen: fits, and the recommendation says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from costline.pipeline.ratecard.model import RateCard, RateCardEntry
from costline.pipeline.recommend.profile import WorkloadProfile

#: A candidate's recorded p95 may exceed the workload's by this share.
LATENCY_TOLERANCE = Decimal("0.10")
#: Efforts that mean the workload relies on reasoning.
REASONING_EFFORTS = frozenset({"medium", "high", "xhigh"})


@dataclass(frozen=True)
class Needs:
    """What a workload needs from any model that serves it."""

    input_tokens: int
    output_tokens: int
    tools: bool
    web_search: bool
    reasoning: bool
    latency_p95_ms: int | None


def needs_of(profile: WorkloadProfile, overthinking: bool) -> Needs:
    """The workload's needs, read from its profile."""
    requested = profile.effort in REASONING_EFFORTS
    mostly_reasoning = profile.calls > 0 and profile.reasoning_calls * 2 > profile.calls
    return Needs(
        input_tokens=profile.input_p99,
        output_tokens=profile.output_p99,
        tools=profile.tool_calls > 0,
        web_search=profile.requests.get("web_search_requests", 0) > 0,
        reasoning=(requested or mostly_reasoning) and not overthinking,
        latency_p95_ms=profile.latency_p95_ms,
    )


def names_of(entry: RateCardEntry) -> set[str]:
    """Every name a model goes by in evals: model, aliases, and provider/model."""
    names = {entry.model.lower(), *(a.lower() for a in entry.aliases)}
    return names | {f"{entry.provider}/{n}" for n in names}


def in_force(card: RateCard, at: datetime) -> list[RateCardEntry]:
    """Hosted chat entries in force at `at`, one per (provider, model)."""
    latest: dict[tuple[str, str], RateCardEntry] = {}
    for entry in card.entries:
        if not entry.covers(at) or entry.self_hosted is not None:
            continue
        prices = entry.base_prices()
        if prices.input is None or not prices.output:
            continue  # not a chat model (embeddings bill no output)
        key = (entry.provider, entry.model.lower())
        if key not in latest or entry.effective_from > latest[key].effective_from:
            latest[key] = entry
    return list(latest.values())


def misfits(
    entry: RateCardEntry, needs: Needs, latencies: dict[tuple[str, str], int]
) -> tuple[list[str], int | None]:
    """Why `entry` cannot take the workload (empty: it fits), and its recorded p95 latency."""
    reasons: list[str] = []
    if entry.context_window is None or entry.context_window < needs.input_tokens:
        reasons.append(f"context window {entry.context_window} < p99 input {needs.input_tokens}")
    if entry.max_output_tokens is not None and entry.max_output_tokens < needs.output_tokens:
        reasons.append(f"max output {entry.max_output_tokens} < p99 output {needs.output_tokens}")
    capabilities = set(entry.capabilities)
    if needs.tools and "tools" not in capabilities:
        reasons.append("no tool use")
    if needs.web_search and (
        "web_search" not in capabilities or "web_search_requests" not in entry.request_prices
    ):
        reasons.append("no priced web search")
    if needs.reasoning and "reasoning" not in capabilities:
        reasons.append("no reasoning")
    latency = next(
        (latencies[(entry.provider, n)] for n in sorted(names_of(entry)) if (entry.provider, n) in latencies),
        None,
    )
    if latency is not None and needs.latency_p95_ms is not None:
        allowed = Decimal(needs.latency_p95_ms) * (1 + LATENCY_TOLERANCE)
        if latency > allowed:
            reasons.append(f"p95 latency {latency} ms > workload p95 {needs.latency_p95_ms} ms + 10%")
    return reasons, latency


def window_end_instant(until: datetime) -> datetime:
    """The last instant inside the half-open window: prices in force then are today's prices."""
    return until - timedelta(milliseconds=1)
