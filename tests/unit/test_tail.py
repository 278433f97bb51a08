"""The tailer: checkpoints move only after delivery, restarts neither skip nor re-send, rotation
and truncation are followed. Kafka is replaced by a fake send function."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from costline.ingest.gateways import kong
from costline.ingest.tail import CheckpointStore, FileTailer, Tail
from costline.ingest.wire import decode_envelope

STARTED_MS = (int(time.time()) - 3_600) * 1000


def line(request_id: str) -> str:
    """A small Kong AI log line (one event)."""
    record: dict[str, Any] = {
        "request": {"id": request_id},
        "response": {"status": 200},
        "started_at": STARTED_MS,
        "ai": {
            "proxy": {
                "meta": {"provider_name": "openai", "request_model": "gpt-5-mini"},
                "usage": {"prompt_tokens": 100, "completion_tokens": 10},
            }
        },
    }
    return json.dumps(record) + "\n"


def write(path: Path, *ids: str, mode: str = "a") -> None:
    with path.open(mode, encoding="utf-8") as stream:
        stream.write("".join(line(i) for i in ids))


class FakeKafka:
    """Records every delivered event id; can fail on a chosen call to simulate a broker outage."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.ids: list[str] = []
        self.calls = 0
        self.fail_on_call = fail_on_call

    def __call__(self, messages: Sequence[bytes]) -> None:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise ConnectionError("broker down")
        for message in messages:
            self.ids.extend(event["event_id"] for event in decode_envelope(message))


def ids(*names: str) -> list[str]:
    return [f"kong:{name}" for name in names]


def new_tail(paths: Sequence[Path], store: CheckpointStore, kafka: FakeKafka, **kwargs: Any) -> Tail:
    return Tail(paths, kong.ADAPTER, store, kafka, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints")


def test_backfill_then_restart_sends_nothing_twice_and_then_only_new_lines(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    write(log, "a", "b", "c")
    kafka = FakeKafka()
    first = new_tail([log], store, kafka)
    assert first.start() == log.stat().st_size
    stats = first.run()
    first.close()
    assert kafka.ids == ids("a", "b", "c")
    assert (stats.lines, stats.events, stats.bytes) == (3, 3, log.stat().st_size)
    checkpoint = store.load(log.resolve())
    assert checkpoint is not None
    assert (checkpoint.offset, checkpoint.line, checkpoint.inode) == (
        log.stat().st_size,
        3,
        log.stat().st_ino,
    )

    again = new_tail([log], store, kafka)
    assert again.start() == 0
    again.run()
    again.close()
    assert kafka.ids == ids("a", "b", "c")

    write(log, "d", "e")
    later = new_tail([log], store, kafka)
    later.run()
    later.close()
    assert kafka.ids == ids("a", "b", "c", "d", "e")


def test_checkpoint_moves_only_after_delivery(tmp_path: Path, store: CheckpointStore) -> None:
    log = tmp_path / "kong.log"
    write(log, *"abcdef")
    broken = FakeKafka(fail_on_call=2)
    tail = new_tail([log], store, broken, batch_events=2)
    with pytest.raises(ConnectionError):
        tail.run()
    tail.close()
    assert broken.ids == ids("a", "b")  # the first batch was acknowledged, the second was not
    checkpoint = store.load(log.resolve())
    assert checkpoint is not None
    assert checkpoint.line == 2

    kafka = FakeKafka()
    resumed = new_tail([log], store, kafka, batch_events=2)
    resumed.run()
    resumed.close()
    assert kafka.ids == ids("c", "d", "e", "f")  # nothing skipped, nothing acknowledged re-sent


def test_a_partial_last_line_waits_for_its_newline_while_following(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    write(log, "a")
    partial = line("b")
    with log.open("a", encoding="utf-8") as stream:
        stream.write(partial[:25])
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    tail.poll("wait")
    assert kafka.ids == ids("a")
    with log.open("a", encoding="utf-8") as stream:
        stream.write(partial[25:])
    tail.poll("wait")
    tail.close()
    assert kafka.ids == ids("a", "b")


def test_a_complete_last_line_without_newline_is_taken_by_a_one_shot_run(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    log.write_text(line("a") + line("b").rstrip("\n"), encoding="utf-8")
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    tail.run()
    tail.close()
    assert kafka.ids == ids("a", "b")


def test_rotation_while_running_finishes_the_old_file_first(tmp_path: Path, store: CheckpointStore) -> None:
    log = tmp_path / "kong.log"
    write(log, "a", "b")
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    tail.poll("wait")
    write(log, "c")  # written just before rotation, not read yet
    log.rename(tmp_path / "kong.log.1")
    write(log, "d", "e")
    tail.poll("wait")
    write(log, "f")
    tail.poll("wait")
    tail.close()
    assert kafka.ids == ids("a", "b", "c", "d", "e", "f")


def test_rotation_while_stopped_finds_the_old_file_by_inode(tmp_path: Path, store: CheckpointStore) -> None:
    log = tmp_path / "kong.log"
    write(log, "a", "b")
    kafka = FakeKafka()
    first = new_tail([log], store, kafka)
    first.run()
    first.close()
    write(log, "c")
    log.rename(tmp_path / "kong.log.1")
    write(log, "d")

    restarted = new_tail([log], store, kafka)
    assert restarted.start() == len(line("c")) + len(line("d"))
    restarted.run()
    restarted.close()
    assert kafka.ids == ids("a", "b", "c", "d")
    again = new_tail([log], store, kafka)
    again.run()
    again.close()
    assert kafka.ids == ids("a", "b", "c", "d")


def test_rotated_file_gone_while_stopped_starts_the_new_file_from_zero(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    write(log, "a")
    kafka = FakeKafka()
    first = new_tail([log], store, kafka)
    first.run()
    first.close()
    log.unlink()
    write(log, "b")
    tail = new_tail([log], store, kafka)
    tail.run()
    tail.close()
    assert kafka.ids == ids("a", "b")


def test_truncation_is_read_again_from_the_start(tmp_path: Path, store: CheckpointStore) -> None:
    log = tmp_path / "kong.log"
    write(log, "a", "b", "c")
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    tail.poll("wait")
    write(log, "d", mode="w")  # copytruncate: same inode, shorter than the offset
    tail.poll("wait")
    tail.close()
    assert kafka.ids == ids("a", "b", "c", "d")


def test_replaced_content_is_recognised_on_restart_even_when_longer(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    write(log, "a")
    kafka = FakeKafka()
    first = new_tail([log], store, kafka)
    first.run()
    first.close()
    write(log, "x", "y", "z", mode="w")  # truncated and refilled past the old offset while stopped
    restarted = new_tail([log], store, kafka)
    restarted.run()
    restarted.close()
    assert kafka.ids == ids("a", "x", "y", "z")


def test_problems_are_reported_with_file_and_line_and_skips_counted(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "kong.log"
    log.write_text(line("a") + "{not json\n" + json.dumps({"request": {"id": "plain"}}) + "\n" + line("b"))
    problems: list[tuple[Path, int, str]] = []
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka, on_problem=lambda f, n, r: problems.append((f, n, r)))
    stats = tail.run()
    tail.close()
    assert kafka.ids == ids("a", "b")
    assert [(f.name, n) for f, n, _ in problems] == [("kong.log", 2)]
    assert (stats.errors, stats.skipped) == (1, 1)
    # line numbers continue across restarts
    log.write_text(log.read_text() + "{still not json\n")
    later = new_tail([log], store, kafka, on_problem=lambda f, n, r: problems.append((f, n, r)))
    later.run()
    later.close()
    assert [(f.name, n) for f, n, _ in problems] == [("kong.log", 2), ("kong.log", 5)]


def test_progress_reports_every_byte_of_the_backfill(tmp_path: Path, store: CheckpointStore) -> None:
    first, second = tmp_path / "one.log", tmp_path / "two.log"
    write(first, *"abc")
    write(second, *"de")
    kafka = FakeKafka()
    tail = new_tail([first, second], store, kafka, batch_events=2)
    total = tail.start()
    done: list[int] = []
    tail.set_progress(done.append)
    tail.run()
    tail.close()
    assert sum(done) == total == first.stat().st_size + second.stat().st_size
    assert sorted(kafka.ids) == sorted(ids(*"abcde"))


def test_gzip_files_are_tailed_as_static_files(tmp_path: Path, store: CheckpointStore) -> None:
    archive = tmp_path / "kong.log.gz"
    with gzip.open(archive, "wt", encoding="utf-8") as stream:
        stream.write(line("a") + line("b"))
    kafka = FakeKafka()
    tail = new_tail([archive], store, kafka)
    assert tail.start() == archive.stat().st_size
    tail.run()
    tail.close()
    again = new_tail([archive], store, kafka)
    again.run()
    again.close()
    assert kafka.ids == ids("a", "b")


def test_follow_waits_for_a_missing_file_and_stops_on_the_event(
    tmp_path: Path, store: CheckpointStore
) -> None:
    log = tmp_path / "later.log"
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    stop = threading.Event()
    worker = threading.Thread(target=tail.run, kwargs={"follow": True, "poll_interval": 0.01, "stop": stop})
    worker.start()
    try:
        write(log, "a")
        deadline = time.monotonic() + 5
        while kafka.ids != ids("a") and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(timeout=5)
        tail.close()
    assert kafka.ids == ids("a")
    assert not worker.is_alive()


def test_unreadable_checkpoint_starts_over_instead_of_failing(tmp_path: Path, store: CheckpointStore) -> None:
    log = tmp_path / "kong.log"
    write(log, "a")
    tailer = FileTailer(log, kong.ADAPTER, store, FakeKafka())
    tailer.start()
    tailer.poll("if_json")
    tailer.close()
    (checkpoint_file,) = list(store.directory.glob("*.json"))
    checkpoint_file.write_text("{garbage", encoding="utf-8")
    kafka = FakeKafka()
    tail = new_tail([log], store, kafka)
    tail.run()
    tail.close()
    assert kafka.ids == ids("a")
    assert not [p for p in os.listdir(store.directory) if p.startswith(".tmp-")]


def test_tail_cli_delivers_resumes_and_reports_bad_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from costline.cli_ingest import EXIT_SOME_LINES_FAILED, ingest_app
    from costline.ingest import tail as tail_module

    kafka = FakeKafka()

    class FakeSender:
        def __init__(self, bootstrap_servers: str, topic: str) -> None:
            self.topic = topic

        def __call__(self, messages: Sequence[bytes]) -> None:
            kafka(messages)

        def close(self) -> None:
            pass

    monkeypatch.setattr(tail_module, "KafkaSender", FakeSender)
    log = tmp_path / "kong.log"
    log.write_text(line("a") + "{bad\n" + line("b"), encoding="utf-8")
    args = ["tail", "--format", "kong", "--checkpoint-dir", str(tmp_path / "cp"), str(log)]
    first = CliRunner().invoke(ingest_app, args)
    assert first.exit_code == EXIT_SOME_LINES_FAILED, first.output
    assert f"{log}:2: not JSON" in first.stderr
    assert "delivered 2 event(s)" in first.stderr
    second = CliRunner().invoke(ingest_app, args)
    assert second.exit_code == 0, second.output
    assert "delivered 0 event(s)" in second.stderr
    assert kafka.ids == ids("a", "b")
    missing = CliRunner().invoke(ingest_app, ["tail", "--format", "kong", str(tmp_path / "none.log")])
    assert missing.exit_code == 2
    assert "no such file" in missing.stderr
