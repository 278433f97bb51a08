"""Every dashboard page through Streamlit's AppTest, against the REAL read API over the session's
chDB store: once with fixture usage (priced demo events) and once with an empty store.

The API runs with uvicorn on a free port in a background thread; the pages sign in with a token
through the sign-in form, exactly as a person would, and read only through that API.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
import uvicorn
from clickhouse_connect.driver import Client
from streamlit.testing.v1 import AppTest

from costline.cli_dashboard import app_path
from costline.dashboard import session
from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import TokenStore, add_token
from costline.dashboard.api.store import StoreAccess
from costline.dashboard.formatting import money
from costline.ingest.demo import demo_events
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.store import anomalies as anomaly_store
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.settings import Settings
from tests.integration.conftest import unused_port

pytestmark = pytest.mark.integration

#: The page files of the navigation, by the name the tests use.
PAGES = {
    "overview": "pages/overview.py",
    "chargeback": "pages/chargeback.py",
    "team": "pages/team.py",
    "anomalies": "pages/anomalies.py",
    "recommendations": "pages/recommendations.py",
    "budgets": "pages/budgets.py",
}
#: Tables the fixtures empty (those that exist in this build of the store).
TABLES = (
    "usage_events",
    "anomalies",
    "alerts",
    "alert_deliveries",
    "recommendations",
    "recommendation_runs",
    "evals",
)
#: Budgets of the fixture: the support team's is small enough to be exceeded by the demo usage.
BUDGETS = """\
budgets:
  - name: support-monthly
    scope: {team: support}
    period: monthly
    amount_usd: "5.00"
    thresholds: [50, 80, 100]
    notify: [webhook]
  - name: search-rag-monthly
    scope: {team: search, workload: rag-answer}
    period: monthly
    amount_usd: 100000
"""


class ApiServer:
    """The read API on a free port, served by uvicorn in a daemon thread."""

    def __init__(self, client: Client, tokens: TokenStore, settings: Settings) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

        async def call(fn: Callable[..., Any], store_client: Client, *args: Any) -> Any:
            # one store thread, as in the worker: chDB is used from one thread at a time
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, store_client, *args)

        self.app = create_api(StoreAccess(client, call), tokens, settings)
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="api", daemon=True)

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the read API did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("tokens") / "api_tokens.yaml"
    return {
        "admin": add_token(path, "admin", "admin"),
        "finance": add_token(path, "finance", "finance"),
        "support": add_token(path, "support-lead", "team", ["support"]),
        "path": str(path),
    }


@pytest.fixture(scope="module")
def budgets_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("budgets") / "budgets.yaml"


@pytest.fixture(scope="module")
def api(chdb_client: Client, tokens: dict[str, str], budgets_path: Path) -> Iterator[ApiServer]:
    budgets_path.write_text("budgets: []\n")
    settings = Settings(budgets_path=budgets_path, data_dir=budgets_path.parent)
    with ApiServer(chdb_client, TokenStore.from_file(Path(tokens["path"])), settings) as server:
        yield server


def _existing_tables(client: Client) -> set[str]:
    return {row[0] for row in client.query("SHOW TABLES").result_rows}


def _empty_store(client: Client) -> None:
    present = _existing_tables(client)
    for table in TABLES:
        if table in present:
            client.command(f"TRUNCATE TABLE {table}")


def month_to_date_events(count: int) -> list[Any]:
    """Demo events inside this month so far (the pages' default period), newest a second ago."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = now - timedelta(seconds=1)
    span = max(min(timedelta(days=3), (end - month_start) * 0.9), timedelta(milliseconds=1))
    return list(demo_events(count, seed=42, end=end, span=span))


def write_budgets(path: Path, text: str) -> None:
    """Rewrite the budgets file with a new mtime (the API re-reads it when the mtime changes)."""
    previous = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text)
    os.utime(path, (previous + 10, previous + 10))


#: Findings of the detectors, one per kind the page lists, as the `anomalies` table holds them.
ANOMALIES = [
    ("overthinking", "support", "ticket-triage", "anthropic", "claude-sonnet-4-6", 120, "4.25", "6.10"),
    ("cache_miss", "support", "reply-draft", "anthropic", "claude-sonnet-4-6", 300, "11.50", "40.00"),
    ("spend_spike", "growth", "market-report", "gcp.gemini", "gemini-2.5-pro", 40, "2.00", "9.00"),
    ("context_growth", "search", "rag-answer", "openai", "gpt-5", 25, "0.75", "3.00"),
]


def insert_anomalies(client: Client) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for number, (kind, team, workload, provider, model, calls, wasted, observed) in enumerate(ANOMALIES):
        rows.append(
            [
                f"fixture-{kind}",
                kind,
                f"{kind} in {workload}",
                team,
                "demo",
                workload,
                provider,
                model,
                "",
                f"sess-{number}",
                now - timedelta(hours=2),
                now - timedelta(hours=1),
                now,
                calls,
                Decimal(wasted),
                Decimal(observed),
                "warning",
                "firing",
                json.dumps({"calls": calls, "median_output_chars": 4}),
                [f"demo-42-{number}"],
                1,
            ]
        )
    client.insert(anomaly_store.TABLE, rows, column_names=list(anomaly_store.COLUMNS))


@pytest.fixture
def fixture_data(chdb_client: Client, budgets_path: Path) -> dict[str, Any]:
    """600 priced demo events of this month (several teams, providers, models, some unpriced),
    budgets with the alerts the alert engine fires on them, and one anomaly of each kind."""
    _empty_store(chdb_client)
    pricer = Pricer(load_default_rate_card())
    priced = [pricer.price(event) for event in month_to_date_events(600)]
    PricedEventWriter(chdb_client).write(priced)
    write_budgets(budgets_path, BUDGETS)
    fired = asyncio.run(fire_alerts(chdb_client, budgets_path))
    has_anomalies = "anomalies" in _existing_tables(chdb_client)
    if has_anomalies:
        insert_anomalies(chdb_client)
    teams = {p.event.attribution.team for p in priced}
    unpriced = sum(1 for p in priced if p.status == "unpriced")
    assert unpriced > 0, "the demo data should hold the self-hosted model the card does not price"
    return {
        "priced": priced,
        "teams": teams,
        "unpriced": unpriced,
        "alerts": fired,
        "anomalies": has_anomalies,
    }


async def fire_alerts(client: Client, budgets_path: Path) -> list[Any]:
    """What the worker's alert engine fires on the fixture budgets (deliveries not attempted)."""
    from costline.pipeline.alerts.engine import AlertEngine
    from costline.pipeline.budgets.config import load_budgets

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(client, *args)

    return list((await AlertEngine(load_budgets(budgets_path), call, None).tick()).fired)


@pytest.fixture
def empty_data(chdb_client: Client, budgets_path: Path) -> None:
    _empty_store(chdb_client)
    write_budgets(budgets_path, "budgets: []\n")


def signed_in(monkeypatch: pytest.MonkeyPatch, api: ApiServer, token: str) -> AppTest:
    """The app, signed in through its form with `token`, on its default page (Overview)."""
    monkeypatch.setenv("COSTLINE_API_URL", api.url)
    at = AppTest.from_file(str(app_path()), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.text_input(key=session.TOKEN_INPUT_KEY).input(token)
    at.button(key=session.SIGN_IN_BUTTON_KEY).click()
    at.run()
    assert not at.exception, at.exception
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts_of(at: AppTest) -> list[Any]:
    return list(at.get("vega_lite_chart"))


def chart_data(chart: Any) -> pd.DataFrame:
    """The rows a rendered Altair chart plots (Streamlit ships them as Arrow IPC streams)."""
    frames = [pa.ipc.open_stream(dataset.data.data).read_pandas() for dataset in chart.proto.datasets]
    if chart.proto.data.data:
        frames.append(pa.ipc.open_stream(chart.proto.data.data).read_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def table(at: AppTest, *columns: str, index: int = 0) -> pd.DataFrame:
    """The `index`-th table on the page holding `columns` (frames carry every column of the page's data)."""
    found = [frame.value for frame in at.dataframe if set(columns) <= set(frame.value.columns)]
    assert len(found) > index, (
        f"no table with {columns} among {[list(f.value.columns) for f in at.dataframe]}"
    )
    return found[index]


def chart_spec(chart: Any) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(chart.proto.spec)
    return spec


def texts(at: AppTest) -> str:
    """Every message, caption and markdown on the page, for assertions on what it says."""
    parts = []
    for kind in ("info", "warning", "error", "success", "caption", "markdown", "title", "subheader"):
        parts.extend(str(element.value) for element in getattr(at, kind))
    return "\n".join(parts)


def metric(at: AppTest, label: str) -> str:
    for element in at.metric:
        if element.label == label:
            return str(element.value)
    raise AssertionError(f"no metric {label!r} among {[m.label for m in at.metric]}")


def expected_total(priced: list[Any], teams: set[str] | None = None) -> str:
    total = sum(
        (p.effective_cost for p in priced if teams is None or p.event.attribution.team in teams), Decimal(0)
    )
    return money(total)


# --- sign-in ----------------------------------------------------------------------------------


def test_sign_in_refuses_a_wrong_token_and_shows_no_page(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, empty_data: None
) -> None:
    at = signed_in(monkeypatch, api, "cl_not-a-token")
    assert "not accepted" in texts(at)
    assert not at.metric
    assert session.ME_KEY not in at.session_state


# --- overview ---------------------------------------------------------------------------------


def test_overview_with_data(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = signed_in(monkeypatch, api, tokens["admin"])
    assert at.title[0].value == "Overview"
    assert metric(at, "Spend, month to date") == expected_total(fixture_data["priced"])
    assert metric(at, "LLM calls") == f"{len(fixture_data['priced']):,}"
    assert f"{fixture_data['unpriced']} unpriced" in texts(at)  # unpriced usage is shown, never hidden
    trend, teams, providers = charts_of(at)[:3]
    assert chart_spec(trend)["encoding"]["y"]["axis"]["format"] == "$,.2f"
    assert set(chart_data(teams)["label"]) == fixture_data["teams"]
    provider_colors = chart_spec(providers)["encoding"]["color"]["scale"]
    assert dict(zip(provider_colors["domain"], provider_colors["range"], strict=True))["openai"] == "#10a37f"
    unpriced = table(at, "unpriced_events", index=1)
    assert unpriced.set_index("label").loc["acme-llama-ft-v2", "unpriced_events"] == fixture_data["unpriced"]


def test_overview_team_token_sees_only_its_team(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = signed_in(monkeypatch, api, tokens["support"])
    assert metric(at, "Spend, month to date") == expected_total(fixture_data["priced"], {"support"})
    teams = chart_data(charts_of(at)[1])
    assert set(teams["label"]) == {"support"}


def test_overview_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = signed_in(monkeypatch, api, tokens["admin"])
    assert metric(at, "Spend, month to date") == "$0.00"
    assert "No usage recorded" in texts(at)
    assert not charts_of(at)


# --- chargeback -------------------------------------------------------------------------------


def test_chargeback_with_data_and_downloads(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["finance"]), "chargeback")
    assert metric(at, "Total billed") == expected_total(fixture_data["priced"])
    rows = table(at, "direct_cost", "allocated_cost")
    assert set(rows["key"]) == fixture_data["teams"]
    assert charts_of(at)
    assert at.get_by_key("download_chargeback_csv") is not None
    at.button(key="prepare_focus_csv").click().run()
    assert not at.exception, [e.value for e in at.exception]
    query, focus = at.session_state["focus_csv"]
    assert query["by"] == "team"
    header = focus.decode().splitlines()[0]
    assert "BilledCost" in header
    assert at.get_by_key("download_focus_csv") is not None
    at.radio(key="chargeback_by").set_value("cost_center").run()
    assert set(table(at, "direct_cost", "allocated_cost")["key"]) == {
        p.event.attribution.cost_center for p in fixture_data["priced"]
    }


def test_chargeback_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["finance"]), "chargeback")
    assert metric(at, "Total billed") == "$0.00"
    assert "Nothing to charge back" in texts(at)
    assert not charts_of(at)


# --- team -------------------------------------------------------------------------------------


def test_team_with_data(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "team")
    select = at.selectbox(key="team_select")
    assert set(select.options) == fixture_data["teams"]
    select.set_value("support").run()
    assert not at.exception, [e.value for e in at.exception]
    assert metric(at, "Spend, month to date") == expected_total(fixture_data["priced"], {"support"})
    assert metric(at, "Cache hit rate").endswith("%")  # the support bot requests caching
    usage = table(at, "cache_hit_rate", "reasoning_share")
    support_workloads = {
        p.event.attribution.workload for p in fixture_data["priced"] if p.event.attribution.team == "support"
    }
    assert set(usage["key"]) == support_workloads
    assert len(charts_of(at)) >= 4  # workloads, model mix, daily, rates
    assert "support-monthly" in texts(at)
    burn_down = chart_spec(charts_of(at)[-1])
    assert burn_down["layer"][0]["encoding"]["y"]["axis"]["format"] == "$,.2f"


def test_team_token_sees_only_its_team(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["support"]), "team")
    assert at.selectbox(key="team_select").options == ["support"]
    assert metric(at, "Spend, month to date") == expected_total(fixture_data["priced"], {"support"})


def test_team_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "team")
    assert "No team has recorded usage" in texts(at)
    at = open_page(signed_in(monkeypatch, api, tokens["support"]), "team")
    assert metric(at, "Spend, month to date") == "$0.00"
    assert metric(at, "Cache hit rate") == "—"  # unknown, not 0%
    assert "No usage recorded for support" in texts(at)


# --- anomalies --------------------------------------------------------------------------------


def test_anomalies_with_data(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    assert fixture_data["anomalies"], "the anomalies endpoint is served but its table is missing"
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "anomalies")
    total = sum((Decimal(a[6]) for a in ANOMALIES), Decimal(0))
    assert metric(at, "Wasted in total") == money(total)
    assert metric(at, "Cache misses") == "$11.50"
    assert set(table(at, "wasted_cost", "kind")["kind"]) == {a[0] for a in ANOMALIES}
    assert chart_spec(charts_of(at)[0])["encoding"]["x"]["axis"]["format"] == "$,.2f"
    at = open_page(signed_in(monkeypatch, api, tokens["support"]), "anomalies")
    assert set(table(at, "wasted_cost", "kind")["team"]) == {"support"}


def test_anomalies_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "anomalies")
    assert metric(at, "Wasted in total") == "$0.00"
    assert "No anomaly detected" in texts(at)
    assert not charts_of(at)


# --- recommendations --------------------------------------------------------------------------


def test_recommendations_recomputed_from_the_page(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "recommendations")
    assert "No recommendation yet" in texts(at)
    at.button(key="recommendations_refresh").click().run()
    assert not at.exception, [e.value for e in at.exception]
    rows = table(at, "monthly_saving")
    assert len(rows) > 0
    assert rows["monthly_saving"].is_monotonic_decreasing
    assert metric(at, "Projected saving per month") != "$0.00"
    assert chart_spec(charts_of(at)[0])["encoding"]["x"]["axis"]["format"] == "$,.2f"
    at = open_page(signed_in(monkeypatch, api, tokens["support"]), "recommendations")
    assert "Recompute now" not in [b.label for b in at.button]  # team tokens may not recompute
    if at.dataframe:
        assert set(table(at, "monthly_saving")["team"]) <= {"support"}


def test_recommendations_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "recommendations")
    assert metric(at, "Projected saving per month") == "$0.00"
    assert "No recommendation yet" in texts(at)
    assert not charts_of(at)


# --- budgets and alerts -----------------------------------------------------------------------


def test_budgets_and_alerts_with_data(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], fixture_data: dict[str, Any]
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "budgets")
    budgets = table(at, "amount", "spent", "status")
    assert set(budgets["name"]) == {"support-monthly", "search-rag-monthly"}
    assert budgets.set_index("name").loc["support-monthly", "status"] == "exceeded"
    assert metric(at, "Exceeded") == "1"
    assert len(charts_of(at)) == 2  # spend against budgets, burn-down
    alerts = table(at, "alert_id", "fired_at")
    assert len(alerts) == len(fixture_data["alerts"]) > 0
    assert set(alerts["budget"]) == {"support-monthly"}
    at = open_page(signed_in(monkeypatch, api, tokens["support"]), "budgets")
    assert list(table(at, "amount", "spent", "status")["name"]) == ["support-monthly"]


def test_budgets_and_alerts_empty(
    monkeypatch: pytest.MonkeyPatch, api: ApiServer, tokens: dict[str, str], empty_data: None
) -> None:
    at = open_page(signed_in(monkeypatch, api, tokens["admin"]), "budgets")
    assert "No budget is defined" in texts(at)
    assert "No alert fired" in texts(at)
    assert not charts_of(at)
