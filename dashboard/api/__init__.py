"""The read API: the one place where report SQL runs and where team scoping is enforced.

In embedded mode the worker (which owns the chDB store) serves it; `costline api` serves it on
its own against a ClickHouse server. Routers live in `routes/`, one module per subject.
"""
