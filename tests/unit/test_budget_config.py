"""The budgets file: a full example loads, every mistake is reported with its line, amounts are exact."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from costline.pipeline.budgets.config import (
    Budget,
    BudgetsConfig,
    budgets_from_text,
    check_routes,
    load_budgets,
    load_optional_budgets,
    parse_budgets_text,
)
from costline.schemas.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "budgets.example.yaml"


def test_the_documented_example_loads() -> None:
    config = load_budgets(EXAMPLE)
    names = [b.name for b in config.budgets]
    assert names == ["search-monthly", "support-agent-daily", "migration-weekly", "org-monthly"]
    search = config.budget("search-monthly")
    assert search is not None
    assert search.scope.team == "search"
    assert search.time_zone == "Europe/Paris"
    assert search.thresholds == (50, 80, 100)
    assert search.notify == ("slack", "webhook")
    support = config.budget("support-agent-daily")
    assert support is not None
    assert support.amount_usd == Decimal("120.50")
    assert support.scope.describe() == "team support, workload ticket-agent"
    org = config.budget("org-monthly")
    assert org is not None
    assert org.scope.describe() == "all usage"
    assert config.anomaly_alerts is not None
    assert config.anomaly_alerts.min_wasted_usd == Decimal(5)
    assert config.routes_in_use() == {"slack", "webhook"}


def test_bare_decimals_are_read_exactly_from_their_text() -> None:
    config = budgets_from_text("budgets:\n  - {name: b, period: daily, amount_usd: 0.1, thresholds: [100]}\n")
    assert config.budgets[0].amount_usd == Decimal("0.1")  # a float would be 0.1000000000000000055...


def test_thresholds_are_sorted_and_defaults_apply() -> None:
    config = budgets_from_text(
        "budgets:\n  - {name: b, period: weekly, amount_usd: 10, thresholds: [100, 50]}\n"
    )
    budget = config.budgets[0]
    assert budget.thresholds == (50, 100)
    assert budget.time_zone == "UTC"
    assert budget.forecast is True
    assert budget.notify == ()


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
budgets:
  - name: ok
    period: monthly
    amount_usd: 100
  - name: bad
    period: fortnightly
    time_zone: Mars/Olympus
    amount_usd: -5
    thresholds: [50, 50]
    notify: [email]
    colour: red
  - name: ok
    period: daily
    amount_usd: 1
"""
    parsed = parse_budgets_text(text, "budgets.yaml")
    assert parsed.config is None
    lines = {(p.line, p.path) for p in parsed.problems}
    assert (6, "budgets[1].period") in lines
    assert (7, "budgets[1].time_zone") in lines
    assert (8, "budgets[1].amount_usd") in lines
    assert (9, "budgets[1].thresholds") in lines
    assert (10, "budgets[1].notify[0]") in lines
    assert (11, "budgets[1].colour") in lines
    messages = "\n".join(p.format() for p in parsed.problems)
    assert "unknown time zone 'Mars/Olympus'" in messages
    assert "unknown field 'colour'" in messages
    assert "used twice" in messages  # the duplicate name "ok"
    with pytest.raises(ConfigError, match=r"budgets.yaml:7: budgets\[1\]\.time_zone"):
        budgets_from_text(text, "budgets.yaml")


def test_duplicate_keys_and_bad_yaml_are_errors() -> None:
    parsed = parse_budgets_text("budgets:\n  - name: a\n    name: b\n    period: daily\n    amount_usd: 1\n")
    assert [(p.line, p.path) for p in parsed.problems] == [(3, "budgets[0].name")]
    broken = parse_budgets_text("budgets: [\n  {name: a\n")
    assert broken.config is None
    assert "not valid YAML" in broken.problems[0].message


def test_amount_precision_and_float_callers_are_refused() -> None:
    with pytest.raises(ConfigError, match="more than 6 decimals"):
        budgets_from_text("budgets:\n  - {name: b, period: daily, amount_usd: '1.0000001'}\n")
    with pytest.raises(ValueError, match="not a float"):
        Budget(name="b", period="daily", amount_usd=1.5)  # type: ignore[arg-type]


def test_empty_and_missing_files() -> None:
    assert budgets_from_text("").empty
    assert load_optional_budgets(None).empty
    with pytest.raises(ConfigError, match="does not exist"):
        load_budgets(Path("/nonexistent/budgets.yaml"))


def test_routes_without_url_are_a_config_error() -> None:
    config = BudgetsConfig.model_validate(
        {"budgets": [{"name": "b", "period": "daily", "amount_usd": "1", "notify": ["slack", "webhook"]}]}
    )
    check_routes(config, {"slack", "webhook"})
    with pytest.raises(ConfigError, match="webhook needs COSTLINE_ALERT_WEBHOOK_URL"):
        check_routes(config, {"slack"})
