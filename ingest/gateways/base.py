"""What every gateway adapter shares: parse results, line reading, event ids, times, money, attribution.

An adapter turns one gateway log record (a JSON object) into a `ParseResult`: a `UsageEvent`,
a skip (the record is not an LLM call, e.g. a non-AI route of a shared gateway) or an error
with its reason. Reading a file never raises: every line becomes results, so one bad line never
stops a backfill and the caller can report it as `FILE:LINE: reason`.

Event ids are derived from the record alone (the gateway's request id, else a hash of the
record), so reading the same file twice yields the same ids and downstream dedupe drops the
repeats.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import ValidationError

from costline.ingest.attribution import current_attribution
from costline.schemas.errors import describe_validation_error
from costline.schemas.usage_event import (
    MAX_RAW_USAGE_BYTES,
    MAX_TAGS,
    ReasoningEffort,
    UsageEvent,
)

logger = logging.getLogger(__name__)

#: Reported costs keep 12 decimals, the schema's resolution (picodollars).
_PICO = Decimal("1e-12")

ResultKind = Literal["event", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The outcome for one record: an event, a skip (not an LLM call) or an error, with its reason."""

    kind: ResultKind
    event: UsageEvent | None = None
    reason: str | None = None

    @classmethod
    def of(cls, event: UsageEvent) -> ParseResult:
        """A record that became an event."""
        return cls("event", event=event)

    @classmethod
    def skip(cls, reason: str) -> ParseResult:
        """A record that is valid but not an LLM call (counted, not reported as a failure)."""
        return cls("skipped", reason=reason)

    @classmethod
    def fail(cls, reason: str) -> ParseResult:
        """A record costline cannot turn into an event; `reason` says why."""
        return cls("error", reason=reason)


Parser = Callable[[Mapping[str, Any]], ParseResult]
#: Turns one decoded JSON document into the records it holds (batches, API envelopes, wrappers).
Unwrapper = Callable[[Any], list[Any]]


# --- reading lines -------------------------------------------------------------------------------

_DOCKER_KEYS = frozenset({"log", "stream", "time"})


def unwrap_records(document: Any) -> list[Any]:
    """Records of one JSON document: a batch array (Kong http-log, LiteLLM generic_api) gives its
    items; a Docker json-file wrapper `{"log": "<json>", ...}` gives the JSON it carries."""
    if isinstance(document, list):
        return [record for item in document for record in unwrap_records(item)]
    if isinstance(document, dict) and set(document) <= _DOCKER_KEYS and isinstance(document.get("log"), str):
        inner = document["log"].strip()
        if inner.startswith(("{", "[")):
            try:
                return unwrap_records(json.loads(inner))
            except json.JSONDecodeError:
                pass
    return [document]


def _decode(line: str | bytes) -> tuple[Any, str | None]:
    """(document, None), or (None, reason) when the line is not JSON; blank lines give (None, None)."""
    if isinstance(line, bytes | bytearray):
        try:
            text = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    else:
        text = line
    text = text.strip().lstrip("\ufeff")
    if not text:
        return None, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        error = exc
    # syslog / CRI / timestamp prefixes in front of the JSON object ("<ts> stdout F {...}")
    brace = text.find("{")
    if brace > 0:
        try:
            return json.loads(text[brace:]), None
        except json.JSONDecodeError:
            pass
    return None, f"not JSON: {error.msg} at column {error.colno}"


@dataclass(frozen=True)
class Adapter:
    """One log format: how a record becomes an event, and how a JSON document holds records."""

    name: str
    parse: Parser
    unwrap: Unwrapper = unwrap_records

    def parse_record(self, record: object) -> ParseResult:
        """`parse`, made total: a non-object is an error and an adapter bug is an error, never a raise."""
        if not isinstance(record, Mapping):
            return ParseResult.fail(f"expected a JSON object, got {_json_type(record)}")
        try:
            return self.parse(record)
        except Exception as exc:  # an adapter bug must not stop a backfill; the line is reported
            logger.debug("%s adapter failed on a record", self.name, exc_info=True)
            return ParseResult.fail(f"internal error in the {self.name} adapter: {type(exc).__name__}: {exc}")

    def parse_line(self, line: str | bytes) -> list[ParseResult]:
        """Results of one log line (none for a blank line, several for a batch array)."""
        document, problem = _decode(line)
        if problem is not None:
            return [ParseResult.fail(problem)]
        if document is None:
            return []
        try:
            records = self.unwrap(document)
        except Exception as exc:
            return [ParseResult.fail(f"internal error unwrapping the record: {type(exc).__name__}: {exc}")]
        if not records:
            return [ParseResult.skip("empty batch")]
        return [self.parse_record(record) for record in records]

    def parse_lines(
        self, lines: Iterable[str | bytes], *, first_line: int = 1
    ) -> Iterator[tuple[int, ParseResult]]:
        """(line number, result) for every record of every line; never raises for bad content."""
        for number, line in enumerate(lines, start=first_line):
            for result in self.parse_line(line):
                yield number, result

    def parse_file(self, path: Path | str) -> Iterator[tuple[int, ParseResult]]:
        """(line number, result) for a JSON-lines file; `.gz` files are decompressed."""
        with open_log(Path(path)) as stream:
            yield from self.parse_lines(stream)


def open_log(path: Path) -> IO[bytes]:
    """A log file as bytes; gzip (S3 deliveries of Bedrock, Logpush) is recognised by its magic."""
    stream: IO[bytes] = path.open("rb")
    if stream.read(2) == b"\x1f\x8b":
        stream.seek(0)
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]  # a binary stream
    stream.seek(0)
    return stream


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


# --- field readers -------------------------------------------------------------------------------


def pick(record: object, *paths: str) -> Any:
    """The first non-null, non-empty value among dotted `paths` ("a.b.c") of nested dicts."""
    for path in paths:
        value: Any = record
        for part in path.split("."):
            if not isinstance(value, Mapping):
                value = None
                break
            value = value.get(part)
        if value is not None and value != "":
            return value
    return None


def as_mapping(value: object) -> Mapping[str, Any]:
    """A dict field, also when the gateway stored it as a JSON string (Cloudflare, SpendLogs)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def as_list(value: object) -> list[Any]:
    """A list field, also when stored as a JSON string."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return []
        return decoded if isinstance(decoded, list) else []
    return []


def as_bool(value: object) -> bool | None:
    """A flag from a bool, 0/1 or the strings gateways write ("True", "false", "Hit", "None")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "1", "yes", "hit"}:
            return True
        if text in {"false", "0", "no", "miss", "bypass", "refresh"}:
            return False
    return None


def as_int(value: object) -> int | None:
    """An integer from a number or numeric string; None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except ValueError:
            return None
    return None


def duration_ms(value: object, *, scale: float = 1.0) -> int | None:
    """A non-negative duration in whole milliseconds (`scale` converts from the gateway's unit)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # numbers and numeric strings; the rest raise
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return min(round(number * scale), 86_400_000)


def to_money(value: object) -> Decimal | None:
    """A reported cost as Decimal(str(x)) (never float arithmetic); None when absent or invalid."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str | Decimal):
        return None
    try:
        money = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not money.is_finite() or money < 0:
        return None
    exponent = money.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -12:
        money = money.quantize(_PICO)  # the schema keeps 12 decimals (picodollars)
    return money


# --- times ---------------------------------------------------------------------------------------

TimeUnit = Literal["auto", "s", "ms", "us", "ns"]
_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def parse_time(value: object, *, unit: TimeUnit = "auto") -> datetime | None:
    """An aware UTC datetime from epoch numbers or ISO-8601 strings; naive times are UTC.

    `auto` tells epoch units apart by magnitude (seconds until the year 5138, then ms, µs, ns),
    which is what lets one reader take LiteLLM's seconds, Kong's milliseconds and OTel's nanos.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return _parse_iso(text)
        return _from_epoch(number, unit)
    if isinstance(value, int | float | Decimal):
        return _from_epoch(float(value), unit)
    return None


def _from_epoch(number: float, unit: TimeUnit) -> datetime | None:
    if not math.isfinite(number) or number < 0:
        return None
    if unit == "auto":
        unit = "ns" if number > 1e17 else "us" if number > 1e14 else "ms" if number > 1e11 else "s"
    try:
        return datetime.fromtimestamp(number / _UNIT_SCALE[unit], UTC)
    except (OverflowError, OSError, ValueError):
        return None


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_iso(text: str) -> datetime | None:
    text = _LONG_FRACTION.sub(r"\1", text)  # APIM writes 7 fractional digits
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --- ids and names -------------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:/@+=-]{1,128}$")
_TAG_KEY_BAD = re.compile(r"[^A-Za-z0-9._:/-]+")


def record_digest(record: object) -> str:
    """A stable digest of a whole record (key order does not matter)."""
    encoded = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:40]


def make_event_id(prefix: str, raw_id: object, record: Mapping[str, Any]) -> str:
    """`prefix:<gateway request id>`, or a digest when the id is missing or not id-safe.

    A record without any id gets a digest of its whole content: still deterministic, so reading
    the same line again gives the same event id.
    """
    text = str(raw_id).strip() if raw_id is not None and not isinstance(raw_id, bool) else ""
    if not text:
        return f"{prefix}:sha-{record_digest(record)}"
    candidate = f"{prefix}:{text}"
    if _IDENTIFIER.match(candidate):
        return candidate
    return f"{prefix}:sha-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def clean_identifier(value: object) -> str | None:
    """A trace or session id if it fits the schema's identifier alphabet, else None."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text if _IDENTIFIER.match(text) else None


def clean_name(value: object, *, limit: int = 256) -> str | None:
    """A model, team or project name: a trimmed non-empty string (numbers allowed), else None."""
    if value is None or isinstance(value, bool | Mapping | list):
        return None
    text = str(value).strip()
    return text[:limit] or None


_REASONING_EFFORTS: frozenset[str] = frozenset({"none", "minimal", "low", "medium", "high", "xhigh"})


def reasoning_effort(value: object) -> ReasoningEffort | None:
    """A reasoning effort the schema knows, else None."""
    if isinstance(value, str) and value.strip().lower() in _REASONING_EFFORTS:
        return value.strip().lower()  # type: ignore[return-value]  # checked against the Literal's values
    return None


# --- providers -----------------------------------------------------------------------------------

#: Gateway provider names (LiteLLM, Kong, Cloudflare spellings) → OTel `gen_ai.provider.name`.
#: Mirrors the rate card importer's routes; names not listed are kept when id-safe.
PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure-openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "aws-bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "google-vertex-ai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "google-ai-studio": "gcp.gemini",
    "deepseek": "deepseek",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "grok": "x_ai",
    "groq": "groq",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "perplexity": "perplexity",
    "perplexity-ai": "perplexity",
}
UNKNOWN_PROVIDER = "unknown"


def otel_provider(name: object) -> str:
    """Our provider id for a gateway's provider name ("unknown" when absent)."""
    text = clean_name(name)
    if text is None:
        return UNKNOWN_PROVIDER
    key = text.lower()
    if key.startswith("vertex_ai"):
        return "gcp.vertex_ai"
    mapped = PROVIDER_NAMES.get(key, key)
    return mapped if _IDENTIFIER.match(mapped) else UNKNOWN_PROVIDER


# --- attribution ---------------------------------------------------------------------------------

#: Label keys (request metadata, consumer tags) that name an attribution field rather than a tag.
_LABEL_FIELDS: Mapping[str, str] = {
    "team": "team",
    "project": "project",
    "workload": "workload",
    "environment": "environment",
    "env": "environment",
    "cost_center": "cost_center",
    "cost-center": "cost_center",
    "costcenter": "cost_center",
    "user": "user",
    "user_id": "user",
}


@dataclass
class AttributionDraft:
    """Attribution collected from a record; explicit fields win over labels, first value wins."""

    fields: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: object) -> None:
        """Set an attribution field (team, project, ...) unless it already has a value."""
        text = clean_name(value)
        if text is None:
            return
        if name == "user":
            self.user = self.user or text
        elif name not in self.fields:
            self.fields[name] = text

    def tag(self, key: object, value: object) -> None:
        """Add a tag; the key is made id-safe, the value a short string, the first value wins."""
        name = _TAG_KEY_BAD.sub("_", str(key).strip())[:64].strip("_")
        if not name or name in self.tags or value is None:
            return
        if len(self.tags) >= MAX_TAGS:
            logger.debug("tag %s dropped: an event carries at most %d tags", name, MAX_TAGS)
            return
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float | Decimal):
            text = str(value)
        else:
            text = json.dumps(value, sort_keys=True, default=str)
        self.tags[name] = text[:256]

    def labels(self, labels: Mapping[str, Any]) -> None:
        """Free key/values: well-known keys fill attribution fields, the others become tags."""
        for key, value in labels.items():
            target = _LABEL_FIELDS.get(str(key).strip().lower())
            if target is not None and isinstance(value, str | int):
                self.set(target, value)
            else:
                self.tag(key, value)

    def tag_list(self, tags: Iterable[object]) -> None:
        """A list of string tags: `key:value` / `key=value` are labels (so `team:search` sets the
        team), bare tags become tags valued "true"."""
        for item in tags:
            if not isinstance(item, str) or not item.strip():
                continue
            key, sep, value = _split_tag(item.strip())
            if sep:
                self.labels({key: value})
            else:
                self.tag(key, "true")

    def build(self) -> dict[str, Any]:
        """The `attribution` object of a UsageEvent (the user id is hashed here)."""
        built: dict[str, Any] = dict(self.fields)
        if self.user is not None:
            built["user_hash"] = hash_gateway_user(self.user)
        if self.tags:
            built["tags"] = dict(self.tags)
        return built


def _split_tag(text: str) -> tuple[str, str, str]:
    for separator in ("=", ":"):
        key, sep, value = text.partition(separator)
        if sep and key.strip():
            return key.strip(), sep, value.strip()
    return text, "", ""


def hash_gateway_user(user: str) -> str | None:
    """A user id hashed with the process's salt (`COSTLINE_USER_HASH_SALT`, installed through
    `costline.ingest.attribution.set_defaults`), so gateway and SDK events hash users alike."""
    return current_attribution(user=user).user_hash


# --- building the event --------------------------------------------------------------------------


def build_event(fields: dict[str, Any]) -> ParseResult:
    """Validate `fields` as a UsageEvent; a violation is an error result naming the field."""
    raw = fields.get("raw_usage")
    if raw is not None and len(json.dumps(raw, default=str)) > MAX_RAW_USAGE_BYTES:
        fields = {**fields, "raw_usage": None}  # audit copy only: too big to keep, never a reason to fail
    try:
        return ParseResult.of(UsageEvent.model_validate(fields))
    except ValidationError as exc:
        return ParseResult.fail(describe_validation_error(exc))
