"""Prompt-cache misses, each with a named cause and the savings had caching worked.

Per call (flags summed per hour into `cache_miss` records, by cause):

* `caching_not_requested` — the prompt prefix hash repeats within the provider's cache lifetime,
  no cache-read tokens, and caching was not requested from a provider that only caches on request;
* `prefix_changing` — the prefix repeats within the lifetime of its cache, caching was requested
  (or is automatic), yet nothing is read: something inside the cached span keeps changing;
* `below_minimum` — caching requested on a prompt smaller than the model's minimum cacheable size;
* `write_never_read` — a cache write whose lifetime ended (or that was written over) with no read
  of its prefix: the write premium was paid for nothing;
* `ttl_longer_than_needed` — 1-hour writes on a prefix whose reuse intervals are under 5 minutes;
* `ttl_shorter_than_needed` — a 5-minute write re-written 5–60 minutes later, where a 1-hour write
  would have been read instead.

Per workload (a record of its own): `hit_rate_collapse` — the hit rate of a time bucket falls below
its EWMA baseline × (1 − drop). A provider that does not report cache usage is never counted as
0% hits: its calls are skipped here and counted as `unreported_calls` in the evidence.

Savings are estimated on the repeating prefix, taken as at most the smallest prompt seen with that
prefix hash: tokens that would have been cache reads, priced at (their price − cache-read price).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from costline.pipeline.detectors.anomalies import anomaly_id
from costline.pipeline.detectors.config import ProviderCacheFacts
from costline.pipeline.detectors.signals import (
    IN,
    READ,
    W1H,
    W5M,
    WRITE_BUCKETS,
    WRITE_TTL_SECONDS,
    UsageSignal,
)

if TYPE_CHECKING:
    from costline.pipeline.detectors.engine import WorkloadRun

KIND = "cache_miss"
FIVE_MINUTES_MS = 300_000
ONE_HOUR_MS = 3_600_000
#: How long a prefix is remembered after its last use (its intervals feed the TTL judgement).
PREFIX_RETENTION_MS = 2 * ONE_HOUR_MS
#: The index of prefixes is swept at most this often (event time).
SWEEP_EVERY_MS = 60_000
MAX_INTERVALS = 32


def _delta(price: int | None, minus: int | None) -> int:
    """Price difference per token, 0 when either is unknown or it is negative."""
    if price is None or minus is None:
        return 0
    return max(price - minus, 0)


def _reported(facts: ProviderCacheFacts, s: UsageSignal) -> bool:
    return facts.reports_cache_usage or s.tokens[READ] > 0 or s.cache_write > 0


def observe(run: WorkloadRun, s: UsageSignal) -> None:
    """Judge one call's caching, then remember its prefix."""
    cfg = run.cfg.cache
    facts = run.config.provider(s.provider)
    reported = _reported(facts, s)
    min_tokens = facts.min_tokens(s.model)
    _hit_rate(run, s, facts, reported, min_tokens)
    if not reported or s.status != "ok" or s.input_total == 0:
        return
    requested = s.caching_requested is True
    read = s.tokens[READ]
    prefix = run.state.prefix(s.prefix_hash) if s.prefix_hash else None
    if prefix is not None:
        pending = prefix.get("write")
        if pending is not None and read > 0 and s.at_ms <= pending["expires"] + cfg.grace_seconds * 1000:
            prefix["write"] = None  # read back within its lifetime: the premium paid off
        if read > 0:
            prefix["reads"] = prefix.get("reads", 0) + 1
    lifetime_ms = facts.lifetime_seconds * 1000
    if prefix is not None and prefix.get("ttl_ms"):
        lifetime_ms = max(lifetime_ms, prefix["ttl_ms"])
    gap = None if prefix is None else s.at_ms - prefix["last"]
    repeat = gap is not None and 0 <= gap <= lifetime_ms

    below = requested and s.input_total < min_tokens
    if below:
        _flag(run, s, "below_minimum", _savings(s, prefix) if repeat else 0, min_cacheable_tokens=min_tokens)
    elif repeat and read == 0 and prefix is not None:
        cause = "caching_not_requested" if not requested and not facts.automatic else "prefix_changing"
        _flag(
            run,
            s,
            cause,
            _savings(s, prefix),
            repeat_gap_ms=gap or 0,
            lifetime_seconds=lifetime_ms // 1000,
            min_cacheable_tokens=min_tokens,
        )
    if prefix is not None and s.prefix_hash:
        _judge_ttl(run, s, prefix, gap)
    if s.prefix_hash:
        _remember(run, s, prefix)


def _savings(s: UsageSignal, prefix: dict[str, Any] | None) -> int:
    """What this call would have saved reading its repeating prefix from the cache (picodollars)."""
    read_price = s.price(READ)
    if read_price is None:
        return 0
    smallest = s.input_total if prefix is None else min(prefix["min_input"], s.input_total)
    budget = smallest
    saved = 0
    for bucket in (*WRITE_BUCKETS, IN):  # writes first: they cost the most per token
        take = min(budget, s.tokens[bucket])
        saved += take * _delta(s.price(bucket), read_price)
        budget -= take
    return saved


def _flag(run: WorkloadRun, s: UsageSignal, cause: str, saved: int, **evidence: Any) -> None:
    run.flag_call(
        KIND,
        cause,
        at_ms=s.at_ms,
        provider=s.provider,
        model=s.model,
        event_id=s.event_id,
        wasted=saved,
        observed=s.cost,
        evidence={
            "input_tokens": s.input_total,
            "cache_read_tokens": s.tokens[READ],
            "cache_write_tokens": s.cache_write,
            "caching_requested": "yes" if s.caching_requested else "no",
            "prefix_hash": s.prefix_hash,
            **evidence,
        },
    )


def _share_where_longer_ttl_helps(intervals: list[int]) -> float:
    """Share of reuse intervals (s) a 1-hour cache bridges and a 5-minute one does not."""
    if not intervals:
        return 0.0
    inside = sum(1 for gap in intervals if FIVE_MINUTES_MS // 1000 < gap <= ONE_HOUR_MS // 1000)
    return inside / len(intervals)


def _judge_ttl(run: WorkloadRun, s: UsageSignal, prefix: dict[str, Any], gap: int | None) -> None:
    """A 5-minute cache is kept alive by every read, so the 1-hour TTL only pays for gaps of 5-60 min."""
    cfg = run.cfg.cache
    intervals: list[int] = prefix.get("intervals", [])
    if len(intervals) < cfg.ttl_min_intervals:
        return
    share = _share_where_longer_ttl_helps(intervals)
    if s.tokens[W1H] > 0 and share <= cfg.ttl_long_max_share:
        premium = _delta(s.price(W1H), s.price(W5M))
        if premium:
            _flag(
                run,
                s,
                "ttl_longer_than_needed",
                s.tokens[W1H] * premium,
                reuse_intervals_5_to_60_min_share=round(share, 3),
                reuse_intervals_seen=len(intervals),
            )
    if (
        s.tokens[W5M] > 0
        and gap is not None
        and FIVE_MINUTES_MS < gap <= ONE_HOUR_MS
        and share >= cfg.ttl_short_min_share
    ):
        tokens = s.tokens[W5M]
        saved = tokens * _delta(s.price(W5M), s.price(READ)) - tokens * _delta(s.price(W1H), s.price(W5M))
        if saved > 0:
            _flag(
                run,
                s,
                "ttl_shorter_than_needed",
                saved,
                reuse_intervals_5_to_60_min_share=round(share, 3),
                repeat_gap_ms=gap,
            )


def _remember(run: WorkloadRun, s: UsageSignal, prefix: dict[str, Any] | None) -> None:
    if prefix is None:
        prefix = {"last": s.at_ms, "min_input": s.input_total, "uses": 0, "write": None, "intervals": []}
    else:
        gap = s.at_ms - prefix["last"]
        if 0 < gap <= PREFIX_RETENTION_MS:
            prefix["intervals"] = [*prefix["intervals"], gap // 1000][-MAX_INTERVALS:]
        prefix["last"] = max(prefix["last"], s.at_ms)
        prefix["min_input"] = min(prefix["min_input"], s.input_total)
    prefix["uses"] += 1
    written = s.cache_write
    if written > 0:
        previous = prefix.get("write")
        if previous is not None:  # written over before anyone read it
            _never_read(run, previous)
        ttl_bucket = max((b for b in WRITE_BUCKETS if s.tokens[b] > 0), key=lambda b: WRITE_TTL_SECONDS[b])
        ttl_ms = WRITE_TTL_SECONDS[ttl_bucket] * 1000
        prefix["ttl_ms"] = ttl_ms
        prefix["write"] = {
            "at": s.at_ms,
            "expires": s.at_ms + ttl_ms,
            "tokens": written,
            "premium": sum(s.tokens[b] * _delta(s.price(b), s.price(IN)) for b in WRITE_BUCKETS),
            "cost": sum(s.cost_of(b) for b in WRITE_BUCKETS),
            "event_id": s.event_id,
            "provider": s.provider,
            "model": s.model,
            "ttl_seconds": ttl_ms // 1000,
            "prefix_hash": s.prefix_hash,
        }
    run.state.set_prefix(s.prefix_hash, prefix)
    index: dict[str, list[int]] = run.ws.setdefault("prefixes", {})
    pending = prefix.get("write")
    index[s.prefix_hash] = [prefix["last"], pending["expires"] if pending else 0]


def _never_read(run: WorkloadRun, write: dict[str, Any]) -> None:
    if write["premium"] <= 0:  # no premium over plain input (or no price): nothing was wasted
        return
    run.flag_call(
        KIND,
        "write_never_read",
        at_ms=write["at"],
        provider=write["provider"],
        model=write["model"],
        event_id=write["event_id"],
        wasted=write["premium"],
        observed=write["cost"],
        evidence={
            "cache_write_tokens": write["tokens"],
            "ttl_seconds": write["ttl_seconds"],
            "write_premium_pico": write["premium"],
            "prefix_hash": write["prefix_hash"],
        },
    )


def sweep(run: WorkloadRun) -> None:
    """Expire writes nobody read, forget idle prefixes, keep the index within its cap."""
    cfg = run.cfg.cache
    index: dict[str, list[int]] = run.ws.setdefault("prefixes", {})
    wm = run.watermark
    hit_rate = run.ws.get("hit_rate")
    size = cfg.hit_rate_bucket_seconds * 1000
    if (
        hit_rate is not None
        and hit_rate["bucket"] is not None
        and hit_rate["bucket"] + size + cfg.grace_seconds * 1000 <= wm
    ):
        _close_bucket(run, hit_rate, size)  # a quiet workload's last bucket is judged too
        hit_rate.update(_empty_bucket(None))
    if wm - run.ws.get("prefix_sweep", 0) < SWEEP_EVERY_MS and len(index) <= cfg.max_prefixes:
        return
    run.ws["prefix_sweep"] = wm
    grace = cfg.grace_seconds * 1000
    for prefix_hash, (last, expires) in list(index.items()):
        if expires and expires + grace <= wm:
            prefix = run.state.prefix(prefix_hash)
            if prefix is not None and prefix.get("write") is not None:
                _never_read(run, prefix["write"])
                prefix["write"] = None
                run.state.set_prefix(prefix_hash, prefix)
            index[prefix_hash] = [last, 0]
            expires = 0
        if not expires and last + PREFIX_RETENTION_MS <= wm:
            run.state.drop_prefix(prefix_hash)
            del index[prefix_hash]
    if len(index) > cfg.max_prefixes:
        for prefix_hash, _ in sorted(index.items(), key=lambda item: item[1][0])[
            : len(index) - cfg.max_prefixes
        ]:
            run.state.drop_prefix(prefix_hash)
            del index[prefix_hash]
            run.ws["prefixes_evicted"] = run.ws.get("prefixes_evicted", 0) + 1


def _hit_rate(
    run: WorkloadRun, s: UsageSignal, facts: ProviderCacheFacts, reported: bool, min_tokens: int
) -> None:
    """Add the call to the workload's hit-rate bucket; judge buckets as they close."""
    cfg = run.cfg.cache
    size = cfg.hit_rate_bucket_seconds * 1000
    state: dict[str, Any] = run.ws.setdefault("hit_rate", _empty_bucket(None))
    start = s.at_ms - s.at_ms % size
    if state["bucket"] is None:
        state["bucket"] = start
    elif start > state["bucket"]:
        _close_bucket(run, state, size)
        state.update(_empty_bucket(start))
    if not reported:
        state["unreported"] += 1
        return
    eligible = (s.caching_requested is True or facts.automatic) and s.input_total >= min_tokens
    if not eligible or s.status != "ok":
        return
    read_price = s.price(READ)
    state["calls"] += 1
    state["input"] += s.input_total
    state["read"] += s.tokens[READ]
    state["cost"] += s.cost
    if read_price is not None:
        saving = _delta(s.price(IN), read_price)
        state["full_saving"] += s.input_total * saving
        state["read_saving"] += s.tokens[READ] * saving
    if len(state["samples"]) < 10:
        state["samples"].append(s.event_id)
    state["provider"], state["model"] = s.provider, s.model


def _empty_bucket(start: int | None) -> dict[str, Any]:
    return {
        "bucket": start,
        "calls": 0,
        "input": 0,
        "read": 0,
        "cost": 0,
        "full_saving": 0,
        "read_saving": 0,
        "unreported": 0,
        "samples": [],
        "provider": "",
        "model": "",
    }


def _close_bucket(run: WorkloadRun, state: dict[str, Any], size: int) -> None:
    cfg = run.cfg.cache
    if state["calls"] < cfg.hit_rate_min_calls or state["input"] == 0:
        return
    rate = state["read"] / state["input"]
    baseline: float | None = state.get("baseline")
    seen: int = state.get("buckets_seen", 0)
    floor = None if baseline is None else baseline * (1 - cfg.hit_rate_drop)
    collapsed = (
        baseline is not None
        and floor is not None
        and seen >= cfg.hit_rate_warmup_buckets
        and baseline >= cfg.hit_rate_min_baseline
        and rate < floor
    )
    episode: dict[str, Any] | None = state.get("episode")
    if collapsed and baseline is not None:
        start = state["bucket"]
        if episode is None or episode["end"] != start:
            if episode is not None:
                _resolve_episode(run, episode)
            episode = {
                "id": anomaly_id(KIND, "hit_rate_collapse", run.team, run.workload, start),
                "end": start,
            }
        record = run.record(
            episode["id"],
            kind=KIND,
            cause="hit_rate_collapse",
            team=run.team,
            project=run.ws["project"],
            workload=run.workload,
            provider=state["provider"],
            model=state["model"],
            window_start=start,
            window_end=start + size,
        )
        per_ten_thousand = round(baseline * 10_000)  # the rate as an integer fraction: money stays exact
        missed = max(0, state["full_saving"] * per_ten_thousand // 10_000 - state["read_saving"])
        record["window_end"] = start + size
        record["calls"] += state["calls"]
        record["wasted"] += missed
        record["observed"] += state["cost"]
        evidence = record["evidence"]
        evidence["baseline_hit_rate"] = round(baseline, 4)
        evidence.setdefault("observed_hit_rates", []).append(round(rate, 4))
        evidence["reported_calls"] = evidence.get("reported_calls", 0) + state["calls"]
        evidence["unreported_calls"] = evidence.get("unreported_calls", 0) + state["unreported"]
        evidence["drop_threshold"] = cfg.hit_rate_drop
        evidence["bucket_seconds"] = cfg.hit_rate_bucket_seconds
        for event_id in state["samples"]:
            if len(record["samples"]) < 10:
                record["samples"].append(event_id)
        run.save(record)
        episode["end"] = start + size
        state["episode"] = episode
        sample = max(rate, floor or 0.0)  # a collapse moves the baseline only down to the floor
    else:
        if episode is not None:
            _resolve_episode(run, episode)
            state["episode"] = None
        sample = rate
    state["baseline"] = sample if baseline is None else baseline + cfg.hit_rate_alpha * (sample - baseline)
    state["buckets_seen"] = seen + 1


def _resolve_episode(run: WorkloadRun, episode: dict[str, Any]) -> None:
    record = run.changed.get(episode["id"]) or run.state.anomaly(episode["id"])
    if record is not None:
        run.resolve(record)
