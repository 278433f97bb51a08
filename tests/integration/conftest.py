"""Integration fixtures: one real Tansu broker for the whole test session.

Starting a broker is quick, but every test that shares it saves a start and keeps the session
to one child process. Tests must use their own topic and group names (see `unique_name`)
because the broker keeps everything until the session ends.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from costline.broker import LocalBroker
from costline.schemas.settings import Settings


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now, picked by the OS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def unique_name(prefix: str) -> str:
    """A topic or group name no other test of the session uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def free_port() -> int:
    """A port for a test's own broker or listener."""
    return unused_port()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """The session's broker on a free port; COSTLINE_BROKER_BINARY picks another tansu binary."""
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    local = LocalBroker(unused_port(), binary=Settings().broker_binary, log_path=log_path)
    local.start()
    yield local
    local.stop()
