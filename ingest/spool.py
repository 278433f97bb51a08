"""An append-only on-disk spool: where the producer keeps envelopes while Kafka is unreachable.

Records go into segment files (``segment-<seq>.spool``) in one directory. Each record is::

    >III header: payload length, item count, CRC-32 of (length, items, payload)
    payload bytes

A process that dies mid-write leaves a torn record at the end of its last segment; the CRC (and
the length) detect it, and the reader skips the rest of that segment. A newly opened spool never
appends to an old segment, so a torn tail is always the end of a sealed segment.

Reading is oldest first from a committed position (``position``: segment and offset) that is
written atomically and survives a restart. `read` never moves it; `commit` does, once the records
of a batch were delivered, and only then deletes the segments it has fully passed. So a crash
between delivery and commit replays a batch again: delivery is at-least-once.

The total size on disk is bounded. When the bound is reached new records are refused and counted,
and the old ones are kept: they are replayed first, so they are the ones worth keeping.

One process per directory: a lock file (``spool.lock``, an advisory ``flock``) refuses a second
owner with `SpoolLockedError`. `open_slot` picks the first free numbered subdirectory of a root,
so several processes of one application (e.g. web server workers) each get their own spool, and
a restarted process takes over, and replays, the slot a dead one left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import sys
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from costline.schemas.errors import CostlineError

logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">III")
_COUNTS = struct.Struct(">II")
_SEGMENT = re.compile(r"^segment-(\d{12})\.spool$")
_POSITION_FILE = "position"
_LOCK_FILE = "spool.lock"

#: No record is larger than this; a header claiming more is damage, not data.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: Upper bound of one segment file; smaller spools use an eighth of their limit.
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
#: How many numbered slots `open_slot` tries under a root.
DEFAULT_SLOTS = 64


class SpoolError(CostlineError):
    """The spool directory cannot be used; the message names it and what to do."""


class SpoolLockedError(SpoolError):
    """Another process (or another Spool in this one) owns the spool directory."""


@dataclass(frozen=True)
class SpoolRecord:
    """One record as appended: the payload and the number of items (events) it carries."""

    payload: bytes
    items: int


@dataclass(frozen=True)
class SpoolBatch:
    """Records read from the committed position; `commit` it once they were delivered."""

    records: tuple[SpoolRecord, ...]
    end: tuple[int, int]

    @property
    def items(self) -> int:
        """Items (events) in all records of the batch."""
        return sum(record.items for record in self.records)


def _segment_name(seq: int) -> str:
    return f"segment-{seq:012d}.spool"


def _crc(length: int, items: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_COUNTS.pack(length, items))) & 0xFFFFFFFF


def encode_record(payload: bytes, items: int = 1) -> bytes:
    """The bytes of one record on disk (header and payload)."""
    return _HEADER.pack(len(payload), items, _crc(len(payload), items, payload)) + payload


class Spool:
    """A bounded, append-only, restart-safe queue of byte records in one directory.

    Thread-safe (one internal lock), but meant for one writer and reader: the producer's sender.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int | None = None,
        fsync: bool = False,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"spool max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(4096, min(MAX_SEGMENT_BYTES, max_bytes // 8))
        self._fsync = fsync
        self._lock = threading.RLock()
        self._owner_pid = os.getpid()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                f"cannot create the spool directory {self.directory}: {exc.strerror or exc}; "
                "point COSTLINE_SPOOL_DIR at a writable directory"
            ) from exc
        self._lock_fd: int | None = _acquire_lock(self.directory / _LOCK_FILE)
        #: segment seq -> bytes in the file
        self._sizes: dict[int, int] = {}
        self._write_fd: int | None = None
        self._write_seq = 0
        self._dropped_items = 0
        self._dropped_records = 0
        self._corrupt_bytes = 0
        self._damaged: set[tuple[int, int]] = set()
        self._full_logged = False
        try:
            self._load()
        except BaseException:
            self._release_lock()
            raise

    # --- state on disk -------------------------------------------------------------------------

    def _load(self) -> None:
        for entry in os.scandir(self.directory):
            match = _SEGMENT.match(entry.name)
            if match and entry.is_file():
                self._sizes[int(match.group(1))] = entry.stat().st_size
        self._position = self._read_position()
        # Segments before the committed one were delivered; a crash came before their deletion.
        for seq in [s for s in self._sizes if s < self._position[0]]:
            self._delete_segment(seq)
        # Never append to an old segment: its tail may be torn.
        self._write_seq = max([*self._sizes, self._position[0] - 1]) + 1
        if self._sizes:
            logger.info(
                "spool %s: %d segment(s), %d bytes to replay",
                self.directory,
                len(self._sizes),
                self.pending_bytes,
            )

    def _read_position(self) -> tuple[int, int]:
        path = self.directory / _POSITION_FILE
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            return (min(self._sizes, default=0), 0)
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("spool %s: unreadable position file (%s); replaying from the start", path, exc)
            return (min(self._sizes, default=0), 0)
        try:
            seq_text, offset_text = text.split()
            seq, offset = int(seq_text), int(offset_text)
        except ValueError:
            logger.warning("spool %s: damaged position file %r; replaying from the start", path, text[:80])
            return (min(self._sizes, default=0), 0)
        if seq < 0 or offset < 0:
            return (min(self._sizes, default=0), 0)
        return (seq, offset)

    def _write_position(self) -> None:
        seq, offset = self._position
        path = self.directory / _POSITION_FILE
        temporary = self.directory / f"{_POSITION_FILE}.tmp"
        with temporary.open("w", encoding="ascii") as handle:
            handle.write(f"{seq} {offset}\n")
            if self._fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)

    def _delete_segment(self, seq: int) -> None:
        if seq == self._write_seq and self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
            self._write_seq = seq + 1
        with contextlib.suppress(FileNotFoundError):
            (self.directory / _segment_name(seq)).unlink()
        self._sizes.pop(seq, None)

    # --- writing -------------------------------------------------------------------------------

    def append(self, payload: bytes, items: int = 1) -> bool:
        """Append one record; False (and counted as dropped) when the spool is full or failing."""
        record = encode_record(payload, items)
        with self._lock:
            self._check_open()
            if len(payload) > MAX_RECORD_BYTES or self.total_bytes + len(record) > self.max_bytes:
                self._count_drop(items, "full")
                return False
            self._full_logged = False
            try:
                fd = self._writer(len(record))
                _write_all(fd, record)
            except OSError as exc:
                self._undo_partial_write()
                self._count_drop(items, f"write failed: {exc}")
                return False
            self._sizes[self._write_seq] += len(record)
            return True

    def _writer(self, record_bytes: int) -> int:
        size = self._sizes.get(self._write_seq, 0)
        if self._write_fd is not None and size and size + record_bytes > self.segment_bytes:
            self._seal()
        if self._write_fd is None:
            path = self.directory / _segment_name(self._write_seq)
            self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            self._sizes[self._write_seq] = 0
        return self._write_fd

    def _seal(self) -> None:
        """Close the segment being written; the next record starts a new one."""
        if self._write_fd is None:
            return
        if self._fsync:
            os.fsync(self._write_fd)
        os.close(self._write_fd)
        self._write_fd = None
        self._write_seq += 1

    def _undo_partial_write(self) -> None:
        """After a failed write, cut the segment back to its last whole record, or seal it."""
        if self._write_fd is None:
            return
        try:
            os.ftruncate(self._write_fd, self._sizes.get(self._write_seq, 0))
        except OSError:
            # The reader will find the torn record by its CRC; just never append after it.
            fd, self._write_fd = self._write_fd, None
            with contextlib.suppress(OSError):
                self._sizes[self._write_seq] = os.fstat(fd).st_size
            with contextlib.suppress(OSError):
                os.close(fd)
            self._write_seq += 1

    def _count_drop(self, items: int, reason: str) -> None:
        self._dropped_items += items
        self._dropped_records += 1
        if not self._full_logged:
            self._full_logged = True
            logger.warning(
                "spool %s refused a record (%s; %d of %d bytes used): new events are dropped, "
                "the spooled ones are kept for replay",
                self.directory,
                reason,
                self.total_bytes,
                self.max_bytes,
            )

    # --- reading -------------------------------------------------------------------------------

    def read(self, max_records: int = 64, max_bytes: int = 4 * 1024 * 1024) -> SpoolBatch:
        """Up to `max_records` records (and about `max_bytes`) from the committed position, oldest first.

        Does not move the position: call `commit(batch)` after the records were delivered.
        """
        with self._lock:
            self._check_open()
            seq, offset = self._position
            records: list[SpoolRecord] = []
            size = 0
            handle: BinaryIO | None = None
            handle_seq = -1
            try:
                while len(records) < max_records and size < max_bytes:
                    seq, offset = self._normalize(seq, offset)
                    end = self._sizes.get(seq)
                    if end is None or offset >= end:
                        break  # caught up with the writer
                    if handle is None or handle_seq != seq:
                        if handle is not None:
                            handle.close()
                        handle, handle_seq = (self.directory / _segment_name(seq)).open("rb"), seq
                    record, next_offset = _read_record(handle, offset, end)
                    if record is None:
                        self._report_damage(seq, offset, end)
                        if seq == self._write_seq and self._write_fd is not None:
                            self._seal()
                        seq, offset = seq + 1, 0
                        continue
                    records.append(record)
                    size += len(record.payload)
                    offset = next_offset
            finally:
                if handle is not None:
                    handle.close()
            return SpoolBatch(tuple(records), self._normalize(seq, offset))

    def _report_damage(self, seq: int, offset: int, end: int) -> None:
        if (seq, offset) in self._damaged:
            return  # read again after a failed replay: counted and logged already
        self._damaged.add((seq, offset))
        self._corrupt_bytes += end - offset
        logger.warning(
            "spool %s: damaged record in %s at byte %d (a write torn by a crash?); "
            "skipping the %d bytes after it",
            self.directory,
            _segment_name(seq),
            offset,
            end - offset,
        )

    def _normalize(self, seq: int, offset: int) -> tuple[int, int]:
        """Move a position at the end of a sealed segment (or in a missing one) to the next segment."""
        while True:
            size = self._sizes.get(seq)
            active = seq == self._write_seq and self._write_fd is not None
            if size is not None and (offset < size or active):
                return seq, offset
            later = [s for s in self._sizes if s > seq]
            if not later:
                return seq, offset
            seq, offset = min(later), 0

    def commit(self, batch: SpoolBatch) -> None:
        """Mark `batch` delivered: move the position past it and delete the segments it finished."""
        with self._lock:
            self._check_open()
            if batch.end < self._position:
                return  # an older batch: already committed
            seq, offset = batch.end
            for old in [s for s in self._sizes if s < seq]:
                self._delete_segment(old)
            if seq in self._sizes and offset >= self._sizes[seq]:
                # Fully read: sealed or the active one, it goes (a new append opens a new segment).
                self._delete_segment(seq)
                seq, offset = self._normalize(seq + 1, 0)
            self._position = (seq, offset)
            self._write_position()

    # --- state ---------------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        """Bytes of all segment files, read or not: what the size bound applies to."""
        return sum(self._sizes.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes after the committed position (damaged tails included until they are read)."""
        with self._lock:
            seq, offset = self._position
            return sum(size - (offset if s == seq else 0) for s, size in self._sizes.items() if s >= seq)

    @property
    def has_pending(self) -> bool:
        """True while some record was not committed yet."""
        return self.pending_bytes > 0

    @property
    def dropped_items(self) -> int:
        """Items refused by `append` (spool full or a failed write) since this Spool was opened."""
        return self._dropped_items

    @property
    def corrupt_bytes(self) -> int:
        """Bytes skipped by `read` because a record was torn or damaged."""
        return self._corrupt_bytes

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._lock_fd is None

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise SpoolError(f"the spool {self.directory} is closed")

    def close(self) -> None:
        """Flush the segment being written and release the directory. Safe to call twice."""
        with self._lock:
            if self._lock_fd is None:
                return
            if os.getpid() != self._owner_pid:
                # A forked child: the lock and files belong to the parent; leave them alone.
                self._lock_fd = None
                return
            if self._write_fd is not None:
                if self._fsync:
                    os.fsync(self._write_fd)
                os.close(self._write_fd)
                self._write_fd = None
                if self._sizes.get(self._write_seq) == 0:
                    self._delete_segment(self._write_seq)
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            _release(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r}, pending_bytes={self.pending_bytes})"


def _read_record(handle: BinaryIO, offset: int, end: int) -> tuple[SpoolRecord | None, int]:
    """The record at `offset`, or None when it is torn or damaged."""
    handle.seek(offset)
    header = handle.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None, end
    length, items, crc = _HEADER.unpack(header)
    if length > MAX_RECORD_BYTES or offset + _HEADER.size + length > end:
        return None, end
    payload = handle.read(length)
    if len(payload) < length or _crc(length, items, payload) != crc:
        return None, end
    return SpoolRecord(payload, items), offset + _HEADER.size + length


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _acquire_lock(path: Path) -> int:
    """Lock `path` for this Spool or raise SpoolLockedError naming the owner's pid."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise SpoolError(
            f"cannot open the spool lock file {path}: {exc.strerror or exc}; "
            "point COSTLINE_SPOOL_DIR at a writable directory"
        ) from exc
    try:
        _lock_nonblocking(fd)
    except OSError as exc:
        owner = _read_owner(fd)
        os.close(fd)
        raise SpoolLockedError(
            f"the spool directory {path.parent} is in use by another process{owner}; "
            "give each process its own spool directory (COSTLINE_SPOOL_DIR), or stop the other one"
        ) from exc
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _read_owner(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid = os.read(fd, 32).decode("ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""


if sys.platform == "win32":  # pragma: no cover - POSIX CI
    import msvcrt

    def _lock_nonblocking(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _release(fd: int) -> None:
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        os.close(fd)

else:
    import fcntl

    def _lock_nonblocking(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _release(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_slot(
    root: Path,
    max_bytes: int,
    *,
    slots: int = DEFAULT_SLOTS,
    segment_bytes: int | None = None,
    fsync: bool = False,
) -> Spool:
    """The spool of the first free slot (`root/0`, `root/1`, ...) so processes never share one.

    A restarted process takes the lowest free slot again and so replays what a dead one left.
    Raises SpoolLockedError when all `slots` are taken.
    """
    for slot in range(slots):
        try:
            return Spool(root / str(slot), max_bytes, segment_bytes=segment_bytes, fsync=fsync)
        except SpoolLockedError:
            continue
    raise SpoolLockedError(
        f"all {slots} spool slots under {root} are in use by other processes; "
        "give this process its own COSTLINE_SPOOL_DIR"
    )
