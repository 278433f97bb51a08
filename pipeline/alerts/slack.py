"""Slack incoming-webhook messages in Block Kit: what crossed, spend against budget, the forecast,
what drives the spend, and a button to the dashboard.

Block Kit limits respected: header text ≤ 150 characters, section text ≤ 3000, at most 10 fields
of ≤ 2000 each. Names that come from attribution are escaped (`&`, `<`, `>`), so a team called
`<!channel>` cannot ping anyone. `text` is the plain fallback Slack shows in notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from costline.pipeline.alerts.model import Alert, to_ms

HEADER_LIMIT = 150
TEXT_LIMIT = 3000
FIELD_LIMIT = 2000

_EMOJI = {"budget_threshold": ":money_with_wings:", "budget_forecast": ":chart_with_upwards_trend:"}
_SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def escape(text: str) -> str:
    """Slack mrkdwn escaping of user-controlled text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def usd(value: Decimal | str | None) -> str:
    """`$1,234.56` for display (exact figures travel in the generic webhook); `$0.0042` below a cent."""
    if value is None:
        return "n/a"
    amount = Decimal(value)
    places = Decimal("0.01") if abs(amount) >= Decimal("0.01") or amount == 0 else Decimal("0.000001")
    shown = amount.quantize(places, rounding=ROUND_HALF_EVEN)
    sign = "-" if shown < 0 else ""
    return f"{sign}${abs(shown):,}"


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "n/a"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return to_ms(moment).strftime("%Y-%m-%d %H:%M UTC")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", FIELD_LIMIT)}


def _ranking(title: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    if not rows:
        return None
    lines = [f"• {escape(str(row.get('key') or '(unattributed)'))} — {usd(row.get('cost'))}" for row in rows]
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": _clip(f"*{title}*\n" + "\n".join(lines), TEXT_LIMIT)},
    }


def _budget_fields(alert: Alert) -> list[dict[str, str]]:
    details = alert.details
    percent = details.get("percent")
    fields = [
        _field("Spent", f"{usd(alert.spent)} of {usd(alert.amount)}" + (f" ({percent}%)" if percent else "")),
        _field("Forecast to period end", usd(alert.forecast)),
        _field("Scope", escape(str(details.get("scope_text") or "all usage"))),
        _field(
            "Period", escape(str((details.get("period") or {}).get("label") or _when(alert.period_start)))
        ),
    ]
    if alert.kind == "budget_threshold":
        fields.insert(0, _field("Crossed", f"{alert.threshold}% of the budget"))
    if details.get("exhausted_at"):
        fields.append(_field("Runs out at this rate", _when(details["exhausted_at"])))
    return fields


def _anomaly_fields(alert: Alert) -> list[dict[str, str]]:
    details = alert.details
    fields = [
        _field("Kind", escape(str(details.get("anomaly_kind", "")))),
        _field("Severity", escape(str(details.get("severity", "")))),
        _field("Wasted", usd(alert.wasted)),
        _field("Observed cost", usd(alert.spent)),
        _field("Team / workload", escape(f"{alert.team or '(unattributed)'} / {alert.workload or '-'}")),
        _field("Model", escape(f"{details.get('provider', '')} {details.get('model', '')}".strip() or "-")),
        _field("Calls", str(details.get("calls", ""))),
        _field("Window", f"{_when(alert.period_start)} – {_when(alert.period_end)}"),
    ]
    if details.get("cause"):
        fields.insert(0, _field("Cause", escape(str(details["cause"]))))
    return fields[:10]


def build_message(alert: Alert) -> dict[str, Any]:
    """The Slack message for `alert` (as it fired)."""
    details = alert.details
    if alert.kind == "anomaly":
        emoji = _SEVERITY_EMOJI.get(str(details.get("severity")), ":warning:")
        fields = _anomaly_fields(alert)
    else:
        emoji = _EMOJI.get(alert.kind, ":warning:")
        fields = _budget_fields(alert)
    title = _clip(f"{emoji} {alert.subject}", HEADER_LIMIT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "fields": fields[:10]},
    ]
    for ranking in (
        _ranking("Top models", details.get("top_models") or []),
        _ranking("Top workloads", details.get("top_workloads") or []),
    ):
        if ranking is not None:
            blocks.append(ranking)
    if details.get("dashboard_url"):
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the dashboard"},
                        "url": str(details["dashboard_url"]),
                        "action_id": "costline_open_dashboard",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"costline alert `{alert.alert_id}` · fired {_when(alert.fired_at)}",
                }
            ],
        }
    )
    fallback = f"{alert.subject}: spent {usd(alert.spent)}"
    if alert.amount is not None:
        fallback += f" of {usd(alert.amount)}"
    if alert.wasted is not None:
        fallback += f", wasted {usd(alert.wasted)}"
    return {"text": _clip(escape(fallback), TEXT_LIMIT), "blocks": blocks}
