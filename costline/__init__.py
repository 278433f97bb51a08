"""costline: streaming cost observability and chargeback for LLM usage."""

__version__ = "0.1.0"
