"""Budgets: YAML config, periods in a named time zone, spend from the deduplicated store, burn forecasts."""
