"""The event stores the suites run on: a SQLite file and a throwaway PostgreSQL database.
Both expose the raw rows, so the audit tests can tamper with them."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from ledger.adapters.eventstore import LOG_ID
from tests.support.postgres import PostgresServer


@dataclass
class StoreUnderTest:
    kind: str
    url: str
    sqlite_path: Path | None = None
    pg: PostgresServer | None = None

    @property
    def table(self) -> str:
        return "stored_events" if self.kind == "sqlite" else "commissionledger_events"

    @property
    def log_id(self) -> object:
        """The fact log's originator id as the table holds it (the store also keeps frozen
        statements and deployment keys in streams of their own)."""
        return LOG_ID.hex if self.kind == "sqlite" else LOG_ID

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            with sqlite3.connect(self.sqlite_path) as db:
                return list(db.execute(sql, params))
        with psycopg.connect(self.url.replace("postgresql://", "postgresql://", 1), autocommit=True) as db:
            cursor = db.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []

    def rows(self) -> list[tuple[int, str]]:
        out = self._execute(
            f"SELECT originator_version, state FROM {self.table} WHERE originator_id = ? ORDER BY originator_version",
            (self.log_id,),
        )
        return [(int(v), bytes(s).decode()) for v, s in out]

    def count(self) -> int:
        return int(
            self._execute(f"SELECT COUNT(*) FROM {self.table} WHERE originator_id = ?", (self.log_id,))[0][0]
        )

    def set_state(self, position: int, state: str) -> None:
        self._execute(
            f"UPDATE {self.table} SET state = ? WHERE originator_id = ? AND originator_version = ?",
            (state.encode(), self.log_id, position),
        )

    def delete(self, position: int) -> None:
        self._execute(
            f"DELETE FROM {self.table} WHERE originator_id = ? AND originator_version = ?",
            (self.log_id, position),
        )

    def append_raw(self, position: int, state: str) -> None:
        originator, topic = self._execute(
            f"SELECT originator_id, topic FROM {self.table} WHERE originator_id = ? LIMIT 1", (self.log_id,)
        )[0]
        self._execute(
            f"INSERT INTO {self.table} (originator_id, originator_version, topic, state) VALUES (?,?,?,?)",
            (originator, position, topic, state.encode()),
        )
