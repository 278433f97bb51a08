"""The `anomalies` table: rows from detector records, batched writes, and the read queries.

Records (see `costline.pipeline.detectors.anomalies`) carry money as integer picodollars and
times as epoch milliseconds; rows carry exact Decimals and UTC datetimes. Evidence keys ending in
`_pico` become `_usd` decimal strings, so no reader ever sees a float of money. Every query reads
`anomalies FINAL` (the latest version of each anomaly) with values bound as server-side parameters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.pipeline.store.queries import Query, run
from costline.schemas.errors import StoreError

logger = logging.getLogger(__name__)

TABLE = "anomalies"
COLUMNS: tuple[str, ...] = (
    "anomaly_id",
    "kind",
    "cause",
    "team",
    "project",
    "workload",
    "provider",
    "model",
    "trace_id",
    "session_id",
    "window_start",
    "window_end",
    "detected_at",
    "calls",
    "wasted_cost",
    "observed_cost",
    "severity",
    "state",
    "evidence",
    "sample_event_ids",
    "version",
)
KINDS: tuple[str, ...] = ("overthinking", "cache_miss", "spend_spike", "context_growth", "agent_loop")
MAX_LIMIT = 1_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME = "DateTime64(3, 'UTC')"


def pico_to_usd(picodollars: int) -> Decimal:
    """Exact USD with 12 decimals."""
    return Decimal(picodollars).scaleb(-12)


def ms_to_datetime(ms: int) -> datetime:
    """UTC datetime of epoch milliseconds."""
    return _EPOCH + timedelta(milliseconds=ms)


def evidence_json(evidence: Mapping[str, Any]) -> str:
    """Evidence as JSON, `*_pico` integers turned into `*_usd` decimal strings."""
    return json.dumps(_money_as_strings(evidence), sort_keys=True, separators=(",", ":"))


def _money_as_strings(value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("_pico") and isinstance(item, int):
                out[key[: -len("_pico")] + "_usd"] = format(pico_to_usd(item), "f")
            else:
                out[str(key)] = _money_as_strings(item)
        return out
    if isinstance(value, list):
        return [_money_as_strings(item) for item in value]
    return value


def record_to_row(record: Mapping[str, Any]) -> list[object]:
    """One `anomalies` row (values in COLUMNS order) from a detector record."""
    try:
        return [
            str(record["anomaly_id"]),
            str(record["kind"]),
            str(record["cause"]),
            str(record["team"]),
            str(record["project"]),
            str(record["workload"]),
            str(record["provider"]),
            str(record["model"]),
            str(record.get("trace_id", "")),
            str(record.get("session_id", "")),
            ms_to_datetime(int(record["window_start"])),
            ms_to_datetime(int(record["window_end"])),
            ms_to_datetime(int(record["detected_at"])),
            int(record["calls"]),
            pico_to_usd(int(record["wasted"])),
            pico_to_usd(int(record["observed"])),
            str(record.get("severity", "info")),
            str(record["state"]),
            evidence_json(record.get("evidence", {})),
            [str(event_id) for event_id in record.get("samples", [])],
            int(record["version"]),
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"anomaly record {record.get('anomaly_id')!r} is incomplete: {exc!r}") from exc


class AnomalyWriter:
    """Inserts anomaly records; a re-sent version is the same row again, collapsed by FINAL."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def write(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert the latest version of each record in one request; returns the rows sent."""
        latest: dict[str, Mapping[str, Any]] = {}
        for record in records:
            known = latest.get(record["anomaly_id"])
            if known is None or int(record["version"]) >= int(known["version"]):
                latest[record["anomaly_id"]] = record
        if not latest:
            return 0
        rows = [record_to_row(record) for record in latest.values()]
        try:
            self.client.insert(TABLE, rows, column_names=list(COLUMNS))
        except ClickHouseError as exc:
            raise StoreError(f"writing {len(rows)} anomalies failed: {exc}; retrying is safe") from exc
        return len(rows)


def write_anomalies(client: Client, records: Sequence[Mapping[str, Any]]) -> int:
    """`AnomalyWriter(client).write(records)`, in the shape `sink.call` takes."""
    return AnomalyWriter(client).write(records)


def _conditions(
    kind: str | None, since: datetime, until: datetime, teams: Sequence[str] | None
) -> tuple[list[str], dict[str, Any]]:
    if kind is not None and kind not in KINDS:
        raise StoreError(f"unknown anomaly kind {kind!r}; use one of {', '.join(KINDS)}")
    parameters: dict[str, Any] = {"since": _utc(since, "since"), "until": _utc(until, "until")}
    conditions = [f"window_end >= {{since:{_TIME}}}", f"window_start < {{until:{_TIME}}}"]
    if kind is not None:
        conditions.append("kind = {kind:String}")
        parameters["kind"] = kind
    if teams is not None:
        if isinstance(teams, str):
            raise StoreError(f"teams must be a list of team names, not the string {teams!r}")
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = [str(team) for team in teams]
    return conditions, parameters


def list_anomalies(
    kind: str | None,
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None = None,
    limit: int = 100,
) -> Query:
    """Anomalies whose window overlaps [since, until), newest window first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise StoreError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    conditions, parameters = _conditions(kind, since, until, teams)
    parameters["limit"] = limit
    sql = (
        f"SELECT {', '.join(COLUMNS)}\nFROM {TABLE} FINAL\nWHERE "
        + "\n  AND ".join(conditions)
        + "\nORDER BY window_start DESC, anomaly_id ASC\nLIMIT {limit:UInt32}"
    )
    return Query(sql, parameters)


def anomaly_totals(
    kind: str | None, since: datetime, until: datetime, teams: Sequence[str] | None = None
) -> Query:
    """Per kind: anomalies, calls and wasted cost over the same rows `list_anomalies` filters."""
    conditions, parameters = _conditions(kind, since, until, teams)
    sql = (
        f"SELECT kind, count() AS anomalies, sum(calls) AS calls, sum(wasted_cost) AS wasted_cost\n"
        f"FROM {TABLE} FINAL\nWHERE "
        + "\n  AND ".join(conditions)
        + "\nGROUP BY kind\nORDER BY wasted_cost DESC, kind ASC"
    )
    return Query(sql, parameters)


def fetch_anomalies(
    client: Client,
    kind: str | None,
    since: datetime,
    until: datetime,
    teams: Sequence[str] | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Run `list_anomalies`; evidence parsed back into a dict."""
    rows = run(client, list_anomalies(kind, since, until, teams, limit))
    for row in rows:
        row["evidence"] = json.loads(row["evidence"] or "{}")
        for column in ("wasted_cost", "observed_cost"):
            if not isinstance(row[column], Decimal):
                raise StoreError(f"expected an exact Decimal for {column}, got {type(row[column]).__name__}")
    return rows


def fetch_anomaly_totals(
    client: Client, kind: str | None, since: datetime, until: datetime, teams: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Run `anomaly_totals`."""
    return run(client, anomaly_totals(kind, since, until, teams))


def count_anomalies(client: Client) -> int:
    """Distinct anomalies stored (versions collapsed)."""
    return int(run(client, Query(f"SELECT count() AS n FROM {TABLE} FINAL", {}))[0]["n"])


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise StoreError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)
