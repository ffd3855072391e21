"""An ephemeral, in-process fact store: what `ledger report --events` replays into.

It keeps the same contract as the eventsourcing store (consecutive positions, one append
at a time, position conflicts refused) without serialising anything, so an auditor's
offline replay runs at the speed of the rules. Nothing survives the process.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from ledger.application.ports import PositionConflictError, StoredFact

__all__ = ["MemoryFactStore"]


class MemoryFactStore:
    """:class:`~ledger.application.ports.FactStore` in a list."""

    def __init__(self) -> None:
        # envelopes kept as exact-size str (orjson's bytes carry spare capacity)
        self._facts: list[tuple[str, str, str, str]] = []
        self._tracking: dict[str, int] = {}
        self._statements: dict[str, bytes] = {}
        self._keys: dict[str, bytes] = {}
        self._data_keys: dict[str, tuple[str, bytes]] = {}

    def append(self, facts: Sequence[StoredFact]) -> None:
        if not facts:
            return
        if facts[0].position != len(self._facts) + 1:
            raise PositionConflictError(f"position {facts[0].position} is not next after {len(self._facts)}")
        for offset, fact in enumerate(facts):
            assert fact.position == facts[0].position + offset, "positions must be consecutive"
        self._facts.extend(
            (f.envelope_json.decode("utf-8"), f.recorded_at, f.chain_hash, f.fact_digest) for f in facts
        )

    def read(self, after: int, limit: int) -> Sequence[StoredFact]:
        return [
            StoredFact(position, body.encode("utf-8"), recorded_at, chain, digest)
            for position, (body, recorded_at, chain, digest) in enumerate(
                self._facts[after : after + limit], start=after + 1
            )
        ]

    def read_at(self, positions: Sequence[int]) -> Sequence[StoredFact]:
        return [fact for position in positions if position >= 1 for fact in self.read(position - 1, 1)]

    def read_raw(self, after: int, limit: int) -> Sequence[tuple[int, StoredFact | str]]:
        return [(fact.position, fact) for fact in self.read(after, limit)]

    def last_position(self) -> int:
        return len(self._facts)

    def published_position(self, consumer: str) -> int:
        return self._tracking.get(consumer, 0)

    def save_published_position(self, consumer: str, position: int) -> None:
        self._tracking[consumer] = max(position, self._tracking.get(consumer, 0))

    def save_statement(self, period: str, position: int, body: bytes) -> None:
        self._statements.setdefault(period, body)

    def load_statement(self, period: str) -> bytes | None:
        return self._statements.get(period)

    def deployment_key(self, name: str) -> bytes:
        return self._keys.setdefault(name, secrets.token_bytes(32))

    def data_key(self, owner: str) -> tuple[str, bytes] | None:
        return self._data_keys.get(owner)

    def add_data_key(self, owner: str, master_id: str, wrapped: bytes) -> tuple[str, bytes]:
        return self._data_keys.setdefault(owner, (master_id, wrapped))

    def rewrap_data_key(self, owner: str, old_master_id: str, master_id: str, wrapped: bytes) -> bool:
        known = self._data_keys.get(owner)
        if known is None or known[0] != old_master_id:
            return False
        self._data_keys[owner] = (master_id, wrapped)
        return True

    def delete_data_key(self, owner: str) -> bool:
        return self._data_keys.pop(owner, None) is not None

    def data_key_owners(self) -> list[tuple[str, str]]:
        return sorted((owner, master_id) for owner, (master_id, _) in self._data_keys.items())

    def data_keys(self) -> list[tuple[str, str, bytes]]:
        return sorted((owner, master_id, wrapped) for owner, (master_id, wrapped) in self._data_keys.items())

    def close(self) -> None:
        self._facts.clear()
        self._data_keys.clear()
