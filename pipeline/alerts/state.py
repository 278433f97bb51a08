"""The alert state machine: an alert fires once, stays firing while its condition holds, then resolves.

    (unknown) --condition starts--> firing --condition ends / period over--> resolved

There is no way back from resolved and no second firing of the same id: a repeat is impossible by
construction, because the id is deterministic and the book is rebuilt from the store (where the
alert row is written before anything is delivered). `AlertBook` is pure: the engine asks the store
about ids it does not know yet, feeds the answers in with `remember`, then calls `decide`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from costline.pipeline.alerts.model import Alert

BUDGET_KINDS = frozenset({"budget_threshold", "budget_forecast"})


@dataclass(frozen=True)
class Observation:
    """What one evaluation sees about one possible alert.

    `draft` is the alert as it would fire now. `fire` says whether it should fire if it does not
    exist yet; `holds` whether an existing, firing one is still true (a forecast alert keeps
    holding once the budget is actually exceeded, but must never first fire then).
    """

    draft: Alert
    fire: bool
    holds: bool
    resolution: str = "the condition no longer holds"


@dataclass
class Transitions:
    """Alerts to write: new ones (firing) and newer versions of open ones (resolved)."""

    fire: list[Alert] = field(default_factory=list)
    resolve: list[Alert] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fire or self.resolve)


class AlertBook:
    """Every alert this leader knows of, by id, in its latest known version."""

    def __init__(self) -> None:
        self._known: dict[str, Alert] = {}

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._known

    def get(self, alert_id: str) -> Alert | None:
        """The latest known version of `alert_id`."""
        return self._known.get(alert_id)

    def clear(self) -> None:
        """Forget everything (leadership was lost: another worker may have moved alerts on)."""
        self._known.clear()

    def remember(self, alerts: Iterable[Alert]) -> None:
        """Take in versions read from or written to the store; an older version never wins."""
        for alert in alerts:
            known = self._known.get(alert.alert_id)
            if known is None or alert.version >= known.version:
                self._known[alert.alert_id] = alert

    def unknown(self, alert_ids: Iterable[str]) -> list[str]:
        """Ids the book has not seen: the store must be asked before any of them fires."""
        return sorted({alert_id for alert_id in alert_ids if alert_id not in self._known})

    def firing(self) -> list[Alert]:
        """Open alerts."""
        return [alert for alert in self._known.values() if alert.firing]

    def decide(self, observations: Sequence[Observation], now: datetime) -> Transitions:
        """New alerts to fire and open ones to resolve, given what was observed at `now`.

        Every observed id must have been looked up in the store first (see `unknown`); the
        engine guarantees it. Open budget alerts of a period that has ended resolve too.
        """
        transitions = Transitions()
        observed = set()
        for observation in observations:
            draft = observation.draft
            observed.add(draft.alert_id)
            known = self._known.get(draft.alert_id)
            if known is None:
                if observation.fire:
                    transitions.fire.append(draft)
            elif known.firing and not observation.holds:
                transitions.resolve.append(
                    known.resolved(
                        now,
                        spent=draft.spent,
                        forecast=draft.forecast,
                        details={**known.details, "resolution": observation.resolution},
                    )
                )
        for known in self.firing():
            if known.alert_id in observed or known.kind not in BUDGET_KINDS:
                continue
            if known.period_end <= now:
                transitions.resolve.append(
                    known.resolved(
                        known.period_end, details={**known.details, "resolution": "the period ended"}
                    )
                )
        return transitions

    def forget_resolved_before(self, cutoff: datetime) -> int:
        """Drop alerts resolved before `cutoff`; the store still has them if one is ever observed again."""
        stale = [
            alert_id
            for alert_id, alert in self._known.items()
            if alert.resolved_at is not None and alert.resolved_at < cutoff
        ]
        for alert_id in stale:
            del self._known[alert_id]
        return len(stale)
