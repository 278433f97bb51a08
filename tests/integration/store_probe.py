"""Read totals from an embedded store in a fresh process (a test process may own another chDB path).

Usage: python tests/integration/store_probe.py chdb:///path RUN  → JSON on stdout.
"""

from __future__ import annotations

import json
import sys

from costline.pipeline.store.client import connect


def probe(dsn: str, run: str) -> dict[str, object]:
    client = connect(dsn)
    params = {"run": f"{run}-"}
    final = client.query(
        "SELECT count(), toString(sum(effective_cost)) FROM usage_events FINAL "
        "WHERE startsWith(event_id, {run:String})",
        parameters=params,
    ).result_rows[0]
    raw = client.query(
        "SELECT count() FROM usage_events WHERE startsWith(event_id, {run:String})", parameters=params
    ).result_rows[0][0]
    hourly = client.query(
        "SELECT team, toString(hour), toString(sum(effective_cost)), sum(events) "
        "FROM usage_rollup_hourly FINAL "
        "WHERE startsWith(team, {run:String}) GROUP BY team, hour ORDER BY team, hour",
        parameters=params,
    ).result_rows
    daily = client.query(
        "SELECT toString(sum(effective_cost)), sum(events) FROM usage_rollup_daily FINAL "
        "WHERE startsWith(team, {run:String})",
        parameters=params,
    ).result_rows[0]
    return {
        "events": final[0],
        "effective_cost": final[1],
        "raw_rows": raw,
        "hourly": [list(row) for row in hourly],
        "daily_cost": daily[0],
        "daily_events": daily[1],
    }


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2])))
