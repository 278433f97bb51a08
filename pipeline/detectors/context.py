"""Agent runs: context growing turn over turn, and runs with unusually many calls.

A run is the calls of one session (else one trace) of a workload, until `session_gap_seconds` of
event time pass without a call. Each run is one state value; each anomaly on it is one record:

* `context_growth` (cause `input_accumulating`): at least growth_min_turns calls, input tokens
  rising on most turns, and the last input ≥ growth_factor × the first. Wasted cost: the input
  cost above the first turn's size on every turn (what trimming or summarizing would save).
* `agent_loop` (cause `too_many_calls`): more calls than max(loop_min_calls, loop_factor × the
  workload's loop_percentile of calls per run). Wasted cost: the run's cost beyond its median
  length (the share of calls above the workload's typical run).

Both carry the run's cost so far (`observed_cost`): the cost per agent run. A run's length joins
the workload's distribution when the run ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costline.pipeline.detectors.anomalies import add_sample, anomaly_id
from costline.pipeline.detectors.baselines import hist_add, hist_quantile, hist_total
from costline.pipeline.detectors.signals import IN, READ, WRITE_BUCKETS, UsageSignal

if TYPE_CHECKING:
    from costline.pipeline.detectors.engine import WorkloadRun

SWEEP_EVERY_MS = 60_000


def run_key(s: UsageSignal) -> str:
    """The session id, else the trace id (prefixed so the two never collide), else empty."""
    if s.session_id:
        return f"s:{s.session_id}"
    if s.trace_id:
        return f"t:{s.trace_id}"
    return ""


def _input_cost(s: UsageSignal) -> int:
    return s.cost_of(IN) + s.cost_of(READ) + sum(s.cost_of(b) for b in WRITE_BUCKETS)


def observe(run: WorkloadRun, s: UsageSignal) -> None:
    """Add the call to its run; flag the run when it grows or loops."""
    key = run_key(s)
    if not key:
        return
    cfg = run.cfg.context
    gap = cfg.session_gap_seconds * 1000
    current = run.state.session(key)
    if current is not None and s.at_ms - current["last"] > gap:
        _end(run, key, current)
        current = None
    input_tokens = s.input_total
    if current is None:
        current = {
            "start": s.at_ms,
            "last": s.at_ms,
            "calls": 0,
            "first_input": input_tokens,
            "last_input": input_tokens,
            "max_input": input_tokens,
            "rising": 0,
            "cost": 0,
            "excess": 0,
            "trace_id": s.trace_id,
            "session_id": s.session_id,
            "samples": [],
            "records": [],
        }
    elif input_tokens > current["last_input"]:
        current["rising"] += 1
    current["calls"] += 1
    current["last"] = max(current["last"], s.at_ms)
    current["last_input"] = input_tokens
    current["max_input"] = max(current["max_input"], input_tokens)
    current["cost"] += s.cost
    first = current["first_input"]
    if input_tokens > first > 0:
        current["excess"] += _input_cost(s) * (input_tokens - first) // input_tokens
    if len(current["samples"]) < 10:
        current["samples"].append(s.event_id)
    current["provider"], current["model"] = s.provider, s.model

    calls, rising = current["calls"], current["rising"]
    if (
        calls >= cfg.growth_min_turns
        and rising >= cfg.growth_rising_share * (calls - 1)
        and first > 0
        and current["max_input"] >= cfg.growth_factor * first
    ):
        _upsert(run, key, current, "context_growth", "input_accumulating", current["excess"], s.event_id)
    runs: dict[str, int] = run.ws.setdefault("runs", {})
    known = hist_total(runs) >= cfg.loop_min_runs
    typical = hist_quantile(runs, cfg.loop_percentile) if known else None
    limit = max(cfg.loop_min_calls, int(cfg.loop_factor * typical) if typical is not None else 0)
    if calls > limit:
        median = hist_quantile(runs, 0.5) if known else None
        usual = median if median is not None else cfg.loop_min_calls
        wasted = current["cost"] * max(0, calls - usual) // calls
        _upsert(
            run, key, current, "agent_loop", "too_many_calls", wasted, s.event_id, limit=limit, usual=usual
        )
    run.state.set_session(key, current)
    run.ws.setdefault("sessions", {})[key] = current["last"]


def _upsert(
    run: WorkloadRun,
    key: str,
    current: dict[str, Any],
    kind: str,
    cause: str,
    wasted: int,
    event_id: str,
    **extra: Any,
) -> None:
    anomaly = anomaly_id(kind, cause, run.team, run.workload, key, current["start"])
    record = run.record(
        anomaly,
        kind=kind,
        cause=cause,
        team=run.team,
        project=run.ws["project"],
        workload=run.workload,
        provider=current["provider"],
        model=current["model"],
        window_start=current["start"],
        window_end=current["last"],
        trace_id=current["trace_id"],
        session_id=current["session_id"],
    )
    if record["state"] == "resolved":  # a late call of an ended run: leave the closed record be
        return
    record["window_end"] = current["last"]
    record["provider"], record["model"] = current["provider"], current["model"]
    record["calls"] = current["calls"]
    record["observed"] = current["cost"]
    record["wasted"] = wasted
    record["evidence"] = {
        "turns": current["calls"],
        "first_input_tokens": current["first_input"],
        "last_input_tokens": current["last_input"],
        "max_input_tokens": current["max_input"],
        "rising_turns": current["rising"],
        "run_cost_pico": current["cost"],
        "run_seconds": (current["last"] - current["start"]) // 1000,
        **{f"{name}_calls": value for name, value in extra.items()},
    }
    for sample in current["samples"]:
        add_sample(record, sample)
    add_sample(record, event_id)
    run.save(record)
    if anomaly not in current["records"]:
        current["records"].append(anomaly)


def _end(run: WorkloadRun, key: str, current: dict[str, Any]) -> None:
    """A run ended: its length joins the workload's distribution, its records resolve."""
    hist_add(run.ws.setdefault("runs", {}), current["calls"])
    for anomaly in current["records"]:
        record = run.changed.get(anomaly) or run.state.anomaly(anomaly)
        if record is not None:
            run.resolve(record)
    run.state.drop_session(key)
    run.ws.setdefault("sessions", {}).pop(key, None)


def sweep(run: WorkloadRun) -> None:
    """End runs idle longer than the gap; keep at most max_sessions open."""
    cfg = run.cfg.context
    index: dict[str, int] = run.ws.setdefault("sessions", {})
    wm = run.watermark
    if wm - run.ws.get("session_sweep", 0) < SWEEP_EVERY_MS and len(index) <= cfg.max_sessions:
        return
    run.ws["session_sweep"] = wm
    gap = cfg.session_gap_seconds * 1000
    idle = [key for key, last in index.items() if wm - last > gap]
    overflow = max(0, len(index) - len(idle) - cfg.max_sessions)
    if overflow:
        live = sorted((k for k in index if k not in set(idle)), key=lambda k: index[k])
        idle += live[:overflow]
    for key in idle:
        current = run.state.session(key)
        if current is None:
            index.pop(key, None)
            continue
        _end(run, key, current)
