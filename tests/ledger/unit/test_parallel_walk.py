"""The chain walk split into parts (in-process and in forked children) finds exactly what one
walk of the whole log finds: the same faults at the same positions, the same head, the same
remembered hashes, whatever was tampered with and wherever the parts are cut."""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.adapters.parallel_walk import (
    PAGE_FACTS,
    Reader,
    WalkFailedError,
    parts,
    walk_in_parallel,
    walk_part,
)
from ledger.application.audit import MAX_FAULTS, ChainWalk, merge_walks, walk_chain
from ledger.application.chain import GENESIS, chain_hash, fact_digest
from ledger.application.ports import StoredFact

Record = tuple[int, StoredFact | str]


def _log(size: int) -> list[Record]:
    out: list[Record] = []
    previous = GENESIS
    for position in range(1, size + 1):
        body = (
            b'{"n":%d,"type":"coop.ledger.period.closed.v1"}' % position
            if position % 7 == 0
            else (b'{"n":%d}' % position)
        )
        previous = chain_hash(previous, position, body)
        out.append(
            (position, StoredFact(position, body, "2026-01-01T00:00:00+00:00", previous, fact_digest(body)))
        )
    return out


def _tamper(log: list[Record], ops: Sequence[tuple[str, int]]) -> list[Record]:
    """Apply ``ops`` (kind, index) to a copy of ``log``: what a forger or a broken disk does."""
    rows = dict(log)
    for kind, index in ops:
        keys = sorted(rows)
        if not keys:
            break
        at = keys[index % len(keys)]
        record = rows[at]
        if kind == "delete":
            del rows[at]
        elif kind == "unreadable":
            rows[at] = "ValueError: not JSON"
        elif isinstance(record, StoredFact):
            body = record.envelope_json + b" "
            if kind == "alter":
                rows[at] = StoredFact(at, body, record.recorded_at, record.chain_hash, record.fact_digest)
            elif kind == "forge":  # digest recomputed: only the chain shows it
                rows[at] = StoredFact(at, body, record.recorded_at, record.chain_hash, fact_digest(body))
            elif kind == "swap" and at + 1 in rows:
                other = rows[at + 1]
                if isinstance(other, StoredFact):
                    rows[at] = StoredFact(at, other.envelope_json, "", other.chain_hash, other.fact_digest)
                    rows[at + 1] = StoredFact(at + 1, body[:-1], "", record.chain_hash, record.fact_digest)
    return sorted(rows.items())


def _reader(rows: list[Record]) -> Reader:
    def read_raw(after: int, limit: int) -> list[Record]:
        return [r for r in rows if r[0] > after][:limit]

    return read_raw


def _same(a: ChainWalk, b: ChainWalk) -> None:
    assert (a.facts, a.head_position, a.head_hash, a.head_hash_at) == (
        b.facts,
        b.head_position,
        b.head_hash,
        b.head_hash_at,
    )
    assert a.faults == b.faults and a.fault_count == b.fault_count
    assert a.hash_at == b.hash_at


_OPS = st.lists(
    st.tuples(st.sampled_from(["delete", "unreadable", "alter", "forge", "swap"]), st.integers(0, 10_000)),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(0, 70),
    ops=_OPS,
    cuts=st.sets(st.integers(2, 80), max_size=5),
    watch=st.sets(st.integers(1, 80)),
)
def test_parts_find_what_one_walk_finds(
    size: int, ops: list[tuple[str, int]], cuts: set[int], watch: set[int]
) -> None:
    """Any tampering, any cut points (also inside gaps and past the end): the parts joined
    equal the whole walk."""
    rows = _tamper(_log(size), ops)
    whole = walk_chain(iter(rows), watch=sorted(watch))
    read = _reader(rows)
    starts = [1, *sorted(cuts)]
    bounds = [(start, end - 1) for start, end in itertools.pairwise(starts)] + [(starts[-1], None)]
    joined = merge_walks(
        [walk_part(read, start, stop, sorted(watch), lambda n: None) for start, stop in bounds]
    )
    _same(joined, whole)


def test_seed_reaches_back_across_a_long_gap() -> None:
    """A part that begins just after a long gap re-reads far enough back for its links: a
    fact linked to a hash from before the gap is judged as one walk judges it."""
    rows = _log(200)
    rows = [r for r in rows if not 60 <= r[0] <= 140]
    whole = walk_chain(iter(rows))
    read = _reader(rows)
    joined = merge_walks(
        [walk_part(read, 1, 141, (), lambda n: None), walk_part(read, 142, None, (), lambda n: None)]
    )
    _same(joined, whole)
    assert [(f.position, f.kind) for f in whole.faults] == [(60, "sequence_gap")]


def test_merge_keeps_counting_past_the_listed_faults() -> None:
    """More faults than the list holds: the joined walk lists the first MAX_FAULTS in log order
    and counts them all, as one walk does."""
    rows = _tamper(_log(1_500), [("alter", i) for i in range(1_500)])
    read = _reader(rows)
    whole = walk_chain(iter(rows))
    joined = merge_walks(
        [walk_part(read, 1, 700, (), lambda n: None), walk_part(read, 701, None, (), lambda n: None)]
    )
    _same(joined, whole)
    assert len(joined.faults) == MAX_FAULTS and joined.fault_count == 1_500


@pytest.mark.parametrize(
    ("head", "workers", "expected"),
    [
        (0, 1, [(1, None)]),
        (10, 1, [(1, None)]),
        (10, 3, [(1, 4), (5, 8), (9, None)]),
        (9, 3, [(1, 3), (4, 6), (7, None)]),
        (2, 4, [(1, 1), (2, None)]),
    ],
)
def test_parts_cover_every_position_once(
    head: int, workers: int, expected: list[tuple[int, int | None]]
) -> None:
    """Consecutive parts from 1, the last one open-ended (what was appended since is walked)."""
    assert parts(head, workers) == expected


def test_forked_children_find_what_one_walk_finds() -> None:
    """Three forked children on a tampered log: the same findings as one walk, and the
    progress adds up to every fact."""
    rows = _tamper(_log(90_000), [("alter", 10), ("delete", 29_999), ("forge", 30_000), ("swap", 60_001)])
    seen: list[int] = []
    walk = walk_in_parallel(_opener(rows), rows[-1][0], workers=3, min_part_facts=1, progress=seen.append)
    _same(walk, walk_chain(iter(rows)))
    assert seen and seen[-1] == walk.facts == len(rows) and max(seen) == walk.facts
    assert [f.kind for f in walk.faults] == [
        "fact_altered",
        "sequence_gap",
        "hash_mismatch",
        "hash_mismatch",
        "hash_mismatch",
    ]


def test_a_failing_child_fails_the_walk() -> None:
    """A part that cannot be read fails the whole walk with its reason: never a partial audit."""

    def broken() -> tuple[Reader, Callable[[], None]]:
        raise OSError("database is locked")

    with pytest.raises(WalkFailedError, match="database is locked"):
        walk_in_parallel(broken, 100, workers=2, min_part_facts=1)


def test_a_child_that_dies_fails_the_walk() -> None:
    """A child killed mid-way (out of memory, an operator) fails the walk; no child is left."""
    rows = _log(100)

    def dies() -> tuple[Reader, Callable[[], None]]:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    before = _children()
    with pytest.raises(WalkFailedError, match="died"):
        walk_in_parallel(dies, len(rows), workers=2, min_part_facts=1)
    assert _children() <= before


def test_a_walk_nobody_moves_fails_after_the_stall_timeout() -> None:
    """Children stuck (a lock never released, a hung connection) fail the walk after the
    stall timeout instead of hanging the audit; they are killed."""
    rows = _log(100)
    stuck = threading.Event()

    def hangs() -> tuple[Reader, Callable[[], None]]:
        stuck.wait()  # never set: the child blocks until it is killed
        return _reader(rows), lambda: None

    before = _children()
    with pytest.raises(WalkFailedError, match="no part of the walk moved"):
        walk_in_parallel(hangs, len(rows), workers=2, min_part_facts=1, stall_timeout_s=0.5)
    assert _children() <= before


def test_a_row_far_past_the_head_costs_a_bounded_seed() -> None:
    """A forged row at position 10**9 (the parts are cut by position): the part after the
    hole looks back at most MAX_SEED_POSITIONS, page by page, and finds what one walk finds."""
    rows = _log(3_000)
    far = 10**9
    last = rows[-1][1]
    assert isinstance(last, StoredFact)
    rows.append((far, StoredFact(far, last.envelope_json, "", last.chain_hash, last.fact_digest)))
    read = _reader(rows)
    returned: list[int] = []

    def counting(after: int, limit: int) -> list[Record]:
        page = read(after, limit)
        returned.append(len(page))
        assert limit <= PAGE_FACTS
        return page

    (first, first_stop), (second, _) = parts(far, 2)
    joined = merge_walks(
        [
            walk_part(read, first, first_stop, (), lambda n: None),
            walk_part(counting, second, None, (), lambda n: None),
        ]
    )
    _same(joined, walk_chain(iter(rows)))
    assert sum(returned) <= 10  # only the far row (and empty pages): nothing of the log before it
    assert [(f.position, f.kind) for f in joined.faults] == [(3_001, "sequence_gap")]


def test_positions_near_the_integer_limit() -> None:
    """A row at position 9e18 (past what a seed search that doubles could reach without
    overflowing a 64-bit integer) is a gap, in parts as in one walk."""
    rows = _log(20)
    huge = 9 * 10**18
    rows.append((huge, "ValueError: nonsense"))
    read = _reader(rows)
    joined = merge_walks([walk_part(read, start, stop, (), lambda n: None) for start, stop in parts(huge, 4)])
    _same(joined, walk_chain(iter(rows)))


def _opener(rows: list[Record]) -> Callable[[], tuple[Reader, Callable[[], None]]]:
    return lambda: (_reader(rows), lambda: None)


def _children() -> set[int]:
    """This process's child processes, zombies included (Linux)."""
    found: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found
