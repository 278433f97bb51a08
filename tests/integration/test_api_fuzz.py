"""Schemathesis fuzzes every operation of the OpenAPI spec with an admin token: no 5xx anywhere.

The spec is the app's own (all routers in ROUTERS), so routers added later are fuzzed too. POST
operations are left out: they change shared state (closing periods, refreshing recommendations)
and their bodies are checked by their own tests.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from clickhouse_connect.driver import Client
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from costline.dashboard.api.app import API_PREFIX
from costline.dashboard.api.store import StoreAccess
from tests.integration.test_api_data import load_fixture, make_app

pytestmark = pytest.mark.integration

#: Examples per operation: enough to hit odd strings, numbers and dates, small enough for < 60 s.
EXAMPLES = 25


#: The app is built at import (schemathesis reads its spec to generate the tests); its store is
#: attached by the fixture below, before any request is made.
APP = make_app(None)  # type: ignore[arg-type]
schema = schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", APP).include(method="GET")


@pytest.fixture(autouse=True, scope="module")
def _store(chdb_client: Client) -> None:
    load_fixture(chdb_client)
    APP.state.store = StoreAccess(chdb_client)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    response = case.call(headers={"Authorization": "Bearer tok-admin"})
    case.validate_response(response, checks=[not_a_server_error])
