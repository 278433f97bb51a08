"""Rate card files: strict YAML loading with line-precise errors, `validate` checks, the bundled card."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.litellm_import import import_litellm
from costline.pipeline.ratecard.load import (
    Problem,
    default_rate_card_path,
    load_default_rate_card,
    load_rate_card,
    rate_card_from_yaml_text,
    rate_card_to_yaml,
)
from costline.pipeline.ratecard.model import PRICE_KEYS, PriceSet, RateCardEntry
from costline.pipeline.ratecard.validate import format_problems, has_errors, validate_rate_card
from costline.schemas.errors import RateCardError
from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

REPO_ROOT = Path(__file__).resolve().parents[2]
LITELLM_MAP = REPO_ROOT.parent / "shared" / "data" / "litellm_model_prices.json"

HEADER = "schema: costline.ratecard/v1\nentries:\n"
GOOD_ENTRY = """\
  - id: openai/gpt-5@2026-01-01
    provider: openai
    model: gpt-5
    effective_from: 2026-01-01
    prices:
      input: "1.25"
      output: "10"
"""


def card_text(*entries: str) -> str:
    """A card from entry snippets that start with `- id:` (any common indentation)."""
    return HEADER + "".join(textwrap.indent(textwrap.dedent(e).strip("\n") + "\n", "  ") for e in entries)


def write(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing `needle` (so tests do not hard-code numbers)."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def load_errors(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(RateCardError) as info:
        load_rate_card(path)
    message = str(info.value)
    assert message.startswith(f"rate card {path} has ")
    return message.splitlines()[1:]


# --- loading ---------------------------------------------------------------------------------


def test_a_minimal_card_loads_with_exact_decimals(tmp_path: Path) -> None:
    card = load_rate_card(write(tmp_path, HEADER + GOOD_ENTRY))
    (entry,) = card.entries
    assert entry.prices == PriceSet(input=Decimal("1.25"), output=Decimal("10"))
    assert entry.effective_from == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_bare_float_price_is_an_error_on_its_line(tmp_path: Path) -> None:
    text = HEADER + GOOD_ENTRY.replace('input: "1.25"', "input: 1.25")
    errors = load_errors(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(
        f"{tmp_path / 'card.yaml'}:{line_of(text, 'input: 1.25')}: entries[0].prices.input: "
    )
    assert 'bare YAML number 1.25: write decimals as quoted strings ("1.25")' in errors[0]


def test_floats_are_refused_everywhere_but_integers_are_exact(tmp_path: Path) -> None:
    text = HEADER + GOOD_ENTRY.replace('input: "1.25"', "input: 2").replace('output: "10"', "output: 1e1")
    errors = load_errors(tmp_path, text)
    assert [e.split(": ")[1] for e in errors] == ["entries[0].prices.output"]
    assert errors[0].split(":")[1] == str(line_of(text, "output: 1e1"))
    card = load_rate_card(write(tmp_path, HEADER + GOOD_ENTRY.replace('input: "1.25"', "input: 2")))
    assert card.entries[0].prices is not None
    assert card.entries[0].prices.input == Decimal(2)


def test_an_unknown_field_is_an_error_on_its_line(tmp_path: Path) -> None:
    text = HEADER + GOOD_ENTRY + "    colour: blue\n"
    errors = load_errors(tmp_path, text)
    assert errors == [
        f"{tmp_path / 'card.yaml'}:{line_of(text, 'colour')}: entries[0].colour: "
        "unknown field 'colour': check its spelling against docs/ratecard.md"
    ]


def test_a_bad_date_is_an_error_on_its_line(tmp_path: Path) -> None:
    text = (
        HEADER
        + GOOD_ENTRY
        + GOOD_ENTRY.replace("gpt-5@", "gpt-6@").replace(
            "effective_from: 2026-01-01", "effective_from: 2026-13-01"
        )
    )
    errors = load_errors(tmp_path, text)
    assert len(errors) == 1
    assert errors[0].startswith(
        f"{tmp_path / 'card.yaml'}:{line_of(text, '2026-13-01')}: entries[1].effective_from: "
    )
    assert "month must be in 1..12" in errors[0]
    assert "'2026-13-01'" in errors[0]


def test_every_problem_is_listed_at_once_in_file_order(tmp_path: Path) -> None:
    text = (
        HEADER
        + GOOD_ENTRY.replace('input: "1.25"', "input: 1.5")
        + GOOD_ENTRY.replace('output: "10"', 'output: "-1"').replace(
            "    model: gpt-5\n", "    model: gpt-5\n    colour: red\n"
        )
    )
    errors = load_errors(tmp_path, text)
    lines = [int(e.split(":")[1]) for e in errors]
    assert lines == sorted(lines)
    assert [e.split(": ")[1] for e in errors] == [
        "entries[0].prices.input",
        "entries[1].id",  # duplicate id, found even though entry 1 has other errors
        "entries[1].colour",
        "entries[1].prices.output",
    ]


def test_yes_no_on_off_stay_strings_and_times_stay_times(tmp_path: Path) -> None:
    text = card_text(
        """
        - id: deepseek/deepseek-chat@2025-02-26
          provider: deepseek
          model: deepseek-chat
          aliases: [no, off, yes, on]
          effective_from: 2025-02-26T16:30:00Z
          prices: {input: "0.27", output: "1.1"}
          service_tiers:
            on: {multiplier: "0.5"}
          time_windows:
            - {name: off_peak, start: 16:30, end: 00:30, adjustment: {multiplier: "0.5"}}
        """
    )
    (entry,) = load_rate_card(write(tmp_path, text)).entries
    assert entry.aliases == ["no", "off", "yes", "on"]
    assert "on" in entry.service_tiers
    window = entry.time_windows[0]
    assert (window.start.hour, window.start.minute, window.end.hour, window.end.minute) == (16, 30, 0, 30)
    assert entry.effective_from == datetime(2025, 2, 26, 16, 30, tzinfo=UTC)


def test_a_key_given_twice_is_an_error_on_the_second_line(tmp_path: Path) -> None:
    text = HEADER + GOOD_ENTRY.replace('      output: "10"\n', '      output: "10"\n      input: "2"\n')
    errors = load_errors(tmp_path, text)
    second, first = line_of(text, 'input: "2"'), line_of(text, 'input: "1.25"')
    assert len(errors) == 1
    assert errors[0].startswith(f"{tmp_path / 'card.yaml'}:{second}: entries[0].prices.input: ")
    assert f"first on line {first}" in errors[0]


def test_a_card_without_schema_or_with_broken_yaml_says_where(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, "entries: []\n")
    assert errors == [
        f"{tmp_path / 'card.yaml'}:1: schema: missing `schema: costline.ratecard/v1` at the top; "
        "add it so the format version is known"
    ]
    text = HEADER + GOOD_ENTRY + "  - id: [unclosed\n"
    errors = load_errors(tmp_path, text)
    assert len(errors) == 1
    assert "not valid YAML" in errors[0]
    assert int(errors[0].split(":")[1]) >= line_of(text, "unclosed")


def test_a_missing_file_is_a_rate_card_error(tmp_path: Path) -> None:
    with pytest.raises(RateCardError, match="does not exist"):
        load_rate_card(tmp_path / "nope.yaml")


def test_rate_card_from_yaml_text_names_the_file() -> None:
    with pytest.raises(RateCardError, match=r"^rate card mine\.yaml has 1 problem"):
        rate_card_from_yaml_text(HEADER + GOOD_ENTRY.replace('"10"', "10.0"), "mine.yaml")


# --- validate --------------------------------------------------------------------------------


def validate(tmp_path: Path, text: str) -> list[Problem]:
    return validate_rate_card(write(tmp_path, text))


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, format_problems(problems)
    return problems[0]


def entry(
    model: str = "gpt-5",
    start: str = "2026-01-01",
    end: str | None = None,
    extra: str = "",
    prices: str = '{input: "1.25", cache_read: "0.125", output: "10"}',
    eid: str | None = None,
) -> str:
    """One entry snippet; `extra` is written at the level of the entry's keys, without indentation."""
    text = f"- id: {eid or f'openai/{model}@{start}'}\nprovider: openai\nmodel: {model}\n"
    text += f"effective_from: {start}\nprices: {prices}\n"
    if end:
        text += f"effective_to: {end}\n"
    text += textwrap.dedent(extra)
    first, _, rest = text.partition("\n")
    return first + "\n" + textwrap.indent(rest, "  ")


def test_a_clean_card_has_no_problems(tmp_path: Path) -> None:
    problems = validate(tmp_path, card_text(entry(end="2026-06-01"), entry(start="2026-06-01")))
    assert problems == []
    assert format_problems(problems) == "no problems found"
    assert not has_errors(problems)


def test_overlapping_periods_of_one_model_are_an_error(tmp_path: Path) -> None:
    text = card_text(entry(), entry(start="2026-06-01"))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path) == ("error", "entries[1].effective_from")
    assert problem.line == line_of(text, "effective_from: 2026-06-01")
    assert "overlaps entry 'openai/gpt-5@2026-01-01'" in problem.message
    assert f"(line {line_of(text, 'id: openai/gpt-5@2026-01-01')})" in problem.message


def test_an_alias_shared_with_another_model_in_force_is_an_error(tmp_path: Path) -> None:
    aliased = "aliases: [gpt-5-mini]\n"
    text = card_text(entry(extra=aliased), entry(model="gpt-5-mini"))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[1].model",
        line_of(text, "model: gpt-5-mini"),
    )
    assert "'gpt-5-mini'" in problem.message
    assert "alias of openai/gpt-5" in problem.message
    # Not in force at the same time: fine.
    assert (
        validate(
            tmp_path,
            card_text(entry(end="2026-03-01", extra=aliased), entry(model="gpt-5-mini", start="2026-03-01")),
        )
        == []
    )


def test_the_same_alias_on_two_models_in_force_is_an_error(tmp_path: Path) -> None:
    text = card_text(entry(extra="aliases: [latest]\n"), entry(model="gpt-6", extra="aliases: [latest]\n"))
    problem = only(validate(tmp_path, text))
    assert (problem.path, problem.line) == ("entries[1].aliases[0]", line_of(text, "aliases: [latest]", 2))


def test_a_gap_between_entries_of_one_model_is_a_warning(tmp_path: Path) -> None:
    text = card_text(entry(end="2026-03-01"), entry(start="2026-06-01"))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "warning",
        "entries[1].effective_from",
        line_of(text, "effective_from: 2026-06-01"),
    )
    assert "gap in openai/gpt-5" in problem.message
    assert "events then are unpriced" in problem.message


def test_a_negative_price_is_an_error(tmp_path: Path) -> None:
    text = card_text(entry(prices='{input: "-1", output: "10"}'))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[0].prices.input",
        line_of(text, '"-1"'),
    )
    assert "greater than or equal to 0" in problem.message


def test_context_tiers_out_of_order_are_an_error_on_the_tier(tmp_path: Path) -> None:
    tiers = """\
      context_tiers:
        - above_input_tokens: 272000
          prices: {input: "3"}
        - above_input_tokens: 200000
          prices: {input: "2.5"}
    """
    text = card_text(entry(extra=tiers))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[0].context_tiers[1].above_input_tokens",
        line_of(text, "above_input_tokens: 200000"),
    )


def test_a_tier_cheaper_than_the_base_is_a_warning(tmp_path: Path) -> None:
    tiers = """\
      context_tiers:
        - above_input_tokens: 200000
          prices:
            input: "2.5"
            output: "9"
    """
    text = card_text(entry(extra=tiers))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "warning",
        "entries[0].context_tiers[0].prices.output",
        line_of(text, 'output: "9"'),
    )


def test_cache_read_above_input_is_a_warning(tmp_path: Path) -> None:
    text = card_text(entry(prices='{input: "1", cache_read: "2", output: "10"}'))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path) == ("warning", "entries[0].prices.cache_read")
    assert problem.line == line_of(text, "prices:")


@pytest.mark.parametrize(("value", "fragment"), [("11", "outside (0, 10]"), ("0", "greater than 0")])
def test_a_multiplier_above_ten_or_not_positive_is_an_error(
    tmp_path: Path, value: str, fragment: str
) -> None:
    text = card_text(entry(extra=f'geo:\n  us: {{multiplier: "{value}"}}\n'))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[0].geo.us.multiplier",
        line_of(text, "us: {multiplier"),
    )
    assert fragment in problem.message


def test_a_per_key_multiplier_above_ten_is_an_error(tmp_path: Path) -> None:
    text = card_text(entry(extra='service_tiers:\n  batch:\n    multipliers: {input: "0.5", output: "50"}\n'))
    problem = only(validate(tmp_path, text))
    assert (problem.path, problem.line) == (
        "entries[0].service_tiers.batch.multipliers.output",
        line_of(text, "multipliers:"),
    )


def test_a_request_price_that_is_no_request_counter_is_an_error(tmp_path: Path) -> None:
    text = card_text(entry(extra='request_prices:\n  web_search_requests: "0.01"\n  web_searches: "0.01"\n'))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[0].request_prices.web_searches",
        line_of(text, "web_searches:"),
    )
    assert "web_search_requests, web_fetch_requests, code_execution_requests" in problem.message


def test_an_unknown_service_tier_is_a_warning(tmp_path: Path) -> None:
    text = card_text(
        entry(extra='service_tiers:\n  batch: {multiplier: "0.5"}\n  bacth: {multiplier: "0.5"}\n')
    )
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "warning",
        "entries[0].service_tiers.bacth",
        line_of(text, "bacth:"),
    )


def test_effective_to_before_effective_from_is_an_error_on_effective_to(tmp_path: Path) -> None:
    text = card_text(entry(end="2025-06-01"))
    problem = only(validate(tmp_path, text))
    assert (problem.severity, problem.path, problem.line) == (
        "error",
        "entries[0].effective_to",
        line_of(text, "effective_to: 2025-06-01"),
    )


def test_format_problems_is_file_line_severity_path_message(tmp_path: Path) -> None:
    text = card_text(entry(end="2026-03-01"), entry(start="2026-06-01", prices="{input: 1.5}"))
    output = format_problems(validate(tmp_path, text)).splitlines()
    path = tmp_path / "card.yaml"
    assert output == [
        f"{path}:{line_of(text, 'effective_from: 2026-06-01')}: warning: entries[1].effective_from: gap in "
        "openai/gpt-5: no entry from 2026-03-01 (end of 'openai/gpt-5@2026-01-01', "
        f"line {line_of(text, 'effective_to: 2026-03-01')}) to 2026-06-01; events then are unpriced",
        f"{path}:{line_of(text, 'input: 1.5')}: error: entries[1].prices.input: bare YAML number 1.5: "
        'write decimals as quoted strings ("1.5") so no YAML tool reads them as binary floats',
        "1 error(s), 1 warning(s)",
    ]
    assert has_errors(validate(tmp_path, text))


def test_validate_reports_an_unreadable_file_as_a_problem(tmp_path: Path) -> None:
    problem = only(validate_rate_card(tmp_path / "missing.yaml"))
    assert problem.severity == "error"
    assert "does not exist" in problem.message


# --- the bundled card ------------------------------------------------------------------------


def test_the_default_card_loads_and_validates_without_problems() -> None:
    assert load_default_rate_card() is load_default_rate_card()  # read once per process
    assert validate_rate_card(default_rate_card_path()) == []


def test_the_default_card_round_trips_through_the_writer() -> None:
    card = load_default_rate_card()
    assert rate_card_from_yaml_text(rate_card_to_yaml(card)) == card


def default_entry(provider: str, model: str) -> RateCardEntry:
    found = [e for e in load_default_rate_card().entries if e.provider == provider and e.model == model]
    assert len(found) == 1, f"{provider}/{model}"
    return found[0]


def d(value: str) -> Decimal:
    return Decimal(value)


def test_default_prices_of_the_worked_example_models() -> None:
    sonnet = default_entry("anthropic", "claude-sonnet-4-6")
    assert sonnet.prices == PriceSet(
        input=d("3"), cache_write_5m=d("3.75"), cache_write_1h=d("6"), cache_read=d("0.30"), output=d("15")
    )
    gpt5 = default_entry("openai", "gpt-5")
    assert gpt5.prices == PriceSet(
        input=d("1.25"), cache_write_30m=d("1.25"), cache_read=d("0.125"), output=d("10")
    )
    assert "gpt-5-2025-08-07" in gpt5.aliases
    assert "claude-sonnet-4-5-20250929" in default_entry("anthropic", "claude-sonnet-4-5").aliases
    pro = default_entry("gcp.gemini", "gemini-2.5-pro")
    assert pro.prices is not None
    assert (pro.prices.input, pro.prices.output) == (d("1.25"), d("10"))
    (tier,) = pro.context_tiers
    assert (tier.above_input_tokens, tier.prices.input, tier.prices.output) == (200_000, d("2.50"), d("15"))
    v4 = default_entry("deepseek", "deepseek-v4-pro")
    assert v4.prices is not None
    assert (v4.prices.input, v4.prices.cache_read, v4.prices.output) == (d("1.32"), d("0.044"), d("3.96"))
    for model in ("claude-opus-4-6", "claude-sonnet-4-6"):
        assert default_entry("anthropic", model).geo["us"].multiplier == d("1.1")
    assert "us" not in default_entry("anthropic", "claude-opus-4-5").geo
    for provider, model in [
        ("openai", "gpt-5"),
        ("anthropic", "claude-sonnet-4-6"),
        ("aws.bedrock", "amazon.nova-pro-v1:0"),
        ("azure.ai.openai", "gpt-5"),
        ("mistral_ai", "mistral-large-latest"),
    ]:
        assert default_entry(provider, model).service_tiers["batch"].multiplier == d("0.5")


def price(provider: str, model: str, when: datetime, **tokens: int) -> Decimal:
    event = UsageEvent.model_validate(
        {
            "event_id": "e-1",
            "occurred_at": when,
            "source": "test",
            "provider": provider,
            "response_model": model,
            "tokens": tokens,
        },
        context={CHECK_TIME_WINDOW: False},
    )
    priced = Pricer(load_default_rate_card()).price(event)
    assert priced.status == "priced", priced.reason
    return priced.effective_cost


TUESDAY = datetime(2026, 11, 3, tzinfo=UTC)


def test_the_worked_examples_price_exactly_with_the_default_card() -> None:
    at_2 = TUESDAY.replace(hour=2)
    sonnet = price(
        "anthropic",
        "claude-sonnet-4-6",
        at_2,
        input_uncached=1_000,
        cache_write_5m=2_000,
        cache_read=10_000,
        output_visible=500,
    )
    assert sonnet == d("0.0210")
    gpt5 = price(
        "openai",
        "gpt-5-2025-08-07",
        at_2,
        input_uncached=2_000,
        cache_read=10_000,
        output_visible=500,
        output_reasoning=1_500,
    )
    assert gpt5 == d("0.02375")
    gemini = price(
        "gcp.gemini",
        "gemini-2.5-pro",
        at_2,
        input_uncached=250_000,
        output_visible=1_000,
        output_reasoning=3_000,
    )
    assert gemini == d("0.685")
    v4 = {"input_uncached": 20_000, "cache_read": 80_000, "output_visible": 1_000}
    assert price("deepseek", "deepseek-v4-pro", at_2, **v4) == d("0.03388")
    assert price("deepseek", "deepseek-v4-pro", TUESDAY.replace(hour=12), **v4) == d("0.01694")
    saturday_2 = datetime(2026, 11, 7, 2, tzinfo=UTC)
    assert price("deepseek", "deepseek-v4-pro", saturday_2, **v4) == d("0.01694")


def test_deepseek_reasoner_had_its_nightly_discount_until_september_2025() -> None:
    day, night = datetime(2025, 6, 3, 12, tzinfo=UTC), datetime(2025, 6, 3, 17, tzinfo=UTC)
    tokens = {"input_uncached": 1_000_000}
    assert price("deepseek", "deepseek-reasoner", day, **tokens) == d("0.55")
    assert price("deepseek", "deepseek-reasoner", night, **tokens) == d("0.135")
    assert price("deepseek", "deepseek-chat", night, **tokens) == d("0.135")
    assert price("deepseek", "deepseek-reasoner", datetime(2025, 9, 10, 17, tzinfo=UTC), **tokens) == d(
        "0.56"
    )
    assert price("deepseek", "deepseek-reasoner", TUESDAY, **tokens) == d("0.28")


# --- the bundled card agrees with the LiteLLM map --------------------------------------------

_KEY = re.compile(r"LiteLLM \S+ key (\S+)$")
#: Entries whose direct key LiteLLM dropped: compare with the key their source names.
_CROSS_CHECKS = {
    ("anthropic", "claude-opus-4-1"): "anthropic.claude-opus-4-1-20250805-v1:0",
    ("anthropic", "claude-sonnet-4"): "anthropic.claude-sonnet-4-20250514-v1:0",
    ("anthropic", "claude-3-5-haiku"): "anthropic.claude-3-5-haiku-20241022-v1:0",
}


@pytest.fixture(scope="module")
def litellm_map() -> dict[str, dict[str, object]]:
    assert LITELLM_MAP.is_file(), (
        f"{LITELLM_MAP} is missing: the shared data directory must be next to the repo"
    )
    data: dict[str, dict[str, object]] = json.loads(LITELLM_MAP.read_text(encoding="utf-8"))
    return data


def _given(prices: PriceSet) -> dict[str, Decimal]:
    return {k: getattr(prices, k) for k in PRICE_KEYS if getattr(prices, k) is not None}


def test_default_entries_carry_the_litellm_prices_exactly(litellm_map: dict[str, dict[str, object]]) -> None:
    checked = 0
    for ours in load_default_rate_card().entries:
        match = _KEY.search(" ".join((ours.source or "").split()))
        key = match.group(1) if match else _CROSS_CHECKS.get((ours.provider, ours.model))
        if key is None:
            continue
        theirs = import_litellm({key: litellm_map[key]}, effective_from=ours.effective_from).card.entries[0]
        assert theirs.prices is not None
        assert ours.prices is not None
        for name, value in _given(theirs.prices).items():
            assert getattr(ours.prices, name) == value, (ours.id, key, name)
        for tier in theirs.context_tiers:
            (mine,) = [t for t in ours.context_tiers if t.above_input_tokens == tier.above_input_tokens]
            for name, value in _given(tier.prices).items():
                assert getattr(mine.prices, name) == value, (ours.id, key, tier.above_input_tokens, name)
        for tier_name, adjustment in theirs.service_tiers.items():
            if (ours.provider, ours.model) in _CROSS_CHECKS:
                break
            assert tier_name in ours.service_tiers, (ours.id, tier_name)
            explicit = _given(adjustment.prices) if adjustment.prices else None
            keys = explicit or (adjustment.multipliers or _given(theirs.prices))
            want, got = adjustment.apply(theirs.prices), ours.service_tiers[tier_name].apply(ours.prices)
            for name in keys:
                assert got.get(name) == want.get(name), (ours.id, tier_name, name)
        for region, adjustment in theirs.geo.items():
            assert ours.geo.get(region) == adjustment, (ours.id, region)
        for counter, value in theirs.request_prices.items():
            if (ours.provider, ours.model) not in _CROSS_CHECKS:
                assert ours.request_prices.get(counter) == value, (ours.id, counter)
        checked += 1
    assert checked >= 40
