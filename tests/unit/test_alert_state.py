"""The alert state machine and the payload builders, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from costline.pipeline.alerts.deliver import RetryPolicy, redact
from costline.pipeline.alerts.model import Alert, anomaly_alert_id, budget_alert_id
from costline.pipeline.alerts.slack import build_message, escape, usd
from costline.pipeline.alerts.state import AlertBook, Observation
from costline.pipeline.alerts.webhook import build_payload

START = datetime(2026, 6, 1, tzinfo=UTC)
END = datetime(2026, 7, 1, tzinfo=UTC)


def draft(alert_id: str = "a1", kind: str = "budget_threshold", threshold: int | None = 80) -> Alert:
    return Alert(
        alert_id=alert_id,
        kind=kind,  # type: ignore[arg-type]
        subject="Budget b crossed 80% (2026-06 (UTC))",
        state="firing",
        period_start=START,
        period_end=END,
        spent=Decimal(8),
        amount=Decimal(10),
        threshold=threshold,
        fired_at=START + timedelta(days=3),
        version=1,
        budget="b",
        team="search",
        routes=("slack",),
        details={"percent": "80.00", "scope_text": "team search", "period": {"label": "2026-06 (UTC)"}},
    )


def test_fires_once_then_holds_then_resolves_and_never_fires_again() -> None:
    book = AlertBook()
    now = START + timedelta(days=3)
    first = book.decide([Observation(draft(), fire=True, holds=True)], now)
    assert [a.alert_id for a in first.fire] == ["a1"]
    book.remember(first.fire)
    assert not book.decide([Observation(draft(), fire=True, holds=True)], now)
    gone = book.decide([Observation(draft(), fire=False, holds=False, resolution="spend fell")], now)
    (resolved,) = gone.resolve
    assert resolved.state == "resolved"
    assert resolved.resolved_at == now
    assert resolved.version > first.fire[0].version
    assert resolved.details["resolution"] == "spend fell"
    book.remember(gone.resolve)
    assert not book.decide([Observation(draft(), fire=True, holds=True)], now + timedelta(hours=1))


def test_open_budget_alerts_resolve_at_the_period_end() -> None:
    book = AlertBook()
    book.remember([draft()])
    assert not book.decide([], END - timedelta(seconds=1))
    (resolved,) = book.decide([], END + timedelta(hours=5)).resolve
    assert resolved.resolved_at == END
    assert resolved.details["resolution"] == "the period ended"


def test_an_older_version_never_replaces_a_newer_one() -> None:
    book = AlertBook()
    firing = draft()
    resolved = firing.resolved(START + timedelta(days=4))
    book.remember([resolved, firing])
    assert book.get("a1") == resolved
    assert book.unknown(["a1", "a2"]) == ["a2"]
    assert book.forget_resolved_before(START + timedelta(days=5)) == 1
    assert len(book) == 0


def test_ids_are_deterministic_and_distinct() -> None:
    assert budget_alert_id("b", START, 80) == budget_alert_id("b", START, 80)
    ids = {
        budget_alert_id("b", START, 80),
        budget_alert_id("b", START, 100),
        budget_alert_id("b", START, None),
    }
    ids.add(budget_alert_id("b", END, 80))
    ids.add(anomaly_alert_id("b"))
    assert len(ids) == 5


def test_slack_escapes_names_and_formats_money() -> None:
    assert escape("<!channel> & co") == "&lt;!channel&gt; &amp; co"
    assert usd(Decimal("1234.565")) == "$1,234.56"  # half-even, display only
    assert usd(Decimal("0.0042")) == "$0.004200"
    assert usd(None) == "n/a"
    alert = draft()
    long = Alert(**{**alert.__dict__, "subject": "x" * 400})
    message = build_message(long)
    assert len(message["blocks"][0]["text"]["text"]) == 150
    assert all(len(f["text"]) <= 2000 for f in message["blocks"][1]["fields"])


def test_generic_payload_is_exact() -> None:
    body = build_payload(draft())
    assert body["spent"] == "8"
    assert body["amount"] == "10"
    assert body["forecast"] is None
    assert body["period_start"] == "2026-06-01T00:00:00Z"
    assert body["schema"] == "costline.alert.v1"


def test_backoff_grows_and_is_capped_and_urls_are_redacted() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4)
    assert [policy.backoff(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert redact(
        "POST https://hooks.slack.com/T/B/x failed", {"https://hooks.slack.com/T/B/x": "slack"}
    ) == ("POST <slack URL> failed")
