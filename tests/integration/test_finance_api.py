"""Finance through the real read API: a uvicorn server over the session chDB store, and the CLI against it."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import uvicorn
from clickhouse_connect.driver import Client
from typer.testing import CliRunner

from costline.cli import app as cli_app
from costline.dashboard.api.app import create_api
from costline.dashboard.api.auth import TokenStore, add_token
from costline.dashboard.api.store import StoreAccess
from costline.dashboard.finance.focus import MANDATORY_COLUMNS
from costline.schemas.settings import Settings
from tests.integration import test_finance_data
from tests.integration.conftest import unused_port
from tests.integration.test_finance_data import at, event, write

pytestmark = pytest.mark.integration

finance_store = test_finance_data.finance_store

INVOICES = Path(__file__).resolve().parents[1] / "fixtures" / "invoices"


class Server:
    """create_api served by uvicorn on a free port, in a thread."""

    def __init__(self, client: Client, tokens: TokenStore, port: int) -> None:
        api = create_api(StoreAccess(client), tokens, Settings())
        self.server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def api(finance_store: Client, tmp_path: Path, free_tcp_port: int) -> Iterator[tuple[Server, dict[str, str]]]:
    path = tmp_path / "tokens.yaml"
    tokens = {
        "finance": add_token(path, "finance", "finance"),
        "search": add_token(path, "search-lead", "team", ["search"]),
    }
    write(
        finance_store,
        [
            event("a1", at("2026-10-05"), team="search", cost_center="cc-1", input_uncached=1_000_000,
                  output_visible=100_000),
            event("a2", at("2026-10-06"), team="ads", input_uncached=2_000_000),
            event("a3", at("2026-10-07"), output_visible=1_000_000),  # unattributed
            event("a4", at("2026-10-05"), team="ads", provider="anthropic", model="claude-sonnet-4-6",
                  input_uncached=1_000_000),
            event("a5", at("2026-10-06"), team="ads", provider="anthropic", model="claude-sonnet-4-6",
                  output_visible=1_000_000),
        ],
    )  # fmt: skip
    with Server(finance_store, TokenStore.from_file(path), free_tcp_port) as server:
        yield server, tokens


def run_cli(server: Server, token: str | None, *args: str) -> tuple[int, str, str]:
    env = {"COSTLINE_API_URL": server.url, "COSTLINE_API_TOKEN": token or ""}
    if token is None:
        env.pop("COSTLINE_API_TOKEN")
    result = CliRunner().invoke(cli_app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_reports_through_the_api(api: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    server, tokens = api
    code, out, err = run_cli(
        server, tokens["finance"], "report", "chargeback", "--period", "2026-10", "-f", "csv"
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    charges = {r["key"]: Decimal(r["total_cost"]) for r in rows if r["line"] == "charge"}
    total = next(Decimal(r["total_cost"]) for r in rows if r["line"] == "total")
    # gpt-5: search 2.25, ads 2.5, unattributed 10; sonnet (ads): 3 + 15
    assert total == Decimal("32.75") == sum(charges.values())
    assert charges[""] == 0  # allocated: search 2.25/22.75 and ads 20.5/22.75 of 10
    assert charges["search"] + charges["ads"] == total

    html_path = tmp_path / "chargeback.html"
    code, _, err = run_cli(
        server, tokens["finance"], "report", "chargeback", "--period", "2026-10", "--by", "cost_center",
        "--allocation", "owner:cc-1", "-f", "html", "-o", str(html_path),
    )  # fmt: skip
    assert code == 0, err
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "32.75" in page

    parquet_path = tmp_path / "focus.parquet"
    code, _, err = run_cli(
        server, tokens["finance"], "report", "chargeback", "--period", "2026-10", "-f", "parquet",
        "-o", str(parquet_path),
    )  # fmt: skip
    assert code == 0, err
    table = pq.read_table(parquet_path)
    assert set(MANDATORY_COLUMNS) <= set(table.schema.names)
    assert sum(table.column("EffectiveCost").to_pylist()) == Decimal("32.75")

    code, out, err = run_cli(
        server, tokens["finance"], "report", "chargeback", "--period", "2026-10", "-f", "focus"
    )
    assert code == 0, err
    assert out.splitlines()[0].startswith("BillingAccountId,")

    code, out, err = run_cli(server, tokens["finance"], "period", "close", "2026-10")
    assert code == 0, err
    assert "2026-10 closed" in out
    assert "32.75" in out
    code, out, _ = run_cli(server, tokens["finance"], "period", "close", "2026-10")
    assert "already closed" in out
    code, out, err = run_cli(server, tokens["finance"], "period", "list")
    assert code == 0, err
    assert "2026-10" in out
    assert "closed" in out
    code, _, err = run_cli(server, tokens["finance"], "period", "close", "2099-01")
    assert code == 2
    assert "has not ended" in err


def test_cli_reconcile_prints_variances_and_exits_1_when_days_are_flagged(
    api: tuple[Server, dict[str, str]],
) -> None:
    server, tokens = api
    # ours: gpt-5 10-05 2.25 (search), 10-06 2.5, 10-07 10; the export differs on 10-06 and 10-08
    code, out, err = run_cli(
        server, tokens["finance"], "report", "reconcile", "--invoice", str(INVOICES / "openai_costs.json"),
        "--provider", "openai",
    )  # fmt: skip
    assert code == 1, err
    assert "2026-10-06" in out
    assert "-0.25" in out
    assert "FLAGGED" in out
    assert "2 day(s) beyond tolerance: 2026-10-06, 2026-10-08" in out
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['finance']}"}) as http:
        body = (INVOICES / "anthropic_cost_report.json").read_bytes()
        answer = http.post("/api/v1/reconcile", params={"provider": "anthropic"}, content=body).json()
    assert [(d["date"], d["model"], Decimal(d["variance"]), d["flagged"]) for d in answer["days"]] == [
        ("2026-10-05", "claude-sonnet-4-6", Decimal(0), False),
        ("2026-10-06", "(server tools)", Decimal("-0.025"), True),
        ("2026-10-06", "claude-sonnet-4-6", Decimal("-0.005"), False),
    ]
    code, _, err = run_cli(
        server, tokens["finance"], "report", "reconcile", "--invoice", str(INVOICES / "openai_costs.csv"),
        "--provider", "anthropic",
    )  # fmt: skip
    assert code == 2
    assert "not an Anthropic cost export" in err


def test_team_tokens_see_only_their_rows_and_cannot_close(api: tuple[Server, dict[str, str]]) -> None:
    server, tokens = api
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['search']}"}) as http:
        report = http.get("/api/v1/chargeback", params={"period": "2026-10"}).json()
        assert [row["key"] for row in report["rows"]] == ["search"]
        assert Decimal(report["stored_total"]) == Decimal("2.25")
        focus = http.get("/api/v1/focus", params={"period": "2026-10", "allocation": "even"})
        assert focus.status_code == 200
        teams = {row["x_ChargebackKey"] for row in csv.DictReader(io.StringIO(focus.text))}
        assert teams == {"search"}
        assert (
            http.get("/api/v1/chargeback", params={"period": "2026-10", "by": "cost_center"}).status_code
            == 403
        )
        assert http.post("/api/v1/periods/2026-10/close").status_code == 403
        assert http.post("/api/v1/reconcile", params={"provider": "openai"}, content=b"{}").status_code == 403
        assert all(row["total"] is None for row in http.get("/api/v1/periods").json()["rows"])
        bad = http.get("/api/v1/chargeback", params={"period": "October"})
        assert bad.status_code == 400
        assert "YYYY-MM" in bad.json()["detail"]


def test_cli_says_clearly_when_the_api_is_unreachable_or_the_token_missing(
    api: tuple[Server, dict[str, str]],
) -> None:
    server, tokens = api
    code, _, err = run_cli(server, None, "period", "list")
    assert code == 2
    assert "COSTLINE_API_TOKEN is not set" in err
    down = Server.__new__(Server)
    down.url = f"http://127.0.0.1:{unused_port()}"
    code, _, err = run_cli(down, tokens["finance"], "period", "list")
    assert code == 2
    assert "cannot reach the read API" in err
    assert "costline up" in err
    code, _, err = run_cli(server, "cl_wrong", "period", "list")
    assert code == 2
    assert "refused the token" in err
