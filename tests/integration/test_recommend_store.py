"""Recommendations from priced rows in the real chDB store, the API routes, and the CLI over HTTP.

Events go through the real Pricer and writer into `usage_events`; the engine reads them back with
its SQL and must find the same exact savings the unit tests work out by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from fastapi.testclient import TestClient

from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import Principal, TokenStore, hash_token
from costline.dashboard.api.store import StoreAccess
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.recommend.engine import compute
from costline.pipeline.recommend.export import load_policy
from costline.pipeline.recommend.model import Recommendation, Window
from costline.pipeline.store import anomalies as anomaly_store
from costline.pipeline.store.recommendations import fetch_evals, fetch_latest, insert_evals, write_run
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.settings import Settings
from costline.schemas.usage_event import Attribution, Signals, TokenBuckets, UsageEvent, hash_prompt_prefix
from tests.integration.conftest import unused_port
from tests.unit.test_recommend_engine import evaluation

if TYPE_CHECKING:
    from clickhouse_connect.driver import Client

pytestmark = pytest.mark.integration

UNTIL = datetime.now(UTC).replace(second=0, microsecond=0)
WINDOW = Window(UNTIL - timedelta(days=7), UNTIL)
ADMIN, SUPPORT = "admin-token-for-tests", "support-token-for-tests"


def event(n: str, at: datetime, team: str, workload: str, provider: str, model: str, **kw: Any) -> UsageEvent:
    tokens = kw.pop("tokens")
    return UsageEvent(
        event_id=n,
        occurred_at=at,
        source="test",
        provider=provider,
        request_model=model,
        response_model=model,
        tokens=TokenBuckets(**tokens),
        attribution=Attribution(team=team, workload=workload),
        signals=Signals(**kw),
    )


def synthetic_events() -> list[UsageEvent]:
    events = []
    day = UNTIL.replace(hour=0, minute=0)
    for d in range(1, 6):  # nightly job: 20 calls between 02:00 and 02:40 on five nights
        for i in range(20):
            at = day - timedelta(days=d) + timedelta(hours=2, minutes=2 * i)
            events.append(
                event(
                    f"nightly-{d}-{i}",
                    at,
                    "data-platform",
                    "nightly-report",
                    "anthropic",
                    "claude-haiku-4-5",
                    tokens={"input_uncached": 10_000, "output_visible": 500},
                    latency_ms=8_000,
                )
            )
    prefix = hash_prompt_prefix("support reply system prompt")
    start = UNTIL - timedelta(days=2)
    for i in range(100):  # interactive, one shared prefix, a call every 2 minutes, no caching
        events.append(
            event(
                f"reply-{i}",
                start + timedelta(minutes=2 * i),
                "support",
                "reply",
                "anthropic",
                "claude-sonnet-4-6",
                tokens={"input_uncached": 6000, "output_visible": 100},
                prompt_prefix_hash=prefix,
                stream=True,
                latency_ms=4_000,
            )
        )
    for i in range(50):  # one-word classifications on a frontier reasoning model
        events.append(
            event(
                f"classify-{i}",
                UNTIL - timedelta(hours=3 * i + 1),
                "support",
                "classify",
                "openai",
                "gpt-5",
                tokens={"input_uncached": 2000, "output_visible": 3, "output_reasoning": 1500},
                reasoning_effort="high",
                stream=True,
                latency_ms=6_000,
            )
        )
    return events


@pytest.fixture
def loaded(store: Client) -> Client:
    store.command("TRUNCATE TABLE anomalies")
    # other tests' workers (same session store) may have written newer runs
    for table in ("evals", "recommendations", "recommendation_runs"):
        store.command(f"TRUNCATE TABLE {table}")
    PricedEventWriter(store).write(Pricer(load_default_rate_card()).price_many(synthetic_events()))
    store.insert(
        "anomalies",
        [
            [
                "ot-classify-1",
                "overthinking",
                "tiny answers after long reasoning",
                "support",
                "",
                "classify",
                "openai",
                "gpt-5",
                "",
                "",
                UNTIL - timedelta(days=2),
                UNTIL - timedelta(days=1),
                UNTIL,
                40,
                Decimal("0.5"),
                Decimal("0.6"),
                "warning",
                "firing",
                "{}",
                [],
                1,
            ]
        ],
        column_names=list(anomaly_store.COLUMNS),
    )
    return store


def one(recs: list[Recommendation], kind: str, workload: str) -> Recommendation:
    (found,) = [r for r in recs if r.kind == kind and r.workload == workload]
    return found


def test_savings_from_the_store_are_exact(loaded: Client) -> None:
    recs = compute(loaded, load_default_rate_card(), WINDOW)

    batch = one(recs, "batch", "nightly-report")
    assert batch.sample_calls == 100
    assert batch.window_cost == Decimal("1.25")  # 1M input x $1 + 50k output x $5
    assert batch.window_saving == Decimal("0.625")
    assert batch.monthly_saving == Decimal("2.678571428571")

    caching = one(recs, "prompt_caching", "reply")
    assert caching.proposed["ttl"] == "5m"
    # prefix = 6000 tokens (shortest prompt); today 100 x 6000 x $3; cached 99 reads x $0.3 + 1 write x $3.75
    assert caching.window_saving == Decimal("1.8") - Decimal("0.1782") - Decimal("0.0225")

    effort = one(recs, "reasoning_effort", "classify")
    assert effort.window_saving == Decimal("0.75")  # 50 x 1500 reasoning tokens x $10
    assert effort.current["overthinking_anomalies"] == 1

    assert not [
        r for r in recs if r.kind == "batch" and r.workload != "nightly-report"
    ]  # streamed: interactive
    assert all(r.status == "needs_eval" for r in recs if r.kind == "model_switch")  # no evals yet

    # every evidence query runs as given and sees the workload's calls
    for rec in recs:
        sql = rec.evidence.sql
        parameters: dict[str, Any] = dict(rec.evidence.parameters)
        rows = loaded.query(sql, parameters=parameters).named_results()
        assert next(iter(rows))["calls"] == rec.sample_calls


def test_runs_are_stored_and_the_latest_is_read(loaded: Client) -> None:
    card = load_default_rate_card()
    recs = compute(loaded, card, WINDOW)
    write_run(loaded, recs[:1], WINDOW, trigger="test", computed_at=UNTIL - timedelta(hours=1))
    write_run(loaded, recs, WINDOW, trigger="test", computed_at=UNTIL)
    latest, rows = fetch_latest(loaded)
    assert latest is not None
    assert len(rows) == len(recs)
    assert [r["id"] for r in rows] == [r.id for r in recs]
    assert rows == [r.to_json() for r in recs]
    _, support = fetch_latest(loaded, teams=["support"], kind="prompt_caching")
    assert [r["workload"] for r in support] == ["reply"]


def test_evals_gate_recommendations_from_the_store(loaded: Client) -> None:
    insert_evals(
        loaded,
        [
            evaluation("support", "classify", "gpt-5", "0.97"),
            evaluation("support", "classify", "gpt-5-mini", "0.96"),
        ],
    )
    insert_evals(loaded, [evaluation("support", "classify", "gpt-5-mini", "0.96")])  # re-import: one row
    stored = fetch_evals(loaded)
    assert len(stored) == 2
    recs = compute(loaded, load_default_rate_card(), WINDOW, stored)
    switch = [r for r in recs if r.kind == "model_switch" and r.status == "recommended"]
    assert [(r.workload, r.proposed["model"]) for r in switch] == [("classify", "gpt-5-mini")]


# -- the API -------------------------------------------------------------------------------------------


@pytest.fixture
def api(loaded: Client) -> TestClient:
    tokens = TokenStore(
        {
            hash_token(ADMIN): Principal("admin", "admin"),
            hash_token(SUPPORT): Principal("support", "team", frozenset({"support"})),
        }
    )
    return TestClient(create_api(StoreAccess(loaded), tokens, Settings()))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_recommendations_scope_and_refresh(api: TestClient) -> None:
    assert api.post("/api/v1/recommendations/refresh", headers=auth(SUPPORT)).status_code == 403
    refreshed = api.post("/api/v1/recommendations/refresh", headers=auth(ADMIN))
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["recommendations"] > 0

    everything = api.get("/api/v1/recommendations", headers=auth(ADMIN)).json()
    assert everything["computed_at"].endswith("Z")
    savings = [Decimal(r["monthly_saving"]) for r in everything["rows"]]
    assert savings == sorted(savings, reverse=True)
    assert {r["team"] for r in everything["rows"]} == {"support", "data-platform"}

    mine = api.get("/api/v1/recommendations", headers=auth(SUPPORT)).json()["rows"]
    assert mine
    assert {r["team"] for r in mine} == {"support"}
    assert api.get("/api/v1/recommendations?team=data-platform", headers=auth(SUPPORT)).status_code == 403
    kind = api.get("/api/v1/recommendations?kind=batch&status=recommended", headers=auth(ADMIN)).json()[
        "rows"
    ]
    assert [r["workload"] for r in kind] == ["nightly-report"]
    assert api.get("/api/v1/recommendations?kind=nope", headers=auth(ADMIN)).status_code == 422
    row = kind[0]
    assert set(row) == {
        "id",
        "kind",
        "team",
        "workload",
        "current",
        "proposed",
        "monthly_saving",
        "saving_pct",
        "status",
        "confidence",
        "evidence_query",
    }
    assert row["confidence"]["sample_calls"] == 100
    assert api.get("/api/v1/recommendations").status_code == 401


def test_api_export(api: TestClient) -> None:
    api.post("/api/v1/recommendations/refresh", headers=auth(ADMIN))
    litellm = api.get("/api/v1/recommendations/export?format=litellm", headers=auth(ADMIN))
    assert litellm.status_code == 200
    config = yaml.safe_load(litellm.text)
    assert config["router_settings"]["enable_tag_filtering"] is True
    assert all("litellm_params" in d for d in config["model_list"])
    neutral = api.get("/api/v1/recommendations/export?format=yaml", headers=auth(SUPPORT))
    policy = load_policy(neutral.text)
    assert policy.rules
    assert {rule.match.team for rule in policy.rules} == {"support"}
    assert api.get("/api/v1/recommendations/export?format=csv", headers=auth(ADMIN)).status_code == 422


def test_api_evals(api: TestClient) -> None:
    good = {"evals": [evaluation("support", "reply", "claude-haiku-4-5", "0.9").to_json()]}
    posted = api.post("/api/v1/evals", json=good, headers=auth(SUPPORT))
    assert posted.status_code == 201, posted.text
    assert posted.json() == {"stored": 1}
    other = {"evals": [evaluation("growth", "copy", "gpt-5", "0.9").to_json()]}
    assert api.post("/api/v1/evals", json=other, headers=auth(SUPPORT)).status_code == 403
    bad = {"evals": [good["evals"][0], {**good["evals"][0], "score": "1.5"}]}
    answer = api.post("/api/v1/evals", json=bad, headers=auth(ADMIN))
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("evals[1]: score")
    rows = api.get("/api/v1/evals", headers=auth(SUPPORT)).json()["rows"]
    assert [(r["model"], r["score"], r["source"]) for r in rows] == [("claude-haiku-4-5", "0.9", "test")]
    assert api.get("/api/v1/evals?team=growth", headers=auth(SUPPORT)).status_code == 403


# -- the CLI against a real server -----------------------------------------------------------------------


@pytest.fixture
def server(api: TestClient) -> Iterator[str]:
    import uvicorn

    port = unused_port()
    config = uvicorn.Config(api.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


def test_cli_recommend_export_and_evals_import(
    server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from pathlib import Path

    from typer.testing import CliRunner

    from costline.cli import app

    monkeypatch.setenv("COSTLINE_API_URL", server)
    monkeypatch.setenv("COSTLINE_API_TOKEN", ADMIN)
    runner = CliRunner()
    fixtures = Path(__file__).parent.parent / "fixtures" / "evals"

    shown = runner.invoke(app, ["recommend", "--refresh"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    batch_line = next(
        line for line in shown.output.splitlines() if "nightly-report" in line and "batch" in line
    )
    assert "0.62" in batch_line  # 0.625 a month (30-day window), shown in cents half-even
    assert "50.00" in batch_line

    out = tmp_path / "litellm.yaml"
    exported = runner.invoke(app, ["recommend", "export", "--format", "litellm", "--output", str(out)])
    assert exported.exit_code == 0, exported.output
    assert "model_list" in yaml.safe_load(out.read_text())
    neutral = runner.invoke(app, ["recommend", "export", "--format", "yaml"])
    assert load_policy(neutral.stdout).rules

    bad = runner.invoke(app, ["evals", "import", str(fixtures / "bad.csv")])
    assert bad.exit_code == 2
    assert "line 3: score" in bad.output
    assert "line 6: 8 values" in bad.output
    good = runner.invoke(app, ["evals", "import", str(fixtures / "good.yaml")])
    assert good.exit_code == 0, good.output
    assert "imported 3 eval result(s)" in good.output
    listed = runner.invoke(app, ["evals", "list", "--team", "support"], env={"COLUMNS": "250"})
    assert "claude-haiku-4-5" in listed.output

    monkeypatch.setenv("COSTLINE_API_TOKEN", SUPPORT)
    refused = runner.invoke(app, ["recommend", "--refresh"])
    assert refused.exit_code == 2
    assert "403" in refused.output


# -- the worker ----------------------------------------------------------------------------------------


def test_worker_computes_recommendations_soon_after_start(loaded: Client, broker: Any, chdb_dsn: str) -> None:
    from costline.broker import costline_topics, create_topics
    from tests.integration.conftest import unique_name
    from tests.integration.worker_harness import JOIN_TIMEOUT_S, ThreadedWorker, wait_for

    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        kafka_usage_topic=unique_name("usage"),
        kafka_dlq_topic=unique_name("dlq"),
        kafka_signals_topic=unique_name("signals"),
        worker_group=unique_name("worker"),
        clickhouse_dsn=chdb_dsn,
        metrics_port=unused_port(),
        api_port=unused_port(),
        recommend_interval_s=3600.0,
        recommend_window_days=7,
    )
    create_topics(settings.kafka_bootstrap_servers, costline_topics(settings))

    def worker_runs() -> int:
        query = "SELECT count() FROM recommendation_runs WHERE trigger = 'worker'"
        return int(loaded.query(query).result_rows[0][0])

    before = worker_runs()
    running = ThreadedWorker(settings).start()
    try:
        wait_for(lambda: worker_runs() > before, JOIN_TIMEOUT_S + 30, "the worker's first recommendation run")
        running.check()
        _, rows = fetch_latest(loaded, kind="batch")
        assert [(r["workload"], r["monthly_saving"]) for r in rows] == [("nightly-report", "2.678571428571")]
        time.sleep(3)
        assert worker_runs() == before + 1  # next one only after recommend_interval_s
    finally:
        running.stop()
