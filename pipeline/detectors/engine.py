"""Runs every detector over the signals of one workload: state in, updated state and anomalies out.

The engine never touches Faust or ClickHouse. Its state sits behind `StateAccess`, one workload at
a time: a small workload value (baselines, indexes), one value per prompt prefix, one per agent
run, one per anomaly record. The worker backs it with changelogged Faust tables; tests with dicts.
Time is event time: each workload's watermark is the newest `occurred_at` it has seen, and
everything that expires (cache lifetimes, idle runs, anomaly windows) expires against it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from costline.pipeline.detectors import cache, context, overthinking, spikes
from costline.pipeline.detectors.anomalies import (
    CALL_WINDOW_MS,
    Record,
    add_sample,
    anomaly_id,
    merge_call_evidence,
    new_record,
    severity,
)
from costline.pipeline.detectors.config import DetectorsConfig, WorkloadConfig, usd_to_pico
from costline.pipeline.detectors.signals import UsageSignal

STATE_VERSION = 1
#: Called with (kind, cause, event_id) for every flagged call.
FlagHook = Callable[[str, str, str], None]
#: A per-call anomaly resolves this long after its window ended (late calls still join it).
CALL_GRACE_MS = 600_000
#: Resolved records are kept this long after their window (late flags find them, not a blank).
RECORD_RETENTION_MS = 86_400_000
#: A quiet workload's clock trails the newest event time of its partition by this much.
IDLE_LAG_MS = 600_000


class StateAccess(Protocol):
    """The state of one workload. Reads return the stored value (callers write changes back)."""

    def workload(self) -> dict[str, Any] | None: ...
    def set_workload(self, value: dict[str, Any]) -> None: ...
    def prefix(self, prefix_hash: str) -> dict[str, Any] | None: ...
    def set_prefix(self, prefix_hash: str, value: dict[str, Any]) -> None: ...
    def drop_prefix(self, prefix_hash: str) -> None: ...
    def session(self, run_key: str) -> dict[str, Any] | None: ...
    def set_session(self, run_key: str, value: dict[str, Any]) -> None: ...
    def drop_session(self, run_key: str) -> None: ...
    def anomaly(self, anomaly: str) -> Record | None: ...
    def set_anomaly(self, anomaly: str, record: Record) -> None: ...
    def drop_anomaly(self, anomaly: str) -> bool:
        """Forget a record; False when it must be kept for now (not yet written to the store)."""
        ...


@dataclass
class MemoryState:
    """Dict-backed state of every workload (tests, replays); `for_workload` gives a StateAccess."""

    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefixes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    sessions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    anomalies: dict[str, Record] = field(default_factory=dict)
    #: Every flagged call as (kind, cause, event_id), for measuring precision and recall.
    flags: list[tuple[str, str, str]] = field(default_factory=list)

    def flag(self, kind: str, cause: str, event_id: str) -> None:
        """A FlagHook that keeps every flagged call."""
        self.flags.append((kind, cause, event_id))

    def for_workload(self, key: str) -> _MemoryWorkloadState:
        """The StateAccess of workload `key`."""
        return _MemoryWorkloadState(self, key)


@dataclass
class _MemoryWorkloadState:
    store: MemoryState
    key: str

    def workload(self) -> dict[str, Any] | None:
        return self.store.workloads.get(self.key)

    def set_workload(self, value: dict[str, Any]) -> None:
        self.store.workloads[self.key] = value

    def prefix(self, prefix_hash: str) -> dict[str, Any] | None:
        return self.store.prefixes.get((self.key, prefix_hash))

    def set_prefix(self, prefix_hash: str, value: dict[str, Any]) -> None:
        self.store.prefixes[(self.key, prefix_hash)] = value

    def drop_prefix(self, prefix_hash: str) -> None:
        self.store.prefixes.pop((self.key, prefix_hash), None)

    def session(self, run_key: str) -> dict[str, Any] | None:
        return self.store.sessions.get((self.key, run_key))

    def set_session(self, run_key: str, value: dict[str, Any]) -> None:
        self.store.sessions[(self.key, run_key)] = value

    def drop_session(self, run_key: str) -> None:
        self.store.sessions.pop((self.key, run_key), None)

    def anomaly(self, anomaly: str) -> Record | None:
        return self.store.anomalies.get(anomaly)

    def set_anomaly(self, anomaly: str, record: Record) -> None:
        self.store.anomalies[anomaly] = record

    def drop_anomaly(self, anomaly: str) -> bool:
        return False  # tests keep every record to count them


class WorkloadRun:
    """One pass over a workload's signals: the shared helpers every detector uses."""

    def __init__(
        self,
        config: DetectorsConfig,
        cfg: WorkloadConfig,
        state: StateAccess,
        team: str,
        workload: str,
        now_ms: int,
        on_flag: FlagHook | None = None,
    ) -> None:
        self.on_flag = on_flag
        self.config = config
        self.cfg = cfg
        self.state = state
        self.team = team
        self.workload = workload
        self.now_ms = now_ms
        self.ws: dict[str, Any] = state.workload() or {
            "v": STATE_VERSION,
            "wm": 0,
            "project": "",
            "team": team,
            "workload": workload,
        }
        self.changed: dict[str, Record] = {}
        self._warning = usd_to_pico(cfg.severity.warning_usd)
        self._critical = usd_to_pico(cfg.severity.critical_usd)

    @property
    def watermark(self) -> int:
        """Newest event time seen for this workload (ms)."""
        wm: int = self.ws["wm"]
        return wm

    @property
    def index(self) -> dict[str, list[int]]:
        """Open and recently resolved records of this workload: id → [window_end, per_call]."""
        found: dict[str, list[int]] = self.ws.setdefault("open", {})
        return found

    def record(self, anomaly: str, **fields: Any) -> Record:
        """The stored record `anomaly`, or a new one made from `fields`."""
        found = self.changed.get(anomaly) or self.state.anomaly(anomaly)
        if found is None:
            found = new_record(anomaly, detected_at=self.now_ms, **fields)
        return found

    def save(self, record: Record, *, per_call: bool = False) -> None:
        """Bump the version and keep the record (it is written to the store by the caller)."""
        record["version"] += 1
        record["severity"] = severity(record["wasted"], self._warning, self._critical)
        self.state.set_anomaly(record["anomaly_id"], record)
        self.changed[record["anomaly_id"]] = record
        self.index[record["anomaly_id"]] = [record["window_end"], int(per_call)]

    def flag_call(
        self,
        kind: str,
        cause: str,
        *,
        at_ms: int,
        provider: str,
        model: str,
        event_id: str,
        wasted: int,
        observed: int,
        evidence: dict[str, Any],
    ) -> None:
        """Add one flagged call to its hourly (kind, cause, provider, model) record."""
        if self.on_flag is not None:
            self.on_flag(kind, cause, event_id)
        start = at_ms - at_ms % CALL_WINDOW_MS
        if start + CALL_WINDOW_MS + RECORD_RETENTION_MS <= self.watermark:
            self.ws["late_flags"] = self.ws.get("late_flags", 0) + 1  # its record is gone: count only
            return
        anomaly = anomaly_id(kind, cause, self.team, self.workload, provider, model, start)
        record = self.record(
            anomaly,
            kind=kind,
            cause=cause,
            team=self.team,
            project=self.ws["project"],
            workload=self.workload,
            provider=provider,
            model=model,
            window_start=start,
            window_end=start + CALL_WINDOW_MS,
        )
        record["calls"] += 1
        record["wasted"] += wasted
        record["observed"] += observed
        merge_call_evidence(record["evidence"], evidence)
        add_sample(record, event_id)
        self.save(record, per_call=True)

    def resolve(self, record: Record) -> None:
        """Mark a record resolved (a new version)."""
        if record["state"] != "resolved":
            record["state"] = "resolved"
            self.save(record, per_call=bool(self.index.get(record["anomaly_id"], [0, 0])[1]))

    def sweep_records(self) -> None:
        """Resolve per-call records whose window is over; forget old resolved ones once stored."""
        wm = self.watermark
        for anomaly, (window_end, per_call) in list(self.index.items()):
            if per_call and window_end + CALL_GRACE_MS <= wm:
                found = self.changed.get(anomaly) or self.state.anomaly(anomaly)
                if found is not None and found["state"] == "firing":
                    self.resolve(found)
            if window_end + RECORD_RETENTION_MS <= wm:
                record = self.changed.get(anomaly) or self.state.anomaly(anomaly)
                if record is None or (record["state"] == "resolved" and self.state.drop_anomaly(anomaly)):
                    del self.index[anomaly]


def process(
    config: DetectorsConfig,
    state: StateAccess,
    signals: Sequence[UsageSignal],
    now_ms: int,
    on_flag: FlagHook | None = None,
) -> list[Record]:
    """Run every enabled detector over `signals` (all of one workload); the records that changed."""
    if not signals:
        return []
    first = signals[0]
    cfg = config.for_workload(first.team, first.workload)
    run = WorkloadRun(config, cfg, state, first.team, first.workload, now_ms, on_flag)
    for signal in sorted(signals, key=lambda s: s.at_ms):
        run.ws["wm"] = max(run.watermark, signal.at_ms)
        if signal.project:
            run.ws["project"] = signal.project
        if cfg.overthinking.enabled:
            overthinking.observe(run, signal)
        if cfg.cache.enabled:
            cache.observe(run, signal)
        if cfg.spikes.enabled:
            spikes.sweep(run)  # close what this call's time has passed, so the baseline is current
            spikes.observe(run, signal)
        if cfg.context.enabled:
            context.observe(run, signal)
    _sweep(run)
    state.set_workload(run.ws)
    return list(run.changed.values())


def sweep_idle(
    config: DetectorsConfig,
    state: StateAccess,
    clock_ms: int,
    now_ms: int,
    on_flag: FlagHook | None = None,
) -> list[Record]:
    """Let a quiet workload's time pass: `clock_ms` is the newest event time of its partition.

    A workload that stops calling would otherwise keep its last writes unjudged and its anomalies
    firing forever. Its watermark is moved to `clock_ms − IDLE_LAG_MS` (calls of busier workloads
    on the same partition prove that time has passed) and everything that expired is settled.
    """
    ws = state.workload()
    if ws is None or "team" not in ws:
        return []
    target = clock_ms - IDLE_LAG_MS
    if target <= ws["wm"]:
        return []
    cfg = config.for_workload(ws["team"], ws["workload"])
    run = WorkloadRun(config, cfg, state, ws["team"], ws["workload"], now_ms, on_flag)
    run.ws["wm"] = target
    _sweep(run)
    state.set_workload(run.ws)
    return list(run.changed.values())


def _sweep(run: WorkloadRun) -> None:
    cfg = run.cfg
    if cfg.cache.enabled:
        cache.sweep(run)
    if cfg.spikes.enabled:
        spikes.sweep(run)
    if cfg.context.enabled:
        context.sweep(run)
    run.sweep_records()


def process_stream(
    config: DetectorsConfig, state: MemoryState, batches: Iterable[Sequence[UsageSignal]], now_ms: int = 0
) -> list[Record]:
    """Replay batches of signals (each split by workload, as the topic would) through `process`.

    Like one partition of the detect agent: after each batch, quiet workloads are swept up to the
    newest event time seen so far.
    """
    changed: dict[str, Record] = {}
    clock = 0
    for batch in batches:
        groups: dict[str, list[UsageSignal]] = {}
        for signal in batch:
            groups.setdefault(signal.workload_key, []).append(signal)
            clock = max(clock, signal.at_ms)
        for key, group in groups.items():
            for record in process(config, state.for_workload(key), group, now_ms, state.flag):
                changed[record["anomaly_id"]] = record
        for key in list(state.workloads):
            for record in sweep_idle(config, state.for_workload(key), clock, now_ms, state.flag):
                changed[record["anomaly_id"]] = record
    return list(changed.values())
