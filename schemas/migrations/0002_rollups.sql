-- Hourly and daily rollups per team, workload, provider and model.
--
-- Exact under redelivery, re-sent events and crashes because they are never summed on insert:
-- the worker recomputes whole hours from the deduplicated base table (usage_events FINAL) for
-- every hour that received rows since the last computation (found through ingested_at), and a
-- recomputed hour replaces the previous rows (ReplacingMergeTree on computed_at; reads use FINAL).
-- `effective_cost` is the current cost (re-priced when a re-pricing happened), and
-- `as_priced_effective_cost` the cost at ingestion, so reports can show the difference.

ALTER TABLE usage_events ADD INDEX IF NOT EXISTS ingested_at_minmax ingested_at TYPE minmax GRANULARITY 1;

CREATE TABLE IF NOT EXISTS usage_rollup_hourly
(
    hour DateTime('UTC'),
    team LowCardinality(String),
    workload LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    events UInt64,
    unpriced_events UInt64,
    partial_events UInt64,
    tokens_input_uncached UInt64,
    tokens_cache_read UInt64,
    tokens_cache_write UInt64,
    tokens_output_visible UInt64,
    tokens_output_reasoning UInt64,
    list_cost Decimal(38, 12),
    as_priced_effective_cost Decimal(38, 12),
    effective_cost Decimal(38, 12),
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (team, hour, workload, provider, model);

CREATE TABLE IF NOT EXISTS usage_rollup_daily
(
    day Date,
    team LowCardinality(String),
    workload LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    events UInt64,
    unpriced_events UInt64,
    partial_events UInt64,
    tokens_input_uncached UInt64,
    tokens_cache_read UInt64,
    tokens_cache_write UInt64,
    tokens_output_visible UInt64,
    tokens_output_reasoning UInt64,
    list_cost Decimal(38, 12),
    as_priced_effective_cost Decimal(38, 12),
    effective_cost Decimal(38, 12),
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(day)
ORDER BY (team, day, workload, provider, model);
