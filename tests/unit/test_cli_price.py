"""`costline price`: JSON lines in, priced JSON lines out, bad lines reported by number."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from costline.cli import EXIT_SOME_LINES_FAILED, app

SONNET = {
    "event_id": "e1",
    "occurred_at": "2026-11-20T10:00:00Z",
    "source": "cli",
    "provider": "anthropic",
    "response_model": "claude-sonnet-4-6",
    "tokens": {"input_uncached": 1000, "cache_write_5m": 2000, "cache_read": 10000, "output_visible": 500},
}


def run(stdin: str, *args: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(app, ["price", *args], input=stdin)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.stderr


def test_prices_the_worked_example_with_the_bundled_card() -> None:
    code, [priced], _ = run(json.dumps(SONNET) + "\n")
    assert code == 0
    assert Decimal(str(priced["effective_cost"])) == Decimal("0.021")
    assert priced["status"] == "priced"


def test_bad_lines_are_reported_with_their_number_and_the_rest_is_priced() -> None:
    old = {**SONNET, "event_id": "old", "occurred_at": "2019-01-01T00:00:00Z"}  # history is fine offline
    lines = [
        json.dumps(SONNET),
        "{not json",
        json.dumps({**SONNET, "tokens": {"input_uncached": -1}}),
        "",
        json.dumps(old),
        json.dumps({**SONNET, "response_model": None}),
    ]
    code, priced, stderr = run("\n".join(lines) + "\n")
    assert code == EXIT_SOME_LINES_FAILED
    assert [p["event"]["event_id"] for p in priced] == ["e1", "old"]  # type: ignore[index]
    assert "line 2: <event>: Invalid JSON" in stderr
    assert "line 3: tokens.input_uncached: Input should be greater than or equal to 0" in stderr
    assert "line 6:" in stderr
    assert "3 line(s) failed" in stderr


def test_unknown_models_come_out_unpriced_with_a_reason() -> None:
    code, [priced], _ = run(json.dumps({**SONNET, "response_model": "claude-99"}) + "\n")
    assert code == 0
    assert priced["status"] == "unpriced"
    assert "claude-99" in str(priced["reason"])


def test_a_custom_card_and_a_file_argument(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(
        "schema: costline.ratecard/v1\nentries:\n  - id: mine\n    provider: anthropic\n"
        "    model: claude-sonnet-4-6\n    effective_from: 2026-01-01\n"
        '    prices: {input: "1", output: "1"}\n',
        encoding="utf-8",
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({**SONNET, "tokens": {"input_uncached": 1_000_000}}) + "\n", encoding="utf-8"
    )
    code, [priced], _ = run("", str(events), "--ratecard", str(card))
    assert code == 0
    assert priced["ratecard_entry_id"] == "mine"
    assert Decimal(str(priced["effective_cost"])) == Decimal(1)


def test_an_unreadable_card_is_a_clear_error(tmp_path: Path) -> None:
    code, _, stderr = run("", "--ratecard", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "missing.yaml" in stderr
