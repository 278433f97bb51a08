"""Alerts, delivery attempts and the anomalies that raise alerts: rows in and out of ClickHouse.

`alerts` is read with FINAL (a state change is a newer version of the same id); `alert_deliveries`
is append-only, one row per attempt. Costs are checked to be whole picodollars before they leave
(`exact_cost`), and every value reaches ClickHouse as a parameter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.pipeline.alerts.model import Alert, DeliveryAttempt, PendingDelivery, to_ms
from costline.pipeline.store import anomalies as anomaly_store
from costline.pipeline.store.queries import Query, run
from costline.pipeline.store.rows import exact_cost
from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)

ALERTS = "alerts"
DELIVERIES = "alert_deliveries"
ANOMALIES = anomaly_store.TABLE
_TIME = "DateTime64(3, 'UTC')"

ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "kind",
    "subject",
    "state",
    "team",
    "workload",
    "project",
    "budget",
    "anomaly_id",
    "period_start",
    "period_end",
    "threshold",
    "spent",
    "amount",
    "forecast",
    "wasted",
    "fired_at",
    "resolved_at",
    "routes",
    "payload",
    "version",
)
DELIVERY_COLUMNS: tuple[str, ...] = (
    "alert_id",
    "route",
    "attempt",
    "at",
    "outcome",
    "status_code",
    "error",
    "elapsed_ms",
)
#: What an anomaly alert reads of an anomaly: every column but the row version.
ANOMALY_COLUMNS: tuple[str, ...] = tuple(c for c in anomaly_store.COLUMNS if c != "version")


def _money(value: Decimal | None, what: str, where: str) -> Decimal | None:
    return None if value is None else exact_cost(value, what, where)


def alert_to_row(alert: Alert) -> list[object]:
    """One `alerts` row in `ALERT_COLUMNS` order."""
    where = alert.alert_id
    return [
        alert.alert_id,
        alert.kind,
        alert.subject,
        alert.state,
        alert.team,
        alert.workload,
        alert.project,
        alert.budget,
        alert.anomaly_id,
        to_ms(alert.period_start),
        to_ms(alert.period_end),
        alert.threshold,
        exact_cost(alert.spent, "spent", where),
        _money(alert.amount, "amount", where),
        _money(alert.forecast, "forecast", where),
        _money(alert.wasted, "wasted", where),
        to_ms(alert.fired_at),
        to_ms(alert.resolved_at) if alert.resolved_at is not None else None,
        list(alert.routes),
        json.dumps(alert.details, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        alert.version,
    ]


def row_to_alert(row: dict[str, Any]) -> Alert:
    """An `alerts` row (as named results) back as an Alert."""
    return Alert(
        alert_id=row["alert_id"],
        kind=row["kind"],
        subject=row["subject"],
        state=row["state"],
        team=row["team"],
        workload=row["workload"],
        project=row["project"],
        budget=row["budget"],
        anomaly_id=row["anomaly_id"],
        period_start=_aware(row["period_start"]),
        period_end=_aware(row["period_end"]),
        threshold=None if row["threshold"] is None else int(row["threshold"]),
        spent=row["spent"],
        amount=row["amount"],
        forecast=row["forecast"],
        wasted=row["wasted"],
        fired_at=_aware(row["fired_at"]),
        resolved_at=None if row["resolved_at"] is None else _aware(row["resolved_at"]),
        routes=tuple(row["routes"]),
        details=json.loads(row["payload"]) if row["payload"] else {},
        version=int(row["version"]),
    )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _insert(client: Client, table: str, rows: list[list[object]], columns: Sequence[str]) -> None:
    if not rows:
        return
    try:
        client.insert(table, rows, column_names=list(columns))
    except ClickHouseError as exc:
        raise StoreError(
            f"insert into {table} failed: {exc}; check that the migrations were applied"
        ) from exc


def insert_alerts(client: Client, alerts: Sequence[Alert]) -> None:
    """Write alert versions (a new alert, or a state change of a known one)."""
    _insert(client, ALERTS, [alert_to_row(a) for a in alerts], ALERT_COLUMNS)


def insert_deliveries(client: Client, attempts: Sequence[DeliveryAttempt]) -> None:
    """Record delivery attempts."""
    rows: list[list[object]] = [
        [a.alert_id, a.route, a.attempt, to_ms(a.at), a.outcome, a.status_code, a.error, a.elapsed_ms]
        for a in attempts
    ]
    _insert(client, DELIVERIES, rows, DELIVERY_COLUMNS)


_SELECT_ALERTS = f"SELECT {', '.join(ALERT_COLUMNS)} FROM {ALERTS} FINAL"


def fetch_alerts(client: Client, alert_ids: Iterable[str]) -> list[Alert]:
    """The latest version of each of these alerts that exists."""
    ids = sorted(set(alert_ids))
    if not ids:
        return []
    rows = run(client, Query(f"{_SELECT_ALERTS} WHERE alert_id IN {{ids:Array(String)}}", {"ids": ids}))
    return [row_to_alert(row) for row in rows]


def fetch_firing_alerts(client: Client) -> list[Alert]:
    """Every alert that is open."""
    return [row_to_alert(row) for row in run(client, Query(f"{_SELECT_ALERTS} WHERE state = 'firing'", {}))]


def _attempts_sql(where: str) -> str:
    return (
        f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM {DELIVERIES} WHERE {where} "
        "ORDER BY alert_id, route, attempt, at LIMIT 1 BY alert_id, route, attempt"
    )


def _row_to_attempt(row: dict[str, Any]) -> DeliveryAttempt:
    return DeliveryAttempt(
        alert_id=row["alert_id"],
        route=row["route"],
        attempt=int(row["attempt"]),
        at=_aware(row["at"]),
        outcome=row["outcome"],
        status_code=None if row["status_code"] is None else int(row["status_code"]),
        error=row["error"],
        elapsed_ms=int(row["elapsed_ms"]),
    )


def fetch_deliveries(client: Client, alert_ids: Iterable[str]) -> list[DeliveryAttempt]:
    """Every recorded attempt for these alerts, by alert, route and attempt (a retried insert counts once)."""
    ids = sorted(set(alert_ids))
    if not ids:
        return []
    query = Query(_attempts_sql("alert_id IN {ids:Array(String)}"), {"ids": ids})
    return [_row_to_attempt(row) for row in run(client, query)]


def fetch_pending_deliveries(client: Client, fired_since: datetime) -> list[PendingDelivery]:
    """Routes of alerts fired since `fired_since` that have no terminal outcome yet (the outbox)."""
    rows = run(
        client,
        Query(
            f"{_SELECT_ALERTS} WHERE fired_at >= {{since:{_TIME}}} AND notEmpty(routes)",
            {"since": to_ms(fired_since)},
        ),
    )
    alerts = [row_to_alert(row) for row in rows]
    if not alerts:
        return []
    attempts: dict[tuple[str, str], list[DeliveryAttempt]] = {}
    for attempt in fetch_deliveries(client, [a.alert_id for a in alerts]):
        attempts.setdefault((attempt.alert_id, attempt.route), []).append(attempt)
    pending = []
    for alert in alerts:
        for route in alert.routes:
            made = attempts.get((alert.alert_id, route), [])
            if not any(a.terminal for a in made):
                pending.append(PendingDelivery(alert, route, max((a.attempt for a in made), default=0)))
    return pending


@dataclass(frozen=True)
class AlertRow:
    """An alert with its delivery attempts, for the read API."""

    alert: Alert
    deliveries: list[DeliveryAttempt] = field(default_factory=list)


def list_alerts(
    client: Client,
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None,
    state: str | None = None,
    limit: int = 500,
) -> list[AlertRow]:
    """Alerts fired in `[since, until)`, newest first, with their deliveries; `teams=None`: every team."""
    conditions = [f"fired_at >= {{since:{_TIME}}}", f"fired_at < {{until:{_TIME}}}"]
    parameters: dict[str, Any] = {"since": to_ms(since), "until": to_ms(until), "limit": int(limit)}
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = [str(team) for team in teams]
    if state is not None:
        conditions.append("state = {state:String}")
        parameters["state"] = state
    sql = (
        f"{_SELECT_ALERTS} WHERE "
        + " AND ".join(conditions)
        + " ORDER BY fired_at DESC, alert_id LIMIT {limit:UInt32}"
    )
    alerts = [row_to_alert(row) for row in run(client, Query(sql, parameters))]
    by_id: dict[str, list[DeliveryAttempt]] = {}
    for attempt in fetch_deliveries(client, [a.alert_id for a in alerts]):
        by_id.setdefault(attempt.alert_id, []).append(attempt)
    return [AlertRow(alert, by_id.get(alert.alert_id, [])) for alert in alerts]


# --- anomalies (table written by the detectors; read here to raise alerts) --------------------


@dataclass(frozen=True)
class AnomalyRecord:
    """One detected anomaly, as the detectors stored it."""

    anomaly_id: str
    kind: str
    cause: str
    team: str
    project: str
    workload: str
    provider: str
    model: str
    trace_id: str
    session_id: str
    window_start: datetime
    window_end: datetime
    detected_at: datetime
    calls: int
    wasted_cost: Decimal
    observed_cost: Decimal
    severity: str
    state: str
    evidence: dict[str, Any]
    sample_event_ids: list[str]


def anomalies_table_exists(client: Client) -> bool:
    """Whether the detectors' `anomalies` table is there (migration 0003)."""
    rows = run(
        client,
        Query(
            "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name = {t:String}",
            {"t": ANOMALIES},
        ),
    )
    return int(rows[0]["n"]) > 0


def fetch_alertable_anomalies(
    client: Client,
    detected_since: datetime,
    kinds: Sequence[str],
    min_wasted: Decimal,
    tracked_ids: Iterable[str] = (),
) -> list[AnomalyRecord]:
    """Firing anomalies detected since `detected_since` of these kinds worth at least `min_wasted`,
    plus the anomalies `tracked_ids` whatever their state (so their resolution is seen)."""
    sql = (
        f"SELECT {', '.join(ANOMALY_COLUMNS)} FROM {ANOMALIES} FINAL WHERE "
        f"(state = 'firing' AND detected_at >= {{since:{_TIME}}} AND kind IN {{kinds:Array(String)}} "
        "AND wasted_cost >= {min_wasted:Decimal(38, 12)}) OR anomaly_id IN {ids:Array(String)} "
        "ORDER BY detected_at, anomaly_id"
    )
    parameters = {
        "since": to_ms(detected_since),
        "kinds": list(kinds),
        "min_wasted": min_wasted,
        "ids": sorted(set(tracked_ids)),
    }
    return [_row_to_anomaly(row) for row in run(client, Query(sql, parameters))]


def _row_to_anomaly(row: dict[str, Any]) -> AnomalyRecord:
    try:
        evidence = json.loads(row["evidence"]) if row["evidence"] else {}
    except json.JSONDecodeError:
        evidence = {"raw": row["evidence"]}
    return AnomalyRecord(
        anomaly_id=row["anomaly_id"],
        kind=row["kind"],
        cause=row["cause"],
        team=row["team"],
        project=row["project"],
        workload=row["workload"],
        provider=row["provider"],
        model=row["model"],
        trace_id=row["trace_id"],
        session_id=row["session_id"],
        window_start=_aware(row["window_start"]),
        window_end=_aware(row["window_end"]),
        detected_at=_aware(row["detected_at"]),
        calls=int(row["calls"]),
        wasted_cost=row["wasted_cost"],
        observed_cost=row["observed_cost"],
        severity=row["severity"],
        state=row["state"],
        evidence=evidence if isinstance(evidence, dict) else {"value": evidence},
        sample_event_ids=list(row["sample_event_ids"]),
    )
