"""The snapshot folder: what is written reads back; a damaged, truncated, foreign-key or
other-code file is refused before anything is unpickled; two are kept; a forked child
writes one without the parent pausing for the pickling."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ledger.adapters.memory_store import MemoryFactStore
from ledger.adapters.snapshot_files import ForkedSnapshots, SnapshotFiles, code_fingerprint
from ledger.application import snapshots
from ledger.application.pipeline import OUTBOX
from ledger.application.snapshots import SnapshotError, SnapshotHeader
from tests.ledger.unit.test_snapshots import _fed, _feed, _history, _hold_a_personal_copy, _pipeline, _state

KEY = b"k" * 32
CODE = "c" * 64


def _header(position: int = 7) -> SnapshotHeader:
    return SnapshotHeader(snapshots.FORMAT, position, "ab" * 32, position, (1, 3), ())


def test_write_then_read(tmp_path: Path) -> None:
    """A written snapshot reads back: same header, same body."""
    files = SnapshotFiles(tmp_path / "snaps", KEY, CODE)
    path = files.write(_header(), b"body bytes")
    loaded = files.read(path)
    assert loaded.header == _header() and loaded.body == b"body bytes"
    assert files.paths() == [path]


@pytest.mark.parametrize("offset", [0, 5, 20, 90, 100, -40, -1])
def test_any_damaged_byte_is_refused_as_corrupt(tmp_path: Path, offset: int) -> None:
    """One byte flipped anywhere (magic, code, header, body, MAC) and the file is refused."""
    files = SnapshotFiles(tmp_path, KEY, CODE)
    path = files.write(_header(), b"x" * 64)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError) as refused:
        files.read(path)
    assert refused.value.reason == "corrupt"


@pytest.mark.parametrize("keep", [0, 10, 60, 120])
def test_a_truncated_file_is_refused_as_corrupt(tmp_path: Path, keep: int) -> None:
    """A file cut short (a crash mid-copy, a full disk) is refused."""
    files = SnapshotFiles(tmp_path, KEY, CODE)
    path = files.write(_header(), b"x" * 64)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(SnapshotError) as refused:
        files.read(path)
    assert refused.value.reason == "corrupt"


def test_another_key_is_corrupt_and_other_code_is_stale(tmp_path: Path) -> None:
    """A file MAC'd under another deployment's key is refused as corrupt; one written by
    another version of the ledger (same key) as stale."""
    path = SnapshotFiles(tmp_path, KEY, CODE).write(_header(), b"body")
    with pytest.raises(SnapshotError) as other_key:
        SnapshotFiles(tmp_path, b"q" * 32, CODE).read(path)
    assert other_key.value.reason == "corrupt"
    with pytest.raises(SnapshotError) as other_code:
        SnapshotFiles(tmp_path, KEY, "d" * 64).read(path)
    assert other_code.value.reason == "stale"


def test_the_two_newest_are_kept_and_scratch_files_cleared(tmp_path: Path) -> None:
    """Writing a third snapshot prunes the oldest; what a killed child left is removed."""
    files = SnapshotFiles(tmp_path, KEY, CODE)
    for position in (10, 30, 20):
        files.write(_header(position), b"b")
    assert [p.name for p in files.paths()] == ["snapshot-000000000030.bin", "snapshot-000000000020.bin"]
    scratch = tmp_path / ".snapshot-000000000040.bin.123.tmp"
    scratch.write_bytes(b"half")
    files.clear_scratch()
    assert not scratch.exists() and len(files.paths()) == 2


def test_the_code_fingerprint_is_stable_and_hex() -> None:
    """The fingerprint is the same twice in a process and a SHA-256 hex digest."""
    first = code_fingerprint()
    assert first == code_fingerprint() and len(first) == 64 and int(first, 16) >= 0


def _done() -> tuple[list[tuple[str, int]], threading.Event, object]:
    outcomes: list[tuple[str, int]] = []
    finished = threading.Event()

    def on_done(outcome: str, position: int, seconds: float) -> None:
        assert seconds >= 0
        outcomes.append((outcome, position))
        finished.set()

    return outcomes, finished, on_done


def test_a_forked_child_writes_a_snapshot_that_restores(tmp_path: Path) -> None:
    """``take`` forks, the child writes the state, the watcher reports ``written``; the file
    restores to the state of a full replay."""
    pipeline = _fed(1200, 6)
    store = pipeline.store
    assert isinstance(store, MemoryFactStore)
    outcomes, finished, on_done = _done()
    files = SnapshotFiles(tmp_path, KEY, CODE)
    forked = ForkedSnapshots(files, 100, on_done)  # type: ignore[arg-type]
    assert forked.due(pipeline.ledger.head_position)
    assert forked.take(pipeline)
    assert finished.wait(120), "the snapshot child never finished"
    forked.stop()
    assert outcomes == [("written", pipeline.ledger.head_position)]
    assert not forked.due(pipeline.ledger.head_position)
    loaded = files.read(files.paths()[0])
    fresh = _pipeline(store, recover=False)
    snapshots.restore(fresh, loaded.header, loaded.body, published=store.published_position(OUTBOX))
    fresh.recover()
    assert _state(fresh) == _state(_pipeline(store))


def test_a_child_that_finds_personal_data_writes_nothing(tmp_path: Path) -> None:
    """When the state holds a copy of personal data, the child writes no file and the
    watcher reports ``personal_data``."""
    pipeline = _fed(600, 2)
    _hold_a_personal_copy(pipeline)
    outcomes, finished, on_done = _done()
    files = SnapshotFiles(tmp_path, KEY, CODE)
    forked = ForkedSnapshots(files, 1, on_done)  # type: ignore[arg-type]
    assert forked.take(pipeline)
    assert finished.wait(120)
    forked.stop()
    assert outcomes == [("personal_data", pipeline.ledger.head_position)]
    assert files.paths() == [] and list(tmp_path.iterdir()) == []


def test_no_snapshot_while_the_deriver_is_behind_an_erasure() -> None:
    """A snapshot waits while an erasure is stored that the deriver has not reached (it
    still holds the person's values), and while an outbox chunk is pending."""
    raw, _ = _history(900, 4)
    store = MemoryFactStore()
    pipeline = _pipeline(store)
    cut = next(i for i, line in enumerate(raw) if "party.erased" in line)
    _feed(pipeline, raw[:cut])
    pipeline.ingest(raw[cut : cut + 5])
    assert snapshots.not_ready(pipeline) is not None
    with pytest.raises(SnapshotError) as busy:
        snapshots.dump(pipeline)
    assert busy.value.reason == "busy"
    chunk = pipeline.outbox_chunk()
    assert chunk is not None and snapshots.not_ready(pipeline) is not None  # pending
    pipeline.outbox_done(chunk)
    while (chunk := pipeline.outbox_chunk()) is not None:
        pipeline.outbox_done(chunk)
    assert snapshots.not_ready(pipeline) is None


def test_a_fork_that_fails_stops_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the system cannot fork (no memory, no process left), ``take`` reports ``failed``,
    returns False and waits as many facts again before it tries (start-up and the outbox,
    which call it, go on)."""
    pipeline = _fed(500, 1)
    outcomes, _, on_done = _done()
    forked = ForkedSnapshots(SnapshotFiles(tmp_path, KEY, CODE), 100, on_done)  # type: ignore[arg-type]

    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr("ledger.adapters.snapshot_files.os.fork", no_fork)
    assert forked.take(pipeline) is False
    assert outcomes == [("failed", pipeline.ledger.head_position)]
    assert not forked.running and not forked.due(pipeline.ledger.head_position)
    forked.stop()


def test_stop_kills_a_child_still_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shutting down does not wait for a snapshot: a child still writing is killed, reported
    ``failed``, and no snapshot is taken afterwards."""
    pipeline = _fed(500, 1)
    outcomes, finished, on_done = _done()
    files = SnapshotFiles(tmp_path, KEY, CODE)
    forked = ForkedSnapshots(files, 1, on_done)  # type: ignore[arg-type]
    gate = tmp_path / "never"

    def slow_write(header: SnapshotHeader, body: bytes) -> Path:
        while not gate.exists():  # only the child gets here; it is killed while waiting
            time.sleep(0.01)
        raise AssertionError("unreachable")

    monkeypatch.setattr(files, "write", slow_write)
    assert forked.take(pipeline) and forked.running
    forked.stop()
    assert finished.is_set() and outcomes == [("failed", pipeline.ledger.head_position)]
    assert not forked.running and forked.take(pipeline) is False
