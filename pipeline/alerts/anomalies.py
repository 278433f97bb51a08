"""Detected anomalies as alert observations, filtered by the budgets file's `anomaly_alerts:` rule.

An anomaly alert's id is derived from the anomaly's id, which the detectors keep stable across
replays, so a re-detected anomaly is the same alert. It fires while the anomaly is firing and
passes the rule, and resolves when the detectors mark the anomaly resolved.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from costline.pipeline.alerts.model import Alert, anomaly_alert_id, epoch_ms, to_ms
from costline.pipeline.alerts.state import Observation
from costline.pipeline.budgets.config import AnomalyAlerts
from costline.pipeline.store.alerts import AnomalyRecord

#: Evidence larger than this (serialized) is left out of the alert payload; the API has it all.
MAX_EVIDENCE_CHARS = 4000
MAX_SAMPLE_EVENTS = 10


def matches(rule: AnomalyAlerts, record: AnomalyRecord) -> bool:
    """Whether the rule wants an alert for this anomaly."""
    return (
        record.kind in rule.kinds
        and (not rule.causes or record.cause in rule.causes)
        and (not rule.teams or record.team in rule.teams)
        and rule.severity_allowed(record.severity)
        and record.wasted_cost >= rule.min_wasted_usd
    )


def _iso(moment: datetime) -> str:
    return to_ms(moment).isoformat().replace("+00:00", "Z")


def _details(record: AnomalyRecord, dashboard_url: str) -> dict[str, Any]:
    evidence: Any = record.evidence
    if len(json.dumps(evidence, default=str)) > MAX_EVIDENCE_CHARS:
        evidence = {"omitted": f"more than {MAX_EVIDENCE_CHARS} characters; see GET /anomalies"}
    return {
        "anomaly_kind": record.kind,
        "cause": record.cause,
        "severity": record.severity,
        "provider": record.provider,
        "model": record.model,
        "trace_id": record.trace_id,
        "session_id": record.session_id,
        "calls": record.calls,
        "observed_cost": format(record.observed_cost, "f"),
        "wasted_cost": format(record.wasted_cost, "f"),
        "window": {"start": _iso(record.window_start), "end": _iso(record.window_end)},
        "detected_at": _iso(record.detected_at),
        "evidence": json.loads(json.dumps(evidence, default=str)),
        "sample_event_ids": record.sample_event_ids[:MAX_SAMPLE_EVENTS],
        "dashboard_url": dashboard_url,
    }


def anomaly_observation(
    record: AnomalyRecord, rule: AnomalyAlerts, now: datetime, dashboard_url: str
) -> Observation:
    """What the anomaly row says about its alert."""
    where = "/".join(part for part in (record.team, record.workload) if part) or "unattributed usage"
    cause = f": {record.cause}" if record.cause else ""
    now = to_ms(now)
    draft = Alert(
        alert_id=anomaly_alert_id(record.anomaly_id),
        kind="anomaly",
        subject=f"{record.kind.replace('_', ' ').capitalize()} in {where}{cause}",
        state="firing",
        team=record.team,
        workload=record.workload,
        project=record.project,
        anomaly_id=record.anomaly_id,
        period_start=record.window_start,
        period_end=record.window_end,
        spent=record.observed_cost,
        wasted=record.wasted_cost,
        fired_at=now,
        version=epoch_ms(now),
        routes=tuple(rule.notify),
        details=_details(record, dashboard_url),
    )
    firing = record.state == "firing"
    return Observation(
        draft, fire=firing and matches(rule, record), holds=firing, resolution="the anomaly resolved"
    )
