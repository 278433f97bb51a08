"""Bearer tokens for the read API: stored hashed in a YAML file, each mapped to a role.

`admin` and `finance` read every team; a `team` token reads only its own teams. The scope is
enforced where queries are built (the teams become the `team IN` parameter), never in the UI:
a request for a team outside the token's scope is answered 403, a missing or unknown token 401.

Tokens are 256-bit random strings, so an unsalted SHA-256 is enough to store them: nobody can
brute-force the preimage of a random 256-bit value, and lookup by hash needs no per-token salt.

The file looks like::

    tokens:
      - name: finance
        sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        role: finance
      - name: search-lead
        sha256: ...
        role: team
        teams: [search]
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from costline.schemas.errors import ConfigError

Role = Literal["admin", "finance", "team"]
ROLES: tuple[str, ...] = get_args(Role)
#: Roles that read every team.
ALL_TEAM_ROLES: frozenset[str] = frozenset({"admin", "finance"})
TOKEN_PREFIX = "cl_"


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to: its name, role and (for team tokens) teams."""

    name: str
    role: Role
    teams: frozenset[str] = field(default_factory=frozenset)

    @property
    def sees_all_teams(self) -> bool:
        """Admin and finance read every team, unattributed usage included."""
        return self.role in ALL_TEAM_ROLES

    def allowed_teams(self, requested: Sequence[str] | None) -> list[str] | None:
        """The teams a query may read: the requested ones if in scope, else all of the token's.

        `None` means every team (admin or finance without a filter). Raises `OutOfScope` when a
        team token asks for a team it does not own.
        """
        wanted = sorted({team for team in requested or () if team is not None})
        if wanted:
            if not self.sees_all_teams:
                outside = [team for team in wanted if team not in self.teams]
                if outside:
                    raise OutOfScope(self, outside)
            return wanted
        return None if self.sees_all_teams else sorted(self.teams)


class OutOfScope(Exception):
    """A team token asked for teams it may not read."""

    def __init__(self, principal: Principal, teams: Sequence[str]) -> None:
        super().__init__(f"token {principal.name!r} may not read team(s) {', '.join(teams)}")
        self.teams = list(teams)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (shown once, stored only as its hash)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class TokenStore:
    """Hashed tokens → principals."""

    def __init__(self, by_hash: Mapping[str, Principal] | None = None) -> None:
        self._by_hash = dict(by_hash or {})

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a presented token, or None."""
        return self._by_hash.get(hash_token(token))

    @classmethod
    def from_file(cls, path: Path) -> TokenStore:
        """Load a tokens file; a missing file is an empty store (every request gets 401)."""
        if not path.exists():
            return cls()
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read API tokens file {path}: {exc}") from exc
        entries = document.get("tokens") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f"API tokens file {path} must hold a `tokens:` list")
        by_hash: dict[str, Principal] = {}
        for number, entry in enumerate(entries, start=1):
            principal, digest = _parse_entry(entry, f"{path}: token #{number}")
            by_hash[digest] = principal
        return cls(by_hash)


def _parse_entry(entry: Any, where: str) -> tuple[Principal, str]:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with name, sha256, role (and teams)")
    name, digest, role = entry.get("name"), entry.get("sha256"), entry.get("role")
    teams = entry.get("teams") or []
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} needs a name")
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ConfigError(f"{where} ({name}) needs sha256: the 64-hex-digit SHA-256 of the token")
    if role not in ROLES:
        raise ConfigError(f"{where} ({name}) has role {role!r}; use one of {', '.join(ROLES)}")
    if not isinstance(teams, list) or not all(isinstance(t, str) and t for t in teams):
        raise ConfigError(f"{where} ({name}) teams must be a list of team names")
    if role == "team" and not teams:
        raise ConfigError(f"{where} ({name}) is a team token without teams")
    return Principal(name=name, role=role, teams=frozenset(teams)), digest


def add_token(path: Path, name: str, role: Role, teams: Sequence[str] = ()) -> str:
    """Create a token, append its hash to the tokens file and return the token (shown once)."""
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "team" and not teams:
        raise ConfigError("a team token needs at least one team")
    document: dict[str, Any] = {"tokens": []}
    if path.exists():
        document = yaml.safe_load(path.read_text()) or {"tokens": []}
        TokenStore.from_file(path)  # refuse to append to a broken file
    if any(entry.get("name") == name for entry in document["tokens"]):
        raise ConfigError(f"a token named {name!r} already exists in {path}; remove it first")
    token = new_token()
    entry: dict[str, Any] = {"name": name, "sha256": hash_token(token), "role": role}
    if teams:
        entry["teams"] = sorted(set(teams))
    document["tokens"].append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return token


_bearer = HTTPBearer(auto_error=False, description="A costline API token (`costline api token create`).")


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the caller, or 401."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    principal = request.app.state.tokens.authenticate(credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "unknown API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal  # type: ignore[no-any-return]


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


@dataclass(frozen=True)
class TeamScope:
    """The caller and the teams its query may read (`None`: every team)."""

    principal: Principal
    teams: list[str] | None


def team_scope(
    principal: CurrentPrincipal,
    team: Annotated[
        list[str] | None,
        Query(description="Only these teams (repeat the parameter); a team token may name only its own."),
    ] = None,
) -> TeamScope:
    """FastAPI dependency: the `team` query parameters checked against the token, or 403."""
    return TeamScope(principal, scope_or_403(principal, team))


def scope_or_403(principal: Principal, teams: Sequence[str] | None) -> list[str] | None:
    """`Principal.allowed_teams`, with an out-of-scope request turned into 403."""
    try:
        return principal.allowed_teams(teams)
    except OutOfScope as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc


Scope = Annotated[TeamScope, Depends(team_scope)]


def require_roles(*roles: Role) -> Any:
    """FastAPI dependency factory: 403 unless the caller has one of `roles`."""

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this endpoint needs the {' or '.join(roles)} role"
            )
        return principal

    return Depends(check)
