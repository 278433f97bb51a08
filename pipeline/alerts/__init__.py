"""Alerts: a firing → resolved state machine that fires once, and Slack / webhook delivery with retries."""
