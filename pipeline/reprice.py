"""Re-price stored history against the current rate card, keeping the as-priced cost beside it.

Each stored event (deduplicated) in the range is priced again; its row is written anew with the
re-priced cost, rate-card entry and status, and a higher `pricing_version`, so ReplacingMergeTree
keeps the new row and reports (which read the re-priced cost first) change at once. The
as-priced columns are copied unchanged. Rollups pick the rewritten hours up by `ingested_at`.
Re-running a re-pricing is harmless: it writes the same prices again under a newer version.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client

from costline.pipeline.pricing import Pricer
from costline.pipeline.store.rows import COLUMNS, row_to_usage_event

logger = logging.getLogger(__name__)

_SELECT = """
SELECT {columns}
FROM usage_events FINAL
WHERE occurred_at >= {{since:DateTime64(3, 'UTC')}} AND occurred_at < {{until:DateTime64(3, 'UTC')}}
  AND (occurred_at, event_id) > ({{after_time:DateTime64(3, 'UTC')}}, {{after_id:String}})
ORDER BY occurred_at, event_id
LIMIT {{limit:UInt32}}"""

_INSERT_COLUMNS = (*COLUMNS, "pricing_version")


@dataclass
class RepriceResult:
    """What a re-pricing changed."""

    events: int = 0
    changed: int = 0
    unpriced_before: int = 0
    unpriced_after: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def difference(self) -> Decimal:
        return self.cost_after - self.cost_before


def parse_range(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    """`since` (required) and `until` (default: now) as UTC instants; a plain date is 00:00 UTC."""
    if not since:
        raise ValueError("give --since, a date (2026-10-01) or an ISO timestamp")

    def instant(text: str) -> datetime:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    start = instant(since)
    end = instant(until) if until else datetime.now(UTC)
    if end <= start:
        raise ValueError(f"--until {end.isoformat()} must be after --since {start.isoformat()}")
    return start, end


def reprice_summary(result: RepriceResult) -> dict[str, Any]:
    """JSON-safe summary (money as decimal strings)."""
    return {
        "events": result.events,
        "changed": result.changed,
        "unpriced_before": result.unpriced_before,
        "unpriced_after": result.unpriced_after,
        "cost_before": str(result.cost_before),
        "cost_after": str(result.cost_after),
        "difference": str(result.difference),
        "by_status": result.by_status,
    }


def _pages(
    client: Client, since: datetime, until: datetime, page_size: int
) -> Iterator[list[dict[str, Any]]]:
    after_time, after_id = datetime(1970, 1, 1, tzinfo=UTC), ""
    sql = _SELECT.format(columns=", ".join(COLUMNS))
    while True:
        rows = list(
            client.query(
                sql,
                parameters={
                    "since": since,
                    "until": until,
                    "after_time": after_time,
                    "after_id": after_id,
                    "limit": page_size,
                },
            ).named_results()
        )
        if not rows:
            return
        yield rows
        after_time, after_id = rows[-1]["occurred_at"], rows[-1]["event_id"]


def reprice(
    client: Client,
    pricer: Pricer,
    since: datetime,
    until: datetime,
    *,
    page_size: int = 20_000,
    now: datetime | None = None,
) -> RepriceResult:
    """Re-price every stored event with `since <= occurred_at < until`."""
    now = now or datetime.now(UTC)
    version = int(now.timestamp() * 1000)
    result = RepriceResult()
    for page in _pages(client, since, until, page_size):
        rewritten = []
        for row in page:
            priced = pricer.price(row_to_usage_event(row))
            before = (
                row["repriced_effective_cost"]
                if row["repriced_effective_cost"] is not None
                else row["effective_cost"]
            )
            status_before = row["repriced_status"] or row["pricing_status"]
            result.events += 1
            result.cost_before += before
            result.cost_after += priced.effective_cost
            result.unpriced_before += status_before == "unpriced"
            result.unpriced_after += priced.status == "unpriced"
            result.by_status[priced.status] = result.by_status.get(priced.status, 0) + 1
            result.changed += before != priced.effective_cost or status_before != priced.status
            updated = {
                **row,
                "repriced_effective_cost": priced.effective_cost,
                "repriced_entry_id": priced.ratecard_entry_id,
                "repriced_status": priced.status,
                "repriced_at": now,
                "pricing_version": version,
            }
            rewritten.append([updated[column] for column in _INSERT_COLUMNS])
        client.insert("usage_events", rewritten, column_names=list(_INSERT_COLUMNS))
        logger.info("re-priced %d events up to %s", result.events, page[-1]["occurred_at"])
    return result
