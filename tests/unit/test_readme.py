"""The README stays true: every setting is documented, and its two commands exist in the Makefile."""

from __future__ import annotations

import re
from pathlib import Path

from costline.schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_in_the_readme() -> None:
    documented = set(re.findall(r"`(COSTLINE_[A-Z_]+)`", README))
    expected = {f"COSTLINE_{name.upper()}" for name in Settings.model_fields}
    assert expected - documented == set(), "document these settings in README.md"
    assert documented - expected == set(), "README.md documents settings that do not exist"


def test_the_two_commands_are_make_targets_and_ci_runs_the_test_one() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "make run" in README
    assert "make test" in README
    assert re.search(r"^run:", makefile, re.M)
    assert re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_settings_pass_to_a_child_process_unchanged_secrets_included() -> None:
    from pydantic import SecretStr

    settings = Settings(
        user_hash_salt=SecretStr("pepper"), metrics_port=12345, clickhouse_dsn="http://u:p@h:8123/db"
    )
    env = settings.to_env()
    assert env["COSTLINE_USER_HASH_SALT"] == "pepper"
    assert env["COSTLINE_CLICKHOUSE_DSN"] == "http://u:p@h:8123/db"
    assert Settings(**{k.removeprefix("COSTLINE_").lower(): v for k, v in env.items()}) == settings
