"""FOCUS export: mandatory 1.2 columns, typed (CSV and Parquet); ListCost = unit price × quantity per row."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from costline.dashboard.finance.chargeback import Allocation, build_chargeback
from costline.dashboard.finance.common import Period
from costline.dashboard.finance.focus import (
    COLUMNS,
    MANDATORY_COLUMNS,
    _quantity_decimals,
    build_focus,
    to_csv,
    to_parquet,
)
from costline.dashboard.finance.lines import Line
from costline.dashboard.finance.periods import Correction, PeriodLines

OCT = Period(2026, 10)
DAY = date(2026, 10, 5)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
NOT_NULL = {
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
}


def usage(team: str, bucket: str, quantity: int, price: str | None, **extra: object) -> Line:
    cost = Decimal(price) * quantity if price is not None else Decimal(0)
    fields: dict[str, object] = {
        "kind": "usage",
        "day": DAY,
        "provider": "openai",
        "model": "gpt-5",
        "team": team,
        "cost_center": "cc-" + team if team else "",
        "project": "proj",
        "workload": "rag",
        "shared": False,
        "bucket": bucket,
        "unit": "requests" if bucket.endswith("requests") else "tokens",
        "entry_id": "t/gpt-5",
        "status": "priced" if price is not None else "unpriced",
        "quantity": quantity,
        "unit_price": Decimal(price) if price is not None else None,
        "cost": cost,
        "events": 3,
    }
    fields.update(extra)
    return Line(**fields)  # type: ignore[arg-type]


def lines() -> list[Line]:
    return [
        usage("search", "input_uncached", 1_234_567, "0.00000125"),
        usage("search", "output_visible", 777, "0.00001"),
        usage("ads", "input_uncached", 10_001, "0.000000625", adjustments="service_tier:batch"),
        usage("ads", "web_search_requests", 3, "0.01"),
        usage("ads", "input_uncached", 999, None, model="acme"),  # unpriced: shown, no unit price
        usage("", "input_uncached", 333_333, "0.00000125"),  # unattributed
        usage("", "output_visible", 7, "0.00001"),
        usage("platform", "cache_read", 50_000, "0.000000125", shared=True),
        Line(
            kind="repricing",
            day=DAY,
            provider="openai",
            model="gpt-5",
            team="",
            cost_center="",
            project="",
            workload="",
            shared=False,
            repriced_entry_id="t/gpt-5@new",
            cost=Decimal("-0.000000000007"),
            events=1,
        ),
        Line(
            kind="events",
            day=DAY,
            provider="openai",
            model="gpt-5",
            team="search",
            cost_center="cc-search",
            project="proj",
            workload="rag",
            shared=False,
            events=9,
        ),
    ]


def source(with_correction: bool = True) -> PeriodLines:
    items = lines()
    corrections = []
    if with_correction:
        corrections.append(
            Correction(
                carrier=OCT,
                corrected=Period(2026, 9),
                team="search",
                cost_center="cc-search",
                project="proj",
                workload="rag",
                provider="openai",
                model="gpt-5",
                shared=False,
                amount=Decimal("-0.25"),
                events_delta=0,
                reason="openai/gpt-5 in 2026-09 changed by -0.25 (re-priced after the close)",
            )
        )
    total = sum((line.cost for line in items), Decimal(0))
    return PeriodLines(OCT, items, items, total, None, corrections)


def decimal_or_none(text: str) -> Decimal | None:
    return Decimal(text) if text != "" else None


def check_list_cost(rows: list[dict[str, object]]) -> int:
    """ListCost = ListUnitPrice × PricingQuantity on every priced non-correction row; returns how many."""
    checked = 0
    for row in rows:
        price, quantity = row["ListUnitPrice"], row["PricingQuantity"]
        if row["ChargeClass"] == "Correction" or price is None or quantity is None:
            continue
        assert row["ListCost"] == price * quantity, row  # type: ignore[operator]
        assert row["ContractedCost"] == row["ContractedUnitPrice"] * quantity  # type: ignore[operator]
        checked += 1
    return checked


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, object]]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    header = list(reader.fieldnames or [])
    rows: list[dict[str, object]] = []
    for raw in reader:
        row: dict[str, object] = {}
        for name, text in raw.items():
            kind = COLUMNS[name]
            if name in NOT_NULL:
                assert text != "", f"{name} must not be null"
            if kind == "Decimal":
                row[name] = decimal_or_none(text)
            elif kind == "DateTime":
                assert text == "" or ISO_UTC.match(text), (name, text)
                row[name] = text or None
            elif kind == "JSON":
                row[name] = json.loads(text) if text else None
                assert row[name] is None or isinstance(row[name], dict)
            else:
                row[name] = text or None
        rows.append(row)
    return header, rows


@pytest.mark.parametrize("allocation", [None, "proportional", "even", "owner:finops"])
def test_csv_has_every_mandatory_column_with_right_types_and_list_cost_holds(allocation: str | None) -> None:
    export = build_focus(source(), allocation=Allocation.parse(allocation) if allocation else None)
    header, rows = read_csv(to_csv(export))
    assert set(MANDATORY_COLUMNS) <= set(header)
    assert len(MANDATORY_COLUMNS) == 21
    assert check_list_cost(rows) >= 7  # every priced usage row (more when allocated)
    charges = [r for r in rows if r["ChargeClass"] != "Correction"]
    assert sum((r["EffectiveCost"] for r in charges), Decimal(0)) == source().stored_total  # type: ignore[misc]
    corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
    assert [(r["EffectiveCost"], r["ChargePeriodStart"]) for r in corrections] == [
        (Decimal("-0.25"), "2026-09-01T00:00:00Z")
    ]
    assert {r["ChargeCategory"] for r in charges} == {"Usage", "Adjustment"}
    unpriced = [r for r in rows if r["x_PricingStatus"] == "unpriced"]
    assert unpriced
    assert all(r["ListUnitPrice"] is None and r["ListCost"] == 0 for r in unpriced)


def test_parquet_has_focus_types_and_reads_back_exactly() -> None:
    export = build_focus(source(), allocation=Allocation.parse("proportional"))
    table = pq.read_table(io.BytesIO(to_parquet(export)))
    schema = table.schema
    assert set(MANDATORY_COLUMNS) <= set(schema.names)
    for name, kind in COLUMNS.items():
        field_type = schema.field(name).type
        if kind == "Decimal":
            assert field_type == pa.decimal128(38, 12), name
        elif kind == "DateTime":
            assert field_type == pa.timestamp("ms", tz="UTC"), name
        else:
            assert field_type == pa.string(), name
    rows = table.to_pylist()
    assert len(rows) == len(export.rows)
    for name in NOT_NULL:
        assert all(row[name] is not None for row in rows), name
    assert check_list_cost(rows) > 7  # pool rows split per key
    assert rows[0]["BillingPeriodStart"] == datetime(2026, 10, 1, tzinfo=UTC)
    assert (
        sum((r["EffectiveCost"] for r in rows if r["ChargeClass"] is None), Decimal(0))
        == source().stored_total
    )


def test_allocated_charges_add_up_to_their_origin_and_name_the_split() -> None:
    plain = build_focus(source(False))
    allocated = build_focus(source(False), allocation=Allocation.parse("proportional"))
    origin_of = lambda r: (r["SkuPriceId"], r["x_Team"], r["x_CostCenter"], r["ChargeCategory"], r["Tags"])  # noqa: E731
    sums: dict[tuple[object, ...], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0)])
    ratios: dict[tuple[object, ...], Decimal] = defaultdict(Decimal)
    for row in allocated.rows:
        slot = sums[origin_of(row)]
        slot[0] += row["EffectiveCost"]
        slot[1] += row["PricingQuantity"] or 0
        if row["AllocatedMethodDetails"]:
            details = json.loads(row["AllocatedMethodDetails"], parse_float=Decimal)
            ratios[origin_of(row)] += details["Elements"][0]["AllocatedRatio"]
            assert row["AllocatedMethodId"] == "costline-proportional"
            assert json.loads(row["AllocatedTags"]) == {"team": row["x_ChargebackKey"]}
    for row in plain.rows:
        assert sums[origin_of(row)][:2] == [row["EffectiveCost"], row["PricingQuantity"] or 0]
    assert ratios
    assert all(total == 1 for total in ratios.values())
    # the per-key totals of the export equal the chargeback's up to one picodollar per origin row
    report = {
        r.key: r.total_cost for r in build_chargeback(source(False), "team", Allocation("proportional")).rows
    }
    per_key: dict[str, Decimal] = defaultdict(Decimal)
    for row in allocated.rows:
        per_key[row["x_ChargebackKey"]] += row["EffectiveCost"]
    # an origin row's parts are multiples of one quantity step, so a key may differ by one step's cost
    steps = sum(
        (
            row["ListUnitPrice"] * Decimal(1).scaleb(-_quantity_decimals(row["ListUnitPrice"]))
            if row["ListUnitPrice"]
            else Decimal("1E-12")
            for row in plain.rows
            if row["x_Team"] == "" or (row["Tags"] and "shared" in row["Tags"])
        ),
        Decimal(0),
    )
    for key, total in per_key.items():
        assert abs(total - report[key]) <= steps, key
    assert sum(per_key.values()) == sum(report.values())


def test_team_scope_keeps_only_the_teams_rows() -> None:
    export = build_focus(source(), allocation=Allocation.parse("even"), teams=["search"])
    assert export.rows
    assert {row["x_ChargebackKey"] for row in export.rows} == {"search"}
    with pytest.raises(Exception, match="by team"):
        build_focus(source(), by="cost_center", teams=["search"])
