-- Routing recommendations and the eval results that gate them (see docs/recommendations.md).
--
-- A computation writes all of its rows under one run_id, then one row in recommendation_runs.
-- Readers take the latest run that has a recommendation_runs row, so a computation that died
-- half-way is never read, and an older run stays readable until a newer one is complete.
-- Money columns are Decimal(38, 12): whole picodollars, exact.

CREATE TABLE IF NOT EXISTS recommendations
(
    run_id String,
    computed_at DateTime64(3, 'UTC'),
    rank UInt32 COMMENT '1 = largest monthly saving of the run',
    id String COMMENT 'deterministic: same kind, workload, model and proposal give the same id',
    kind LowCardinality(String) COMMENT 'model_switch | reasoning_effort | prompt_caching | batch | cascade',
    status LowCardinality(String) COMMENT 'recommended | needs_eval',
    team LowCardinality(String),
    workload LowCardinality(String),
    provider LowCardinality(String) COMMENT 'provider of the current model',
    model LowCardinality(String) COMMENT 'current model',
    current String COMMENT 'JSON: current setting and its monthly cost',
    proposed String COMMENT 'JSON: proposed setting and its monthly cost',
    window_cost Decimal(38, 12) COMMENT 'cost over the window, current setting',
    window_saving Decimal(38, 12) COMMENT 'saving over the window',
    monthly_saving Decimal(38, 12) COMMENT 'window_saving scaled to 30 days',
    saving_pct Decimal(38, 12),
    sample_calls UInt64,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    eval_evidence String COMMENT 'JSON, empty when there is none',
    notes Array(String) COMMENT 'what the saving assumes, in words',
    evidence_sql String,
    evidence_parameters String COMMENT 'JSON'
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(computed_at)
ORDER BY (run_id, rank)
TTL toDateTime(computed_at) + INTERVAL 90 DAY;

CREATE TABLE IF NOT EXISTS recommendation_runs
(
    run_id String,
    computed_at DateTime64(3, 'UTC'),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    recommendations UInt32,
    trigger LowCardinality(String) COMMENT 'worker | api | cli | test'
)
ENGINE = MergeTree
ORDER BY (computed_at, run_id)
TTL toDateTime(computed_at) + INTERVAL 90 DAY;

-- One row per eval result; importing the same result again replaces it (same key, later imported_at).
CREATE TABLE IF NOT EXISTS evals
(
    team LowCardinality(String),
    workload LowCardinality(String),
    model LowCardinality(String),
    metric LowCardinality(String),
    score Decimal(38, 12) COMMENT 'a fraction between 0 and 1 (accuracy, pass rate)',
    sample_size UInt64,
    evaluated_at DateTime64(3, 'UTC'),
    source String COMMENT 'file name or API caller',
    quality_floor Nullable(Decimal(38, 12)) COMMENT 'largest score drop the workload accepts',
    imported_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (team, workload, model, metric, evaluated_at);
