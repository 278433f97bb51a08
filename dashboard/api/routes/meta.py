"""Who am I: the caller's role and teams, so a client can shape its views."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from costline.dashboard.api.auth import CurrentPrincipal

router = APIRouter(tags=["meta"])


class Me(BaseModel):
    """The token's name, role and teams (empty for roles that read every team)."""

    name: str
    role: str
    teams: list[str]
    sees_all_teams: bool


@router.get("/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    """The caller, as the API sees it."""
    return Me(
        name=principal.name,
        role=principal.role,
        teams=sorted(principal.teams),
        sees_all_teams=principal.sees_all_teams,
    )
