"""`costline up`: everything on 127.0.0.1 with the embedded defaults, for a first look.

Starts the local broker and creates the topics, opens the embedded store and applies its
migrations, sends a demo batch through the broker, prices what comes back, writes it to the
store and prints a summary read back from the store.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import FrameType

from clickhouse_connect.driver import Client
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from rich.console import Console
from rich.table import Table

from costline.broker import LocalBroker, costline_topics, create_topics
from costline.ingest.demo import demo_events
from costline.ingest.wire import batch_messages
from costline.pipeline.pricing import Pricer
from costline.pipeline.processing import EventProcessor, SourceMessage
from costline.pipeline.ratecard.load import load_default_rate_card, load_rate_card
from costline.pipeline.store.client import connect
from costline.pipeline.store.migrations import apply_migrations
from costline.pipeline.store.queries import fetch_spend_by, fetch_spend_summary
from costline.pipeline.store.writer import PricedEventWriter
from costline.schemas.errors import BrokerError
from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)

#: How long to wait for the demo batch to come back from the broker.
READ_BACK_TIMEOUT_S = 30.0


def send_through_broker(bootstrap: str, topic: str, messages: Sequence[bytes]) -> list[SourceMessage]:
    """Produce `messages` and read exactly those back (by offset, without a consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        start = consumer.end_offsets(partitions)
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=1_048_576)
        try:
            for message in messages:
                producer.send(topic, message)
            producer.flush(timeout=READ_BACK_TIMEOUT_S)
        finally:
            producer.close(timeout=5)
        end = consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp])
        received: list[SourceMessage] = []
        wanted = sum(end[tp] - start[tp] for tp in partitions)
        deadline = datetime.now(UTC) + timedelta(seconds=READ_BACK_TIMEOUT_S)
        while len(received) < wanted and datetime.now(UTC) < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                received.extend(SourceMessage(r.value, tp.topic, tp.partition, r.offset) for r in records)
        if len(received) < wanted:
            raise BrokerError(f"only {len(received)} of {wanted} demo messages came back from {bootstrap}")
        return received
    finally:
        consumer.close()


def _summary_table(title: str, rows: list[tuple[str, int, str, str]]) -> Table:
    table = Table(title=title)
    for name, justify in (
        ("", "left"),
        ("events", "right"),
        ("list USD", "right"),
        ("effective USD", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]  # rich takes these literals
    for row in rows:
        table.add_row(row[0], str(row[1]), row[2], row[3])
    return table


def run_up(settings: Settings, *, demo_count: int, once: bool, console: Console | None = None) -> None:
    """Start the embedded stack, run the demo batch through it, and wait for Ctrl-C unless `once`."""
    console = console or Console()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    card = load_rate_card(settings.ratecard_path) if settings.ratecard_path else load_default_rate_card()
    with LocalBroker(
        settings.broker_port, binary=settings.broker_binary, log_path=settings.data_dir / "broker.log"
    ) as broker:
        create_topics(broker.bootstrap_servers, costline_topics(settings))
        console.print(f"broker  [bold]{broker.bootstrap_servers}[/] (Tansu, memory only)")
        client = connect(settings.resolved_clickhouse_dsn())
        applied = apply_migrations(client)
        console.print(
            f"store   [bold]{settings.data_dir / 'store'}[/] (chDB; migrations applied: {applied or 'none'})"
        )

        end = datetime.now(UTC)
        events = list(demo_events(demo_count, seed=int(end.timestamp()), end=end))
        received = send_through_broker(
            broker.bootstrap_servers, settings.kafka_usage_topic, batch_messages(events)
        )
        batch = EventProcessor(Pricer(card)).process(received)
        PricedEventWriter(client).write([priced for priced, _ in batch.priced])
        console.print(
            f"demo    {len(events)} events sent through {settings.kafka_usage_topic}, "
            f"{len(batch.priced)} priced and stored, {len(batch.dead_letters)} dead-lettered"
        )
        _print_summary(console, client, since=end - timedelta(days=8), until=end + timedelta(minutes=1))
        if once:
            return
        console.print("\nRunning. Press Ctrl-C to stop.")
        _wait_for_stop()


def _print_summary(console: Console, client: Client, *, since: datetime, until: datetime) -> None:
    totals = fetch_spend_summary(client, since, until)
    console.print(
        f"\nstored: {totals.events} events, effective cost [bold]${totals.effective_cost:.6f}[/] "
        f"(list ${totals.list_cost:.6f}); unpriced events: {totals.unpriced_events}, "
        f"partially priced: {totals.partial_events}"
    )
    for dimension in ("team", "model"):
        groups = fetch_spend_by(client, dimension, since, until)
        rows = [
            (
                g.key or "(none)",
                g.totals.events,
                f"{g.totals.list_cost:.6f}",
                f"{g.totals.effective_cost:.6f}",
            )
            for g in groups
        ]
        console.print(_summary_table(f"spend by {dimension} (last 7 days, read back from the store)", rows))


def _usd(amount: Decimal) -> str:
    return f"{amount:.6f}"


def _wait_for_stop() -> None:
    """Block until Ctrl-C or SIGTERM; SIGTERM becomes a normal exit so the broker is stopped."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()
