"""Run the real costline worker for tests: in a thread (shares the session's chDB) or as a process.

In a thread the worker writes the same embedded store the test reads, so a test can look at rows
as they land and even take the store away under it. As a child process it can be SIGKILLed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import faust

from costline.pipeline.worker import Worker, build_worker
from costline.schemas.settings import Settings

#: Generous bound for a Faust consumer to join its group on Tansu (observed 3-20 s).
JOIN_TIMEOUT_S = 90.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `condition` until true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class _ThreadSafeFaustWorker(faust.Worker):
    """Signal handlers can only be installed from the main thread; the test owns signals anyway."""

    def install_signal_handlers(self) -> None:
        return None


class ThreadedWorker:
    """The worker of `build_worker(settings)` on its own event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker: Worker = build_worker(settings)
        self.loop = asyncio.new_event_loop()
        self._faust = _ThreadSafeFaustWorker(
            self.worker.app,
            loop=self.loop,
            quiet=True,
            loglevel="warning",
            override_logging=False,
            redirect_stdouts=False,
        )
        self._thread = threading.Thread(target=self._run, name="costline-test-worker", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._faust.start())
            self.loop.run_forever()
        except BaseException as exc:  # surfaced to the test by `check`
            self._error = exc

    def start(self) -> ThreadedWorker:
        self._thread.start()
        return self

    def check(self) -> None:
        """Fail loudly if the worker thread died."""
        if self._error is not None:
            raise AssertionError(f"worker thread died: {self._error!r}") from self._error

    @property
    def metrics(self):  # type: ignore[no-untyped-def]
        return self.worker.deps.metrics

    def stop(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._faust.stop(), self.loop)
        try:
            future.result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
            self.worker.deps.sink.close()


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `costline worker` child use `settings`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COSTLINE_")} | settings.to_env()


class ProcessWorker:
    """`python -m costline worker` as a child process that can be killed without warning."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessWorker:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "costline", "worker", "--loglevel", "warning"],
            env=worker_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def metrics(self) -> Mapping[str, float]:
        """The worker's /metrics counters, {} while it is not serving yet."""
        url = f"http://127.0.0.1:{self.settings.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
