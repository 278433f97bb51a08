"""The collector's HTTP server: OTLP traces and LiteLLM's generic API logger in, UsageEvents out.

    POST /v1/traces   OTLP/HTTP ExportTraceServiceRequest (protobuf or JSON, optionally gzip)
    POST /v1/litellm  LiteLLM StandardLoggingPayloads: a JSON array, NDJSON or a single object
    GET  /healthz     liveness
    GET  /metrics     Prometheus text

Every event goes to the `EventSink` given to `create_collector_app` (the Kafka producer in
`costline collector`, a list in tests). A bad span or record is counted and skipped; only an
unreadable body fails the request. When the sink itself raises, the request is answered 503 so
the sender retries: event ids are deterministic, so a re-sent batch is deduplicated downstream.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from costline.ingest.collector.otlp import (
    JSON_CONTENT_TYPE,
    MAX_BODY_BYTES,
    MAX_ERRORS,
    PROTOBUF_CONTENT_TYPE,
    BodyTooLargeError,
    MediaType,
    OtlpError,
    TraceBatch,
    decompress,
    error_status,
    export_response,
    media_type,
    parse_traces,
)
from costline.ingest.emit import EventSink
from costline.schemas.usage_event import UsageEvent

if TYPE_CHECKING:
    from costline.ingest.gateways.base import ParseResult

logger = logging.getLogger(__name__)

#: The LiteLLM adapter's `parse`: a record → ParseResult (an event, a skip or an error with its reason).
LiteLLMParser = Callable[[Mapping[str, Any]], "ParseResult"]

#: Module holding the LiteLLM StandardLoggingPayload adapter (`parse(record)`).
LITELLM_ADAPTER = "costline.ingest.gateways.litellm"
_CONTENT_TYPES: Mapping[MediaType, str] = {"protobuf": PROTOBUF_CONTENT_TYPE, "json": JSON_CONTENT_TYPE}
_UNAVAILABLE = 14  # google.rpc.Code UNAVAILABLE: OTLP exporters retry it
#: Producer stats that go up and down; the others only grow.
_PRODUCER_GAUGES = frozenset({"queued", "in_flight", "spool_pending_bytes", "broker_up"})

METRIC_HELP: dict[str, str] = {
    "otlp_requests": "OTLP export requests received.",
    "spans_received": "Spans in decoded OTLP requests.",
    "genai_spans": "Spans recognised as GenAI inference calls.",
    "spans_ignored": "Spans that are not GenAI inference calls.",
    "spans_rejected": "Spans that could not become events (undecodable or invalid).",
    "litellm_requests": "LiteLLM logger requests received.",
    "litellm_records": "LiteLLM records received.",
    "litellm_skipped": "LiteLLM records that are not LLM calls.",
    "litellm_rejected": "LiteLLM records that could not be parsed.",
    "bad_requests": "Requests refused as unreadable (400, 413 or 415).",
    "emit_failures": "Requests answered 503 because the sink raised.",
}


@dataclass
class CollectorMetrics:
    """Monotonic counters of one collector process (updated on the event loop only)."""

    otlp_requests: int = 0
    spans_received: int = 0
    genai_spans: int = 0
    spans_ignored: int = 0
    spans_rejected: int = 0
    litellm_requests: int = 0
    litellm_records: int = 0
    litellm_skipped: int = 0
    litellm_rejected: int = 0
    bad_requests: int = 0
    emit_failures: int = 0
    events_emitted: dict[str, int] = field(default_factory=lambda: {"otlp": 0, "litellm": 0})

    def render(self) -> str:
        """Prometheus exposition text."""
        lines: list[str] = []
        for item in fields(self):
            if item.name == "events_emitted":
                continue
            name = f"costline_collector_{item.name}"
            lines += [
                f"# HELP {name} {METRIC_HELP[item.name]}",
                f"# TYPE {name} counter",
                f"{name} {getattr(self, item.name)}",
            ]
        lines += [
            "# HELP costline_collector_events_emitted UsageEvents handed to the sink, by receiver.",
            "# TYPE costline_collector_events_emitted counter",
        ]
        lines += [
            f'costline_collector_events_emitted{{source="{source}"}} {count}'
            for source, count in sorted(self.events_emitted.items())
        ]
        return "\n".join(lines) + "\n"


@dataclass
class LiteLLMBatch:
    """What one LiteLLM logger request held."""

    events: list[UsageEvent] = field(default_factory=list)
    records: int = 0
    skipped: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        """Count one unusable record and keep its reason if there is room."""
        self.rejected += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(reason)
        logger.debug("LiteLLM record rejected: %s", reason)

    def summary(self) -> dict[str, Any]:
        """The JSON answer to the logger."""
        return {
            "received": self.records,
            "events": len(self.events),
            "skipped": self.skipped,
            "rejected": self.rejected,
            "errors": self.errors,
        }


def split_records(body: bytes) -> tuple[list[object], list[str]]:
    """Records of a generic-API-logger body (JSON array, single object or NDJSON) and bad lines.

    Raises OtlpError when the body is none of the three.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OtlpError(f"body is not UTF-8: {exc}") from exc
    if not text.strip():
        return [], []
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:
        if isinstance(document, list):
            return document, []
        if isinstance(document, dict):
            return [document], []
        raise OtlpError(f"expected a JSON array or object of records, got {type(document).__name__}")
    records: list[object] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not JSON ({exc.msg})")
    if not records:
        raise OtlpError("body is neither a JSON array, a JSON object nor NDJSON records")
    return records, errors


def parse_litellm(body: bytes, parser: LiteLLMParser) -> LiteLLMBatch:
    """Run every record of a logger body through the LiteLLM adapter."""
    records, line_errors = split_records(body)
    batch = LiteLLMBatch(records=len(records) + len(line_errors))
    for reason in line_errors:
        batch.reject(reason)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            batch.reject(f"record {index}: a JSON {type(record).__name__}, not an object")
            continue
        try:
            result = parser(record)
        except Exception as exc:  # an adapter bug costs one record, never the request
            logger.debug("the LiteLLM adapter failed on a record", exc_info=True)
            batch.reject(f"record {index}: internal error in the adapter: {type(exc).__name__}: {exc}")
            continue
        if result.kind == "event" and result.event is not None:
            batch.events.append(result.event)
        elif result.kind == "skipped":
            batch.skipped += 1
        else:
            batch.reject(f"record {index}: {result.reason}")
    return batch


def default_litellm_parser() -> tuple[LiteLLMParser | None, str]:
    """`parse` of the bundled LiteLLM adapter, or None and why it is unavailable."""
    try:
        module = importlib.import_module(LITELLM_ADAPTER)
    except ModuleNotFoundError as exc:
        if exc.name and LITELLM_ADAPTER.startswith(exc.name):
            return None, f"the LiteLLM adapter ({LITELLM_ADAPTER}) is not part of this installation"
        logger.warning("the LiteLLM adapter could not be imported", exc_info=True)
        return None, f"the LiteLLM adapter could not be imported: {exc}"
    except Exception as exc:
        logger.warning("the LiteLLM adapter could not be imported", exc_info=True)
        return None, f"the LiteLLM adapter could not be imported: {type(exc).__name__}: {exc}"
    parse = getattr(module, "parse", None)
    if not callable(parse):
        return None, f"{LITELLM_ADAPTER} has no parse(record) function"
    parser: LiteLLMParser = parse
    return parser, ""


def create_collector_app(
    sink: EventSink,
    *,
    litellm_parser: LiteLLMParser | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The collector server; events go to `sink`, LiteLLM records through `litellm_parser`.

    Without `litellm_parser` the bundled adapter is used; when it is missing, /v1/litellm answers
    501 and says why.
    """
    unavailable = ""
    if litellm_parser is None:
        litellm_parser, unavailable = default_litellm_parser()
    parser = litellm_parser
    metrics = CollectorMetrics()
    app = FastAPI(title="costline collector", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics

    def emit_all(events: list[UsageEvent], source: str) -> bool:
        try:
            for event in events:
                sink.emit(event)
                metrics.events_emitted[source] += 1
        except Exception:
            metrics.emit_failures += 1
            logger.exception("the event sink failed; answering 503 so the sender retries")
            return False
        return True

    def refuse(exc: OtlpError, media: MediaType) -> Response:
        metrics.bad_requests += 1
        logger.warning("refused a request (%d): %s", exc.status, exc)
        body = error_status(str(exc), media)
        return Response(body, status_code=exc.status, media_type=_CONTENT_TYPES[media])

    @app.post("/v1/traces")
    async def traces(request: Request) -> Response:
        """OTLP/HTTP trace export: GenAI spans become events."""
        metrics.otlp_requests += 1
        try:
            media = media_type(request.headers.get("content-type"))
        except OtlpError as exc:
            return refuse(exc, "json")
        try:
            raw = await _read_body(request, max_body_bytes)
            encoding = request.headers.get("content-encoding")
            batch: TraceBatch = await run_in_threadpool(_traces, raw, encoding, media, max_body_bytes)
        except OtlpError as exc:
            return refuse(exc, media)
        metrics.spans_received += batch.spans
        metrics.genai_spans += batch.genai_spans
        metrics.spans_ignored += batch.ignored
        metrics.spans_rejected += batch.rejected
        if batch.rejected:
            logger.warning(
                "rejected %d of %d spans; first reason: %s", batch.rejected, batch.spans, batch.errors[0]
            )
        if not emit_all(batch.events, "otlp"):
            message = error_status("the event sink is unavailable; retry later", media, code=_UNAVAILABLE)
            return Response(message, status_code=503, media_type=_CONTENT_TYPES[media])
        return Response(export_response(batch, media), media_type=_CONTENT_TYPES[media])

    @app.post("/v1/litellm")
    async def litellm(request: Request) -> Response:
        """LiteLLM generic API logger: StandardLoggingPayload records become events."""
        metrics.litellm_requests += 1
        if parser is None:
            message = f"LiteLLM ingestion is unavailable: {unavailable}"
            return JSONResponse({"error": message}, status_code=501)
        try:
            raw = await _read_body(request, max_body_bytes)
            encoding = request.headers.get("content-encoding")
            batch: LiteLLMBatch = await run_in_threadpool(_records, raw, encoding, parser, max_body_bytes)
        except OtlpError as exc:
            metrics.bad_requests += 1
            logger.warning("refused a LiteLLM request (%d): %s", exc.status, exc)
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        metrics.litellm_records += batch.records
        metrics.litellm_skipped += batch.skipped
        metrics.litellm_rejected += batch.rejected
        if batch.rejected:
            logger.warning(
                "rejected %d of %d LiteLLM records; first reason: %s",
                batch.rejected,
                batch.records,
                batch.errors[0],
            )
        if not emit_all(batch.events, "litellm"):
            return JSONResponse({"error": "the event sink is unavailable; retry later"}, status_code=503)
        return JSONResponse(batch.summary())

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, and whether LiteLLM ingestion is available."""
        return {"status": "ok", "litellm": parser is not None}

    @app.get("/metrics")
    async def metrics_text() -> PlainTextResponse:
        """Counters in the Prometheus text format, with the sink's own `stats()` when it has them."""
        return PlainTextResponse(metrics.render() + _sink_stats(sink), media_type="text/plain; version=0.0.4")

    return app


def _traces(raw: bytes, encoding: str | None, media: MediaType, limit: int) -> TraceBatch:
    """Decompress and parse off the event loop (both are CPU work on bodies of up to `limit`)."""
    return parse_traces(decompress(raw, encoding, limit=limit), media)


def _records(raw: bytes, encoding: str | None, parser: LiteLLMParser, limit: int) -> LiteLLMBatch:
    return parse_litellm(decompress(raw, encoding, limit=limit), parser)


def _sink_stats(sink: EventSink) -> str:
    """`costline_producer_*` lines from a sink with `stats()` (the Kafka producer: sent, spooled, ...)."""
    stats = getattr(sink, "stats", None)
    if not callable(stats):
        return ""
    try:
        values = dict(stats())
    except Exception:
        logger.debug("the sink's stats() failed", exc_info=True)
        return ""
    lines: list[str] = []
    for key, value in sorted(values.items()):
        if (
            not key.replace("_", "").isalnum()
            or isinstance(value, bool)
            or not isinstance(value, int | float)
        ):
            continue
        name = f"costline_producer_{key}"
        kind = "gauge" if key in _PRODUCER_GAUGES else "counter"
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n" if lines else ""


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
