"""adapters/heap.py: the ledger's long-lived state is frozen out of the garbage collector's
full passes, on schedule, without leaving cyclic garbage behind."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator

import pytest
from bench.history import generate

from ledger.adapters.heap import HeapFreezer
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.ledger import Ledger
from ledger.bootstrap import build_ledger, utc_now
from ledger.settings import Settings


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the rest of the suite is unaffected)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freezes_once_every_facts_are_taken_in_and_not_before() -> None:
    """note() counts facts across calls and freezes (then restarts the count) each time
    ``every_facts`` is reached; objects alive at that moment are frozen."""
    freezer = HeapFreezer(every_facts=100)
    freezer.note(60)
    assert freezer.freezes == 0 and gc.get_freeze_count() == 0
    freezer.note(40)
    assert freezer.freezes == 1
    assert gc.get_freeze_count() > 0
    freezer.note(99)
    assert freezer.freezes == 1
    freezer.note(1)
    assert freezer.freezes == 2


def test_zero_turns_freezing_off() -> None:
    """LEDGER_HEAP_FREEZE_EVERY_FACTS=0: nothing is ever frozen."""
    freezer = HeapFreezer(every_facts=0)
    freezer.note(10_000_000)
    assert freezer.freezes == 0 and gc.get_freeze_count() == 0


def test_the_ledger_reports_each_growth_of_its_index() -> None:
    """Ledger calls on_growth with the facts stored by a batch (duplicates and refusals not
    counted) and with each page read back by catch_up."""
    store = MemoryFactStore()
    seen: list[int] = []
    lines = list(generate(250, seed=3))
    writer = Ledger(store, utc_now, on_growth=seen.append)
    writer.ingest(lines[:200])
    writer.ingest([*lines[:10], "{not json", *lines[200:]])
    assert seen == [200, 50]
    reader_seen: list[int] = []
    reader = Ledger(store, utc_now, on_growth=reader_seen.append)
    assert reader.catch_up() == 250
    assert sum(reader_seen) == 250


def test_the_configured_ledger_freezes_on_the_configured_schedule() -> None:
    """build_ledger wires LEDGER_HEAP_FREEZE_EVERY_FACTS into the ledger: 600 facts with a
    schedule of 250 freeze the heap (twice); the setting 0 never freezes."""
    lines = list(generate(600, seed=5))
    ledger = build_ledger(Settings(store_url="memory:", heap_freeze_every_facts=250))
    for start in range(0, 600, 100):
        ledger.ingest(lines[start : start + 100])
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    ledger = build_ledger(Settings(store_url="memory:", heap_freeze_every_facts=0))
    ledger.ingest(lines[:500])
    assert gc.get_freeze_count() == 0


def test_a_frozen_ledger_leaves_no_cyclic_garbage_behind() -> None:
    """Replaying a mixed history (with refusals, duplicates and conflicts, and the books
    computed along the way) while freezing every 150 facts: once unfrozen, a full collection
    finds no unreachable object, so freezing never kept garbage alive."""
    lines = list(generate(3_000, seed=11))
    conflicting = json.loads(next(line for line in lines if "invoice.issued" in line))
    conflicting["id"] = "same-invoice-other-amount"
    conflicting["data"]["net_amount"] = "1.00"
    noise = ["{broken", json.dumps({"specversion": "1.0"}), lines[5], json.dumps(conflicting)]
    ledger = Ledger(MemoryFactStore(), utc_now, on_growth=HeapFreezer(every_facts=150).note)
    gc.collect()
    for start in range(0, len(lines), 200):
        outcomes = ledger.ingest([*lines[start : start + 200], *noise])
        assert {o.status for o in outcomes} >= {"accepted", "rejected", "duplicate"}
        assert "conflict" in {o.reason for o in outcomes}
        ledger.books()
    gc.collect()  # what is not frozen and unreachable goes now
    gc.unfreeze()
    assert gc.collect() == 0
