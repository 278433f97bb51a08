"""Tail gateway log files into Kafka with a checkpoint per file: a restart neither skips nor re-sends.

Each file is read line by line through a gateway adapter; events are batched into the wire
format (`batch_messages`) and handed to a `send` function that returns only once Kafka has
acknowledged every message. Only then does the checkpoint advance, to the byte offset after
the last line of the batch, so a crash can at worst re-send one batch (whose `event_id`s the
pipeline drops as duplicates) and never skip a line.

The checkpoint of a path records the file's device and inode, the offset and line count, and
a digest of the file's first bytes. That is how rotation is recognised:

* the path now names another inode (rename-and-create rotation): the old file is read to its
  end first — found through the still-open descriptor, or after a restart by looking for its
  inode in the same directory — then the new file is read from offset 0;
* the file is shorter than the offset, or its first bytes changed (copytruncate, or a deleted
  file whose inode was reused): it is read again from 0.

A line without its newline is left for later while following (the writer may be mid-line),
taken at the end of a one-shot run when it is complete JSON, and always taken from a rotated
file (nothing will be appended to it). Gzip files (`.json.gz` from S3) are read as static files.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from costline.ingest.gateways.base import Adapter
from costline.ingest.wire import batch_messages
from costline.schemas.errors import BrokerError
from costline.schemas.usage_event import UsageEvent

logger = logging.getLogger(__name__)

#: Delivers messages to Kafka and returns only when all were acknowledged; raises otherwise.
SendFn = Callable[[Sequence[bytes]], None]
#: Called for every line that could not be turned into an event: (file, line number, reason).
ProblemFn = Callable[[Path, int, str], None]
#: What to do with a last line that has no newline yet.
Unterminated = Literal["wait", "if_json", "take"]

#: Bytes of a file's beginning whose digest identifies the file across restarts.
HEAD_BYTES = 256
CHECKPOINT_VERSION = 1
#: How long the tail waits for an unreachable broker before giving up at start.
BOOTSTRAP_TIMEOUT_S = 10.0


@dataclass
class Checkpoint:
    """How far one watched path has been delivered."""

    path: str
    device: int
    inode: int
    offset: int = 0
    line: int = 0
    head: str = ""
    head_len: int = 0
    updated_at: str = ""


class CheckpointStore:
    """One small JSON file per watched path, replaced atomically on every save."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _file(self, path: Path) -> Path:
        return self.directory / f"{hashlib.sha256(str(path).encode()).hexdigest()[:24]}.json"

    def load(self, path: Path) -> Checkpoint | None:
        """The checkpoint of `path` (absolute), or None when it has none or it is unreadable."""
        file = self._file(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            checkpoint = Checkpoint(
                **{key: data[key] for key in Checkpoint.__dataclass_fields__ if key in data}
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            logger.warning(
                "ignoring unreadable tail checkpoint %s (%s); %s is read from the start", file, exc, path
            )
            return None
        return checkpoint if checkpoint.path == str(path) else None

    def save(self, checkpoint: Checkpoint) -> None:
        """Write durably: temp file, fsync, rename over the old checkpoint."""
        self.directory.mkdir(parents=True, exist_ok=True)
        checkpoint.updated_at = datetime.now(UTC).isoformat()
        payload = json.dumps({"version": CHECKPOINT_VERSION, **asdict(checkpoint)}, indent=1)
        target = self._file(Path(checkpoint.path))
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as stream:
                stream.write(payload)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


@dataclass
class TailStats:
    """What a tail delivered and what it could not read."""

    lines: int = 0
    events: int = 0
    messages: int = 0
    skipped: int = 0
    errors: int = 0
    bytes: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(2) == b"\x1f\x8b"


def _head_digest(path: Path, length: int) -> str | None:
    """Digest of the first `length` bytes (decompressed for gzip); None when the file is shorter."""
    try:
        with path.open("rb") as raw:
            stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if _is_gzip(path) else raw  # type: ignore[assignment]  # both are binary streams
            data = stream.read(length)
    except (OSError, EOFError):
        return None
    return hashlib.sha256(data).hexdigest() if len(data) == length else None


def _complete_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


class FileTailer:
    """One watched path: reads complete lines from its checkpoint, delivers, advances."""

    def __init__(
        self,
        path: Path | str,
        adapter: Adapter,
        checkpoints: CheckpointStore,
        send: SendFn,
        *,
        stats: TailStats | None = None,
        on_problem: ProblemFn | None = None,
        on_progress: Callable[[int], None] | None = None,
        batch_events: int = 500,
        batch_bytes: int = 4 << 20,
    ) -> None:
        self.path = Path(os.path.abspath(path))
        self.adapter = adapter
        self.checkpoints = checkpoints
        self.send = send
        self.stats = stats if stats is not None else TailStats()
        self.on_problem = on_problem
        self.on_progress = on_progress
        self.batch_events = batch_events
        self.batch_bytes = batch_bytes
        self._raw: IO[bytes] | None = None
        self._stream: IO[bytes] | None = None
        self._reading: Path = self.path  # the file actually open (a rotated predecessor's own name)
        self._identity = (0, 0)
        self._gzip = False
        self._draining = False  # reading a rotated predecessor: switch to the path at its end
        self._offset = 0
        self._line = 0
        self._saved_offset = 0
        self._head = ""
        self._head_len = 0
        self._reported = 0  # progress position last reported

    # --- opening -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the file where its checkpoint says, finishing a predecessor rotated away meanwhile."""
        checkpoint = self.checkpoints.load(self.path)
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            status = None
        if checkpoint is not None:
            identity = (checkpoint.device, checkpoint.inode)
            if status is not None and (status.st_dev, status.st_ino) == identity:
                if self._unchanged(self.path, checkpoint):
                    self._open(self.path, checkpoint.offset, checkpoint.line, checkpoint)
                    return
                logger.info(
                    "%s was truncated or replaced since its checkpoint; reading it from the start", self.path
                )
            else:
                predecessor = self._find_predecessor(checkpoint)
                if predecessor is not None:
                    logger.info("%s was rotated to %s; finishing that first", self.path, predecessor)
                    self._open(predecessor, checkpoint.offset, checkpoint.line, checkpoint)
                    self._draining = True
                    return
        if status is not None:
            self._open(self.path, 0, 0, None)

    def _unchanged(self, file: Path, checkpoint: Checkpoint) -> bool:
        try:
            size = file.stat().st_size
        except OSError:
            return False
        if not _is_gzip(file) and size < checkpoint.offset:
            return False
        return checkpoint.head_len == 0 or _head_digest(file, checkpoint.head_len) == checkpoint.head

    def _find_predecessor(self, checkpoint: Checkpoint) -> Path | None:
        """The rotated file that still has the checkpoint's inode, in the path's directory."""
        try:
            candidates = list(self.path.parent.iterdir())
        except OSError:
            return None
        for candidate in candidates:
            try:
                status = candidate.stat()
            except OSError:
                continue
            if (status.st_dev, status.st_ino) == (
                checkpoint.device,
                checkpoint.inode,
            ) and candidate.is_file():
                return candidate if self._unchanged(candidate, checkpoint) else None
        return None

    def _open(self, file: Path, offset: int, line: int, checkpoint: Checkpoint | None) -> None:
        raw = file.open("rb")
        status = os.fstat(raw.fileno())
        self._gzip = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream: IO[bytes] = gzip.GzipFile(fileobj=raw) if self._gzip else raw  # type: ignore[assignment]  # both are binary streams
        stream.seek(offset)
        self._raw, self._stream, self._reading = raw, stream, file
        self._identity = (status.st_dev, status.st_ino)
        self._offset = self._saved_offset = offset
        self._line = line
        self._head = checkpoint.head if checkpoint is not None else ""
        self._head_len = checkpoint.head_len if checkpoint is not None else 0
        self._reported = self._position()

    def _close_stream(self) -> None:
        for stream in (self._stream, self._raw):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stream = self._raw = None

    def close(self) -> None:
        """Release the file (the checkpoint is already saved after every delivery)."""
        self._close_stream()

    # --- progress ------------------------------------------------------------------------------

    def _position(self) -> int:
        """Bytes of the file on disk read so far (compressed bytes for gzip)."""
        if self._raw is None:
            return 0
        return self._raw.tell() if self._gzip else self._offset

    def pending_bytes(self) -> int:
        """Bytes on disk not yet delivered (the backfill still to do), including after a rotation."""
        pending = 0
        if self._raw is not None:
            with contextlib.suppress(OSError):
                pending += max(0, os.fstat(self._raw.fileno()).st_size - self._position())
        if self._raw is None or self._draining:
            with contextlib.suppress(OSError):
                pending += self.path.stat().st_size
        return pending

    def _report_progress(self) -> None:
        position = self._position()
        if self.on_progress is not None and position > self._reported:
            self.on_progress(position - self._reported)
        self._reported = position

    # --- reading -------------------------------------------------------------------------------

    def poll(self, unterminated: Unterminated = "wait") -> int:
        """Deliver every complete line available now, following rotation; bytes consumed."""
        consumed = 0
        if self._stream is None:
            if not self.path.exists():
                return 0
            self._open(self.path, 0, 0, None)
        for _ in range(100):  # each turn follows one rotation; more in one poll would be a loop
            if self._draining or self._gzip:
                consumed += self._read_available("take" if self._draining else "if_json")
            else:
                consumed += self._read_available(unterminated)
            change = self._change()
            if change is None:
                break
            if change == "truncated":
                logger.info("%s was truncated; reading it again from the start", self.path)
                if self._stream is None:
                    break
                self._stream.seek(0)
                self._offset = self._line = self._reported = 0
                self._head, self._head_len = "", 0
                self._save()
                continue
            if change == "replaced" and not self._draining:
                consumed += self._read_available("take")  # what was written before the rename
            self._draining = False
            self._close_stream()
            if not self.path.exists():
                break
            self._open(self.path, 0, 0, None)
            self._save()
        return consumed

    def _change(self) -> Literal["truncated", "replaced"] | None:
        if self._draining:
            return "replaced"
        if self._gzip or self._raw is None:
            return None
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None  # moved away and not recreated yet: keep reading the open file
        if (status.st_dev, status.st_ino) != self._identity:
            return "replaced"
        if os.fstat(self._raw.fileno()).st_size < self._offset:
            return "truncated"
        return None

    def _read_available(self, unterminated: Unterminated) -> int:
        stream = self._stream
        if stream is None:
            return 0
        start = self._offset
        events: list[UsageEvent] = []
        batch_bytes = 0
        while True:
            line = stream.readline()
            if not line:
                break
            if not line.endswith(b"\n") and (
                unterminated == "wait" or (unterminated == "if_json" and not _complete_json(line))
            ):
                stream.seek(self._offset)  # leave the partial line for the next poll
                break
            self._offset += len(line)
            self._line += 1
            self.stats.lines += 1
            batch_bytes += len(line)
            for result in self.adapter.parse_line(line):
                if result.event is not None:
                    events.append(result.event)
                elif result.kind == "skipped":
                    self.stats.skipped += 1
                    self.stats.skip_reasons[result.reason or "skipped"] += 1
                else:
                    self.stats.errors += 1
                    if self.on_problem is not None:
                        self.on_problem(self._reading, self._line, result.reason or "unparseable")
            if len(events) >= self.batch_events or batch_bytes >= self.batch_bytes:
                self._deliver(events)
                events, batch_bytes = [], 0
        self._deliver(events)
        return self._offset - start

    def _deliver(self, events: list[UsageEvent]) -> None:
        """Send, wait for the acknowledgement, then move the checkpoint past the delivered lines."""
        if events:
            messages = batch_messages(events)
            self.send(messages)
            self.stats.events += len(events)
            self.stats.messages += len(messages)
        if self._offset != self._saved_offset:
            self.stats.bytes += self._offset - self._saved_offset
            self._save()
        self._report_progress()

    def _save(self) -> None:
        if self._head_len < HEAD_BYTES and self._offset > self._head_len:
            length = min(self._offset, HEAD_BYTES)
            digest = _head_digest(self._reading, length)
            if digest is not None:
                self._head, self._head_len = digest, length
        device, inode = self._identity
        self.checkpoints.save(
            Checkpoint(
                path=str(self.path),
                device=device,
                inode=inode,
                offset=self._offset,
                line=self._line,
                head=self._head,
                head_len=self._head_len,
            )
        )
        self._saved_offset = self._offset


class Tail:
    """Several watched paths, polled in turn; `run` does a one-shot backfill or follows."""

    def __init__(
        self,
        paths: Iterable[Path | str],
        adapter: Adapter,
        checkpoints: CheckpointStore,
        send: SendFn,
        *,
        on_problem: ProblemFn | None = None,
        on_progress: Callable[[int], None] | None = None,
        batch_events: int = 500,
    ) -> None:
        self.stats = TailStats()
        self.tailers = [
            FileTailer(
                path,
                adapter,
                checkpoints,
                send,
                stats=self.stats,
                on_problem=on_problem,
                on_progress=on_progress,
                batch_events=batch_events,
            )
            for path in paths
        ]
        self._started = False

    def start(self) -> int:
        """Open every file at its checkpoint; returns the bytes still to deliver (the backfill)."""
        if not self._started:
            for tailer in self.tailers:
                tailer.start()
            self._started = True
        return sum(tailer.pending_bytes() for tailer in self.tailers)

    def set_progress(self, on_progress: Callable[[int], None] | None) -> None:
        """Report delivered bytes to `on_progress` (a progress bar) from now on."""
        for tailer in self.tailers:
            tailer.on_progress = on_progress

    def poll(self, unterminated: Unterminated = "wait") -> int:
        """One round over every file; bytes consumed."""
        self.start()
        return sum(tailer.poll(unterminated) for tailer in self.tailers)

    def run(
        self, *, follow: bool = False, poll_interval: float = 0.5, stop: threading.Event | None = None
    ) -> TailStats:
        """Deliver everything there is; with `follow`, keep polling until `stop` is set."""
        self.start()
        if not follow:
            self.poll("if_json")
            return self.stats
        while stop is None or not stop.is_set():
            if self.poll("wait") == 0:
                if stop is not None:
                    stop.wait(poll_interval)
                else:
                    time.sleep(poll_interval)
        return self.stats

    def close(self) -> None:
        """Release every file."""
        for tailer in self.tailers:
            tailer.close()


class KafkaSender:
    """A `SendFn` over kafka-python: sends, flushes, and waits for every acknowledgement."""

    def __init__(self, bootstrap_servers: str, topic: str, *, timeout: float = 30.0) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.topic = topic
        self.timeout = timeout
        self.bootstrap_servers = bootstrap_servers
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=bootstrap_servers,
                client_id="costline-tail",
                acks="all",
                linger_ms=5,
                max_block_ms=int(timeout * 1000),
                bootstrap_timeout_ms=int(min(timeout, BOOTSTRAP_TIMEOUT_S) * 1000),
            )
        except KafkaError as exc:
            raise BrokerError(
                f"cannot reach Kafka at {bootstrap_servers} to tail logs: {exc}; start the broker "
                "(`costline up`) or set COSTLINE_KAFKA_BOOTSTRAP_SERVERS"
            ) from exc

    def __call__(self, messages: Sequence[bytes]) -> None:
        from kafka.errors import KafkaError

        try:
            futures = [self._producer.send(self.topic, value=message) for message in messages]
            self._producer.flush(timeout=self.timeout)
            for future in futures:
                future.get(timeout=self.timeout)
        except KafkaError as exc:
            raise BrokerError(
                f"Kafka at {self.bootstrap_servers} did not acknowledge messages for {self.topic!r}: {exc}; "
                "nothing past the last checkpoint was marked done, so re-running the tail resumes there"
            ) from exc

    def close(self) -> None:
        """Flush and close the producer."""
        self._producer.close(timeout=self.timeout)
