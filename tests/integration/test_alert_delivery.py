"""Alert delivery against real local HTTP servers: Block Kit payload, retries, refusals, secrecy, outbox."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from clickhouse_connect.driver import Client
from pydantic import SecretStr

from costline.pipeline.alerts.deliver import Deliverer, RetryPolicy, Route
from costline.pipeline.alerts.engine import AlertEngine
from costline.pipeline.alerts.model import DeliveryAttempt
from costline.pipeline.alerts.slack import build_message
from costline.pipeline.alerts.webhook import build_payload
from costline.pipeline.budgets.config import BudgetsConfig
from costline.pipeline.store.alerts import fetch_deliveries, insert_deliveries
from tests.integration.test_budget_alerts import (
    FakeClock,
    direct,
    spend_event,
    write,
)

pytestmark = pytest.mark.integration

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.2, timeout=5.0)
SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxsecrettoken"


class WebhookServer:
    """A real HTTP server on 127.0.0.1 answering each POST with the next scripted status (then 200)."""

    def __init__(self, statuses: list[int] | None = None, *, retry_after: str | None = None) -> None:
        self.statuses = list(statuses or [])
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server.lock:
                    status = server.statuses.pop(0) if server.statuses else 200
                    server.requests.append(
                        {
                            "at": time.time(),
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": json.loads(body),
                            "status": status,
                        }
                    )
                self.send_response(status)
                if server.retry_after and status in (429, 503):
                    self.send_header("Retry-After", server.retry_after)
                text = b"ok" if status == 200 else (b"no_service" if status == 404 else b"rollup_error")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{SECRET_PATH}"

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.requests]

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def alert_store(store: Client) -> Client:
    """The session store with no events and no alerts."""
    store.command("TRUNCATE TABLE alerts")
    store.command("TRUNCATE TABLE alert_deliveries")
    return store


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    with WebhookServer() as running:
        yield running


def recorder(client: Client):  # type: ignore[no-untyped-def]
    async def record(attempt: DeliveryAttempt) -> None:
        insert_deliveries(client, [attempt])

    return record


def budget_config(name: str, team: str, route: str = "slack", amount: str = "10") -> BudgetsConfig:
    return BudgetsConfig.model_validate(
        {
            "budgets": [
                {
                    "name": name,
                    "scope": {"team": team},
                    "period": "monthly",
                    "amount_usd": amount,
                    "thresholds": [80],
                    "forecast": False,
                    "notify": [route],
                }
            ]
        }
    )


def engine_for(
    client: Client,
    config: BudgetsConfig,
    server: WebhookServer,
    clock: FakeClock,
    policy: RetryPolicy = FAST,
    *,
    deliver: bool = True,
) -> AlertEngine:
    routes = {
        "slack": Route("slack", SecretStr(server.url), build_message),
        "webhook": Route("webhook", SecretStr(server.url.replace("/services/", "/hooks/")), build_payload),
    }
    deliverer = Deliverer(routes, recorder(client), policy) if deliver else None
    return AlertEngine(
        config, direct(client), deliverer, dashboard_url="http://dash.example:8501", clock=clock
    )


def cross_80_percent(client: Client, team: str, clock: FakeClock) -> None:
    at = clock.now.replace(hour=1)
    write(
        client,
        [
            spend_event(f"{team}-1", at, team, "rag", 5, model="gpt-4.1"),
            spend_event(f"{team}-2", at, team, "summarize", 2, model="gpt-4.1-mini"),
            spend_event(f"{team}-3", at, team, "rag", 1, model="gpt-4.1"),
        ],
    )


async def run_once(engine: AlertEngine) -> list[Any]:
    result = await engine.tick()
    if engine.deliverer is not None:
        await engine.deliverer.drain(30)
    return result.fired


def outcomes(client: Client, alert_id: str) -> list[tuple[int, str, int | None]]:
    return [(a.attempt, a.outcome, a.status_code) for a in fetch_deliveries(client, [alert_id])]


def test_slack_message_is_block_kit_with_spend_forecast_drivers_and_link(
    alert_store: Client, server: WebhookServer
) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "slackteam", clock)
    engine = engine_for(alert_store, budget_config("slack-b", "slackteam"), server, clock)
    fired = asyncio.run(run_once(engine))
    assert len(fired) == 1
    (message,) = server.bodies()
    assert message["text"].startswith("Budget slack-b crossed 80%")
    types = [block["type"] for block in message["blocks"]]
    assert types == ["header", "section", "section", "section", "actions", "context"]
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert "crossed 80%" in header["text"]
    assert len(header["text"]) <= 150
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in message["blocks"][1]["fields"]}
    assert fields["*Crossed*"] == "80% of the budget"
    assert fields["*Spent*"] == "$8.00 of $10.00 (80.00%)"
    assert fields["*Scope*"] == "team slackteam"
    assert fields["*Period*"] == "2026-06 (UTC)"
    assert "*Forecast to period end*" in fields
    models = message["blocks"][2]["text"]["text"]
    assert models.splitlines() == ["*Top models*", "• gpt-4.1 — $6.00", "• gpt-4.1-mini — $2.00"]
    workloads = message["blocks"][3]["text"]["text"]
    assert workloads.splitlines() == ["*Top workloads*", "• rag — $6.00", "• summarize — $2.00"]
    assert message["blocks"][4]["elements"][0]["url"] == "http://dash.example:8501"
    assert fired[0].alert_id in message["blocks"][5]["elements"][0]["text"]
    assert outcomes(alert_store, fired[0].alert_id) == [(1, "delivered", 200)]


def test_generic_webhook_carries_exact_figures(alert_store: Client, server: WebhookServer) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "hookteam", clock)
    engine = engine_for(alert_store, budget_config("hook-b", "hookteam", route="webhook"), server, clock)
    (alert,) = asyncio.run(run_once(engine))
    (body,) = server.bodies()
    assert body["schema"] == "costline.alert.v1"
    assert body["alert_id"] == alert.alert_id
    assert body["spent"] == "8.000000000000"
    assert body["amount"] == "10"
    assert body["threshold"] == 80
    assert body["period_start"] == "2026-06-01T00:00:00Z"
    assert body["period_end"] == "2026-07-01T00:00:00Z"
    assert body["details"]["top_models"][0] == {"key": "gpt-4.1", "cost": "6.000000000000"}
    assert server.requests[0]["headers"]["X-Costline-Alert-Id"] == alert.alert_id


def test_server_errors_are_retried_with_backoff_until_delivered(alert_store: Client) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "retryteam", clock)
    with WebhookServer([500, 503]) as server:
        engine = engine_for(alert_store, budget_config("retry-b", "retryteam"), server, clock)
        (alert,) = asyncio.run(run_once(engine))
        assert outcomes(alert_store, alert.alert_id) == [
            (1, "retrying", 500),
            (2, "retrying", 503),
            (3, "delivered", 200),
        ]
        times = [r["at"] for r in server.requests]
        assert times[1] - times[0] >= FAST.backoff(1) * 0.9
        assert times[2] - times[1] >= FAST.backoff(2) * 0.9
        assert server.bodies()[0] == server.bodies()[2]  # the same message every time
        errors = [a.error for a in fetch_deliveries(alert_store, [alert.alert_id])]
        assert errors[0] == "HTTP 500: rollup_error"


def test_a_404_is_recorded_failed_and_not_retried(alert_store: Client) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "goneteam", clock)
    with WebhookServer([404, 404, 404]) as server:
        engine = engine_for(alert_store, budget_config("gone-b", "goneteam"), server, clock)
        (alert,) = asyncio.run(run_once(engine))
        time.sleep(0.5)  # longer than every backoff of FAST: a retry would have happened
        assert len(server.requests) == 1
        assert outcomes(alert_store, alert.alert_id) == [(1, "failed", 404)]
        # and a restarted engine does not try again: failed is terminal
        again = engine_for(alert_store, budget_config("gone-b", "goneteam"), server, clock)
        assert asyncio.run(run_once(again)) == []
        assert len(server.requests) == 1


def test_retries_stop_after_max_attempts(alert_store: Client) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "downteam", clock)
    with WebhookServer([503] * 10, retry_after="0") as server:
        engine = engine_for(alert_store, budget_config("down-b", "downteam"), server, clock)
        (alert,) = asyncio.run(run_once(engine))
        assert len(server.requests) == FAST.max_attempts
        recorded = outcomes(alert_store, alert.alert_id)
        assert [o for _, o, _ in recorded] == ["retrying"] * (FAST.max_attempts - 1) + ["failed"]
        assert "gave up after 4 attempts" in fetch_deliveries(alert_store, [alert.alert_id])[-1].error


def test_unreachable_webhook_is_retried_as_a_transport_error(alert_store: Client) -> None:
    from tests.integration.conftest import unused_port

    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "refusedteam", clock)
    routes = {
        "slack": Route("slack", SecretStr(f"http://127.0.0.1:{unused_port()}{SECRET_PATH}"), build_message)
    }
    deliverer = Deliverer(routes, recorder(alert_store), RetryPolicy(max_attempts=2, initial_backoff=0.01))
    engine = AlertEngine(
        budget_config("refused-b", "refusedteam"), direct(alert_store), deliverer, clock=clock
    )
    (alert,) = asyncio.run(run_once(engine))
    attempts = fetch_deliveries(alert_store, [alert.alert_id])
    assert [(a.outcome, a.status_code) for a in attempts] == [("retrying", None), ("failed", None)]
    assert "ConnectError" in attempts[0].error
    assert all(SECRET_PATH not in a.error for a in attempts)


def test_the_webhook_url_is_never_logged(alert_store: Client, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "secretteam", clock)
    caplog.set_level(logging.DEBUG)
    with WebhookServer([500]) as server:
        engine = engine_for(alert_store, budget_config("secret-b", "secretteam"), server, clock)
        asyncio.run(run_once(engine))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "HTTP Request: POST" in text  # httpx did log its requests...
    assert "<slack URL>" in text  # ...with the URL replaced by the route name
    assert "SECRET" not in text
    assert "xoxsecrettoken" not in text


def test_an_alert_written_but_never_delivered_is_delivered_once_after_a_restart(
    alert_store: Client, server: WebhookServer
) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "crashteam", clock)
    config = budget_config("crash-b", "crashteam")
    # the worker "dies" right after the outbox write: the alert row exists, nothing was sent
    crashed = engine_for(alert_store, config, server, clock, deliver=False)
    (alert,) = asyncio.run(run_once(crashed))
    assert server.requests == []
    # a restarted worker resumes the delivery and fires nothing new
    restarted = engine_for(alert_store, config, server, clock)

    async def restart() -> tuple[int, list[Any]]:
        result = await restarted.tick()
        assert restarted.deliverer is not None
        await restarted.deliverer.drain(30)
        return result.resumed, result.fired

    resumed, fired = asyncio.run(restart())
    assert (resumed, fired) == (1, [])
    assert [b["text"].split(":")[0] for b in server.bodies()] == [
        "Budget crash-b crossed 80% (2026-06 (UTC))"
    ]
    # and once more: delivered is terminal, nothing is resent
    assert asyncio.run(restart()) == (0, [])
    assert len(server.requests) == 1
    assert outcomes(alert_store, alert.alert_id) == [(1, "delivered", 200)]


def test_a_delivery_cut_off_while_retrying_resumes_with_the_next_attempt(
    alert_store: Client, server: WebhookServer
) -> None:
    clock = FakeClock(datetime(2026, 6, 15, 12, tzinfo=UTC))
    cross_80_percent(alert_store, "midteam", clock)
    config = budget_config("mid-b", "midteam")
    crashed = engine_for(alert_store, config, server, clock, deliver=False)
    (alert,) = asyncio.run(run_once(crashed))
    # what a worker killed during its backoff leaves behind: two failed tries, no outcome
    insert_deliveries(
        alert_store,
        [
            DeliveryAttempt(alert.alert_id, "slack", n, datetime.now(UTC), "retrying", 500, "HTTP 500", 3)
            for n in (1, 2)
        ],
    )
    restarted = engine_for(alert_store, config, server, clock)
    asyncio.run(run_once(restarted))
    assert len(server.requests) == 1
    assert outcomes(alert_store, alert.alert_id) == [
        (1, "retrying", 500),
        (2, "retrying", 500),
        (3, "delivered", 200),
    ]
