"""The README's run command: `costline up` brings up broker, worker with the read API and the
dashboard, stores a demo batch, and prints the dashboard URL and a demo admin token."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.conftest import unused_port

pytestmark = pytest.mark.integration


def up(tmp_path: Path, *args: str, **ports: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")}
    env |= {
        "COSTLINE_BROKER_PORT": str(unused_port()),
        "COSTLINE_METRICS_PORT": str(ports.get("metrics", unused_port())),
        "COSTLINE_API_PORT": str(ports.get("api", unused_port())),
        "COSTLINE_DASHBOARD_PORT": str(ports.get("dashboard", unused_port())),
        "COLUMNS": "120",
    }
    return subprocess.run(
        [sys.executable, "-m", "costline", "up", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_up_once_stores_and_summarizes_the_demo_batch(tmp_path: Path) -> None:
    api_port = unused_port()
    result = up(tmp_path, "--once", "--demo-events", "400", api=api_port)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stored (last 7 days): 400 events" in result.stdout
    assert "acme-llama-ft-v2" in result.stdout  # the unknown model is stored unpriced, not dropped
    assert (tmp_path / ".costline" / "store").is_dir()
    assert re.search(r"dashboard http://127\.0\.0\.1:\d+", result.stdout), result.stdout
    token = re.search(r"token\s+(cl_\S+)", result.stdout)
    assert token, result.stdout
    tokens = yaml.safe_load((tmp_path / ".costline" / "api_tokens.yaml").read_text())["tokens"]
    assert [(t["name"], t["role"]) for t in tokens] == [("demo-admin", "admin")]
    assert token.group(1) not in str(tokens)  # stored hashed only
    # every child is gone: nothing answers on the API port any more
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2)


@pytest.mark.parametrize(
    ("setting", "port_name"),
    [
        ("COSTLINE_METRICS_PORT", "metrics"),
        ("COSTLINE_API_PORT", "api"),
        ("COSTLINE_DASHBOARD_PORT", "dashboard"),
    ],
)
def test_up_says_which_port_is_taken(tmp_path: Path, setting: str, port_name: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        result = up(tmp_path, "--once", **{port_name: holder.getsockname()[1]})
    assert result.returncode == 2
    assert "already in use" in result.stderr
    assert setting in result.stderr
    assert not (tmp_path / ".costline" / "api_tokens.yaml").exists()  # nothing started, nothing written
