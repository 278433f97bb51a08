"""The team view: one team's summary, workloads, models, usage stats and daily spend in one call.

One scan of the team's slice of `usage_events FINAL` grouped by (workload, model) feeds the
summary, both spend tables and the usage stats (exact sums folded in Python); the daily series
reads the rollups. A team token asking for another team gets 403.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from clickhouse_connect.driver import Client
from fastapi import APIRouter, Path
from pydantic import BaseModel

from costline.dashboard.api import queries
from costline.dashboard.api.auth import CurrentPrincipal, scope_or_403
from costline.dashboard.api.params import Range
from costline.dashboard.api.routes.spend import (
    Point,
    SpendRow,
    Summary,
    UsageStatsRow,
    forecast_for,
    point_out,
    spend_row,
    summary_out,
    usage_row,
)
from costline.dashboard.api.store import Store

router = APIRouter(tags=["teams"])


class TeamView(BaseModel):
    """Everything the team page shows."""

    team: str
    summary: Summary
    workloads: list[SpendRow]
    models: list[SpendRow]
    usage_stats: list[UsageStatsRow]
    daily: list[Point]


TeamName = Annotated[str, Path(min_length=1, max_length=200, description="The team's name.")]


@router.get("/teams/{team}", response_model=TeamView)
async def team_view(team: TeamName, principal: CurrentPrincipal, window: Range, store: Store) -> TeamView:
    """One team over `since`..`until` (default: month to date); 403 outside the token's teams."""
    teams = scope_or_403(principal, [team])
    data = await store.run(team_data, window.since, window.until, teams)
    return TeamView(
        team=team,
        summary=summary_out(window.since, window.until, data["total"], data["forecast"]),
        workloads=[spend_row(key, p) for key, p in data["workloads"]],
        models=[spend_row(key, p) for key, p in data["models"]],
        usage_stats=[usage_row(key, p) for key, p in data["workloads"]],
        daily=[point_out(p, grouped=False) for p in data["daily"]],
    )


def team_data(
    client: Client, since: datetime, until: datetime, teams: Sequence[str] | None
) -> dict[str, Any]:
    """The team view's numbers (on the store's thread)."""
    rows = queries.fetch_profiles(client, ("workload", "model"), since, until, teams)
    total = queries.fold(rows, None)
    profile = total[0][1] if total else queries.Profile()
    return {
        "total": profile,
        "forecast": forecast_for(client, since, until, teams, profile.effective_cost),
        "workloads": queries.fold(rows, 0),
        "models": queries.fold(rows, 1),
        "daily": queries.fetch_timeseries(client, "day", None, since, until, teams),
    }
