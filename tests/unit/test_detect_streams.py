"""Each detector on labeled synthetic streams: precision and recall above a floor, nothing on clean data.

The streams (tests/fixtures/detectors/streams.py) plant waste by construction in a background that
breaks none of the detectors' conditions. Each is replayed in batches the way the signals topic
delivers them (one message per workload and batch, quiet workloads swept by the partition's clock),
for several seeds and batch sizes. The floor is 0.9: the detectors are rule-based, so anything below
it on planted waste means a rule or its state handling is broken, not noise; the figures are printed
(run with -s) and quoted in docs/detectors.md.
"""

from __future__ import annotations

import pytest

from costline.pipeline.detectors.config import DetectorsConfig
from costline.pipeline.detectors.engine import MemoryState, process_stream
from tests.fixtures.detectors import streams
from tests.fixtures.detectors.streams import Score, Stream

FLOOR = 0.9
SEEDS = (1, 2, 3)
BATCHES = (1, 37, 400)


def replay(stream: Stream, batch: int) -> MemoryState:
    state = MemoryState()
    signals = stream.signals
    process_stream(DetectorsConfig(), state, [signals[i : i + batch] for i in range(0, len(signals), batch)])
    return state


def check(score: Score) -> None:
    print(score)
    assert score.labeled > 0, score
    assert score.flagged > 0, score
    assert score.precision >= FLOOR, score
    assert score.recall >= FLOOR, score


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", SEEDS)
def test_a_clean_stream_raises_nothing(seed: int, batch: int) -> None:
    state = replay(streams.clean_stream(seed), batch)
    assert state.flags == []
    assert state.anomalies == {}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", SEEDS)
def test_overthinking(seed: int, batch: int) -> None:
    stream = streams.overthinking_stream(seed).merge(streams.clean_stream(seed, hours=4))
    state = replay(stream, batch)
    check(streams.score_calls(f"overthinking seed={seed} batch={batch}", stream, state.flags, "overthinking"))
    check(streams.score_causes(f"  by cause seed={seed} batch={batch}", stream, state.flags, "overthinking"))
    records = [r for r in state.anomalies.values() if r["kind"] == "overthinking"]
    # a yes/no call after 100x its answer in reasoning breaks two rules: filed under the first
    assert {r["cause"] for r in records} == {"reasoning_vs_answer", "above_workload_baseline"}
    yesno = [r for r in records if r["workload"] == "yesno"]
    assert yesno
    assert all("high_effort_tiny_answers" in r["evidence"]["rules"] for r in yesno)
    assert all(0 < r["wasted"] <= r["observed"] for r in records)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", SEEDS)
def test_cache_misses(seed: int, batch: int) -> None:
    stream = streams.cache_stream(seed).merge(streams.clean_stream(seed, hours=16))
    state = replay(stream, batch)
    check(streams.score_calls(f"cache_miss seed={seed} batch={batch}", stream, state.flags, "cache_miss"))
    check(streams.score_causes(f"  by cause seed={seed} batch={batch}", stream, state.flags, "cache_miss"))
    records = list(state.anomalies.values())
    check(
        streams.score_episodes(
            f"  hit_rate_collapse seed={seed}", stream, records, "cache_miss", "hit_rate_collapse"
        )
    )
    causes = {r["cause"] for r in records if r["kind"] == "cache_miss"}
    assert causes == {
        "caching_not_requested",
        "prefix_changing",
        "below_minimum",
        "write_never_read",
        "ttl_longer_than_needed",
        "ttl_shorter_than_needed",
        "hit_rate_collapse",
    }
    collapse = next(r for r in records if r["cause"] == "hit_rate_collapse")
    assert collapse["state"] == "resolved"
    assert collapse["wasted"] > 0
    assert collapse["evidence"]["baseline_hit_rate"] > 0.5 > max(collapse["evidence"]["observed_hit_rates"])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", SEEDS)
def test_spend_spikes(seed: int, batch: int) -> None:
    stream = streams.spike_stream(seed).merge(streams.clean_stream(seed, hours=60))
    state = replay(stream, batch)
    records = list(state.anomalies.values())
    check(
        streams.score_episodes(
            f"spend_spike seed={seed} batch={batch}",
            stream,
            records,
            "spend_spike",
            "cost_rate_above_baseline",
        )
    )
    for record in records:
        assert record["state"] == "resolved"
        assert 0 < record["wasted"] < record["observed"]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("seed", SEEDS)
def test_agent_loops_and_context_growth(seed: int, batch: int) -> None:
    stream = streams.runs_stream(seed).merge(streams.clean_stream(seed, hours=40))
    state = replay(stream, batch)
    records = list(state.anomalies.values())
    check(
        streams.score_episodes(
            f"agent_loop seed={seed} batch={batch}", stream, records, "agent_loop", "too_many_calls"
        )
    )
    check(
        streams.score_episodes(
            f"context_growth seed={seed} batch={batch}",
            stream,
            records,
            "context_growth",
            "input_accumulating",
        )
    )
    loop = next(r for r in records if r["kind"] == "agent_loop")
    assert loop["calls"] == 60
    assert loop["observed"] > loop["wasted"] > 0


def test_a_tiny_workload_never_spikes_however_large_its_jump() -> None:
    """$0.02 an hour going to $0.50 is 25×, but under the minimum amount: nobody is paged."""
    make = streams.Maker("tiny")
    signals = []
    for hour in range(40):
        calls = 50 if hour == 30 else 2
        for i in range(calls):
            at = streams.T0 + hour * streams.HOUR + i * 60_000
            signals.append(make(at, "tiny", uncached=2_000, visible=100, prefix=f"tiny-{hour}-{i}"))
    state = replay(Stream(signals), 50)
    assert [r for r in state.anomalies.values() if r["kind"] == "spend_spike"] == []


def test_a_provider_that_does_not_report_cache_usage_is_not_zero_hits() -> None:
    """A self-hosted model repeating one prefix: no cache tokens reported, so no cache findings."""
    make = streams.Maker("local")
    signals = [
        make(
            streams.T0 + i * 30_000,
            "local",
            provider="self_hosted",
            model="llama",
            prices=(None,) * 8,
            uncached=5_000,
            prefix="local-system",
        )
        for i in range(200)
    ]
    state = replay(Stream(signals), 20)
    assert state.flags == []
    hit_rate = state.workloads["t/local"]["hit_rate"]
    assert hit_rate["calls"] == 0
    assert hit_rate["unreported"] > 0
