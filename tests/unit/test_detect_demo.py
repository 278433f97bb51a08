"""The demo generator's waste, labeled by construction, is what the detectors report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from costline.ingest.demo import demo_events, expected_anomalies
from costline.pipeline.detectors.config import DetectorsConfig
from costline.pipeline.detectors.engine import MemoryState, process_stream
from costline.pipeline.detectors.signals import SignalBuilder
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card

END = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.mark.parametrize(("count", "span"), [(2_000, timedelta(days=6)), (3_000, timedelta(hours=30))])
def test_every_planted_demo_pattern_is_reported(count: int, span: timedelta) -> None:
    events = list(demo_events(count, end=END, span=span))
    assert len(events) == count
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)
    pricer = Pricer(load_default_rate_card())
    builder = SignalBuilder()
    signals = [builder.build(pricer, pricer.price(event)) for event in events]
    state = MemoryState()
    process_stream(DetectorsConfig(), state, [signals[i : i + 100] for i in range(0, len(signals), 100)])

    found: dict[tuple[str, str], set[str]] = {}
    for record in state.anomalies.values():
        found.setdefault((record["kind"], record["cause"]), set()).add(record["workload"])
    expected = expected_anomalies(events)
    assert {kind for kind, _ in expected} == {
        "overthinking",
        "cache_miss",
        "spend_spike",
        "agent_loop",
        "context_growth",
    }
    for label, workloads in expected.items():
        assert workloads <= found.get(label, set()), (label, found.get(label))

    # the overthinking classifier, call by call: every ticket-triage answer, and nothing else
    labeled = {
        e.event_id for e in events if e.attribution.workload == "ticket-triage" and e.signals.status == "ok"
    }
    flagged = {event_id for kind, _, event_id in state.flags if kind == "overthinking"}
    precision, recall = len(flagged & labeled) / len(flagged), len(flagged & labeled) / len(labeled)
    print(f"demo overthinking ({count} events): precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.9
    assert recall >= 0.9
    # the spike and the looping run: exactly the planted ones among pattern workloads
    spikes = [r for r in state.anomalies.values() if r["kind"] == "spend_spike"]
    assert [r["workload"] for r in spikes] == ["invoice-extract"]
    loops = [r for r in state.anomalies.values() if r["kind"] == "agent_loop"]
    assert [r["session_id"] for r in loops] == ["agent-loop-1"]


def test_small_demo_batches_are_profiles_only() -> None:
    events = list(demo_events(400, end=END))
    assert all(e.attribution.project != "patterns" for e in events)
    assert expected_anomalies(events).keys() <= {("overthinking", "reasoning_vs_answer")}
