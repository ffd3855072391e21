"""What the application needs from the outside world (implemented in adapters)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

__all__ = ["FactStore", "IntegrityCheckError", "PositionConflictError", "StoredFact"]


@dataclass(frozen=True, slots=True)
class StoredFact:
    """One accepted fact as the log keeps it: its position (1, 2, ...), the canonical JSON
    of the envelope as accepted (what the chain hash covers), when it was recorded
    (metadata, outside the hash) and its chain hash."""

    position: int
    envelope_json: bytes
    recorded_at: str
    chain_hash: str
    fact_digest: str

    @property
    def envelope(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(self.envelope_json)
        return document


class PositionConflictError(Exception):
    """Another writer appended at the same position first: catch up and retry."""


class IntegrityCheckError(Exception):
    """The stored log does not verify (altered, missing or re-ordered facts)."""


class FactStore(Protocol):
    """The append-only log of accepted facts, and beside it (never in it) the persons'
    data keys, which erasure deletes."""

    def append(self, facts: Sequence[StoredFact]) -> None:
        """Store ``facts`` (consecutive positions after the current head) atomically, in
        one transaction, or raise :class:`PositionConflictError`."""

    def read(self, after: int, limit: int) -> Sequence[StoredFact]:
        """Up to ``limit`` facts with positions greater than ``after``, in order."""

    def read_at(self, positions: Sequence[int]) -> Sequence[StoredFact]:
        """The facts at ``positions`` (ascending), in order; a position the log does not
        hold is left out."""

    def read_raw(self, after: int, limit: int) -> Sequence[tuple[int, StoredFact | str]]:
        """Like :meth:`read`, but a record that cannot be decoded is returned as
        (position, reason) instead of raising: for the audit."""

    def last_position(self) -> int:
        """The position of the last stored fact (0: the log is empty)."""

    def published_position(self, consumer: str) -> int:
        """How far ``consumer`` (e.g. the outbox) got through the log (0 = nowhere)."""

    def save_published_position(self, consumer: str, position: int) -> None:
        """Record that ``consumer`` is done with every position up to ``position``; a lower
        or equal position than the recorded one changes nothing."""

    def save_statement(self, period: str, position: int, body: bytes) -> None:
        """Keep the frozen statement of month ``period`` (closed at ``position``), once:
        saving it again changes nothing (it is a function of the log, the same bytes)."""

    def load_statement(self, period: str) -> bytes | None:
        """The statement saved for ``period``, or None."""

    def deployment_key(self, name: str) -> bytes:
        """A random 32-byte key kept in the store under ``name`` (created the first time it
        is asked for; every replica then reads the same one)."""

    def data_key(self, owner: str) -> tuple[str, bytes] | None:
        """The wrapped data key of ``owner`` (``kind/id``) and the id of the master key that
        wraps it, or None (never created, or destroyed by an erasure)."""

    def add_data_key(self, owner: str, master_id: str, wrapped: bytes) -> tuple[str, bytes]:
        """Keep ``owner``'s wrapped data key unless one exists; the one kept (another replica
        may have created it first)."""

    def rewrap_data_key(self, owner: str, old_master_id: str, master_id: str, wrapped: bytes) -> bool:
        """Replace ``owner``'s key wrapped by ``old_master_id`` (a master key rotation); False
        when it is gone or already rewrapped."""

    def delete_data_key(self, owner: str) -> bool:
        """Destroy ``owner``'s data key, overwriting it where the store allows; True when
        there was one."""

    def data_key_owners(self) -> list[tuple[str, str]]:
        """Every (owner, master key id) with a data key."""

    def data_keys(self) -> list[tuple[str, str, bytes]]:
        """Every data key as stored: (owner, master key id, wrapped key), in one read."""

    def close(self) -> None:
        """Release connections."""
