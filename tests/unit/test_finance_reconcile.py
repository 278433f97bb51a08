"""Reconciling provider cost exports: the four formats parse exactly, known differences come out exactly.

The fixtures in tests/fixtures/invoices are built from the documented formats (OpenAI
/v1/organization/costs and its dashboard CSV, Anthropic /v1/organizations/cost_report and a
console CSV). Against the "ours" below they differ by known amounts:
OpenAI: 10-05 none, 10-06 −0.25 (flagged), 10-07 −0.004 (within 0.01), 10-08 gpt-5-mini −0.5
(we have nothing; flagged). Anthropic: 10-05 none, 10-06 −0.005 (within), server tools −0.025
(flagged, JSON only: the console CSV has no web-search line).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from costline.dashboard.finance.common import FinanceError
from costline.dashboard.finance.reconcile import (
    SERVER_TOOLS,
    Tolerance,
    compare,
    normalize_model,
    parse_export,
)

INVOICES = Path(__file__).resolve().parents[1] / "fixtures" / "invoices"
D5, D6, D7, D8 = (date(2026, 10, d) for d in (5, 6, 7, 8))

OPENAI_OURS = {(D5, "gpt-5"): Decimal("2.25"), (D6, "gpt-5"): Decimal("2.5"), (D7, "gpt-5"): Decimal("10")}
ANTHROPIC_OURS = {(D5, "claude-sonnet-4-6"): Decimal("3"), (D6, "claude-sonnet-4-6"): Decimal("15")}


def variances(result: object) -> list[tuple[date, str, Decimal, bool]]:
    return [(r.day, r.model, r.variance, r.flagged) for r in result.rows]  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["openai_costs.json", "openai_costs.csv"])
def test_openai_exports_yield_exactly_the_known_variances(name: str) -> None:
    lines = parse_export("openai", (INVOICES / name).read_bytes())
    result = compare("openai", lines, OPENAI_OURS, Tolerance.parse("0.01"))
    assert variances(result) == [
        (D5, "gpt-5", Decimal("0.00"), False),
        (D6, "gpt-5", Decimal("-0.25"), True),
        (D7, "gpt-5", Decimal("-0.004"), False),
        (D8, "gpt-5-mini", Decimal("-0.5"), True),
    ]
    assert result.total_theirs == Decimal("15.504")
    assert result.total_ours == Decimal("14.75")
    assert result.flagged_days == [D6, D8]


def test_anthropic_cost_report_json_reads_cents_and_server_tools() -> None:
    lines = parse_export("anthropic", (INVOICES / "anthropic_cost_report.json").read_bytes())
    result = compare("anthropic", lines, ANTHROPIC_OURS, Tolerance.parse("0.01"))
    assert variances(result) == [
        (D5, "claude-sonnet-4-6", Decimal("0.0000"), False),
        (D6, SERVER_TOOLS, Decimal("-0.025"), True),
        (D6, "claude-sonnet-4-6", Decimal("-0.005"), False),
    ]


def test_anthropic_console_csv_reads_dollars() -> None:
    lines = parse_export("anthropic", (INVOICES / "anthropic_console.csv").read_bytes())
    result = compare("anthropic", lines, ANTHROPIC_OURS, Tolerance.parse("0.001"))
    assert variances(result) == [
        (D5, "claude-sonnet-4-6", Decimal("0.00"), False),
        (D6, "claude-sonnet-4-6", Decimal("-0.005"), True),
    ]


def test_tolerance_bounds_combine_absolute_and_percent() -> None:
    both = Tolerance.parse("0.01,1%")
    assert not both.exceeded(Decimal("0.5"), Decimal("100"))  # 0.5% of theirs
    assert both.exceeded(Decimal("2"), Decimal("100"))
    assert not both.exceeded(Decimal("0.005"), Decimal("0.1"))  # under the absolute bound
    assert Tolerance.parse("2%").exceeded(Decimal("0.03"), Decimal("1"))
    assert str(both) == "0.01,1%"
    for bad in ("abc", "-1", "x%"):
        with pytest.raises(FinanceError, match="tolerance"):
            Tolerance.parse(bad)


def test_a_day_without_line_items_is_compared_as_a_whole_day() -> None:
    export = (
        b'{"data": [{"start_time": 1791158400, "results": [{"amount": {"value": 3, "currency": "usd"}}]}]}'
    )
    ours = {(D5, "gpt-5"): Decimal("2.25"), (D5, "gpt-5-mini"): Decimal("0.75")}
    result = compare("openai", parse_export("openai", export), ours, Tolerance())
    assert variances(result) == [(D5, "*", Decimal("0.00"), False)]


def test_unknown_or_wrong_formats_get_clear_errors() -> None:
    openai_json = (INVOICES / "openai_costs.json").read_bytes()
    with pytest.raises(FinanceError, match="not an Anthropic cost report"):
        parse_export("anthropic", openai_json)
    with pytest.raises(FinanceError, match="not an OpenAI cost export: expected columns"):
        parse_export("openai", (INVOICES / "anthropic_console.csv").read_bytes())
    with pytest.raises(FinanceError, match="not an Anthropic cost export"):
        parse_export("anthropic", b"a,b\n1,2\n")
    with pytest.raises(FinanceError, match="does not parse"):
        parse_export("openai", b'{"data": [')
    with pytest.raises(FinanceError, match="not USD"):
        parse_export(
            "openai",
            b'{"data": [{"start_time": 0, "results": [{"amount": {"value": 1, "currency": "eur"}}]}]}',
        )
    with pytest.raises(FinanceError, match="cannot be reconciled"):
        parse_export("gemini", b"{}")
    with pytest.raises(FinanceError, match="empty"):
        parse_export("openai", b"  ")
    with pytest.raises(FinanceError, match="not a number"):
        parse_export("anthropic", b"date,model,cost_usd\n2026-10-05,claude,abc\n")


def test_model_names_are_compared_in_one_form() -> None:
    assert normalize_model("claude-3-5-sonnet-20241022") == "claude-3-5-sonnet"
    assert normalize_model("GPT-4o mini") == "gpt-4o-mini"
    assert normalize_model("gpt-4o-2024-08-06") == "gpt-4o"
    assert normalize_model("anthropic.claude-sonnet-4-6") == "claude-sonnet-4-6"
