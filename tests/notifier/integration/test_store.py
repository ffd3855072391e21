"""The SQLite store's exactly-once bookkeeping, driven through ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from notifier.adapters.store import SCHEMA_VERSION, SqliteAlertStore
from notifier.domain.events import AlertKey
from tests.conftest import EXAMPLES
from tests.notifier.support import (
    derived_envelopes,
    envelope_bytes,
    introducer_line,
    introduction_lines,
    make_rig,
    month_close,
)

EXAMPLE_01 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
MARIE = [
    "3:commission.accrued:2025-0311/intro-100",
    "4:commission.payable:2025-0311/intro-100",
    "5:commission.accrued:2025-0920/intro-100",
    "6:commission.adjusted:2025-0920/intro-100",
    "7:commission.accrued:2026-0311/intro-100",
    "9:payout.recorded:po-marie-1",  # the payout adv-luc made her (by hand)
]


@pytest.mark.asyncio
async def test_ingesting_twice_creates_each_alert_once(tmp_path: Path) -> None:
    """The same event ingested twice (redelivery) yields the same pending alert, not two."""
    rig = make_rig(tmp_path / "n.sqlite3")
    envs = derived_envelopes(EXAMPLE_01)
    assert await rig.ingestor.ingest(envs[0]) == []  # the registration
    first = await rig.ingestor.ingest(envs[1])
    again = await rig.ingestor.ingest(envs[1])
    assert first == again == [AlertKey(MARIE[0], "email")]
    assert rig.store.counts()["pending"] == 1


@pytest.mark.asyncio
async def test_sent_alert_is_never_work_again(tmp_path: Path) -> None:
    """Once recorded sent, a redelivered or re-published event yields nothing to send."""
    rig = make_rig(tmp_path / "n.sqlite3")
    envs = derived_envelopes(EXAMPLE_01)
    await rig.feed(envs)
    assert [d.key.alert_id for d in rig.email.sent] == MARIE
    for env in envs:
        assert await rig.ingestor.ingest(env) == []
    await rig.feed(envs)
    assert len(rig.email.sent) == len(MARIE)


@pytest.mark.asyncio
async def test_events_wait_for_their_introducer(tmp_path: Path) -> None:
    """Events before the registration are kept, and sent once the registration arrives."""
    rig = make_rig(tmp_path / "n.sqlite3")
    envs = derived_envelopes(EXAMPLE_01)
    registration, rest = envs[0], envs[1:]
    await rig.feed(rest)
    assert rig.email.sent == []
    assert rig.store.counts()["waiting_events"] == len(MARIE)
    assert await rig.ingestor.ingest(registration) == [AlertKey(i, "email") for i in MARIE]
    # the registration's redelivery before settling returns the same work, not more
    assert await rig.ingestor.ingest(registration) == [AlertKey(i, "email") for i in MARIE]
    await rig.feed([registration])
    assert [d.key.alert_id for d in rig.email.sent] == MARIE
    assert rig.store.counts()["waiting_events"] == 0


@pytest.mark.asyncio
async def test_first_registration_stands(tmp_path: Path) -> None:
    """A second registration with other details does not change the directory."""
    rig = make_rig(tmp_path / "n.sqlite3")
    first = derived_envelopes([introducer_line("int-a", email_addr="a@example.org", language="fr")])[0]
    other = first.model_copy(
        update={"id": "99:introducer.registered:int-a", "data": {**first.data, "email": "evil@example.org"}}
    )
    await rig.feed([first, other])
    who = rig.store.party("int-a")
    assert who is not None and who.email == "a@example.org"


@pytest.mark.asyncio
async def test_introducer_without_channel_is_recorded_not_sent(tmp_path: Path) -> None:
    """An introducer with neither e-mail nor webhook gets nothing, and nothing stays pending."""
    rig = make_rig(tmp_path / "n.sqlite3")
    lines = [introducer_line("int-quiet"), *introduction_lines("int-quiet", "cli-q", "CHF", "100.00")]
    await rig.feed(derived_envelopes(lines))
    assert rig.email.sent == rig.webhook.sent == []
    assert "pending" not in rig.store.counts()


@pytest.mark.asyncio
async def test_state_survives_reopening(tmp_path: Path) -> None:
    """What was sent is durable: a new process on the same file sends nothing again."""
    path = tmp_path / "n.sqlite3"
    rig = make_rig(path)
    envs = derived_envelopes(EXAMPLE_01)
    await rig.feed(envs)
    rig.store.close()
    again = make_rig(path)
    await again.feed(envs)
    assert again.email.sent == []
    assert again.observer.counts.get("duplicate:email", 0) == 0  # ingest found nothing open
    assert again.store.counts()["sent"] == len(MARIE)


def test_schema_version_is_checked(tmp_path: Path) -> None:
    """A store written by an incompatible notifier is refused, not misread."""
    path = tmp_path / "n.sqlite3"
    SqliteAlertStore(path).close()
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="schema 99"):
        SqliteAlertStore(path)


@pytest.mark.asyncio
async def test_malformed_event_is_recorded_and_skipped(tmp_path: Path) -> None:
    """A relevant event whose data does not validate sends nothing and is not retried forever."""
    rig = make_rig(tmp_path / "n.sqlite3")
    envs = derived_envelopes(EXAMPLE_01)
    broken = envs[1].model_copy(update={"data": {**envs[1].data, "amount": "not money", "currency": 1}})
    await rig.feed([envs[0], broken, broken])
    stored = rig.store.event(broken.id)
    assert stored is not None and stored.state == "invalid"
    assert rig.email.sent == []


def test_non_ledger_messages_are_skipped() -> None:
    """Garbage, non-CloudEvents and oversized messages on ledger.out are skipped, not crashed on."""
    from notifier.adapters.service import parse_message

    assert parse_message(b"not json") is None
    assert parse_message(b'{"specversion": "1.0"}') is None
    assert parse_message(b"{" + b" " * 70_000 + b"}") is None
    good = derived_envelopes(EXAMPLE_01)[1]
    assert parse_message(good.model_dump_json().encode()) == good


def test_a_large_statement_is_read_but_not_a_large_commission_event() -> None:
    """A statement up to 1 MiB is read (hundreds of lines); any other event above 64 KiB is skipped."""
    from notifier.adapters.service import parse_message

    close = month_close()
    statement = close.of("adviser", "adv-luc")
    line = statement.data["statement"]["commissions"][0]
    lines = [{**line, "invoice_id": f"inv-{n:05d}"} for n in range(400)]
    big = statement.model_copy(
        update={
            "data": {**statement.data, "statement": {**statement.data["statement"], "commissions": lines}}
        }
    )
    raw = envelope_bytes(big)
    assert 64 * 1024 < len(raw) < 1024 * 1024
    assert parse_message(raw) == big
    commission = derived_envelopes(EXAMPLE_01)[1]
    padded = commission.model_copy(update={"data": {**commission.data, "padding": "x" * 70_000}})
    assert parse_message(envelope_bytes(padded)) is None


@pytest.mark.asyncio
async def test_a_schema_1_store_is_migrated_with_its_introducers_and_what_was_sent(tmp_path: Path) -> None:
    """A schema-1 store opens as the current schema with its introducers in the directory and nothing sent again."""
    import sqlite3

    path = tmp_path / "n.sqlite3"
    rig = make_rig(path)
    envs = derived_envelopes(EXAMPLE_01)
    await rig.feed(envs)
    rig.store.close()
    with sqlite3.connect(path) as db:  # back to schema 1, as the previous notifier left it
        db.executescript(
            """
            CREATE TABLE introducers (
                introducer_id TEXT PRIMARY KEY, display_name TEXT NOT NULL, email TEXT,
                webhook_url TEXT, language TEXT NOT NULL, event_id TEXT NOT NULL,
                registered_at TEXT NOT NULL);
            INSERT INTO introducers SELECT party_id, display_name, email, webhook_url, language,
                event_id, registered_at FROM parties WHERE kind = 'introducer';
            DROP TABLE parties;
            UPDATE meta SET value = '1' WHERE key = 'schema_version';
            """
        )
    again = make_rig(path)
    marie = again.store.party("int-marie")
    assert marie is not None and (marie.kind, marie.email, marie.language) == (
        "introducer",
        "marie@example.org",
        "fr",
    )
    await again.feed(envs)
    assert again.email.sent == [] and again.store.counts()["sent"] == len(MARIE)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            SCHEMA_VERSION,
        )
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "introducers" not in tables and "parties" in tables
