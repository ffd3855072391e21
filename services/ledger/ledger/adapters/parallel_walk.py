"""The hash-chain walk of ``ledger audit verify`` split over processes.

Every link of the chain can be checked knowing only the stored hash of the record before
it, so the log is cut into consecutive parts of positions, each walked by a forked child
on its own connection to the store (:func:`ledger.application.audit.walk_chain` with
``start``/``stop``; a part reads a few positions before its own to seed its links), and
the parts' findings are joined in log order (:func:`merge_walks`): the same faults, at the
same positions, as one walk. Hashing is CPU-bound Python (the GIL allows no threads),
hence processes; a child sends its progress and then its findings (a few hundred bytes
unless there are faults) over a pipe, and the parent adds up the progress.

A child that dies or fails makes the whole walk fail with its reason: an audit never
reports on a part nobody walked. Logs shorter than :data:`MIN_PART_FACTS` per part are
walked in the calling process (a fork costs more than it saves there).
"""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, Pipe, wait

from ledger.application.audit import RECENT_WINDOW, SEED_POSITIONS, ChainWalk, merge_walks, walk_chain
from ledger.application.ports import StoredFact

__all__ = [
    "MAX_SEED_POSITIONS",
    "MAX_WORKERS",
    "MIN_PART_FACTS",
    "PAGE_FACTS",
    "STALL_TIMEOUT_S",
    "Opener",
    "Reader",
    "WalkFailedError",
    "parts",
    "walk_in_parallel",
    "walk_part",
]

#: Records read per query.
PAGE_FACTS = 5_000
#: A part is never smaller than this (below, one process walks the whole log).
MIN_PART_FACTS = 50_000
#: At most this many processes walk at once.
MAX_WORKERS = 16
#: How far before its part a part's walk looks for the records that seed its links. Past
#: it (a log missing or unreadable over that many positions before the part: faults one
#: walk reports too), a part may excuse fewer links than one walk would.
MAX_SEED_POSITIONS = 100_000
#: A walk whose children all stay silent this long has failed (they report every 10,000
#: records; a page read never takes minutes).
STALL_TIMEOUT_S = 300.0

#: ``read_raw(after, limit)`` of a store (:meth:`ledger.application.ports.FactStore.read_raw`).
Reader = Callable[[int, int], Sequence[tuple[int, StoredFact | str]]]
#: Opens a store for reading: its ``read_raw`` and how to close it.
Opener = Callable[[], tuple[Reader, Callable[[], None]]]


class WalkFailedError(Exception):
    """A part of the walk could not be completed (its process failed or died)."""


def _records(read_raw: Reader, after: int, stop: int | None) -> Iterator[tuple[int, StoredFact | str]]:
    """The records after ``after``, page by page, up to the first one past ``stop``."""
    while True:
        page = read_raw(after, PAGE_FACTS)
        if not page:
            return
        yield from page
        after = page[-1][0]
        if stop is not None and after > stop:
            return


def parts(head: int, workers: int) -> list[tuple[int, int | None]]:
    """``workers`` consecutive (start, stop) parts of positions 1..``head`` (the last one
    open-ended: it walks to the end of the log, whatever was appended since)."""
    assert head >= 0 and 1 <= workers <= MAX_WORKERS, (head, workers)
    size = max(1, -(-head // workers))
    cuts = [(1 + i * size, (i + 1) * size) for i in range(workers) if 1 + i * size <= max(head, 1)]
    out: list[tuple[int, int | None]] = [(start, stop) for start, stop in cuts]
    out[-1] = (out[-1][0], None)
    return out


def _seed_from(read_raw: Reader, start: int) -> int:
    """Where a part's read begins (after which position) for its walk to reach ``start`` in
    the state one walk of the whole log would: the record before it and the last
    :data:`RECENT_WINDOW` readable ones read again, further back across gaps and unreadable
    records, page by page, at most :data:`MAX_SEED_POSITIONS` back."""
    span = SEED_POSITIONS
    while start > 1:
        after = max(0, start - 1 - span)
        readable, at = 0, after
        while at < start - 1:
            page = read_raw(at, min(PAGE_FACTS, start - 1 - at))
            readable += sum(1 for p, record in page if p < start and not isinstance(record, str))
            if not page or page[-1][0] >= start - 1:
                break
            at = page[-1][0]
        if readable >= RECENT_WINDOW or after == 0 or span >= MAX_SEED_POSITIONS:
            return after
        span = min(span * 4, MAX_SEED_POSITIONS)
    return 0


def walk_part(
    read_raw: Reader, start: int, stop: int | None, watch: Sequence[int], report: Callable[[int], None]
) -> ChainWalk:
    after = _seed_from(read_raw, start)
    return walk_chain(_records(read_raw, after, stop), watch=watch, progress=report, start=start, stop=stop)


def _child(conn: Connection, open_reader: Opener, start: int, stop: int | None, watch: Sequence[int]) -> None:
    """In the forked child: walk one part, send progress then the findings; never returns."""
    code = 0
    try:
        read_raw, _ = open_reader()  # closed with the process
        walk = walk_part(read_raw, start, stop, watch, lambda n: conn.send(("progress", n)))
        conn.send(("done", walk))
    except BaseException as exc:  # everything goes to the parent, which reports it
        code = 1
        with contextlib.suppress(Exception):
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send(("error", detail[:500]))
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        os._exit(code)  # no cleanup of what the parent left open, no flush of its buffers


def walk_in_parallel(
    open_reader: Opener,
    head: int,
    *,
    workers: int,
    min_part_facts: int = MIN_PART_FACTS,
    watch: Sequence[int] = (),
    progress: Callable[[int], None] | None = None,
    stall_timeout_s: float = STALL_TIMEOUT_S,
) -> ChainWalk:
    """Walk the chain of a log whose head is about ``head``: in ``workers`` forked children,
    each opening its own reader with ``open_reader``, or in this process when ``workers``
    is 1 or the parts would be under ``min_part_facts``. The caller holds no connection
    open across the fork (a pool's threads, a lock they hold, are not the child's)."""
    assert min_part_facts >= 1 and stall_timeout_s > 0, (min_part_facts, stall_timeout_s)
    workers = max(1, min(workers, MAX_WORKERS, head // min_part_facts))
    if workers == 1:
        read_raw, close = open_reader()
        try:
            return walk_part(read_raw, 1, None, watch, progress or (lambda n: None))
        finally:
            close()
    children: dict[Connection, tuple[int, int]] = {}  # connection -> (part index, pid)
    try:
        for index, (start, stop) in enumerate(parts(head, workers)):
            receive, send = Pipe(duplex=False)
            try:
                pid = os.fork()
            except OSError:
                receive.close()
                send.close()
                raise
            if pid == 0:  # pragma: no cover - the child's coverage is not collected
                receive.close()
                _child(send, open_reader, start, stop, watch)
            send.close()
            children[receive] = (index, pid)
        return _gather(children, len(children), progress, stall_timeout_s)
    except OSError as exc:
        raise WalkFailedError(f"the walk's processes could not be run: {exc}") from exc
    finally:
        for conn, (_, pid) in children.items():
            conn.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only those still running (a failure elsewhere)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _gather(
    children: dict[Connection, tuple[int, int]],
    count: int,
    progress: Callable[[int], None] | None,
    stall_timeout_s: float,
) -> ChainWalk:
    """The parts' findings, in log order, with their progress added up on the way."""
    found: dict[int, ChainWalk] = {}
    walked = [0] * count
    pending = set(children)
    while pending:
        ready_now = wait(list(pending), timeout=stall_timeout_s)
        if not ready_now:
            raise WalkFailedError(f"no part of the walk moved in {stall_timeout_s:.0f} s")
        for ready in ready_now:
            assert isinstance(ready, Connection)
            index, _ = children[ready]
            try:
                kind, value = ready.recv()
            except (EOFError, OSError):  # (a child killed mid-message)
                raise WalkFailedError(f"the process walking part {index + 1} of {count} died") from None
            if kind == "progress":
                walked[index] = int(value)
                if progress is not None:
                    progress(sum(walked))
            elif kind == "done" and isinstance(value, ChainWalk):
                found[index] = value
                walked[index] = value.facts
                pending.discard(ready)
            else:
                raise WalkFailedError(f"part {index + 1} of {count} of the walk failed: {value}")
    whole = merge_walks([found[i] for i in range(count)])
    if progress is not None:
        progress(whole.facts)
    return whole
