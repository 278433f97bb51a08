"""`costline ratecard validate`: schema errors plus the mistakes a schema cannot see, line by line.

A card can be valid YAML and valid against the model and still price wrong: two entries in
force at once for one model (pricing would pick one silently), an alias shared with another
model, a gap in a model's history (events there go unpriced), a tier cheaper than the base,
a multiplier of 110 meant as 1.1. Each finding names the file, the line and what to change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costline.pipeline.pricing import STANDARD_TIERS
from costline.pipeline.ratecard.load import (
    Loc,
    Problem,
    SourceMap,
    format_loc,
    load_litellm_json,
    parse_rate_card_text,
    read_card_text,
)
from costline.pipeline.ratecard.model import PRICE_KEYS, Adjustment, PriceSet, RateCardEntry
from costline.schemas.errors import RateCardError
from costline.schemas.usage_event import REQUEST_COUNTERS

logger = logging.getLogger(__name__)

__all__ = [
    "KNOWN_SERVICE_TIERS",
    "MAX_MULTIPLIER",
    "Problem",
    "check_entries",
    "format_problems",
    "has_errors",
    "validate_rate_card",
]

#: Service tier names providers use (OpenAI, Anthropic, Gemini/Vertex, Bedrock, Azure).
KNOWN_SERVICE_TIERS = frozenset(
    {"standard", "batch", "flex", "priority", "scale", "fast", "ultrafast", "reserved", "default", "auto"}
)
#: A multiplier above this is almost certainly a typo (110 for 1.1).
MAX_MULTIPLIER = Decimal(10)


@dataclass(frozen=True)
class _Located:
    """An entry and where it sits in the file."""

    index: int
    entry: RateCardEntry

    @property
    def loc(self) -> Loc:
        return ("entries", self.index)


class _Checker:
    def __init__(self, file: str, source: SourceMap | None) -> None:
        self.file = file
        self.source = source or SourceMap()
        self.problems: list[Problem] = []

    def add(self, loc: Loc, message: str, severity: str = "error") -> None:
        self.problems.append(
            Problem(
                self.file,
                self.source.line_of(loc),
                format_loc(loc),
                message,
                "warning" if severity == "warning" else "error",
            )
        )

    def line(self, loc: Loc) -> str:
        line = self.source.line_of(loc)
        return f"line {line}" if line is not None else format_loc(loc)


def _when(instant: datetime) -> str:
    """`2026-03-01` for a UTC midnight, the full ISO time otherwise."""
    if (instant.hour, instant.minute, instant.second, instant.microsecond) == (0, 0, 0, 0):
        return instant.date().isoformat()
    return instant.isoformat().replace("+00:00", "Z")


def _period(entry: RateCardEntry) -> str:
    end = _when(entry.effective_to) if entry.effective_to else "open end"
    return f"[{_when(entry.effective_from)}, {end})"


def _overlaps(a: RateCardEntry, b: RateCardEntry) -> bool:
    a_end = a.effective_to or datetime.max.replace(tzinfo=a.effective_from.tzinfo)
    b_end = b.effective_to or datetime.max.replace(tzinfo=b.effective_from.tzinfo)
    return bool(a.effective_from < b_end and b.effective_from < a_end)


def _check_periods(check: _Checker, located: Sequence[_Located]) -> None:
    """Overlaps (error) and gaps (warning) between entries of one provider and model."""
    by_model: dict[tuple[str, str], list[_Located]] = defaultdict(list)
    for item in located:
        by_model[(item.entry.provider, item.entry.model.lower())].append(item)
    for (provider, model), items in by_model.items():
        items.sort(key=lambda i: (i.entry.effective_from, i.index))
        for n, later in enumerate(items):
            for earlier in items[:n]:
                if _overlaps(earlier.entry, later.entry):
                    check.add(
                        (*later.loc, "effective_from"),
                        f"{provider}/{model} {_period(later.entry)} overlaps entry {earlier.entry.id!r} "
                        f"{_period(earlier.entry)} ({check.line(earlier.loc)}); pricing would pick one "
                        "silently. End the older entry with effective_to = the newer one's effective_from",
                    )
        for previous, following in pairwise(items):
            end = previous.entry.effective_to
            if end is not None and end < following.entry.effective_from:
                check.add(
                    (*following.loc, "effective_from"),
                    f"gap in {provider}/{model}: no entry from {_when(end)} (end of "
                    f"{previous.entry.id!r}, {check.line((*previous.loc, 'effective_to'))}) to "
                    f"{_when(following.entry.effective_from)}; events then are unpriced",
                    "warning",
                )


def _check_names(check: _Checker, located: Sequence[_Located]) -> None:
    """Aliases that collide with another model's name or alias while both are in force."""
    claims: dict[tuple[str, str], list[tuple[_Located, Loc, str]]] = defaultdict(list)
    for item in located:
        entry = item.entry
        claims[(entry.provider, entry.model.lower())].append((item, (*item.loc, "model"), "model"))
        seen: set[str] = set()
        for a, alias in enumerate(entry.aliases):
            loc = (*item.loc, "aliases", a)
            name = alias.lower()
            if name == entry.model.lower():
                check.add(loc, f"alias {alias!r} repeats the model name; remove it", "warning")
                continue
            if name in seen:
                check.add(loc, f"alias {alias!r} is listed twice in this entry; remove one", "warning")
                continue
            seen.add(name)
            claims[(entry.provider, name)].append((item, loc, "alias"))
    for (provider, name), holders in claims.items():
        if len(holders) < 2:
            continue
        for n, (item, loc, kind) in enumerate(holders):
            for other, other_loc, other_kind in holders[:n]:
                if other.entry.model.lower() == item.entry.model.lower():
                    continue  # same model: an overlap there is reported by _check_periods
                if not _overlaps(item.entry, other.entry):
                    continue
                check.add(
                    loc,
                    f"{kind} {name!r} of {provider}/{item.entry.model} is also the {other_kind} of "
                    f"{other.entry.provider}/{other.entry.model} in entry {other.entry.id!r} "
                    f"({check.line(other_loc)}) while both are in force; events named {name!r} could "
                    "be priced as either model. Remove the alias from one of them",
                )


def _check_prices(check: _Checker, loc: Loc, prices: PriceSet, what: str) -> None:
    if prices.cache_read is not None and prices.input is not None and prices.cache_read > prices.input:
        check.add(
            (*loc, "cache_read"),
            f"{what}: cache_read {prices.cache_read} is above input {prices.input}; cache hits are "
            "normally cheaper than uncached input (check for swapped values)",
            "warning",
        )


def _check_adjustment(check: _Checker, loc: Loc, adjustment: Adjustment, what: str) -> None:
    multipliers: list[tuple[Loc, Decimal]] = []
    if adjustment.multiplier is not None:
        multipliers.append(((*loc, "multiplier"), adjustment.multiplier))
    for key, value in (adjustment.multipliers or {}).items():
        multipliers.append(((*loc, "multipliers", key), value))
    for where, value in multipliers:
        if value > MAX_MULTIPLIER or value <= 0:
            check.add(
                where,
                f"{what}: multiplier {value} is outside (0, {MAX_MULTIPLIER}]; a multiplier scales prices "
                "(0.5 for half price, 1.1 for +10%), so this is most likely a typo",
            )
    if adjustment.prices is not None:
        _check_prices(check, (*loc, "prices"), adjustment.prices, what)


def _check_entry(check: _Checker, item: _Located) -> None:
    entry, loc = item.entry, item.loc
    if entry.prices is not None:
        if all(getattr(entry.prices, key) is None for key in PRICE_KEYS):
            check.add(
                (*loc, "prices"),
                "no prices at all: every event of this model would be unpriced; add at least input/output",
                "warning",
            )
        _check_prices(check, (*loc, "prices"), entry.prices, "base prices")
    base = entry.base_prices()
    # Tier order, reversed periods and duplicate ids are schema rules, reported by the loader.
    for t, tier in enumerate(entry.context_tiers):
        tier_loc = (*loc, "context_tiers", t)
        for key in PRICE_KEYS:
            price, base_price = getattr(tier.prices, key), getattr(base, key)
            if price is not None and base_price is not None and price < base_price:
                check.add(
                    (*tier_loc, "prices", key),
                    f"{key} above {tier.above_input_tokens} input tokens costs {price}, less than the base "
                    f"{base_price}; long-context tiers normally cost more (check the numbers)",
                    "warning",
                )
        _check_prices(
            check, (*tier_loc, "prices"), tier.prices.merged_over(base), f"tier >{tier.above_input_tokens}"
        )
    for name, adjustment in entry.service_tiers.items():
        tier_loc = (*loc, "service_tiers", name)
        if name != name.lower():
            check.add(
                tier_loc,
                f"service tier {name!r} never matches: events' tiers are compared in lower case; "
                f"write {name.lower()!r}",
            )
        elif name in STANDARD_TIERS:
            check.add(
                tier_loc,
                f"service tier {name!r} is never applied: events in it are priced at the base prices; "
                "put standard prices under `prices`",
                "warning",
            )
        elif name not in KNOWN_SERVICE_TIERS:
            check.add(
                tier_loc,
                f"unknown service tier {name!r}; providers use {', '.join(sorted(KNOWN_SERVICE_TIERS))} "
                "(check the spelling: an event's tier must match exactly)",
                "warning",
            )
        _check_adjustment(check, tier_loc, adjustment, f"service tier {name}")
    for region, adjustment in entry.geo.items():
        geo_loc = (*loc, "geo", region)
        if region != region.lower():
            check.add(
                geo_loc,
                f"geo {region!r} never matches: events' regions are compared in lower case; "
                f"write {region.lower()!r}",
            )
        _check_adjustment(check, geo_loc, adjustment, f"geo {region}")
    for w, window in enumerate(entry.time_windows):
        _check_adjustment(
            check, (*loc, "time_windows", w, "adjustment"), window.adjustment, f"window {window.name}"
        )
    for key in entry.request_prices:
        if key not in REQUEST_COUNTERS:
            check.add(
                (*loc, "request_prices", key),
                f"request price {key!r} is not a UsageEvent request counter, so it is never charged; "
                f"use one of {', '.join(REQUEST_COUNTERS)}",
            )


def check_entries(
    entries: Iterable[tuple[int, RateCardEntry]], file: str, source: SourceMap | None = None
) -> list[Problem]:
    """The checks beyond the schema, on valid entries given with their index in the file."""
    located = [_Located(index, entry) for index, entry in entries]
    check = _Checker(file, source)
    for item in located:
        _check_entry(check, item)
    _check_periods(check, located)
    _check_names(check, located)
    return check.problems


def _valid_entries(data: Any) -> list[tuple[int, RateCardEntry]]:
    """Entries that pass the schema one by one, so a card with one bad entry is still checked."""
    raw = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return []
    valid = []
    for index, item in enumerate(raw):
        try:
            valid.append((index, RateCardEntry.model_validate(item)))
        except ValidationError:
            continue  # its schema errors are already reported
    return valid


def validate_rate_card(path: Path) -> list[Problem]:
    """Every problem in a card file (YAML card or LiteLLM JSON), errors and warnings, by line."""
    path = Path(path)
    file = str(path)
    try:
        text = read_card_text(path)
        litellm = load_litellm_json(text, file)
    except RateCardError as exc:
        return [Problem(file, None, "", str(exc))]
    if litellm is not None:
        from costline.pipeline.ratecard.litellm_import import UNDATED_EFFECTIVE_FROM, import_litellm

        card = import_litellm(litellm, effective_from=UNDATED_EFFECTIVE_FROM).card
        return _sorted(check_entries(enumerate(card.entries), file))
    parsed = parse_rate_card_text(text, file)
    problems = list(parsed.problems)
    problems.extend(check_entries(_valid_entries(parsed.data), file, parsed.source_map))
    return _sorted(problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.path, p.severity))


def has_errors(problems: Iterable[Problem]) -> bool:
    """Whether any problem is an error (the CLI exits non-zero then; warnings alone do not)."""
    return any(p.severity == "error" for p in problems)


def format_problems(problems: Sequence[Problem]) -> str:
    """One `FILE:LINE: severity: path: message` line per problem, then a count."""
    lines = [p.format() for p in _sorted(list(problems))]
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if not problems:
        lines.append("no problems found")
    else:
        lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)
