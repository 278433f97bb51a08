"""Embedded mode: the worker serves the read API from the store it owns, with tokens from its file."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from clickhouse_connect.driver import Client

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.dashboard.api.auth import add_token
from costline.pipeline.worker import build_worker
from costline.schemas.errors import ConfigError
from costline.schemas.settings import Settings
from tests.integration.conftest import unique_name, unused_port
from tests.integration.test_api_data import T0 as MARCH
from tests.integration.test_api_data import WIDE, expected_totals, load_fixture, selected, stored
from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(
    broker: LocalBroker, chdb_dsn: str, chdb_client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_usage_topic=unique_name("usage"),
        kafka_dlq_topic=unique_name("dlq"),
        kafka_signals_topic=unique_name("signals"),
        worker_group=unique_name("worker"),
        clickhouse_dsn=chdb_dsn,
        metrics_port=unused_port(),
        api_port=unused_port(),
        api_tokens_path=tmp_path_factory.mktemp("api") / "tokens.yaml",
        rollup_interval_s=1.0,
    )


@pytest.fixture(scope="module")
def worker(settings: Settings, chdb_client: Client) -> Iterator[ThreadedWorker]:
    load_fixture(chdb_client)
    create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))
    running = ThreadedWorker(settings).start()
    yield running
    running.stop()


def test_worker_serves_the_api(settings: Settings, worker: ThreadedWorker) -> None:
    assert settings.api_tokens_path is not None
    token = add_token(settings.api_tokens_path, "ops", "admin")  # created while the worker runs
    team = add_token(settings.api_tokens_path, "search", "team", ["search"])
    base = f"http://127.0.0.1:{settings.api_port}"

    def up() -> bool:
        worker.check()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, JOIN_TIMEOUT_S, "the read API on the worker")
    assert httpx.get(f"{base}/api/v1/summary", timeout=10).status_code == 401
    body = httpx.get(
        f"{base}/api/v1/summary", params=WIDE, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()
    want = expected_totals(stored())
    assert body["events"] == want["events"]
    assert Decimal(body["effective_cost"]) == want["effective_cost"]
    assert body["tokens"] == want["tokens"]
    mine = httpx.get(
        f"{base}/api/v1/spend", params=WIDE, headers={"Authorization": f"Bearer {team}"}, timeout=30
    ).json()
    assert [row["key"] for row in mine["rows"]] == ["search"]
    assert mine["rows"][0]["events"] == len(selected(MARCH, MARCH.replace(month=4), ["search"]))


def test_a_taken_port_is_a_clear_error(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port}.*COSTLINE_API_PORT"):
            build_worker(settings.model_copy(update={"api_port": port, "metrics_port": unused_port()}))


def test_tokens_path_is_where_settings_say(settings: Settings) -> None:
    assert settings.resolved_api_tokens_path() == settings.api_tokens_path
    assert isinstance(settings.api_tokens_path, Path)
