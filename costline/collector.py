"""`costline collector`: the OTLP and gateway-log receiver as a service, producing to Kafka.

One uvicorn server on `COSTLINE_COLLECTOR_PORT` (4318, the OTLP/HTTP port) serves the app of
`costline.ingest.collector.app`; its sink is the background Kafka producer, which spools to disk
while the broker is down and is closed (what is left sent or spooled) when the server stops.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


def run_collector(
    settings: Settings, *, host: str = DEFAULT_HOST, port: int | None = None, loglevel: str = "info"
) -> None:
    """Serve until SIGINT/SIGTERM, then close the producer (what Kafka has not taken is spooled)."""
    import uvicorn

    from costline.ingest.collector.app import create_collector_app
    from costline.ingest.producer import BackgroundProducer

    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if loglevel.lower() != "debug":  # the producer reports outages itself, once, in plain words
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    producer = BackgroundProducer.from_settings(settings)
    app = create_collector_app(producer)
    bind_port = port if port is not None else settings.collector_port
    logger.info(
        "collector on http://%s:%d (OTLP /v1/traces, LiteLLM /v1/litellm) → Kafka topic %s at %s",
        host,
        bind_port,
        settings.kafka_usage_topic,
        settings.kafka_bootstrap_servers,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=bind_port, log_level=loglevel))
    previous = _stop_on_signals()
    try:
        server.run()
    except _Stopped:
        pass  # uvicorn shut down gracefully, then re-raised the signal that stopped it
    finally:
        producer.close()  # sends what is left, or spools it while Kafka is down
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        logger.info("collector stopped; producer stats: %s", producer.stats())


class _Stopped(Exception):
    """Raised by our handler when uvicorn re-raises SIGINT or SIGTERM after its own shutdown."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def _stop_on_signals() -> dict[int, Any]:
    """Make SIGINT/SIGTERM end `server.run()` with an exception, not kill the process.

    uvicorn handles the signals while serving, then restores the previous handlers and raises the
    signal again; with the default SIGTERM handler that would kill the process before the producer
    is closed, losing what it holds in memory.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _raise_stopped) for signum in (signal.SIGINT, signal.SIGTERM)}
