"""The collector server: the real opentelemetry-sdk OTLP/HTTP exporter and LiteLLM's logger bodies in,
UsageEvents out to the sink.

The `integration` tests run the app under uvicorn on a real port; the others drive it in-process
through Starlette's TestClient (status codes, error bodies, metrics).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from costline.broker import LocalBroker, create_topics
from costline.ingest.collector import app as collector_app
from costline.ingest.collector.app import create_collector_app
from costline.ingest.gateways import litellm
from costline.ingest.wire import decode_envelope
from costline.schemas.usage_event import UsageEvent
from tests.integration.conftest import unique_name


class ListSink:
    """An in-memory EventSink."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def emit(self, event: UsageEvent) -> None:
        self.events.append(event)


class BrokenSink:
    def emit(self, event: UsageEvent) -> None:
        raise RuntimeError("kafka is on fire")


@contextmanager
def serving(app: FastAPI, port: int) -> Iterator[str]:
    """The app under uvicorn in a thread; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn exited during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every message of a one-partition topic, without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=3_000)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        return [record.value for record in consumer]
    finally:
        consumer.close()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def start_of(span: ReadableSpan) -> datetime:
    assert span.start_time is not None
    stamp = datetime.fromtimestamp(span.start_time // 1_000_000_000, UTC)
    return stamp + timedelta(microseconds=span.start_time % 1_000_000_000 // 1_000_000 * 1000)


def latency_of(span: ReadableSpan) -> int:
    assert span.start_time is not None
    assert span.end_time is not None
    return (span.end_time - span.start_time) // 1_000_000


# --- the real OpenTelemetry SDK exporter ---------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_spans_from_the_real_otlp_http_exporter_become_events(
    free_port: int, compression: Compression
) -> None:
    sink = ListSink()
    with serving(create_collector_app(sink), free_port) as url:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression, timeout=10)
        resource = Resource.create(
            {"service.name": "rag-api", "deployment.environment.name": "prod", "costline.team": "search"}
        )
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("test.genai")
        ended: dict[str, ReadableSpan] = {}

        with tracer.start_as_current_span("POST /answer", kind=SpanKind.SERVER):
            with tracer.start_as_current_span("chat gpt-5", kind=SpanKind.CLIENT) as chat:
                chat.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-5",
                        "gen_ai.response.model": "gpt-5-2025-08-07",
                        "gen_ai.usage.input_tokens": 12_000,
                        "gen_ai.usage.cache_read.input_tokens": 8_000,
                        "gen_ai.usage.output_tokens": 900,
                        "gen_ai.usage.reasoning.output_tokens": 400,
                        "gen_ai.response.finish_reasons": ("stop",),
                        "gen_ai.conversation.id": "conv-42",
                        "openai.response.service_tier": "default",
                        "costline.tag.feature": "answer",
                    }
                )
                time.sleep(0.005)
            with tracer.start_as_current_span("chat claude", kind=SpanKind.CLIENT) as legacy:
                legacy.set_attributes(
                    {
                        "gen_ai.system": "anthropic",
                        "gen_ai.request.model": "claude-sonnet-4-6",
                        "gen_ai.usage.prompt_tokens": 3_000,
                        "gen_ai.usage.completion_tokens": 150,
                        "costline.team": "support",
                    }
                )
            with tracer.start_as_current_span("embeddings", kind=SpanKind.CLIENT) as failed:
                failed.set_attributes(
                    {
                        "gen_ai.operation.name": "embeddings",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "text-embedding-3-small",
                        "error.type": "RateLimitError",
                    }
                )
                failed.set_status(Status(StatusCode.ERROR, "429"))
        for span in (chat, legacy, failed):
            assert isinstance(span, ReadableSpan)
            ended[span.name] = span
        assert provider.force_flush(timeout_millis=10_000)

        metrics = httpx.get(f"{url}/metrics").text
        provider.shutdown()

    by_model = {event.request_model: event for event in sink.events}
    assert set(by_model) == {"gpt-5", "claude-sonnet-4-6", "text-embedding-3-small"}

    gpt, span = by_model["gpt-5"], ended["chat gpt-5"]
    context = span.get_span_context()
    assert gpt.source == "otel"
    assert gpt.provider == "openai"
    assert gpt.operation == "chat"
    assert gpt.response_model == "gpt-5-2025-08-07"
    assert gpt.occurred_at == start_of(span)
    assert gpt.trace_id == format(context.trace_id, "032x")
    assert gpt.span_id == format(context.span_id, "016x")
    assert gpt.tokens.input_uncached == 4_000
    assert gpt.tokens.cache_read == 8_000
    assert gpt.tokens.cache_write == 0
    assert gpt.tokens.output_visible == 500
    assert gpt.tokens.output_reasoning == 400
    assert gpt.session_id == "conv-42"
    assert gpt.signals.finish_reason == "stop"
    assert gpt.signals.service_tier == "default"
    assert gpt.signals.status == "ok"
    assert gpt.signals.latency_ms == latency_of(span) >= 5
    assert gpt.attribution.team == "search"  # from the resource
    assert gpt.attribution.workload == "rag-api"  # service.name
    assert gpt.attribution.environment == "prod"
    assert gpt.attribution.tags == {"feature": "answer"}

    claude = by_model["claude-sonnet-4-6"]
    assert (claude.provider, claude.operation) == ("anthropic", "chat")
    assert (claude.tokens.input_uncached, claude.tokens.output_visible) == (3_000, 150)
    assert claude.attribution.team == "support"  # the span's own attribute wins
    assert claude.trace_id == gpt.trace_id
    assert claude.occurred_at == start_of(ended["chat claude"])

    embedding = by_model["text-embedding-3-small"]
    assert embedding.operation == "embeddings"
    assert (embedding.signals.status, embedding.signals.error_type) == ("error", "RateLimitError")

    assert metric(metrics, "costline_collector_spans_received") == 4
    assert metric(metrics, "costline_collector_genai_spans") == 3
    assert metric(metrics, "costline_collector_spans_ignored") == 1
    assert metric(metrics, "costline_collector_spans_rejected") == 0
    assert 'costline_collector_events_emitted{source="otlp"} 3' in metrics


@pytest.mark.integration
def test_the_exporter_gets_a_partial_success_for_invalid_spans(free_port: int) -> None:
    sink = ListSink()
    with serving(create_collector_app(sink), free_port) as url:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=10)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("test.genai")
        for effort in ("high", "extreme"):
            with tracer.start_as_current_span("chat") as span:
                span.set_attributes(
                    {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "o3",
                        "costline.reasoning_effort": effort,
                    }
                )
        provider.shutdown()
        metrics = httpx.get(f"{url}/metrics").text
    assert [event.signals.reasoning_effort for event in sink.events] == ["high"]
    assert metric(metrics, "costline_collector_spans_rejected") == 1


@pytest.mark.integration
def test_costline_collector_produces_otlp_spans_to_kafka(
    broker: LocalBroker, free_port: int, tmp_path: Path
) -> None:
    """The command end to end: real exporter → `costline collector` → real producer → the topic."""
    topic = unique_name("collector")
    create_topics(broker.bootstrap_servers, {topic: 1})
    env = {key: value for key, value in os.environ.items() if not key.startswith("COSTLINE_")}
    env |= {
        "COSTLINE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "COSTLINE_KAFKA_USAGE_TOPIC": topic,
        "COSTLINE_DATA_DIR": str(tmp_path / "data"),
    }
    command = [
        sys.executable,
        "-m",
        "costline",
        "collector",
        "--port",
        str(free_port),
        "--loglevel",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the collector did not answer within 20 s"
            time.sleep(0.05)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces")))
        with provider.get_tracer("test").start_as_current_span("chat gpt-5") as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-5",
                    "gen_ai.usage.input_tokens": 70,
                    "gen_ai.usage.output_tokens": 7,
                }
            )
        provider.shutdown()
    finally:
        process.send_signal(signal.SIGINT)  # uvicorn stops, the producer sends what it holds
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    events = [
        UsageEvent.model_validate(raw)
        for message in read_topic(broker.bootstrap_servers, topic)
        for raw in decode_envelope(message)
    ]
    assert [
        (event.request_model, event.tokens.input_uncached, event.tokens.output_visible) for event in events
    ] == [("gpt-5", 70, 7)]
    assert events[0].span_id == format(span.get_span_context().span_id, "016x")


# --- LiteLLM's generic API logger ----------------------------------------------------------------

STARTED = time.time() - 120


def standard_logging_payload(call_id: str, **overrides: Any) -> dict[str, Any]:
    """A StandardLoggingPayload as LiteLLM's proxy logs an OpenAI call through a team key."""
    usage = {
        "prompt_tokens": 1_200,
        "completion_tokens": 300,
        "total_tokens": 1_500,
        "prompt_tokens_details": {"cached_tokens": 1_000},
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    record: dict[str, Any] = {
        "id": f"chatcmpl-{call_id}",
        "litellm_call_id": call_id,
        "trace_id": f"trace-{call_id}",
        "call_type": "acompletion",
        "stream": False,
        "status": "success",
        "response_cost": 0.00123,
        "custom_llm_provider": "openai",
        "model": "gpt-5-2025-08-07",
        "model_group": "gpt-5",
        "api_base": "https://api.openai.com/v1",
        "prompt_tokens": 1_200,
        "completion_tokens": 300,
        "total_tokens": 1_500,
        "startTime": STARTED,
        "endTime": STARTED + 1.25,
        "completionStartTime": STARTED + 1.25,
        "cache_hit": None,
        "request_tags": [],
        "end_user": None,
        "metadata": {"user_api_key_team_alias": "search", "user_api_key_alias": "rag-key"},
        "hidden_params": {"usage_object": usage},
        "messages": "redacted-by-litellm",
        "response": {},
    }
    record.update(overrides)
    return record


def assert_litellm_event(event: UsageEvent, record: Mapping[str, Any]) -> None:
    assert event == litellm.parse(record).event  # exactly what the adapter makes of the record
    assert event.event_id == f"litellm:{record['litellm_call_id']}"
    assert event.source == "gateway.litellm"
    assert (event.provider, event.request_model, event.response_model) == (
        "openai",
        "gpt-5",
        "gpt-5-2025-08-07",
    )
    assert (event.tokens.input_uncached, event.tokens.cache_read) == (200, 1_000)
    assert (event.tokens.output_visible, event.tokens.output_reasoning) == (200, 100)
    assert event.attribution.team == "search"
    assert event.reported_cost == Decimal("0.00123")
    assert event.signals.latency_ms == 1_250


@pytest.mark.integration
def test_litellm_array_ndjson_and_single_object_bodies(free_port: int) -> None:
    sink = ListSink()
    records = [standard_logging_payload(f"call-{n}") for n in range(5)]
    with serving(create_collector_app(sink), free_port) as url, httpx.Client(base_url=url) as client:
        array = client.post("/v1/litellm", json=records[:2])
        ndjson = client.post(
            "/v1/litellm",
            content="\n".join(json.dumps(record) for record in records[2:4]) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        single = client.post(
            "/v1/litellm",
            content=gzip.compress(json.dumps(records[4]).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        metrics = client.get("/metrics").text
    assert [response.status_code for response in (array, ndjson, single)] == [200, 200, 200]
    assert array.json() == {"received": 2, "events": 2, "skipped": 0, "rejected": 0, "errors": []}
    assert ndjson.json()["events"] == 2
    assert single.json()["events"] == 1
    assert len(sink.events) == 5
    for event, record in zip(sink.events, records, strict=True):
        assert_litellm_event(event, record)
    assert metric(metrics, "costline_collector_litellm_records") == 5
    assert 'costline_collector_events_emitted{source="litellm"} 5' in metrics


# --- in-process: status codes, error bodies, metrics ---------------------------------------------


def genai_request(*efforts: str) -> ExportTraceServiceRequest:
    start = int((time.time() - 60) * 1e9)
    spans = [
        Span(
            trace_id=bytes(range(1, 17)),
            span_id=number.to_bytes(8, "big"),
            name="chat",
            start_time_unix_nano=start,
            end_time_unix_nano=start + 10**9,
            attributes=[
                KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
                KeyValue(key="gen_ai.provider.name", value=AnyValue(string_value="openai")),
                KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="o3")),
                KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=100)),
                KeyValue(key="costline.reasoning_effort", value=AnyValue(string_value=effort)),
            ],
        )
        for number, effort in enumerate(efforts, start=1)
    ]
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def client(sink: ListSink) -> Iterator[TestClient]:
    with TestClient(create_collector_app(sink)) as test_client:
        yield test_client


PROTOBUF = {"content-type": "application/x-protobuf"}


def test_protobuf_answers_are_protobuf_with_partial_success(client: TestClient, sink: ListSink) -> None:
    body = genai_request("low", "extreme", "high").SerializeToString()
    response = client.post("/v1/traces", content=body, headers=PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "signals.reasoning_effort" in answer.partial_success.error_message
    assert [event.signals.reasoning_effort for event in sink.events] == ["low", "high"]


def test_gzipped_otlp_json_is_accepted(client: TestClient, sink: ListSink) -> None:
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "costline.team", "value": {"stringValue": "search"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "openlit"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat gpt-4o",
                                "kind": 3,
                                "startTimeUnixNano": str(int((time.time() - 60) * 1e9)),
                                "endTimeUnixNano": str(int((time.time() - 59) * 1e9)),
                                "attributes": [
                                    {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "120"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "30"}},
                                ],
                                "status": {},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = client.post(
        "/v1/traces",
        content=gzip.compress(json.dumps(document).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json() == {}
    (event,) = sink.events
    assert (event.trace_id, event.span_id) == ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    assert (event.tokens.input_uncached, event.tokens.output_visible) == (120, 30)
    assert event.attribution.team == "search"


def test_unreadable_bodies_are_400_with_a_status_body(client: TestClient) -> None:
    garbage = client.post("/v1/traces", content=b"\xff\xff\xff", headers=PROTOBUF)
    assert garbage.status_code == 400
    assert b"not a protobuf ExportTraceServiceRequest" in garbage.content
    bad_json = client.post("/v1/traces", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == 3
    bad_gzip = client.post("/v1/traces", content=b"plain", headers={**PROTOBUF, "content-encoding": "gzip"})
    assert bad_gzip.status_code == 400


def test_unknown_content_types_are_415(client: TestClient) -> None:
    response = client.post("/v1/traces", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/x-protobuf" in response.json()["message"]
    encoded = client.post("/v1/traces", content=b"x", headers={**PROTOBUF, "content-encoding": "br"})
    assert encoded.status_code == 415


def test_bodies_over_the_limit_are_413(sink: ListSink) -> None:
    with TestClient(create_collector_app(sink, max_body_bytes=1_000)) as small:
        body = genai_request(*["low"] * 20).SerializeToString()
        assert small.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 413
        bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        assert small.post("/v1/litellm", content=bomb, headers=headers).status_code == 413


def test_a_failing_sink_answers_503_so_the_exporter_retries() -> None:
    with TestClient(create_collector_app(BrokenSink())) as broken:
        response = broken.post(
            "/v1/traces", content=genai_request("low").SerializeToString(), headers=PROTOBUF
        )
        assert response.status_code == 503
        assert "costline_collector_emit_failures 1" in broken.get("/metrics").text
        litellm_response = broken.post("/v1/litellm", json=[standard_logging_payload("c1")])
        assert litellm_response.status_code == 503


def test_litellm_records_are_counted_skipped_and_rejected(client: TestClient, sink: ListSink) -> None:
    good = standard_logging_payload("good")
    lines = [
        json.dumps(good),
        "{this is not json",
        json.dumps({"route": "/health", "status_code": 200}),  # not a LiteLLM payload
        json.dumps(standard_logging_payload("nomodel", model=None, model_group=None)),
        "",
        "[1, 2]",
    ]
    response = client.post("/v1/litellm", content="\n".join(lines))
    assert response.status_code == 200
    summary = response.json()
    assert {key: summary[key] for key in ("received", "events", "skipped", "rejected")} == {
        "received": 5,
        "events": 1,
        "skipped": 1,
        "rejected": 3,
    }
    assert summary["errors"][0].startswith("line 2: not JSON")
    assert_litellm_event(sink.events[0], good)


def test_litellm_bodies_that_are_not_records_are_400(client: TestClient) -> None:
    assert client.post("/v1/litellm", content=b"nothing like json").status_code == 400
    assert client.post("/v1/litellm", content=b'"a string"').status_code == 400
    empty = client.post("/v1/litellm", content=b"")
    assert (empty.status_code, empty.json()["received"]) == (200, 0)


def test_a_crashing_parser_rejects_the_record_only(sink: ListSink) -> None:
    def parse(record: Mapping[str, Any]) -> Any:
        if record.get("boom"):
            raise KeyError("boom")
        return litellm.parse(record)

    with TestClient(create_collector_app(sink, litellm_parser=parse)) as custom:
        response = custom.post("/v1/litellm", json=[{"boom": True}, standard_logging_payload("ok"), 7])
    assert response.json()["rejected"] == 2
    assert "internal error in the adapter: KeyError" in response.json()["errors"][0]
    assert len(sink.events) == 1


def test_without_the_litellm_adapter_the_endpoint_says_501(
    monkeypatch: pytest.MonkeyPatch, sink: ListSink
) -> None:
    monkeypatch.setattr(collector_app, "LITELLM_ADAPTER", "costline.ingest.gateways.not_there")
    with TestClient(create_collector_app(sink)) as bare:
        response = bare.post("/v1/litellm", json=[standard_logging_payload("c1")])
        assert response.status_code == 501
        assert "costline.ingest.gateways.not_there" in response.json()["error"]
        assert bare.get("/healthz").json() == {"status": "ok", "litellm": False}
        traces = bare.post("/v1/traces", content=genai_request("low").SerializeToString(), headers=PROTOBUF)
        assert traces.status_code == 200  # OTLP does not depend on it


def test_metrics_include_the_producer_stats(sink: ListSink) -> None:
    class StatsSink(ListSink):
        def stats(self) -> dict[str, int]:
            return {"sent": 5, "spooled": 2, "dropped": 0, "queued": 1, "broker_up": 1}

    with TestClient(create_collector_app(StatsSink())) as with_stats:
        text = with_stats.get("/metrics").text
    assert "# TYPE costline_producer_spooled counter\ncostline_producer_spooled 2\n" in text
    assert "# TYPE costline_producer_broker_up gauge\ncostline_producer_broker_up 1\n" in text


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "litellm": True}
    client.post("/v1/traces", content=b"x", headers={"content-type": "text/plain"})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE costline_collector_spans_received counter" in metrics.text
    assert metric(metrics.text, "costline_collector_bad_requests") == 1
    assert metric(metrics.text, "costline_collector_otlp_requests") == 1
