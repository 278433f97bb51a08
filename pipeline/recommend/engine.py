"""The recommendation engine: workload profiles + rate card + evals + anomalies → ranked proposals.

`recommend(inputs)` is pure (tests feed it profiles); `gather(client, card, window)` reads what it
needs from the store; `compute` does both. Every saving is exact: both sides are the same observed
usage re-priced in integer picodollars on entries in force at the end of the window (see
`costing`), and the monthly figure is the window's scaled to 30 days (see `model.monthly`).

Kinds (docs/recommendations.md has the formulas):

* `model_switch`: a cheaper model that fits the workload; `recommended` only when evals show it
  within the quality floor, `needs_eval` when there is no evidence, dropped when it fails;
* `reasoning_effort`: workloads flagged for overthinking: the cost of their reasoning tokens;
* `prompt_caching`: repeated prefixes and no cache reads: the best TTL for the observed reuse;
* `batch`: workloads that are not latency sensitive: the batch price of the same usage;
* `cascade`: a cheaper model with an eval pass rate p: `cheap + (1 - p) × current` per call.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from clickhouse_connect.driver import Client

from costline.pipeline.pricing import RateCardIndex
from costline.pipeline.ratecard.model import RateCard, RateCardEntry
from costline.pipeline.recommend.candidates import (
    in_force,
    misfits,
    names_of,
    needs_of,
    window_end_instant,
)
from costline.pipeline.recommend.costing import CellPricer, as_batch, transform, without_reasoning
from costline.pipeline.recommend.evals import PASS_RATE, EvalBook, EvalResult, gate, plain
from costline.pipeline.recommend.model import (
    Recommendation,
    Window,
    money,
    monthly,
    rank,
    usd,
)
from costline.pipeline.recommend.profile import (
    CACHE_TTLS,
    MIN_CACHEABLE_TOKENS,
    PrefixGroup,
    WorkloadProfile,
    band_thresholds,
    evidence_query,
    fetch_model_latency,
    fetch_prefix_groups,
    fetch_profiles,
    fetch_singletons,
)
from costline.pipeline.store.queries import Query, run

logger = logging.getLogger(__name__)

#: A workload needs this many calls in the window before costline proposes anything.
MIN_SAMPLE_CALLS = 10
#: A model switch must save at least this percentage of the workload's cost.
MIN_SWITCH_PCT = 5
#: Other kinds must save at least this percentage.
MIN_PCT = 1
#: Candidates listed as `needs_eval` per workload (those saving more than the recommended one).
MAX_NEEDS_EVAL = 2
#: Batch: share of calls inside the busiest `SCHEDULED_HOURS` consecutive hours of the day.
SCHEDULED_SHARE = Decimal("0.9")
SCHEDULED_HOURS = 4
#: Batch: a schedule recurs; calls on a single day could be a one-off burst of interactive use.
SCHEDULED_MIN_DAYS = 2
#: Batch: a p95 latency at least this long means callers already wait (ms).
TOLERATED_LATENCY_MS = 60_000
#: Providers whose lowest reasoning effort is called `minimal`; others turn reasoning off with `none`.
MINIMAL_EFFORT_PROVIDERS = frozenset({"openai", "azure.ai.openai"})

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Overthinking:
    """Overthinking anomalies of one workload (model '' means the detector did not name one)."""

    team: str
    workload: str
    provider: str
    model: str
    anomalies: int
    calls: int
    wasted_cost: Decimal


@dataclass
class Inputs:
    """Everything the engine looks at."""

    card: RateCard
    window: Window
    profiles: list[WorkloadProfile]
    prefix_groups: dict[Key, list[PrefixGroup]] = field(default_factory=dict)
    singletons: dict[Key, tuple[int, int]] = field(default_factory=dict)
    latencies: dict[tuple[str, str], int] = field(default_factory=dict)
    overthinking: list[Overthinking] = field(default_factory=list)
    evals: list[EvalResult] = field(default_factory=list)


class _Context:
    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.window = inputs.window
        self.index = RateCardIndex(inputs.card)
        self.at = window_end_instant(inputs.window.until)
        self.entries = sorted(in_force(inputs.card, self.at), key=lambda e: e.id)
        self.pricer = CellPricer()
        self.book = EvalBook.of(inputs.evals)
        self.flags: dict[tuple[str, str], list[Overthinking]] = defaultdict(list)
        for flag in inputs.overthinking:
            self.flags[(flag.team, flag.workload)].append(flag)

    def overthinking(self, profile: WorkloadProfile) -> list[Overthinking]:
        return [
            f
            for f in self.flags.get((profile.team, profile.workload), [])
            if f.model in ("", profile.model) and f.provider in ("", profile.provider)
        ]


def recommend(inputs: Inputs) -> list[Recommendation]:
    """Every recommendation for the profiles, ranked by saving."""
    ctx = _Context(inputs)
    found: list[Recommendation] = []
    for profile in sorted(inputs.profiles, key=lambda p: p.key):
        if not profile.workload or profile.calls < MIN_SAMPLE_CALLS:
            continue  # usage without a workload cannot be routed; too few calls prove nothing
        entry = ctx.index.find(profile.provider, profile.model, ctx.at)
        if entry is None:
            continue
        current = ctx.pricer.cost(entry, profile)
        if current is None or current == 0:
            continue
        flags = ctx.overthinking(profile)
        switches = _model_switch(ctx, profile, entry, current, bool(flags))
        found.extend(switches)
        found.extend(_reasoning_effort(ctx, profile, entry, current, flags))
        found.extend(_prompt_caching(ctx, profile, entry, current))
        found.extend(_batch(ctx, profile, entry, current))
        switched_to = {r.proposed["model"] for r in switches if r.status == "recommended"}
        found.extend(_cascade(ctx, profile, entry, current, switched_to))
    return rank(found)


def _setting(
    profile: WorkloadProfile, entry: RateCardEntry, window_pico: int, window: Window
) -> dict[str, Any]:
    return {
        "provider": profile.provider,
        "model": profile.model,
        "ratecard_entry": entry.id,
        "monthly_cost": money(monthly(usd(window_pico), window)),
    }


def _make(
    ctx: _Context,
    kind: str,
    status: str,
    profile: WorkloadProfile,
    current: dict[str, Any],
    proposed: dict[str, Any],
    current_pico: int,
    saving: Decimal,
    focus: str,
    eval_evidence: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Recommendation:
    return Recommendation(
        kind=kind,  # type: ignore[arg-type]  # callers pass a Kind
        status=status,  # type: ignore[arg-type]
        team=profile.team,
        workload=profile.workload,
        provider=profile.provider,
        model=profile.model,
        current=current,
        proposed=proposed,
        window_cost=usd(current_pico),
        window_saving=saving,
        window=ctx.window,
        sample_calls=profile.calls,
        evidence=evidence_query(profile, focus),
        eval_evidence=eval_evidence,
        notes=(f"prices in force at {ctx.at.date().isoformat()}", *notes),
    )


def _model_switch(
    ctx: _Context, profile: WorkloadProfile, entry: RateCardEntry, current: int, overthinking: bool
) -> list[Recommendation]:
    needs = needs_of(profile, overthinking)
    current_names = names_of(entry) | {profile.model.lower()}
    options: list[tuple[int, RateCardEntry, int, Any, int | None]] = []
    for candidate in ctx.entries:
        if (candidate.provider, candidate.model.lower()) == (entry.provider, entry.model.lower()):
            continue
        reasons, latency = misfits(candidate, needs, ctx.inputs.latencies)
        if reasons:
            continue
        cost = ctx.pricer.cost(candidate, profile)
        if cost is None:
            continue
        saving = current - cost
        if saving <= 0 or saving * 100 < current * MIN_SWITCH_PCT:
            continue
        verdict = gate(ctx.book, profile.team, profile.workload, current_names, names_of(candidate))
        if verdict.verdict == "fail":
            continue
        options.append((saving, candidate, cost, verdict, latency))
    options.sort(key=lambda o: (-o[0], o[1].id))
    passing = [o for o in options if o[3].verdict == "pass"]
    chosen = passing[:1]
    best = passing[0][0] if passing else 0
    chosen += [o for o in options if o[3].verdict == "no_evidence" and o[0] > best][:MAX_NEEDS_EVAL]
    out = []
    for saving, candidate, cost, verdict, latency in chosen:
        proposed = {
            "provider": candidate.provider,
            "model": candidate.model,
            "ratecard_entry": candidate.id,
            "monthly_cost": money(monthly(usd(cost), ctx.window)),
            "latency_p95_ms": latency,
        }
        current_setting = {
            **_setting(profile, entry, current, ctx.window),
            "latency_p95_ms": profile.latency_p95_ms,
        }
        notes = [
            f"fits: context window {candidate.context_window} >= p99 input {needs.input_tokens}"
            + (", tools" if needs.tools else "")
            + (", reasoning" if needs.reasoning else ""),
        ]
        if latency is None:
            notes.append("candidate latency not yet observed by costline")
        if verdict.verdict == "no_evidence":
            notes.append("no eval shared by both models: run an eval before switching")
        out.append(
            _make(
                ctx,
                "model_switch",
                "recommended" if verdict.verdict == "pass" else "needs_eval",
                profile,
                current_setting,
                proposed,
                current,
                usd(saving),
                "tokens",
                verdict.evidence,
                notes,
            )
        )
    return out


def _reasoning_effort(
    ctx: _Context, profile: WorkloadProfile, entry: RateCardEntry, current: int, flags: list[Overthinking]
) -> list[Recommendation]:
    if not flags or profile.tokens["output_reasoning"] == 0:
        return []
    without = ctx.pricer.cost(entry, profile, transform(profile, without_reasoning))
    if without is None:
        return []
    saving = current - without
    if saving <= 0 or saving * 100 < current * MIN_PCT:
        return []
    effort = "minimal" if profile.provider in MINIMAL_EFFORT_PROVIDERS else "none"
    anomalies = sum(f.anomalies for f in flags)
    flagged = sum(f.calls for f in flags)
    current_setting = {
        **_setting(profile, entry, current, ctx.window),
        "reasoning_effort": profile.effort or "provider default",
        "reasoning_tokens": profile.tokens["output_reasoning"],
        "overthinking_anomalies": anomalies,
    }
    proposed = {
        "provider": profile.provider,
        "model": profile.model,
        "reasoning_effort": effort,
        "monthly_cost": money(monthly(usd(without), ctx.window)),
    }
    notes = [
        f"{anomalies} overthinking anomalies over {flagged} calls",
        "saving assumes the reasoning tokens go away at the lowest effort",
    ]
    return [
        _make(
            ctx,
            "reasoning_effort",
            "recommended",
            profile,
            current_setting,
            proposed,
            current,
            usd(saving),
            "reasoning",
            None,
            notes,
        )
    ]


def caching_saving(
    ctx_pricer: CellPricer,
    entry: RateCardEntry,
    groups: Sequence[PrefixGroup],
    singletons: tuple[int, int],
    ttl: str,
    service_tier: str | None = None,
    region: str = "",
) -> int | None:
    """Picodollars saved over the window by caching each repeated prefix with `ttl`.

    Unit prices are those of `service_tier` and `region` at the base context tier.
    Per group of calls sharing a prefix of P tokens (estimated): today each call pays P at the
    input price (or at its cache-write price if it wrote the cache); with caching, calls within
    `ttl` of the previous one read P, the others write P. Prompts whose prefix was sent once
    would write without ever reading: their write premium is subtracted.
    """
    unit_read = ctx_pricer.unit(entry, "cache_read", service_tier, region)
    unit_write = ctx_pricer.unit(entry, f"cache_write_{ttl}", service_tier, region)
    unit_input = ctx_pricer.unit(entry, "input_uncached", service_tier, region)
    if unit_read is None or unit_write is None or unit_input is None:
        return None
    saving = 0
    for group in groups:
        if group.prefix_tokens < MIN_CACHEABLE_TOKENS:
            continue
        size = group.prefix_tokens
        today = 0
        written = 0
        for bucket, calls in group.write_calls.items():
            unit = ctx_pricer.unit(entry, bucket, service_tier, region)
            calls = min(calls, group.calls - written)
            written += calls
            today += calls * size * (unit if unit is not None else unit_input)
        today += (group.calls - written) * size * unit_input
        hits = group.hits[ttl]
        cached = hits * size * unit_read + (group.calls - hits) * size * unit_write
        saving += today - cached
    saving -= singletons[1] * (unit_write - unit_input)
    return saving


def _prompt_caching(
    ctx: _Context, profile: WorkloadProfile, entry: RateCardEntry, current: int
) -> list[Recommendation]:
    if profile.tokens["cache_read"] != 0 or profile.repeated_prefix_calls <= 0:
        return []
    groups = ctx.inputs.prefix_groups.get(profile.key, [])
    if not groups:
        return []
    singletons = ctx.inputs.singletons.get(profile.key, (0, 0))
    main = max(profile.cells, key=lambda c: (c.calls, c.band))  # prices of the calls' usual tier and region
    best: tuple[int, str] | None = None
    for ttl in CACHE_TTLS:
        saving = caching_saving(ctx.pricer, entry, groups, singletons, ttl, main.service_tier, main.region)
        if saving is not None and (best is None or saving > best[0]):
            best = (saving, ttl)
    if best is None or best[0] <= 0 or best[0] * 100 < current * MIN_PCT:
        return []
    saving, ttl = best
    repeated = sum(g.calls - 1 for g in groups)
    hits = sum(g.hits[ttl] for g in groups)
    gaps = sorted(g.median_gap_ms for g in groups)
    current_setting = {
        **_setting(profile, entry, current, ctx.window),
        "prompt_caching": "requested" if profile.caching_requested_calls else "off",
        "cache_read_tokens": 0,
    }
    proposed = {
        "provider": profile.provider,
        "model": profile.model,
        "prompt_caching": "on",
        "ttl": ttl,
        "monthly_cost": money(monthly(usd(current - saving), ctx.window)),
    }
    notes = [
        f"{repeated} calls repeated a prefix; {hits} within {ttl} of the previous one",
        f"median reuse gap {gaps[len(gaps) // 2] / 1000:.0f} s",
        "prefix length estimated as the shortest prompt sharing the prefix hash",
    ]
    return [
        _make(
            ctx,
            "prompt_caching",
            "recommended",
            profile,
            current_setting,
            proposed,
            current,
            usd(saving),
            "prefixes",
            None,
            notes,
        )
    ]


def busiest_hours(hours: dict[int, int], span: int = SCHEDULED_HOURS) -> tuple[int, int]:
    """(first hour, calls) of the `span` consecutive hours of the day (wrapping) with most calls."""
    best = (0, -1)
    for start in range(24):
        calls = sum(hours.get((start + i) % 24, 0) for i in range(span))
        if calls > best[1]:
            best = (start, calls)
    return best


def _batch(
    ctx: _Context, profile: WorkloadProfile, entry: RateCardEntry, current: int
) -> list[Recommendation]:
    if "batch" not in entry.service_tiers or profile.stream_calls > 0:
        return []
    if profile.batch_calls * 2 >= profile.calls:
        return []  # already mostly batch
    start, peak_calls = busiest_hours(profile.hours)
    recurring = profile.active_days >= SCHEDULED_MIN_DAYS  # one burst is not a schedule
    scheduled = recurring and Decimal(peak_calls) >= SCHEDULED_SHARE * profile.calls
    tolerant = profile.latency_p95_ms is not None and profile.latency_p95_ms >= TOLERATED_LATENCY_MS
    if not (scheduled or tolerant):
        return []
    batched = ctx.pricer.cost(entry, profile, transform(profile, as_batch))
    if batched is None:
        return []
    saving = current - batched
    if saving <= 0 or saving * 100 < current * MIN_PCT:
        return []
    why = (
        f"{peak_calls} of {profile.calls} calls between {start:02d}:00 and "
        f"{(start + SCHEDULED_HOURS) % 24:02d}:00 UTC"
        if scheduled
        else f"p95 latency {profile.latency_p95_ms} ms already tolerated"
    )
    current_setting = {
        **_setting(profile, entry, current, ctx.window),
        "service_tier": "standard",
        "latency_p95_ms": profile.latency_p95_ms,
        "streamed_calls": profile.stream_calls,
    }
    proposed = {
        "provider": profile.provider,
        "model": profile.model,
        "service_tier": "batch",
        "monthly_cost": money(monthly(usd(batched), ctx.window)),
    }
    notes = [
        why,
        f"active on {profile.active_days} day(s); no streamed calls",
        "batch results arrive within 24 h",
    ]
    return [
        _make(
            ctx,
            "batch",
            "recommended",
            profile,
            current_setting,
            proposed,
            current,
            usd(saving),
            "timing",
            None,
            notes,
        )
    ]


def _cascade(
    ctx: _Context, profile: WorkloadProfile, entry: RateCardEntry, current: int, switched_to: set[str]
) -> list[Recommendation]:
    current_names = names_of(entry) | {profile.model.lower()}
    needs = needs_of(profile, bool(ctx.overthinking(profile)))
    out = []
    for candidate in ctx.entries:
        names = names_of(candidate)
        if names & current_names or candidate.model in switched_to:
            continue
        result = ctx.book.scores(profile.team, profile.workload, names).get(PASS_RATE)
        if result is None:
            continue
        reasons, _ = misfits(candidate, needs, ctx.inputs.latencies)
        cheap = ctx.pricer.cost(candidate, profile)
        if reasons or cheap is None:
            continue
        # expected per call: cheap + (1 - p) * current  →  saving = p * current - cheap
        saving_pico = (result.score * current - cheap).quantize(Decimal(1), ROUND_HALF_EVEN)
        if saving_pico <= 0 or saving_pico * 100 < current * MIN_PCT:
            continue
        expected = current - int(saving_pico)
        proposed = {
            "first": {"provider": candidate.provider, "model": candidate.model},
            "escalate_to": {"provider": profile.provider, "model": profile.model},
            "pass_rate": plain(result.score),
            "monthly_cost": money(monthly(usd(expected), ctx.window)),
        }
        evidence = {
            "metric": PASS_RATE,
            "model": result.model,
            "pass_rate": plain(result.score),
            "sample_size": result.sample_size,
            "evaluated_at": result.evaluated_at.isoformat(),
        }
        notes = [
            f"always {candidate.model} would cost {money(monthly(usd(cheap), ctx.window))} a month "
            "before escalations"
        ]
        out.append(
            _make(
                ctx,
                "cascade",
                "recommended",
                profile,
                _setting(profile, entry, current, ctx.window),
                proposed,
                current,
                usd(int(saving_pico)),
                "tokens",
                evidence,
                notes,
            )
        )
    return out


# -- reading the inputs from the store ---------------------------------------------------------

_OVERTHINKING_SQL = """SELECT team, workload, provider, model,
    count() AS anomalies, sum(calls) AS calls, sum(wasted_cost) AS wasted_cost
FROM anomalies FINAL
WHERE kind = 'overthinking'
  AND window_end > {since:DateTime64(3, 'UTC')}
  AND window_start < {until:DateTime64(3, 'UTC')}
GROUP BY team, workload, provider, model"""


def fetch_overthinking(client: Client, window: Window) -> list[Overthinking]:
    """Overthinking anomalies that overlap the window; none when the anomalies table is not there yet."""
    if not _table_exists(client, "anomalies"):
        logger.info("no anomalies table yet: reasoning-effort recommendations need the detectors")
        return []
    rows = run(client, Query(_OVERTHINKING_SQL, {"since": window.since, "until": window.until}))
    return [
        Overthinking(
            str(r["team"]),
            str(r["workload"]),
            str(r["provider"]),
            str(r["model"]),
            int(r["anomalies"]),
            int(r["calls"]),
            Decimal(r["wasted_cost"]),
        )
        for r in rows
    ]


def _table_exists(client: Client, name: str) -> bool:
    rows = run(
        client,
        Query(
            "SELECT count() AS n FROM system.tables "
            "WHERE database = currentDatabase() AND name = {name:String}",
            {"name": name},
        ),
    )
    return int(rows[0]["n"]) > 0


def gather(client: Client, card: RateCard, window: Window, evals: Sequence[EvalResult] = ()) -> Inputs:
    """Read profiles, prefix reuse, latencies and anomalies of the window from the store."""
    bands = band_thresholds(card)
    return Inputs(
        card=card,
        window=window,
        profiles=fetch_profiles(client, window, bands),
        prefix_groups=fetch_prefix_groups(client, window),
        singletons=fetch_singletons(client, window),
        latencies=fetch_model_latency(client, window),
        overthinking=fetch_overthinking(client, window),
        evals=list(evals),
    )


def compute(
    client: Client, card: RateCard, window: Window, evals: Sequence[EvalResult] = ()
) -> list[Recommendation]:
    """Gather from the store, then recommend."""
    return recommend(gather(client, card, window, evals))
