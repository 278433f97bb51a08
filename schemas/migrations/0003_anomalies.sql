-- anomalies: what the waste detectors found (see docs/detectors.md).
--
-- One row per anomaly: per-call flags summed per (kind, cause, team, workload, provider, model, hour),
-- or one spend spike episode, one hit-rate collapse, one agent run. `anomaly_id` is a digest of what
-- identifies the anomaly (never of when it was seen), so a replay writes the same row again. Each
-- update (more calls, resolved) is a new row with a higher `version`; ReplacingMergeTree keeps the
-- latest and every read uses FINAL. `window_start` never changes for an id, so all versions of an
-- anomaly share a partition and collapse. Money in Decimal(38, 12) (exact picodollars); `evidence`
-- is JSON with money as decimal strings.

CREATE TABLE IF NOT EXISTS anomalies
(
    anomaly_id String,
    kind LowCardinality(String) COMMENT 'overthinking, cache_miss, spend_spike, context_growth or agent_loop',
    cause LowCardinality(String),
    team LowCardinality(String),
    project LowCardinality(String),
    workload LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    trace_id String,
    session_id String,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    detected_at DateTime64(3, 'UTC'),
    calls UInt64,
    wasted_cost Decimal(38, 12) COMMENT 'estimated waste: what fixing it would have saved',
    observed_cost Decimal(38, 12) COMMENT 'cost of the calls involved',
    severity LowCardinality(String) COMMENT 'info, warning or critical',
    state LowCardinality(String) COMMENT 'firing or resolved',
    evidence String COMMENT 'JSON',
    sample_event_ids Array(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(window_start)
ORDER BY anomaly_id;
