"""The collector: an HTTP server that receives OTLP traces and gateway logs and emits UsageEvents.

`otlp` is pure (request bodies → events) and light; `app` builds the FastAPI server (the
`server` extra) and is imported only by `costline collector`, never by the SDK hooks.
"""
