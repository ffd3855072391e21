"""The notifier's durable state in SQLite (WAL, synchronous=FULL).

Tables: ``introducers`` (the directory), ``events`` (every ledger event seen, by id, with
what became of it), ``alerts`` (one row per (alert id, channel): the exactly-once record).
An alert is ``sent`` only once the SMTP server or the webhook accepted it. One connection,
used from one thread at a time (the store thread of ``notifier serve``, or the CLI).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from notifier.application.ports import AlertRecord, AlertStatus, EventState, StoredEvent
from notifier.domain.events import AlertKey, Channel, Introducer, LedgerEnvelope

__all__ = ["SCHEMA_VERSION", "SqliteAlertStore"]

SCHEMA_VERSION = "1"
MAX_ROWS = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS introducers (
    introducer_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    email TEXT,
    webhook_url TEXT,
    language TEXT NOT NULL,
    event_id TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
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

_OPEN = "(status = 'pending' OR (status = 'failed' AND failure_published = 0))"
_ALERT_COLUMNS = (
    "alert_id, channel, recipient, status, is_digest, queued_day, attempts, failures, "
    "failure_published, last_reason, last_detail"
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
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._depth = 0
        self._migrate()

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)
        with self.transaction():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: store schema {row[0]}, this notifier reads {SCHEMA_VERSION}"
                )

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

    def introducer(self, introducer_id: str) -> Introducer | None:
        row = self._db.execute(
            "SELECT introducer_id, display_name, email, webhook_url, language FROM introducers "
            "WHERE introducer_id = ?",
            (introducer_id,),
        ).fetchone()
        if row is None:
            return None
        return Introducer(
            introducer_id=row[0], display_name=row[1], email=row[2], webhook_url=row[3], language=row[4]
        )

    def add_introducer(self, introducer: Introducer, event_id: str, at: datetime) -> bool:
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO introducers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                introducer.introducer_id,
                introducer.display_name,
                introducer.email,
                introducer.webhook_url,
                introducer.language,
                event_id,
                _ts(at),
            ),
        )
        return cursor.rowcount == 1

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
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ? AND channel = ?",  # noqa: S608
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
        assert row is not None, key
        return int(row[0])

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
        out["introducers"] = int(self._db.execute("SELECT count(*) FROM introducers").fetchone()[0])
        return out


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
    )
