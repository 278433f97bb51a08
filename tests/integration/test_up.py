"""The README's run command: `costline up` brings up broker and worker and stores a demo batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import unused_port

pytestmark = pytest.mark.integration


def up(tmp_path: Path, metrics_port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")}
    env |= {
        "COSTLINE_BROKER_PORT": str(unused_port()),
        "COSTLINE_METRICS_PORT": str(metrics_port),
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
    result = up(tmp_path, unused_port(), "--once", "--demo-events", "400")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stored (last 7 days): 400 events" in result.stdout
    assert "acme-llama-ft-v2" in result.stdout  # the unknown model is stored unpriced, not dropped
    assert (tmp_path / ".costline" / "store").is_dir()


def test_up_says_which_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        result = up(tmp_path, holder.getsockname()[1], "--once")
    assert result.returncode == 2
    assert "already in use" in result.stderr
    assert "COSTLINE_METRICS_PORT" in result.stderr
