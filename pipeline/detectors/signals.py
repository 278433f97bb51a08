"""The compact per-call record the detectors work on, and its wire format on the signals topic.

The ingest agent turns each newly stored PricedEvent into a `UsageSignal` (ids, event time,
attribution, tokens per bucket, the effective price per token of every bucket, the signals the
event carried) and sends one message per (team, workload) and batch, keyed `team/workload`, so
every call of a workload reaches the same partition of the detectors. Money is integer
picodollars throughout: a bucket's cost is `tokens × price`, exactly as the pricer computed it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from costline.pipeline.pricing import Pricer, resolve_prices
from costline.schemas.errors import CostlineError
from costline.schemas.priced_event import PricedEvent
from costline.schemas.usage_event import TOKEN_BUCKETS

logger = logging.getLogger(__name__)

SIGNAL_WIRE_VERSION = 1

#: Index of each token bucket in `UsageSignal.tokens` and `.prices`.
BUCKET_INDEX: dict[str, int] = {bucket: i for i, bucket in enumerate(TOKEN_BUCKETS)}
IN, READ, W5M, W30M, W1H, W12H, OUT, REASON = (BUCKET_INDEX[b] for b in TOKEN_BUCKETS)
WRITE_BUCKETS: tuple[int, ...] = (W5M, W30M, W1H, W12H)
#: Cache lifetime in seconds of each write bucket.
WRITE_TTL_SECONDS: dict[int, int] = {W5M: 300, W30M: 1_800, W1H: 3_600, W12H: 43_200}

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Prices = tuple[int | None, ...]
NO_PRICES: Prices = (None,) * len(TOKEN_BUCKETS)


class SignalFormatError(CostlineError):
    """A message on the signals topic that is not a signal batch of a known version."""


@dataclass(frozen=True, slots=True)
class UsageSignal:
    """One stored call, as the detectors see it (no content, money in picodollars)."""

    event_id: str
    at_ms: int
    team: str
    project: str
    workload: str
    provider: str
    model: str
    trace_id: str
    session_id: str
    prefix_hash: str
    caching_requested: bool | None
    reasoning_effort: str
    output_chars: int | None
    latency_ms: int | None
    status: str
    pricing_status: str
    tokens: tuple[int, ...]
    prices: Prices
    cost: int

    @property
    def workload_key(self) -> str:
        """`team/workload`: the key of the signals message and of the detectors' state."""
        return workload_key(self.team, self.workload)

    @property
    def input_total(self) -> int:
        """Every input token: uncached, read from cache or written to it."""
        t = self.tokens
        return t[IN] + t[READ] + t[W5M] + t[W30M] + t[W1H] + t[W12H]

    @property
    def cache_write(self) -> int:
        """Tokens written to the cache, whatever their lifetime."""
        t = self.tokens
        return t[W5M] + t[W30M] + t[W1H] + t[W12H]

    def price(self, bucket: int) -> int | None:
        """Effective picodollars per token of a bucket (None when the rate card has no price)."""
        return self.prices[bucket]

    def cost_of(self, bucket: int) -> int:
        """Effective cost of one bucket in picodollars (0 when unpriced)."""
        price = self.prices[bucket]
        return 0 if price is None else self.tokens[bucket] * price

    def to_wire(self) -> list[Any]:
        """Positional JSON-ready list (field order of the dataclass)."""
        return [
            self.event_id,
            self.at_ms,
            self.team,
            self.project,
            self.workload,
            self.provider,
            self.model,
            self.trace_id,
            self.session_id,
            self.prefix_hash,
            self.caching_requested,
            self.reasoning_effort,
            self.output_chars,
            self.latency_ms,
            self.status,
            self.pricing_status,
            list(self.tokens),
            list(self.prices),
            self.cost,
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> UsageSignal:
        """The signal of a `to_wire` list; SignalFormatError when it is not one."""
        if not isinstance(raw, list) or len(raw) != 19:
            raise SignalFormatError(f"a signal is a list of 19 fields, got {type(raw).__name__}")
        tokens, prices = raw[16], raw[17]
        if not (isinstance(tokens, list) and len(tokens) == len(TOKEN_BUCKETS)):
            raise SignalFormatError("a signal's tokens must be a list with one count per bucket")
        if not (isinstance(prices, list) and len(prices) == len(TOKEN_BUCKETS)):
            raise SignalFormatError("a signal's prices must be a list with one price per bucket")
        try:
            return cls(
                str(raw[0]),
                int(raw[1]),
                str(raw[2]),
                str(raw[3]),
                str(raw[4]),
                str(raw[5]),
                str(raw[6]),
                str(raw[7]),
                str(raw[8]),
                str(raw[9]),
                None if raw[10] is None else bool(raw[10]),
                str(raw[11]),
                None if raw[12] is None else int(raw[12]),
                None if raw[13] is None else int(raw[13]),
                str(raw[14]),
                str(raw[15]),
                tuple(int(t) for t in tokens),
                tuple(None if p is None else int(p) for p in prices),
                int(raw[18]),
            )
        except (TypeError, ValueError) as exc:
            raise SignalFormatError(f"a signal field has the wrong type: {exc}") from exc


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, exactly (no float on the way)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def workload_key(team: str, workload: str) -> str:
    """`team/workload` (either may be empty: unattributed usage is a workload too)."""
    return f"{team}/{workload}"


def encode_batch(signals: Sequence[UsageSignal]) -> bytes:
    """One signals message: `{"v": 1, "signals": [...]}`."""
    return json.dumps(
        {"v": SIGNAL_WIRE_VERSION, "signals": [s.to_wire() for s in signals]}, separators=(",", ":")
    ).encode()


def decode_batch(value: bytes | None) -> list[UsageSignal]:
    """The signals of one message; SignalFormatError when it is not a signal batch."""
    try:
        document = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalFormatError(f"signals message is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("v") != SIGNAL_WIRE_VERSION:
        raise SignalFormatError(f"signals message is not a version {SIGNAL_WIRE_VERSION} signal batch")
    raw = document.get("signals")
    if not isinstance(raw, list):
        raise SignalFormatError("signals message has no `signals` list")
    return [UsageSignal.from_wire(item) for item in raw]


class SignalBuilder:
    """Builds signals from priced events; the per-bucket prices are looked up once per price set.

    The prices of buckets a call did not use (what a cache read would have cost) come from the
    same rate card entry, context tier and adjustments as the call's own.
    """

    def __init__(self) -> None:
        self._pricer: Pricer | None = None
        self._memo: dict[tuple[str, str | None, tuple[str, ...]], Prices] = {}

    def prices(self, pricer: Pricer, priced: PricedEvent) -> Prices:
        """Effective picodollars per token of every bucket for this event's price set."""
        if priced.ratecard_entry_id is None:
            return NO_PRICES
        if pricer is not self._pricer:  # a reloaded card: forget what the old one said
            self._pricer, self._memo = pricer, {}
        key = (priced.ratecard_entry_id, priced.context_tier, tuple(priced.adjustments))
        found = self._memo.get(key)
        if found is None:
            event = priced.event
            entry = pricer.index.find(event.provider, event.model, event.occurred_at)
            if entry is None or entry.id != priced.ratecard_entry_id:
                return NO_PRICES  # priced against another card: no prices to offer (rare, not memoized)
            unit = resolve_prices(event, entry).unit_prices
            per_token: list[int | None] = []
            for bucket in TOKEN_BUCKETS:
                price = unit[bucket]
                per_token.append(None if price is None else price[3])
            found = self._memo[key] = tuple(per_token)
        return found

    def build(self, pricer: Pricer, priced: PricedEvent) -> UsageSignal:
        """The signal of one priced event."""
        event = priced.event
        a, s, t = event.attribution, event.signals, event.tokens
        return UsageSignal(
            event.event_id,
            epoch_ms(event.occurred_at),
            a.team or "",
            a.project or "",
            a.workload or "",
            event.provider,
            event.model,
            event.trace_id or "",
            event.session_id or "",
            s.prompt_prefix_hash or "",
            s.caching_requested,
            s.reasoning_effort or "",
            s.output_chars,
            s.latency_ms,
            s.status,
            priced.status,
            (
                t.input_uncached,
                t.cache_read,
                t.cache_write_5m,
                t.cache_write_30m,
                t.cache_write_1h,
                t.cache_write_12h,
                t.output_visible,
                t.output_reasoning,
            ),
            self.prices(pricer, priced),
            int(priced.effective_cost.scaleb(12)),
        )


def group_by_workload(signals: Iterable[UsageSignal]) -> dict[str, list[UsageSignal]]:
    """Signals per `team/workload` key, in their original order."""
    groups: dict[str, list[UsageSignal]] = {}
    for signal in signals:
        groups.setdefault(signal.workload_key, []).append(signal)
    return groups


SendFn = Callable[[bytes, bytes], Awaitable[Any]]


class SignalForwarder:
    """Sends the signals of newly stored events, one message per workload and batch.

    `send(key, value)` produces one message and returns an awaitable that resolves when the broker
    has it. Signals are derived data: a failure is logged and counted, never raised into the
    ingest loop (the events themselves are already stored).
    """

    def __init__(self, send: SendFn) -> None:
        self._send = send
        self.builder = SignalBuilder()
        self.signals_sent = 0
        self.messages_sent = 0
        self.errors = 0

    async def forward(self, pricer: Pricer, priced: Sequence[PricedEvent]) -> None:
        """Build, group and send; waits until the broker has every message."""
        if not priced:
            return
        try:
            signals = [self.builder.build(pricer, item) for item in priced]
            groups = group_by_workload(signals)
            pending = [await self._send(key.encode(), encode_batch(group)) for key, group in groups.items()]
            for future in pending:
                await future
        except Exception:  # derived data: never stop ingestion over it
            self.errors += 1
            logger.warning("could not forward %d signals to the detectors", len(priced), exc_info=True)
            return
        self.signals_sent += len(signals)
        self.messages_sent += len(groups)
