"""``party.erased`` (right to erasure) through ingest and delivery on a real SQLite file: the
party's contact is dropped to a tombstone, what the store holds of it is deleted or blotted
out, down to the bytes of the database file, its WAL and the sent journal; nothing is sent to
it afterwards, a replayed registration does not bring it back, the erasure is idempotent,
and other parties' alerts still go out with its name replaced."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from notifier.adapters.sent_journal import journal_directory
from notifier.adapters.store import SCHEMA_VERSION
from notifier.application.ports import SendFailure
from notifier.domain.erasure import ERASED
from notifier.domain.events import AlertKey, LedgerEnvelope
from tests.notifier.support import (
    Rig,
    derived_envelopes,
    ledger_event,
    make_rig,
    month_close,
    month_directory,
    month_lines,
    registration,
)

MARIE_NAME, MARIE_EMAIL = "Marie Dupont", "marie@example.org"
MARIE_HOOK = "https://hooks.example.org/hooks/marie"
MARIE_TRACES = [MARIE_NAME.encode(), MARIE_EMAIL.encode(), MARIE_HOOK.encode()]


class Hooks:
    """Webhook URLs of the month's parties (the rig's webhook channel is a double)."""

    def url(self, path: str) -> str:
        return f"https://hooks.example.org{path}"


DIRECTORY = month_directory(Hooks())  # type: ignore[arg-type]
CLOSE = month_close()
DUPONT_STATEMENT = CLOSE.of("client", "cli-dupont")
#: int-marie's commissions and payouts, as the ledger derives them from the month
MARIE_EVENTS = [
    e
    for e in derived_envelopes(month_lines())
    if e.kind != "introducer.registered"
    and "int-marie" in (e.data.get("beneficiary_id"), e.data.get("donor_id"))
]


def erased(kind: str, party_id: str, position: int = 100) -> LedgerEnvelope:
    """``party.erased`` as the ledger publishes it."""
    return ledger_event(
        "party.erased",
        f"{position}:party.erased:{kind}/{party_id}",
        {"party_type": kind, "party_id": party_id, "position": position},
        position,
    )


def store_files(path: Path) -> list[Path]:
    """The store's files: the database, its WAL and shared memory, the sent journals."""
    siblings = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [f for f in [*siblings, *sorted(journal_directory(path).glob("*"))] if f.is_file()]


def traces(path: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """``grep -a`` of every store file for each needle (as written, and in lower case)."""
    found: dict[str, list[bytes]] = {}
    for f in store_files(path):
        data = f.read_bytes()
        hits = [n for n in needles if n in data or n.lower() in data.lower()]
        if hits:
            found[f.name] = hits
    return found


def dump(rig: Rig) -> list[str]:
    return list(rig.store._db.iterdump())


def party_row(path: Path, key: str) -> tuple[Any, ...] | None:
    with sqlite3.connect(path) as db:
        row: tuple[Any, ...] | None = db.execute(
            "SELECT kind, party_id, display_name, email, webhook_url, language, erased_at FROM parties "
            "WHERE party_key = ?",
            (key,),
        ).fetchone()
    return row


def rows_of(rig: Rig, key: str) -> tuple[list[tuple[str, str]], int]:
    """(event id, state) of the events stored for ``key``, and its alerts."""
    events = rig.store._db.execute(
        "SELECT event_id, state FROM events WHERE recipient = ? ORDER BY event_id", (key,)
    ).fetchall()
    alerts = rig.store._db.execute("SELECT count(*) FROM alerts WHERE recipient = ?", (key,)).fetchone()[0]
    return events, alerts


def sent_to(rig: Rig, key: str) -> int:
    return sum(d.party.key == key for d in [*rig.email.sent, *rig.webhook.sent])


async def marie_with_everything(rig: Rig) -> tuple[list[AlertKey], list[AlertKey]]:
    """The month's directory and close, int-marie's alerts sent by e-mail, her webhook failed
    (a detail with her URL), one more alert of hers pending, and cli-dupont's statement
    (which names her) pending: returns (her pending alerts, cli-dupont's)."""
    rig.webhook.fail["int-marie"] = (-1, SendFailure("http_4xx", f"POST {MARIE_HOOK}: 404", permanent=True))
    others = [e for e in CLOSE.envelopes if e.id != DUPONT_STATEMENT.id]
    await rig.feed([*DIRECTORY, *others, *MARIE_EVENTS[:-1]])
    hers = await rig.ingestor.ingest(MARIE_EVENTS[-1])
    dupont = await rig.ingestor.ingest(DUPONT_STATEMENT)
    assert hers and dupont
    assert sent_to(rig, "int-marie") > 0 and rig.publisher.notices  # her e-mails; her webhook failed
    return hers, dupont


@pytest.mark.asyncio
async def test_an_erasure_leaves_no_byte_of_the_party_in_the_store_files(tmp_path: Path) -> None:
    """After party.erased, grep of the database, its -wal and the sent journals finds neither her name, e-mail nor URL."""
    path = tmp_path / "n.sqlite3"
    rig = make_rig(path)
    await marie_with_everything(rig)
    rig.store._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # some of her in the file, some in the WAL
    await rig.feed([registration("adviser", "adv-new", name="New", position=50)])
    assert traces(path, MARIE_TRACES), "the test sees her before the erasure"

    assert await rig.ingestor.ingest(erased("introducer", "int-marie")) == []

    assert traces(path, MARIE_TRACES) == {}
    assert party_row(path, "int-marie")[:6] == ("introducer", "int-marie", None, None, None, None)  # type: ignore[index]
    assert party_row(path, "int-marie")[6] is not None  # type: ignore[index]
    assert rig.store.party("int-marie") is None and rig.store.party_erased("int-marie")
    assert rows_of(rig, "int-marie") == ([("100:party.erased:introducer/int-marie", "erasure")], 0)
    assert rig.store.counts()["erased_parties"] == 1 and rig.observer.counts["event:erasure"] == 1
    assert path.with_name(path.name + "-wal").stat().st_size == 0  # checkpointed and truncated


@pytest.mark.asyncio
async def test_nothing_is_sent_to_an_erased_party_and_her_pending_alerts_are_cancelled(
    tmp_path: Path,
) -> None:
    """Her alerts pending at the erasure are never sent; later events for her are dropped and counted, not sent."""
    rig = make_rig(path := tmp_path / "n.sqlite3")
    hers, _ = await marie_with_everything(rig)
    before = sent_to(rig, "int-marie")
    await rig.ingestor.ingest(erased("introducer", "int-marie"))

    await rig.deliverer.deliver_all(hers)  # what the consumer was about to send
    later = ledger_event(
        "commission.accrued",
        "120:commission.accrued:2025-090/intro-m",
        {**MARIE_EVENTS[0].data, "invoice_id": "2025-090"},
        120,
    )
    await rig.feed([later, CLOSE.of("introducer", "int-marie"), *MARIE_EVENTS])  # new, and replayed
    await rig.digester.run_digests()
    assert sent_to(rig, "int-marie") == before
    assert rig.observer.counts["event:erased"] == 2 + len(MARIE_EVENTS)
    events, alerts = rows_of(rig, "int-marie")
    assert alerts == 0 and {state for _, state in events} == {"erasure", "erased"}
    stored = rig.store.event(later.id)
    assert stored is not None and stored.state == "erased" and stored.envelope.data == {}
    assert traces(path, MARIE_TRACES) == {}


@pytest.mark.asyncio
async def test_a_replayed_registration_does_not_bring_the_contact_back(tmp_path: Path) -> None:
    """Her registration redelivered, or registered again under a new id, is ignored: the tombstone stays."""
    rig = make_rig(path := tmp_path / "n.sqlite3")
    await marie_with_everything(rig)
    await rig.ingestor.ingest(erased("introducer", "int-marie"))
    again = registration("introducer", "int-marie", name=MARIE_NAME, email_addr=MARIE_EMAIL, position=130)

    await rig.feed([*DIRECTORY, again, *MARIE_EVENTS])

    assert rig.store.party("int-marie") is None and rig.store.party_erased("int-marie")
    assert party_row(path, "int-marie")[2:6] == (None, None, None, None)  # type: ignore[index]
    assert traces(path, MARIE_TRACES) == {}  # the registrations' data was not kept
    assert rig.store.party("client/cli-dupont") is not None  # the others are still there


@pytest.mark.asyncio
async def test_the_same_erasure_twice_changes_nothing_more(tmp_path: Path) -> None:
    """A redelivered party.erased neither fails nor changes anything, and counts once."""
    rig = make_rig(tmp_path / "n.sqlite3")
    await marie_with_everything(rig)
    event = erased("introducer", "int-marie")
    await rig.ingestor.ingest(event)
    once = dump(rig)

    assert await rig.ingestor.ingest(event) == []
    assert await rig.ingestor.ingest(erased("introducer", "int-marie", position=140)) == []  # erased again

    assert [line for line in dump(rig) if "140:party.erased" not in line] == once
    assert rig.observer.counts["event:erasure"] == 2


@pytest.mark.asyncio
async def test_other_parties_alerts_still_go_out_with_her_name_replaced(tmp_path: Path) -> None:
    """cli-dupont's statement, pending at her erasure, is sent with [erased] where it named her."""
    rig = make_rig(tmp_path / "n.sqlite3")
    _, dupont = await marie_with_everything(rig)
    await rig.ingestor.ingest(erased("introducer", "int-marie"))

    await rig.deliverer.deliver_all(dupont)

    (mail,) = [d for d in rig.email.sent if d.key.alert_id == DUPONT_STATEMENT.id]
    (hook,) = [d for d in rig.webhook.sent if d.key.alert_id == DUPONT_STATEMENT.id]
    assert mail.party.email == "compta@dupont.example"
    assert ERASED in mail.rendered.text and MARIE_NAME not in mail.rendered.text
    assert "Carl Berger" in mail.rendered.text  # the other introducer keeps his name
    names = hook.about["data"]["statement"]["names"]
    assert names == {"int-carl": "Carl Berger", "int-marie": ERASED}
    stored = rig.store.event(CLOSE.of("adviser", "adv-luc").id)  # already sent: kept, blotted out
    assert stored is not None and stored.envelope.data["statement"]["names"] == {"int-marie": ERASED}


@pytest.mark.asyncio
async def test_an_erasure_before_any_registration_leaves_a_tombstone(tmp_path: Path) -> None:
    """An unregistered party's waiting events are deleted and its later registration is ignored."""
    rig = make_rig(path := tmp_path / "n.sqlite3")
    await rig.feed([DUPONT_STATEMENT])  # waits for cli-dupont
    assert rig.store.counts()["waiting_events"] == 1

    await rig.ingestor.ingest(erased("client", "cli-dupont"))
    assert rig.store.counts()["waiting_events"] == 0
    assert party_row(path, "client/cli-dupont")[:6] == ("client", "cli-dupont", None, None, None, None)  # type: ignore[index]

    await rig.feed([*DIRECTORY, DUPONT_STATEMENT])
    assert rig.store.party("client/cli-dupont") is None
    assert sent_to(rig, "client/cli-dupont") == 0
    assert traces(path, [b"compta@dupont.example", b"Cabinet Dupont"]) == {}


@pytest.mark.asyncio
async def test_a_failure_inside_the_erasure_changes_nothing_and_the_redelivery_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash mid-way rolls the whole erasure back; the redelivered event then erases her."""
    rig = make_rig(path := tmp_path / "n.sqlite3")
    await marie_with_everything(rig)
    event = erased("introducer", "int-marie")
    before = dump(rig)

    def crash(*args: object) -> int:
        raise OSError("disk gone")

    monkeypatch.setattr(rig.store, "redact_mentions", crash)
    with pytest.raises(OSError, match="disk gone"):
        await rig.ingestor.ingest(event)
    assert dump(rig) == before and rig.store.party("int-marie") is not None
    monkeypatch.undo()

    await rig.ingestor.ingest(event)
    assert rig.store.party_erased("int-marie") and traces(path, MARIE_TRACES) == {}


@pytest.mark.asyncio
async def test_a_reader_holding_the_wal_delays_the_shredding_until_the_redelivery(tmp_path: Path) -> None:
    """While another connection reads an old snapshot the erasure fails (no ack); redelivered later, it completes."""
    rig = make_rig(path := tmp_path / "n.sqlite3")
    await marie_with_everything(rig)
    rig.store._db.execute("PRAGMA busy_timeout=200")
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM parties").fetchone()[0] > 0  # holds its snapshot
    event = erased("introducer", "int-marie")

    with pytest.raises(sqlite3.OperationalError):
        await rig.ingestor.ingest(event)
    assert rig.store.party_erased("int-marie")  # committed; not yet shredded

    reader.rollback()
    reader.close()
    assert await rig.ingestor.ingest(event) == []
    assert traces(path, MARIE_TRACES) == {}


@pytest.mark.asyncio
async def test_an_alert_in_its_back_off_when_the_party_is_erased_is_not_tried_again(tmp_path: Path) -> None:
    """A retry round stops when the party is erased during a back-off: no attempt more, no failure notice."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=4)
    rig.email.fail["int-marie"] = (-1, SendFailure("smtp_4xx", "451 try again later"))
    await rig.feed(DIRECTORY)
    keys = await rig.ingestor.ingest(MARIE_EVENTS[0])
    slept: list[float] = []

    async def erase_during_back_off(seconds: float) -> None:
        slept.append(seconds)
        await rig.ingestor.ingest(erased("introducer", "int-marie"))

    rig.deliverer._sleep = erase_during_back_off
    await rig.deliverer.deliver_all(keys)

    assert rig.email.attempts["int-marie"] == 1 and len(slept) == 1
    assert rig.publisher.notices == [] and rig.store.alert(keys[0]) is None


@pytest.mark.asyncio
async def test_a_schema_2_store_is_migrated_and_its_parties_can_be_erased(tmp_path: Path) -> None:
    """A store of the previous schema opens with its directory intact, and erasure then works on it."""
    path = tmp_path / "n.sqlite3"
    rig = make_rig(path)
    await rig.feed([*DIRECTORY, *MARIE_EVENTS])
    sent = len(rig.email.sent)
    rig.store.close()
    with sqlite3.connect(path) as db:  # back to schema 2, as the previous notifier left it
        db.executescript(
            """
            CREATE TABLE parties_2 (
                party_key TEXT PRIMARY KEY, kind TEXT NOT NULL, party_id TEXT NOT NULL,
                display_name TEXT NOT NULL, email TEXT, webhook_url TEXT, language TEXT NOT NULL,
                event_id TEXT NOT NULL, registered_at TEXT NOT NULL);
            INSERT INTO parties_2 SELECT party_key, kind, party_id, display_name, email, webhook_url,
                language, event_id, registered_at FROM parties;
            DROP TABLE parties;
            ALTER TABLE parties_2 RENAME TO parties;
            UPDATE meta SET value = '2' WHERE key = 'schema_version';
            """
        )
    again = make_rig(path)
    marie = again.store.party("int-marie")
    assert marie is not None and (marie.email, marie.webhook_url) == (MARIE_EMAIL, MARIE_HOOK)
    await again.feed([*DIRECTORY, *MARIE_EVENTS])
    assert again.email.sent == [] and again.store.counts()["sent"] >= sent
    await again.ingestor.ingest(erased("introducer", "int-marie"))
    assert again.store.party_erased("int-marie") and traces(path, MARIE_TRACES) == {}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            SCHEMA_VERSION,
        )


@pytest.mark.asyncio
async def test_a_store_written_without_secure_delete_keeps_no_stale_copy_after_an_erasure(
    tmp_path: Path,
) -> None:
    """Rows rewritten by an older notifier (no secure_delete) left old copies in free space; the erasure's rebuild drops them."""
    path = tmp_path / "n.sqlite3"
    old = make_rig(path)
    old.store._db.execute("PRAGMA secure_delete=OFF")  # as the notifier did before erasure existed
    await old.feed([*MARIE_EVENTS, *DIRECTORY])  # her events wait, then are routed (rows rewritten)
    old.store.close()  # the WAL goes into the file
    assert traces(path, MARIE_TRACES)

    new = make_rig(path)
    await new.ingestor.ingest(erased("introducer", "int-marie"))
    assert traces(path, MARIE_TRACES) == {}
