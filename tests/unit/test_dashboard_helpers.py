"""The dashboard's pure helpers: money display, API answers → frames, charts, sign-in state."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from costline.cli_dashboard import app_path, streamlit_command
from costline.dashboard import charts, data, formatting, session
from costline.dashboard.api.client import ApiClient, ApiError

# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1234.5678", "$1,234.57"),
        ("0", "$0.00"),
        ("0.004217", "$0.0042"),
        ("-12.5", "-$12.50"),
        ("12345678901234.123456789012", "$12,345,678,901,234.12"),
        (None, "—"),
        ("not money", "—"),
        (Decimal("0.000000000001"), "$0.0000"),
    ],
)
def test_money_rounds_for_display_only(value: Any, shown: str) -> None:
    assert formatting.money(value) == shown


def test_money_with_fixed_places() -> None:
    assert formatting.money("0.004217", places=2) == "$0.00"
    assert formatting.money("2.5", places=4) == "$2.5000"


def test_percent_and_whole_percent() -> None:
    assert formatting.percent("0.4256") == "42.6%"
    assert formatting.percent(0.5) == "50.0%"
    assert formatting.percent(None) == "—"
    assert formatting.percent(float("nan")) == "—"
    assert formatting.percent(data.pd.Series([0.25]).iloc[0]) == "25.0%"
    assert formatting.whole_percent("87.4") == "87%"
    assert formatting.whole_percent(None) == "—"


def test_tokens_counts_and_labels() -> None:
    assert formatting.tokens(950) == "950"
    assert formatting.tokens(12_345) == "12.3K"
    assert formatting.tokens(4_560_000) == "4.56M"
    assert formatting.tokens(1_200_000_000) == "1.20B"
    assert formatting.count(1234567) == "1,234,567"
    assert formatting.label("") == "(unattributed)"
    assert formatting.label("search") == "search"


def test_months() -> None:
    assert formatting.month_label("2026-11") == "November 2026"
    assert formatting.month_label("junk") == "junk"
    assert formatting.recent_months(date(2026, 2, 15), count=4) == [
        "2026-02",
        "2026-01",
        "2025-12",
        "2025-11",
    ]
    assert formatting.timestamp("2026-11-20T10:00:00Z") == "2026-11-20 10:00 UTC"
    assert formatting.timestamp("2026-11-20T11:00:00+01:00") == "2026-11-20 10:00 UTC"
    assert formatting.timestamp(None) == "—"


# --- data -------------------------------------------------------------------------------------

SPEND_ROWS = [
    {
        "key": "search",
        "events": 10,
        "unpriced_events": 0,
        "partial_events": 0,
        "list_cost": "12.5",
        "effective_cost": "10.25",
        "tokens": {"input_uncached": 100, "cache_read": 50, "output_visible": 20, "output_reasoning": 5},
    },
    {
        "key": "",
        "events": 3,
        "unpriced_events": 2,
        "partial_events": 1,
        "list_cost": "0",
        "effective_cost": "0",
        "tokens": {},
    },
    {"key": "support", "events": 5, "unpriced_events": 0, "partial_events": 0, "effective_cost": "20"},
]


def test_spend_frame_sorts_by_cost_and_sums_token_buckets() -> None:
    frame = data.spend_frame(SPEND_ROWS)
    assert list(frame["key"]) == ["support", "search", ""]
    assert list(frame["label"]) == ["support", "search", "(unattributed)"]
    search = frame[frame["key"] == "search"].iloc[0]
    assert search["input_tokens"] == 150
    assert search["output_tokens"] == 25
    assert search["effective_cost"] == pytest.approx(10.25)


def test_frames_are_empty_safe_with_their_columns() -> None:
    for builder, columns in (
        (data.spend_frame, data.SPEND_COLUMNS),
        (data.timeseries_frame, data.TIMESERIES_COLUMNS),
        (data.usage_stats_frame, data.USAGE_COLUMNS),
        (data.anomalies_frame, data.ANOMALY_COLUMNS),
        (data.budgets_frame, data.BUDGET_COLUMNS),
        (data.alerts_frame, data.ALERT_COLUMNS),
        (data.recommendations_frame, data.RECOMMENDATION_COLUMNS),
        (data.chargeback_frame, data.CHARGEBACK_COLUMNS),
    ):
        for empty in (None, []):
            frame = builder(empty)
            assert frame.empty
            assert list(frame.columns) == list(columns), builder.__name__


def test_unpriced_rows_are_listed_not_hidden() -> None:
    frame = data.spend_frame(SPEND_ROWS)
    missing = data.unpriced(frame)
    assert list(missing["key"]) == [""]
    assert missing.iloc[0]["unpriced_events"] == 2


def test_top_folds_the_rest_so_the_total_still_adds_up() -> None:
    frame = data.spend_frame(SPEND_ROWS)
    head = data.top(frame, 1)
    assert list(head["label"]) == ["support", "(other)"]
    assert head["effective_cost"].sum() == pytest.approx(frame["effective_cost"].sum())
    assert head.iloc[1]["events"] == 13
    assert data.top(frame, 5) is frame


def test_timeseries_frame_parses_utc_buckets_in_order() -> None:
    frame = data.timeseries_frame(
        [
            {"bucket": "2026-11-02T00:00:00Z", "key": "openai", "events": 1, "effective_cost": "1.5"},
            {"bucket": "2026-11-01T00:00:00+00:00", "key": "anthropic", "events": 2, "effective_cost": "2"},
            {"bucket": "2026-11-01T00:00:00", "key": "", "events": 1, "effective_cost": "0.25"},
        ]
    )
    assert [str(b.tz) for b in frame["bucket"]] == ["UTC"] * 3
    assert list(frame["key"]) == ["", "anthropic", "openai"]
    assert list(frame["label"]) == ["(none)", "anthropic", "openai"]


def test_usage_stats_keep_unknown_rates_missing() -> None:
    frame = data.usage_stats_frame(
        [
            {
                "key": "rag",
                "events": 4,
                "cache_hit_rate": "0.75",
                "reasoning_share": None,
                "effective_cost": "1",
            },
            {
                "key": "batch",
                "events": 2,
                "cache_hit_rate": None,
                "reasoning_share": "0.5",
                "effective_cost": "2",
            },
        ]
    )
    rag = frame[frame["key"] == "rag"].iloc[0]
    assert rag["cache_hit_rate"] == pytest.approx(0.75)
    assert rag["reasoning_share"] != rag["reasoning_share"]  # NaN: not computable, not zero
    assert frame[frame["key"] == "batch"].iloc[0]["reasoning_share"] == pytest.approx(0.5)


def test_anomaly_totals_list_every_kind() -> None:
    frame = data.anomaly_totals_frame(
        [{"kind": "cache_miss", "anomalies": 2, "calls": 40, "wasted_cost": "3.1"}, {"kind": "new_kind"}]
    )
    assert list(frame["kind"]) == [*data.ANOMALY_KINDS, "new_kind"]
    cache = frame[frame["kind"] == "cache_miss"].iloc[0]
    assert (cache["anomalies"], cache["wasted_exact"]) == (2, "3.1")
    assert frame[frame["kind"] == "overthinking"].iloc[0]["wasted_cost"] == 0.0


def test_delivery_summary_keeps_the_latest_outcome_per_route() -> None:
    deliveries = [
        {"route": "slack", "attempt": 1, "outcome": "failed"},
        {"route": "slack", "attempt": 2, "outcome": "sent"},
        {"route": "webhook", "attempt": 1, "outcome": "sent"},
    ]
    assert data.delivery_summary(deliveries) == "slack: sent (2 attempts), webhook: sent"
    assert data.delivery_summary([]) == "not delivered"


def test_recommendations_rank_by_saving_and_accept_percent_or_fraction() -> None:
    frame = data.recommendations_frame(
        [
            {
                "id": "a",
                "kind": "model_swap",
                "current": {"model": "gpt-5"},
                "proposed": {"model": "gpt-5-mini"},
                "monthly_saving": "12.5",
                "saving_pct": "40",
                "status": "needs_eval",
                "confidence": {"sample_calls": 120, "window_days": 30},
            },
            {
                "id": "b",
                "kind": "caching",
                "monthly_saving": "100",
                "saving_pct": "0.25",
                "status": "recommended",
            },
        ]
    )
    assert list(frame["id"]) == ["b", "a"]
    assert frame.iloc[1]["saving_pct"] == pytest.approx(0.4)
    assert frame.iloc[0]["saving_pct"] == pytest.approx(0.25)
    assert frame.iloc[1]["proposed"] == "gpt-5-mini"
    assert data.total_money([{"m": "0.1"}, {"m": "0.2"}, {"m": None}], "m") == Decimal("0.3")


def test_recommendation_setups_read_in_one_line() -> None:
    current = {
        "model": "claude-sonnet-4-6",
        "provider": "anthropic",
        "monthly_cost": "0.14",
        "prompt_caching": "off",
        "ratecard_entry": "anthropic/claude-sonnet-4-6@2026-02-17",
    }
    proposed = {**current, "prompt_caching": "on", "ttl": "5m"}
    assert data.setup(current) == "anthropic/claude-sonnet-4-6, prompt caching: off"
    assert data.setup(proposed) == "anthropic/claude-sonnet-4-6, prompt caching: on, ttl: 5m"
    assert data.setup("batch") == "batch"
    assert data.evidence_sql({"sql": "SELECT 1", "parameters": {"team": "x"}}) == (
        "SELECT 1",
        '{\n "team": "x"\n}',
    )
    assert data.evidence_sql("SELECT 2") == ("SELECT 2", "")
    assert data.evidence_sql(None) == ("", "")


def test_chargeback_csv_carries_the_exact_strings() -> None:
    body = {
        "period": "2026-10",
        "by": "cost_center",
        "allocation": "proportional",
        "rows": [
            {
                "key": "CC-100",
                "direct_cost": "0.000000000001",
                "allocated_cost": "12345678901234.123456789012",
                "total_cost": "12345678901234.123456789013",
                "events": 3,
            }
        ],
    }
    rows = list(csv.reader(io.StringIO(data.chargeback_csv(body).decode())))
    assert rows[0][:2] == ["period", "cost_center"]
    assert rows[1] == [
        "2026-10",
        "CC-100",
        "0.000000000001",
        "12345678901234.123456789012",
        "12345678901234.123456789013",
        "3",
        "proportional",
    ]


def test_burn_down_actual_ideal_and_forecast() -> None:
    budget = {
        "amount": "100",
        "forecast": "150",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
    }
    points = [
        {"bucket": "2026-11-01T00:00:00Z", "effective_cost": "10"},
        {"bucket": "2026-11-02T00:00:00Z", "effective_cost": "20"},
        {"bucket": "2026-11-02T00:00:00Z", "effective_cost": "5"},  # a second group on the same day
    ]
    now = datetime(2026, 11, 3, 12, tzinfo=UTC)
    frame = data.burn_down_frame(budget, points, now=now)
    actual = frame[frame["series"] == "actual"]["remaining"].tolist()
    assert actual == [100.0, 90.0, 65.0, 65.0]
    ideal = frame[frame["series"] == "ideal"]["remaining"].tolist()
    assert ideal == [100.0, 0.0]
    forecast = frame[frame["series"] == "forecast"]["remaining"].tolist()
    assert forecast == [65.0, -50.0]
    assert data.burn_down_frame({"amount": "1"}, points).empty


# --- charts -----------------------------------------------------------------------------------


def test_providers_keep_their_colors_across_charts() -> None:
    assert charts.provider_color("openai") == charts.PROVIDER_COLORS["openai"]
    assert charts.provider_color("acme.llm") == charts.provider_color("acme.llm")
    assert charts.provider_color("acme.llm") in charts.FALLBACK_COLORS
    scale = charts.provider_scale(["openai", "anthropic", "openai"]).to_dict()
    assert scale["domain"] == ["anthropic", "openai"]
    assert scale["range"] == [charts.PROVIDER_COLORS["anthropic"], charts.PROVIDER_COLORS["openai"]]


def _points() -> data.pd.DataFrame:
    return data.timeseries_frame(
        [
            {"bucket": "2026-11-01T00:00:00Z", "key": "openai", "events": 1, "effective_cost": "1.5"},
            {"bucket": "2026-11-01T00:00:00Z", "key": "anthropic", "events": 2, "effective_cost": "2"},
            {"bucket": "2026-11-02T00:00:00Z", "key": "openai", "events": 1, "effective_cost": "3"},
        ]
    )


def test_daily_trend_is_money_formatted_and_provider_colored() -> None:
    spec = charts.daily_trend(_points()).to_dict()
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["axis"]["format"] == charts.MONEY_FORMAT
    color = spec["encoding"]["color"]["scale"]
    assert color["domain"] == ["anthropic", "openai"]
    assert color["range"] == [charts.PROVIDER_COLORS["anthropic"], charts.PROVIDER_COLORS["openai"]]
    money_tips = [t for t in spec["encoding"]["tooltip"] if t.get("title") == "cost"]
    assert money_tips[0]["format"] == charts.MONEY_FORMAT


def test_bar_charts_use_money_axes() -> None:
    spend = data.spend_frame(SPEND_ROWS)
    for chart in (
        charts.spend_bars(spend, dimension="team"),
        charts.spend_bars(spend, dimension="provider", color_by_provider=True),
        charts.stacked_bars(spend.assign(part="direct"), category="label", stack="part"),
        charts.wasted_by_kind(data.anomaly_totals_frame([])),
    ):
        spec = chart.to_dict()
        assert spec["encoding"]["x"]["axis"]["format"] == charts.MONEY_FORMAT


def test_rate_bars_leave_out_groups_without_data() -> None:
    frame = data.usage_stats_frame(
        [{"key": "rag", "cache_hit_rate": "0.5"}, {"key": "batch", "cache_hit_rate": None}]
    )
    chart = charts.rate_bars(frame, field="cache_hit_rate", title="cache hit rate")
    assert list(chart.data["label"]) == ["rag"]
    assert chart.to_dict()["encoding"]["x"]["axis"]["format"] == charts.PERCENT_FORMAT


def test_burn_down_and_budget_charts_render() -> None:
    budget = {
        "name": "search-monthly",
        "amount": "100",
        "spent": "65",
        "percent": "65",
        "forecast": "150",
        "status": "forecast_exceeds",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
    }
    frame = data.burn_down_frame(budget, [], now=datetime(2026, 11, 3, tzinfo=UTC))
    spec = charts.burn_down(frame).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["axis"]["format"] == charts.MONEY_FORMAT
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["actual", "ideal", "forecast"]
    bars = charts.budget_bars(data.budgets_frame([budget])).to_dict()
    assert bars["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["forecast_exceeds"]
    assert bars["layer"][0]["encoding"]["x"]["field"] == "percent"  # readable for $50 and $100,000 alike
    recs = data.recommendations_frame([{"team": "t", "workload": "w", "kind": "k", "monthly_saving": "5"}])
    assert charts.savings_bars(recs).to_dict()["encoding"]["x"]["axis"]["format"] == charts.MONEY_FORMAT


# --- fetch and session ------------------------------------------------------------------------


def _client(handler: Any, token: str | None = "cl_test") -> ApiClient:
    return ApiClient("http://api.test", token, transport=httpx.MockTransport(handler))


def test_fetch_tells_not_deployed_from_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        answers = {
            "/api/v1/summary": (200, {"events": 1}),
            "/api/v1/anomalies": (404, {"detail": "Not Found"}),
            "/api/v1/teams/x": (404, {"detail": "team x has no usage"}),
            "/api/v1/chargeback": (403, {"detail": "this endpoint needs the admin or finance role"}),
            "/api/v1/me": (401, {"detail": "unknown API token"}),
        }
        status, body = answers.get(request.url.path, (500, {"detail": "boom"}))
        return httpx.Response(status, json=body)

    client = _client(handler)
    assert data.fetch(client, "/summary").body == {"events": 1}
    missing = data.fetch(client, "/anomalies")
    assert missing.kind == "unavailable"
    assert "/api/v1/anomalies" in missing.message
    assert data.fetch(client, "/teams/x").kind == "error"
    assert "admin or finance" in data.fetch(client, "/chargeback").message
    assert data.fetch(client, "/me").kind == "unauthorized"
    assert data.fetch(client, "/other").message == "The API answered 500: boom"


def test_fetch_says_when_the_api_is_unreachable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    fetched = data.fetch(_client(handler), "/summary")
    assert fetched.kind == "unreachable"
    assert "cannot reach the read API" in fetched.message


def test_sign_in_keeps_token_and_principal_and_sign_out_forgets_them() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") != "Bearer cl_good":
            return httpx.Response(401, json={"detail": "unknown API token"})
        return httpx.Response(
            200, json={"name": "search-lead", "role": "team", "teams": ["search"], "sees_all_teams": False}
        )

    transport = httpx.MockTransport(handler)
    state: dict[str, Any] = {}
    with pytest.raises(ApiError) as refused:
        session.sign_in(state, "cl_bad", "http://api.test", transport=transport)
    assert refused.value.status == 401
    assert "not accepted" in session.sign_in_error(refused.value, "http://api.test")
    assert session.current(state) is None
    with pytest.raises(ApiError):
        session.sign_in(state, "   ", "http://api.test", transport=transport)

    me = session.sign_in(state, " cl_good\n", "http://api.test", transport=transport)
    assert me == session.Me("search-lead", "team", ("search",), False)
    assert not me.may_manage
    assert me.describe() == "search-lead · team · search"
    found = session.current(state)
    assert found is not None
    assert found[1] == me
    assert state[session.TOKEN_KEY] == "cl_good"
    assert seen[-1] == "Bearer cl_good"
    session.sign_out(state)
    assert state == {}


def test_api_url_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTLINE_API_URL", "http://reports.internal:9000/")
    assert session.api_url() == "http://reports.internal:9000"
    monkeypatch.delenv("COSTLINE_API_URL")
    monkeypatch.setenv("COSTLINE_API_PORT", "8123")
    assert session.api_url() == "http://127.0.0.1:8123"
    assert "unreachable" not in session.sign_in_error(ApiError(0, "x"), "http://h")
    assert "Cannot reach" in session.sign_in_error(ApiError(0, "x"), "http://h")


def test_dashboard_command_runs_streamlit_headless_without_telemetry() -> None:
    script = app_path()
    assert script.name == "app.py"
    assert script.is_file()
    command = streamlit_command(script, "127.0.0.1", 8599)
    assert command[1:4] == ["-m", "streamlit", "run"]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.headless"] == "true"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--server.port"] == "8599"
    assert options["--server.address"] == "127.0.0.1"


# --- the demo token of `costline up` ----------------------------------------------------------


def test_up_rotates_the_demo_admin_token_and_keeps_the_others(tmp_path: Any) -> None:
    from costline.dashboard.api.auth import TokenStore, add_token
    from costline.up import DEMO_TOKEN_NAME, rotate_demo_token

    path = tmp_path / "api_tokens.yaml"
    first = rotate_demo_token(path)
    lead = add_token(path, "search-lead", "team", ["search"])
    second = rotate_demo_token(path)
    assert first != second
    store = TokenStore.from_file(path)
    assert store.authenticate(first) is None  # the old demo token stops working
    admin = store.authenticate(second)
    assert admin is not None
    assert (admin.name, admin.role) == (DEMO_TOKEN_NAME, "admin")
    assert store.authenticate(lead) is not None
    assert len(store) == 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_up_refuses_to_rewrite_a_broken_tokens_file(tmp_path: Any) -> None:
    from costline.schemas.errors import ConfigError
    from costline.up import rotate_demo_token

    path = tmp_path / "api_tokens.yaml"
    path.write_text("tokens: [{name: x}]\n")
    with pytest.raises(ConfigError):
        rotate_demo_token(path)
    assert path.read_text() == "tokens: [{name: x}]\n"
