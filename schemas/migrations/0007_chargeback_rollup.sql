-- Hourly current cost per chargeback key: team, cost center, and whether the usage is shared
-- (tag shared = true/1/yes). A month's chargeback reads these instead of ~millions of events FINAL.
--
-- Exact for the same reasons as the other rollups (0002): an hour is recomputed from
-- usage_events FINAL whenever it received rows, and a recomputed hour replaces its rows
-- (ReplacingMergeTree on computed_at; reads use FINAL). The refresh watermark is the oldest of the
-- rollup tables' last computations, so on a store that had data before this table existed every
-- hour counts as dirty until the first refresh has filled it: reads stay exact meanwhile.

CREATE TABLE IF NOT EXISTS usage_rollup_chargeback_hourly
(
    hour DateTime('UTC'),
    team LowCardinality(String),
    cost_center LowCardinality(String),
    shared Bool,
    events UInt64,
    unpriced_events UInt64,
    partial_events UInt64,
    effective_cost Decimal(38, 12),
    computed_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, team, cost_center, shared);
