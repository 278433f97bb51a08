"""OTLP trace requests → UsageEvents, with bodies built from the real opentelemetry-proto classes.

Most tests run twice: once on the binary protobuf body and once on the same request as OTLP/JSON
(camelCase keys, int64 as strings, hex ids), and must give the same events.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from costline.ingest.collector.otlp import (
    BodyTooLargeError,
    MediaType,
    OtlpError,
    TraceBatch,
    UnsupportedMediaTypeError,
    decompress,
    error_status,
    export_response,
    is_genai_span,
    media_type,
    parse_traces,
    parse_traces_json,
    parse_traces_protobuf,
)
from costline.schemas.otel import to_otel_attributes
from costline.schemas.usage_event import UsageEvent, hash_user

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
START_NS = int(START.timestamp()) * 1_000_000_000
TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")

Attrs = Mapping[str, Any]


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))
    return AnyValue(string_value=value)


def key_values(attrs: Attrs) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attrs.items()]


def make_span(
    attrs: Attrs,
    *,
    number: int = 1,
    start_ns: int = START_NS,
    duration_ms: int = 850,
    error: bool = False,
    name: str = "chat gpt-5",
) -> Span:
    return Span(
        trace_id=TRACE_ID,
        span_id=number.to_bytes(8, "big"),
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ms * 1_000_000,
        attributes=key_values(attrs),
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
    )


def make_request(spans: list[Span], resource: Attrs | None = None) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=key_values(resource or {})),
                scope_spans=[ScopeSpans(spans=spans)],
            )
        ]
    )


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """OTLP/JSON of a request: proto3 JSON with integer enums and hex (not base64) ids."""
    document = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


def encode(request: ExportTraceServiceRequest, media: MediaType) -> bytes:
    if media == "protobuf":
        return request.SerializeToString()
    return json.dumps(otlp_json(request)).encode()


@pytest.fixture(params=["protobuf", "json"])
def media(request: pytest.FixtureRequest) -> MediaType:
    value: MediaType = request.param
    return value


@pytest.fixture
def parse(media: MediaType) -> Callable[..., TraceBatch]:
    def run(spans: list[Span], resource: Attrs | None = None) -> TraceBatch:
        return parse_traces(encode(make_request(spans, resource), media), media)

    return run


CHAT_V141: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-5",
    "gen_ai.response.model": "gpt-5-2025-08-07",
    "gen_ai.usage.input_tokens": 1_000,
    "gen_ai.usage.cache_read.input_tokens": 400,
    "gen_ai.usage.cache_creation.input_tokens": 100,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.reasoning.output_tokens": 120,
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.conversation.id": "conv-7",
    "openai.response.service_tier": "flex",
    "server.address": "api.openai.com",
}


def test_a_v1_41_chat_span_becomes_an_event_field_by_field(parse: Callable[..., TraceBatch]) -> None:
    batch = parse([make_span(CHAT_V141, number=7)])
    assert (batch.spans, batch.genai_spans, batch.ignored, batch.rejected) == (1, 1, 0, 0)
    (event,) = batch.events
    assert event.occurred_at == START
    assert event.source == "otel"
    assert event.provider == "openai"
    assert event.operation == "chat"
    assert event.request_model == "gpt-5"
    assert event.response_model == "gpt-5-2025-08-07"
    assert event.tokens.model_dump() == {
        "input_uncached": 500,
        "cache_read": 400,
        "cache_write_5m": 100,
        "cache_write_30m": 0,
        "cache_write_1h": 0,
        "cache_write_12h": 0,
        "output_visible": 180,
        "output_reasoning": 120,
    }
    assert event.trace_id == TRACE_ID.hex()
    assert event.span_id == "0000000000000007"
    assert event.session_id == "conv-7"
    assert event.signals.finish_reason == "stop"
    assert event.signals.service_tier == "flex"
    assert event.signals.latency_ms == 850
    assert event.signals.status == "ok"
    assert event.event_id.startswith("otel-")


def test_deprecated_names_of_older_instrumentations_are_read(parse: Callable[..., TraceBatch]) -> None:
    legacy = {
        "gen_ai.system": "az.ai.openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.prompt_tokens": 1_200,
        "gen_ai.usage.completion_tokens": 80,
    }
    v136 = {
        "gen_ai.system": "anthropic",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "claude-sonnet-4-6",
        "gen_ai.usage.input_tokens": 900,
        "gen_ai.usage.output_tokens": 40,
    }
    batch = parse([make_span(legacy, number=1), make_span(v136, number=2)])
    assert (batch.genai_spans, batch.rejected) == (2, 0)
    old, newer = batch.events
    assert (old.provider, old.operation, old.request_model) == ("azure.ai.openai", "chat", "gpt-4o")
    assert (old.tokens.input_uncached, old.tokens.output_visible) == (1_200, 80)
    assert (newer.provider, newer.request_model) == ("anthropic", "claude-sonnet-4-6")
    assert (newer.tokens.input_uncached, newer.tokens.output_visible) == (900, 40)


def test_new_names_win_over_deprecated_ones(parse: Callable[..., TraceBatch]) -> None:
    both = {
        **CHAT_V141,
        "gen_ai.system": "something-else",
        "gen_ai.usage.prompt_tokens": 5,
        "gen_ai.usage.completion_tokens": 5,
    }
    (event,) = parse([make_span(both)]).events
    assert event.provider == "openai"
    assert event.tokens.input_total == 1_000
    assert event.tokens.output_total == 300


def test_spans_that_are_not_inference_calls_are_ignored(parse: Callable[..., TraceBatch]) -> None:
    spans = [
        make_span({"http.request.method": "POST", "url.path": "/answer"}, number=1, name="POST /answer"),
        make_span({"db.system.name": "postgresql"}, number=2, name="SELECT"),
        make_span({"gen_ai.provider.name": "openai"}, number=3),  # no model
        make_span({"gen_ai.request.model": "gpt-5"}, number=4),  # a model, but no operation or provider
        make_span(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-5",
                "gen_ai.usage.input_tokens": 5_000,
            },
            number=5,
        ),
        make_span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, number=6),
        make_span(CHAT_V141, number=7),
    ]
    batch = parse(spans)
    assert (batch.spans, batch.genai_spans, batch.ignored, batch.rejected) == (7, 1, 6, 0)
    assert [event.span_id for event in batch.events] == ["0000000000000007"]


def test_a_malformed_attribute_rejects_its_span_only(parse: Callable[..., TraceBatch]) -> None:
    spans = [
        make_span({**CHAT_V141, "costline.reasoning_effort": "extreme"}, number=1),
        make_span({**CHAT_V141, "gen_ai.usage.input_tokens": 10**9}, number=2),
        make_span({**CHAT_V141, "costline.user_hash": "alice"}, number=3),
        make_span(CHAT_V141, number=4),
    ]
    batch = parse(spans)
    assert (batch.spans, batch.genai_spans, batch.rejected) == (4, 4, 3)
    assert [event.span_id for event in batch.events] == ["0000000000000004"]
    assert "span 0000000000000001: signals.reasoning_effort" in batch.errors[0]
    assert "span 0000000000000002: tokens.input_uncached" in batch.errors[1]
    assert "attribution.user_hash" in batch.errors[2]


def test_spans_out_of_the_time_window_are_rejected(parse: Callable[..., TraceBatch]) -> None:
    future = int((datetime.now(UTC) + timedelta(days=1)).timestamp()) * 1_000_000_000
    batch = parse([make_span(CHAT_V141, start_ns=future), make_span(CHAT_V141, start_ns=2**63, number=2)])
    assert batch.rejected == 2
    assert "in the future" in batch.errors[0]


def test_resource_attributes_are_attribution_fallbacks(parse: Callable[..., TraceBatch]) -> None:
    resource = {
        "service.name": "rag-api",
        "deployment.environment.name": "prod",
        "costline.team": "search",
        "costline.cost_center": "CC-100",
        "costline.tag.region": "eu",
        "costline.event_id": "resource-id-must-not-spread",
    }
    own = {**CHAT_V141, "costline.team": "ranking", "costline.tag.feature": "rerank"}
    batch = parse([make_span(CHAT_V141, number=1), make_span(own, number=2)], resource)
    first, second = batch.events
    assert first.attribution.model_dump() == {
        "team": "search",
        "project": None,
        "workload": "rag-api",
        "user_hash": None,
        "environment": "prod",
        "cost_center": "CC-100",
        "tags": {"region": "eu"},
    }
    assert second.attribution.team == "ranking"  # the span's own value wins
    assert second.attribution.tags == {"region": "eu", "feature": "rerank"}
    assert first.event_id != second.event_id != "resource-id-must-not-spread"


def test_explicit_costline_workload_beats_service_name(parse: Callable[..., TraceBatch]) -> None:
    resource = {"service.name": "rag-api", "costline.workload": "rag-answer"}
    (event,) = parse([make_span(CHAT_V141)], resource).events
    assert event.attribution.workload == "rag-answer"
    (default,) = parse([make_span(CHAT_V141)], {"service.name": "unknown_service:python"}).events
    assert default.attribution.workload is None


def test_failed_spans_are_error_events(parse: Callable[..., TraceBatch]) -> None:
    spans = [
        make_span(CHAT_V141, number=1, error=True),
        make_span({**CHAT_V141, "error.type": "RateLimitError"}, number=2, error=True),
    ]
    untyped, typed = parse(spans).events
    assert (untyped.signals.status, untyped.signals.error_type) == ("error", "_OTHER")
    assert (typed.signals.status, typed.signals.error_type) == ("error", "RateLimitError")


def test_costline_spans_come_back_as_the_same_event(parse: Callable[..., TraceBatch]) -> None:
    """An event exported as a span by costline itself round-trips through OTLP unchanged."""
    event = UsageEvent.model_validate(
        {
            "event_id": "evt-42",
            "occurred_at": START,
            "source": "sdk.anthropic",
            "provider": "anthropic",
            "request_model": "claude-sonnet-4-6",
            "tokens": {"input_uncached": 1_000, "cache_read": 10_000, "cache_write_1h": 500},
            "attribution": {"team": "search", "user_hash": hash_user("alice"), "tags": {"ab.arm": "b"}},
            "signals": {"latency_ms": 1_234, "finish_reason": "end_turn"},
            "trace_id": TRACE_ID.hex(),
            "span_id": "0000000000000001",
        }
    )
    (back,) = parse([make_span(to_otel_attributes(event), number=1)]).events
    assert back == event


def test_a_resent_request_gives_the_same_event_ids(media: MediaType) -> None:
    body = encode(make_request([make_span(CHAT_V141, number=n) for n in range(1, 4)]), media)
    first, again = parse_traces(body, media), parse_traces(body, media)
    assert [event.event_id for event in first.events] == [event.event_id for event in again.events]
    assert len({event.event_id for event in first.events}) == 3


def test_json_and_protobuf_bodies_give_identical_events() -> None:
    request = make_request([make_span(CHAT_V141, number=n) for n in range(1, 3)], {"costline.team": "t"})
    from_proto = parse_traces_protobuf(request.SerializeToString())
    from_json = parse_traces_json(json.dumps(otlp_json(request)))
    assert from_proto.events == from_json.events


def test_json_ints_as_strings_and_base64_ids_are_accepted() -> None:
    document = otlp_json(make_request([make_span(CHAT_V141, number=9)]))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert any(item["value"] == {"intValue": "1000"} for item in span["attributes"])  # as the spec sends it
    span["traceId"] = base64.b64encode(TRACE_ID).decode()  # proto3 JSON's bytes encoding
    span["spanId"] = base64.b64encode((9).to_bytes(8, "big")).decode()
    span["status"] = {"code": "STATUS_CODE_ERROR"}
    (event,) = parse_traces_json(json.dumps(document)).events
    assert (event.trace_id, event.span_id) == (TRACE_ID.hex(), "0000000000000009")
    assert event.tokens.input_total == 1_000
    assert event.signals.status == "error"


def test_a_malformed_json_span_is_rejected_alone() -> None:
    document = otlp_json(make_request([make_span(CHAT_V141, number=n) for n in range(1, 5)]))
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[0]["attributes"].append({"key": "gen_ai.usage.output_tokens", "value": {"intValue": "many"}})
    spans[1]["traceId"] = "not-an-id"
    spans[2]["attributes"].append({"key": "x", "value": {"stringValue": 1, "intValue": "2"}})
    batch = parse_traces_json(json.dumps(document))
    assert (batch.spans, batch.rejected) == (4, 3)
    assert [event.span_id for event in batch.events] == ["0000000000000004"]
    assert "intValue 'many' is not an integer" in batch.errors[0]
    assert "traceId 'not-an-id' is neither 32 hex digits nor base64" in batch.errors[1]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"resourceSpans": {}}',
        b"\xff\xfe",
        b'{"resourceSpans": [{"scopeSpans": 3}]}',
    ],
)
def test_undecodable_json_bodies_raise(body: bytes) -> None:
    with pytest.raises(OtlpError) as caught:
        parse_traces_json(body)
    assert caught.value.status == 400


def test_undecodable_protobuf_bodies_raise() -> None:
    with pytest.raises(OtlpError, match="not a protobuf ExportTraceServiceRequest"):
        parse_traces_protobuf(b"\xff\xff\xff\xff")


def test_empty_requests_are_valid(media: MediaType) -> None:
    batch = parse_traces(encode(ExportTraceServiceRequest(), media), media)
    assert (batch.spans, batch.events, batch.rejected) == (0, [], 0)


def test_the_response_reports_rejected_spans_as_partial_success() -> None:
    batch = TraceBatch(spans=3, genai_spans=3, rejected=2, errors=["span a: bad", "span b: bad"])
    response = ExportTraceServiceResponse.FromString(export_response(batch, "protobuf"))
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == "span a: bad; span b: bad"
    assert json.loads(export_response(batch, "json")) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "span a: bad; span b: bad"}
    }
    clean = TraceBatch(spans=1, genai_spans=1)
    assert not ExportTraceServiceResponse.FromString(export_response(clean, "protobuf")).HasField(
        "partial_success"
    )
    assert export_response(clean, "json") == b"{}"


def test_error_bodies_are_google_rpc_status() -> None:
    status_pb2 = pytest.importorskip("google.rpc.status_pb2")
    status = status_pb2.Status.FromString(error_status("body is not gzip", "protobuf"))
    assert (status.code, status.message) == (3, "body is not gzip")
    long = status_pb2.Status.FromString(error_status("x" * 300, "protobuf", code=14))
    assert (long.code, long.message) == (14, "x" * 300)
    assert json.loads(error_status("nope", "json")) == {"code": 3, "message": "nope"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/x-protobuf", "protobuf"),
        ("application/protobuf", "protobuf"),
        ("application/json", "json"),
        ("Application/JSON; charset=utf-8", "json"),
    ],
)
def test_media_types(header: str, expected: str) -> None:
    assert media_type(header) == expected


@pytest.mark.parametrize("header", [None, "", "text/plain", "application/grpc"])
def test_unknown_media_types_are_refused(header: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        media_type(header)
    assert caught.value.status == 415


def test_gzip_bodies_are_inflated_within_the_limit() -> None:
    body = encode(make_request([make_span(CHAT_V141)]), "protobuf")
    assert decompress(gzip.compress(body), "gzip") == body
    assert decompress(gzip.compress(body[:10]) + gzip.compress(body[10:]), "gzip") == body  # two members
    assert decompress(body, None) == body
    assert decompress(body, "identity") == body
    with pytest.raises(BodyTooLargeError):
        decompress(gzip.compress(b"\0" * 10_000), "gzip", limit=1_000)  # a small bomb
    with pytest.raises(BodyTooLargeError):
        decompress(b"\0" * 2_000, None, limit=1_000)
    with pytest.raises(OtlpError, match="not valid gzip"):
        decompress(b"plain", "gzip")
    with pytest.raises(OtlpError, match="truncated"):
        decompress(gzip.compress(body)[:-10], "gzip")
    with pytest.raises(UnsupportedMediaTypeError):
        decompress(body, "br")


def test_genai_span_rule() -> None:
    assert is_genai_span({"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "m"})
    assert is_genai_span({"gen_ai.system": "openai", "gen_ai.response.model": "m"})
    assert not is_genai_span({"gen_ai.operation.name": "chat"})
    assert not is_genai_span({"gen_ai.operation.name": "invoke_workflow", "gen_ai.request.model": "m"})
    assert not is_genai_span({"gen_ai.operation.name": ["chat"], "gen_ai.request.model": "m"})


def test_the_otlp_module_stays_light() -> None:
    """Hooks must never pull the server stack: importing the parser loads neither FastAPI nor protobuf."""
    code = (
        "import sys, costline.ingest.collector.otlp; "
        "heavy = [m for m in ('fastapi', 'starlette', 'uvicorn', 'google.protobuf') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
