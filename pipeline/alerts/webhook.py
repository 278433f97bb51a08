"""The generic JSON webhook payload: every figure of the alert, money as exact decimal strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from costline.pipeline.alerts.model import Alert, to_ms

SCHEMA = "costline.alert.v1"


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else to_ms(moment).isoformat().replace("+00:00", "Z")


def build_payload(alert: Alert) -> dict[str, Any]:
    """The JSON body POSTed to COSTLINE_ALERT_WEBHOOK_URL; receivers dedupe on `alert_id`."""
    return {
        "schema": SCHEMA,
        "alert_id": alert.alert_id,
        "kind": alert.kind,
        "state": alert.state,
        "subject": alert.subject,
        "team": alert.team,
        "workload": alert.workload,
        "project": alert.project,
        "budget": alert.budget or None,
        "anomaly_id": alert.anomaly_id or None,
        "period_start": _iso(alert.period_start),
        "period_end": _iso(alert.period_end),
        "threshold": alert.threshold,
        "spent": _money(alert.spent),
        "amount": _money(alert.amount),
        "forecast": _money(alert.forecast),
        "wasted": _money(alert.wasted),
        "fired_at": _iso(alert.fired_at),
        "resolved_at": _iso(alert.resolved_at),
        "details": alert.details,
    }
