"""Budget and anomaly alerts against the real chDB store: once per threshold, never again after a
restart, a rebalance or a replay, fresh each period, and the forecast ahead of the crossing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from costline.pipeline.alerts.engine import AlertEngine, TickResult
from costline.pipeline.alerts.model import Alert, budget_alert_id
from costline.pipeline.budgets.config import BudgetsConfig
from costline.pipeline.budgets.periods import period_containing
from costline.pipeline.budgets.spend import SpendWindow, fetch_spend
from costline.pipeline.pricing import Pricer
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.store.alerts import fetch_alerts, list_alerts
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.priced_event import PricedEvent
from costline.schemas.usage_event import CHECK_TIME_WINDOW, UsageEvent

pytestmark = pytest.mark.integration

PRICER = Pricer(load_default_rate_card())
#: Output tokens that cost exactly one dollar, per model (output price per million tokens).
TOKENS_PER_DOLLAR = {"gpt-4.1": 125_000, "gpt-4.1-mini": 625_000}


@dataclass
class FakeClock:
    """The engine's notion of now, moved by the test."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def direct(client: Client) -> Callable[..., Any]:
    """The engine's store call, run inline (tests have no store thread)."""

    async def call(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(client, *args)

    return call


def spend_event(
    event_id: str,
    at: datetime,
    team: str,
    workload: str,
    dollars: int,
    *,
    model: str = "gpt-4.1",
    project: str | None = None,
) -> PricedEvent:
    """A priced event that costs exactly `dollars` USD."""
    event = UsageEvent.model_validate(
        {
            "event_id": event_id,
            "occurred_at": at,
            "source": "test",
            "provider": "openai",
            "response_model": model,
            "tokens": {"output_visible": TOKENS_PER_DOLLAR[model] * dollars},
            "attribution": {"team": team, "workload": workload, "project": project},
        },
        context={CHECK_TIME_WINDOW: False},
    )
    priced = PRICER.price(event)
    assert priced.effective_cost == Decimal(dollars), priced.effective_cost
    return priced


def write(client: Client, events: Sequence[PricedEvent]) -> None:
    PricedEventWriter(client).write(list(events))


@pytest.fixture
def alert_store(store: Client) -> Client:
    """The session store with no events and no alerts."""
    store.command("TRUNCATE TABLE alerts")
    store.command("TRUNCATE TABLE alert_deliveries")
    return store


def config(*budgets: dict[str, Any], anomaly_alerts: dict[str, Any] | None = None) -> BudgetsConfig:
    return BudgetsConfig.model_validate({"budgets": list(budgets), "anomaly_alerts": anomaly_alerts})


def budget(name: str, team: str, amount: str = "10", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "scope": {"team": team},
        "period": "daily",
        "amount_usd": amount,
        "thresholds": [50, 80, 100],
        "forecast": False,
        **extra,
    }


def tick(engine: AlertEngine, *, leader: bool = True) -> TickResult:
    return asyncio.run(engine.tick(leader=leader))


def fired(engine: AlertEngine, **kwargs: Any) -> list[tuple[str, int | None]]:
    return [(a.kind, a.threshold) for a in tick(engine, **kwargs).fired]


def stored(client: Client) -> list[Alert]:
    return sorted(
        fetch_alerts(client, [r[0] for r in client.query("SELECT alert_id FROM alerts").result_rows]),
        key=lambda a: (a.period_start, a.kind, a.threshold or 0),
    )


DAY = datetime(2026, 6, 10, tzinfo=UTC)


def test_each_threshold_fires_exactly_once(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=6))
    engine = AlertEngine(config(budget("once", "t-once")), direct(alert_store), None, clock=clock)
    write(alert_store, [spend_event("once-1", DAY + timedelta(hours=1), "t-once", "rag", 4)])
    assert fired(engine) == []
    write(alert_store, [spend_event("once-2", DAY + timedelta(hours=2), "t-once", "rag", 1)])  # 5 of 10
    assert fired(engine) == [("budget_threshold", 50)]
    assert fired(engine) == []  # still at 50%: nothing again
    write(alert_store, [spend_event("once-3", DAY + timedelta(hours=3), "t-once", "rag", 4)])  # 9
    assert fired(engine) == [("budget_threshold", 80)]
    write(alert_store, [spend_event("once-4", DAY + timedelta(hours=4), "t-once", "rag", 3)])  # 12
    assert fired(engine) == [("budget_threshold", 100)]
    assert fired(engine) == []
    alerts = stored(alert_store)
    assert [(a.threshold, a.state) for a in alerts] == [(50, "firing"), (80, "firing"), (100, "firing")]
    assert alerts[2].spent == Decimal(12)
    assert alerts[2].amount == Decimal(10)
    assert alerts[0].alert_id == budget_alert_id("once", DAY, 50)
    # other teams' spend does not count
    write(alert_store, [spend_event("other-1", DAY + timedelta(hours=4), "t-other", "rag", 50)])
    window = SpendWindow(config(budget("once", "t-once")).budgets[0].scope, DAY, DAY + timedelta(days=1))
    assert fetch_spend(alert_store, [window])[0].spent == Decimal(12)


def test_a_restart_or_a_rebalance_fires_nothing_more(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=6))
    settings = config(budget("restart", "t-restart"))
    first = AlertEngine(settings, direct(alert_store), None, clock=clock)
    write(alert_store, [spend_event("restart-1", DAY + timedelta(hours=1), "t-restart", "rag", 9)])
    assert fired(first) == [("budget_threshold", 50), ("budget_threshold", 80)]
    # restart: a fresh engine knows nothing but what the store says
    restarted = AlertEngine(settings, direct(alert_store), None, clock=clock)
    assert fired(restarted) == []
    # rebalance: `first` loses leadership, `other` takes over and sees the next crossing...
    assert fired(first, leader=False) == []
    other = AlertEngine(settings, direct(alert_store), None, clock=clock)
    write(alert_store, [spend_event("restart-2", DAY + timedelta(hours=2), "t-restart", "rag", 2)])
    assert fired(other) == [("budget_threshold", 100)]
    assert fired(other, leader=False) == []
    # ...and when `first` leads again it does not repeat what `other` fired meanwhile
    assert fired(first) == []
    assert len(stored(alert_store)) == 3


def test_replaying_the_same_events_counts_them_once(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=6))
    engine = AlertEngine(config(budget("replay", "t-replay")), direct(alert_store), None, clock=clock)
    events = [
        spend_event(f"replay-{i}", DAY + timedelta(hours=1, minutes=i), "t-replay", "rag", 1)
        for i in range(7)
    ]
    write(alert_store, events)
    assert fired(engine) == [("budget_threshold", 50)]
    # Kafka redelivers: the same events again, cut into other batches (the dedup token cannot catch it)
    for event in events:
        write(alert_store, [event])
    write(alert_store, events[3:])
    raw = alert_store.query("SELECT count() FROM usage_events WHERE team = 't-replay'").result_rows[0][0]
    assert raw > 7  # the duplicates really are in the table...
    assert fired(engine) == []  # ...but spend is still 7 of 10: 80% was not crossed
    restarted = AlertEngine(config(budget("replay", "t-replay")), direct(alert_store), None, clock=clock)
    result = tick(restarted)
    assert result.fired == []
    assert result.statuses[0].spent == Decimal(7)


def test_a_new_period_starts_fresh(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=20))
    engine = AlertEngine(config(budget("roll", "t-roll")), direct(alert_store), None, clock=clock)
    write(alert_store, [spend_event("roll-1", DAY + timedelta(hours=10), "t-roll", "rag", 10)])
    assert fired(engine) == [("budget_threshold", 50), ("budget_threshold", 80), ("budget_threshold", 100)]
    clock.now = DAY + timedelta(days=1, hours=1)  # the next day: nothing spent yet
    result = tick(engine)
    assert result.fired == []
    assert sorted(a.threshold or 0 for a in result.resolved) == [50, 80, 100]
    assert {a.resolved_at for a in result.resolved} == {DAY + timedelta(days=1)}  # at the period end
    write(alert_store, [spend_event("roll-2", DAY + timedelta(days=1, minutes=30), "t-roll", "rag", 6)])
    result = tick(engine)
    assert [(a.threshold, a.period_start) for a in result.fired] == [(50, DAY + timedelta(days=1))]
    states = [(a.period_start.day, a.threshold, a.state) for a in stored(alert_store)]
    assert states == [
        (10, 50, "resolved"),
        (10, 80, "resolved"),
        (10, 100, "resolved"),
        (11, 50, "firing"),
    ]
    assert fired(AlertEngine(config(budget("roll", "t-roll")), direct(alert_store), None, clock=clock)) == []


def test_the_forecast_alert_fires_before_the_crossing_on_a_steady_ramp(alert_store: Client) -> None:
    """$2 an hour against a $24 daily budget: spend crosses 100% at noon; the forecast says so early."""
    settings = config(budget("ramp", "t-ramp", amount="24", forecast=True, forecast_min_elapsed_percent=10))
    clock = FakeClock(DAY)
    engine = AlertEngine(settings, direct(alert_store), None, clock=clock)
    first_fired: dict[str, datetime] = {}
    for step in range(1, 48):  # every 30 minutes, one $1 event, then a check
        clock.now = DAY + timedelta(minutes=30 * step)
        write(
            alert_store, [spend_event(f"ramp-{step}", clock.now - timedelta(seconds=1), "t-ramp", "rag", 1)]
        )
        for alert in tick(engine).fired:
            first_fired[f"{alert.kind}:{alert.threshold}"] = clock.now
    crossing = first_fired["budget_threshold:100"]
    forecast = first_fired["budget_forecast:None"]
    assert crossing == DAY + timedelta(hours=12)
    assert forecast == DAY + timedelta(hours=2, minutes=30)  # the first check past 10% of the day
    assert forecast < first_fired["budget_threshold:50"] < crossing
    (forecast_alert,) = [a for a in stored(alert_store) if a.kind == "budget_forecast"]
    assert forecast_alert.state == "firing"  # it came true: it stays open until the period ends
    assert forecast_alert.forecast == Decimal(48)
    assert forecast_alert.spent == Decimal(5)
    assert forecast_alert.details["exhausted_at"] == "2026-06-10T12:00:00Z"
    clock.now = DAY + timedelta(days=1, minutes=1)
    assert {a.kind for a in tick(engine).resolved} == {"budget_forecast", "budget_threshold"}


def test_the_forecast_alert_resolves_when_the_burn_slows(alert_store: Client) -> None:
    settings = config(budget("slow", "t-slow", amount="24", forecast=True, thresholds=[100]))
    clock = FakeClock(DAY + timedelta(hours=3))
    engine = AlertEngine(settings, direct(alert_store), None, clock=clock)
    write(alert_store, [spend_event("slow-1", DAY + timedelta(hours=1), "t-slow", "rag", 6)])
    assert fired(engine) == [("budget_forecast", None)]  # 6 in 3 h: 48 by midnight
    clock.now = DAY + timedelta(hours=7)  # nothing more spent: 6 × 24/7 = 20.57 < 24
    result = tick(engine)
    assert [(a.kind, a.state, a.details["resolution"]) for a in result.resolved] == [
        ("budget_forecast", "resolved", "the forecast dropped back under the amount")
    ]
    assert fired(engine) == []  # resolved is final for the period: no flapping


def test_scopes_combine_team_workload_and_project(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=6))
    scoped = {
        "name": "scoped",
        "scope": {"team": "t-scope", "workload": "agent", "project": "p1"},
        "period": "daily",
        "amount_usd": "2",
        "thresholds": [100],
        "forecast": False,
    }
    org = {"name": "org", "period": "daily", "amount_usd": "100", "thresholds": [10], "forecast": False}
    engine = AlertEngine(config(scoped, org), direct(alert_store), None, clock=clock)
    at = DAY + timedelta(hours=1)
    write(
        alert_store,
        [
            spend_event("scope-1", at, "t-scope", "agent", 1, project="p1"),
            spend_event("scope-2", at, "t-scope", "agent", 5, project="p2"),
            spend_event("scope-3", at, "t-scope", "other", 5, project="p1"),
        ],
    )
    result = tick(engine)
    assert [(a.budget, a.threshold) for a in result.fired] == [("org", 10)]  # 11 of 100 overall
    assert result.statuses[0].spent == Decimal(1)
    write(alert_store, [spend_event("scope-4", at, "t-scope", "agent", 1, project="p1")])
    assert [(a.budget, a.threshold) for a in tick(engine).fired] == [("scoped", 100)]


@pytest.fixture
def anomalies(alert_store: Client) -> Client:
    alert_store.command("TRUNCATE TABLE anomalies")
    return alert_store


def anomaly_row(
    anomaly_id: str, state: str, wasted: str, version: int, kind: str = "overthinking"
) -> list[Any]:
    start = DAY + timedelta(hours=1)
    return [
        anomaly_id, kind, "reasoning_effort_high", "t-anom", "", "triage", "openai", "o3", "", "",
        start, start + timedelta(minutes=10), start + timedelta(minutes=11), 40,
        Decimal(wasted), Decimal("30"), "warning", state, '{"median_reasoning_share": "0.91"}', ["e1", "e2"],
        version,
    ]  # fmt: skip


def insert_anomalies(client: Client, rows: list[list[Any]]) -> None:
    columns = [
        "anomaly_id", "kind", "cause", "team", "project", "workload", "provider", "model", "trace_id",
        "session_id", "window_start", "window_end", "detected_at", "calls", "wasted_cost", "observed_cost",
        "severity", "state", "evidence", "sample_event_ids", "version",
    ]  # fmt: skip
    client.insert("anomalies", rows, column_names=columns)


def test_anomalies_alert_once_and_resolve_with_the_anomaly(anomalies: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=2))
    rule = {"kinds": ["overthinking"], "min_wasted_usd": "5", "min_severity": "warning"}
    engine = AlertEngine(config(anomaly_alerts=rule), direct(anomalies), None, clock=clock)
    insert_anomalies(
        anomalies,
        [
            anomaly_row("an-1", "firing", "12.5", 1),
            anomaly_row("an-small", "firing", "1", 1),  # below min_wasted_usd
            anomaly_row("an-kind", "firing", "50", 1, kind="cache_miss"),  # not a kind the rule wants
        ],
    )
    result = tick(engine)
    assert [(a.kind, a.anomaly_id, a.wasted) for a in result.fired] == [("anomaly", "an-1", Decimal("12.5"))]
    assert result.fired[0].subject == "Overthinking in t-anom/triage: reasoning_effort_high"
    insert_anomalies(anomalies, [anomaly_row("an-1", "firing", "14", 2)])  # re-detected, bigger
    assert tick(engine).fired == []
    assert fired(AlertEngine(config(anomaly_alerts=rule), direct(anomalies), None, clock=clock)) == []
    insert_anomalies(anomalies, [anomaly_row("an-1", "resolved", "14", 3)])
    result = tick(engine)
    assert [(a.anomaly_id, a.state) for a in result.resolved] == [("an-1", "resolved")]
    assert tick(engine).resolved == []


def test_listing_alerts_is_scoped_by_team(alert_store: Client) -> None:
    clock = FakeClock(DAY + timedelta(hours=6))
    engine = AlertEngine(
        config(budget("la", "t-a", thresholds=[50]), budget("lb", "t-b", thresholds=[50])),
        direct(alert_store),
        None,
        clock=clock,
    )
    write(
        alert_store,
        [spend_event("la-1", DAY, "t-a", "rag", 6), spend_event("lb-1", DAY, "t-b", "rag", 6)],
    )
    tick(engine)
    since, until = DAY, DAY + timedelta(days=1)
    assert {r.alert.team for r in list_alerts(alert_store, since, until, None)} == {"t-a", "t-b"}
    assert [r.alert.budget for r in list_alerts(alert_store, since, until, ["t-a"])] == ["la"]
    assert list_alerts(alert_store, since, until, ["t-a"], state="resolved") == []
    assert period_containing("daily", "UTC", since).end == until
