"""Tokens file parsing, hashing, add_token and the team-scope logic of principals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from costline.dashboard.api.auth import OutOfScope, Principal, TokenStore, add_token, hash_token, new_token
from costline.dashboard.api.server import FileTokens
from costline.schemas.errors import ConfigError

DIGEST = "a" * 64


def write(path: Path, entries: object) -> Path:
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


def test_hash_is_sha256_of_the_token_and_tokens_are_random() -> None:
    token = new_token()
    assert token.startswith("cl_")
    assert len(token) > 40
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    assert new_token() != token


def test_add_token_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.yaml"
    admin = add_token(path, "ops", "admin")
    team = add_token(path, "search", "team", ["search", "ads", "search"])
    text = path.read_text()
    assert admin not in text
    assert team not in text
    assert path.stat().st_mode & 0o777 == 0o600
    store = TokenStore.from_file(path)
    assert store.authenticate(admin) == Principal("ops", "admin")
    assert store.authenticate(team) == Principal("search", "team", frozenset({"search", "ads"}))
    assert store.authenticate("cl_guess") is None
    assert yaml.safe_load(text)["tokens"][1]["teams"] == ["ads", "search"]


@pytest.mark.parametrize(
    ("name", "role", "teams", "message"),
    [
        ("x", "root", (), "role 'root'"),
        ("x", "team", (), "needs at least one team"),
        ("ops", "admin", (), "already exists"),
    ],
)
def test_add_token_refuses(
    tmp_path: Path, name: str, role: str, teams: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "tokens.yaml"
    add_token(path, "ops", "admin")
    before = path.read_text()
    with pytest.raises(ConfigError, match=message):
        add_token(path, name, role, teams)  # type: ignore[arg-type]
    assert path.read_text() == before


def test_add_token_refuses_to_append_to_a_broken_file(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.yaml", [{"name": "x", "sha256": "short", "role": "admin"}])
    with pytest.raises(ConfigError, match="64-hex-digit"):
        add_token(path, "y", "admin")


def test_missing_file_is_an_empty_store(tmp_path: Path) -> None:
    assert len(TokenStore.from_file(tmp_path / "none.yaml")) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tokens: [", "cannot read"),
        ("- just a list", "must hold a `tokens:` list"),
        ("tokens: {a: 1}", "must hold a `tokens:` list"),
        ("tokens: [ops]", "must be a mapping"),
        (f"tokens: [{{sha256: {DIGEST}, role: admin}}]", "needs a name"),
        ("tokens: [{name: a, sha256: XYZ, role: admin}]", "64-hex-digit"),
        (f"tokens: [{{name: a, sha256: {'A' * 64}, role: admin}}]", "64-hex-digit"),
        (f"tokens: [{{name: a, sha256: {DIGEST}, role: owner}}]", "role 'owner'"),
        (f"tokens: [{{name: a, sha256: {DIGEST}, role: team}}]", "without teams"),
        (f"tokens: [{{name: a, sha256: {DIGEST}, role: team, teams: search}}]", "must be a list"),
        (f"tokens: [{{name: a, sha256: {DIGEST}, role: team, teams: ['']}}]", "must be a list"),
    ],
)
def test_broken_files_say_what_is_wrong(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        TokenStore.from_file(path)


def test_admin_and_finance_see_every_team() -> None:
    for role in ("admin", "finance"):
        principal = Principal("p", role)  # type: ignore[arg-type]
        assert principal.sees_all_teams
        assert principal.allowed_teams(None) is None
        assert principal.allowed_teams([]) is None
        assert principal.allowed_teams(["zeta", "alpha", "zeta"]) == ["alpha", "zeta"]


def test_team_token_scope() -> None:
    principal = Principal("lead", "team", frozenset({"search", "ads"}))
    assert not principal.sees_all_teams
    assert principal.allowed_teams(None) == ["ads", "search"]  # never None: never every team
    assert principal.allowed_teams(["search"]) == ["search"]
    with pytest.raises(OutOfScope) as refused:
        principal.allowed_teams(["search", "growth", ""])
    assert refused.value.teams == ["", "growth"]
    assert "lead" in str(refused.value)


def test_file_tokens_pick_up_new_tokens_and_survive_a_broken_edit(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    first = add_token(path, "ops", "admin")
    tokens = FileTokens(path)
    second = add_token(path, "cfo", "finance")
    assert tokens.authenticate(second) == Principal("cfo", "finance")
    path.write_text("tokens: [")  # a half-written edit keeps the last good tokens
    assert tokens.authenticate(first) == Principal("ops", "admin")
    path.unlink()
    assert tokens.authenticate(first) is None
