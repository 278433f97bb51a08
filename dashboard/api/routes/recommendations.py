"""Routing recommendations and the eval results that gate them.

`GET /recommendations` reads the latest stored computation (the worker recomputes periodically;
`POST /recommendations/refresh` recomputes now). `GET /recommendations/export` turns the
recommended rows in scope into a LiteLLM config or neutral YAML rules. `POST /evals` stores eval
results: all or nothing, every bad row named; a team token may post only for its own teams.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import PlainTextResponse

from costline.dashboard.api.auth import CurrentPrincipal, Scope, require_roles, scope_or_403
from costline.dashboard.api.store import Store
from costline.pipeline.ratecard.load import load_default_rate_card, load_rate_card
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.recommend.evals import EvalFileError, EvalResult, validate_rows
from costline.pipeline.recommend.export import export
from costline.pipeline.recommend.model import KINDS, STATUSES, Window
from costline.pipeline.store.recommendations import (
    compute_and_store,
    fetch_evals,
    fetch_latest,
    insert_evals,
    latest_run,
)
from costline.schemas.settings import Settings

router = APIRouter(tags=["recommendations"])

#: Most eval results one POST may carry.
MAX_EVALS_PER_REQUEST = 10_000


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _card(settings: Settings) -> RateCard:
    return load_rate_card(settings.ratecard_path) if settings.ratecard_path else load_default_rate_card()


def _check(value: str | None, allowed: tuple[str, ...], name: str) -> None:
    if value is not None and value not in allowed:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown {name} {value!r}; use one of {', '.join(allowed)}",
        )


@router.get("/recommendations")
async def recommendations(
    scope: Scope,
    store: Store,
    workload: Annotated[str | None, Query(description="Only this workload.")] = None,
    kind: Annotated[
        str | None, Query(description="model_switch, reasoning_effort, prompt_caching, batch, cascade")
    ] = None,
    status_: Annotated[str | None, Query(alias="status", description="recommended or needs_eval")] = None,
) -> dict[str, Any]:
    """The latest computation's recommendations in scope, ranked by monthly saving."""
    _check(kind, KINDS, "kind")
    _check(status_, STATUSES, "status")
    latest, rows = await store.run(fetch_latest, scope.teams, workload, kind, status_)
    return {
        "computed_at": _iso(latest["computed_at"]) if latest else None,
        "window": {"since": _iso(latest["window_start"]), "until": _iso(latest["window_end"])}
        if latest
        else None,
        "rows": rows,
    }


@router.post("/recommendations/refresh", dependencies=[require_roles("admin", "finance")])
async def refresh(request: Request, store: Store) -> dict[str, Any]:
    """Recompute now over the configured window and store the run."""
    settings: Settings = request.app.state.settings
    card = _card(settings)
    window = Window.last_days(settings.recommend_window_days)
    run_id, count = await store.run(compute_and_store, card, window, "api")
    latest = await store.run(latest_run)
    return {
        "run_id": run_id,
        "recommendations": count,
        "computed_at": _iso(latest["computed_at"]) if latest else None,
        "window": {"since": _iso(window.since), "until": _iso(window.until)},
    }


@router.get("/recommendations/export", response_class=PlainTextResponse)
async def export_policy(
    scope: Scope,
    store: Store,
    format_: Annotated[
        Literal["litellm", "yaml"], Query(alias="format", description="litellm or yaml")
    ] = "yaml",
    workload: Annotated[str | None, Query(description="Only this workload.")] = None,
) -> PlainTextResponse:
    """The recommended rows in scope as a LiteLLM router config or neutral YAML rules."""
    latest, rows = await store.run(fetch_latest, scope.teams, workload, None, "recommended")
    generated = latest["computed_at"] if latest else datetime.now(UTC)
    text = export(rows, format_, generated)
    filename = "litellm_config.yaml" if format_ == "litellm" else "routing_rules.yaml"
    return PlainTextResponse(
        text,
        media_type="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/evals")
async def evals(
    scope: Scope,
    store: Store,
    workload: Annotated[str | None, Query(description="Only this workload.")] = None,
) -> dict[str, Any]:
    """Stored eval results in scope."""
    results = await store.run(fetch_evals, scope.teams, workload)
    return {"rows": [r.to_json() for r in results]}


@router.post("/evals", status_code=status.HTTP_201_CREATED)
async def post_evals(
    principal: CurrentPrincipal,
    store: Store,
    body: Annotated[
        dict[str, Any], Body(description='{"evals": [{team, workload, model, metric, score, ...}]}')
    ],
) -> dict[str, Any]:
    """Store eval results (all or nothing); 422 names every bad row, 403 any team out of scope."""
    items = body.get("evals")
    if not isinstance(items, list) or not items:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body needs a non-empty `evals` list")
    if len(items) > MAX_EVALS_PER_REQUEST:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"at most {MAX_EVALS_PER_REQUEST} results per request"
        )
    source = body.get("source")
    default_source = source if isinstance(source, str) and source else f"api:{principal.name}"
    try:
        results: list[EvalResult] = validate_rows(
            ((f"evals[{i}]", item) for i, item in enumerate(items)), default_source
        )
    except EvalFileError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "; ".join(exc.problems)) from exc
    scope_or_403(principal, sorted({r.team for r in results}))
    stored = await store.run(insert_evals, results)
    return {"stored": stored}
