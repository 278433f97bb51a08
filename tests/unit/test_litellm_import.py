"""LiteLLM price map import: the whole shared map converts, exactly, and the report accounts for every key."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.litellm_import import (
    UNDATED_EFFECTIVE_FROM,
    ImportResult,
    import_litellm,
    import_litellm_file,
    write_rate_card_yaml,
)
from costline.pipeline.ratecard.load import load_rate_card
from costline.pipeline.ratecard.model import PriceSet, RateCardEntry
from costline.pipeline.ratecard.validate import check_entries
from costline.schemas.errors import RateCardError
from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

REPO_ROOT = Path(__file__).resolve().parents[2]
LITELLM_MAP = REPO_ROOT.parent / "shared" / "data" / "litellm_model_prices.json"
SNAPSHOT = datetime(2026, 11, 12, tzinfo=UTC)


def d(value: str) -> Decimal:
    return Decimal(value)


@pytest.fixture(scope="module")
def litellm_map() -> dict[str, Any]:
    # A missing file must fail the suite, not skip it: the import is only tested on the real map.
    assert LITELLM_MAP.is_file(), (
        f"{LITELLM_MAP} is missing: the shared data directory must be next to the repo"
    )
    data: dict[str, Any] = json.loads(LITELLM_MAP.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def imported(litellm_map: dict[str, Any]) -> ImportResult:
    return import_litellm(litellm_map, effective_from=SNAPSHOT)


def entry_of(result: ImportResult, provider: str, model: str) -> RateCardEntry:
    found = [e for e in result.card.entries if e.provider == provider and e.model == model]
    assert len(found) == 1, f"{provider}/{model}"
    return found[0]


# --- the whole map ---------------------------------------------------------------------------


def test_every_key_of_the_map_is_accounted_for_exactly_once(
    litellm_map: dict[str, Any], imported: ImportResult
) -> None:
    report = imported.report
    keys = [e.key for e in report.imported] + [m.key for m in report.merged] + [s.key for s in report.skipped]
    assert sorted(keys) == sorted(litellm_map)
    assert len(imported.card.entries) == len(report.imported)
    counts = report.counts()
    assert counts["all"]["priced"] + counts["all"]["skipped"] == len(litellm_map)
    chat = counts["chat"]
    assert chat["priced"] / (chat["priced"] + chat["skipped"]) > 0.95
    assert all(s.reason for s in report.skipped)


def test_the_imported_card_has_no_validation_errors(imported: ImportResult) -> None:
    problems = check_entries(enumerate(imported.card.entries), "litellm")
    assert [p for p in problems if p.severity == "error"] == []


def test_every_imported_entry_says_what_was_and_was_not_mapped(imported: ImportResult) -> None:
    sonnet = next(e for e in imported.report.imported if e.key == "claude-sonnet-4-6")
    assert sonnet.entry_id == "litellm/anthropic/claude-sonnet-4-6@2026-11-12"
    assert sonnet.mapped["input_cost_per_token"] == "prices.input"
    assert sonnet.mapped["cache_creation_input_token_cost_above_1hr"] == "prices.cache_write_1h"
    assert sonnet.mapped["input_cost_per_token_batches"].startswith("service_tiers.batch")
    assert sonnet.mapped["provider_specific_entry"] == "geo.us.multiplier"
    assert sonnet.mapped["search_context_cost_per_query"] == (
        "request_prices.web_search_requests (all context sizes cost the same)"
    )
    assert sonnet.unmapped["supports_tool_choice"] == "capability costline does not track"
    flash = next(e for e in imported.report.imported if e.key == "gemini/gemini-2.5-flash")
    assert flash.unmapped["input_cost_per_audio_token"].startswith("audio prices")


def test_keys_without_a_token_price_are_skipped_with_a_reason(imported: ImportResult) -> None:
    skipped = {s.key: s for s in imported.report.skipped}
    assert skipped["sample_spec"].reason == "template entry, not a model"
    per_second = skipped["bedrock/us-east-1/1-month-commitment/anthropic.claude-v1"]
    assert per_second.reason == "no per-token text price (priced per second)"
    assert "input_cost_per_second" in per_second.detail
    images = [s for s in imported.report.skipped if s.mode == "image_generation"]
    assert images
    assert all(s.reason.startswith(("no per-token text price", "no price at all")) for s in images)
    reasons = imported.report.skip_reasons()
    assert reasons.most_common(1)[0][0] == "no per-token text price (priced per image)"


# --- hand-computed entries -------------------------------------------------------------------


def test_claude_sonnet_4_6_converts_to_the_per_mtok_list_prices(imported: ImportResult) -> None:
    entry = entry_of(imported, "anthropic", "claude-sonnet-4-6")
    assert entry.id == "litellm/anthropic/claude-sonnet-4-6@2026-11-12"
    assert entry.effective_from == SNAPSHOT
    assert entry.prices == PriceSet(
        input=d("3"), cache_write_5m=d("3.75"), cache_write_1h=d("6"), cache_read=d("0.3"), output=d("15")
    )
    assert entry.service_tiers["batch"].prices == PriceSet(
        input=d("1.5"), cache_write_5m=d("1.875"), cache_read=d("0.15"), output=d("7.5")
    )
    assert entry.geo["us"].multiplier == d("1.1")
    assert entry.request_prices == {"web_search_requests": d("0.01")}
    assert entry.context_window == 1_000_000
    assert {"reasoning", "tools", "vision", "prompt_caching"} <= set(entry.capabilities)


def test_gpt_5_converts_with_its_service_tiers(imported: ImportResult) -> None:
    entry = entry_of(imported, "openai", "gpt-5")
    assert entry.prices == PriceSet(input=d("1.25"), cache_read=d("0.125"), output=d("10"))
    half = PriceSet(input=d("0.625"), cache_read=d("0.0625"), output=d("5"))
    assert entry.service_tiers["batch"].prices == half
    assert entry.service_tiers["flex"].prices == half
    assert entry.service_tiers["priority"].prices == PriceSet(
        input=d("2.5"), cache_read=d("0.25"), output=d("20")
    )
    assert (entry.context_window, entry.max_output_tokens) == (272_000, 128_000)


def test_gemini_2_5_pro_gets_its_long_context_tier_and_tier_aware_batch(imported: ImportResult) -> None:
    entry = entry_of(imported, "gcp.gemini", "gemini-2.5-pro")
    assert entry.prices == PriceSet(input=d("1.25"), cache_read=d("0.125"), output=d("10"))
    (tier,) = entry.context_tiers
    assert tier.above_input_tokens == 200_000
    assert tier.prices == PriceSet(input=d("2.5"), cache_read=d("0.25"), output=d("15"))
    # Batch halves input and output but not cache reads, at both context sizes: per-key multipliers.
    batch = entry.service_tiers["batch"]
    assert batch.multipliers == {"input": d("0.5"), "output": d("0.5"), "cache_read": d("1")}
    long_batch = batch.apply(tier.prices.merged_over(entry.prices))
    assert (long_batch.input, long_batch.output, long_batch.cache_read) == (d("1.25"), d("7.5"), d("0.25"))
    assert entry.service_tiers["priority"].multiplier == d("1.8")
    vertex = entry_of(imported, "gcp.vertex_ai", "gemini-2.5-pro")
    assert vertex.context_tiers[0].prices.input == d("2.5")


def test_float_artefacts_are_rounded_half_even_and_listed(imported: ImportResult) -> None:
    entry = entry_of(imported, "databricks", "databricks-gemini-2-5-flash")
    assert entry.prices is not None
    assert entry.prices.input == d("0.30002")  # 3.0001999999999996e-07 per token
    artefact = next(
        a
        for a in imported.report.float_artefacts
        if (a.key, a.field) == ("databricks/databricks-gemini-2-5-flash", "input_cost_per_token")
    )
    assert (artefact.raw, artefact.exact_per_mtok, artefact.rounded_per_mtok) == (
        "3.0001999999999996e-07",
        "0.30001999999999996",
        "0.30002",
    )
    sonnet_41 = entry_of(imported, "databricks", "databricks-claude-sonnet-4-1")
    assert sonnet_41.prices is not None
    assert sonnet_41.prices.input == d("2.99999")  # 2.9999900000000002e-06


def test_regional_keys_become_geo_adjustments_of_their_model(imported: ImportResult) -> None:
    azure = entry_of(imported, "azure.ai.openai", "gpt-5-2025-08-07")
    assert azure.geo["eu"].multiplier == d("1.1")
    assert azure.geo["us"].multiplier == d("1.1")
    merged = next(m for m in imported.report.merged if m.key == "azure/eu/gpt-5-2025-08-07")
    assert merged.entry_id == azure.id
    assert "service-tier prices equal service tier × geo" in merged.how
    gov = entry_of(imported, "aws.bedrock", "amazon.nova-lite-v1:0")
    assert gov.geo["us-gov-west-1"].multiplier == d("1.2")  # 0.072 / 0.06


def test_openai_cache_writes_land_in_the_30_minute_and_12_hour_buckets(imported: ImportResult) -> None:
    entry = entry_of(imported, "openai", "gpt-5.6")
    assert entry.prices is not None
    assert (entry.prices.cache_write_30m, entry.prices.cache_write_12h) == (d("5"), d("10"))
    assert entry.prices.cache_write_5m is None


def test_tiered_pricing_ranges_become_context_tiers(imported: ImportResult) -> None:
    entry = entry_of(imported, "dashscope", "qwen3-coder-plus")
    assert entry.prices is not None
    assert (entry.prices.input, entry.prices.output) == (d("1"), d("5"))
    assert [t.above_input_tokens for t in entry.context_tiers] == [32_000, 128_000, 256_000]
    assert entry.context_tiers[-1].prices.output == d("60")


def test_deepseek_off_peak_windows_price_the_worked_example(imported: ImportResult) -> None:
    pricer = Pricer(imported.card)

    def cost(when: datetime) -> Decimal:
        event = UsageEvent.model_validate(
            {
                "event_id": "e-1",
                "occurred_at": when,
                "source": "test",
                "provider": "deepseek",
                "response_model": "deepseek-v4-pro",
                "tokens": {"input_uncached": 20_000, "cache_read": 80_000, "output_visible": 1_000},
            },
            context={CHECK_TIME_WINDOW: False},
        )
        return pricer.price(event).effective_cost

    assert cost(datetime(2026, 11, 17, 2, tzinfo=UTC)) == d("0.03388")  # Tuesday 02:00, peak
    assert cost(datetime(2026, 11, 17, 12, tzinfo=UTC)) == d("0.01694")  # Tuesday 12:00, off-peak
    assert cost(datetime(2026, 11, 21, 2, tzinfo=UTC)) == d("0.01694")  # Saturday 02:00, off-peak


# --- small maps: the rules one at a time -----------------------------------------------------


def one(value: dict[str, Any], key: str = "acme/model-x") -> ImportResult:
    return import_litellm(
        {key: {"litellm_provider": "acme", "mode": "chat", **value}}, effective_from=SNAPSHOT
    )


def test_prices_are_converted_exactly_from_the_float_text() -> None:
    result = one(
        {
            "input_cost_per_token": 1.1e-06,
            "output_cost_per_token": 4.4e-06,
            "cache_read_input_token_cost": 5e-08,
        }
    )
    (entry,) = result.card.entries
    assert entry.prices == PriceSet(input=d("1.1"), output=d("4.4"), cache_read=d("0.05"))
    assert result.report.float_artefacts == []
    assert entry.model == "model-x"
    assert entry.id == "litellm/acme/model-x@2026-11-12"


def test_a_sub_grid_price_rounds_half_even() -> None:
    result = one({"input_cost_per_token": 2.5000005e-06, "output_cost_per_token": 2.5000015e-06})
    (entry,) = result.card.entries
    assert entry.prices is not None
    assert (entry.prices.input, entry.prices.output) == (d("2.5"), d("2.500002"))
    assert [a.field for a in result.report.float_artefacts] == [
        "input_cost_per_token",
        "output_cost_per_token",
    ]


def test_inconsistent_tier_variants_fall_back_to_explicit_prices_and_say_so() -> None:
    result = one(
        {
            "input_cost_per_token": 1e-06,
            "input_cost_per_token_above_200k_tokens": 2e-06,
            "input_cost_per_token_batches": 5e-07,
            "input_cost_per_token_above_200k_tokens_batches": 1.5e-06,
        }
    )
    (entry,) = result.card.entries
    assert entry.service_tiers["batch"].prices == PriceSet(input=d("0.5"))
    (report,) = result.report.imported
    assert "input_cost_per_token_above_200k_tokens_batches" in report.unmapped
    assert report.mapped["input_cost_per_token_batches"].startswith("service_tiers.batch (explicit prices")


def test_search_cost_takes_the_medium_context_size_and_says_which() -> None:
    result = one(
        {
            "input_cost_per_token": 1e-06,
            "search_context_cost_per_query": {
                "search_context_size_low": 0.025,
                "search_context_size_medium": 0.0275,
                "search_context_size_high": 0.03,
            },
        }
    )
    assert result.card.entries[0].request_prices == {"web_search_requests": d("0.0275")}
    mapped = result.report.imported[0].mapped["search_context_cost_per_query"]
    assert "search_context_size_medium of search_context_size_high" in mapped


def test_duplicate_keys_merge_and_conflicting_ones_are_skipped() -> None:
    base = {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06}
    result = import_litellm(
        {
            "gpt-x": {**base, "output_cost_per_token": 2e-06},
            "openai/gpt-x": base,
            "openai/GPT-X": {**base, "input_cost_per_token": 3e-06},
        },
        effective_from=SNAPSHOT,
    )
    assert [e.id for e in result.card.entries] == ["litellm/openai/gpt-x@2026-11-12"]
    assert [(m.key, m.how) for m in result.report.merged] == [
        ("openai/gpt-x", "same model and prices (duplicate key)")
    ]
    assert [s.key for s in result.report.skipped] == ["openai/GPT-X"]


def test_a_regional_key_without_its_model_is_skipped() -> None:
    result = import_litellm(
        {"azure/eu/o9": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 1e-06}},
        effective_from=SNAPSHOT,
    )
    assert result.card.entries == []
    assert result.report.skipped[0].reason == "regional price without a base entry for its model"


def test_bad_input_is_a_rate_card_error(tmp_path: Path) -> None:
    with pytest.raises(RateCardError, match="timezone"):
        import_litellm({}, effective_from=datetime(2026, 1, 1))
    path = tmp_path / "card.json"
    path.write_text('{"schema": "costline.ratecard/v1", "entries": []}', encoding="utf-8")
    with pytest.raises(RateCardError, match="not a LiteLLM price map"):
        import_litellm_file(path, effective_from=SNAPSHOT)


# --- writing and reading back ----------------------------------------------------------------


def test_the_whole_imported_card_round_trips_through_yaml(imported: ImportResult, tmp_path: Path) -> None:
    path = tmp_path / "card.yaml"
    write_rate_card_yaml(imported.card, path, header="imported from LiteLLM 1.109.1")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# imported from LiteLLM 1.109.1\nschema: costline.ratecard/v1\n")
    assert 'input: "3"' in text
    assert "&id" not in text  # no YAML anchors: every entry reads on its own
    assert load_rate_card(path) == imported.card


def test_load_rate_card_converts_a_litellm_json_on_the_fly(imported: ImportResult) -> None:
    card = load_rate_card(LITELLM_MAP)
    assert len(card.entries) == len(imported.card.entries)
    assert all(e.effective_from == UNDATED_EFFECTIVE_FROM for e in card.entries)
    assert (
        entry_of(ImportResult(card, imported.report), "openai", "gpt-5").prices
        == entry_of(imported, "openai", "gpt-5").prices
    )
