"""The fact log on ``eventsourcing``: in memory (POPO), SQLite or PostgreSQL.

The whole log is one event stream (one originator id); a fact's position is its
``originator_version``. The recorder's primary key on (originator_id, version) makes a
concurrent append at a taken position fail, which is how writers are serialised.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid5

import orjson
from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.sqlite import SQLiteDatastore

from ledger.application.ports import IntegrityCheckError, PositionConflictError, StoredFact

__all__ = ["LOG_ID", "EventSourcedFactStore", "FactRecorded"]

LOG_ID: UUID = uuid5(UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "coop-ledger/fact-log/v1")


@dataclass(frozen=True)
class FactRecorded(DomainEvent):
    """A fact accepted into the log (``originator_version`` is its position)."""

    envelope_json: str
    chain_hash: str
    fact_digest: str


_TOPIC = f"{FactRecorded.__module__}:{FactRecorded.__qualname__}"


@dataclass(frozen=True)
class StatementFrozen(DomainEvent):
    """The frozen statement of a closed month (rules R9), beside the log: a stream of its
    own per month, one event (saving twice changes nothing)."""

    period: str
    close_position: int
    statement_json: str


@dataclass(frozen=True)
class KeyCreated(DomainEvent):
    """A deployment key (e.g. for the statements' signed links), created once."""

    name: str
    key_hex: str


def _recorded(fact: StoredFact) -> FactRecorded:
    return FactRecorded(
        originator_id=LOG_ID,
        originator_version=fact.position,
        timestamp=datetime.fromisoformat(fact.recorded_at),
        envelope_json=fact.envelope_json.decode("utf-8"),
        chain_hash=fact.chain_hash,
        fact_digest=fact.fact_digest,
    )


def _stored_record(fact: StoredFact) -> StoredEvent:
    """The row eventsourcing's mapper would write for ``fact`` (the same JSON document, which
    it reads back), encoded once with orjson instead of through the standard encoder: the
    envelope is already canonical JSON, and this is the ingest path's hot loop."""
    timestamp = datetime.fromisoformat(fact.recorded_at).isoformat()  # as the mapper writes it
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": timestamp},
        "envelope_json": fact.envelope_json.decode("utf-8"),
        "chain_hash": fact.chain_hash,
        "fact_digest": fact.fact_digest,
    }
    return StoredEvent(
        originator_id=LOG_ID, originator_version=fact.position, topic=_TOPIC, state=orjson.dumps(state)
    )


def statement_stream(period: str) -> UUID:
    return uuid5(LOG_ID, f"statement:{period}")


def _plain_cursor(cursor: Any) -> Any:
    """The ``sqlite3`` cursor inside eventsourcing's wrapper, made to return plain tuples
    instead of ``sqlite3.Row`` (this cursor only: eventsourcing opens one per transaction)."""
    inner = cursor.sqlite_cursor
    inner.row_factory = None
    return inner


class FactLogApplication(Application[UUID]):
    name = "CommissionLedger"


#: Positions read in one ``IN (...)`` select (SQLite allows 32,766 parameters).
_READ_AT_CHUNK = 500


class EventSourcedFactStore:
    """:class:`~ledger.application.ports.FactStore` on an eventsourcing recorder."""

    def __init__(
        self, env: dict[str, str], on_commit: Callable[[float], None] | None = None, *, create: bool = True
    ) -> None:
        """``on_commit`` is told how long each append transaction took (seconds). Without
        ``create`` the tables are taken as they are (a reader beside a store already opened:
        concurrent table creations conflict on PostgreSQL)."""
        if not create:
            env = {**env, "CREATE_TABLE": "n"}
        self.app = FactLogApplication(env=env)
        self._tracking = self.app.factory.tracking_recorder()
        self._on_commit = on_commit
        self._keys = _DataKeyTable(self.app.recorder, env.get("SQLITE_DBNAME"), create=create)
        #: No cipher, no compressor: facts are written and read as the stored JSON directly.
        self._plain = self.app.mapper.cipher is None and self.app.mapper.compressor is None
        recorder: Any = self.app.recorder
        table = str(getattr(recorder, "events_table_name", "stored_events"))
        assert table.isidentifier(), table  # eventsourcing's own table name, never input
        self._sqlite_select = (
            f"SELECT originator_version, topic, state FROM {table} "  # noqa: S608
            "WHERE originator_id=? AND originator_version>? ORDER BY originator_version ASC LIMIT ?"
            if isinstance(getattr(recorder, "datastore", None), SQLiteDatastore)
            else None
        )
        self._sqlite_select_at = (
            f"SELECT originator_version, topic, state FROM {table} "  # noqa: S608
            "WHERE originator_id=? AND originator_version IN (?) ORDER BY originator_version ASC"
        )

    def last_position(self) -> int:
        records = self.app.recorder.select_events(LOG_ID, desc=True, limit=1)
        return int(records[0].originator_version) if records else 0

    def published_position(self, consumer: str) -> int:
        """How far ``consumer`` (e.g. the outbox) got through the log."""
        return self._tracking.max_tracking_id(consumer) or 0

    def save_published_position(self, consumer: str, position: int) -> None:
        """Record that ``consumer`` is done with every position up to ``position``."""
        if position > self.published_position(consumer):
            # (another replica may have recorded this position, or a later one, first)
            with contextlib.suppress(IntegrityError):
                self._tracking.insert_tracking(Tracking(application_name=consumer, notification_id=position))

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        self.app.recorder.select_events(LOG_ID, gt=0, limit=1)

    def append(self, facts: Sequence[StoredFact]) -> None:
        if not facts:
            return
        if self._plain:
            records = [_stored_record(fact) for fact in facts]
        else:  # a cipher or compressor configured: the mapper applies them
            records = [self.app.mapper.to_stored_event(_recorded(fact)) for fact in facts]
        started = time.perf_counter()
        try:
            self.app.recorder.insert_events(records)  # one transaction
        except IntegrityError as exc:
            raise PositionConflictError(str(exc)) from exc
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started)

    def read(self, after: int, limit: int) -> Sequence[StoredFact]:
        out = []
        for position, record in self.read_raw(after, limit):
            if isinstance(record, str):
                raise IntegrityCheckError(
                    f"stored fact {position} cannot be read ({record}); run `ledger audit verify`"
                )
            out.append(record)
        return out

    def _rows(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        """(position, topic, stored state) of the facts after ``after``, in order. On SQLite
        one plain select (the audit walks millions: no StoredEvent, no UUID per row)."""
        recorder: Any = self.app.recorder
        if self._sqlite_select is not None:
            with recorder.datastore.transaction(commit=False) as cursor:
                plain = _plain_cursor(cursor)
                plain.execute(self._sqlite_select, (LOG_ID.hex, after, limit))
                rows: list[tuple[int, str, bytes]] = plain.fetchall()
                return rows
        return [
            (record.originator_version, record.topic, record.state)
            for record in recorder.select_events(LOG_ID, gt=after, limit=limit)
        ]

    def read_at(self, positions: Sequence[int]) -> Sequence[StoredFact]:
        out: list[StoredFact] = []
        for start in range(0, len(positions), _READ_AT_CHUNK):
            rows = self._rows_at(positions[start : start + _READ_AT_CHUNK])
            for position, record in self._decoded(rows):
                if isinstance(record, str):
                    raise IntegrityCheckError(
                        f"stored fact {position} cannot be read ({record}); run `ledger audit verify`"
                    )
                out.append(record)
        return out

    def _rows_at(self, positions: Sequence[int]) -> list[tuple[int, str, bytes]]:
        """(position, topic, stored state) of the facts at ``positions`` (ascending)."""
        recorder: Any = self.app.recorder
        if self._sqlite_select is not None:
            marks = ",".join("?" * len(positions))
            sql = self._sqlite_select_at.replace("(?)", f"({marks})")
            with recorder.datastore.transaction(commit=False) as cursor:
                plain = _plain_cursor(cursor)
                plain.execute(sql, (LOG_ID.hex, *positions))
                rows: list[tuple[int, str, bytes]] = plain.fetchall()
                return rows
        return [
            (record.originator_version, record.topic, record.state)
            for position in positions
            for record in recorder.select_events(LOG_ID, gt=position - 1, lte=position, limit=1)
        ]

    def read_raw(self, after: int, limit: int) -> Sequence[tuple[int, StoredFact | str]]:
        return self._decoded(self._rows(after, limit))

    def _decoded(self, rows: list[tuple[int, str, bytes]]) -> list[tuple[int, StoredFact | str]]:
        out: list[tuple[int, StoredFact | str]] = []
        plain = self._plain
        for position, topic, state_bytes in rows:
            try:
                if topic != _TOPIC:
                    raise TypeError(f"unexpected event type {topic}")
                if plain:  # the stored JSON read directly: the audit walks millions of these
                    state = orjson.loads(state_bytes)
                    fact = StoredFact(
                        position,
                        state["envelope_json"].encode("utf-8"),
                        state["timestamp"]["_data_"],
                        state["chain_hash"],
                        state["fact_digest"],
                    )
                    if not (
                        type(fact.recorded_at) is str
                        and type(fact.chain_hash) is str
                        and type(fact.fact_digest) is str
                    ):
                        raise TypeError("a stored field has the wrong type")
                else:
                    record = StoredEvent(
                        originator_id=LOG_ID, originator_version=position, topic=topic, state=state_bytes
                    )
                    event = self.app.mapper.to_domain_event(record)
                    assert isinstance(event, FactRecorded)
                    fact = StoredFact(
                        event.originator_version,
                        event.envelope_json.encode("utf-8"),
                        event.timestamp.isoformat(),
                        event.chain_hash,
                        event.fact_digest,
                    )
                out.append((position, fact))
            except Exception as exc:  # an altered row: the audit reports it, never crashes on it
                out.append((position, f"{type(exc).__name__}: {exc}"[:300]))
        return out

    def save_statement(self, period: str, position: int, body: bytes) -> None:
        event = StatementFrozen(
            originator_id=statement_stream(period),
            originator_version=1,
            timestamp=datetime.now(UTC),
            period=period,
            close_position=position,
            statement_json=body.decode("utf-8"),
        )
        with contextlib.suppress(IntegrityError):  # saved already: the same statement
            self.app.events.put([event])

    def load_statement(self, period: str) -> bytes | None:
        records = self.app.recorder.select_events(statement_stream(period), gt=0, limit=1)
        if not records:
            return None
        event = self.app.mapper.to_domain_event(records[0])
        assert isinstance(event, StatementFrozen), event
        return event.statement_json.encode("utf-8")

    def deployment_key(self, name: str) -> bytes:
        stream = uuid5(LOG_ID, f"key:{name}")
        for _ in range(2):
            records = self.app.recorder.select_events(stream, gt=0, limit=1)
            if records:
                event = self.app.mapper.to_domain_event(records[0])
                assert isinstance(event, KeyCreated), event
                return bytes.fromhex(event.key_hex)
            created = KeyCreated(
                originator_id=stream,
                originator_version=1,
                timestamp=datetime.now(UTC),
                name=name,
                key_hex=secrets.token_hex(32),
            )
            with contextlib.suppress(IntegrityError):  # another replica created it first
                self.app.events.put([created])
        raise RuntimeError(f"the deployment key {name!r} could not be created nor read")

    def data_key(self, owner: str) -> tuple[str, bytes] | None:
        return self._keys.get(owner)

    def add_data_key(self, owner: str, master_id: str, wrapped: bytes) -> tuple[str, bytes]:
        return self._keys.add(owner, master_id, wrapped)

    def rewrap_data_key(self, owner: str, old_master_id: str, master_id: str, wrapped: bytes) -> bool:
        return self._keys.rewrap(owner, old_master_id, master_id, wrapped)

    def delete_data_key(self, owner: str) -> bool:
        return self._keys.delete(owner)

    def data_key_owners(self) -> list[tuple[str, str]]:
        return self._keys.owners()

    def data_keys(self) -> list[tuple[str, str, bytes]]:
        return self._keys.all()

    def close(self) -> None:
        self.app.close()


#: The persons' data keys live in a table of their own (``ledger_data_keys``) beside the
#: recorder's, since erasure deletes rows (the log itself is append-only).


def _is_postgres(datastore: object) -> bool:
    """Whether ``datastore`` is eventsourcing's PostgreSQL one (its module, psycopg included, is
    loaded only when the store is PostgreSQL: the other commands start without it)."""
    if type(datastore).__module__ != "eventsourcing.postgres":
        return False
    from eventsourcing.postgres import PostgresDatastore

    return isinstance(datastore, PostgresDatastore)


class _DataKeyTable:
    """Wrapped data keys in the store's database (SQLite or PostgreSQL), or in memory when
    the recorder has no database (``memory:``)."""

    def __init__(self, recorder: object, sqlite_path: str | None, *, create: bool = True) -> None:
        datastore = getattr(recorder, "datastore", None)
        self._sqlite = isinstance(datastore, SQLiteDatastore)
        self._datastore = datastore if self._sqlite or _is_postgres(datastore) else None
        self._sqlite_path = (
            sqlite_path if self._sqlite and sqlite_path and "memory" not in sqlite_path else None
        )
        self._memory: dict[str, tuple[str, bytes]] = {}
        if self._datastore is not None and create:
            self._execute(
                "CREATE TABLE IF NOT EXISTS ledger_data_keys "
                + (
                    "(owner TEXT PRIMARY KEY, master_id TEXT NOT NULL, wrapped BLOB NOT NULL)"
                    if self._sqlite
                    else "(owner TEXT PRIMARY KEY, master_id TEXT NOT NULL, wrapped BYTEA NOT NULL)"
                )
            )

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        assert self._datastore is not None
        if not self._sqlite:
            sql = sql.replace("?", "%s")
        with self._datastore.transaction(commit=True) as wrapped_cursor:
            cursor: Any = getattr(wrapped_cursor, "sqlite_cursor", wrapped_cursor)
            if self._sqlite and sql.startswith("DELETE"):
                cursor.execute("PRAGMA secure_delete = ON")  # overwrite the deleted key's bytes
            cursor.execute(sql, params)
            if cursor.description is None:
                return [(cursor.rowcount,)]
            return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in cursor.fetchall()]

    def get(self, owner: str) -> tuple[str, bytes] | None:
        if self._datastore is None:
            return self._memory.get(owner)
        rows = self._execute("SELECT master_id, wrapped FROM ledger_data_keys WHERE owner = ?", (owner,))
        if not rows:
            return None
        master_id, wrapped = rows[0]
        assert isinstance(wrapped, (bytes, bytearray, memoryview)), type(wrapped)
        return (str(master_id), bytes(wrapped))

    def add(self, owner: str, master_id: str, wrapped: bytes) -> tuple[str, bytes]:
        if self._datastore is None:
            return self._memory.setdefault(owner, (master_id, wrapped))
        self._execute(
            "INSERT INTO ledger_data_keys (owner, master_id, wrapped) VALUES (?, ?, ?) "
            "ON CONFLICT (owner) DO NOTHING",
            (owner, master_id, wrapped),
        )
        kept = self.get(owner)
        assert kept is not None, owner
        return kept

    def rewrap(self, owner: str, old_master_id: str, master_id: str, wrapped: bytes) -> bool:
        if self._datastore is None:
            if self._memory.get(owner, ("",))[0] != old_master_id:
                return False
            self._memory[owner] = (master_id, wrapped)
            return True
        [(count,)] = self._execute(
            "UPDATE ledger_data_keys SET master_id = ?, wrapped = ? WHERE owner = ? AND master_id = ?",
            (master_id, wrapped, owner, old_master_id),
        )
        return bool(count)

    def delete(self, owner: str) -> bool:
        if self._datastore is None:
            return self._memory.pop(owner, None) is not None
        [(count,)] = self._execute("DELETE FROM ledger_data_keys WHERE owner = ?", (owner,))
        if self._sqlite_path is not None:
            # the write-ahead log may still hold the page as it was: fold it in and empty it
            with contextlib.closing(sqlite3.connect(self._sqlite_path, timeout=30)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(count)

    def all(self) -> list[tuple[str, str, bytes]]:
        if self._datastore is None:
            return sorted((owner, master_id, wrapped) for owner, (master_id, wrapped) in self._memory.items())
        rows = self._execute("SELECT owner, master_id, wrapped FROM ledger_data_keys ORDER BY owner")
        out = []
        for owner, master_id, wrapped in rows:
            assert isinstance(wrapped, (bytes, bytearray, memoryview)), type(wrapped)
            out.append((str(owner), str(master_id), bytes(wrapped)))
        return out

    def owners(self) -> list[tuple[str, str]]:
        if self._datastore is None:
            return sorted((owner, master_id) for owner, (master_id, _) in self._memory.items())
        rows = self._execute("SELECT owner, master_id FROM ledger_data_keys ORDER BY owner")
        return [(str(owner), str(master_id)) for owner, master_id in rows]
