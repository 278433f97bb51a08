"""The ingest agent through Faust's `agent.test_context()`, writing to the real embedded store."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver import Client

from costline.ingest.demo import demo_events
from costline.ingest.wire import encode_events
from costline.pipeline.agents.ingest import IngestDeps, register_ingest_agent
from costline.pipeline.app import create_app
from costline.pipeline.metrics import WorkerMetrics
from costline.pipeline.pricing import Pricer
from costline.pipeline.processing import EventProcessor
from costline.pipeline.ratecard.load import load_default_rate_card
from costline.pipeline.sink import StoreSink
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.settings import Settings


def count_rows(client: Client, prefix: str) -> int:
    return int(
        client.query(
            "SELECT count() FROM usage_events FINAL WHERE startsWith(event_id, {p:String})",
            parameters={"p": prefix},
        ).result_rows[0][0]
    )


def test_agent_prices_stores_dedupes_and_dead_letters(chdb_client: Client) -> None:
    run = f"agent{uuid.uuid4().hex[:6]}"
    events = [
        e.model_copy(update={"event_id": f"{run}-{e.event_id}"})
        for e in demo_events(20, end=datetime.now(UTC) - timedelta(minutes=1))
    ]
    metrics = WorkerMetrics()

    async def scenario() -> tuple[list[int], list[bytes]]:
        app = create_app(Settings(worker_group=f"test-{run}"))
        dlq = app.channel()
        dead_letters = dlq.__aiter__()  # a subscriber, so sends are kept for us
        sink = StoreSink(PricedEventWriter(chdb_client), metrics)
        deps = IngestDeps(EventProcessor(Pricer(load_default_rate_card())), sink, dlq, metrics, 10, 0.05)
        agent = register_ingest_agent(app, app.topic(f"usage-{run}", value_type=bytes), deps)
        dead: list[bytes] = []
        async with agent.test_context() as ctx:
            await ctx.put(encode_events(events[:15]))
            await ctx.put(encode_events(events[10:]))  # 5 redelivered, 5 new
            await ctx.put(b"not an envelope")
            dead.append((await dead_letters.get(timeout=5)).value)
            results = [ctx.results[i] for i in sorted(ctx.results)]
        sink.close()
        return results, dead

    results, dead = asyncio.run(scenario())
    assert results == [15, 5, 0]
    assert count_rows(chdb_client, f"{run}-") == 20
    assert metrics.duplicates_dropped == 5
    assert metrics.messages_dead_lettered == 1
    letter = json.loads(dead[0])
    assert "not valid UTF-8 JSON" in letter["reason"]
    assert letter["offset"] == 2
