"""The sent journal: "the far end accepted alert X" appended to a file the instant it happens.

Why: between an SMTP server's 250 (or a webhook's 2xx) and the store's ``sent`` record, a
crash makes the alert go out again after restart. The store's record waits its turn on the
store thread (and for SQLite's write lock and fsync); this journal does not: one ``write``
of one line on the event loop, a few microseconds, no lock shared with anyone. Once the
``write`` returns the line is in the operating system's cache and survives the process
being killed (SIGKILL, OOM kill, crash). It is not fsynced: after a power loss the store's
own record (``synchronous=FULL``, written right after, and before any ack) is what counts;
an entry lost with the power can only cause a copy, never a lost alert.

Each process appends to its own file, ``<store>.sent/sent-*.log``, and holds an exclusive
``flock`` on it while it runs. At start-up :func:`recover_journals` applies every file's
entries to the store and deletes the files whose owner is gone (their lock is free: the
kernel releases it when a process dies). A file is emptied whenever every entry in it has
reached the store, and rewritten with the entries still open when it grows past
``max_bytes``, so it stays small.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson
import structlog

from notifier.application.ports import AcceptedAlert
from notifier.domain.events import AlertKey

__all__ = ["MAX_JOURNAL_BYTES", "FileSentJournal", "journal_directory", "read_journal", "recover_journals"]

MAX_JOURNAL_BYTES = 1 << 20
MAX_LINE_BYTES = 4096
_PREFIX, _SUFFIX = "sent-", ".log"

log = structlog.get_logger("notifier.sent_journal")


def journal_directory(store_path: Path) -> Path:
    """Where the journals of the store at ``store_path`` live: ``<store>.sent/``."""
    return store_path.with_name(store_path.name + ".sent")


def _line(alert: AcceptedAlert) -> bytes:
    key = alert.key
    line = orjson.dumps([key.alert_id, key.channel, alert.attempts, alert.at.isoformat()]) + b"\n"
    assert len(line) <= MAX_LINE_BYTES, key
    return line


def read_journal(data: bytes) -> list[AcceptedAlert]:
    """The entries of a journal's bytes; a torn or unreadable line (power loss) is skipped."""
    out: list[AcceptedAlert] = []
    for raw in data.splitlines():
        try:
            alert_id, channel, attempts, at = orjson.loads(raw)
            assert channel in ("email", "webhook") and isinstance(alert_id, str)
            out.append(AcceptedAlert(AlertKey(alert_id, channel), int(attempts), datetime.fromisoformat(at)))
        except (orjson.JSONDecodeError, ValueError, TypeError, AssertionError):
            log.warning("unreadable sent-journal line skipped", size=len(raw))
    return out


def recover_journals(directory: Path, apply: Callable[[list[AcceptedAlert]], int]) -> int:
    """Apply every journal's entries to the store (``apply`` returns how many it recorded);
    delete the journals of processes that are gone. Returns the alerts recorded sent."""
    if not directory.is_dir():
        return 0
    recorded = 0
    for path in sorted(directory.glob(f"{_PREFIX}*{_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                owner_gone = True
            except BlockingIOError:
                owner_gone = False  # a running process (resend-failed, say): read, keep
            with os.fdopen(os.dup(fd), "rb") as stream:
                entries = read_journal(stream.read())
            if entries:
                recorded += apply(entries)
            if owner_gone:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    if recorded:
        log.warning("alerts accepted before a crash recorded sent from the journal", alerts=recorded)
    return recorded


class FileSentJournal:
    """:class:`notifier.application.ports.SentJournal` on an append-only file of this process."""

    def __init__(self, directory: Path, max_bytes: int = MAX_JOURNAL_BYTES) -> None:
        assert max_bytes >= MAX_LINE_BYTES, max_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_bytes = max_bytes
        self._open: dict[AlertKey, tuple[AcceptedAlert, bytes]] = {}
        self._lock = threading.Lock()  # accepted() runs in the send thread, settled() on the loop
        self._fd, self.path = self._new_file()
        self._size = 0

    def _new_file(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(prefix=_PREFIX, suffix=_SUFFIX, dir=self.directory)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        return fd, Path(name)

    def accepted(self, alert: AcceptedAlert) -> None:
        line = _line(alert)
        with self._lock:
            self._open[alert.key] = (alert, line)
            try:
                os.write(self._fd, line)
            except OSError as exc:  # the store's record still follows; only the window widens
                log.error("sent journal not written", alert=str(alert.key), error=str(exc))
                return
            self._size += len(line)

    def settled(self, key: AlertKey) -> None:
        with self._lock:
            if self._open.pop(key, None) is None:
                return
            try:
                if not self._open:
                    os.ftruncate(self._fd, 0)
                    self._size = 0
                elif self._size > self.max_bytes:
                    self._compact()
            except OSError as exc:
                log.warning("sent journal not trimmed", error=str(exc))

    def _compact(self) -> None:
        """Move the open entries to a new file, then drop the old one (a crash in between
        leaves both: recovery reads both, and recording twice is harmless)."""
        fd, path = self._new_file()
        body = b"".join(line for _, line in self._open.values())
        os.write(fd, body)
        old_fd, old_path = self._fd, self.path
        self._fd, self.path, self._size = fd, path, len(body)
        old_path.unlink(missing_ok=True)
        os.close(old_fd)

    def unsettled(self, key: AlertKey) -> AcceptedAlert | None:
        with self._lock:
            entry = self._open.get(key)
        return None if entry is None else entry[0]

    def close(self) -> None:
        """Close the file; delete it when every entry reached the store."""
        with self._lock:
            if not self._open:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
