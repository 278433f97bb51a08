"""The published OpenAPI spec (docs/openapi.json) is the app's: every router in ROUTERS, no drift."""

from __future__ import annotations

import json
from pathlib import Path

from costline.dashboard.api.app import API_PREFIX, ROUTERS, openapi_document

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_published_spec_matches_the_app() -> None:
    published = json.loads(SPEC.read_text())
    assert published == openapi_document(), "regenerate it: costline api openapi > docs/openapi.json"


def test_spec_lists_every_route_of_every_router() -> None:
    paths = openapi_document()["paths"]
    for router in ROUTERS:
        for route in router.routes:
            if getattr(route, "include_in_schema", True):
                assert API_PREFIX + route.path in paths  # type: ignore[attr-defined]


def test_every_operation_needs_the_bearer_token() -> None:
    spec = openapi_document()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("security") == [{"HTTPBearer": []}], f"{method} {path}"
