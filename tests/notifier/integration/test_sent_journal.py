""" "Sent" is recorded the instant the far end accepts: the acceptance is in the sent journal
before the store is even asked, a crash before the store's record loses nothing (the next
start records it from the journal and sends nothing again), and the journal stays small."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from notifier.adapters.sent_journal import (
    FileSentJournal,
    journal_directory,
    read_journal,
    recover_journals,
)
from notifier.adapters.store import SqliteAlertStore
from notifier.application.delivery import record_accepted
from notifier.application.ports import AcceptedAlert
from notifier.domain.events import AlertKey
from tests.conftest import EXAMPLES
from tests.notifier.support import FakeClock, derived_envelopes, make_rig

T = TypeVar("T")
EXAMPLE_01 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
FIRST = AlertKey("3:commission.accrued:2025-0311/intro-100", "email")


def _entry(n: int) -> AcceptedAlert:
    return AcceptedAlert(AlertKey(f"{n}:commission.accrued:x", "webhook"), 1, FakeClock()())


@pytest.mark.asyncio
async def test_acceptance_is_journaled_before_the_store_records_it_and_survives_a_crash(
    tmp_path: Path,
) -> None:
    """With the store thread stuck, the accepted alert is already in the journal; a new process on
    the same files records it sent from the journal, and the redelivered event sends nothing."""
    path = tmp_path / "n.sqlite3"
    rig = make_rig(path)
    registration, event = derived_envelopes(EXAMPLE_01)[:2]
    await rig.feed([registration])
    stuck = asyncio.Event()

    async def store_thread(fn: Callable[..., T], /, *args: Any) -> T:
        if fn == rig.store.record_sent:
            await stuck.wait()  # the store's own record never comes: the process dies first
        return fn(*args)

    rig.deliverer._run = store_thread
    sending = asyncio.ensure_future(rig.deliverer.deliver_all(await rig.ingestor.ingest(event)))
    await asyncio.wait_for(_until(lambda: len(rig.email.sent) == 1), 5)
    journaled = read_journal(rig.journal.path.read_bytes())
    assert [a.key for a in journaled] == [FIRST] and journaled[0].attempts == 1
    assert rig.store.alert(FIRST).status == "pending"  # the store has not recorded it yet

    sending.cancel()  # "SIGKILL": nothing more runs, the journal's lock goes with the process
    await rig.deliverer.cancel_inflight()
    os.close(rig.journal._fd)
    rig.store.close()
    again = make_rig(path)
    recovered = recover_journals(journal_directory(path), lambda alerts: record_accepted(again.store, alerts))
    assert recovered == 1 and again.store.alert(FIRST).status == "sent"
    await again.feed([event])  # the redelivery
    assert again.email.sent == []
    assert [p.name for p in journal_directory(path).iterdir()] == [again.journal.path.name]


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_recovery_keeps_the_journal_of_a_live_process(tmp_path: Path) -> None:
    """A journal whose process still runs (its lock held) is read but kept; a dead one is deleted."""
    directory = tmp_path / "n.sqlite3.sent"
    live, dead = FileSentJournal(directory), FileSentJournal(directory)
    live.accepted(_entry(1))
    dead.accepted(_entry(2))
    os.close(dead._fd)  # died without settling
    store = SqliteAlertStore(tmp_path / "n.sqlite3")
    seen: list[AlertKey] = []

    def apply(alerts: list[AcceptedAlert]) -> int:
        seen.extend(a.key for a in alerts)
        return len(alerts)

    assert recover_journals(directory, apply) == 2
    assert sorted(k.alert_id for k in seen) == ["1:commission.accrued:x", "2:commission.accrued:x"]
    assert live.path.exists() and not dead.path.exists()
    live.close()
    store.close()


def test_journal_is_emptied_once_settled_and_compacted_when_large(tmp_path: Path) -> None:
    """Settling every entry empties the file; past max_bytes only the open entries are kept."""
    journal = FileSentJournal(tmp_path / "j", max_bytes=4096)
    for n in range(3):
        journal.accepted(_entry(n))
    journal.settled(_entry(0).key)
    journal.settled(_entry(1).key)
    assert [a.key for a in read_journal(journal.path.read_bytes())][-1] == _entry(2).key
    journal.settled(_entry(2).key)
    assert journal.path.stat().st_size == 0
    journal.accepted(_entry(1000))  # stays open
    for n in range(200):
        journal.accepted(_entry(n))
        journal.settled(_entry(n).key)
    assert journal.path.stat().st_size < 4096 + 200
    assert _entry(1000).key in {a.key for a in read_journal(journal.path.read_bytes())}
    assert len(list((tmp_path / "j").iterdir())) == 1
    journal.close()
    assert len(list((tmp_path / "j").iterdir())) == 1  # an open entry: kept for the next start


def test_torn_and_foreign_lines_are_skipped() -> None:
    """A line cut by a power loss, or not a journal entry at all, is skipped; the rest is read."""
    good = b'["1:commission.accrued:x", "webhook", 2, "2025-03-11T10:00:00+00:00"]\n'
    entries = read_journal(good + b'["2:commission.acc' + b"\n" + b'["x", "fax", 1, "2025"]\n' + good)
    assert [(a.key.alert_id, a.attempts) for a in entries] == [("1:commission.accrued:x", 2)] * 2


@pytest.mark.asyncio
async def test_a_store_failure_after_acceptance_does_not_send_again(tmp_path: Path) -> None:
    """The store fails to record "sent" (the message is redelivered): the redelivery records it
    from this process's journal and sends nothing."""
    rig = make_rig(tmp_path / "n.sqlite3")
    registration, event = derived_envelopes(EXAMPLE_01)[:2]
    await rig.feed([registration])
    broken = True

    async def store_thread(fn: Callable[..., T], /, *args: Any) -> T:
        if fn == rig.store.record_sent and broken:
            raise OSError("disk I/O error")
        return fn(*args)

    rig.deliverer._run = store_thread
    with pytest.raises(OSError):
        await rig.feed([event])
    assert len(rig.email.sent) == 1 and rig.store.alert(FIRST).status == "pending"
    broken = False
    await rig.feed([event])  # the redelivery
    assert len(rig.email.sent) == 1 and rig.store.alert(FIRST).status == "sent"
    assert rig.journal.unsettled(FIRST) is None and rig.journal.path.stat().st_size == 0
