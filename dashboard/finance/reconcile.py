"""Reconcile our cost with a provider's cost export, by UTC day and model, exactly.

Formats read (detected from the content, so a wrong provider or format is a clear error):

* OpenAI Costs API JSON (`GET /v1/organization/costs`, ideally `group_by=line_item`): pages with
  `data[].start_time` (Unix seconds) and `results[].amount.value` in dollars, `amount.currency`,
  `line_item` such as `"gpt-4o-2024-08-06, input"` (the model is the part before the comma; a
  null line item means the whole day, compared with our whole day).
* OpenAI usage-dashboard cost CSV: `start_time` or `start_time_iso`, `amount_value`,
  `amount_currency`, `line_item` (same meaning as the API).
* Anthropic Admin API cost report JSON (`GET /v1/organizations/cost_report`, ideally
  `group_by[]=description`): `data[].starting_at` (RFC 3339) and `results[].amount`, a decimal
  string in cents, `currency`, `model`, `cost_type`. Costs without a model (web search, code
  execution) are compared with our request charges of the day under "(server tools)".
* Anthropic console cost CSV: a date column (`usage_date_utc`, `date`, `day` or `starting_at`),
  `model` (or `model_name`), and the cost as dollars (`cost_usd`, `total_cost_usd`, `cost`) or as
  cents like the API (`amount`).

Money is parsed as Decimal straight from the text (never through float). Model names are compared
after lower-casing, dropping a provider prefix and a date suffix, and turning spaces into dashes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from clickhouse_connect.driver import Client

from costline.dashboard.finance.common import ZERO, FinanceError
from costline.pipeline.store.queries import Query, run

PROVIDERS: tuple[str, ...] = ("openai", "anthropic")
#: Model key of a provider cost that covers a whole day (no line item).
WHOLE_DAY = "*"
#: Model key of Anthropic's server-tool costs (no model), compared with our request charges.
SERVER_TOOLS = "(server tools)"
DEFAULT_TOLERANCE = "0.01"

_DATE_SUFFIX = re.compile(r"(-\d{8}|-\d{4}-\d{2}-\d{2}|@\d{8})$")

_OURS = """
SELECT toDate(occurred_at) AS day, model,
    sum(ifNull(repriced_effective_cost, effective_cost)) AS cost, sum(cost_requests) AS request_cost
FROM usage_events FINAL
WHERE provider = {provider:String}
  AND occurred_at >= {since:DateTime64(6, 'UTC')} AND occurred_at < {until:DateTime64(6, 'UTC')}
GROUP BY day, model"""


@dataclass(frozen=True)
class ProviderCost:
    """One cost line of a provider export."""

    day: date
    model: str
    amount: Decimal


@dataclass(frozen=True)
class Tolerance:
    """A variance is flagged when it exceeds every given bound (absolute USD, percent of theirs)."""

    absolute: Decimal | None = Decimal(DEFAULT_TOLERANCE)
    percent: Decimal | None = None

    @classmethod
    def parse(cls, text: str | None) -> Tolerance:
        """`0.01`, `2%` or `0.01,2%`; the default is 0.01 USD."""
        absolute: Decimal | None = None
        percent: Decimal | None = None
        for part in (text or DEFAULT_TOLERANCE).split(","):
            item = part.strip()
            try:
                if item.endswith("%"):
                    percent = Decimal(item[:-1].strip())
                else:
                    absolute = Decimal(item)
            except InvalidOperation:
                raise FinanceError(
                    f"tolerance {text!r} is not understood; give USD (0.01), a percent (2%) or both (0.01,2%)"
                ) from None
        bounds = [b for b in (absolute, percent) if b is not None]
        if not bounds or any(not b.is_finite() or b < 0 for b in bounds):
            raise FinanceError(f"tolerance {text!r} must be non-negative, e.g. 0.01 or 2% or 0.01,2%")
        return cls(absolute, percent)

    def exceeded(self, variance: Decimal, theirs: Decimal) -> bool:
        size = abs(variance)
        if self.absolute is None and self.percent is None:
            return size > 0
        if self.absolute is not None and size <= self.absolute:
            return False
        return not (self.percent is not None and size * 100 <= self.percent * abs(theirs))

    def __str__(self) -> str:
        parts = []
        if self.absolute is not None:
            parts.append(format(self.absolute, "f"))
        if self.percent is not None:
            parts.append(f"{format(self.percent, 'f')}%")
        return ",".join(parts)


@dataclass(frozen=True)
class Variance:
    """Ours against theirs for one day and model."""

    day: date
    model: str
    ours: Decimal
    theirs: Decimal
    flagged: bool

    @property
    def variance(self) -> Decimal:
        return self.ours - self.theirs


@dataclass(frozen=True)
class Reconciliation:
    """Every compared day and model, and the totals."""

    provider: str
    tolerance: Tolerance
    rows: list[Variance]

    @property
    def total_ours(self) -> Decimal:
        return sum((row.ours for row in self.rows), ZERO)

    @property
    def total_theirs(self) -> Decimal:
        return sum((row.theirs for row in self.rows), ZERO)

    @property
    def flagged_days(self) -> list[date]:
        return sorted({row.day for row in self.rows if row.flagged})


def normalize_model(name: str | None) -> str:
    """The comparable form of a model name: `Claude-3-5-Sonnet-20241022` → `claude-3-5-sonnet`."""
    text = (name or "").strip().lower().replace(" ", "-")
    text = text.rsplit("/", 1)[-1]
    for prefix in ("anthropic.", "openai."):
        text = text.removeprefix(prefix)
    return _DATE_SUFFIX.sub("", text)


def parse_export(provider: str, data: bytes) -> list[ProviderCost]:
    """The cost lines of a provider export (JSON or CSV, detected), or a FinanceError saying why not."""
    if provider not in PROVIDERS:
        raise FinanceError(f"provider {provider!r} cannot be reconciled; use one of {', '.join(PROVIDERS)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FinanceError(f"the invoice file is not UTF-8 text ({exc}); export it as CSV or JSON") from exc
    stripped = text.lstrip()
    if not stripped:
        raise FinanceError("the invoice file is empty")
    if stripped[0] in "{[":
        try:
            document = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise FinanceError(f"the invoice file looks like JSON but does not parse: {exc}") from exc
        pages = document if isinstance(document, list) else [document]
        return _openai_json(pages) if provider == "openai" else _anthropic_json(pages)
    rows = list(csv.DictReader(io.StringIO(text)))
    header = [h.strip() for h in (csv.reader(io.StringIO(text)).__next__())]
    return _openai_csv(rows, header) if provider == "openai" else _anthropic_csv(rows, header)


def our_costs(client: Client, provider: str, since: date, until: date) -> dict[tuple[date, str], Decimal]:
    """Our current cost per (day, normalized model) of a provider; request charges apart for Anthropic."""
    rows = run(
        client,
        Query(
            _OURS,
            {
                "provider": provider,
                "since": datetime.combine(since, datetime.min.time(), tzinfo=UTC),
                "until": datetime.combine(until, datetime.min.time(), tzinfo=UTC),
            },
        ),
    )
    ours: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        day = row["day"] if isinstance(row["day"], date) else date.fromisoformat(str(row["day"]))
        cost, requests = row["cost"], row["request_cost"]
        if provider == "anthropic" and requests:
            ours[(day, normalize_model(row["model"]))] += cost - requests
            ours[(day, SERVER_TOOLS)] += requests
        else:
            ours[(day, normalize_model(row["model"]))] += cost
    return dict(ours)


def compare(
    provider: str,
    theirs_lines: Iterable[ProviderCost],
    ours: dict[tuple[date, str], Decimal],
    tolerance: Tolerance,
) -> Reconciliation:
    """Variance per (day, model); a day the provider reports as a whole is compared as a whole."""
    theirs: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for line in theirs_lines:
        theirs[(line.day, line.model)] += line.amount
    whole_days = {day for day, model in theirs if model == WHOLE_DAY}
    ours_keyed: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    for (day, model), amount in ours.items():
        ours_keyed[(day, WHOLE_DAY if day in whole_days else model)] += amount
    rows = []
    for key in sorted(set(theirs) | set(ours_keyed)):
        mine, their = ours_keyed.get(key, ZERO), theirs.get(key, ZERO)
        rows.append(Variance(key[0], key[1], mine, their, tolerance.exceeded(mine - their, their)))
    return Reconciliation(provider, tolerance, rows)


def reconcile(client: Client, provider: str, data: bytes, tolerance: Tolerance) -> Reconciliation:
    """Parse the export, read our cost over its days, compare."""
    lines = parse_export(provider, data)
    if not lines:
        raise FinanceError("the invoice file holds no cost lines")
    since = min(line.day for line in lines)
    until = max(line.day for line in lines) + timedelta(days=1)
    return compare(provider, lines, our_costs(client, provider, since, until), tolerance)


def reconciliation_json(result: Reconciliation, money: Any) -> dict[str, Any]:
    """The API shape."""
    return {
        "provider": result.provider,
        "tolerance": str(result.tolerance),
        "days": [
            {
                "date": row.day.isoformat(),
                "model": row.model,
                "ours": money(row.ours),
                "theirs": money(row.theirs),
                "variance": money(row.variance),
                "flagged": row.flagged,
            }
            for row in result.rows
        ],
        "flagged_days": [day.isoformat() for day in result.flagged_days],
        "total_ours": money(result.total_ours),
        "total_theirs": money(result.total_theirs),
    }


# --------------------------------------------------------------------------- OpenAI


def _openai_json(pages: list[Any]) -> list[ProviderCost]:
    lines = []
    for page in pages:
        buckets = page.get("data") if isinstance(page, dict) else None
        if not isinstance(buckets, list):
            raise FinanceError(
                "this JSON is not an OpenAI costs export: expected pages like "
                '{"object": "page", "data": [{"start_time": ..., "results": [...]}]} '
                "from /v1/organization/costs"
            )
        for bucket in buckets:
            start = bucket.get("start_time") if isinstance(bucket, dict) else None
            results = bucket.get("results", bucket.get("result")) if isinstance(bucket, dict) else None
            if start is None or not isinstance(results, list):
                raise FinanceError(
                    "this JSON is not an OpenAI costs export: a bucket needs start_time and results"
                )
            day = _day_of_unix(start)
            for result in results:
                amount = (result or {}).get("amount") or {}
                if amount.get("value") is None:
                    continue  # a bucket result without an amount carries no cost
                _check_currency(amount.get("currency"))
                lines.append(
                    ProviderCost(day, _line_item_model(result.get("line_item")), _money(amount["value"]))
                )
    return lines


def _openai_csv(rows: list[dict[str, str]], header: list[str]) -> list[ProviderCost]:
    if "amount_value" not in header or not ({"start_time", "start_time_iso"} & set(header)):
        raise FinanceError(
            "this CSV is not an OpenAI cost export: expected columns start_time (or start_time_iso), "
            f"amount_value, amount_currency, line_item; found {', '.join(header)}"
        )
    lines = []
    for number, row in enumerate(rows, start=2):
        if not (row.get("amount_value") or "").strip():
            continue
        _check_currency(row.get("amount_currency"), number)
        if (row.get("start_time") or "").strip():
            day = _day_of_unix(row["start_time"], number)
        else:
            day = _day_of_text(row["start_time_iso"], number)
        lines.append(
            ProviderCost(day, _line_item_model(row.get("line_item")), _money(row["amount_value"], number))
        )
    return lines


def _line_item_model(line_item: Any) -> str:
    if line_item is None or not str(line_item).strip():
        return WHOLE_DAY
    return normalize_model(str(line_item).split(",", 1)[0])


# --------------------------------------------------------------------------- Anthropic


def _anthropic_json(pages: list[Any]) -> list[ProviderCost]:
    lines = []
    for page in pages:
        buckets = page.get("data") if isinstance(page, dict) else None
        if not isinstance(buckets, list):
            raise FinanceError(
                "this JSON is not an Anthropic cost report: expected "
                '{"data": [{"starting_at": ..., "results": [{"amount": "123.45", ...}]}]} '
                "from /v1/organizations/cost_report"
            )
        for bucket in buckets:
            if not isinstance(bucket, dict) or "starting_at" not in bucket:
                raise FinanceError(
                    "this JSON is not an Anthropic cost report: a bucket needs starting_at and results"
                )
            day = _day_of_text(bucket["starting_at"])
            for result in bucket.get("results") or []:
                _check_currency(result.get("currency"))
                cents = _money(result.get("amount"))
                lines.append(ProviderCost(day, _anthropic_model(result), cents / 100))
    return lines


def _anthropic_csv(rows: list[dict[str, str]], header: list[str]) -> list[ProviderCost]:
    date_column = next((c for c in ("usage_date_utc", "date", "day", "starting_at") if c in header), None)
    model_column = next((c for c in ("model", "model_name") if c in header), None)
    dollars = next((c for c in ("cost_usd", "total_cost_usd", "cost") if c in header), None)
    cents = "amount" if "amount" in header else None
    if date_column is None or model_column is None or (dollars is None and cents is None):
        raise FinanceError(
            "this CSV is not an Anthropic cost export: expected a date column (usage_date_utc, date, day or "
            "starting_at), model, and cost_usd (dollars) or amount (cents); found " + ", ".join(header)
        )
    lines = []
    for number, row in enumerate(rows, start=2):
        raw = (row.get(dollars) if dollars else row.get(cents or "")) or ""
        if not raw.strip():
            continue
        _check_currency(row.get("currency"), number)
        amount = _money(raw, number)
        if dollars is None:
            amount = amount / 100
        lines.append(
            ProviderCost(_day_of_text(row[date_column], number), _anthropic_model(row, model_column), amount)
        )
    return lines


def _anthropic_model(result: dict[str, Any], column: str = "model") -> str:
    model = result.get(column)
    if model:
        return normalize_model(str(model))
    cost_type = str(result.get("cost_type") or "")
    if cost_type and cost_type != "tokens":
        return SERVER_TOOLS
    return WHOLE_DAY


# --------------------------------------------------------------------------- values


def _money(value: Any, row: int | None = None) -> Decimal:
    where = f" (row {row})" if row else ""
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip().replace("$", "").replace(",", ""))
        except InvalidOperation:
            raise FinanceError(f"cost {value!r}{where} is not a number") from None
    else:
        raise FinanceError(f"cost {value!r}{where} is not a number")
    if not amount.is_finite():
        raise FinanceError(f"cost {value!r}{where} is not a finite number")
    return amount


def _check_currency(currency: Any, row: int | None = None) -> None:
    if currency is None or str(currency).strip() == "":
        return
    if str(currency).strip().lower() != "usd":
        where = f" (row {row})" if row else ""
        raise FinanceError(f"currency {currency!r}{where} is not USD; costline reconciles USD costs")


def _day_of_unix(value: Any, row: int | None = None) -> date:
    try:
        return datetime.fromtimestamp(int(Decimal(str(value).strip())), tz=UTC).date()
    except (InvalidOperation, ValueError, OverflowError):
        where = f" (row {row})" if row else ""
        raise FinanceError(f"start_time {value!r}{where} is not Unix seconds") from None


def _day_of_text(value: Any, row: int | None = None) -> date:
    text = str(value).strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        where = f" (row {row})" if row else ""
        raise FinanceError(
            f"date {value!r}{where} is not ISO 8601 (2026-10-05 or 2026-10-05T00:00:00Z)"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.date()
