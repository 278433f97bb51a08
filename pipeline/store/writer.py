"""Batched writes of priced events: one columnar insert per batch, safe to retry.

A batch carries an `insert_deduplication_token` computed from its event ids and prices, so
re-sending the same batch after a timeout or a crash is dropped by ClickHouse instead of written twice (on
Replicated* tables, and on plain MergeTree with `non_replicated_deduplication_window`, which the
migration sets; chDB honours it too). Anything that still gets in twice, such as the same event in
a differently cut batch, is a duplicate row that the queries collapse with FINAL.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from decimal import Context, Decimal

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from costline.pipeline.store.rows import COLUMNS, priced_event_to_row
from costline.schemas.errors import StoreError
from costline.schemas.priced_event import PricedEvent

logger = logging.getLogger(__name__)

DEFAULT_TABLE = "usage_events"
_FINGERPRINT = tuple(
    COLUMNS.index(name)
    for name in (
        "event_id",
        "pricing_status",
        "ratecard_entry_id",
        "list_cost",
        "effective_cost",
        "repriced_effective_cost",
        "repriced_entry_id",
    )
)
_WIDE = Context(prec=80)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def deduplication_token(rows: Sequence[Sequence[object]]) -> str:
    """Same events priced the same, same token, whatever their order or Kafka offsets.

    The token covers each event's id and price, not only its id: a re-priced copy of an event
    must land (and win the merge), while a plain retry or redelivery must not.
    """
    keys = sorted({"\x1f".join(_canonical(row[i]) for i in _FINGERPRINT) for row in rows})
    digest = hashlib.sha256("\x1e".join(keys).encode()).hexdigest()
    return f"costline-{digest}"


def _canonical(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(_WIDE), "f")
    return "" if value is None else str(value)


class PricedEventWriter:
    """Writes batches of PricedEvents (or rows from `priced_event_to_row`) to `usage_events`."""

    def __init__(self, client: Client, *, table: str = DEFAULT_TABLE) -> None:
        if not _IDENTIFIER.match(table):
            raise StoreError(f"table name {table!r} is not a plain identifier such as usage_events")
        self.client = client
        self.table = table
        self._column_types: Sequence[ClickHouseType] | None = None

    def write(self, batch: Sequence[PricedEvent] | Sequence[Sequence[object]]) -> int:
        """Insert the batch in one request; returns the number of rows sent."""
        if not batch:
            return 0
        rows = [priced_event_to_row(item) if isinstance(item, PricedEvent) else list(item) for item in batch]
        for row in rows:
            if len(row) != len(COLUMNS):
                raise StoreError(
                    f"a row has {len(row)} values but usage_events takes {len(COLUMNS)}; "
                    "build rows with costline.pipeline.store.rows.priced_event_to_row"
                )
        token = deduplication_token(rows)
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            self.client.insert(
                self.table,
                columns,
                column_names=COLUMNS,
                column_types=self._types(),
                column_oriented=True,
                settings={"insert_deduplication_token": token},
            )
        except ClickHouseError as exc:
            raise StoreError(
                f"writing {len(rows)} events to {self.table} failed: {exc}; nothing is lost by "
                "retrying the same batch (its deduplication token makes a repeat a no-op)"
            ) from exc
        logger.debug("wrote %d events to %s (token %s)", len(rows), self.table, token[:20])
        return len(rows)

    def _types(self) -> Sequence[ClickHouseType]:
        """Column types, read from the table once instead of on every insert."""
        if self._column_types is None:
            try:
                context = self.client.create_insert_context(self.table, list(COLUMNS), column_oriented=True)
            except ClickHouseError as exc:
                raise StoreError(
                    f"cannot read the columns of {self.table}: {exc}; apply the migrations first "
                    "(costline migrate, or apply_migrations at start-up)"
                ) from exc
            self._column_types = context.column_types
        return self._column_types
