"""The worker's recommendation timer: recompute and store routing recommendations periodically.

Leader only (one computation per consumer group, not one per worker). The first run comes a few
seconds after the worker starts, then every `recommend_interval_s`, over the last
`recommend_window_days`. Store calls go through the sink's thread. A failure is logged and
counted and retried on the next tick: recommendations are derived data.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from costline.pipeline.ratecard.load import load_default_rate_card, load_rate_card
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.recommend.model import Window
from costline.pipeline.store.recommendations import compute_and_store

if TYPE_CHECKING:
    from costline.pipeline.worker import Worker

logger = logging.getLogger(__name__)

#: Seconds after start before the first computation (lets the first batches land).
FIRST_RUN_DELAY_S = 5.0
#: How often the timer wakes to see whether a computation is due.
TICK_S = 1.0


class RecommendationSchedule:
    """When the next computation is due, and how the past ones went."""

    def __init__(self, interval_s: float, first_delay_s: float = FIRST_RUN_DELAY_S) -> None:
        self.interval_s = interval_s
        self.next_due = time.monotonic() + first_delay_s
        self.runs = 0
        self.errors = 0
        self.last_run_id: str | None = None
        self.last_count = 0

    def due(self) -> bool:
        return time.monotonic() >= self.next_due

    def done(self) -> None:
        self.next_due = time.monotonic() + self.interval_s


def _card(worker: Worker) -> RateCard:
    path = worker.settings.ratecard_path
    return load_rate_card(path) if path else load_default_rate_card()


def register_recommendations(worker: Worker) -> RecommendationSchedule:
    """Add the leader-only recommendation timer to the worker's app."""
    settings = worker.settings
    schedule = RecommendationSchedule(settings.recommend_interval_s)

    @worker.app.timer(interval=min(TICK_S, settings.recommend_interval_s), on_leader=True)  # type: ignore[untyped-decorator]
    async def recommendations() -> None:
        if not schedule.due():
            return
        schedule.done()
        try:
            card = _card(worker)
            until = datetime.now(UTC)
            window = Window(until - timedelta(days=settings.recommend_window_days), until)
            run_id, count = await worker.sink.call(compute_and_store, worker.client, card, window, "worker")
        except Exception:
            schedule.errors += 1
            logger.warning("recommendation run failed; retrying in %.0fs", schedule.interval_s, exc_info=True)
            return
        schedule.runs += 1
        schedule.last_run_id, schedule.last_count = run_id, count
        logger.info("stored %d recommendations (run %s)", count, run_id)

    return schedule
