"""The worker's topics: raw usage envelopes in, dead letters out."""

from __future__ import annotations

import faust

from costline.schemas.settings import Settings


def usage_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    """Raw usage envelopes (bytes); decoding is the agent's job so bad bytes can be dead-lettered."""
    return app.topic(settings.kafka_usage_topic, value_type=bytes, partitions=settings.kafka_partitions)


def dlq_topic(app: faust.App, settings: Settings) -> faust.TopicT:
    """Dead letters: JSON records with the reason, the source position and the original bytes."""
    return app.topic(settings.kafka_dlq_topic, value_type=bytes, partitions=1)
