"""Small baselines that serialize to JSON: log-bucket histograms for percentiles, integer EWMAs.

They live inside the detectors' Faust table values, which are written to a changelog on every
update, so they stay small: a histogram keeps one count per bucket of ~19% width (four buckets
per doubling), and halves its counts when they grow large so it follows a drifting workload.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Buckets per doubling: a percentile is exact to within 2**(1/4) ≈ 19%.
SUB_BUCKETS = 4
#: Past this many samples a histogram halves every count (older calls weigh less).
HISTOGRAM_CAP = 4_000

Histogram = dict[str, int]


def bucket_of(value: int) -> int:
    """The histogram bucket of a non-negative integer (0 has its own bucket)."""
    if value <= 0:
        return 0
    return int(math.log2(value) * SUB_BUCKETS) + 1


def bucket_upper(bucket: int) -> int:
    """The largest value a bucket may hold (what a percentile reports: a conservative bound)."""
    if bucket <= 0:
        return 0
    return math.ceil(2 ** (bucket / SUB_BUCKETS)) - 1


def hist_add(hist: Histogram, value: int) -> None:
    """Count one sample, halving every count first when the histogram is full."""
    if hist_total(hist) >= HISTOGRAM_CAP:
        for key in list(hist):
            halved = hist[key] // 2
            if halved:
                hist[key] = halved
            else:
                del hist[key]
    key = str(bucket_of(value))
    hist[key] = hist.get(key, 0) + 1


def hist_total(hist: Mapping[str, int]) -> int:
    """Samples counted."""
    return sum(hist.values())


def hist_quantile(hist: Mapping[str, int], q: float) -> int | None:
    """Upper bound of the bucket holding the q-quantile, None when empty."""
    total = hist_total(hist)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(int(k) for k in hist):
        seen += hist[str(bucket)]
        if seen >= rank:
            return bucket_upper(bucket)
    return bucket_upper(max(int(k) for k in hist))


def hist_share_at_most(hist: Mapping[str, int], value: int) -> float:
    """Share of samples in buckets whose values are all ≤ `value` (bounded from below)."""
    total = hist_total(hist)
    if total == 0:
        return 0.0
    inside = sum(count for key, count in hist.items() if bucket_upper(int(key)) <= value)
    return inside / total


def alpha_parts(alpha: float) -> tuple[int, int]:
    """An EWMA weight as an integer fraction (per mille), so money baselines stay integers."""
    return max(1, min(1000, round(alpha * 1000))), 1000


def ewma_step(mean: int, var: int, sample: int, alpha: float) -> tuple[int, int]:
    """One EWMA update of a mean and variance in integers (picodollars and picodollars²)."""
    num, den = alpha_parts(alpha)
    diff = sample - mean
    increment = diff * num // den
    mean += increment
    var = (den - num) * (var + diff * increment) // den
    return mean, max(var, 0)


def ewma_decay(mean: int, var: int, empty_buckets: int, alpha: float) -> tuple[int, int]:
    """`empty_buckets` updates with a zero sample (a silent workload), in closed form past a few."""
    for _ in range(min(empty_buckets, 64)):
        mean, var = ewma_step(mean, var, 0, alpha)
        if mean == 0 and var == 0:
            break
    if empty_buckets > 64:
        mean, var = 0, 0
    return mean, var


def stddev(var: int) -> int:
    """Integer square root of a variance."""
    return math.isqrt(max(var, 0))
