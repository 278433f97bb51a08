-- Closed finance periods (calendar months, UTC), their frozen charge lines, and corrections.
--
-- Closing a month writes its charge lines (costline.dashboard.finance.lines) under a fresh
-- snapshot_id, then one finance_periods row naming that snapshot: the period row is the commit
-- marker, so a reader never sees a closed month without its lines. Two closes racing both write
-- lines; the first finance_periods row (earliest closed_at, then smallest snapshot_id) wins and
-- readers take only the winner's lines and corrections, so the loser's rows are inert.
--
-- finance_corrections holds the correction lines a period carried when it was closed: current
-- cost of an earlier closed month minus its snapshot minus the corrections carried before.
-- Plain MergeTree everywhere: rows are written once and never updated.

CREATE TABLE IF NOT EXISTS finance_periods
(
    period Date COMMENT 'first day of the month',
    snapshot_id String,
    closed_at DateTime64(3, 'UTC'),
    closed_by String,
    total Decimal(38, 12) COMMENT 'sum of the frozen lines',
    corrections_total Decimal(38, 12) COMMENT 'sum of the corrections this period carried',
    events UInt64
)
ENGINE = MergeTree
ORDER BY (period, closed_at, snapshot_id);

CREATE TABLE IF NOT EXISTS finance_period_lines
(
    period Date,
    snapshot_id String,
    kind LowCardinality(String) COMMENT 'usage, repricing or events',
    day Date,
    provider LowCardinality(String),
    model LowCardinality(String),
    team LowCardinality(String),
    cost_center LowCardinality(String),
    project LowCardinality(String),
    workload LowCardinality(String),
    shared Bool,
    bucket LowCardinality(String),
    unit LowCardinality(String),
    entry_id String,
    context_tier String,
    adjustments String,
    repriced_entry_id String,
    status LowCardinality(String),
    quantity UInt64,
    unit_price Nullable(Decimal(38, 12)),
    cost Decimal(38, 12),
    events UInt64,
    unpriced_events UInt64,
    partial_events UInt64
)
ENGINE = MergeTree
ORDER BY (period, snapshot_id, day, team);

CREATE TABLE IF NOT EXISTS finance_corrections
(
    carrier_period Date COMMENT 'the period whose report carried the correction',
    snapshot_id String COMMENT 'snapshot of the carrier period when it was closed',
    corrected_period Date,
    team LowCardinality(String),
    cost_center LowCardinality(String),
    project LowCardinality(String),
    workload LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    shared Bool,
    amount Decimal(38, 12),
    events_delta Int64,
    reason String
)
ENGINE = MergeTree
ORDER BY (carrier_period, snapshot_id, corrected_period, team);
