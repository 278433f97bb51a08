"""Read API latency over 10 million priced events in chDB: chargeback, daily series, team view.

Run: .venv/bin/python bench/query_latency.py [--events 10000000] [--runs 30] [--keep DIR]

One run creates a fresh chDB store in a temporary directory (this process owns it), applies the
migrations and inserts N synthetic priced events with one `INSERT ... SELECT FROM numbers(N)`:
deterministic pseudo-random attribution (20 teams plus 2% unattributed, 60 workloads, 3
providers, 6 models, 40 projects, 5 cost centers), tokens and exact Decimal costs, spread over
90 days from 2026-01-01, stamped as ingested an hour ago. It then refreshes the rollups (as the
worker's timer would) and serves the real API with uvicorn on a free port (every router in
ROUTERS, store calls on a thread as in `costline api serve`). Each query is sent `--runs` times
over HTTP after 3 warm-up calls; it prints p50/p95/max in ms, the load and rollup times and
`os.cpu_count()`. Goal: p95 <= 300 ms for each of the three queries.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from costline.dashboard.api.app import create_api  # noqa: E402
from costline.dashboard.api.auth import Principal, TokenStore, hash_token  # noqa: E402
from costline.dashboard.api.server import _Server, uvicorn_config  # noqa: E402
from costline.dashboard.api.store import StoreAccess  # noqa: E402
from costline.pipeline.store.client import connect  # noqa: E402
from costline.pipeline.store.migrations import apply_migrations  # noqa: E402
from costline.pipeline.store.rollups import refresh_rollups  # noqa: E402
from costline.schemas.settings import Settings  # noqa: E402

GOAL_P95_MS = 300.0
#: A request slower than this is reported as such and its query skipped.
REQUEST_TIMEOUT_S = 60.0
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90

LOAD_SQL = """
INSERT INTO usage_events (event_id, schema_version, occurred_at, source, provider, operation, request_model,
  response_model, model, tokens_input_uncached, tokens_cache_read, tokens_cache_write_5m,
  tokens_output_visible, tokens_output_reasoning, team, project, workload, environment, cost_center, trace_id,
  session_id, prompt_prefix_hash, caching_requested, reasoning_effort, latency_ms, status, pricing_status,
  ratecard_entry_id, currency, list_cost, effective_cost, cost_input_uncached, ingested_at)
SELECT
  concat('bench-', toString(number)), 1,
  {start:DateTime64(3, 'UTC')} + toIntervalMillisecond(intHash64(number) % ({days:UInt32} * 86400000)),
  'bench', ['openai', 'anthropic', 'bedrock'][1 + h % 3], 'chat', m, m, m,
  tin, tcr, tcw, tout, treas,
  if(h % 50 = 0, '', concat('team-', toString(intDiv(h, 256) % 20))),
  concat('proj-', toString(intDiv(h, 65536) % 40)),
  concat('wl-', toString(intDiv(h, 256) % 20), '-', toString(intDiv(h, 16777216) % 3)),
  'prod', concat('cc-', toString(intDiv(h, 256) % 5)),
  hex(h2), hex(h2 % 100000), hex(h % 1000),
  if(h % 4 = 0, NULL, h % 4 = 1),
  ['', 'low', 'medium', 'high'][1 + intDiv(h, 4294967296) % 4],
  toUInt32(200 + h % 5000), 'ok', if(h % 97 = 0, 'unpriced', 'priced'), concat('entry-', m), 'USD',
  cost, cost, cost,
  now64(3) - INTERVAL 1 HOUR
FROM (
  SELECT number, intHash64(number + 1) AS h, intHash64(number + 2) AS h2,
    ['gpt-4o', 'gpt-4o-mini', 'o3', 'claude-sonnet-4', 'claude-haiku-4', 'claude-opus-4'][
      1 + intDiv(h, 1099511627776) % 6] AS m,
    toUInt64(100 + h % 4000) AS tin,
    toUInt64(if(h % 3 = 0, intDiv(h, 4096) % 2000, 0)) AS tcr,
    toUInt64(if(h % 11 = 0, intDiv(h, 1048576) % 1000, 0)) AS tcw,
    toUInt64(20 + intDiv(h, 16) % 800) AS tout,
    toUInt64(if(h % 5 = 0, intDiv(h, 268435456) % 1500, 0)) AS treas,
    toDecimal128(tin * 3 + tout * 12 + treas * 12 + tcr, 12) / 1000000 AS cost
  FROM numbers({n:UInt64})
)"""

TOKENS = {
    "bench-admin": Principal("admin", "admin"),
    "bench-finance": Principal("finance", "finance"),
    "bench-team": Principal("team-3", "team", frozenset({"team-3"})),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--keep", type=Path, help="Use (and keep) this store directory; reuse its data if loaded."
    )
    args = parser.parse_args()

    directory = args.keep or Path(tempfile.mkdtemp(prefix="costline-qlat-"))
    client = connect(f"chdb://{(directory / 'store').resolve()}")
    apply_migrations(client)
    stored = int(client.query("SELECT count() FROM usage_events").result_rows[0][0])
    print(f"cpu_count: {os.cpu_count()}  store: {directory}")
    if stored != args.events:
        client.command("TRUNCATE TABLE usage_events")
        for table in ("usage_rollup_hourly", "usage_rollup_chargeback_hourly", "usage_rollup_daily"):
            client.command(f"TRUNCATE TABLE {table}")
        began = time.perf_counter()
        client.command(LOAD_SQL, parameters={"n": args.events, "start": START, "days": DAYS})
        loaded = time.perf_counter()
        hours = refresh_rollups(client)
        rolled = time.perf_counter()
        print(
            f"loaded {args.events:,} events in {loaded - began:.1f} s "
            f"({args.events / (loaded - began):,.0f} events/s); "
            f"rollups of {hours} hours in {rolled - loaded:.1f} s"
        )
    else:
        began = time.perf_counter()
        hours = refresh_rollups(client)  # catches up rollup tables added since the store was loaded
        print(
            f"reusing {stored:,} stored events; rollups caught up on {hours} hours "
            f"in {time.perf_counter() - began:.1f} s"
        )
    parts = client.query("SELECT count() FROM system.parts WHERE active AND table = 'usage_events'")
    print(f"usage_events parts: {parts.result_rows[0][0]}")

    settings = Settings(api_host="127.0.0.1", api_port=free_port())
    tokens = TokenStore({hash_token(token): principal for token, principal in TOKENS.items()})
    api = create_api(StoreAccess(client), tokens, settings)
    server = _Server(uvicorn_config(api, settings), embedded=True)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    month = {"since": "2026-02-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}
    chargeback = (
        "chargeback 2026-02 by team",
        "bench-finance",
        "/chargeback",
        {"period": "2026-02", "by": "team"},
    )
    # The chargeback runs last: a request abandoned after the timeout keeps its store thread busy.
    queries = [
        (
            "(info) spend by team 2026-02, all teams",
            "bench-finance",
            "/spend",
            {"group_by": "team", **month},
        ),
        ("daily time series 2026-02", "bench-admin", "/timeseries", {"granularity": "day", **month}),
        ("team view team-3 2026-02", "bench-team", "/teams/team-3", month),
        ("(info) summary 2026-02, all teams", "bench-admin", "/summary", month),
        (
            "(info) daily series by team 2026-02",
            "bench-admin",
            "/timeseries",
            {"granularity": "day", "group_by": "team", **month},
        ),
        chargeback,
    ]
    base = f"http://127.0.0.1:{settings.api_port}/api/v1"
    failed = False
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        print(f"\n{'query':<42} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  goal p95 <= {GOAL_P95_MS:.0f} ms")
        for name, token, path, params in queries:
            headers = {"Authorization": f"Bearer {token}"}
            timings: list[float] = []
            for run in range(3 + args.runs):
                began = time.perf_counter()
                try:
                    response = http.get(base + path, params=params, headers=headers)
                except httpx.HTTPError as exc:
                    print(f"{name}: no answer within {REQUEST_TIMEOUT_S:.0f} s ({type(exc).__name__})")
                    failed = True
                    break
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code != 200:
                    print(f"{name}: HTTP {response.status_code} {response.text[:300]}")
                    failed = True
                    break
                if run >= 3:
                    timings.append(elapsed)
            if timings:
                p95 = percentile(timings, 0.95)
                verdict = "" if name.startswith("(info)") else ("met" if p95 <= GOAL_P95_MS else "MISSED")
                p50 = statistics.median(timings)
                print(f"{name:<42} {p50:>8.1f} {p95:>8.1f} {max(timings):>8.1f}  {verdict}")
    server.should_exit = True
    thread.join(timeout=15)
    client.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
