"""JSON-lines logs of any proxy, read through a YAML mapping (Envoy AI Gateway, APISIX, custom).

Envoy AI Gateway's access-log keys are chosen by each operator (GATEWAY_FACTS 6), and custom
proxies log whatever their authors picked, so no built-in adapter can know where the tokens
are. A mapping names, for each UsageEvent field, a JSON pointer (RFC 6901) into the log record,
plus constants for what the log does not carry. The cache-inclusion rule is required, never
guessed: whether the logged input count already contains cache reads (and writes) and whether
the output count contains reasoning decides between double-billing and losing tokens.

    rules:
      input_includes_cache_read: true     # OpenAI style; false for Anthropic/Bedrock style
      output_includes_reasoning: true
    constants: {provider: openai}
    fields:
      event_id: /x-request-id
      occurred_at: /start_time
      request_model: /gen_ai.request.model
      input_tokens: /gen_ai.usage.input_tokens
      output_tokens: /gen_ai.usage.output_tokens

A field may list several pointers; the first non-null value wins, then the constant. Records
without any model (Envoy logs MCP traffic with every `gen_ai.*` null) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from costline.ingest.gateways.base import (
    Adapter,
    AttributionDraft,
    ParseResult,
    as_bool,
    as_int,
    build_event,
    clean_identifier,
    clean_name,
    duration_ms,
    make_event_id,
    otel_provider,
    parse_time,
    reasoning_effort,
    to_money,
)
from costline.ingest.normalize import difference, to_count
from costline.schemas.errors import ConfigError, describe_validation_error
from costline.schemas.usage_event import TokenBuckets

DEFAULT_SOURCE = "gateway.mapped"


def _check_pointer(pointer: str) -> str:
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"{pointer!r} is not a JSON pointer; write it as /{pointer} (RFC 6901)")
    return pointer


Pointer = Annotated[str, AfterValidator(_check_pointer)]
PointerSpec = Pointer | list[Pointer]
Scalar = str | int | float | bool


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MappingRules(_Config):
    """How the logged counts relate to each other: the cache-inclusion trap made explicit."""

    input_includes_cache_read: bool = Field(
        description="True when the input count already contains cache reads (OpenAI, Envoy, Kong)."
    )
    input_includes_cache_write: bool | None = Field(
        None, description="True when it also contains cache writes; defaults to input_includes_cache_read."
    )
    output_includes_reasoning: bool = Field(
        description="True when the output count already contains reasoning tokens."
    )
    time_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto", description="Unit of numeric times; auto tells them apart by magnitude."
    )
    cache_write_ttl: Literal["5m", "30m", "1h", "12h"] = Field(
        "5m", description="Bucket of cache writes the log does not qualify by TTL."
    )


class FieldPointers(_Config):
    """Where each value is in a record (one pointer, or several tried in order)."""

    event_id: PointerSpec | None = None
    occurred_at: PointerSpec | None = None
    provider: PointerSpec | None = None
    operation: PointerSpec | None = None
    request_model: PointerSpec | None = None
    response_model: PointerSpec | None = None
    input_tokens: PointerSpec | None = None
    output_tokens: PointerSpec | None = None
    cache_read_tokens: PointerSpec | None = None
    cache_write_tokens: PointerSpec | None = None
    cache_write_1h_tokens: PointerSpec | None = None
    reasoning_tokens: PointerSpec | None = None
    latency_ms: PointerSpec | None = None
    time_to_first_token_ms: PointerSpec | None = None
    status: PointerSpec | None = None
    status_code: PointerSpec | None = None
    error_type: PointerSpec | None = None
    finish_reason: PointerSpec | None = None
    stream: PointerSpec | None = None
    gateway_cache_hit: PointerSpec | None = None
    reported_cost: PointerSpec | None = None
    service_tier: PointerSpec | None = None
    region: PointerSpec | None = None
    reasoning_effort: PointerSpec | None = None
    team: PointerSpec | None = None
    project: PointerSpec | None = None
    workload: PointerSpec | None = None
    environment: PointerSpec | None = None
    cost_center: PointerSpec | None = None
    user: PointerSpec | None = None
    trace_id: PointerSpec | None = None
    span_id: PointerSpec | None = None
    session_id: PointerSpec | None = None


FIELD_NAMES: tuple[str, ...] = tuple(FieldPointers.model_fields)


class MappingConfig(_Config):
    """A whole mapping file."""

    name: str = Field("mapped", pattern=r"^[A-Za-z0-9._-]{1,40}$", description="Prefix of event ids.")
    source: str = Field(DEFAULT_SOURCE, pattern=r"^[A-Za-z0-9._:/@+=-]{1,128}$")
    rules: MappingRules
    fields: FieldPointers = Field(default_factory=FieldPointers)
    constants: dict[str, Scalar] = Field(default_factory=dict)
    tags: dict[str, PointerSpec] = Field(default_factory=dict)
    provider_names: dict[str, str] = Field(
        default_factory=dict, description="Logged provider value → provider id (Envoy logs backend refs)."
    )

    @model_validator(mode="after")
    def _known_constants(self) -> MappingConfig:
        unknown = sorted(set(self.constants) - set(FIELD_NAMES))
        if unknown:
            raise ValueError(
                f"constants for unknown fields {unknown}; known fields: {', '.join(FIELD_NAMES)}"
            )
        if not (self.fields.request_model or self.fields.response_model) and not (
            {"request_model", "response_model"} & self.constants.keys()
        ):
            raise ValueError(
                "map request_model or response_model (a field or a constant): events need a model"
            )
        return self


def resolve_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 lookup; None when any step is missing (never raises)."""
    if pointer == "":
        return document
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            current = current.get(token)
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return None
        if current is None:
            return None
    return current


@dataclass(frozen=True)
class FieldMapping:
    """A loaded mapping: `parse` turns one record into a ParseResult."""

    config: MappingConfig

    def value(self, record: Mapping[str, Any], name: str) -> Any:
        """The field's first non-null pointer value, else its constant, else None."""
        spec = getattr(self.config.fields, name)
        for pointer in [spec] if isinstance(spec, str) else spec or []:
            found = resolve_pointer(record, pointer)
            if found is not None and found != "":
                return found
        return self.config.constants.get(name)

    def parse(self, record: Mapping[str, Any]) -> ParseResult:
        """One log record through the mapping."""
        request_model = clean_name(self.value(record, "request_model"))
        response_model = clean_name(self.value(record, "response_model"))
        if request_model is None and response_model is None:
            return ParseResult.skip("no model in the record (not an LLM call)")
        rules = self.config.rules
        occurred = parse_time(self.value(record, "occurred_at"), unit=rules.time_unit)
        if occurred is None:
            return ParseResult.fail(f"no usable occurred_at (got {self.value(record, 'occurred_at')!r})")
        status, error_type = self._status(record)
        cache_hit = as_bool(self.value(record, "gateway_cache_hit")) is True
        signals: dict[str, Any] = {
            "status": status,
            "error_type": error_type,
            "stream": as_bool(self.value(record, "stream")) is True,
            "gateway_cache_hit": cache_hit,
            "latency_ms": duration_ms(self.value(record, "latency_ms")),
            "time_to_first_token_ms": duration_ms(self.value(record, "time_to_first_token_ms")),
            "finish_reason": clean_name(self.value(record, "finish_reason"), limit=64),
            "service_tier": clean_name(self.value(record, "service_tier"), limit=32),
            "region": clean_name(self.value(record, "region"), limit=64),
            "reasoning_effort": reasoning_effort(self.value(record, "reasoning_effort")),
        }
        provider_value = clean_name(self.value(record, "provider"))
        provider = self.config.provider_names.get(provider_value or "", provider_value)
        counts = {
            name: to_count(self.value(record, name), name=name)
            for name in (
                "input_tokens",
                "output_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "cache_write_1h_tokens",
                "reasoning_tokens",
            )
        }
        fields: dict[str, Any] = {
            "event_id": make_event_id(self.config.name, self.value(record, "event_id"), record),
            "occurred_at": occurred,
            "source": self.config.source,
            "provider": otel_provider(provider),
            "operation": clean_identifier(self.value(record, "operation")) or "chat",
            "request_model": request_model,
            "response_model": response_model,
            "tokens": TokenBuckets() if cache_hit else self._tokens(counts),
            "attribution": self._attribution(record),
            "signals": {key: value for key, value in signals.items() if value is not None},
            "trace_id": clean_identifier(self.value(record, "trace_id")),
            "span_id": clean_identifier(self.value(record, "span_id")),
            "session_id": clean_identifier(self.value(record, "session_id")),
            "raw_usage": {key: value for key, value in counts.items() if value} or None,
            "reported_cost": to_money(self.value(record, "reported_cost")),
        }
        return build_event(fields)

    def _tokens(self, counts: Mapping[str, int]) -> TokenBuckets:
        rules = self.config.rules
        read = counts["cache_read_tokens"]
        write_1h = counts["cache_write_1h_tokens"]
        writes = max(counts["cache_write_tokens"], write_1h)
        includes_writes = rules.input_includes_cache_write
        if includes_writes is None:
            includes_writes = rules.input_includes_cache_read
        contained = (read if rules.input_includes_cache_read else 0) + (writes if includes_writes else 0)
        reasoning = counts["reasoning_tokens"]
        output = counts["output_tokens"]
        by_ttl = {"5m": 0, "30m": 0, "1h": write_1h, "12h": 0}
        by_ttl[rules.cache_write_ttl] += writes - write_1h
        return TokenBuckets(
            input_uncached=difference(counts["input_tokens"], contained, name="mapped uncached input"),
            cache_read=read,
            cache_write_5m=by_ttl["5m"],
            cache_write_30m=by_ttl["30m"],
            cache_write_1h=by_ttl["1h"],
            cache_write_12h=by_ttl["12h"],
            output_visible=difference(output, reasoning, name="mapped visible output")
            if rules.output_includes_reasoning
            else output,
            output_reasoning=reasoning,
        )

    def _status(self, record: Mapping[str, Any]) -> tuple[str, str | None]:
        """("ok" | "error" | "partial", error type) from a status value or an HTTP status code."""
        error_type = clean_name(self.value(record, "error_type"))
        value = self.value(record, "status")
        text = str(value).strip().lower() if value is not None else ""
        if text == "partial":
            return "partial", None
        flag = as_bool(value)
        if flag is False or text in {"error", "failure", "failed"}:
            return "error", error_type or "error"
        code = as_int(self.value(record, "status_code"))
        if flag is None and text not in {"ok", "success"} and code is not None and code >= 400:
            return "error", error_type or f"http_{code}"
        return "ok", None

    def _attribution(self, record: Mapping[str, Any]) -> dict[str, Any]:
        draft = AttributionDraft()
        for name in ("team", "project", "workload", "environment", "cost_center", "user"):
            draft.set(name, self.value(record, name))
        for key, spec in self.config.tags.items():
            for pointer in [spec] if isinstance(spec, str) else spec:
                found = resolve_pointer(record, pointer)
                if found is not None and found != "":
                    draft.tag(key, found)
                    break
        return draft.build()

    @property
    def adapter(self) -> Adapter:
        """This mapping as an Adapter (for the CLI and the tailer)."""
        return Adapter("mapped", self.parse)


def mapping_from_dict(data: object, *, origin: str = "mapping") -> FieldMapping:
    """A mapping from already-loaded YAML/JSON; ConfigError names every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{origin}: expected a YAML mapping with rules and fields, got {type(data).__name__}"
        )
    try:
        return FieldMapping(MappingConfig.model_validate(data))
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from exc


def load_mapping(path: Path | str) -> FieldMapping:
    """Read a mapping YAML file (see docs/gateways.md and docs/examples/)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the mapping file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return mapping_from_dict(data, origin=str(path))
