"""Event drill-down: a page of single calls with their tokens, cost and signals.

Never any prompt or completion content: the store holds none, and the columns read are a fixed
list (`queries.EVENT_COLUMNS`) of identifiers, counts, costs and hashes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from costline.dashboard.api import queries
from costline.dashboard.api.auth import Scope
from costline.dashboard.api.params import Range, money
from costline.dashboard.api.routes.spend import Money, Tokens
from costline.dashboard.api.store import Store
from costline.schemas.usage_event import TOKEN_BUCKETS

router = APIRouter(tags=["events"])

#: Deepest page offset (paging further means narrowing the filters).
MAX_OFFSET = 1_000_000


class EventRow(BaseModel):
    """One call. Absent identifiers are null; `team` is '' when unattributed."""

    event_id: str
    occurred_at: datetime
    team: str
    project: str | None
    workload: str | None
    provider: str
    model: str
    tokens: Tokens
    list_cost: Money
    effective_cost: Money
    pricing_status: str
    ratecard_entry_id: str | None
    latency_ms: int | None
    status: str
    trace_id: str | None
    session_id: str | None
    prompt_prefix_hash: str | None
    caching_requested: bool | None
    reasoning_effort: str | None


class Events(BaseModel):
    """`total` events match the filters; `rows` is the requested page, newest first."""

    total: int
    rows: list[EventRow]


Filter = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("/events", response_model=Events)
async def events(
    scope: Scope,
    window: Range,
    store: Store,
    model: Filter = None,
    workload: Filter = None,
    provider: Filter = None,
    project: Filter = None,
    status: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Call status, e.g. ok.")
    ] = None,
    pricing_status: Annotated[
        str | None, Query(min_length=1, max_length=200, description="priced, partial or unpriced.")
    ] = None,
    trace_id: Filter = None,
    session_id: Filter = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")] = 0,
) -> Events:
    """Single events matching every given filter, newest first."""
    filters = {
        "model": model,
        "workload": workload,
        "provider": provider,
        "project": project,
        "status": status,
        "pricing_status": pricing_status,
        "trace_id": trace_id,
        "session_id": session_id,
    }
    total, rows = await store.run(
        queries.fetch_events, window.since, window.until, scope.teams, filters, limit, offset
    )
    return Events(total=total, rows=[event_row(row) for row in rows])


def event_row(row: dict[str, Any]) -> EventRow:
    """The JSON of one stored event."""
    cost: Decimal = row["current_cost"]
    return EventRow(
        event_id=row["event_id"],
        occurred_at=row["occurred_at"],
        team=row["team"],
        project=row["project"] or None,
        workload=row["workload"] or None,
        provider=row["provider"],
        model=row["model"],
        tokens=Tokens(**{bucket: int(row[f"tokens_{bucket}"]) for bucket in TOKEN_BUCKETS}),
        list_cost=money(row["list_cost"]),
        effective_cost=money(cost),
        pricing_status=row["current_status"],
        ratecard_entry_id=row["current_entry_id"] or None,
        latency_ms=row["latency_ms"],
        status=row["status"],
        trace_id=row["trace_id"] or None,
        session_id=row["session_id"] or None,
        prompt_prefix_hash=row["prompt_prefix_hash"] or None,
        caching_requested=row["caching_requested"],
        reasoning_effort=row["reasoning_effort"] or None,
    )
