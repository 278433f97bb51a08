-- usage_events: one row per priced UsageEvent (see docs/storage.md).
--
-- Empty string means "absent" for the attribution and identifier columns: the UsageEvent schema
-- forbids empty values there, so None <-> '' is lossless and the columns stay non-Nullable.
-- Nullable is kept where an empty string is a real value or "unknown" differs from zero/false.
--
-- A redelivered event is a second row with the same (team, occurred_at, event_id) sorting key;
-- ReplacingMergeTree keeps the one with the highest pricing_version (a late redelivery of the
-- as-priced event never overwrites a re-priced row; among equals the last inserted wins, and
-- those are identical copies), and every report reads with FINAL
-- so the duplicate never counts before the background merge happens.
-- non_replicated_deduplication_window lets insert_deduplication_token drop a retried batch on a
-- non-replicated table too (Replicated* tables deduplicate inserts by default).

CREATE TABLE IF NOT EXISTS usage_events
(
    event_id String,
    schema_version UInt8,
    occurred_at DateTime64(3, 'UTC'),
    source LowCardinality(String),
    provider LowCardinality(String),
    operation LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    model LowCardinality(String) COMMENT 'the priced model: response_model, else request_model',

    tokens_input_uncached UInt64,
    tokens_cache_read UInt64,
    tokens_cache_write_5m UInt64,
    tokens_cache_write_30m UInt64,
    tokens_cache_write_1h UInt64,
    tokens_cache_write_12h UInt64,
    tokens_output_visible UInt64,
    tokens_output_reasoning UInt64,

    web_search_requests UInt32,
    web_fetch_requests UInt32,
    code_execution_requests UInt32,

    team LowCardinality(String) COMMENT 'empty string for unattributed',
    project LowCardinality(String),
    workload LowCardinality(String),
    user_hash String,
    environment LowCardinality(String),
    cost_center LowCardinality(String),
    tags Map(LowCardinality(String), String),

    trace_id String,
    span_id String,
    session_id String,

    prompt_prefix_hash String,
    caching_requested Nullable(Bool),
    reasoning_effort LowCardinality(String),
    output_chars Nullable(UInt64),
    latency_ms Nullable(UInt32),
    ttft_ms Nullable(UInt32),
    status LowCardinality(String),
    error_type Nullable(String),
    finish_reason LowCardinality(Nullable(String)),
    service_tier LowCardinality(Nullable(String)),
    region LowCardinality(Nullable(String)),
    batch Bool,
    stream Bool,
    gateway_cache_hit Bool COMMENT 'answered from a gateway response cache',
    reported_cost Nullable(Decimal(38, 12)) COMMENT 'cost a gateway reported, beside ours',
    raw_usage String COMMENT 'provider usage object as JSON, empty string when absent',

    pricing_status LowCardinality(String) COMMENT 'priced, partial or unpriced',
    pricing_reason Nullable(String),
    ratecard_entry_id Nullable(String),
    context_tier LowCardinality(Nullable(String)),
    adjustments Array(String),
    unpriced_buckets Array(String),
    currency LowCardinality(String),
    list_cost Decimal(38, 12),
    effective_cost Decimal(38, 12),
    cost_input_uncached Decimal(38, 12),
    cost_cache_read Decimal(38, 12),
    cost_cache_write_5m Decimal(38, 12),
    cost_cache_write_30m Decimal(38, 12),
    cost_cache_write_1h Decimal(38, 12),
    cost_cache_write_12h Decimal(38, 12),
    cost_output_visible Decimal(38, 12),
    cost_output_reasoning Decimal(38, 12),
    cost_requests Decimal(38, 12) COMMENT 'web search, web fetch and code execution requests',

    repriced_effective_cost Nullable(Decimal(38, 12)),
    repriced_entry_id Nullable(String),
    repriced_status LowCardinality(Nullable(String)) COMMENT 'pricing status under the current card',
    repriced_at Nullable(DateTime64(3, 'UTC')),
    pricing_version UInt64 DEFAULT 0 COMMENT '0 as priced at ingestion; re-pricing writes its time in ms',

    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    kafka_partition Int32 DEFAULT -1,
    kafka_offset Int64 DEFAULT -1
)
ENGINE = ReplacingMergeTree(pricing_version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team, occurred_at, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
