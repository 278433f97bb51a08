"""A local HTTP stand-in for the OpenAI and Anthropic APIs, for tests that drive the real SDK clients.

Bodies and SSE streams are shaped like the providers' (field names, event order, `usage: null` on
chunks when usage was requested, `[DONE]`, Anthropic `ping` events), built from the documented
response schemas; ids and timestamps are fixed. A request picks its scenario with the
`x-stub-scenario` header (default `plain`); every request is kept in `requests` with its JSON
body and its headers minus credentials, so tests can check what the hook sent.

Scenarios: `plain`, `cached`, `reasoning` (OpenAI) / `thinking` (Anthropic), `web_search`,
`cache_write`, `no_usage_chunk` (a stream that ends without usage), `interrupted` (the server
drops the connection mid-stream), `stream_error` (an SSE error event mid-stream), `error_429`,
`error_500`, `failed` (Responses API status failed).
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z
SCRUBBED_HEADERS = {"authorization", "x-api-key", "api-key"}

#: Request model → the dated snapshot the API reports back.
SNAPSHOTS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-5": "gpt-5-2025-08-07",
    "o4-mini": "o4-mini-2025-04-16",
    "text-embedding-3-small": "text-embedding-3-small",
    "claude-sonnet-4-6": "claude-sonnet-4-6",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}

CHAT_TEXT = ["Hello", " from", " the", " stub", "!"]
ANSWER = "".join(CHAT_TEXT)


@dataclass
class ReceivedRequest:
    """One request as the stub saw it (credentials removed)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def scenario(self) -> str:
        return self.headers.get("x-stub-scenario", "plain")


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    events: list[tuple[str | None, Any]] | None = None  # SSE (event name, data); data "[DONE]" verbatim
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # drop the connection after this many SSE events


# --- OpenAI Chat Completions ------------------------------------------------------------------------


def _chat_usage(scenario: str) -> dict[str, Any]:
    prompt, completion, cached, reasoning = 21, 5, 0, 0
    if scenario == "cached":
        prompt, cached = 2_006, 1_920
    elif scenario == "reasoning":
        completion, reasoning = 1_205, 1_200
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_completion(body: dict[str, Any], scenario: str) -> dict[str, Any]:
    model = SNAPSHOTS.get(body.get("model", ""), body.get("model"))
    return {
        "id": "chatcmpl-CSTUB0000000000000000000001",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _chat_usage(scenario),
        "service_tier": "default",
        "system_fingerprint": "fp_stub0001",
    }


def chat_stream(body: dict[str, Any], scenario: str) -> Reply:
    model = SNAPSHOTS.get(body.get("model", ""), body.get("model"))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[Any], usage: Any = None, last: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": "chatcmpl-CSTUB0000000000000000000002",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_stub0001",
            "choices": choices,
        }
        if include_usage:
            data["usage"] = usage
        return data

    def delta(content: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    events: list[tuple[str | None, Any]] = [
        (None, chunk(delta({"role": "assistant", "content": "", "refusal": None})))
    ]
    events += [(None, chunk(delta({"content": text}))) for text in CHAT_TEXT]
    events.append((None, chunk(delta({}, "stop"))))
    if include_usage and scenario != "no_usage_chunk":
        events.append((None, chunk([], _chat_usage(scenario))))
    events.append((None, "[DONE]"))
    return Reply(events=events, cut_after=3 if scenario == "interrupted" else None)


# --- OpenAI Responses --------------------------------------------------------------------------------


def _responses_usage(scenario: str) -> dict[str, Any]:
    cached = 1_024 if scenario == "cached" else 0
    return {
        "input_tokens": 1_310 if cached else 36,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": 1_093,
        "output_tokens_details": {"reasoning_tokens": 1_088},
        "total_tokens": (1_310 if cached else 36) + 1_093,
    }


def response_object(body: dict[str, Any], scenario: str, *, status: str = "completed") -> dict[str, Any]:
    model = SNAPSHOTS.get(body.get("model", ""), body.get("model"))
    done = status != "in_progress"
    failed = scenario == "failed"
    return {
        "id": "resp_stub0000000000000000000000000000000000000001",
        "object": "response",
        "created_at": CREATED,
        "status": ("failed" if failed else status) if done else status,
        "background": False,
        "error": {"code": "server_error", "message": "The model failed."} if failed and done else None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": None,
        "model": model,
        "output": []
        if not done or failed
        else [
            {"id": "rs_stub01", "type": "reasoning", "summary": []},
            {
                "id": "msg_stub01",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": [], "logprobs": []}],
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort", "medium"), "summary": None},
        "service_tier": "default" if done else "auto",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _responses_usage(scenario) if done and not failed else None,
        "user": None,
        "metadata": {},
    }


def responses_stream(body: dict[str, Any], scenario: str) -> Reply:
    seq = iter(range(1_000))
    events: list[tuple[str | None, Any]] = []

    def add(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": next(seq), **data}))

    add("response.created", response=response_object(body, scenario, status="in_progress"))
    add("response.in_progress", response=response_object(body, scenario, status="in_progress"))
    if scenario != "failed":
        item = {
            "id": "msg_stub01",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        add("response.output_item.added", output_index=1, item=item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        add("response.content_part.added", item_id="msg_stub01", output_index=1, content_index=0, part=part)
        for text in CHAT_TEXT:
            add(
                "response.output_text.delta",
                item_id="msg_stub01",
                output_index=1,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        add(
            "response.output_text.done",
            item_id="msg_stub01",
            output_index=1,
            content_index=0,
            text=ANSWER,
            logprobs=[],
        )
    final = "response.failed" if scenario == "failed" else "response.completed"
    add(final, response=response_object(body, scenario))
    return Reply(events=events, cut_after=4 if scenario == "interrupted" else None)


# --- OpenAI Embeddings -------------------------------------------------------------------------------


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    vector = [0.0123, -0.0456, 0.0789, 0.1011]
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) else 1
    if body.get("encoding_format") == "base64":
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    else:
        encoded = vector
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded} for i in range(count)],
        "model": SNAPSHOTS.get(body.get("model", ""), body.get("model")),
        "usage": {"prompt_tokens": 8 * count, "total_tokens": 8 * count},
    }


# --- Anthropic Messages ------------------------------------------------------------------------------


def _anthropic_usage(scenario: str) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": 25,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 12,
        "service_tier": "standard",
        "inference_geo": "global",
    }
    if scenario == "cached":
        usage.update(input_tokens=12, cache_read_input_tokens=4_096)
    elif scenario == "cache_write":
        usage.update(
            input_tokens=12,
            cache_creation_input_tokens=6_144,
            cache_creation={"ephemeral_5m_input_tokens": 2_048, "ephemeral_1h_input_tokens": 4_096},
        )
    elif scenario == "thinking":
        usage.update(output_tokens=1_512, output_tokens_details={"thinking_tokens": 1_500})
    elif scenario == "web_search":
        usage.update(
            input_tokens=1_845,
            output_tokens=310,
            server_tool_use={"web_search_requests": 2, "web_fetch_requests": 0},
            service_tier="priority",
            inference_geo="us",
        )
    return usage


def anthropic_message(body: dict[str, Any], scenario: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if scenario == "thinking":
        content.append(
            {"type": "thinking", "thinking": "Let me think it through.", "signature": "EqQBCgIYAhIM"}
        )
    content.append({"type": "text", "text": ANSWER})
    return {
        "id": "msg_01STUB000000000000000001",
        "type": "message",
        "role": "assistant",
        "model": SNAPSHOTS.get(body.get("model", ""), body.get("model")),
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(scenario),
    }


def anthropic_stream(body: dict[str, Any], scenario: str) -> Reply:
    final = _anthropic_usage(scenario)
    start_usage = {**final, "output_tokens": 1}
    start_usage.pop("server_tool_use", None)
    start_usage.pop("output_tokens_details", None)
    message = {**anthropic_message(body, scenario), "content": [], "stop_reason": None, "usage": start_usage}
    events: list[tuple[str | None, Any]] = [("message_start", {"type": "message_start", "message": message})]
    index = 0
    if scenario == "thinking":
        events += [
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Let me think it through."},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQB"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ]
        index = 1
    events.append(
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
    )
    events.append(("ping", {"type": "ping"}))
    for text in CHAT_TEXT:
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
        events.append(("content_block_delta", delta))
    if scenario == "stream_error":
        overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        events.append(("error", overloaded))
        return Reply(events=events)
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta_usage: dict[str, Any] = {
        "input_tokens": final["input_tokens"],
        "cache_creation_input_tokens": final["cache_creation_input_tokens"],
        "cache_read_input_tokens": final["cache_read_input_tokens"],
        "output_tokens": final["output_tokens"],
    }
    for key in ("server_tool_use", "output_tokens_details"):
        if key in final:
            delta_usage[key] = final[key]
    if scenario == "web_search":
        # A server-tool turn: an earlier cumulative delta, then the final one. Summing would double.
        early = {**delta_usage, "output_tokens": 120, "server_tool_use": {"web_search_requests": 1}}
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": None, "stop_sequence": None},
                    "usage": early,
                },
            )
        )
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return Reply(events=events, cut_after=4 if scenario == "interrupted" else None)


# --- errors ------------------------------------------------------------------------------------------


def error_reply(path: str, scenario: str) -> Reply:
    status = 429 if scenario == "error_429" else 500
    if path.endswith("/v1/messages"):
        kind = "rate_limit_error" if status == 429 else "api_error"
        body = {
            "type": "error",
            "error": {"type": kind, "message": "Number of requests has exceeded your rate limit."},
            "request_id": "req_011STUB",
        }
    else:
        body = {
            "error": {
                "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3."
                if status == 429
                else "The server had an error while processing your request.",
                "type": "requests" if status == 429 else "server_error",
                "param": None,
                "code": "rate_limit_exceeded" if status == 429 else None,
            }
        }
    return Reply(status=status, body=body, headers={"retry-after": "20"} if status == 429 else {})


# --- the server --------------------------------------------------------------------------------------


def route(path: str, body: dict[str, Any], scenario: str) -> Reply:
    """The reply to one request."""
    if scenario in ("error_429", "error_500"):
        return error_reply(path, scenario)
    stream = body.get("stream") is True
    if path.endswith("/chat/completions"):
        return chat_stream(body, scenario) if stream else Reply(body=chat_completion(body, scenario))
    if path.endswith("/responses"):
        return responses_stream(body, scenario) if stream else Reply(body=response_object(body, scenario))
    if path.endswith("/embeddings"):
        return Reply(body=embeddings(body))
    if path.endswith("/v1/messages"):
        return anthropic_stream(body, scenario) if stream else Reply(body=anthropic_message(body, scenario))
    return Reply(
        status=404, body={"error": {"message": f"no route for {path}", "type": "invalid_request_error"}}
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Small writes (headers, then body or SSE frames) must not wait for delayed ACKs.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() not in SCRUBBED_HEADERS}
        request = ReceivedRequest("POST", self.path, headers, body)
        with self.server.lock:
            self.server.requests.append(request)
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        reply = route(self.path.split("?", 1)[0], body, request.scenario)
        if reply.events is None:
            self._send_json(reply)
        else:
            self._send_sse(reply, anthropic=self.path.split("?", 1)[0].endswith("/v1/messages"))

    def _send_json(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-request-id", "req_stub_0001")
        self.send_header("request-id", "req_011STUB")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_sse(self, reply: Reply, *, anthropic: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.send_header("x-request-id", "req_stub_0002")
        self.end_headers()
        assert reply.events is not None
        for count, (name, data) in enumerate(reply.events):
            if reply.cut_after is not None and count == reply.cut_after:
                # Promise a chunk, send half of it, and drop the connection.
                self.wfile.write(b'400\r\ndata: {"partial')
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            text = data if isinstance(data, str) else json.dumps(data)
            frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
            encoded = frame.encode()
            self.wfile.write(f"{len(encoded):x}\r\n".encode() + encoded + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[ReceivedRequest]
    lock: threading.Lock
    delay_s: float


class StubLLMServer:
    """`with StubLLMServer() as stub:` serves on 127.0.0.1 (a free port) from a daemon thread."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._server.lock = threading.Lock()
        self._server.delay_s = delay_s
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stub-llm-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_url(self) -> str:
        """`base_url` for `openai.OpenAI`."""
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._server.lock:
            return list(self._server.requests)

    def clear(self) -> None:
        with self._server.lock:
            self._server.requests.clear()

    def start(self) -> StubLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RecordingSink:
    """An in-memory `EventSink` for hook tests: install with `costline.ingest.emit.set_sink`."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._lock = threading.Lock()

    def emit(self, event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def take(self) -> list[Any]:
        """Every event recorded so far (after the hooks' recorder caught up), then forget them."""
        from costline.ingest.hooks import flush

        assert flush(5.0), "the hooks' recorder did not catch up"
        with self._lock:
            events, self.events = self.events, []
        return events


def main() -> None:
    """Serve from a process of its own (the overhead benchmark keeps the stub off its GIL):
    prints the URL on the first line, serves until stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="local OpenAI/Anthropic stub server")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before each answer")
    args = parser.parse_args()
    with StubLLMServer(delay_s=args.delay_ms / 1000) as stub:
        print(stub.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
