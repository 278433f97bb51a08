"""The whole local stack in a real browser: `costline up` (broker, worker with the read API,
dashboard, demo traffic) as a child, every page opened in headless Chromium (Debian's package,
driven by Playwright), a screenshot of each saved, then Ctrl-C stops every child.

Screenshots land in `tests/artifacts/screenshots/<page>.png` (ignored by git) for a look.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.integration.conftest import unused_port

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
#: Flags for a quiet, sandbox-less headless Chromium that makes no calls of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Navigation title → screenshot name, in the sidebar's order.
PAGES = {
    "Overview": "overview",
    "Chargeback": "chargeback",
    "Team": "team",
    "Anomalies": "anomalies",
    "Recommendations": "recommendations",
    "Budgets and alerts": "budgets",
}
START_TIMEOUT_S = 300

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


class Up:
    """`costline up` as a child process whose output is collected line by line."""

    def __init__(self, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")}
        env |= {
            "COSTLINE_BROKER_PORT": str(unused_port()),
            "COSTLINE_METRICS_PORT": str(unused_port()),
            "COSTLINE_API_PORT": str(unused_port()),
            "COSTLINE_DASHBOARD_PORT": str(unused_port()),
            "COLUMNS": "160",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "costline", "up", "--demo-events", "600", "--traffic-rate", "1"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                raise AssertionError(f"costline up exited with {self.process.returncode}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout:.0f}s:\n{self.output}")
            time.sleep(0.2)

    def value(self, pattern: str) -> str:
        found = re.search(pattern, self.output)
        assert found, f"no {pattern!r} in:\n{self.output}"
        return found.group(1)

    def child_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"\bpid (\d+)", self.output)]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=90)
        finally:
            self._reader.join(timeout=5)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def settle(page: Page, title: str) -> None:
    """Wait until the page's title is shown, the script has finished and charts are drawn."""
    page.get_by_role("heading", name=title, exact=True).first.wait_for(timeout=60_000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count()
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        drawn = page.locator('[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg')
        if not running and drawn.count() >= charts.count():
            break
        time.sleep(0.3)
    page.wait_for_timeout(800)  # let Vega finish its transitions before the screenshot


def screenshot(page: Page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it."""
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 1000)'
    )
    page.set_viewport_size({"width": 1440, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


def test_every_page_renders_in_chromium_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    up = Up(tmp_path)
    try:
        up.wait_for("Running. Press Ctrl-C to stop everything.", START_TIMEOUT_S)
        url = up.value(r"dashboard (http://\S+)")
        token = up.value(r"token\s+(cl_\S+)")
        children = up.child_pids()
        assert len(children) >= 4, up.output  # broker, worker, dashboard, traffic
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 1000})
                page.goto(url)
                page.get_by_label("API token").fill(token)
                page.get_by_role("button", name="Sign in").click()
                for title, name in PAGES.items():
                    if title != "Overview":
                        page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
                    settle(page, title)
                    screenshot(page, SCREENSHOTS / f"{name}.png")
                    exceptions = page.locator('[data-testid="stException"]')
                    assert exceptions.count() == 0, f"{title}: {exceptions.first.inner_text()}"
                    if title == "Overview":
                        assert page.locator('[data-testid="stMetric"]').count() >= 4
                        assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 3
            finally:
                browser.close()
        for name in PAGES.values():
            assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000, name
    finally:
        code = up.stop()
    assert code == 0, up.output
    assert "stopped." in up.output
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == [], "children left running after Ctrl-C"
