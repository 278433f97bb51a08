"""Every spend endpoint of the read API against chDB: answers equal independent sums of the rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from costline.dashboard.api import queries
from costline.dashboard.api.app import API_PREFIX
from costline.pipeline.store.rollups import refresh_rollups
from tests.integration.test_api_data import (
    BATCH2,
    T0,
    WIDE,
    client_for,
    expected_by,
    expected_totals,
    load_fixture,
    make_app,
    parse,
    selected,
    stored,
)

pytestmark = pytest.mark.integration

ALL = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


@pytest.fixture
def api_store(chdb_client: Client) -> Client:
    """The session store holding the fixture events."""
    load_fixture(chdb_client)
    return chdb_client


@pytest.fixture
def api(api_store: Client) -> Any:
    """The app with every router over the fixture events."""
    return make_app(api_store)


def get(app: Any, path: str, token: str = "tok-admin", **params: Any) -> Any:
    response = client_for(app, token).get(API_PREFIX + path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def money_fields(expected: dict[str, Any]) -> dict[str, Any]:
    """Expected totals as the JSON carries them."""
    return {
        "events": expected["events"],
        "unpriced_events": expected["unpriced_events"],
        "partial_events": expected["partial_events"],
        "list_cost": Decimal(expected["list_cost"]),
        "effective_cost": Decimal(expected["effective_cost"]),
        "as_priced_cost": Decimal(expected["as_priced_cost"]),
        "tokens": expected["tokens"],
    }


def as_seen(row: dict[str, Any]) -> dict[str, Any]:
    return {key: Decimal(row[key]) if key.endswith("_cost") else row[key] for key in money_fields(row)}


def test_summary_equals_the_deduplicated_rows(api: Any) -> None:
    body = get(api, "/summary", **WIDE)
    want = expected_totals(stored())
    assert as_seen(body) == money_fields(want)
    assert Decimal(body["repricing_difference"]) == want["effective_cost"] - want["as_priced_cost"] != 0
    assert (body["since"], body["until"]) == ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z")


def test_summary_of_a_team_token_is_its_teams_only(api: Any) -> None:
    body = get(api, "/summary", token="tok-ads", **WIDE)
    assert as_seen(body) == money_fields(expected_totals(selected(*ALL, ["ads", "growth"])))
    one = get(api, "/summary", token="tok-ads", team="growth", **WIDE)
    assert as_seen(one) == money_fields(expected_totals(selected(*ALL, ["growth"])))


def test_summary_over_partial_hours(api: Any) -> None:
    since, until = T0 + timedelta(hours=9, minutes=20), T0 + timedelta(days=9, hours=4, minutes=30)
    body = get(api, "/summary", since=since.isoformat(), until=until.isoformat())
    assert as_seen(body) == money_fields(expected_totals(selected(since, until)))


def test_forecast_is_linear_burn_to_month_end(api: Any) -> None:
    until = datetime(2026, 3, 11, tzinfo=UTC)
    body = get(api, "/summary", since="2026-03-05T00:00:00Z", until=until.isoformat())
    spent = expected_totals(selected(ALL[0], until))["effective_cost"]
    forecast = body["forecast"]
    assert (forecast["period_start"], forecast["period_end"]) == (
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    )
    assert Decimal(forecast["spent"]) == spent
    assert Decimal(forecast["forecast_cost"]) == (spent * 31 / 10).quantize(Decimal("1e-12"))
    assert forecast["method"] == "linear"
    whole = get(api, "/summary", **WIDE)["forecast"]  # a whole past month: the forecast is what was spent
    assert whole["forecast_cost"] == whole["spent"] == get(api, "/summary", **WIDE)["effective_cost"]


@pytest.mark.parametrize("dimension", ["team", "workload", "provider", "model", "project", "cost_center"])
def test_spend_by_every_dimension(api: Any, dimension: str) -> None:
    body = get(api, "/spend", group_by=dimension, **WIDE)
    want = expected_by(stored(), dimension)
    assert body["group_by"] == dimension
    assert {row["key"]: as_seen(row) for row in body["rows"]} == {k: money_fields(v) for k, v in want.items()}
    costs = [Decimal(row["effective_cost"]) for row in body["rows"]]
    assert costs == sorted(costs, reverse=True)


def test_spend_shows_unattributed_to_admin_only(api: Any) -> None:
    assert "" in {row["key"] for row in get(api, "/spend", group_by="team", **WIDE)["rows"]}
    teams = {row["key"] for row in get(api, "/spend", token="tok-ads", group_by="team", **WIDE)["rows"]}
    assert teams == {"ads", "growth"}


@pytest.mark.parametrize("granularity", ["hour", "day", "month"])
@pytest.mark.parametrize("group_by", [None, "team", "model", "project"])
def test_timeseries_buckets_equal_the_rows(api: Any, granularity: str, group_by: str | None) -> None:
    since, until = T0 + timedelta(hours=9, minutes=30), T0 + timedelta(days=25, hours=1)
    params = {"granularity": granularity, "since": since.isoformat(), "until": until.isoformat()}
    if group_by:
        params["group_by"] = group_by
    body = get(api, "/timeseries", **params)
    truncate = {
        "hour": lambda t: t.replace(minute=0, second=0, microsecond=0),
        "day": lambda t: t.replace(hour=0, minute=0, second=0, microsecond=0),
        "month": lambda t: t.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
    }[granularity]
    want: dict[tuple[datetime, str | None], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0), Decimal(0)])
    for ev in selected(since, until):
        cell = want[(truncate(ev.occurred_at), getattr(ev, group_by) if group_by else None)]
        cell[0] += 1
        cell[1] += ev.current_status == "unpriced"
        cell[2] += ev.list_cost
        cell[3] += ev.current_cost
    seen = {
        (parse(p["bucket"]), p["key"]): [
            p["events"],
            p["unpriced_events"],
            Decimal(p["list_cost"]),
            Decimal(p["effective_cost"]),
        ]
        for p in body["points"]
    }
    assert seen == dict(want)
    assert [p["bucket"] for p in body["points"]] == sorted(p["bucket"] for p in body["points"])


def test_timeseries_reads_the_rollups_and_the_unrolled_tail(api: Any, api_store: Client) -> None:
    """Batch 2's hours are dirty (read from the base table); the rest comes from the rollups."""
    dirty = queries.fetch_dirty_hours(api_store, *ALL)
    assert set(dirty) == {ev.occurred_at.replace(minute=0, second=0, microsecond=0) for ev in BATCH2}
    before = get(api, "/timeseries", granularity="day", **WIDE)
    # a rollup that is really read changes the answer when its rows change
    api_store.command(
        "ALTER TABLE usage_rollup_daily UPDATE events = events + 1000 WHERE 1", settings={"mutations_sync": 2}
    )
    assert get(api, "/timeseries", granularity="day", **WIDE) != before
    api_store.command("TRUNCATE TABLE usage_rollup_hourly")
    api_store.command("TRUNCATE TABLE usage_rollup_daily")
    refresh_rollups(api_store)  # with empty rollups every hour is recomputed
    assert len(queries.fetch_dirty_hours(api_store, *ALL)) <= len(dirty)  # rows within the safety margin
    assert get(api, "/timeseries", granularity="day", **WIDE) == before


def test_timeseries_of_a_team_token_is_its_teams_only(api: Any) -> None:
    body = get(api, "/timeseries", token="tok-search", granularity="month", group_by="team", **WIDE)
    assert {p["key"] for p in body["points"]} == {"search"}
    assert sum(p["events"] for p in body["points"]) == len(selected(*ALL, ["search"]))


def test_usage_stats(api: Any) -> None:
    body = get(api, "/usage-stats", group_by="workload", **WIDE)
    rows = {row["key"]: row for row in body["rows"]}
    groups: dict[str, list[Any]] = defaultdict(list)
    for ev in stored():
        groups[ev.workload].append(ev)
    assert set(rows) == set(groups)
    for workload, evs in groups.items():
        reporting = [
            ev
            for ev in evs
            if ev.token("cache_read") + sum(ev.token(b) for b in ev.tokens if b.startswith("cache_write")) > 0
            or ev.caching_requested
        ]
        inputs = sum(
            ev.token("input_uncached")
            + ev.token("cache_read")
            + sum(ev.token(b) for b in ev.tokens if b.startswith("cache_write"))
            for ev in reporting
        )
        hit = (
            (Decimal(sum(ev.token("cache_read") for ev in reporting)) / inputs).quantize(Decimal("0.000001"))
            if reporting and inputs
            else None
        )
        out = sum(ev.token("output_visible") + ev.token("output_reasoning") for ev in evs)
        share = (Decimal(sum(ev.token("output_reasoning") for ev in evs)) / out).quantize(Decimal("0.000001"))
        row = rows[workload]
        assert row["events"] == len(evs)
        assert row["cache_reported_events"] == len(reporting)
        assert (Decimal(row["cache_hit_rate"]) if row["cache_hit_rate"] is not None else None) == hit
        assert Decimal(row["reasoning_share"]) == share
        assert Decimal(row["effective_cost"]) == sum((ev.current_cost for ev in evs), Decimal(0))
    assert any(row["cache_hit_rate"] is None for row in body["rows"]) or all(
        row["cache_reported_events"] for row in body["rows"]
    )


def test_team_view(api: Any) -> None:
    body = get(api, "/teams/search", token="tok-search", **WIDE)
    mine = selected(*ALL, ["search"])
    assert body["team"] == "search"
    assert as_seen(body["summary"]) == money_fields(expected_totals(mine))
    assert {r["key"]: as_seen(r) for r in body["workloads"]} == {
        k: money_fields(v) for k, v in expected_by(mine, "workload").items()
    }
    assert {r["key"]: as_seen(r) for r in body["models"]} == {
        k: money_fields(v) for k, v in expected_by(mine, "model").items()
    }
    assert {r["key"] for r in body["usage_stats"]} == {ev.workload for ev in mine}
    daily: dict[str, int] = defaultdict(int)
    for ev in mine:
        daily[ev.occurred_at.strftime("%Y-%m-%dT00:00:00Z")] += 1
    assert {p["bucket"]: p["events"] for p in body["daily"]} == daily
    assert body == get(api, "/teams/search", token="tok-admin", **WIDE)


def test_events_page_filters_and_content(api: Any) -> None:
    body = get(api, "/events", limit=7, **WIDE)
    everything = sorted(stored(), key=lambda ev: (ev.occurred_at, ev.event_id), reverse=True)
    assert body["total"] == len(everything)
    assert [row["event_id"] for row in body["rows"]] == [ev.event_id for ev in everything[:7]]
    second = get(api, "/events", limit=7, offset=7, **WIDE)
    assert [row["event_id"] for row in second["rows"]] == [ev.event_id for ev in everything[7:14]]
    assert set(body["rows"][0]) == {
        "event_id", "occurred_at", "team", "project", "workload", "provider", "model", "tokens", "list_cost",
        "effective_cost", "pricing_status", "ratecard_entry_id", "latency_ms", "status", "trace_id",
        "session_id", "prompt_prefix_hash", "caching_requested", "reasoning_effort",
    }  # fmt: skip
    repriced = get(api, "/events", trace_id=BATCH2[3].trace_id, model=BATCH2[3].model, limit=1000, **WIDE)
    match = [r for r in repriced["rows"] if r["event_id"] == BATCH2[3].event_id]
    assert match
    assert Decimal(match[0]["effective_cost"]) == BATCH2[3].repriced_effective_cost
    unpriced = get(api, "/events", pricing_status="unpriced", workload="chat", limit=1000, **WIDE)
    assert unpriced["total"] == sum(
        ev.current_status == "unpriced" and ev.workload == "chat" for ev in stored()
    )
    assert {r["pricing_status"] for r in unpriced["rows"]} == {"unpriced"}
    ads = get(api, "/events", token="tok-ads", limit=1000, **WIDE)
    assert ads["total"] == len(selected(*ALL, ["ads", "growth"]))
    assert {r["team"] for r in ads["rows"]} == {"ads", "growth"}
    assert get(api, "/events", offset=10_000, **WIDE) == {"total": len(everything), "rows": []}


def test_default_range_is_month_to_date(api: Any, api_store: Client) -> None:
    """No since/until: this month so far (the fixture is in the past, so nothing)."""
    body = get(api, "/summary")
    now = datetime.now(UTC)
    assert parse(body["since"]) == now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert body["events"] == 0
    assert body["effective_cost"] == "0.000000000000"
