"""Spend spikes: a workload's cost per time bucket against its own EWMA baseline.

Buckets are on event time. A bucket spikes when its cost reaches all of: factor × baseline,
baseline + z × the EWMA deviation (so a lumpy workload's usual bursts do not page), and baseline +
min_excess_usd (so tiny workloads never page anyone). It is judged while it fills, so a spike fires
as soon as it crosses, and again when it closes (`lateness_seconds` after its end, so calls that
arrive a little late still count). Consecutive spiking buckets are one episode, one record, which
resolves with the first bucket that closes below the threshold. The baseline learns from closed
buckets only, capped at the threshold, so one spike does not teach it that spikes are normal.
Calls later than the lateness allowance are counted in the state (`late_calls`) but not judged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costline.pipeline.detectors.anomalies import add_sample, anomaly_id
from costline.pipeline.detectors.baselines import ewma_decay, ewma_step, stddev
from costline.pipeline.detectors.config import SpikeConfig, usd_to_pico
from costline.pipeline.detectors.signals import UsageSignal

if TYPE_CHECKING:
    from costline.pipeline.detectors.engine import WorkloadRun

KIND = "spend_spike"
CAUSE = "cost_rate_above_baseline"


def threshold(cfg: SpikeConfig, mean: int, var: int) -> int:
    """The cost (picodollars per bucket) at which a bucket spikes."""
    by_factor = int(mean * cfg.factor)
    by_deviation = mean + int(stddev(var) * cfg.z)
    return max(by_factor, by_deviation, mean + usd_to_pico(cfg.min_excess_usd))


def _spikes(cfg: SpikeConfig, state: dict[str, Any], bucket: list[int]) -> bool:
    """Whether a bucket ([cost, calls]) is over the threshold of a warmed-up baseline."""
    return (
        state["closed"] >= cfg.warmup_buckets
        and bucket[1] >= cfg.min_calls
        and bucket[0] >= threshold(cfg, state["mean"], state["var"])
    )


def _state(run: WorkloadRun) -> dict[str, Any]:
    state: dict[str, Any] = run.ws.setdefault(
        "spikes", {"open": {}, "mean": 0, "var": 0, "closed": 0, "last_closed": None, "episode": None}
    )
    return state


def observe(run: WorkloadRun, s: UsageSignal) -> None:
    """Add the call's cost to its bucket and judge that bucket as it stands."""
    cfg = run.cfg.spikes
    state = _state(run)
    size = cfg.bucket_seconds * 1000
    start = s.at_ms - s.at_ms % size
    last_closed = state["last_closed"]
    if last_closed is not None and start <= last_closed:
        state["late_calls"] = state.get("late_calls", 0) + 1
        return
    open_buckets: dict[str, list[int]] = state["open"]
    bucket = open_buckets.setdefault(str(start), [0, 0])
    bucket[0] += s.cost
    bucket[1] += 1
    episode = state["episode"]
    if episode is not None and str(start) in episode["buckets"]:
        _update(run, state, start, bucket, episode["buckets"][str(start)], s.event_id)
    elif _spikes(cfg, state, bucket):
        _spiking(run, state, start, bucket, s.event_id)


def sweep(run: WorkloadRun) -> None:
    """Close the buckets the watermark has passed (plus lateness), oldest first."""
    cfg = run.cfg.spikes
    state = _state(run)
    size = cfg.bucket_seconds * 1000
    wm = run.watermark
    for key in sorted(state["open"], key=int):
        start = int(key)
        if start + size + cfg.lateness_seconds * 1000 > wm:
            break
        bucket = state["open"].pop(key)
        last = state["last_closed"]
        if last is not None and start - last > size:
            state["mean"], state["var"] = ewma_decay(
                state["mean"], state["var"], (start - last) // size - 1, cfg.alpha
            )
        _close(run, state, start, bucket)
        state["last_closed"] = start


def _close(run: WorkloadRun, state: dict[str, Any], start: int, bucket: list[int]) -> None:
    cfg = run.cfg.spikes
    limit = threshold(cfg, state["mean"], state["var"])
    episode = state["episode"]
    warm = state["closed"] >= cfg.warmup_buckets
    if episode is not None and str(start) in episode["buckets"]:
        _update(run, state, start, bucket, episode["buckets"][str(start)])
    elif _spikes(cfg, state, bucket):
        _spiking(run, state, start, bucket)
    elif episode is not None and start >= episode["end"]:
        record = run.changed.get(episode["id"]) or run.state.anomaly(episode["id"])
        if record is not None:
            run.resolve(record)
        state["episode"] = None
    mean, var = state["mean"], state["var"]
    sample = min(bucket[0], limit) if warm else bucket[0]
    state["mean"], state["var"] = ewma_step(mean, var, sample, cfg.alpha)
    state["closed"] += 1


def _spiking(
    run: WorkloadRun, state: dict[str, Any], start: int, bucket: list[int], event_id: str = ""
) -> None:
    """A bucket crossed the threshold: open an episode or extend the one it follows."""
    size = run.cfg.spikes.bucket_seconds * 1000
    episode = state["episode"]
    if episode is not None and start != episode["end"]:
        record = run.changed.get(episode["id"]) or run.state.anomaly(episode["id"])
        if record is not None:
            run.resolve(record)
        episode = None
    if episode is None:
        episode = {
            "id": anomaly_id(KIND, CAUSE, run.team, run.workload, start),
            "start": start,
            "end": start + size,
            "buckets": {},
        }
    episode["end"] = max(episode["end"], start + size)
    baseline = state["mean"]
    episode["buckets"][str(start)] = [baseline, threshold(run.cfg.spikes, baseline, state["var"])]
    state["episode"] = episode
    _update(run, state, start, bucket, episode["buckets"][str(start)], event_id)


def _update(
    run: WorkloadRun,
    state: dict[str, Any],
    start: int,
    bucket: list[int],
    judged: list[int],
    event_id: str = "",
) -> None:
    """Rewrite the episode's record from its buckets' current costs."""
    cfg = run.cfg.spikes
    episode = state["episode"]
    costs: dict[str, list[int]] = episode.setdefault("costs", {})
    costs[str(start)] = [bucket[0], bucket[1], judged[0], judged[1]]
    record = run.record(
        episode["id"],
        kind=KIND,
        cause=CAUSE,
        team=run.team,
        project=run.ws["project"],
        workload=run.workload,
        provider="",
        model="",
        window_start=episode["start"],
        window_end=episode["end"],
    )
    record["window_end"] = episode["end"]
    record["observed"] = sum(cost for cost, _, _, _ in costs.values())
    record["wasted"] = sum(max(0, cost - base) for cost, _, base, _ in costs.values())
    record["calls"] = sum(calls for _, calls, _, _ in costs.values())
    peak = max(costs.values(), key=lambda c: c[0])
    record["evidence"] = {
        "bucket_seconds": cfg.bucket_seconds,
        "buckets": len(costs),
        "baseline_cost_per_bucket_pico": peak[2],
        "threshold_cost_per_bucket_pico": peak[3],
        "peak_cost_per_bucket_pico": peak[0],
        "peak_ratio": round(peak[0] / peak[2], 2) if peak[2] else None,
        "factor": cfg.factor,
        "z": cfg.z,
        "min_excess_pico": usd_to_pico(cfg.min_excess_usd),
        "late_calls": state.get("late_calls", 0),
    }
    if event_id:
        add_sample(record, event_id)
    run.save(record)
