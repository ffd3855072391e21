"""Where ``ledger serve`` keeps its snapshots (:mod:`ledger.application.snapshots`), how they
are sealed, and how one is taken without stopping the service.

A snapshot is one file ``snapshot-<position>.bin`` in the snapshot folder: a magic line, the
fingerprint of the code that wrote it, the header (JSON) and the pickled state, then a
MAC of all of it (keyed BLAKE2b) under the store's ``snapshots`` deployment key. Nothing is
unpickled before the MAC and the fingerprint hold (pickle runs code: only what this
deployment wrote is read back). Files are written to a temporary name, fsynced and renamed;
the two newest are kept.

Taking a snapshot of a million facts costs seconds of pickling: it runs in a forked child
(copy-on-write, as Redis does), so the store thread pauses only for the fork. The child
touches nothing but the state and its file, and leaves with ``os._exit``.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import hmac
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from ledger.application.pipeline import Pipeline
from ledger.application.snapshots import SnapshotError, SnapshotHeader, dump, not_ready

__all__ = ["ForkedSnapshots", "SnapshotFiles", "code_fingerprint"]

MAGIC = b"LEDGER-SNAPSHOT-1\n"
_MAC_BYTES = 32
_CODE_BYTES = 64
#: Snapshots kept (the newest first; an older one serves when the newest is refused).
KEEP = 2
#: Largest header accepted (a million personal positions fit easily).
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: Exit codes of the snapshot child.
_EXIT_PERSONAL = 3
_EXIT_FAILED = 4


def code_fingerprint() -> str:
    """SHA-256 of the ledger package's sources and the Python version: a snapshot written by
    other code is stale (its pickled classes may have changed)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(f"{sys.version_info[0]}.{sys.version_info[1]}".encode())
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    path: Path
    header: SnapshotHeader
    body: bytes


class SnapshotFiles:
    """The snapshot folder: write one, list them newest first, read one back (checked)."""

    def __init__(self, directory: Path, key: bytes, code: str) -> None:
        assert len(key) >= 16, "a MAC key of at least 128 bits"
        self.directory = directory
        self._key = key
        self._code = code.encode("ascii")
        assert len(self._code) == _CODE_BYTES, "a SHA-256 hex digest"

    def _mac(self, *parts: bytes | memoryview) -> bytes:
        # keyed BLAKE2b: CPython's own code, no OpenSSL lock in a forked child
        mac = hashlib.blake2b(key=self._key[:64], digest_size=_MAC_BYTES)
        for part in parts:
            mac.update(part)
        return mac.digest()

    def write(self, header: SnapshotHeader, body: bytes) -> Path:
        """Write a snapshot atomically; prune the older ones."""
        self.directory.mkdir(parents=True, exist_ok=True)
        head = orjson.dumps(header.to_json())
        prefix = MAGIC + self._code + b"\n" + len(head).to_bytes(8, "big") + head
        final = self.directory / f"snapshot-{header.position:012d}.bin"
        scratch = self.directory / f".{final.name}.{os.getpid()}.tmp"
        with scratch.open("wb") as out:
            out.write(prefix)
            out.write(body)
            out.write(self._mac(prefix, body))
            out.flush()
            os.fsync(out.fileno())
        os.replace(scratch, final)
        with contextlib.suppress(OSError):
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for old in self.paths()[KEEP:]:
            with contextlib.suppress(OSError):
                old.unlink()
        return final

    def paths(self) -> list[Path]:
        """The snapshots, newest (highest position) first."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("snapshot-*.bin"), reverse=True)

    def clear_scratch(self) -> None:
        """Remove what a snapshot child killed mid-write left behind."""
        if self.directory.is_dir():
            for scratch in self.directory.glob(".snapshot-*.tmp"):
                with contextlib.suppress(OSError):
                    scratch.unlink()

    def read(self, path: Path) -> LoadedSnapshot:
        """A snapshot whose MAC and code fingerprint hold (:class:`SnapshotError` otherwise:
        ``corrupt`` or ``stale``)."""
        data = path.read_bytes()
        code_end = len(MAGIC) + _CODE_BYTES + 1
        if not data.startswith(MAGIC) or len(data) < code_end + 8 + _MAC_BYTES:
            raise SnapshotError("corrupt", f"{path.name}: not a ledger snapshot")
        view = memoryview(data)
        if not hmac.compare_digest(self._mac(view[:-_MAC_BYTES]), data[-_MAC_BYTES:]):
            raise SnapshotError("corrupt", f"{path.name}: its MAC does not hold (damaged, or another key)")
        if data[len(MAGIC) : code_end - 1] != self._code:
            raise SnapshotError("stale", f"{path.name}: written by another version of the ledger")
        size = int.from_bytes(data[code_end : code_end + 8], "big")
        start = code_end + 8
        if size > MAX_HEADER_BYTES or start + size + _MAC_BYTES > len(data):
            raise SnapshotError("corrupt", f"{path.name}: truncated")
        try:
            header = SnapshotHeader.from_json(orjson.loads(data[start : start + size]))
        except orjson.JSONDecodeError as exc:
            raise SnapshotError("corrupt", f"{path.name}: header unreadable: {exc}") from exc
        return LoadedSnapshot(path, header, data[start + size : -_MAC_BYTES])


class ForkedSnapshots:
    """Takes a snapshot every ``every_facts`` facts in a forked child; one child at a time."""

    def __init__(
        self,
        files: SnapshotFiles,
        every_facts: int,
        on_done: Callable[[str, int, float], None],
        timeout_s: float = 1800.0,
    ) -> None:
        """``on_done(outcome, position, seconds)`` is called from a watcher thread
        (``written``, ``personal_data``, ``failed``)."""
        assert every_facts >= 1, every_facts
        assert timeout_s > 0, timeout_s
        self.files = files
        self.every_facts = every_facts
        self.last_position = 0
        self._timeout_s = timeout_s
        self._on_done = on_done
        self._child: int | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._child is not None

    def due(self, head_position: int) -> bool:
        return not self.running and head_position - self.last_position >= self.every_facts

    def take(self, pipeline: Pipeline) -> bool:
        """Fork a child writing the pipeline's state (call on the store thread, between two
        steps: nothing else changes the state); False when one is running already or an
        outbox chunk is pending."""
        if self.running or self._stop.is_set() or not_ready(pipeline) is not None:
            return False
        position = pipeline.ledger.head_position
        started = time.monotonic()
        self.last_position = position  # (a failure is not retried at once, but after as many facts)
        try:
            pid = os.fork()
        except OSError:  # no memory or process left: no snapshot this time, nothing else stops
            self._on_done("failed", position, time.monotonic() - started)
            return False
        if pid == 0:  # the child: no logging, no store, no event loop; leave with _exit
            code = 0
            try:
                gc.disable()
                header, body = dump(pipeline)
                self.files.write(header, body)
            except SnapshotError:
                code = _EXIT_PERSONAL
            except BaseException:
                code = _EXIT_FAILED
            os._exit(code)
        self._child = pid
        self._watcher = threading.Thread(
            target=self._wait, args=(pid, position, started), name="ledger-snapshot", daemon=True
        )
        self._watcher.start()
        return True

    def _wait(self, pid: int, position: int, started: float) -> None:
        outcome = "failed"
        try:
            outcome = self._reap(pid, started + self._timeout_s)
        finally:
            self._child = None
            self._on_done(outcome, position, time.monotonic() - started)

    def _reap(self, pid: int, deadline: float) -> str:
        """Wait for the child (killed past ``deadline`` or at :meth:`stop`); its outcome."""
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if self._stop.is_set() or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            self._stop.wait(0.05)
        code = os.waitstatus_to_exitcode(status)
        return {0: "written", _EXIT_PERSONAL: "personal_data"}.get(code, "failed")

    def stop(self) -> None:
        """Kill a child still writing (a snapshot is a cache: shutting down does not wait for
        one; its scratch file is removed at the next start). No snapshot is taken after this."""
        self._stop.set()
        watcher = self._watcher
        if watcher is not None:
            watcher.join()
