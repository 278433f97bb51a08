"""Assemble the read API: routers under `/api/v1`, the token store, the store access, errors.

`create_api` is used by the worker (embedded mode, store calls on the sink's thread) and by
`costline api` (standalone, against a ClickHouse server).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from clickhouse_connect.driver import Client
from fastapi import APIRouter, FastAPI, Request, status
from fastapi.responses import JSONResponse

from costline.dashboard.api.auth import TokenStore
from costline.dashboard.api.routes import anomalies as anomaly_routes
from costline.dashboard.api.routes import budgets, events, finance, meta, recommendations, spend, teams
from costline.dashboard.api.store import StoreAccess
from costline.schemas.errors import ConfigError, CostlineError, StoreError
from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"

#: Every router of the API, in the order the OpenAPI spec lists them.
ROUTERS: list[APIRouter] = [
    meta.router,
    spend.router,
    teams.router,
    events.router,
    budgets.router,
    finance.router,
    recommendations.router,
    anomaly_routes.router,
]


def create_api(store: StoreAccess, tokens: TokenStore, settings: Settings) -> FastAPI:
    """The FastAPI app; its OpenAPI spec is served at `/api/v1/openapi.json`."""
    app = FastAPI(
        title="costline read API",
        version="1",
        description="LLM spend, chargeback, anomalies, budgets and recommendations, scoped by token.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.state.tokens = tokens
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        logger.warning("store error on %s: %s", request.url.path, exc)
        return JSONResponse(
            {"detail": "the store could not answer; try again"}, status.HTTP_503_SERVICE_UNAVAILABLE
        )

    @app.exception_handler(ConfigError)
    async def config_failed(request: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_500_INTERNAL_SERVER_ERROR)

    @app.exception_handler(CostlineError)
    async def bad_request(request: Request, exc: CostlineError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status.HTTP_400_BAD_REQUEST)

    return app


def openapi_document() -> dict[str, Any]:
    """The OpenAPI spec of every router in ROUTERS (no store or tokens needed to describe them)."""
    app = create_api(StoreAccess(cast(Client, None)), TokenStore(), Settings())
    return app.openapi()
