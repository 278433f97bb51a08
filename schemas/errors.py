"""The one root exception of costline; every message says what was wrong and what to do."""

from __future__ import annotations

from pydantic import ValidationError


class CostlineError(Exception):
    """Root of all errors costline raises on purpose."""


class ConfigError(CostlineError):
    """A setting, file or argument is invalid; the message names it and the fix."""


class RateCardError(CostlineError):
    """A rate card file is malformed or inconsistent."""


class StoreError(CostlineError):
    """ClickHouse could not be reached or refused a statement."""


class BrokerError(CostlineError):
    """The local Kafka broker could not be started, reached or stopped."""


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every invalid field, e.g. `tokens.cache_read: Input should be >= 0`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or '<event>'}: {err['msg']}" for err in exc.errors()
    )
