"""Eval files (YAML, CSV, per-line errors) and the exports (LiteLLM config shape, neutral round trip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.recommend.engine import Inputs, Overthinking, recommend
from costline.pipeline.recommend.evals import EvalFileError, parse_csv, parse_eval_file
from costline.pipeline.recommend.export import (
    PolicyError,
    dump_policy,
    export,
    litellm_model,
    load_policy,
    policy_from_rows,
)
from costline.pipeline.recommend.model import Window
from tests.unit.test_recommend_engine import (
    classification,
    evaluation,
    nightly,
    profile,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "evals"
UNTIL = datetime(2026, 11, 30, tzinfo=UTC)


def test_yaml_eval_file() -> None:
    results = parse_eval_file(FIXTURES / "good.yaml")
    assert [r.model for r in results] == ["claude-sonnet-4-6", "claude-haiku-4-5", "gpt-5-nano"]
    assert results[1].score == Decimal("0.94")  # a YAML number is read by its decimal spelling
    assert results[1].quality_floor == Decimal("0.02")
    assert results[0].evaluated_at == datetime(2026, 11, 20, tzinfo=UTC)
    assert {r.source for r in results} == {"nightly-eval-run-2026-11-20"}


def test_csv_eval_file() -> None:
    results = parse_eval_file(FIXTURES / "good.csv")
    assert [(r.model, r.score, r.quality_floor) for r in results] == [
        ("claude-sonnet-4-6", Decimal("0.95"), None),
        ("claude-haiku-4-5", Decimal("0.94"), Decimal("0.02")),
    ]
    assert results[0].source == "good.csv"


def test_csv_errors_name_every_bad_line() -> None:
    with pytest.raises(EvalFileError) as caught:
        parse_eval_file(FIXTURES / "bad.csv")
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 6"]
    assert "score" in problems[0]
    assert "less than or equal to 1" in problems[0]
    assert "sample_size" in problems[1]
    assert "evaluated_at" in problems[2]
    assert "8 values but the header has 7 columns" in problems[3]
    assert "nothing imported" in str(caught.value)


def test_yaml_errors_name_the_item_line() -> None:
    with pytest.raises(EvalFileError) as caught:
        parse_eval_file(FIXTURES / "bad.yaml")
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("line 9 (evals[1]): score: Field required")
    assert problems[1].startswith("line 15 (evals[2]): colour: Extra inputs are not permitted")


def test_csv_header_problems() -> None:
    with pytest.raises(EvalFileError) as caught:
        parse_csv("team,workload,model,score\nsupport,triage,m,0.5\n")
    assert "header lacks column(s) metric, sample_size, evaluated_at" in caught.value.problems[0]


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "evals.json"
    path.write_text("{}")
    with pytest.raises(EvalFileError, match=r"name it \.yaml, \.yml or \.csv"):
        parse_eval_file(path)


def rows() -> list[dict[str, object]]:
    """API rows of every kind, from the engine on synthetic workloads."""
    card = load_default_rate_card()
    window = Window(UNTIL - timedelta(days=7), UNTIL)
    from tests.unit.test_recommend_engine import cacheable

    cache_profile, group = cacheable(card, {"5m": 99, "30m": 99, "1h": 99, "12h": 99})
    profiles = [
        classification(card),
        nightly(card, {2: 50, 3: 50}),
        cache_profile,
        profile(
            card, "search", "answer", "openai", "gpt-5", 1000, {"input_uncached": 2000, "output_visible": 500}
        ),
    ]
    for p in profiles:
        p.window = window
    evals = [
        evaluation("support", "classify", "gpt-5", "0.97"),
        evaluation("support", "classify", "gpt-5-mini", "0.96"),
        evaluation("search", "answer", "gpt-5-nano", "0.8", metric="pass_rate"),
    ]
    flag = Overthinking("support", "classify", "openai", "gpt-5", 3, 100, Decimal(1))
    recs = recommend(
        Inputs(
            card,
            window,
            profiles,
            prefix_groups={cache_profile.key: [group]},
            overthinking=[flag],
            evals=evals,
        )
    )
    return [r.to_json() for r in recs]


def test_litellm_export_is_a_router_config() -> None:
    all_rows = rows()
    kinds = {r["kind"] for r in all_rows if r["status"] == "recommended"}
    assert kinds == {"model_switch", "reasoning_effort", "prompt_caching", "batch", "cascade"}
    text = export(all_rows, "litellm", UNTIL)
    config = yaml.safe_load(text)
    assert set(config) == {"model_list", "router_settings"}
    model_list = config["model_list"]
    assert isinstance(model_list, list)
    assert model_list
    for deployment in model_list:
        assert isinstance(deployment["model_name"], str)
        assert deployment["model_name"]
        params = deployment["litellm_params"]
        assert isinstance(params["model"], str)
        assert "/" in params["model"]
        assert set(deployment) <= {"model_name", "litellm_params", "model_info"}
    by_tag = {
        tag: d
        for d in model_list
        for tag in d["litellm_params"].get("tags", [])
        if tag.startswith("costline:")
    }
    classify = by_tag["costline:support/classify"]
    assert classify["model_name"] == "gpt-5"  # what the application asks for
    assert classify["litellm_params"]["model"] == "openai/gpt-5-mini"  # where it goes now
    assert classify["litellm_params"]["reasoning_effort"] == "minimal"
    reply = by_tag["costline:support/reply"]
    assert reply["litellm_params"]["cache_control_injection_points"] == [
        {"location": "message", "role": "system"}
    ]
    assert reply["model_info"]["costline_prompt_cache_ttl"] == "5m"
    defaults = [d for d in model_list if d["litellm_params"].get("tags") == ["default"]]
    assert {d["model_name"] for d in defaults} == {"gpt-5", "claude-sonnet-4-6"}
    settings = config["router_settings"]
    assert settings["enable_tag_filtering"] is True
    assert settings["fallbacks"] == [{"costline-cascade/search/answer": ["gpt-5"]}]
    assert "# batch: data-platform/nightly-report" in text
    # needs_eval candidates are not decisions: they never reach the gateway
    assert all(
        d["litellm_params"]["model"] != "openai/gpt-5-nano" or "cascade" in d["model_name"]
        for d in model_list
    )


def test_neutral_rules_round_trip() -> None:
    all_rows = rows()
    text = export(all_rows, "yaml", UNTIL)
    policy = load_policy(text)
    assert policy == policy_from_rows(all_rows, UNTIL)
    assert dump_policy(policy) == text
    assert len(policy.rules) == sum(1 for r in all_rows if r["status"] == "recommended")
    document = yaml.safe_load(text)
    assert document["schema"] == "costline.routing/v1"
    assert all(isinstance(rule["monthly_saving"], str) for rule in document["rules"])
    cascade = next(rule for rule in document["rules"] if rule["kind"] == "cascade")
    assert cascade["action"]["cascade"]["pass_rate"] == "0.8"


def test_neutral_rules_loader_rejects_bad_documents() -> None:
    text = export(rows(), "yaml", UNTIL)
    document = yaml.safe_load(text)
    document["rules"][0]["action"] = {"service_tier": "batch", "reasoning_effort": "low"}
    with pytest.raises(PolicyError, match="exactly the action"):
        load_policy(yaml.safe_dump(document))
    with pytest.raises(PolicyError, match="schema"):
        load_policy("schema: other/v9\nrules: []\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy("rules: [")


def test_litellm_model_names() -> None:
    assert litellm_model("gcp.gemini", "gemini-2.5-flash") == "gemini/gemini-2.5-flash"
    assert litellm_model("aws.bedrock", "amazon.nova-micro-v1:0") == "bedrock/amazon.nova-micro-v1:0"
    assert litellm_model("azure.ai.openai", "gpt-5") == "azure/gpt-5"
    assert litellm_model("mistral_ai", "mistral-small-latest") == "mistral/mistral-small-latest"
