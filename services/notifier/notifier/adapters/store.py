"""The notifier's durable state in SQLite (WAL, synchronous=FULL).

Tables: ``parties`` (the directory: introducers, clients, advisers, by directory key),
``events`` (every ledger event seen, by id, with what became of it), ``alerts`` (one row per
(alert id, channel): the exactly-once record). An alert is ``sent`` only once the SMTP
server or the webhook accepted it. One connection, used from one thread at a time (the
store thread of ``notifier serve``, or the CLI).

Schema 2 (clients and advisers in the directory) replaced schema 1's ``introducers`` table
by ``parties``; a schema-1 store is migrated when opened (its introducers copied, keyed by
their id as before), in one transaction. Schema 3 (erasure) lets a ``parties`` row be a
tombstone: ``erased_at`` set, no name, e-mail, webhook URL or language; a schema-2 store's
``parties`` is rebuilt so when opened (an older notifier refuses a schema-3 store rather
than bring an erased party back).

The connection deletes securely (``PRAGMA secure_delete``: what a delete or an update frees
is overwritten with zeros); an erasure then rebuilds the file from its live rows and
truncates the WAL (:meth:`SqliteAlertStore.shred`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from notifier.application.ports import (
    AlertRecord,
    AlertStatus,
    Erasure,
    EventState,
    StatementBacklog,
    StoredEvent,
)
from notifier.domain.events import AlertKey, Channel, LedgerEnvelope, Party, PartyKind, party_key
from notifier.domain.statements import STATEMENT_KIND

__all__ = ["SCHEMA_VERSION", "SqliteAlertStore"]

SCHEMA_VERSION = "3"
MAX_ROWS = 100_000

#: The directory (schema 3): a party's contact, or a tombstone (``erased_at`` set, no
#: contact; ``event_id`` and ``registered_at`` are its registration's, if it had one).
_PARTIES = """
CREATE TABLE IF NOT EXISTS {name} (
    party_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    party_id TEXT NOT NULL,
    display_name TEXT,
    email TEXT,
    webhook_url TEXT,
    language TEXT,
    event_id TEXT,
    registered_at TEXT,
    erased_at TEXT,
    CHECK (
        erased_at IS NULL
        AND display_name IS NOT NULL AND language IS NOT NULL
        AND event_id IS NOT NULL AND registered_at IS NOT NULL
        OR erased_at IS NOT NULL
        AND display_name IS NULL AND email IS NULL AND webhook_url IS NULL AND language IS NULL
    )
);
"""
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    recipient TEXT,
    state TEXT NOT NULL,
    envelope BLOB NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_waiting ON events (recipient, position) WHERE state = 'waiting';
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    is_digest INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    queued_day TEXT,
    digest_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    failure_published INTEGER NOT NULL DEFAULT 0,
    last_reason TEXT,
    last_detail TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX IF NOT EXISTS alerts_by_recipient ON alerts (recipient, status);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status, queued_day);
CREATE INDEX IF NOT EXISTS alerts_by_digest ON alerts (digest_id, channel);
"""
_SCHEMA = _TABLES + _PARTIES.format(name="parties")

_MIGRATE_1_TO_2 = """
INSERT OR IGNORE INTO parties
    (party_key, kind, party_id, display_name, email, webhook_url, language, event_id, registered_at)
    SELECT introducer_id, 'introducer', introducer_id, display_name, email, webhook_url, language,
           event_id, registered_at
    FROM introducers;
DROP TABLE introducers;
"""

#: After creating ``parties_3`` as ``_PARTIES`` has it.
_MIGRATE_2_TO_3 = """
INSERT INTO parties_3
    (party_key, kind, party_id, display_name, email, webhook_url, language, event_id, registered_at)
    SELECT party_key, kind, party_id, display_name, email, webhook_url, language, event_id, registered_at
    FROM parties;
DROP TABLE parties;
ALTER TABLE parties_3 RENAME TO parties;
"""

_OPEN = "(status = 'pending' OR (status = 'failed' AND failure_published = 0))"
_ALERT_COLUMNS = (
    "a.alert_id, a.channel, a.recipient, a.status, a.is_digest, a.queued_day, a.attempts, a.failures, "
    "a.failure_published, a.last_reason, a.last_detail, e.kind"
)
#: The party kind of a directory key, in SQL (see notifier.domain.events.party_key).
_KIND_OF_KEY = (
    "CASE WHEN {0} LIKE 'client/%' THEN 'client' WHEN {0} LIKE 'adviser/%' THEN 'adviser' "
    "ELSE 'introducer' END"
)


def _ts(at: datetime) -> str:
    assert at.tzinfo is not None, "timestamps are timezone-aware"
    return at.isoformat()


class SqliteAlertStore:
    """:class:`notifier.application.ports.AlertStore` on one SQLite file."""

    def __init__(self, path: Path, busy_timeout_s: float = 10.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")  # freed bytes are zeroed (erasure)
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._depth = 0
        self._migrate()

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        with self.transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                return
            version = row[0]
            if version == "1":  # parties was just created (as schema 3 has it)
                self._script(_MIGRATE_1_TO_2)
                version = "2"
            if version == "2":
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(parties)")}
                if "erased_at" not in columns:
                    self._script(_PARTIES.format(name="parties_3"))
                    self._script(_MIGRATE_2_TO_3)
                version = "3"
            if version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: store schema {row[0]}, this notifier reads {SCHEMA_VERSION}"
                )
            if row[0] != version:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))

    def _script(self, script: str) -> None:
        """Run ``script``'s statements in the current transaction (``executescript`` would
        commit it)."""
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()

    # events and the directory --------------------------------------------------------

    def event(self, event_id: str) -> StoredEvent | None:
        row = self._db.execute(
            "SELECT envelope, recipient, state FROM events WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is None:
            return None
        return StoredEvent(_envelope(row[0]), row[1], cast(EventState, row[2]))

    def add_event(
        self, envelope: LedgerEnvelope, recipient: str | None, state: EventState, at: datetime
    ) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                envelope.id,
                envelope.kind,
                envelope.ledgerposition,
                recipient,
                state,
                orjson.dumps(envelope.model_dump(mode="json")),
                _ts(at),
            ),
        )

    def set_event_state(self, event_id: str, state: EventState) -> None:
        self._db.execute("UPDATE events SET state = ? WHERE event_id = ?", (state, event_id))

    def waiting_events(self, recipient: str) -> Sequence[LedgerEnvelope]:
        rows = self._db.execute(
            "SELECT envelope FROM events WHERE state = 'waiting' AND recipient = ? "
            "ORDER BY position, event_id LIMIT ?",
            (recipient, MAX_ROWS),
        ).fetchall()
        return [_envelope(r[0]) for r in rows]

    def party(self, key: str) -> Party | None:
        row = self._db.execute(
            "SELECT kind, party_id, display_name, email, webhook_url, language FROM parties "
            "WHERE party_key = ? AND erased_at IS NULL",
            (key,),
        ).fetchone()
        if row is None:
            return None
        kind, party_id, display_name, email, webhook_url, language = row
        return Party(
            kind=kind,
            party_id=party_id,
            display_name=display_name,
            email=email,
            webhook_url=webhook_url,
            language=language,
        )

    def add_party(self, party: Party, event_id: str, at: datetime) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO parties (party_key, kind, party_id, display_name, email, webhook_url, "
            "language, event_id, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                party.key,
                party.kind,
                party.party_id,
                party.display_name,
                party.email,
                party.webhook_url,
                party.language,
                event_id,
                _ts(at),
            ),
        )
        return cursor.rowcount == 1

    # erasure -----------------------------------------------------------------------------

    def party_erased(self, key: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM parties WHERE party_key = ? AND erased_at IS NOT NULL", (key,)
        ).fetchone()
        return row is not None

    def erase_party(self, kind: PartyKind, party_id: str, at: datetime) -> Erasure:
        key = party_key(kind, party_id)
        tombstoned = (
            self._db.execute(
                "UPDATE parties SET display_name = NULL, email = NULL, webhook_url = NULL, language = NULL, "
                "erased_at = ? WHERE party_key = ? AND erased_at IS NULL",
                (_ts(at), key),
            ).rowcount
            == 1
        )
        if not tombstoned:
            tombstoned = (
                self._db.execute(
                    "INSERT OR IGNORE INTO parties (party_key, kind, party_id, erased_at) "
                    "VALUES (?, ?, ?, ?)",
                    (key, kind, party_id, _ts(at)),
                ).rowcount
                == 1
            )
        unsent = int(
            self._db.execute(
                "SELECT count(*) FROM alerts WHERE recipient = ? AND status != 'sent'", (key,)
            ).fetchone()[0]
        )
        alerts = self._db.execute("DELETE FROM alerts WHERE recipient = ?", (key,)).rowcount
        events = self._db.execute(
            "DELETE FROM events WHERE recipient = ? AND state NOT IN ('erasure', 'erased')", (key,)
        ).rowcount
        return Erasure(events=events, alerts=alerts, unsent=unsent, tombstoned=tombstoned)

    def redact_mentions(self, needles: Sequence[str], redact: Callable[[Any], Any]) -> int:
        wanted = _search_forms(needles)
        if not wanted:
            return 0
        hits = [
            (event_id, bytes(blob))
            for event_id, blob in self._db.execute("SELECT event_id, envelope FROM events")
            if _mentions(bytes(blob), wanted)
        ]
        changed = 0
        for event_id, blob in hits:
            stored = orjson.loads(blob)
            data = redact(stored["data"])
            if data != stored["data"]:
                stored["data"] = data
                self._db.execute(
                    "UPDATE events SET envelope = ? WHERE event_id = ?", (orjson.dumps(stored), event_id)
                )
                changed += 1
        details = [
            (alert_id, channel, detail)
            for alert_id, channel, detail in self._db.execute(
                "SELECT alert_id, channel, last_detail FROM alerts WHERE last_detail IS NOT NULL"
            )
            if _mentions(detail.encode(), wanted)
        ]
        for alert_id, channel, detail in details:
            redacted = redact(detail)
            if redacted != detail:
                self._db.execute(
                    "UPDATE alerts SET last_detail = ? WHERE alert_id = ? AND channel = ?",
                    (redacted, alert_id, channel),
                )
                changed += 1
        return changed

    def shred(self) -> None:
        """Rebuild the database file from its live rows (``VACUUM``: no free page, and no
        free space in a page, keeps the bytes of a row deleted or rewritten, even one
        written before ``secure_delete`` was on), then copy the WAL into it and truncate the
        WAL to zero bytes. Raises :class:`sqlite3.OperationalError` when another connection
        reading an older snapshot keeps the WAL from being truncated."""
        assert not self._depth, "shred runs outside a transaction"
        self._db.execute("VACUUM")
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise sqlite3.OperationalError(f"{self.path}: the WAL is in use by a reader; not truncated")

    # alerts ------------------------------------------------------------------------------

    def add_alert(
        self, key: AlertKey, recipient: str, status: AlertStatus, queued_day: date | None, at: datetime
    ) -> bool:
        position = self._db.execute(
            "SELECT position FROM events WHERE event_id = ?", (key.alert_id,)
        ).fetchone()
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO alerts (alert_id, channel, recipient, status, position, queued_day, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.alert_id,
                key.channel,
                recipient,
                status,
                position[0] if position else 0,
                queued_day.isoformat() if queued_day else None,
                _ts(at),
                _ts(at),
            ),
        )
        return cursor.rowcount == 1

    def alert(self, key: AlertKey) -> AlertRecord | None:
        row = self._db.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts a LEFT JOIN events e ON e.event_id = a.alert_id "  # noqa: S608
            "WHERE a.alert_id = ? AND a.channel = ?",
            (key.alert_id, key.channel),
        ).fetchone()
        return None if row is None else _record(row)

    def open_alerts_of_event(self, event_id: str) -> list[AlertKey]:
        rows = self._db.execute(
            f"SELECT alert_id, channel FROM alerts WHERE alert_id = ? AND {_OPEN}",  # noqa: S608
            (event_id,),
        ).fetchall()
        return [AlertKey(r[0], r[1]) for r in rows]

    def open_alerts_of_recipient(self, recipient: str) -> list[AlertKey]:
        rows = self._db.execute(
            f"SELECT alert_id, channel FROM alerts WHERE recipient = ? AND {_OPEN} "  # noqa: S608
            "ORDER BY position, alert_id LIMIT ?",
            (recipient, MAX_ROWS),
        ).fetchall()
        return [AlertKey(r[0], r[1]) for r in rows]

    def record_sent(self, key: AlertKey, attempts: int, at: datetime) -> bool:
        with self.transaction():
            cursor = self._db.execute(
                "UPDATE alerts SET status = 'sent', attempts = ?, sent_at = ?, updated_at = ? "
                "WHERE alert_id = ? AND channel = ? AND status IN ('pending', 'resending')",
                (attempts, _ts(at), _ts(at), key.alert_id, key.channel),
            )
            if cursor.rowcount == 1:
                self._db.execute(
                    "UPDATE alerts SET status = 'sent', sent_at = ?, updated_at = ? "
                    "WHERE digest_id = ? AND channel = ? AND status = 'digested'",
                    (_ts(at), _ts(at), key.alert_id, key.channel),
                )
            return cursor.rowcount == 1

    def record_failed(self, key: AlertKey, attempts: int, reason: str, detail: str, at: datetime) -> int:
        with self.transaction():
            self._db.execute(
                "UPDATE alerts SET status = 'failed', attempts = ?, failures = failures + 1, "
                "failure_published = 0, last_reason = ?, last_detail = ?, updated_at = ? "
                "WHERE alert_id = ? AND channel = ? AND status IN ('pending', 'resending')",
                (attempts, reason, detail[:500], _ts(at), key.alert_id, key.channel),
            )
            row = self._db.execute(
                "SELECT failures FROM alerts WHERE alert_id = ? AND channel = ?", (key.alert_id, key.channel)
            ).fetchone()
        return 0 if row is None else int(row[0])  # 0: the alert is gone (its party erased)

    def mark_failure_published(self, key: AlertKey) -> None:
        self._db.execute(
            "UPDATE alerts SET failure_published = 1 WHERE alert_id = ? AND channel = ?",
            (key.alert_id, key.channel),
        )

    def claim_failed(
        self, at: datetime, stale_before: datetime, alert_id: str | None, channel: Channel | None, limit: int
    ) -> list[AlertKey]:
        where = "(status = 'failed' OR (status = 'resending' AND updated_at < ?))"
        params: list[Any] = [_ts(stale_before)]
        if alert_id is not None:
            where += " AND alert_id = ?"
            params.append(alert_id)
        if channel is not None:
            where += " AND channel = ?"
            params.append(channel)
        with self.transaction():
            rows = self._db.execute(
                f"SELECT alert_id, channel FROM alerts WHERE {where} ORDER BY position, alert_id LIMIT ?",  # noqa: S608
                (*params, limit),
            ).fetchall()
            for r in rows:
                self._db.execute(
                    "UPDATE alerts SET status = 'resending', updated_at = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (_ts(at), r[0], r[1]),
                )
        return [AlertKey(r[0], r[1]) for r in rows]

    # digests -----------------------------------------------------------------------------

    def queued_groups(self, last_day: date) -> list[tuple[str, Channel, date]]:
        rows = self._db.execute(
            "SELECT DISTINCT recipient, channel, queued_day FROM alerts "
            "WHERE status = 'queued' AND queued_day <= ? ORDER BY queued_day, recipient, channel LIMIT ?",
            (last_day.isoformat(), MAX_ROWS),
        ).fetchall()
        return [(r[0], cast(Channel, r[1]), date.fromisoformat(r[2])) for r in rows]

    def make_digest(
        self, *, recipient: str, channel: Channel, day: date, digest_id: str, limit: int, at: datetime
    ) -> int:
        with self.transaction():
            rows = self._db.execute(
                "SELECT alert_id FROM alerts WHERE recipient = ? AND channel = ? AND queued_day = ? "
                "AND status = 'queued' ORDER BY position, alert_id LIMIT ?",
                (recipient, channel, day.isoformat(), limit),
            ).fetchall()
            if not rows:
                return 0
            self._db.execute(
                "INSERT INTO alerts (alert_id, channel, recipient, is_digest, status, position, queued_day, "
                "created_at, updated_at) VALUES (?, ?, ?, 1, 'pending', 0, ?, ?, ?)",
                (digest_id, channel, recipient, day.isoformat(), _ts(at), _ts(at)),
            )
            self._db.executemany(
                "UPDATE alerts SET status = 'digested', digest_id = ?, updated_at = ? "
                "WHERE alert_id = ? AND channel = ?",
                [(digest_id, _ts(at), r[0], channel) for r in rows],
            )
        return len(rows)

    def digest_items(self, digest_id: str, channel: Channel) -> list[LedgerEnvelope]:
        rows = self._db.execute(
            "SELECT e.envelope FROM alerts a JOIN events e ON e.event_id = a.alert_id "
            "WHERE a.digest_id = ? AND a.channel = ? ORDER BY a.position, a.alert_id LIMIT ?",
            (digest_id, channel, MAX_ROWS),
        ).fetchall()
        return [_envelope(r[0]) for r in rows]

    def pending_digests(self) -> list[AlertKey]:
        rows = self._db.execute(
            f"SELECT alert_id, channel FROM alerts WHERE is_digest = 1 AND {_OPEN} "  # noqa: S608
            "ORDER BY alert_id, channel LIMIT ?",
            (MAX_ROWS,),
        ).fetchall()
        return [AlertKey(r[0], r[1]) for r in rows]

    # inspection ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, count(*) FROM alerts GROUP BY status").fetchall()
        out = {str(r[0]): int(r[1]) for r in rows}
        out["waiting_events"] = int(
            self._db.execute("SELECT count(*) FROM events WHERE state = 'waiting'").fetchone()[0]
        )
        parties = dict(
            self._db.execute(
                "SELECT kind, count(*) FROM parties WHERE erased_at IS NULL GROUP BY kind"
            ).fetchall()
        )
        out["introducers"] = int(parties.get("introducer", 0))
        out["clients"] = int(parties.get("client", 0))
        out["advisers"] = int(parties.get("adviser", 0))
        out["erased_parties"] = int(
            self._db.execute("SELECT count(*) FROM parties WHERE erased_at IS NOT NULL").fetchone()[0]
        )
        return out

    def statement_backlog(self) -> StatementBacklog:
        unsettled: dict[PartyKind, int] = {}
        oldest: str | None = None
        rows = self._db.execute(
            f"SELECT {_KIND_OF_KEY.format('a.recipient')} AS party_kind, count(*), min(a.created_at) "  # noqa: S608
            "FROM alerts a JOIN events e ON e.event_id = a.alert_id "
            "WHERE a.status IN ('pending', 'resending', 'failed') AND e.kind = ? GROUP BY party_kind",
            (STATEMENT_KIND,),
        ).fetchall()
        for kind, count, first in rows:
            unsettled[cast(PartyKind, kind)] = int(count)
            oldest = first if oldest is None else min(oldest, first)
        waiting = {
            cast(PartyKind, kind): int(count)
            for kind, count in self._db.execute(
                f"SELECT {_KIND_OF_KEY.format('recipient')} AS party_kind, count(*) FROM events "  # noqa: S608
                "WHERE state = 'waiting' AND kind = ? GROUP BY party_kind",
                (STATEMENT_KIND,),
            ).fetchall()
        }
        return StatementBacklog(
            unsettled=unsettled,
            oldest_unsettled=None if oldest is None else datetime.fromisoformat(oldest),
            waiting=waiting,
        )


def _search_forms(needles: Sequence[str]) -> list[bytes]:
    """What to look for in the stored bytes, in lower case: each needle as written and as
    JSON writes it inside a string (quotes, backslashes and control characters escaped)."""
    forms: set[bytes] = set()
    for needle in needles:
        if needle:
            lowered = needle.lower()
            forms.add(lowered.encode())
            forms.add(orjson.dumps(lowered)[1:-1])
    return sorted(forms)


def _mentions(blob: bytes, forms: list[bytes]) -> bool:
    text = blob.decode("utf-8", "replace").lower().encode()
    return any(form in text for form in forms)


def _envelope(blob: bytes) -> LedgerEnvelope:
    return LedgerEnvelope.model_validate(orjson.loads(blob))


def _record(row: Sequence[Any]) -> AlertRecord:
    return AlertRecord(
        key=AlertKey(row[0], row[1]),
        recipient=row[2],
        status=row[3],
        is_digest=bool(row[4]),
        queued_day=date.fromisoformat(row[5]) if row[5] else None,
        attempts=int(row[6]),
        failures=int(row[7]),
        failure_published=bool(row[8]),
        last_reason=row[9],
        last_detail=row[10],
        kind=row[11],
    )
