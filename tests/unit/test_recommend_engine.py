"""The recommendation engine on synthetic workloads whose best answer is known, savings checked exactly.

Profiles are built by hand (what the store query would return for N identical calls), priced on
the bundled rate card; every expected figure below is worked out from the card's list prices.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.recommend.engine import Inputs, Overthinking, busiest_hours, recommend
from costline.pipeline.recommend.evals import EvalResult
from costline.pipeline.recommend.model import Recommendation, Window, monthly
from costline.pipeline.recommend.profile import PrefixGroup, PricingCell, WorkloadProfile, band_thresholds
from costline.schemas.usage_event import REQUEST_COUNTERS, TOKEN_BUCKETS

UNTIL = datetime(2026, 11, 30, tzinfo=UTC)
WINDOW_30 = Window(UNTIL - timedelta(days=30), UNTIL)
WINDOW_7 = Window(UNTIL - timedelta(days=7), UNTIL)
SPREAD_HOURS = {h: 10 for h in range(24)}


@pytest.fixture(scope="module")
def card() -> RateCard:
    return load_default_rate_card()


def profile(
    card: RateCard,
    team: str,
    workload: str,
    provider: str,
    model: str,
    calls: int,
    per_call: dict[str, int],
    *,
    window: Window = WINDOW_30,
    hours: dict[int, int] | None = None,
    latency_p95_ms: int | None = 5_000,
    effort: str = "",
    reasoning_calls: int = 0,
    stream_calls: int = 0,
    prefix_calls: int = 0,
    distinct_prefixes: int = 0,
    batch: bool = False,
) -> WorkloadProfile:
    """A profile of `calls` identical calls with `per_call` tokens."""
    tokens = {b: per_call.get(b, 0) * calls for b in TOKEN_BUCKETS}
    input_total = sum(per_call.get(b, 0) for b in TOKEN_BUCKETS if not b.startswith("output"))
    output_total = per_call.get("output_visible", 0) + per_call.get("output_reasoning", 0)
    bands = band_thresholds(card)
    band = sum(1 for t in bands if input_total > t)
    cell = PricingCell(
        band=band,
        service_tier="batch" if batch else None,
        region="",
        calls=calls,
        tokens=tokens,
        requests=dict.fromkeys(REQUEST_COUNTERS, 0),
        cost=Decimal(0),
    )
    return WorkloadProfile(
        team,
        workload,
        provider,
        model,
        window=window,
        bands=bands,
        cells=[cell],
        calls=calls,
        input_p95=input_total,
        input_p99=input_total,
        output_p99=output_total,
        latency_p95_ms=latency_p95_ms,
        latency_calls=calls if latency_p95_ms is not None else 0,
        stream_calls=stream_calls,
        reasoning_calls=reasoning_calls,
        batch_calls=calls if batch else 0,
        efforts={effort: calls},
        prefix_calls=prefix_calls,
        distinct_prefixes=distinct_prefixes,
        hours=hours if hours is not None else {h: calls // 24 for h in range(24)},
        active_days=30,
    )


def evaluation(team: str, workload: str, model: str, score: str, metric: str = "accuracy") -> EvalResult:
    return EvalResult(
        team=team,
        workload=workload,
        model=model,
        metric=metric,
        score=Decimal(score),
        sample_size=400,
        evaluated_at=datetime(2026, 11, 20, tzinfo=UTC),
        source="test",
    )


def of_kind(recs: list[Recommendation], kind: str) -> list[Recommendation]:
    return [r for r in recs if r.kind == kind]


# -- 1. a classification workload on a frontier reasoning model with tiny outputs ------------------


def classification(card: RateCard) -> WorkloadProfile:
    return profile(
        card,
        "support",
        "classify",
        "openai",
        "gpt-5",
        1000,
        {"input_uncached": 2000, "output_visible": 3, "output_reasoning": 1500},
        effort="high",
        reasoning_calls=1000,
    )


def test_classification_on_frontier_reasoning_model(card: RateCard) -> None:
    flag = Overthinking("support", "classify", "openai", "gpt-5", 12, 900, Decimal("12.5"))
    evals = [
        evaluation("support", "classify", "gpt-5", "0.97"),
        evaluation("support", "classify", "gpt-5-mini", "0.96"),
    ]
    recs = recommend(Inputs(card, WINDOW_30, [classification(card)], overthinking=[flag], evals=evals))

    # gpt-5: 2M input x $1.25 + 3k output x $10 + 1.5M reasoning x $10 (reasoning bills as output)
    current = Decimal("2.5") + Decimal("0.03") + Decimal("15")
    (effort,) = of_kind(recs, "reasoning_effort")
    assert effort.status == "recommended"
    assert effort.window_cost == current
    assert effort.window_saving == Decimal("15")  # every reasoning token
    assert effort.monthly_saving == Decimal("15")  # a 30-day window is a month
    assert effort.saving_pct == Decimal("85.57")
    assert effort.proposed["reasoning_effort"] == "minimal"

    switches = of_kind(recs, "model_switch")
    (chosen,) = [r for r in switches if r.status == "recommended"]
    assert chosen.proposed["model"] == "gpt-5-mini"
    # gpt-5-mini: 2M x $0.25 + 3k x $2 + 1.5M x $2
    assert chosen.window_saving == current - (Decimal("0.5") + Decimal("0.006") + Decimal("3"))
    assert chosen.eval_evidence is not None
    assert chosen.eval_evidence["passed"] is True
    # cheaper candidates without evidence are listed, never recommended, and only if they save more
    others = [r for r in switches if r is not chosen]
    assert others
    assert all(r.status == "needs_eval" for r in others)
    assert all(r.window_saving > chosen.window_saving for r in others)
    assert recs[0].window_saving == max(r.window_saving for r in recs)  # ranked by saving


def test_without_overthinking_flag_no_effort_change_and_reasoning_is_required(card: RateCard) -> None:
    recs = recommend(Inputs(card, WINDOW_30, [classification(card)]))
    assert not of_kind(recs, "reasoning_effort")
    for rec in of_kind(recs, "model_switch"):
        entry = next(e for e in card.entries if e.id == rec.proposed["ratecard_entry"])
        assert "reasoning" in entry.capabilities  # effort "high": the workload relies on reasoning


# -- 2. a long-context workload no cheaper model can hold --------------------------------------------


def test_long_context_workload_gets_nothing(card: RateCard) -> None:
    long = profile(
        card,
        "legal",
        "discovery",
        "gcp.gemini",
        "gemini-2.5-flash-lite",
        50,
        {"input_uncached": 1_045_000, "output_visible": 2_000},
    )
    assert recommend(Inputs(card, WINDOW_30, [long])) == []


def test_context_window_excludes_smaller_models(card: RateCard) -> None:
    big = profile(
        card, "legal", "review", "openai", "gpt-4.1", 50, {"input_uncached": 300_000, "output_visible": 500}
    )
    for rec in of_kind(recommend(Inputs(card, WINDOW_30, [big])), "model_switch"):
        entry = next(e for e in card.entries if e.id == rec.proposed["ratecard_entry"])
        assert entry.context_window is not None
        assert entry.context_window >= 300_000


# -- 3. a workload whose cheaper candidate fails its eval floor ---------------------------------------


def test_candidate_below_quality_floor_is_not_recommended(card: RateCard) -> None:
    triage = profile(
        card,
        "support",
        "triage",
        "anthropic",
        "claude-sonnet-4-6",
        500,
        {"input_uncached": 4000, "output_visible": 300},
    )
    evals = [
        evaluation("support", "triage", "claude-sonnet-4-6", "0.95"),
        evaluation("support", "triage", "claude-haiku-4-5", "0.90"),  # drop 0.05 > default floor 0.02
    ]
    recs = recommend(Inputs(card, WINDOW_30, [triage], evals=evals))
    assert not [r for r in recs if r.status == "recommended"]
    assert all(r.proposed["model"] != "claude-haiku-4-5" for r in recs)
    assert all(r.status == "needs_eval" and r.eval_evidence is None for r in of_kind(recs, "model_switch"))

    # the same drop within a workload floor of 0.05 passes
    floor = EvalResult(**{**evals[1].model_dump(), "quality_floor": Decimal("0.05")})
    recs = recommend(Inputs(card, WINDOW_30, [triage], evals=[evals[0], floor]))
    (chosen,) = [r for r in recs if r.status == "recommended"]
    assert chosen.proposed["model"] == "claude-haiku-4-5"
    # sonnet 2M x $3 + 150k x $15 = 8.25; haiku 2M x $1 + 150k x $5 = 2.75
    assert chosen.window_saving == Decimal("5.5")
    assert chosen.saving_pct == Decimal("66.67")


# -- 4. a cache-able workload without caching -------------------------------------------------------


def cacheable(card: RateCard, gap_hits: dict[str, int]) -> tuple[WorkloadProfile, PrefixGroup]:
    prof = profile(
        card,
        "support",
        "reply",
        "anthropic",
        "claude-sonnet-4-6",
        100,
        {"input_uncached": 6000, "output_visible": 100},
        prefix_calls=100,
        distinct_prefixes=1,
    )
    group = PrefixGroup(
        "support",
        "reply",
        "anthropic",
        "claude-sonnet-4-6",
        "ab" * 16,
        calls=100,
        prefix_tokens=5000,
        hits=gap_hits,
        write_calls=dict.fromkeys(
            ("cache_write_5m", "cache_write_30m", "cache_write_1h", "cache_write_12h"), 0
        ),
        read_calls=0,
        median_gap_ms=120_000,
    )
    return prof, group


def test_cacheable_workload_without_caching(card: RateCard) -> None:
    prof, group = cacheable(card, {"5m": 99, "30m": 99, "1h": 99, "12h": 99})  # a call every 2 minutes
    recs = recommend(Inputs(card, WINDOW_30, [prof], prefix_groups={prof.key: [group]}))
    (caching,) = of_kind(recs, "prompt_caching")
    assert caching.proposed["ttl"] == "5m"  # every reuse within 5 minutes: the cheaper write wins
    # today 100 x 5000 prefix tokens x $3 = 1.5; cached: 99 reads x 5000 x $0.3 + 1 write x 5000 x $3.75
    assert caching.window_saving == Decimal("1.5") - Decimal("0.1485") - Decimal("0.01875")
    assert caching.window_cost == Decimal("1.95")
    assert caching.saving_pct == Decimal("68.35")


def test_caching_ttl_follows_observed_reuse(card: RateCard) -> None:
    prof, group = cacheable(card, {"5m": 0, "30m": 99, "1h": 99, "12h": 99})  # a call every 20 minutes
    recs = recommend(Inputs(card, WINDOW_30, [prof], prefix_groups={prof.key: [group]}))
    (caching,) = of_kind(recs, "prompt_caching")
    assert caching.proposed["ttl"] == "1h"  # Sonnet has no 30m cache; 5m would write every time
    assert caching.window_saving == Decimal("1.5") - Decimal("0.1485") - Decimal("0.03")


def test_workload_already_reading_the_cache_gets_no_caching_advice(card: RateCard) -> None:
    prof, group = cacheable(card, {"5m": 99, "30m": 99, "1h": 99, "12h": 99})
    prof.cells[0].tokens["cache_read"] = 1000
    assert not of_kind(
        recommend(Inputs(card, WINDOW_30, [prof], prefix_groups={prof.key: [group]})), "prompt_caching"
    )


# -- 5. a nightly batch job ----------------------------------------------------------------------------


def nightly(card: RateCard, hours: dict[int, int]) -> WorkloadProfile:
    return profile(
        card,
        "data-platform",
        "nightly-report",
        "anthropic",
        "claude-haiku-4-5",
        100,
        {"input_uncached": 10_000, "output_visible": 500},
        window=WINDOW_7,
        hours=hours,
        latency_p95_ms=8_000,
    )


def test_nightly_job_goes_to_batch(card: RateCard) -> None:
    recs = recommend(Inputs(card, WINDOW_7, [nightly(card, {2: 50, 3: 50})]))
    (batch,) = of_kind(recs, "batch")
    # 1M x $1 + 50k x $5 = 1.25 over 7 days; batch halves it
    assert batch.window_cost == Decimal("1.25")
    assert batch.window_saving == Decimal("0.625")
    assert batch.saving_pct == Decimal("50.00")
    assert batch.monthly_saving == Decimal("2.678571428571")  # 0.625 x 30 / 7, half-even to the picodollar
    assert batch.proposed["service_tier"] == "batch"


def test_interactive_workloads_stay_off_batch(card: RateCard) -> None:
    assert not of_kind(recommend(Inputs(card, WINDOW_7, [nightly(card, SPREAD_HOURS)])), "batch")
    streamed = nightly(card, {2: 50, 3: 50})
    streamed.stream_calls = 1
    assert not of_kind(recommend(Inputs(card, WINDOW_7, [streamed])), "batch")
    burst = nightly(card, {2: 50, 3: 50})
    burst.active_days = 1  # one afternoon of use is not a schedule
    assert not of_kind(recommend(Inputs(card, WINDOW_7, [burst])), "batch")
    burst.latency_p95_ms = 90_000  # ...unless callers already wait minutes for an answer
    assert of_kind(recommend(Inputs(card, WINDOW_7, [burst])), "batch")


def test_busiest_hours_wrap_past_midnight() -> None:
    assert busiest_hours({23: 5, 0: 5, 1: 5, 12: 1}) == (22, 15)


# -- cascades --------------------------------------------------------------------------------------------


def test_cascade_from_pass_rate(card: RateCard) -> None:
    work = profile(
        card, "search", "answer", "openai", "gpt-5", 1000, {"input_uncached": 2000, "output_visible": 500}
    )
    evals = [evaluation("search", "answer", "gpt-5-nano", "0.8", metric="pass_rate")]
    recs = recommend(Inputs(card, WINDOW_30, [work], evals=evals))
    (cascade,) = of_kind(recs, "cascade")
    current = Decimal("2.5") + Decimal("5")  # 2M x $1.25 + 500k x $10
    cheap = Decimal("0.1") + Decimal("0.2")  # 2M x $0.05 + 500k x $0.4
    assert cascade.window_saving == Decimal("0.8") * current - cheap  # current - (cheap + 0.2 x current)
    assert cascade.proposed["first"]["model"] == "gpt-5-nano"
    assert cascade.proposed["escalate_to"]["model"] == "gpt-5"


def test_monthly_projection_is_exact() -> None:
    window = Window(UNTIL - timedelta(days=3), UNTIL)
    assert monthly(Decimal("1"), window) == Decimal("10")
    assert monthly(Decimal("0.000000000001"), Window(UNTIL - timedelta(days=7), UNTIL)) == Decimal(
        "0.000000000004"
    )


def test_too_few_calls_or_no_workload_prove_nothing(card: RateCard) -> None:
    small = nightly(card, {2: 5, 3: 4})
    small.calls = 9
    anonymous = nightly(card, {2: 50, 3: 50})
    anonymous.workload = ""
    assert recommend(Inputs(card, WINDOW_7, [small, anonymous])) == []


def test_ids_are_stable_across_runs(card: RateCard) -> None:
    first = recommend(Inputs(card, WINDOW_7, [nightly(card, {2: 50, 3: 50})]))
    later = nightly(card, {2: 60, 3: 50})
    later.calls = 110
    later.latency_p95_ms = 9_000
    again = recommend(Inputs(card, WINDOW_7, [later]))
    assert [r.id for r in of_kind(first, "batch")] == [r.id for r in of_kind(again, "batch")]
    assert len({r.id for r in first}) == len(first)
