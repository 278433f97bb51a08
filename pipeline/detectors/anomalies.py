"""Anomaly records: what the detectors keep per anomaly and write as `anomalies` rows.

A record is a JSON-ready dict (it lives in a Faust table until it is written): ids, attribution,
window, counts, money in integer picodollars, evidence, sample event ids, state and version.
Per-call flags of one (kind, cause, team, workload, provider, model, hour) add up into one record;
spikes, hit-rate collapses and agent runs are records of their own. The id is a digest of what
identifies the anomaly, never of when it was seen, so a replay lands on the same row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

KINDS: tuple[str, ...] = ("overthinking", "cache_miss", "spend_spike", "context_growth", "agent_loop")
#: Sample event ids kept per anomaly.
MAX_SAMPLES = 10
#: Per-call flags are summed over windows of this length.
CALL_WINDOW_MS = 3_600_000

Record = dict[str, Any]


def anomaly_id(*parts: object) -> str:
    """Deterministic id: the same detection after a replay gets the same id."""
    text = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def new_record(
    anomaly: str,
    *,
    kind: str,
    cause: str,
    team: str,
    project: str,
    workload: str,
    provider: str,
    model: str,
    window_start: int,
    window_end: int,
    detected_at: int,
    trace_id: str = "",
    session_id: str = "",
) -> Record:
    """An empty firing record (version 0: the first upsert makes it 1)."""
    return {
        "anomaly_id": anomaly,
        "kind": kind,
        "cause": cause,
        "team": team,
        "project": project,
        "workload": workload,
        "provider": provider,
        "model": model,
        "trace_id": trace_id,
        "session_id": session_id,
        "window_start": window_start,
        "window_end": window_end,
        "detected_at": detected_at,
        "calls": 0,
        "wasted": 0,
        "observed": 0,
        "state": "firing",
        "evidence": {},
        "samples": [],
        "version": 0,
    }


def add_sample(record: Record, event_id: str) -> None:
    """Keep the first few event ids as samples."""
    samples: list[str] = record["samples"]
    if len(samples) < MAX_SAMPLES and event_id not in samples:
        samples.append(event_id)


def merge_call_evidence(evidence: dict[str, Any], call: Mapping[str, Any]) -> None:
    """Fold one call's evidence into an aggregate: numbers get sum and max, the rest first-seen."""
    sums: dict[str, Any] = evidence.setdefault("sum", {})
    maxima: dict[str, Any] = evidence.setdefault("max", {})
    for key, value in call.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            evidence.setdefault(key, value)
            continue
        sums[key] = sums.get(key, 0) + value
        maxima[key] = value if key not in maxima else max(maxima[key], value)


def severity(wasted_pico: int, warning_pico: int, critical_pico: int) -> str:
    """info / warning / critical from the money at stake."""
    if wasted_pico >= critical_pico:
        return "critical"
    if wasted_pico >= warning_pico:
        return "warning"
    return "info"
