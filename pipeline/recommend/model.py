"""What a recommendation is: kind, workload, current and proposed setting, saving, confidence, evidence.

Money is exact: window costs and savings are whole picodollars as `Decimal`s, the monthly figure is
the window figure scaled to 30 days and rounded half-even to the picodollar (`monthly`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal, get_args

Kind = Literal["model_switch", "reasoning_effort", "prompt_caching", "batch", "cascade"]
KINDS: tuple[str, ...] = get_args(Kind)
Status = Literal["recommended", "needs_eval"]
STATUSES: tuple[str, ...] = get_args(Status)

#: The month savings are projected onto.
MONTH = timedelta(days=30)
PICODOLLAR = Decimal("0.000000000001")
#: Keys of `proposed` that name the setting (the others are figures that change run to run).
PROPOSAL_KEYS = frozenset(
    {"provider", "model", "reasoning_effort", "prompt_caching", "ttl", "service_tier", "first", "escalate_to"}
)
PERCENT = Decimal("0.01")


@dataclass(frozen=True)
class Window:
    """The half-open UTC range `since <= occurred_at < until` the usage was observed over."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"window {name} must be timezone-aware")
        if self.since >= self.until:
            raise ValueError("window since must be before until")

    @classmethod
    def last_days(cls, days: int, until: datetime | None = None) -> Window:
        """The `days` days before `until` (default now)."""
        end = (until or datetime.now(UTC)).astimezone(UTC)
        return cls(end - timedelta(days=days), end)

    @property
    def seconds(self) -> int:
        """Length in whole milliseconds' worth of seconds, as an exact Decimal-friendly int of ms."""
        return int((self.until - self.since) / timedelta(milliseconds=1))

    @property
    def days(self) -> Decimal:
        """Length in days (exact: milliseconds / 86 400 000)."""
        return Decimal(self.seconds) / Decimal(86_400_000)


def monthly(window_amount: Decimal, window: Window) -> Decimal:
    """`window_amount` × 30 days / window length, rounded half-even to the picodollar."""
    month_ms = Decimal(int(MONTH / timedelta(milliseconds=1)))
    return (window_amount * month_ms / Decimal(window.seconds)).quantize(PICODOLLAR, ROUND_HALF_EVEN)


def percent(part: Decimal, whole: Decimal) -> Decimal:
    """`part / whole` in percent, two decimals half-even (0 when `whole` is 0)."""
    if whole == 0:
        return Decimal("0.00")
    return (part * 100 / whole).quantize(PERCENT, ROUND_HALF_EVEN)


def usd(picodollars: int) -> Decimal:
    """Exact USD with 12 decimals."""
    return Decimal(picodollars).scaleb(-12)


def money(amount: Decimal) -> str:
    """A USD amount as a plain decimal string (never a float)."""
    return format(amount, "f")


@dataclass(frozen=True)
class EvidenceQuery:
    """SQL with `{name:Type}` placeholders and their values, runnable with clickhouse-client --param_*."""

    sql: str
    parameters: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"sql": self.sql, "parameters": dict(self.parameters)}


@dataclass(frozen=True)
class Recommendation:
    """One proposed change to one workload's routing, with what it saves and why we believe it."""

    kind: Kind
    status: Status
    team: str
    workload: str
    provider: str
    model: str
    current: dict[str, Any]
    proposed: dict[str, Any]
    window_cost: Decimal
    window_saving: Decimal
    window: Window
    sample_calls: int
    evidence: EvidenceQuery
    eval_evidence: dict[str, Any] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def monthly_saving(self) -> Decimal:
        return monthly(self.window_saving, self.window)

    @property
    def monthly_cost(self) -> Decimal:
        return monthly(self.window_cost, self.window)

    @property
    def saving_pct(self) -> Decimal:
        return percent(self.window_saving, self.window_cost)

    @property
    def id(self) -> str:
        """Same kind, workload, current model and proposal → same id, run after run."""
        key = json.dumps(
            [self.kind, self.team, self.workload, self.provider, self.model, self.proposal_key()],
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:20]

    def proposal_key(self) -> dict[str, Any]:
        """What identifies the proposal: the setting, not its money, latency or eval figures."""
        return {k: v for k, v in self.proposed.items() if k in PROPOSAL_KEYS}

    def confidence(self) -> dict[str, Any]:
        return {
            "sample_calls": self.sample_calls,
            "window_days": money(self.window.days.quantize(PERCENT, ROUND_HALF_EVEN)),
            "eval_evidence": self.eval_evidence,
            "notes": list(self.notes),
        }

    def to_json(self) -> dict[str, Any]:
        """The API's row shape (money as decimal strings)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "team": self.team,
            "workload": self.workload,
            "current": self.current,
            "proposed": self.proposed,
            "monthly_saving": money(self.monthly_saving),
            "saving_pct": money(self.saving_pct),
            "status": self.status,
            "confidence": self.confidence(),
            "evidence_query": self.evidence.to_json(),
        }


def rank(recommendations: list[Recommendation]) -> list[Recommendation]:
    """Largest monthly saving first; ties in a stable, meaningful order."""
    return sorted(
        recommendations,
        key=lambda r: (-r.window_saving, r.status != "recommended", r.kind, r.team, r.workload, r.id),
    )
