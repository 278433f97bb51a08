"""The on-disk spool: round trip, size bound, torn writes, restarts and the one-owner lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from costline.ingest.spool import Spool, SpoolLockedError, encode_record, open_slot


def drain(spool: Spool, max_records: int = 7) -> list[bytes]:
    """Read and commit until nothing is pending, in small batches."""
    payloads: list[bytes] = []
    while spool.has_pending:
        batch = spool.read(max_records=max_records)
        payloads.extend(record.payload for record in batch.records)
        spool.commit(batch)
    return payloads


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("segment-*.spool"))


def test_records_come_back_oldest_first_across_segments(tmp_path: Path) -> None:
    payloads = [f"record {i} ".encode() * (i % 13 + 1) for i in range(500)]
    with Spool(tmp_path, 10_000_000, segment_bytes=4096) as spool:
        for i, payload in enumerate(payloads):
            assert spool.append(payload, items=i)
        assert len(segments(tmp_path)) > 3
        first = spool.read(max_records=3)
        assert [r.items for r in first.records] == [0, 1, 2]
        assert spool.read(max_records=3) == first  # reading alone never moves the position
        assert drain(spool) == payloads
        assert not spool.has_pending
        assert segments(tmp_path) == []  # every delivered segment is deleted


def test_appends_after_a_full_replay_start_a_new_segment(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000) as spool:
        spool.append(b"a")
        assert drain(spool) == [b"a"]
        spool.append(b"b")
        spool.append(b"c")
        assert drain(spool) == [b"b", b"c"]


def test_a_full_spool_refuses_new_records_and_keeps_the_old_ones(tmp_path: Path) -> None:
    record = encode_record(b"x" * 100)
    with Spool(tmp_path, len(record) * 10, segment_bytes=len(record) * 3) as spool:
        accepted = [spool.append(b"x" * 99 + bytes([i]), items=5) for i in range(15)]
        assert accepted == [True] * 10 + [False] * 5
        assert spool.dropped_items == 25
        assert spool.total_bytes <= spool.max_bytes
        assert [p[-1] for p in drain(spool)] == list(range(10))
        # room again once the old records were delivered
        assert spool.append(b"y" * 100)


def test_a_torn_record_at_the_end_is_skipped_and_the_rest_replayed(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000) as spool:
        for i in range(5):
            spool.append(b"event %d" % i)
    # a crash in the middle of the next write: half a record at the end of the segment
    (segment,) = segments(tmp_path)
    with segment.open("ab") as handle:
        handle.write(encode_record(b"never finished")[:9])
    with Spool(tmp_path, 1_000_000) as spool:
        spool.append(b"after the restart")
        assert drain(spool) == [*(b"event %d" % i for i in range(5)), b"after the restart"]
        assert spool.corrupt_bytes == 9


def test_a_damaged_payload_is_detected_by_its_crc(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000) as spool:
        spool.append(b"good")
        spool.append(b"will be damaged")
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    with Spool(tmp_path, 1_000_000) as spool:
        assert drain(spool) == [b"good"]
        assert spool.corrupt_bytes > 0


def test_the_committed_position_survives_a_restart(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000, segment_bytes=200) as spool:
        for i in range(40):
            spool.append(b"%02d" % i * 10)
        batch = spool.read(max_records=15)
        spool.commit(batch)
        spool.read(max_records=10)  # read but never committed (delivery failed): must come again
    with Spool(tmp_path, 1_000_000, segment_bytes=200) as spool:
        spool.append(b"new")
        assert drain(spool) == [b"%02d" % i * 10 for i in range(15, 40)] + [b"new"]


def test_a_damaged_position_file_replays_from_the_start(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000) as spool:
        spool.append(b"one")
        spool.append(b"two")
        spool.commit(spool.read(max_records=1))
    (tmp_path / "position").write_text("garbage")
    with Spool(tmp_path, 1_000_000) as spool:
        assert drain(spool) == [b"one", b"two"]  # at-least-once: a duplicate, never a loss


def test_a_second_owner_of_the_directory_is_refused(tmp_path: Path) -> None:
    with Spool(tmp_path, 1_000_000):
        with pytest.raises(SpoolLockedError, match="in use by another process"):
            Spool(tmp_path, 1_000_000)
        code = (
            "import sys\nfrom pathlib import Path\n"
            "from costline.ingest.spool import Spool, SpoolLockedError\n"
            "try:\n    Spool(Path(sys.argv[1]), 1_000_000)\n"
            "except SpoolLockedError as exc:\n    print(exc); sys.exit(3)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
        )
        assert other.returncode == 3, other.stderr
        assert "COSTLINE_SPOOL_DIR" in other.stdout
    # released on close
    Spool(tmp_path, 1_000_000).close()


def test_slots_give_each_owner_its_own_directory(tmp_path: Path) -> None:
    first = open_slot(tmp_path, 1_000_000)
    second = open_slot(tmp_path, 1_000_000)
    try:
        assert (first.directory.name, second.directory.name) == ("0", "1")
        first.append(b"left behind")
    finally:
        first.close()
        second.close()
    with open_slot(tmp_path, 1_000_000) as again:  # a restarted process takes slot 0 and its data
        assert drain(again) == [b"left behind"]
    with (
        open_slot(tmp_path, 1_000_000, slots=1),
        pytest.raises(SpoolLockedError, match="all 1 spool slots"),
    ):
        open_slot(tmp_path, 1_000_000, slots=1)
