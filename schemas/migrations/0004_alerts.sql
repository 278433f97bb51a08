-- Alerts (budget thresholds, budget forecasts, anomalies) and every attempt to deliver them.
--
-- `alerts` is the outbox of the alerting engine: an alert row is written BEFORE any delivery is
-- tried, so a worker that restarts (or a new leader after a rebalance) finds it and never fires it
-- again. Its id is deterministic ((budget, period start, threshold or 'forecast'), or the anomaly
-- id), so a second insert of the same alert is a new version of the same row, never a second alert.
-- A state change (firing -> resolved) is a new row with a higher `version`; read with FINAL.
-- No PARTITION BY: versions of one alert must share a part group to collapse, and the table is small.
--
-- `alert_deliveries` is append-only: one row per HTTP attempt per route. A route whose latest row
-- is `retrying` (or that has no row yet) is still owed a delivery; `delivered` and `failed` are
-- terminal. Routes are stored by name (`slack`, `webhook`), never by URL: the URLs are secrets.

CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    kind LowCardinality(String) COMMENT 'budget_threshold, budget_forecast or anomaly',
    subject String COMMENT 'one-line title of the alert',
    state LowCardinality(String) COMMENT 'firing or resolved',
    team LowCardinality(String) COMMENT 'empty string: not scoped to a team',
    workload LowCardinality(String),
    project LowCardinality(String),
    budget String COMMENT 'budget name; empty for anomaly alerts',
    anomaly_id String COMMENT 'empty for budget alerts',
    period_start DateTime64(3, 'UTC') COMMENT 'budget period, or the anomaly window',
    period_end DateTime64(3, 'UTC'),
    threshold Nullable(UInt16) COMMENT 'percent of the budget; NULL for forecast and anomaly alerts',
    spent Decimal(38, 12) COMMENT 'budget spend, or the anomaly observed cost, when last evaluated',
    amount Nullable(Decimal(38, 12)) COMMENT 'budget amount; NULL for anomaly alerts',
    forecast Nullable(Decimal(38, 12)) COMMENT 'linear forecast to the period end',
    wasted Nullable(Decimal(38, 12)) COMMENT 'anomaly wasted cost; NULL for budget alerts',
    fired_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    routes Array(LowCardinality(String)) COMMENT 'routes owed a delivery, fixed when the alert fired',
    payload String COMMENT 'JSON details: top models and workloads, anomaly evidence, dashboard link',
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY alert_id;

CREATE TABLE IF NOT EXISTS alert_deliveries
(
    alert_id String,
    route LowCardinality(String),
    attempt UInt16,
    at DateTime64(3, 'UTC'),
    outcome LowCardinality(String) COMMENT 'delivered, retrying or failed',
    status_code Nullable(UInt16),
    error String COMMENT 'why the attempt failed; never contains the URL',
    elapsed_ms UInt32
)
ENGINE = MergeTree
ORDER BY (alert_id, route, attempt);
