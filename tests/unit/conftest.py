"""Fixtures shared by the SDK hook tests: the stub LLM server and a recording sink."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from costline.ingest import emit as emit_module
from costline.ingest import hooks
from costline.schemas.settings import Settings
from costline.schemas.usage_event import UsageEvent
from tests.unit.stub_llm_server import RecordingSink, StubLLMServer

SETTINGS = Settings.model_construct()


@pytest.fixture(scope="module")
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer() as server:
        yield server


@pytest.fixture
def sink(stub: StubLLMServer) -> Iterator[RecordingSink]:
    """Hooks instrumented, events into memory; everything restored afterwards."""
    recording = RecordingSink()
    emit_module.set_sink(recording)
    emit_module.set_enabled(True)
    hooks.instrument(settings=SETTINGS)
    stub.clear()
    yield recording
    hooks.uninstrument()
    hooks.flush()
    emit_module.set_sink(None)
    emit_module.set_enabled(True)


def uninstrumented(fn: Any) -> Any:
    """Run `fn` with the hooks removed, then put them back."""
    hooks.uninstrument()
    try:
        return fn()
    finally:
        hooks.instrument(settings=SETTINGS)


def one(sink: RecordingSink) -> UsageEvent:
    events = sink.take()
    assert len(events) == 1, events
    return events[0]
