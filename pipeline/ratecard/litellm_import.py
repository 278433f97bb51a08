"""Import LiteLLM's model price map into our rate card, saying exactly what was and was not mapped.

The map (`model_prices_and_context_window.json` in BerriAI/litellm) prices per single token in
binary floats and carries no dates. This importer converts every price exactly
(`Decimal(str(x))` × 10^6 → USD per million tokens), rounds the few float artefacts such as
`3.0001999999999996e-07` half-even onto the micro-dollar grid and lists them, dates the whole
snapshot with one `effective_from`, and reports per key what became of it, so an import can be
reviewed instead of trusted.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from costline.pipeline.ratecard.load import (
    is_litellm_price_map,
    rate_card_to_yaml,
    read_card_text,
    write_rate_card_yaml,
)
from costline.pipeline.ratecard.model import (
    PRICE_DECIMALS,
    REQUEST_PRICE_DECIMALS,
    Adjustment,
    RateCard,
    RateCardEntry,
)
from costline.schemas.errors import RateCardError

logger = logging.getLogger(__name__)

__all__ = [
    "PROVIDER_ROUTES",
    "UNDATED_EFFECTIVE_FROM",
    "EntryReport",
    "FloatArtefact",
    "ImportReport",
    "ImportResult",
    "MergedKey",
    "SkippedKey",
    "import_litellm",
    "import_litellm_file",
    "rate_card_to_yaml",
    "write_rate_card_yaml",
]

#: The map has no dates: converted on the fly (no date given), it prices all of history.
UNDATED_EFFECTIVE_FROM = datetime(1970, 1, 1, tzinfo=UTC)

#: LiteLLM provider → our provider route (OTel `gen_ai.provider.name` where one exists).
#: Providers not listed keep their LiteLLM name (`fireworks_ai`, `together_ai`, `codestral`, …);
#: `codestral` stays apart from `mistral_ai` because codestral.mistral.ai is its own, free route.
PROVIDER_ROUTES: dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "groq": "groq",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "perplexity": "perplexity",
}
#: Key prefixes that name the provider without being its exact LiteLLM name.
_PREFIX_ALIASES: dict[str, tuple[str, ...]] = {
    "bedrock_converse": ("bedrock", "converse"),
    "azure_text": ("azure",),
    "text-completion-openai": ("openai",),
    "text-completion-codestral": ("codestral",),
    "text-completion-inception": ("inception",),
    "cohere_chat": ("cohere",),
}
_AWS_REGION = re.compile(r"^[a-z]{2}(?:-gov)?-[a-z]+-\d+$")
_AZURE_ZONES = frozenset({"eu", "us", "global", "us-gov", "apac", "global-standard"})

#: LiteLLM token-price field (without tier/variant suffix) → our price key.
_TOKEN_FIELDS: dict[str, str] = {
    "input_cost_per_token_cache_hit": "cache_read",
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "output_cost_per_reasoning_token": "reasoning",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost_above_12hr": "cache_write_12h",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "cache_creation_input_token_cost": "cache_write_5m",
}
_TOKEN_FIELDS_LONGEST_FIRST = sorted(_TOKEN_FIELDS, key=len, reverse=True)
_VARIANT = re.compile(r"^(?:_above_(?P<k>\d+)k_tokens)?(?:_(?P<svc>[a-z0-9]+))?$")
#: LiteLLM variant suffix → our service tier name.
SERVICE_TIER_SUFFIXES: dict[str, str] = {
    "batches": "batch",
    "flex": "flex",
    "priority": "priority",
    "ultrafast": "ultrafast",
}
#: LiteLLM capability flag → our capability name.
CAPABILITIES: dict[str, str] = {
    "supports_reasoning": "reasoning",
    "supports_function_calling": "tools",
    "supports_vision": "vision",
    "supports_prompt_caching": "prompt_caching",
    "supports_web_search": "web_search",
    "supports_pdf_input": "pdf_input",
    "supports_audio_input": "audio_input",
    "supports_audio_output": "audio_output",
    "supports_computer_use": "computer_use",
    "supports_response_schema": "structured_output",
}
_GRID = Decimal(1).scaleb(-PRICE_DECIMALS)
_REQUEST_GRID = Decimal(1).scaleb(-REQUEST_PRICE_DECIMALS)
_MAX_CLEAN_RATIO_DECIMALS = 6


# --- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkippedKey:
    """A key that produced no entry, and why (`reason` is short and groupable, `detail` specific)."""

    key: str
    mode: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class MergedKey:
    """A key priced through another entry: an identical duplicate, or a regional price (geo)."""

    key: str
    mode: str
    entry_id: str
    how: str


@dataclass
class EntryReport:
    """What one imported entry took from its LiteLLM key, and what it left out (with why)."""

    key: str
    entry_id: str
    mode: str
    mapped: dict[str, str] = field(default_factory=dict)
    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FloatArtefact:
    """A per-token float whose exact per-MTok value had more than 6 decimals, and its rounding."""

    key: str
    field: str
    raw: str
    exact_per_mtok: str
    rounded_per_mtok: str


@dataclass
class ImportReport:
    """The whole import: one line per key, so nothing is dropped silently."""

    effective_from: datetime
    imported: list[EntryReport] = field(default_factory=list)
    merged: list[MergedKey] = field(default_factory=list)
    skipped: list[SkippedKey] = field(default_factory=list)
    float_artefacts: list[FloatArtefact] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per LiteLLM mode (and `all`): keys priced (as an entry or through one) and skipped."""
        counts: dict[str, dict[str, int]] = {}

        def bump(mode: str, outcome: str) -> None:
            for bucket in (mode, "all"):
                counts.setdefault(bucket, {"priced": 0, "skipped": 0})[outcome] += 1

        for entry in self.imported:
            bump(entry.mode, "priced")
        for merged in self.merged:
            bump(merged.mode, "priced")
        for skipped in self.skipped:
            bump(skipped.mode, "skipped")
        return counts

    def skip_reasons(self) -> Counter[str]:
        """How many keys were skipped for each reason."""
        return Counter(s.reason for s in self.skipped)

    def unmapped_fields(self) -> Counter[tuple[str, str]]:
        """How often each (LiteLLM field, reason) was left out of an imported entry."""
        counter: Counter[tuple[str, str]] = Counter()
        for entry in self.imported:
            counter.update(entry.unmapped.items())
        return counter

    def one_line(self) -> str:
        """A log line: keys priced and skipped, chat coverage, artefacts."""
        counts = self.counts()
        total, chat = counts.get("all", {}), counts.get("chat", {})
        return (
            f"{total.get('priced', 0)} keys priced "
            f"({len(self.imported)} entries, {len(self.merged)} merged into them), "
            f"{total.get('skipped', 0)} skipped; chat {chat.get('priced', 0)} priced / "
            f"{chat.get('skipped', 0)} skipped; {len(self.float_artefacts)} float artefacts normalized"
        )

    def summary(self, *, top: int = 10) -> str:
        """A human-readable review of the import (what `costline ratecard import-litellm` prints)."""
        counts = self.counts()
        lines = [f"LiteLLM import dated {self.effective_from.date().isoformat()}: {self.one_line()}", ""]
        lines.append("keys by mode (priced / skipped):")
        for mode, c in sorted(counts.items(), key=lambda kv: (kv[0] == "all", -sum(kv[1].values()))):
            lines.append(f"  {mode:<20} {c['priced']:>6} / {c['skipped']:<6}")
        lines.append("")
        lines.append("top skip reasons:")
        for reason, n in self.skip_reasons().most_common(top):
            lines.append(f"  {n:>6}  {reason}")
        lines.append("")
        lines.append("top fields left out of imported entries:")
        for (name, reason), n in self.unmapped_fields().most_common(top):
            lines.append(f"  {n:>6}  {name}: {reason}")
        if self.float_artefacts:
            lines.append("")
            lines.append(f"float artefacts normalized ({len(self.float_artefacts)}):")
            for artefact in self.float_artefacts[:top]:
                lines.append(
                    f"  {artefact.key} {artefact.field}: {artefact.raw} → {artefact.exact_per_mtok} "
                    f"→ {artefact.rounded_per_mtok} per MTok"
                )
            if len(self.float_artefacts) > top:
                lines.append(f"  … and {len(self.float_artefacts) - top} more (see the JSON report)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The full report as JSON-ready data (for `--report FILE`)."""
        return {
            "effective_from": self.effective_from.isoformat(),
            "counts": self.counts(),
            "skip_reasons": dict(self.skip_reasons().most_common()),
            "float_artefacts": [vars(a) for a in self.float_artefacts],
            "skipped": [vars(s) for s in self.skipped],
            "merged": [vars(m) for m in self.merged],
            "imported": [vars(e) for e in self.imported],
        }


@dataclass
class ImportResult:
    """The converted card and the report on how it was made."""

    card: RateCard
    report: ImportReport


# --- converting one key ----------------------------------------------------------------------

Prices = dict[str, Decimal]


@dataclass
class _Draft:
    """Everything read from one LiteLLM key, before it becomes (part of) an entry."""

    key: str
    mode: str
    litellm_provider: str
    provider: str
    model: str
    region: str | None
    base: Prices = field(default_factory=dict)
    tiers: dict[int, Prices] = field(default_factory=dict)
    variant_base: dict[str, Prices] = field(default_factory=dict)
    variant_tiers: dict[str, dict[int, Prices]] = field(default_factory=dict)
    variant_fields: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    off_peak: Prices = field(default_factory=dict)
    off_peak_windows: list[dict[str, Any]] = field(default_factory=list)
    geo_multipliers: dict[str, Decimal] = field(default_factory=dict)
    request_prices: dict[str, Decimal] = field(default_factory=dict)
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: list[str] = field(default_factory=list)
    source: str | None = None
    mapped: dict[str, str] = field(default_factory=dict)
    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    other_prices: list[str] = field(default_factory=list)

    @property
    def priced(self) -> bool:
        return bool(self.base) or bool(self.tiers)

    def price_field_count(self) -> int:
        return len(self.base) + sum(len(t) for t in self.tiers.values()) + len(self.variant_fields)


def _route(litellm_provider: str) -> str:
    if litellm_provider.startswith("vertex_ai"):
        return "gcp.vertex_ai"
    return PROVIDER_ROUTES.get(litellm_provider, litellm_provider)


def _strip_provider_prefix(key: str, litellm_provider: str) -> str:
    first, sep, rest = key.partition("/")
    if not sep or not rest:
        return key
    names = {litellm_provider, litellm_provider.split("-")[0], *_PREFIX_ALIASES.get(litellm_provider, ())}
    return rest if first in names else key


def _split_region(litellm_provider: str, name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    if sep and rest:
        if litellm_provider.startswith("bedrock") and _AWS_REGION.match(first):
            return first, rest
        if litellm_provider in {"azure", "azure_text"} and first in _AZURE_ZONES:
            return first, rest
    return None, name


def _parse_price_field(name: str) -> tuple[str, int | None, str | None] | None:
    """(LiteLLM base field, context threshold in tokens or None, variant suffix or None)."""
    for base in _TOKEN_FIELDS_LONGEST_FIRST:
        if name.startswith(base):
            match = _VARIANT.match(name[len(base) :])
            if match:
                k, svc = match.group("k"), match.group("svc")
                return base, int(k) * 1000 if k else None, svc
    return None


def _other_price_reason(name: str) -> str:
    if "dbu" in name:
        return "priced in Databricks DBUs, not USD"
    for words, reason in (
        (("audio",), "audio prices: costline has no audio token or second bucket"),
        (("image", "pixel"), "image prices: costline has no image bucket"),
        (("video",), "video prices: costline has no video bucket"),
        (("per_second",), "per-second prices: costline prices tokens, not time"),
        (("character",), "per-character prices: costline prices tokens"),
        (("_balanced", "_decisions"), "pricing variant costline has no service tier for"),
        (("query", "request", "session", "page", "credit", "unit", "message", "gb_per"), "per-unit charge"),
    ):
        if any(word in name for word in words):
            return reason
    return "price field costline has no equivalent for"


class _Converter:
    """Turns LiteLLM values into exact decimals, recording artefacts and refusals."""

    def __init__(self, artefacts: list[FloatArtefact]) -> None:
        self.artefacts = artefacts

    def per_mtok(self, draft: _Draft, name: str, value: Any) -> Decimal | None:
        """USD per million tokens from a per-token value, on the micro grid; None if unusable."""
        exact = self._decimal(draft, name, value)
        if exact is None:
            return None
        exact = exact.scaleb(6) if exact else Decimal(0)
        return self._on_grid(draft, name, value, exact, _GRID)

    def per_request(self, draft: _Draft, name: str, value: Any) -> Decimal | None:
        exact = self._decimal(draft, name, value)
        if exact is None:
            return None
        return self._on_grid(draft, name, value, exact, _REQUEST_GRID)

    def multiplier(self, draft: _Draft, name: str, value: Any) -> Decimal | None:
        exact = self._decimal(draft, name, value)
        if exact is None:
            return None
        if exact <= 0:
            draft.unmapped[name] = f"multiplier {value!r} is not positive"
            return None
        return exact.normalize()

    def _decimal(self, draft: _Draft, name: str, value: Any) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            draft.unmapped[name] = f"not a number ({type(value).__name__})"
            return None
        try:
            exact = Decimal(str(value))
        except InvalidOperation:
            draft.unmapped[name] = f"not a number ({value!r})"
            return None
        if not exact.is_finite() or exact < 0:
            draft.unmapped[name] = f"not a usable price ({value!r})"
            return None
        return exact

    def _on_grid(self, draft: _Draft, name: str, raw: Any, exact: Decimal, grid: Decimal) -> Decimal:
        exponent, limit = exact.normalize().as_tuple().exponent, grid.as_tuple().exponent
        if isinstance(exponent, int) and isinstance(limit, int) and exponent < limit:
            rounded = exact.quantize(grid, rounding=ROUND_HALF_EVEN).normalize()
            self.artefacts.append(
                FloatArtefact(
                    draft.key, name, repr(raw), format(exact.normalize(), "f"), format(rounded, "f")
                )
            )
            return rounded
        return exact.normalize()


def _price_key(base_field: str, openai_style_writes: bool) -> str:
    key = _TOKEN_FIELDS[base_field]
    if openai_style_writes and key == "cache_write_5m":
        return "cache_write_30m"
    return key


def _read_key(key: str, value: dict[str, Any], conv: _Converter) -> _Draft:
    """Every field of one LiteLLM key, sorted into prices, tiers, variants, metadata."""
    litellm_provider = str(value["litellm_provider"])
    region, model = _split_region(litellm_provider, _strip_provider_prefix(key, litellm_provider))
    draft = _Draft(
        key=key,
        mode=str(value.get("mode") or "unknown"),
        litellm_provider=litellm_provider,
        provider=_route(litellm_provider),
        model=model,
        region=region,
    )
    # OpenAI-style caches write with 30-minute (default) or 12-hour retention; Anthropic-style
    # with 5-minute or 1-hour TTLs. The normalizers bucket writes the same way.
    openai_style = "cache_creation_input_token_cost_above_12hr" in value or litellm_provider in {
        "openai",
        "azure",
        "azure_text",
        "text-completion-openai",
    }
    secondary: dict[str, tuple[str, Decimal]] = {}
    for name, raw in value.items():
        parsed = _parse_price_field(name)
        if parsed is not None:
            _read_price(draft, name, raw, parsed, conv, openai_style, secondary)
        elif name == "litellm_provider":
            draft.mapped[name] = f"provider {draft.provider}"
        elif name == "mode":
            draft.mapped[name] = "counted in the report"
        elif name == "source":
            draft.source = str(raw)
            draft.mapped[name] = "source"
        elif name == "max_input_tokens":
            draft.context_window = _positive_int(draft, name, raw)
            if draft.context_window is not None:
                draft.mapped[name] = "context_window"
        elif name == "max_output_tokens":
            draft.max_output_tokens = _positive_int(draft, name, raw)
            if draft.max_output_tokens is not None:
                draft.mapped[name] = "max_output_tokens"
        elif name in CAPABILITIES:
            if raw is True:
                draft.capabilities.append(CAPABILITIES[name])
            draft.mapped[name] = f"capabilities: {CAPABILITIES[name]}"
        elif name.startswith("supports_"):
            draft.unmapped[name] = "capability costline does not track"
        elif name == "search_context_cost_per_query":
            _read_search(draft, name, raw, conv)
        elif name == "tiered_pricing":
            _read_tiered(draft, name, raw, conv, openai_style)
        elif name == "off_peak_pricing":
            _read_off_peak(draft, name, raw, conv, openai_style)
        elif name == "provider_specific_entry":
            _read_provider_specific(draft, name, raw, conv)
        elif name.startswith("regional_processing_uplift_multiplier_"):
            geo = name.removeprefix("regional_processing_uplift_multiplier_")
            multiplier = conv.multiplier(draft, name, raw)
            if multiplier is not None:
                draft.geo_multipliers.setdefault(geo, multiplier)
                draft.mapped[name] = f"geo.{geo}.multiplier"
        elif name == "regional_endpoint_uplift_multiplier":
            draft.unmapped[name] = (
                "applies to every regional (non-global) endpoint; geo needs region names, add them by hand"
            )
        elif "cost" in name or "price" in name:
            draft.unmapped[name] = _other_price_reason(name)
            draft.other_prices.append(name)
        else:
            draft.unmapped[name] = "metadata, not a price"
    for name, (price_key, price) in secondary.items():
        if price_key in draft.base:
            if draft.base[price_key] == price:
                draft.mapped[name] = f"prices.{price_key} (same as the main field)"
            else:
                draft.unmapped[name] = f"disagrees with the main {price_key} price; the main one is used"
        else:
            draft.base[price_key] = price
            draft.mapped[name] = f"prices.{price_key}"
    return draft


def _read_price(
    draft: _Draft,
    name: str,
    raw: Any,
    parsed: tuple[str, int | None, str | None],
    conv: _Converter,
    openai_style: bool,
    secondary: dict[str, tuple[str, Decimal]],
) -> None:
    base_field, above, suffix = parsed
    if suffix is not None and suffix not in SERVICE_TIER_SUFFIXES:
        draft.unmapped[name] = _other_price_reason(f"_{suffix}")
        return
    price = conv.per_mtok(draft, name, raw)
    if price is None:
        return
    price_key = _price_key(base_field, openai_style)
    if base_field == "input_cost_per_token_cache_hit":
        if above is None and suffix is None:
            secondary[name] = (price_key, price)
        else:
            draft.unmapped[name] = "cache-hit variant of a tier; use cache_read_input_token_cost fields"
        return
    if suffix is None:
        target = draft.base if above is None else draft.tiers.setdefault(above, {})
        target[price_key] = price
        draft.mapped[name] = (
            f"prices.{price_key}" if above is None else f"context_tiers[>{above}].{price_key}"
        )
        return
    tier = SERVICE_TIER_SUFFIXES[suffix]
    if above is None:
        draft.variant_base.setdefault(tier, {})[price_key] = price
    else:
        draft.variant_tiers.setdefault(tier, {}).setdefault(above, {})[price_key] = price
    draft.variant_fields.setdefault(tier, []).append((name, above))


def _positive_int(draft: _Draft, name: str, raw: Any) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0 or int(raw) != raw:
        draft.unmapped[name] = f"not a positive whole number ({raw!r})"
        return None
    return int(raw)


def _read_search(draft: _Draft, name: str, raw: Any, conv: _Converter) -> None:
    if isinstance(raw, dict):
        sizes = {k: v for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        chosen = "search_context_size_medium" if "search_context_size_medium" in sizes else None
        if chosen is None and sizes:
            chosen = sorted(sizes)[0]
        if chosen is None:
            draft.unmapped[name] = "no per-query price in it"
            return
        price = conv.per_request(draft, name, sizes[chosen])
        if price is None:
            return
        same = len({Decimal(str(v)) for v in sizes.values()}) == 1
        which = "all context sizes cost the same" if same else f"{chosen} of {', '.join(sorted(sizes))}"
        draft.request_prices["web_search_requests"] = price
        draft.mapped[name] = f"request_prices.web_search_requests ({which})"
        return
    price = conv.per_request(draft, name, raw)
    if price is not None:
        draft.request_prices["web_search_requests"] = price
        draft.mapped[name] = "request_prices.web_search_requests"


def _read_tiered(draft: _Draft, name: str, raw: Any, conv: _Converter, openai_style: bool) -> None:
    """`tiered_pricing` ranges [lo, hi]: the one from 0 is the base, the others context tiers."""
    if not isinstance(raw, list) or not all(isinstance(t, dict) and "range" in t for t in raw):
        draft.unmapped[name] = "tiers without token ranges (per-result pricing)"
        return
    conflicts = []
    for i, tier in enumerate(raw):
        bounds = tier.get("range")
        if not isinstance(bounds, list) or len(bounds) != 2:
            conflicts.append(f"tier {i} has no [low, high] range")
            continue
        low = int(bounds[0])
        for field_name, value in tier.items():
            if field_name == "range":
                continue
            parsed = _parse_price_field(field_name)
            if parsed is None or parsed[1] is not None or parsed[2] is not None:
                conflicts.append(f"tier {i} field {field_name} is not a plain token price")
                continue
            price = conv.per_mtok(draft, f"{name}[{i}].{field_name}", value)
            if price is None:
                continue
            price_key = _price_key(parsed[0], openai_style)
            if low == 0:
                current = draft.base.get(price_key)
                if current is None:
                    draft.base[price_key] = price
                elif current != price:
                    conflicts.append(f"tier 0 {price_key} {price} disagrees with the top-level {current}")
            else:
                draft.tiers.setdefault(low, {})[price_key] = price
    thresholds = sorted(int(t["range"][0]) for t in raw if isinstance(t.get("range"), list) and t["range"][0])
    draft.mapped[name] = "prices and context_tiers" + (f" (above {thresholds})" if thresholds else "")
    if conflicts:
        draft.notes.append(f"{name}: " + "; ".join(conflicts))


def _read_off_peak(draft: _Draft, name: str, raw: Any, conv: _Converter, openai_style: bool) -> None:
    if not isinstance(raw, dict):
        draft.unmapped[name] = "not an object"
        return
    zone = raw.get("weekday_timezone")
    if zone not in (None, "UTC", "Etc/UTC"):
        draft.unmapped[name] = (
            f"weekdays are counted in {zone} but hours in UTC; one TimeWindow has one time zone, "
            "so add these windows by hand"
        )
        return
    for field_name, value in raw.items():
        parsed = _parse_price_field(field_name)
        if parsed is None or parsed[1] is not None or parsed[2] is not None:
            continue
        price = conv.per_mtok(draft, f"{name}.{field_name}", value)
        if price is not None:
            draft.off_peak[_price_key(parsed[0], openai_style)] = price
    windows = raw.get("windows")
    if not isinstance(windows, list):
        draft.unmapped[name] = "no windows"
        return
    for window in windows:
        hours = window.get("hours_utc") if isinstance(window, dict) else None
        ranges = [hours] if isinstance(hours, str) else hours if isinstance(hours, list) else []
        weekdays = window.get("weekdays", []) if isinstance(window, dict) else []
        for span in ranges:
            match = re.fullmatch(r"(\d\d:\d\d)-(\d\d:\d\d)", str(span))
            if not match:
                draft.unmapped[name] = f"unreadable hours {span!r}"
                draft.off_peak_windows.clear()
                return
            draft.off_peak_windows.append(
                {"start": match.group(1), "end": match.group(2), "weekdays": list(weekdays)}
            )
    draft.mapped[name] = f"time_windows (off_peak, {len(draft.off_peak_windows)} UTC windows)"


def _read_provider_specific(draft: _Draft, name: str, raw: Any, conv: _Converter) -> None:
    if not isinstance(raw, dict):
        draft.unmapped[name] = "not an object"
        return
    used = []
    for geo, value in raw.items():
        if geo in {"us", "eu", "global"} and isinstance(value, int | float) and not isinstance(value, bool):
            multiplier = conv.multiplier(draft, f"{name}.{geo}", value)
            if multiplier is not None:
                draft.geo_multipliers.setdefault(geo, multiplier)
                used.append(geo)
    if used:
        draft.mapped[name] = ", ".join(f"geo.{g}.multiplier" for g in used)
    else:
        draft.unmapped[name] = "provider options, not prices"


# --- adjustments (service tiers, off-peak, geo) ----------------------------------------------


def _on_grid(value: Decimal) -> Decimal:
    return value.quantize(_GRID, rounding=ROUND_HALF_EVEN).normalize()


def _clean_ratio(price: Decimal, standard: Decimal | None) -> Decimal | bool | None:
    """price / standard when it is a short decimal; None when both are 0; False when impossible."""
    if standard is None:
        return False
    if standard == 0:
        return None if price == 0 else False
    with localcontext() as ctx:
        ctx.prec = 50
        ratio = (price / standard).normalize()
    exponent = ratio.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent > _MAX_CLEAN_RATIO_DECIMALS:
        return False
    return ratio


def _adjustment(
    base: Prices,
    tiers: dict[int, Prices],
    variant_base: Prices,
    variant_tiers: dict[int, Prices],
    *,
    prefer_ratios: bool = False,
) -> tuple[dict[str, Any] | None, str, bool]:
    """The adjustment for a variant (batch, off-peak, a region) of the standard prices.

    Without context tiers the variant's explicit prices are exact. With them, explicit prices
    would replace the tier prices too, so the variant is expressed as one multiplier, or one per
    price key, when those reproduce every variant price LiteLLM gives (base and tiers); otherwise
    explicit prices are used and the tier variants are reported as left out. `prefer_ratios` is
    for geo, which applies after the service tier: explicit prices there would undo a batch discount.
    Returns (adjustment, how it was expressed, whether the tier variants were expressed).
    """
    if not tiers and not prefer_ratios:
        if not variant_base:
            return None, "no base-level prices for this variant", False
        return {"prices": dict(variant_base)}, "explicit prices", not variant_tiers
    ratios: dict[str, Decimal] = {}
    ok = True
    for key, price in variant_base.items():
        ratio = _clean_ratio(price, base.get(key))
        if ratio is False:
            ok = False
            break
        if isinstance(ratio, Decimal):
            ratios[key] = ratio
    if ok:
        for threshold, prices in variant_tiers.items():
            if threshold not in tiers:
                ok = False
                break
            effective = {**base, **tiers[threshold]}
            for key, price in prices.items():
                if key in ratios:
                    if _on_grid(ratios[key] * effective.get(key, Decimal(0))) != price:
                        ok = False
                        break
                else:
                    ratio = _clean_ratio(price, effective.get(key))
                    if ratio is False:
                        ok = False
                        break
                    if isinstance(ratio, Decimal):
                        ratios[key] = ratio
            if not ok:
                break
    if ok and ratios:
        priced_keys = {k for k, v in base.items() if v} | {
            k for t in tiers.values() for k, v in t.items() if v
        }
        distinct = set(ratios.values())
        follows = " (follows the context tiers)" if tiers else ""
        if len(distinct) == 1 and priced_keys <= set(ratios):
            return {"multiplier": distinct.pop()}, "one multiplier" + follows, True
        return {"multipliers": ratios}, "per-key multipliers" + follows, True
    if not variant_base:
        return None, "tier-only variant prices that no multiplier reproduces", False
    reason = "the tier prices" if tiers else "them"
    return {"prices": dict(variant_base)}, f"explicit prices (no short multiplier reproduces {reason})", False


# --- building entries ------------------------------------------------------------------------


def _entry_id(provider: str, model: str, effective_from: datetime) -> str:
    return f"litellm/{provider}/{model}@{effective_from.date().isoformat()}"


def _entry_data(draft: _Draft, effective_from: datetime) -> dict[str, Any]:
    """The entry (as model input) for a draft; fills the draft's report as it goes."""
    data: dict[str, Any] = {
        "id": _entry_id(draft.provider, draft.model, effective_from),
        "provider": draft.provider,
        "model": draft.model,
        "effective_from": effective_from,
        "prices": dict(draft.base),
        "source": f"LiteLLM model price map key {draft.key!r}"
        + (f" ({draft.source})" if draft.source else ""),
    }
    if draft.tiers:
        data["context_tiers"] = [
            {"above_input_tokens": above, "prices": dict(prices)}
            for above, prices in sorted(draft.tiers.items())
        ]
    service_tiers: dict[str, Any] = {}
    for tier in sorted(set(draft.variant_base) | set(draft.variant_tiers)):
        adjustment, how, tiers_done = _adjustment(
            draft.base, draft.tiers, draft.variant_base.get(tier, {}), draft.variant_tiers.get(tier, {})
        )
        for name, above in draft.variant_fields.get(tier, []):
            if adjustment is None or (above is not None and not tiers_done):
                draft.unmapped[name] = f"service tier {tier}: {how}"
            else:
                draft.mapped[name] = f"service_tiers.{tier} ({how})"
        if adjustment is not None:
            service_tiers[tier] = adjustment
    if service_tiers:
        data["service_tiers"] = service_tiers
    if draft.geo_multipliers:
        data["geo"] = {geo: {"multiplier": m} for geo, m in sorted(draft.geo_multipliers.items())}
    if draft.off_peak and draft.off_peak_windows:
        adjustment, how, _ = _adjustment(draft.base, draft.tiers, draft.off_peak, {})
        if adjustment is not None:
            data["time_windows"] = [
                {"name": "off_peak", **window, "adjustment": adjustment} for window in draft.off_peak_windows
            ]
            draft.notes.append(f"off-peak prices as {how}")
        else:
            draft.unmapped["off_peak_pricing"] = f"off-peak prices: {how}"
    if draft.request_prices:
        data["request_prices"] = dict(draft.request_prices)
    if draft.context_window is not None:
        data["context_window"] = draft.context_window
    if draft.max_output_tokens is not None:
        data["max_output_tokens"] = draft.max_output_tokens
    if draft.capabilities:
        data["capabilities"] = sorted(set(draft.capabilities))
    return data


_PRICE_PARTS = ("prices", "context_tiers", "service_tiers", "geo", "time_windows", "request_prices")


def _consistent(canonical: RateCardEntry, other: RateCardEntry) -> bool:
    """Whether every price `other` gives is also in `canonical` with the same value."""
    a = canonical.model_dump(include=set(_PRICE_PARTS), exclude_none=True)
    b = other.model_dump(include=set(_PRICE_PARTS), exclude_none=True)
    return _subset(b, a)


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return bool(small == big)


def _geo_from_region(base_entry: RateCardEntry, draft: _Draft) -> tuple[dict[str, Any] | None, str]:
    """A regional key as a geo adjustment of its model's entry (ratios first, see `_adjustment`).

    Geo applies after the service tier, so the regional key's own batch/priority prices are
    checked against "service tier, then geo" and any that differ are named in the note.
    """
    assert base_entry.prices is not None
    base = _set_prices(base_entry.prices)
    tiers = {t.above_input_tokens: _set_prices(t.prices) for t in base_entry.context_tiers}
    adjustment, how, _ = _adjustment(base, tiers, draft.base, draft.tiers, prefer_ratios=True)
    if adjustment is None:
        return None, how
    geo = Adjustment.model_validate(adjustment)
    differing = []
    for tier, prices in draft.variant_base.items():
        service = base_entry.service_tiers.get(tier)
        expected = geo.apply(service.apply(base_entry.prices) if service else base_entry.prices)
        differing += [f"{tier}.{key}" for key, price in prices.items() if expected.get(key) != price]
    for tier, by_threshold in draft.variant_tiers.items():
        service = base_entry.service_tiers.get(tier)
        for threshold, prices in by_threshold.items():
            context = next((t for t in base_entry.context_tiers if t.above_input_tokens == threshold), None)
            standard = context.prices.merged_over(base_entry.prices) if context else base_entry.prices
            expected = geo.apply(service.apply(standard) if service else standard)
            differing += [
                f"{tier}.{key} above {threshold}"
                for key, price in prices.items()
                if expected.get(key) != price
            ]
    if differing:
        how += "; these regional service-tier prices differ from service tier × geo: " + ", ".join(differing)
    elif draft.variant_base:
        how += "; its service-tier prices equal service tier × geo"
    return adjustment, how


def _set_prices(prices: Any) -> Prices:
    return {k: v for k, v in prices.model_dump(exclude_none=True).items()}


def import_litellm(data: dict[str, Any], *, effective_from: datetime) -> ImportResult:
    """Convert a LiteLLM model price map into a rate card dated `effective_from`, with a report."""
    if effective_from.tzinfo is None:
        raise RateCardError("effective_from needs a timezone, e.g. 2026-11-12T00:00:00Z")
    if not isinstance(data, dict):
        raise RateCardError("a LiteLLM price map is a JSON object of model keys; this is not one")
    effective_from = effective_from.astimezone(UTC)
    report = ImportReport(effective_from=effective_from)
    conv = _Converter(report.float_artefacts)

    drafts: list[_Draft] = []
    for key, value in data.items():
        if key == "sample_spec":
            report.skipped.append(SkippedKey(key, "unknown", "template entry, not a model"))
            continue
        if not isinstance(value, dict):
            report.skipped.append(SkippedKey(key, "unknown", "not a JSON object"))
            continue
        if not value.get("litellm_provider"):
            report.skipped.append(SkippedKey(key, str(value.get("mode") or "unknown"), "no litellm_provider"))
            continue
        draft = _read_key(key, value, conv)
        if not draft.priced:
            if draft.other_prices:
                reason = "no per-token text price (priced per " + _unit_family(draft.other_prices) + ")"
                detail = ", ".join(sorted(draft.other_prices))
            elif draft.variant_fields:
                reason = "only service-tier prices, no standard price to adjust"
                detail = ", ".join(sorted(n for fields in draft.variant_fields.values() for n, _ in fields))
            else:
                reason, detail = "no price at all", ""
            report.skipped.append(SkippedKey(key, draft.mode, reason, detail))
            continue
        drafts.append(draft)

    # One entry per (provider, model); the key with the most prices wins, the others must agree.
    groups: dict[tuple[str, str], list[_Draft]] = {}
    regional: list[_Draft] = []
    for draft in drafts:
        if draft.region is not None:
            regional.append(draft)
        else:
            groups.setdefault((draft.provider, draft.model.lower()), []).append(draft)

    entries: dict[tuple[str, str], RateCardEntry] = {}
    for group_key, members in groups.items():
        members.sort(key=lambda d: (-d.price_field_count(), len(d.key), d.key))
        canonical = None
        for draft in members:
            try:
                entry = RateCardEntry.model_validate(_entry_data(draft, effective_from))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
                )
                report.skipped.append(SkippedKey(draft.key, draft.mode, "invalid after conversion", problems))
                continue
            if canonical is None:
                canonical = entry
                entries[group_key] = entry
                report.imported.append(
                    EntryReport(draft.key, entry.id, draft.mode, draft.mapped, draft.unmapped, draft.notes)
                )
            elif _consistent(canonical, entry):
                report.merged.append(
                    MergedKey(draft.key, draft.mode, canonical.id, "same model and prices (duplicate key)")
                )
            else:
                report.skipped.append(
                    SkippedKey(
                        draft.key,
                        draft.mode,
                        "conflicts with another key for the same provider and model",
                        f"{canonical.id} has different prices; the key with more price fields was kept",
                    )
                )

    for draft in regional:
        base_entry = entries.get((draft.provider, draft.model.lower()))
        if base_entry is None or base_entry.prices is None:
            report.skipped.append(
                SkippedKey(
                    draft.key,
                    draft.mode,
                    "regional price without a base entry for its model",
                    f"no {draft.provider} entry for {draft.model} to attach geo {draft.region!r} to",
                )
            )
            continue
        if draft.region in base_entry.geo:
            report.skipped.append(
                SkippedKey(
                    draft.key, draft.mode, "duplicate regional price", f"geo {draft.region} already set"
                )
            )
            continue
        adjustment, how = _geo_from_region(base_entry, draft)
        if adjustment is None:
            report.skipped.append(SkippedKey(draft.key, draft.mode, "regional price not expressible", how))
            continue
        geo: dict[str, Any] = {**base_entry.geo, str(draft.region): adjustment}
        updated = RateCardEntry.model_validate(base_entry.model_dump() | {"geo": geo})
        entries[(draft.provider, draft.model.lower())] = updated
        report.merged.append(
            MergedKey(draft.key, draft.mode, base_entry.id, f"geo {draft.region!r} as {how}")
        )

    card = RateCard(entries=list(entries.values()))
    logger.info("LiteLLM import: %s", report.one_line())
    return ImportResult(card=card, report=report)


def _unit_family(names: list[str]) -> str:
    families = []
    for name in names:
        for word in ("image", "pixel", "second", "character", "query", "request", "page", "audio", "video"):
            if word in name and word not in families:
                families.append(word)
    return "/".join(families) or "other units"


def import_litellm_file(path: Path, *, effective_from: datetime) -> ImportResult:
    """`import_litellm` on a JSON file, with a RateCardError when it is not a LiteLLM map."""
    text = read_card_text(Path(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RateCardError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); pass LiteLLM's price map"
        ) from exc
    if not is_litellm_price_map(data):
        raise RateCardError(
            f"{path} is not a LiteLLM price map (no entry has `litellm_provider`); "
            "pass model_prices_and_context_window.json from LiteLLM"
        )
    return import_litellm(data, effective_from=effective_from)
