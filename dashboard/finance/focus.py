"""FOCUS export of a month: the FinOps Cost and Usage dataset, CSV (exact decimals) or Parquet.

Columns: every Mandatory column of FOCUS 1.2, the Conditional and Recommended ones costline can
fill, the FOCUS 1.3 provider columns (ServiceProviderName, HostProviderName) and split cost
allocation columns (AllocatedMethodId, AllocatedMethodDetails, AllocatedResourceId,
AllocatedResourceName, AllocatedTags), and `x_` columns for costline's own facts.

Rows (see docs/finance.md for the full mapping):

* Usage — one per charge line: UTC day × provider × model × team × cost center × project ×
  workload × token bucket (or request kind) × price. PricingQuantity is in tokens (or requests)
  and ListUnitPrice in USD per token, exact, so ListCost = ListUnitPrice × PricingQuantity holds
  on every row. The SKU price includes the service tier, time window and geo that applied
  (SkuPriceDetails names them), so ListCost is the published price of that SKU price; costline
  has no negotiated rates, so Contracted, Billed and Effective cost equal it.
* Adjustment — current minus as-priced cost of re-priced events (the store keeps the re-priced
  cost per event, not per bucket), without quantity or unit price.
* Correction (ChargeClass=Correction) — changes of closed months carried by this month, with the
  corrected month as charge period.

With an allocation, each unattributed or shared origin charge is split into allocated charges,
one per receiving key (FOCUS 1.3 split cost allocation): quantities and costs add up to the
origin exactly, unit prices and dimensions stay, AllocatedTags names the key and
AllocatedMethodDetails the ratio. Quantities are split on a grid fine enough that the price times
each part is a whole picodollar, so ListCost = ListUnitPrice × PricingQuantity still holds.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from clickhouse_connect.driver import Client

from costline.dashboard.finance.chargeback import (
    Allocation,
    By,
    Plan,
    build_chargeback,
    pool_of,
)
from costline.dashboard.finance.common import (
    MONEY_SCALE,
    PICO,
    ZERO,
    FinanceError,
    Period,
    split_amount,
    split_units,
)
from costline.dashboard.finance.lines import Line
from costline.dashboard.finance.periods import Correction, PeriodLines, period_lines

FOCUS_VERSION = "1.2"
#: Scale of every Decimal column (money, prices, quantities).
DECIMAL_SCALE = MONEY_SCALE
#: Quantity grid (decimals) for splitting lines that have no unit price.
UNPRICED_QUANTITY_DECIMALS = 6

#: FOCUS 1.2 columns that must be present (feature level Mandatory).
MANDATORY_COLUMNS: tuple[str, ...] = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)

#: Every column in file order, with its FOCUS data type (Decimal, String, DateTime, JSON).
COLUMNS: dict[str, str] = {
    "BillingAccountId": "String",
    "BillingAccountName": "String",
    "BillingCurrency": "String",
    "BillingPeriodStart": "DateTime",
    "BillingPeriodEnd": "DateTime",
    "ChargePeriodStart": "DateTime",
    "ChargePeriodEnd": "DateTime",
    "ChargeCategory": "String",
    "ChargeClass": "String",
    "ChargeDescription": "String",
    "ChargeFrequency": "String",
    "ServiceProviderName": "String",
    "HostProviderName": "String",
    "ProviderName": "String",
    "PublisherName": "String",
    "InvoiceIssuerName": "String",
    "InvoiceId": "String",
    "ServiceName": "String",
    "ServiceCategory": "String",
    "ServiceSubcategory": "String",
    "SubAccountId": "String",
    "SubAccountName": "String",
    "ResourceId": "String",
    "ResourceName": "String",
    "ResourceType": "String",
    "SkuId": "String",
    "SkuPriceId": "String",
    "SkuMeter": "String",
    "SkuPriceDetails": "JSON",
    "PricingCategory": "String",
    "PricingQuantity": "Decimal",
    "PricingUnit": "String",
    "ConsumedQuantity": "Decimal",
    "ConsumedUnit": "String",
    "ListUnitPrice": "Decimal",
    "ContractedUnitPrice": "Decimal",
    "ListCost": "Decimal",
    "ContractedCost": "Decimal",
    "BilledCost": "Decimal",
    "EffectiveCost": "Decimal",
    "Tags": "JSON",
    "AllocatedMethodId": "String",
    "AllocatedMethodDetails": "JSON",
    "AllocatedResourceId": "String",
    "AllocatedResourceName": "String",
    "AllocatedTags": "JSON",
    "x_ChargebackKey": "String",
    "x_Team": "String",
    "x_CostCenter": "String",
    "x_Project": "String",
    "x_Workload": "String",
    "x_Model": "String",
    "x_TokenBucket": "String",
    "x_PricingStatus": "String",
    "x_RateCardEntryId": "String",
    "x_RepricedEntryId": "String",
    "x_EventCount": "Decimal",
    "x_CorrectedPeriod": "String",
}

_PROVIDERS: dict[str, tuple[str, str, str]] = {
    # provider: (service provider / invoice issuer, host provider, service name)
    "openai": ("OpenAI", "OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Anthropic", "Claude API"),
    "aws.bedrock": ("Amazon Web Services", "Amazon Web Services", "Amazon Bedrock"),
    "azure.ai.openai": ("Microsoft", "Microsoft", "Azure OpenAI"),
    "azure.ai.inference": ("Microsoft", "Microsoft", "Azure AI Inference"),
    "gcp.gemini": ("Google", "Google", "Gemini API"),
    "gcp.vertex_ai": ("Google", "Google", "Vertex AI"),
    "gcp.gen_ai": ("Google", "Google", "Google Generative AI"),
    "deepseek": ("DeepSeek", "DeepSeek", "DeepSeek API"),
    "mistral_ai": ("Mistral AI", "Mistral AI", "Mistral API"),
    "x_ai": ("xAI", "xAI", "xAI API"),
}
_PUBLISHERS = (
    ("claude", "Anthropic"),
    ("gpt", "OpenAI"),
    ("o1", "OpenAI"),
    ("o3", "OpenAI"),
    ("o4", "OpenAI"),
    ("gemini", "Google"),
    ("llama", "Meta"),
    ("mistral", "Mistral AI"),
    ("deepseek", "DeepSeek"),
    ("grok", "xAI"),
)
_METERS = {
    "input_uncached": "Input Tokens",
    "cache_read": "Input Tokens (Cache Read)",
    "cache_write_5m": "Input Tokens (Cache Write 5m)",
    "cache_write_30m": "Input Tokens (Cache Write 30m)",
    "cache_write_1h": "Input Tokens (Cache Write 1h)",
    "cache_write_12h": "Input Tokens (Cache Write 12h)",
    "output_visible": "Output Tokens",
    "output_reasoning": "Output Tokens (Reasoning)",
    "web_search_requests": "Web Search Requests",
    "web_fetch_requests": "Web Fetch Requests",
    "code_execution_requests": "Code Execution Requests",
    "requests_mixed": "Server Tool Requests (mixed)",
}


@dataclass(frozen=True)
class FocusExport:
    """The rows of an export and the totals they add up to."""

    period: Period
    rows: list[dict[str, Any]]

    def total(self, column: str = "EffectiveCost", *, corrections: bool = False) -> Decimal:
        """Sum of a cost column over charge rows (or over correction rows)."""
        return sum(
            (row[column] for row in self.rows if (row["ChargeClass"] == "Correction") == corrections),
            ZERO,
        )


def build_focus(
    source: PeriodLines,
    *,
    by: By = "team",
    allocation: Allocation | None = None,
    teams: Sequence[str] | None = None,
) -> FocusExport:
    """FOCUS rows of a month (snapshot when closed), allocated when `allocation` is given."""
    if teams is not None and by != "team":
        raise FinanceError("a team token can only export by team")
    period = source.period
    plan: Plan | None = None
    if allocation is not None:
        plan = build_chargeback(source, by, allocation).plan
    rows: list[dict[str, Any]] = []
    for line in source.lines:
        if line.kind == "events":
            continue
        origin = _line_row(line, period, by)
        pool = pool_of(line, by) if allocation is not None else None
        if pool is None or plan is None:
            rows.append(origin)
        else:
            rows.extend(_allocated(origin, line, plan, pool, by, allocation))  # type: ignore[arg-type]
    rows.extend(_correction_row(c, period, by) for c in source.corrections)
    if teams is not None:
        allowed = set(teams)
        rows = [row for row in rows if row["x_ChargebackKey"] in allowed]
    return FocusExport(period, rows)


def focus_export(
    client: Client,
    period: Period,
    *,
    by: By = "team",
    allocation: Allocation | None = None,
    teams: Sequence[str] | None = None,
) -> FocusExport:
    """`build_focus` for `period` read from the store."""
    return build_focus(period_lines(client, period), by=by, allocation=allocation, teams=teams)


def to_csv(export: FocusExport) -> bytes:
    """CSV with a header; decimals as exact strings, times as ISO 8601 UTC, nulls empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in export.rows:
        writer.writerow([_csv_value(row[name]) for name in COLUMNS])
    return buffer.getvalue().encode("utf-8")


def arrow_schema() -> Any:
    """The Parquet schema: decimal128(38, 12), timestamp[ms, UTC], strings (JSON serialized)."""
    import pyarrow as pa

    kinds = {
        "Decimal": pa.decimal128(38, DECIMAL_SCALE),
        "DateTime": pa.timestamp("ms", tz="UTC"),
        "String": pa.string(),
        "JSON": pa.string(),
    }
    return pa.schema(
        [
            pa.field(name, kinds[kind], nullable=name not in _NOT_NULL, metadata={"focus_type": kind})
            for name, kind in COLUMNS.items()
        ],
        metadata={"focus_version": FOCUS_VERSION},
    )


def to_parquet(export: FocusExport) -> bytes:
    """The rows as a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    columns = {name: [_arrow_value(row[name], COLUMNS[name]) for row in export.rows] for name in COLUMNS}
    table = pa.Table.from_pydict(columns, schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


_NOT_NULL = frozenset(
    {
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
        "ServiceProviderName",
    }
)


def _names(provider: str, model: str) -> tuple[str, str, str, str]:
    """(service provider, host provider, publisher, service name) of a provider route and model."""
    known = _PROVIDERS.get(provider)
    display = provider.replace("_", " ").replace(".", " ").title() if provider else "Unknown"
    service_provider, host, service = known or (display, display, f"{display} API")
    lowered = model.lower().rsplit("/", 1)[-1]
    publisher = next((name for prefix, name in _PUBLISHERS if lowered.startswith(prefix)), service_provider)
    return service_provider, host, publisher, service


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _base(period: Period, provider: str, model: str) -> dict[str, Any]:
    service_provider, host, publisher, service = _names(provider, model)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(
        BillingAccountId=f"costline:{provider or 'unknown'}",
        BillingCurrency="USD",
        BillingPeriodStart=period.start,
        BillingPeriodEnd=period.end,
        ChargeFrequency="Usage-Based",
        ServiceProviderName=service_provider,
        HostProviderName=host,
        ProviderName=service_provider,
        PublisherName=publisher,
        InvoiceIssuerName=service_provider,
        ServiceName=service,
        ServiceCategory="AI and Machine Learning",
        ServiceSubcategory="Generative AI",
        x_Model=model,
    )
    return row


def _attribution(row: dict[str, Any], line: Line | Correction, by: str) -> None:
    tags = {
        "team": line.team,
        "cost_center": line.cost_center,
        "project": line.project,
        "workload": line.workload,
        "shared": "true" if line.shared else "",
    }
    row.update(
        SubAccountId=line.project or None,
        SubAccountName=line.project or None,
        Tags=_json({k: v for k, v in tags.items() if v}),
        x_ChargebackKey=line.team if by == "team" else line.cost_center,
        x_Team=line.team,
        x_CostCenter=line.cost_center,
        x_Project=line.project,
        x_Workload=line.workload,
    )


def _line_row(line: Line, period: Period, by: str) -> dict[str, Any]:
    row = _base(period, line.provider, line.model)
    _attribution(row, line, by)
    row.update(
        ChargePeriodStart=_midnight(line.day),
        ChargePeriodEnd=_midnight(line.day + timedelta(days=1)),
        ListCost=line.cost,
        ContractedCost=line.cost,
        BilledCost=line.cost,
        EffectiveCost=line.cost,
        x_EventCount=Decimal(line.events),
    )
    if line.kind == "repricing":
        row.update(
            ChargeCategory="Adjustment",
            ChargeDescription=f"{line.model}: re-priced under rate card entry "
            f"{line.repriced_entry_id or '(none)'} (current minus as-priced cost)",
            x_RepricedEntryId=line.repriced_entry_id or None,
            x_PricingStatus="repriced",
        )
        return row
    meter = _METERS.get(line.bucket, line.bucket)
    sku = f"{line.provider}/{line.model}:{line.bucket}"
    unit = "Tokens" if line.unit == "tokens" else "Requests"
    details = {
        "x_RateCardEntry": line.entry_id,
        "x_ContextTier": line.context_tier,
        "x_Adjustments": line.adjustments,
    }
    row.update(
        ChargeCategory="Usage",
        ChargeDescription=f"{line.model} {meter.lower()}",
        ResourceId=f"{line.provider}/{line.model}",
        ResourceName=line.model,
        ResourceType="Model",
        SkuId=sku,
        SkuPriceId=f"{sku}|{line.entry_id}|{line.context_tier}|{line.adjustments}",
        SkuMeter=meter,
        SkuPriceDetails=_json({k: v for k, v in details.items() if v}),
        PricingCategory="Standard",
        PricingQuantity=Decimal(line.quantity),
        PricingUnit=unit,
        ConsumedQuantity=Decimal(line.quantity),
        ConsumedUnit=unit,
        ListUnitPrice=line.unit_price,
        ContractedUnitPrice=line.unit_price,
        x_TokenBucket=line.bucket,
        x_PricingStatus=line.status,
        x_RateCardEntryId=line.entry_id or None,
    )
    return row


def _correction_row(correction: Correction, period: Period, by: str) -> dict[str, Any]:
    row = _base(period, correction.provider, correction.model)
    _attribution(row, correction, by)
    row.update(
        ChargePeriodStart=correction.corrected.start,
        ChargePeriodEnd=correction.corrected.end,
        ChargeCategory="Usage",
        ChargeClass="Correction",
        ChargeDescription=correction.reason,
        ListCost=correction.amount,
        ContractedCost=correction.amount,
        BilledCost=correction.amount,
        EffectiveCost=correction.amount,
        x_EventCount=Decimal(correction.events_delta),
        x_CorrectedPeriod=str(correction.corrected),
        x_PricingStatus="correction",
    )
    return row


def _quantity_decimals(unit_price: Decimal | None) -> int:
    """Decimals of a quantity split such that unit price × part stays on the picodollar grid."""
    if unit_price is None:
        return UNPRICED_QUANTITY_DECIMALS
    pico = int(unit_price.scaleb(MONEY_SCALE))
    if pico == 0:
        return UNPRICED_QUANTITY_DECIMALS
    decimals = 0
    while decimals < MONEY_SCALE and pico % 10 == 0:
        pico //= 10
        decimals += 1
    return decimals


def _allocated(
    origin: dict[str, Any], line: Line, plan: Plan, pool: str, by: str, allocation: Allocation
) -> list[dict[str, Any]]:
    """Split one origin charge into one allocated charge per receiving key."""
    ratios = split_amount(Decimal(1), plan.weights)
    method = f"costline-{allocation.method}"
    unit_label = {"proportional": "USD direct cost", "even": "Keys", "owner": "Owner"}[allocation.method]
    parts: list[Decimal | None]
    if line.kind == "usage":
        decimals = _quantity_decimals(line.unit_price)
        units = split_units(line.quantity * 10**decimals, plan.weights)
        parts = [_plain(Decimal(p).scaleb(-decimals)) for p in units]
        if line.unit_price is not None:
            costs = [(line.unit_price * Decimal(p).scaleb(-decimals)).quantize(PICO) for p in units]
        else:
            costs = split_amount(line.cost, plan.weights)
    else:
        parts = [None] * len(plan.targets)
        costs = split_amount(line.cost, plan.weights)
    events = split_units(line.events, plan.weights)
    rows = []
    for key, weight, ratio, quantity, cost, count in zip(
        plan.targets, plan.weights, ratios, parts, costs, events, strict=True
    ):
        row = dict(origin)
        details = (
            '{"Elements":[{"AllocatedRatio":'
            + _number(ratio)
            + ',"UsageUnit":'
            + json.dumps(unit_label)
            + ',"UsageQuantity":'
            + _number(_fraction_decimal(weight))
            + "}],"
            + f'"x_Pool":{json.dumps(pool)},"x_By":{json.dumps(by)}}}'
        )
        row.update(
            ListCost=cost,
            ContractedCost=cost,
            BilledCost=cost,
            EffectiveCost=cost,
            AllocatedMethodId=method,
            AllocatedMethodDetails=details,
            AllocatedResourceId=key,
            AllocatedResourceName=key,
            AllocatedTags=_json({by: key}),
            x_ChargebackKey=key,
            x_EventCount=Decimal(count),
        )
        if quantity is not None:
            row.update(PricingQuantity=quantity, ConsumedQuantity=quantity)
        rows.append(row)
    return rows


def _plain(value: Decimal) -> Decimal:
    """A quantity without trailing zeros (and without an exponent: 1E+3 becomes 1000)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


def _fraction_decimal(value: Fraction) -> Decimal:
    with localcontext() as context:
        context.prec = 80
        return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
            Decimal(1).scaleb(-MONEY_SCALE)
        )


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def _json(value: dict[str, Any]) -> str | None:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else None


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _arrow_value(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "Decimal":
        return value.quantize(Decimal(1).scaleb(-DECIMAL_SCALE))
    return value
