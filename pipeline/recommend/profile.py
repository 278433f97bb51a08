"""Workload profiles: what each team's workload did on each model over a window, read from the store.

Everything comes from `usage_events FINAL` (duplicates collapsed) through parameterized SQL:

* pricing cells: token and request sums per (team, workload, provider, model) split by context
  band (the rate card's long-context thresholds), service tier and region, so that re-pricing a
  workload on another entry applies the same tiers the Pricer would apply to each call;
* shape: call count, p95/p99 input size, p99 output size, p95 latency, share of streamed calls and
  of calls that ended in a tool call (`finish_reason` tool_calls / tool_use / function_call: the
  only tool signal a UsageEvent carries), reasoning tokens and requested effort, caching, batch
  calls, hour-of-day histogram and active days (for "scheduled / offline");
* prefix groups: calls sharing a prompt-prefix hash, with how many of them came within each cache
  TTL of the previous call with that prefix (the observed reuse);
* candidate latency: p95 latency of every provider/model seen in the window.

Gateway cache hits are left out: no provider call was made, there is nothing to re-price.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client

from costline.pipeline.pricing import STANDARD_TIERS
from costline.pipeline.ratecard.model import RateCard
from costline.pipeline.recommend.model import EvidenceQuery, Window
from costline.pipeline.store.queries import Query, run
from costline.schemas.usage_event import REQUEST_COUNTERS, TOKEN_BUCKETS

TABLE = "usage_events"
TIME_TYPE = "DateTime64(3, 'UTC')"

#: Cache TTLs a rate card can price (price key `cache_write_<ttl>`), in seconds.
CACHE_TTLS: dict[str, int] = {"5m": 300, "30m": 1800, "1h": 3600, "12h": 43200}
#: Providers do not cache prompts shorter than this (Anthropic and OpenAI: 1024 tokens).
MIN_CACHEABLE_TOKENS = 1024
#: Finish reasons that mean the model called a tool.
TOOL_FINISH_REASONS: tuple[str, ...] = ("tool_calls", "tool_use", "function_call")

_INPUT_TOTAL = (
    "(tokens_input_uncached + tokens_cache_read + tokens_cache_write_5m + tokens_cache_write_30m"
    " + tokens_cache_write_1h + tokens_cache_write_12h)"
)
_OUTPUT_TOTAL = "(tokens_output_visible + tokens_output_reasoning)"
_WRITE_BUCKETS = tuple(f"cache_write_{ttl}" for ttl in CACHE_TTLS)


@dataclass(frozen=True)
class PricingCell:
    """Usage of one workload/model that prices alike: same context band, service tier and region."""

    band: int
    service_tier: str | None
    region: str
    calls: int
    tokens: dict[str, int]
    requests: dict[str, int]
    cost: Decimal


@dataclass
class WorkloadProfile:
    """One team's workload on one provider/model over the window."""

    team: str
    workload: str
    provider: str
    model: str
    window: Window
    bands: tuple[int, ...] = ()
    cells: list[PricingCell] = field(default_factory=list)
    calls: int = 0
    input_p95: int = 0
    input_p99: int = 0
    output_p99: int = 0
    latency_p95_ms: int | None = None
    latency_calls: int = 0
    stream_calls: int = 0
    tool_calls: int = 0
    reasoning_calls: int = 0
    batch_calls: int = 0
    efforts: dict[str, int] = field(default_factory=dict)
    caching_requested_calls: int = 0
    prefix_calls: int = 0
    distinct_prefixes: int = 0
    hours: dict[int, int] = field(default_factory=dict)
    active_days: int = 0

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.team, self.workload, self.provider, self.model)

    @property
    def tokens(self) -> dict[str, int]:
        """Token totals per bucket over every cell."""
        totals = dict.fromkeys(TOKEN_BUCKETS, 0)
        for cell in self.cells:
            for bucket, count in cell.tokens.items():
                totals[bucket] += count
        return totals

    @property
    def requests(self) -> dict[str, int]:
        totals = dict.fromkeys(REQUEST_COUNTERS, 0)
        for cell in self.cells:
            for counter, count in cell.requests.items():
                totals[counter] += count
        return totals

    @property
    def observed_cost(self) -> Decimal:
        """What the store says these calls cost (re-priced cost where a re-pricing happened)."""
        return sum((cell.cost for cell in self.cells), Decimal(0))

    @property
    def effort(self) -> str:
        """The reasoning effort requested most often ('' when none was requested)."""
        requested = {k: v for k, v in self.efforts.items() if k}
        if not requested:
            return ""
        return max(sorted(requested), key=lambda k: requested[k])

    @property
    def repeated_prefix_calls(self) -> int:
        """Calls whose prompt prefix had been sent before in the window."""
        return self.prefix_calls - self.distinct_prefixes


@dataclass(frozen=True)
class PrefixGroup:
    """Calls of one workload/model sharing a prompt-prefix hash.

    `prefix_tokens` estimates the cacheable prefix as the smallest input of the group (the shared
    prefix cannot be longer than the shortest prompt that carries it). `hits[ttl]` counts calls
    made within `ttl` of the previous call with the same prefix: with that TTL they would read
    the cache; every other call (the first one included) would write it.
    """

    team: str
    workload: str
    provider: str
    model: str
    prefix_hash: str
    calls: int
    prefix_tokens: int
    hits: dict[str, int]
    write_calls: dict[str, int]
    read_calls: int
    median_gap_ms: int


def band_thresholds(card: RateCard) -> tuple[int, ...]:
    """Every long-context threshold of the card, ascending: the bounds of the context bands."""
    return tuple(sorted({tier.above_input_tokens for e in card.entries for tier in e.context_tiers}))


def _service_tier(batch: bool, tier: str) -> str | None:
    """As `pricing._service_tier`: batch wins, standard names mean no tier."""
    if batch:
        return "batch"
    name = tier.strip().lower()
    return None if name in STANDARD_TIERS else name


def _where(window: Window, teams: Sequence[str] | None, extra: str = "") -> tuple[str, dict[str, Any]]:
    parameters: dict[str, Any] = {
        "since": window.since.astimezone(UTC),
        "until": window.until.astimezone(UTC),
    }
    conditions = [
        f"occurred_at >= {{since:{TIME_TYPE}}}",
        f"occurred_at < {{until:{TIME_TYPE}}}",
        "NOT gateway_cache_hit",
    ]
    if teams is not None:
        conditions.append("team IN {teams:Array(String)}")
        parameters["teams"] = list(teams)
    if extra:
        conditions.append(extra)
    return "WHERE " + "\n  AND ".join(conditions), parameters


def cells_query(window: Window, bands: Sequence[int], teams: Sequence[str] | None = None) -> Query:
    """Token, request and cost sums per workload/model and pricing cell."""
    where, parameters = _where(window, teams)
    parameters["bands"] = [int(b) for b in bands]
    sums = ",\n    ".join(
        [f"sum(tokens_{b}) AS sum_{b}" for b in TOKEN_BUCKETS]
        + [f"sum({c}) AS sum_{c}" for c in REQUEST_COUNTERS]
    )
    sql = f"""SELECT
    team, workload, provider, model,
    arrayCount(x -> {_INPUT_TOTAL} > x, {{bands:Array(UInt64)}}) AS band,
    batch,
    lower(trim(ifNull(service_tier, ''))) AS tier,
    lower(trim(ifNull(region, ''))) AS region_key,
    count() AS calls,
    {sums},
    sum(ifNull(repriced_effective_cost, effective_cost)) AS cost
FROM {TABLE} FINAL
{where}
GROUP BY team, workload, provider, model, band, batch, tier, region_key
ORDER BY team, workload, provider, model, band, batch, tier, region_key"""
    return Query(sql, parameters)


def shape_query(window: Window, teams: Sequence[str] | None = None) -> Query:
    """Sizes, latency, tools, reasoning, caching, prefixes and timing per workload/model."""
    where, parameters = _where(window, teams)
    parameters["tool_reasons"] = list(TOOL_FINISH_REASONS)
    sql = f"""SELECT
    team, workload, provider, model,
    count() AS calls,
    toUInt64(quantileExact(0.95)({_INPUT_TOTAL})) AS input_p95,
    toUInt64(quantileExact(0.99)({_INPUT_TOTAL})) AS input_p99,
    toUInt64(quantileExact(0.99)({_OUTPUT_TOTAL})) AS output_p99,
    toUInt64(ifNull(quantileExactIf(0.95)(latency_ms, latency_ms IS NOT NULL), 0)) AS latency_p95_ms,
    countIf(latency_ms IS NOT NULL) AS latency_calls,
    countIf(stream) AS stream_calls,
    countIf(ifNull(finish_reason, '') IN {{tool_reasons:Array(String)}}) AS tool_calls,
    countIf(tokens_output_reasoning > 0) AS reasoning_calls,
    countIf(batch) AS batch_calls,
    sumMap([toString(reasoning_effort)], [toUInt64(1)]) AS efforts,
    countIf(ifNull(caching_requested, false)) AS caching_requested_calls,
    countIf(prompt_prefix_hash != '') AS prefix_calls,
    uniqExactIf(prompt_prefix_hash, prompt_prefix_hash != '') AS distinct_prefixes,
    sumMap([toHour(occurred_at)], [toUInt64(1)]) AS hours,
    uniqExact(toDate(occurred_at)) AS active_days
FROM {TABLE} FINAL
{where}
GROUP BY team, workload, provider, model
ORDER BY team, workload, provider, model"""
    return Query(sql, parameters)


def prefix_query(window: Window, teams: Sequence[str] | None = None) -> Query:
    """Prefix groups of two calls or more, with their reuse gaps counted against every cache TTL."""
    where, parameters = _where(window, teams, f"prompt_prefix_hash != '' AND {_INPUT_TOTAL} > 0")
    hits = ",\n    ".join(
        f"arrayCount(g -> g <= {seconds * 1000}, gaps) AS hits_{ttl}" for ttl, seconds in CACHE_TTLS.items()
    )
    writes = ",\n        ".join(f"countIf(tokens_{b} > 0) AS calls_{b}" for b in _WRITE_BUCKETS)  # no clash
    writes_select = ", ".join(f"calls_{b}" for b in _WRITE_BUCKETS)
    sql = f"""SELECT
    team, workload, provider, model, prompt_prefix_hash,
    calls, prefix_tokens, read_calls,
    {writes_select},
    {hits},
    toUInt64(if(empty(gaps), 0, arrayElement(arraySort(gaps), intDiv(length(gaps) + 1, 2)))) AS median_gap_ms
FROM
(
    SELECT
        team, workload, provider, model, prompt_prefix_hash,
        count() AS calls,
        min({_INPUT_TOTAL}) AS prefix_tokens,
        countIf(tokens_cache_read > 0) AS read_calls,
        {writes},
        arrayPopFront(arrayDifference(arraySort(groupArray(toUnixTimestamp64Milli(occurred_at))))) AS gaps
    FROM {TABLE} FINAL
    {where}
    GROUP BY team, workload, provider, model, prompt_prefix_hash
    HAVING calls >= 2
)
ORDER BY team, workload, provider, model, prompt_prefix_hash"""
    return Query(sql, parameters)


def singleton_query(window: Window, teams: Sequence[str] | None = None) -> Query:
    """Per workload/model: prompts whose prefix was sent once (caching them would only write)."""
    where, parameters = _where(window, teams, f"prompt_prefix_hash != '' AND {_INPUT_TOTAL} > 0")
    sql = f"""SELECT team, workload, provider, model,
    count() AS prefixes,
    sum(prefix_tokens) AS prefix_tokens
FROM
(
    SELECT team, workload, provider, model, prompt_prefix_hash,
        count() AS calls,
        min({_INPUT_TOTAL}) AS prefix_tokens
    FROM {TABLE} FINAL
    {where}
    GROUP BY team, workload, provider, model, prompt_prefix_hash
    HAVING calls = 1 AND prefix_tokens >= {{min_tokens:UInt64}}
)
GROUP BY team, workload, provider, model"""
    return Query(sql, {**parameters, "min_tokens": MIN_CACHEABLE_TOKENS})


def latency_query(window: Window) -> Query:
    """p95 latency of every provider/model seen in the window (all teams: a property of the model)."""
    where, parameters = _where(window, None, "latency_ms IS NOT NULL AND status = 'ok'")
    sql = f"""SELECT provider, model, toUInt64(quantileExact(0.95)(latency_ms)) AS latency_p95_ms,
    count() AS calls
FROM {TABLE} FINAL
{where}
GROUP BY provider, model"""
    return Query(sql, parameters)


def evidence_query(profile: WorkloadProfile, focus: str) -> EvidenceQuery:
    """The SQL a human runs to see the usage a recommendation stands on.

    `focus` picks the extra columns: `tokens` (buckets and cost), `reasoning`, `prefixes`, `timing`.
    """
    extra = {
        "tokens": [
            *(f"sum(tokens_{b}) AS {b}" for b in TOKEN_BUCKETS),
            f"quantileExact(0.99)({_INPUT_TOTAL}) AS input_p99",
            "quantileExact(0.95)(latency_ms) AS latency_p95_ms",
        ],
        "reasoning": [
            "sum(tokens_output_reasoning) AS reasoning_tokens",
            "sum(tokens_output_visible) AS visible_tokens",
            "avg(tokens_output_visible) AS avg_visible_tokens",
            "topK(3)(reasoning_effort) AS efforts",
        ],
        "prefixes": [
            "countIf(prompt_prefix_hash != '') AS calls_with_prefix",
            "uniqExactIf(prompt_prefix_hash, prompt_prefix_hash != '') AS distinct_prefixes",
            "sum(tokens_cache_read) AS cache_read",
            "sum(tokens_cache_write_5m + tokens_cache_write_30m + tokens_cache_write_1h"
            " + tokens_cache_write_12h) AS cache_write",
            "countIf(ifNull(caching_requested, false)) AS caching_requested_calls",
        ],
        "timing": [
            "countIf(stream) AS streamed_calls",
            "countIf(batch) AS batch_calls",
            "quantileExact(0.95)(latency_ms) AS latency_p95_ms",
            "sumMap([toHour(occurred_at)], [toUInt64(1)]) AS calls_by_hour",
            "uniqExact(toDate(occurred_at)) AS active_days",
        ],
    }[focus]
    columns = ",\n    ".join(
        [
            "count() AS calls",
            *extra,
            "sum(ifNull(repriced_effective_cost, effective_cost)) AS cost",
        ]
    )
    sql = (
        f"SELECT\n    {columns}\nFROM {TABLE} FINAL\n"
        "WHERE team = {team:String}\n  AND workload = {workload:String}\n"
        "  AND provider = {provider:String}\n  AND model = {model:String}\n"
        f"  AND occurred_at >= {{since:{TIME_TYPE}}}\n  AND occurred_at < {{until:{TIME_TYPE}}}\n"
        "  AND NOT gateway_cache_hit"
    )
    return EvidenceQuery(
        sql,
        {
            "team": profile.team,
            "workload": profile.workload,
            "provider": profile.provider,
            "model": profile.model,
            "since": _sql_time(profile.window.since),
            "until": _sql_time(profile.window.until),
        },
    )


def _sql_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def fetch_profiles(
    client: Client, window: Window, bands: Sequence[int], teams: Sequence[str] | None = None
) -> list[WorkloadProfile]:
    """Every workload/model profile of the window, cells and shape filled in."""
    profiles: dict[tuple[str, str, str, str], WorkloadProfile] = {}

    def profile_of(row: dict[str, Any]) -> WorkloadProfile:
        key = (str(row["team"]), str(row["workload"]), str(row["provider"]), str(row["model"]))
        found = profiles.get(key)
        if found is None:
            found = profiles[key] = WorkloadProfile(*key, window=window, bands=tuple(bands))
        return found

    for row in run(client, cells_query(window, bands, teams)):
        profile_of(row).cells.append(
            PricingCell(
                band=int(row["band"]),
                service_tier=_service_tier(bool(row["batch"]), str(row["tier"])),
                region=str(row["region_key"]),
                calls=int(row["calls"]),
                tokens={b: int(row[f"sum_{b}"]) for b in TOKEN_BUCKETS},
                requests={c: int(row[f"sum_{c}"]) for c in REQUEST_COUNTERS},
                cost=Decimal(row["cost"]),
            )
        )
    for row in run(client, shape_query(window, teams)):
        profile = profile_of(row)
        profile.calls = int(row["calls"])
        profile.input_p95 = int(row["input_p95"])
        profile.input_p99 = int(row["input_p99"])
        profile.output_p99 = int(row["output_p99"])
        profile.latency_calls = int(row["latency_calls"])
        profile.latency_p95_ms = int(row["latency_p95_ms"]) if profile.latency_calls else None
        profile.stream_calls = int(row["stream_calls"])
        profile.tool_calls = int(row["tool_calls"])
        profile.reasoning_calls = int(row["reasoning_calls"])
        profile.batch_calls = int(row["batch_calls"])
        profile.efforts = _summap(row["efforts"], str)
        profile.caching_requested_calls = int(row["caching_requested_calls"])
        profile.prefix_calls = int(row["prefix_calls"])
        profile.distinct_prefixes = int(row["distinct_prefixes"])
        profile.hours = _summap(row["hours"], int)
        profile.active_days = int(row["active_days"])
    return list(profiles.values())


def fetch_prefix_groups(
    client: Client, window: Window, teams: Sequence[str] | None = None
) -> dict[tuple[str, str, str, str], list[PrefixGroup]]:
    """Prefix groups by workload/model key."""
    groups: dict[tuple[str, str, str, str], list[PrefixGroup]] = defaultdict(list)
    for row in run(client, prefix_query(window, teams)):
        group = PrefixGroup(
            team=str(row["team"]),
            workload=str(row["workload"]),
            provider=str(row["provider"]),
            model=str(row["model"]),
            prefix_hash=str(row["prompt_prefix_hash"]),
            calls=int(row["calls"]),
            prefix_tokens=int(row["prefix_tokens"]),
            hits={ttl: int(row[f"hits_{ttl}"]) for ttl in CACHE_TTLS},
            write_calls={b: int(row[f"calls_{b}"]) for b in _WRITE_BUCKETS},
            read_calls=int(row["read_calls"]),
            median_gap_ms=int(row["median_gap_ms"]),
        )
        groups[(group.team, group.workload, group.provider, group.model)].append(group)
    return dict(groups)


def fetch_singletons(
    client: Client, window: Window, teams: Sequence[str] | None = None
) -> dict[tuple[str, str, str, str], tuple[int, int]]:
    """(prompts sent once, their input tokens) per workload/model, cacheable sizes only."""
    return {
        (str(r["team"]), str(r["workload"]), str(r["provider"]), str(r["model"])): (
            int(r["prefixes"]),
            int(r["prefix_tokens"]),
        )
        for r in run(client, singleton_query(window, teams))
    }


def fetch_model_latency(client: Client, window: Window) -> dict[tuple[str, str], int]:
    """p95 latency in ms per (provider, model name lower-cased)."""
    return {
        (str(row["provider"]), str(row["model"]).lower()): int(row["latency_p95_ms"])
        for row in run(client, latency_query(window))
    }


def _summap(value: Any, key_type: type[Any]) -> dict[Any, int]:
    """A `sumMap` result (keys, values) as a dict."""
    keys, values = value
    return {key_type(k): int(v) for k, v in zip(keys, values, strict=True)}
