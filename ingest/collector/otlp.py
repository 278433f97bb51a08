"""OTLP trace requests → UsageEvents: GenAI spans become events, every other span is ignored.

Pure functions over request bodies (no web framework here, so importing this stays cheap):
`parse_traces` takes an `ExportTraceServiceRequest` as protobuf bytes or as OTLP/JSON
(camelCase keys, 64-bit integers as strings, trace and span ids in hex) and returns a
`TraceBatch`. Attribute mapping is `costline.schemas.otel.from_otel_attributes`; this module only
finds the GenAI spans, adds what lives outside the span's attributes (start time, ids, duration,
error status, resource-level attribution) and counts what it could not use.

A span is a GenAI span when it names an operation or a provider (`gen_ai.operation.name`,
`gen_ai.provider.name`, or the deprecated `gen_ai.system`) and a model (`gen_ai.request.model`
or `gen_ai.response.model`). Agent, workflow, tool and retrieval spans are not inference calls:
their usage, when they carry any, is the sum of the chat spans below them, so they are ignored
rather than counted twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from costline.schemas.errors import CostlineError, describe_validation_error
from costline.schemas.otel import (
    ATTRIBUTION_ATTRIBUTES,
    DEPRECATED_SYSTEM,
    ERROR_TYPE,
    OPERATION_NAME,
    PROVIDER_NAME,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SIGNAL_ATTRIBUTES,
    TAG_PREFIX,
    from_otel_attributes,
)
from costline.schemas.usage_event import UsageEvent

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

logger = logging.getLogger(__name__)

MediaType = Literal["protobuf", "json"]

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
_MEDIA_TYPES: Mapping[str, MediaType] = {
    PROTOBUF_CONTENT_TYPE: "protobuf",
    "application/protobuf": "protobuf",
    JSON_CONTENT_TYPE: "json",
}
#: Largest request body accepted, compressed or not (OTLP exporters send batches of ~512 spans).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Reasons of rejected spans kept per request (the counts are always complete).
MAX_ERRORS = 5
#: `source` of events made from third-party spans.
OTLP_SOURCE = "otel"
#: Operations that are not inference calls (semconv v1.41 agent, tool and retrieval spans).
NON_INFERENCE_OPERATIONS = frozenset(
    {"create_agent", "invoke_agent", "invoke_workflow", "execute_tool", "retrieval"}
)
#: Value of `error.type` when a span failed without saying how (the conventions' fallback value).
OTHER_ERROR = "_OTHER"
#: Resource attributes read as span attribute fallbacks besides `costline.<attribution>` and tags.
RESOURCE_FALLBACKS: Mapping[str, str] = {
    "service.name": ATTRIBUTION_ATTRIBUTES["workload"],
    "deployment.environment.name": ATTRIBUTION_ATTRIBUTES["environment"],
    "deployment.environment": ATTRIBUTION_ATTRIBUTES["environment"],  # before semconv v1.27
}
_LATENCY = SIGNAL_ATTRIBUTES["latency_ms"]
_MAX_LATENCY_MS = 86_400_000
_STATUS_CODE_ERROR = 2
_TRACE_ID_BYTES, _SPAN_ID_BYTES = 16, 8


class OtlpError(CostlineError):
    """A request the collector cannot read at all; `status` is the HTTP status to answer with."""

    status = 400


class UnsupportedMediaTypeError(OtlpError):
    """A content type or encoding the collector does not speak."""

    status = 415


class BodyTooLargeError(OtlpError):
    """A body (or what it decompresses to) over the size limit."""

    status = 413


class _SpanError(ValueError):
    """One span cannot be read; the others of the request still count."""


@dataclass
class TraceBatch:
    """What one OTLP request held: the events made from its GenAI spans and the counts."""

    events: list[UsageEvent] = field(default_factory=list)
    #: Every span of the request.
    spans: int = 0
    #: Spans recognised as GenAI inference calls, valid or not.
    genai_spans: int = 0
    #: Spans that are not GenAI inference calls.
    ignored: int = 0
    #: Spans that could not become events: undecodable spans and invalid GenAI spans.
    rejected: int = 0
    #: The first MAX_ERRORS rejection reasons.
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        """Count one rejected span and keep its reason if there is room."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(reason)
        logger.debug("OTLP span rejected: %s", reason)


def media_type(content_type: str | None) -> MediaType:
    """`protobuf` or `json` for a Content-Type header; UnsupportedMediaTypeError otherwise."""
    essence = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[essence]
    except KeyError:
        raise UnsupportedMediaTypeError(
            f"unsupported content type {content_type!r}: send {PROTOBUF_CONTENT_TYPE} or {JSON_CONTENT_TYPE}"
        ) from None


def decompress(body: bytes, content_encoding: str | None, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body without its Content-Encoding (gzip or none), at most `limit` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if len(body) > limit:
        raise BodyTooLargeError(f"request body is {len(body)} bytes; the limit is {limit}")
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise UnsupportedMediaTypeError(
            f"unsupported content encoding {content_encoding!r}: send gzip or uncompressed bodies"
        )
    inflated = bytearray()
    remaining = body
    while remaining:  # a gzip stream may hold several members
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            inflated += inflater.decompress(remaining, limit + 1 - len(inflated))
        except zlib.error as exc:
            raise OtlpError(f"body is not valid gzip: {exc}") from exc
        if len(inflated) > limit or inflater.unconsumed_tail:
            raise BodyTooLargeError(f"request body decompresses to more than {limit} bytes")
        if not inflater.eof:
            raise OtlpError("gzip body is truncated")
        remaining = inflater.unused_data
    return bytes(inflated)


def parse_traces(body: bytes, media: MediaType) -> TraceBatch:
    """Events and counts of an ExportTraceServiceRequest body in the given encoding."""
    return parse_traces_protobuf(body) if media == "protobuf" else parse_traces_json(body)


def parse_traces_protobuf(body: bytes) -> TraceBatch:
    """Events and counts of a binary ExportTraceServiceRequest; OtlpError when it does not decode."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
    batch = TraceBatch()
    for resource_spans in request.resource_spans:
        fallbacks = _resource_fallbacks(_proto_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                batch.spans += 1
                try:
                    attributes = _proto_attributes(span.attributes)
                    trace_id = _id_from_bytes(span.trace_id, _TRACE_ID_BYTES, "trace_id")
                    span_id = _id_from_bytes(span.span_id, _SPAN_ID_BYTES, "span_id")
                except _SpanError as exc:
                    batch.reject(f"span {span.name!r}: {exc}")
                    continue
                _add_span(
                    batch,
                    attributes,
                    fallbacks,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    trace_id=trace_id,
                    span_id=span_id,
                    failed=span.status.code == _STATUS_CODE_ERROR,
                )
    return batch


def parse_traces_json(body: bytes | str) -> TraceBatch:
    """Events and counts of an OTLP/JSON ExportTraceServiceRequest; OtlpError when it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpError(f"body is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpError(f"expected an ExportTraceServiceRequest JSON object, got {type(document).__name__}")
    batch = TraceBatch()
    for resource_spans in _json_list(document, "resourceSpans", "resource_spans"):
        resource = _json_field(resource_spans, "resource") or {}
        try:
            resource_attributes = _json_attributes(_json_field(resource, "attributes"))
        except _SpanError as exc:
            raise OtlpError(f"malformed resource attributes: {exc}") from exc
        fallbacks = _resource_fallbacks(resource_attributes)
        for scope_spans in _json_list(resource_spans, "scopeSpans", "scope_spans"):
            for span in _json_list(scope_spans, "spans"):
                batch.spans += 1
                _add_json_span(batch, span, fallbacks)
    return batch


def export_response(batch: TraceBatch, media: MediaType) -> bytes:
    """The ExportTraceServiceResponse for `batch`: partial success when spans were rejected."""
    message = "; ".join(batch.errors)
    if media == "json":
        if not batch.rejected:
            return b"{}"
        partial = {"rejectedSpans": str(batch.rejected), "errorMessage": message}  # int64 → string
        return json.dumps({"partialSuccess": partial}).encode()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if batch.rejected:
        response.partial_success.rejected_spans = batch.rejected
        response.partial_success.error_message = message
    encoded: bytes = response.SerializeToString()
    return encoded


def error_status(message: str, media: MediaType, *, code: int = 3) -> bytes:
    """A `google.rpc.Status` body (code 3 is INVALID_ARGUMENT), as OTLP/HTTP answers errors."""
    if media == "json":
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()  # hand-encoded: fields 1 (int32 code) and 2 (string message)
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def is_genai_span(attributes: Mapping[str, object]) -> bool:
    """Whether span attributes describe a GenAI inference call that usage can come from."""
    operation = attributes.get(OPERATION_NAME)
    if isinstance(operation, str) and operation in NON_INFERENCE_OPERATIONS:
        return False
    named = any(_nonempty(attributes.get(key)) for key in (OPERATION_NAME, PROVIDER_NAME, DEPRECATED_SYSTEM))
    return named and any(_nonempty(attributes.get(key)) for key in (REQUEST_MODEL, RESPONSE_MODEL))


def _add_span(
    batch: TraceBatch,
    attributes: dict[str, object],
    fallbacks: Mapping[str, object],
    *,
    start_ns: int,
    end_ns: int,
    trace_id: str | None,
    span_id: str | None,
    failed: bool,
) -> None:
    """Turn one decoded span into an event, or count it as ignored or rejected."""
    if not is_genai_span(attributes):
        batch.ignored += 1
        return
    batch.genai_spans += 1
    merged: dict[str, object] = {**fallbacks, **attributes}
    if failed:
        merged.setdefault(ERROR_TYPE, OTHER_ERROR)
    if 0 < start_ns <= end_ns and (end_ns - start_ns) // 1_000_000 <= _MAX_LATENCY_MS:
        merged.setdefault(_LATENCY, (end_ns - start_ns) // 1_000_000)
    try:
        event = from_otel_attributes(
            merged,
            occurred_at=start_ns or None,
            source=OTLP_SOURCE,
            trace_id=trace_id,
            span_id=span_id,
        )
    except ValidationError as exc:
        batch.reject(f"span {span_id or '?'}: {describe_validation_error(exc)}")
        return
    except (ValueError, TypeError, OverflowError, OSError) as exc:  # e.g. a start time out of range
        batch.reject(f"span {span_id or '?'}: {exc}")
        return
    except Exception as exc:  # a mapping bug must cost one span, not the request
        logger.warning("OTLP span %s could not be mapped", span_id, exc_info=True)
        batch.reject(f"span {span_id or '?'}: internal error {type(exc).__name__}")
        return
    batch.events.append(event)


def _resource_fallbacks(resource: Mapping[str, object]) -> dict[str, object]:
    """Span attribute defaults from the resource: costline attribution and tags, service, environment."""
    allowed = set(ATTRIBUTION_ATTRIBUTES.values())
    fallbacks: dict[str, object] = {}
    for key, target in RESOURCE_FALLBACKS.items():
        value = resource.get(key)
        if isinstance(value, str) and value and not value.startswith("unknown_service"):
            fallbacks.setdefault(target, value)
    for key, value in resource.items():
        if value is not None and (key in allowed or key.startswith(TAG_PREFIX)):
            fallbacks[key] = value  # explicit costline.* beats the derived values above
    return fallbacks


# --- protobuf --------------------------------------------------------------------------------


def _proto_attributes(pairs: Iterable[KeyValue]) -> dict[str, object]:
    return {pair.key: _proto_value(pair.value) for pair in pairs}


def _proto_value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_proto_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _proto_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    scalar: object = getattr(value, kind)
    return scalar


def _id_from_bytes(raw: bytes, size: int, name: str) -> str | None:
    if not raw or not any(raw):
        return None  # absent or all zeros: the spec's invalid id
    if len(raw) != size:
        raise _SpanError(f"{name} has {len(raw)} bytes, expected {size}")
    return raw.hex()


# --- OTLP/JSON -------------------------------------------------------------------------------


def _add_json_span(batch: TraceBatch, span: object, fallbacks: Mapping[str, object]) -> None:
    if not isinstance(span, dict):
        batch.reject(f"span is a JSON {type(span).__name__}, not an object")
        return
    try:
        attributes = _json_attributes(_json_field(span, "attributes"))
        trace_id = _id_from_json(_json_field(span, "traceId", "trace_id"), _TRACE_ID_BYTES, "traceId")
        span_id = _id_from_json(_json_field(span, "spanId", "span_id"), _SPAN_ID_BYTES, "spanId")
        start_ns = _json_uint(_json_field(span, "startTimeUnixNano", "start_time_unix_nano"))
        end_ns = _json_uint(_json_field(span, "endTimeUnixNano", "end_time_unix_nano"))
        status = _json_field(span, "status") or {}
        code = _json_field(status, "code") if isinstance(status, dict) else None
    except _SpanError as exc:
        batch.reject(f"span {span.get('name', '?')!r}: {exc}")
        return
    failed = code in (_STATUS_CODE_ERROR, str(_STATUS_CODE_ERROR), "STATUS_CODE_ERROR")
    _add_span(
        batch,
        attributes,
        fallbacks,
        start_ns=start_ns,
        end_ns=end_ns,
        trace_id=trace_id,
        span_id=span_id,
        failed=failed,
    )


def _json_field(obj: object, *names: str) -> Any:
    """A field by its lowerCamelCase name (snake_case tolerated); None when absent."""
    if not isinstance(obj, dict):
        return None
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _json_list(obj: object, *names: str) -> list[Any]:
    value = _json_field(obj, *names)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpError(f"`{names[0]}` must be a JSON array, got {type(value).__name__}")
    return value


def _json_attributes(pairs: object) -> dict[str, object]:
    if pairs is None:
        return {}
    if not isinstance(pairs, list):
        raise _SpanError(f"attributes must be a JSON array, got {type(pairs).__name__}")
    attributes: dict[str, object] = {}
    for pair in pairs:
        key = _json_field(pair, "key")
        if not isinstance(key, str):
            raise _SpanError(f"attribute without a string key: {pair!r:.80}")
        attributes[key] = _json_value(_json_field(pair, "value"), key)
    return attributes


def _json_value(value: object, key: str) -> object:
    """An AnyValue object: exactly one of stringValue, boolValue, intValue, doubleValue, ..."""
    if value is None or value == {}:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise _SpanError(f"attribute {key!r}: malformed AnyValue {value!r:.80}")
    ((kind, inner),) = value.items()
    if kind in ("stringValue", "string_value") and isinstance(inner, str):
        return inner
    if kind in ("boolValue", "bool_value") and isinstance(inner, bool):
        return inner
    if kind in ("intValue", "int_value"):
        return _json_int(inner, key)
    if kind in ("doubleValue", "double_value"):
        return _json_double(inner, key)
    if kind in ("arrayValue", "array_value"):
        values = _json_field(inner, "values") or []
        if not isinstance(values, list):
            raise _SpanError(f"attribute {key!r}: arrayValue.values must be a JSON array")
        return [_json_value(item, key) for item in values]
    if kind in ("kvlistValue", "kvlist_value"):
        return _json_attributes(_json_field(inner, "values"))
    if kind in ("bytesValue", "bytes_value") and isinstance(inner, str):
        return _base64(inner, key).hex()
    raise _SpanError(f"attribute {key!r}: malformed AnyValue {value!r:.80}")


def _json_int(value: object, key: str) -> int:
    """An int64 (proto3 JSON sends it as a decimal string; a plain number is tolerated)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _SpanError(f"attribute {key!r}: intValue {value!r:.40} is not an integer")


def _json_double(value: object, key: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):  # proto3 JSON: "NaN", "Infinity", "-Infinity" or a number
        try:
            return float(value)
        except ValueError:
            pass
    raise _SpanError(f"attribute {key!r}: doubleValue {value!r:.40} is not a number")


def _json_uint(value: object) -> int:
    if value is None:
        return 0
    number = _json_int(value, "timestamp")
    if number < 0:
        raise _SpanError(f"negative timestamp {number}")
    return number


def _id_from_json(value: object, size: int, name: str) -> str | None:
    """A trace or span id: hex as OTLP/JSON specifies, base64 (proto3 JSON's bytes) tolerated."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _SpanError(f"{name} must be a string, got {type(value).__name__}")
    raw: bytes | None = None
    if len(value) == 2 * size:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = _base64(value, name)
        except _SpanError:
            raise _SpanError(f"{name} {value!r:.40} is neither {2 * size} hex digits nor base64") from None
    return _id_from_bytes(raw, size, name)


def _base64(value: str, key: str) -> bytes:
    altchars = b"-_" if ("-" in value or "_" in value) else None  # the URL-safe alphabet
    try:
        return base64.b64decode(value, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _SpanError(f"{key!r}: {value!r:.40} is not base64") from exc


def _nonempty(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
