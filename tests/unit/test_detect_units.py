"""The detectors' building blocks: signals on the wire, config merging, baselines, anomaly rows, queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from costline.ingest.demo import demo_events
from costline.pipeline.detectors.baselines import ewma_step, hist_add, hist_quantile
from costline.pipeline.detectors.config import DetectorsConfig, load_detectors_config
from costline.pipeline.detectors.signals import (
    READ,
    SignalBuilder,
    SignalFormatError,
    UsageSignal,
    decode_batch,
    encode_batch,
)
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.store.anomalies import anomaly_totals, evidence_json, list_anomalies, record_to_row
from costline.schemas.errors import ConfigError, StoreError
from costline.schemas.usage_event import TOKEN_BUCKETS

END = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_signal_carries_the_priced_costs_exactly_and_round_trips() -> None:
    pricer = Pricer(load_default_rate_card())
    builder = SignalBuilder()
    for event in demo_events(300, end=END):
        priced = pricer.price(event)
        signal = builder.build(pricer, priced)
        for line in priced.lines:
            if line.unit == "tokens":
                index = TOKEN_BUCKETS.index(line.bucket)
                assert Decimal(signal.cost_of(index)).scaleb(-12) == line.effective_cost
        assert Decimal(signal.cost).scaleb(-12) == priced.effective_cost
        assert decode_batch(encode_batch([signal])) == [signal]
    # a call without cache reads still knows what a read would have cost
    sonnet = next(
        e for e in demo_events(300, end=END) if e.model == "claude-sonnet-4-6" and not e.tokens.cache_read
    )
    assert builder.build(pricer, pricer.price(sonnet)).price(READ) == 300_000  # $0.30 per MTok


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"{", "not JSON"),
        (b'{"v": 2, "signals": []}', "version 1"),
        (b'{"v": 1}', "no `signals` list"),
        (b'{"v": 1, "signals": [[1, 2]]}', "19 fields"),
    ],
)
def test_a_bad_signals_message_says_what_is_wrong(value: bytes, message: str) -> None:
    with pytest.raises(SignalFormatError, match=message):
        decode_batch(value)


def test_workload_overrides_merge_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "detectors.yaml"
    path.write_text(
        "defaults:\n  spikes: {min_excess_usd: '5.00'}\n"
        "workloads:\n  support/triage:\n    overthinking: {short_output_tokens: 8}\n"
        "  nightly:\n    spikes: {enabled: false}\n"
        "providers:\n  anthropic:\n    min_cacheable_tokens: {claude-tiny: 512}\n"
    )
    config = load_detectors_config(path)
    triage = config.for_workload("support", "triage")
    assert triage.overthinking.short_output_tokens == 8
    assert triage.spikes.min_excess_usd == Decimal("5.00")  # the default override still applies
    assert config.for_workload("other", "nightly").spikes.enabled is False  # bare name: any team
    assert config.for_workload("support", "other").overthinking.short_output_tokens == 64
    anthropic = config.provider("anthropic")
    assert anthropic.min_tokens("claude-tiny-1") == 512
    assert anthropic.min_tokens("claude-haiku-4-5") == 4_096  # built-in facts kept
    assert config.provider("self_hosted").reports_cache_usage is False


def test_a_bad_config_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "detectors.yaml"
    path.write_text("workloads:\n  x:\n    spikes: {factor: -1}\n")
    with pytest.raises(ConfigError, match=r"workloads\.x"):
        load_detectors_config(path)
    path.write_text("defaults:\n  overthinking: {ration: 3}\n")
    with pytest.raises(ConfigError, match="ration"):
        load_detectors_config(path)
    assert DetectorsConfig().defaults.cache.hit_rate_drop == 0.5


def test_histogram_percentiles_are_bounded_within_a_bucket() -> None:
    hist: dict[str, int] = {}
    for value in range(1, 1001):
        hist_add(hist, value)
    p50, p95 = hist_quantile(hist, 0.5), hist_quantile(hist, 0.95)
    assert p50 is not None
    assert p95 is not None
    assert 500 <= p50 <= 500 * 1.2
    assert 950 <= p95 <= 950 * 1.2
    assert json.loads(json.dumps(hist)) == hist  # table values are JSON


def test_ewma_in_integers_tracks_mean_and_variance() -> None:
    mean, var = 0, 0
    for sample in [100, 300] * 200:
        mean, var = ewma_step(mean, var, sample, 0.1)
    assert 180 <= mean <= 220
    assert 90**2 <= var <= 110**2


RECORD = {
    "anomaly_id": "a1",
    "kind": "overthinking",
    "cause": "reasoning_vs_answer",
    "team": "support",
    "project": "helpdesk",
    "workload": "triage",
    "provider": "anthropic",
    "model": "claude-sonnet-4-6",
    "trace_id": "",
    "session_id": "",
    "window_start": 1_790_000_000_000,
    "window_end": 1_790_003_600_000,
    "detected_at": 1_790_000_100_000,
    "calls": 3,
    "wasted": 1_234_567,
    "observed": 9_000_000_000,
    "severity": "info",
    "state": "firing",
    "evidence": {"sum": {"reasoning_cost_pico": 5}, "rules": "reasoning_vs_answer"},
    "samples": ["e1", "e2"],
    "version": 4,
}


def test_a_record_becomes_a_row_with_exact_money_and_evidence_in_usd_strings() -> None:
    row = record_to_row(RECORD)
    assert row[14] == Decimal("0.000001234567")
    assert row[15] == Decimal("0.009")
    assert row[10] == datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)  # 1_790_000_000 s after the epoch
    assert json.loads(str(row[18])) == {
        "rules": "reasoning_vs_answer",
        "sum": {"reasoning_cost_usd": "0.000000000005"},
    }
    with pytest.raises(StoreError, match="incomplete"):
        record_to_row({"anomaly_id": "x"})
    assert evidence_json({"a_pico": 10**12}) == '{"a_usd":"1.000000000000"}'


def test_queries_bind_every_value_and_scope_by_team() -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    query = list_anomalies("cache_miss", since, until, ["search"], 50)
    assert query.sql == (
        "SELECT anomaly_id, kind, cause, team, project, workload, provider, model, trace_id, session_id, "
        "window_start, window_end, detected_at, calls, wasted_cost, observed_cost, severity, state, "
        "evidence, sample_event_ids, version\nFROM anomalies FINAL\n"
        "WHERE window_end >= {since:DateTime64(3, 'UTC')}\n"
        "  AND window_start < {until:DateTime64(3, 'UTC')}\n"
        "  AND kind = {kind:String}\n  AND team IN {teams:Array(String)}\n"
        "ORDER BY window_start DESC, anomaly_id ASC\nLIMIT {limit:UInt32}"
    )
    assert query.parameters == {
        "since": since,
        "until": until,
        "kind": "cache_miss",
        "teams": ["search"],
        "limit": 50,
    }
    totals = anomaly_totals(None, since, until, None)
    assert "team IN" not in totals.sql
    assert "kind =" not in totals.sql
    assert "GROUP BY kind" in totals.sql
    with pytest.raises(StoreError, match="unknown anomaly kind"):
        list_anomalies("bogus", since, until)
    with pytest.raises(StoreError, match="limit"):
        list_anomalies(None, since, until, None, 0)


def test_usage_signal_from_wire_rejects_wrong_types() -> None:
    with pytest.raises(SignalFormatError, match="wrong type"):
        UsageSignal.from_wire(["e", "not-a-time", *[""] * 14, [0] * 8, [None] * 8, 0])


class FakeTable(dict):  # type: ignore[type-arg]
    """A Faust table's mapping interface (get, item assignment, del, in)."""


def test_the_worker_table_state_gives_the_same_anomalies_as_the_memory_state() -> None:
    from costline.pipeline.agents.detect import AnomalyOutbox, DetectorTables, TableState
    from costline.pipeline.detectors.engine import MemoryState, process, sweep_idle
    from tests.fixtures.detectors import streams

    stream = streams.cache_stream(7).merge(streams.runs_stream(7)).merge(streams.overthinking_stream(7))
    config = DetectorsConfig()
    tables = DetectorTables(FakeTable(), FakeTable(), FakeTable(), FakeTable())
    outbox = AnomalyOutbox()
    memory = MemoryState()
    signals = stream.signals
    for start in range(0, len(signals), 250):
        batch = signals[start : start + 250]
        groups: dict[str, list[UsageSignal]] = {}
        for signal in batch:
            groups.setdefault(signal.workload_key, []).append(signal)
        clock = max(s.at_ms for s in batch)
        for key, group in groups.items():
            process(config, memory.for_workload(key), group, 0)
            state = TableState(tables, key, outbox)
            outbox.add(process(config, state, group, 0))
            state.commit()
        for key in list(memory.workloads):
            sweep_idle(config, memory.for_workload(key), clock, 0)
            state = TableState(tables, key, outbox)
            outbox.add(sweep_idle(config, state, clock, 0))
            state.commit()
    assert dict(tables.anomalies) == memory.anomalies
    assert outbox.pending == memory.anomalies  # every record waits for the store in its latest version
    assert len(memory.anomalies) > 20
    assert json.loads(json.dumps(dict(tables.workloads))) == dict(tables.workloads)  # JSON table values
