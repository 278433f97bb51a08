"""The UsageEvent JSON Schema, exported to a checked-in file so producers in any language can validate."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from costline.schemas.usage_event import SCHEMA_VERSION, UsageEvent

SCHEMA_FILE = "usage_event.schema.json"


def usage_event_json_schema() -> dict[str, Any]:
    """The JSON Schema of UsageEvent as pydantic generates it, with an `$id` carrying the version."""
    schema = UsageEvent.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://costline.dev/schemas/usage_event/v{SCHEMA_VERSION}.json",
        **schema,
    }


def render() -> str:
    """The file content: stable key order and a trailing newline, so diffs stay small."""
    return json.dumps(usage_event_json_schema(), indent=2, sort_keys=True) + "\n"


def checked_in_path() -> Path:
    """Where the exported schema lives in the source tree (and in the installed package)."""
    return Path(str(files("costline.schemas").joinpath(SCHEMA_FILE)))


def write(path: Path | None = None) -> Path:
    """Write the schema file; run `make schema` after changing UsageEvent."""
    target = path or checked_in_path()
    target.write_text(render(), encoding="utf-8")
    return target


if __name__ == "__main__":
    print(write())
