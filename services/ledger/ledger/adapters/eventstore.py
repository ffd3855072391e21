"""The fact log on ``eventsourcing``: in memory (POPO), SQLite or PostgreSQL.

The whole log is one event stream (one originator id); a fact's position is its
``originator_version``. The recorder's primary key on (originator_id, version) makes a
concurrent append at a taken position fail, which is how writers are serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.application.ports import PositionConflictError, StoredFact

__all__ = ["LOG_ID", "EventSourcedFactStore", "FactRecorded"]

LOG_ID: UUID = uuid5(UUID("6ba7b811-9dad-11d1-80b4-00c04fd430c8"), "coop-ledger/fact-log/v1")


@dataclass(frozen=True)
class FactRecorded(DomainEvent):
    """A fact accepted into the log (``originator_version`` is its position)."""

    envelope_json: str
    chain_hash: str


class FactLogApplication(Application[UUID]):
    name = "CommissionLedger"


class EventSourcedFactStore:
    """:class:`~ledger.application.ports.FactStore` on an eventsourcing recorder."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app = FactLogApplication(env=env)
        self._tracking = self.app.factory.tracking_recorder()

    def published_position(self, consumer: str) -> int:
        """How far ``consumer`` (e.g. the outbox) got through the log."""
        return self._tracking.max_tracking_id(consumer) or 0

    def save_published_position(self, consumer: str, position: int) -> None:
        """Record that ``consumer`` is done with every position up to ``position``."""
        if position > self.published_position(consumer):
            self._tracking.insert_tracking(Tracking(application_name=consumer, notification_id=position))

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        self.app.recorder.select_events(LOG_ID, gt=0, limit=1)

    def append(self, facts: Sequence[StoredFact]) -> None:
        if not facts:
            return

        events = [
            FactRecorded(
                originator_id=LOG_ID,
                originator_version=fact.position,
                timestamp=datetime.fromisoformat(fact.recorded_at),
                envelope_json=fact.envelope_json.decode("utf-8"),
                chain_hash=fact.chain_hash,
            )
            for fact in facts
        ]
        try:
            self.app.events.put(events)  # one transaction; skips save()'s aggregate collection
        except IntegrityError as exc:
            raise PositionConflictError(str(exc)) from exc

    def read(self, after: int, limit: int) -> Sequence[StoredFact]:
        stored = self.app.recorder.select_events(LOG_ID, gt=after, limit=limit)
        out = []
        for record in stored:
            event = self.app.mapper.to_domain_event(record)
            assert isinstance(event, FactRecorded), type(event)
            out.append(
                StoredFact(
                    event.originator_version,
                    event.envelope_json.encode("utf-8"),
                    event.timestamp.isoformat(),
                    event.chain_hash,
                )
            )
        return out

    def close(self) -> None:
        self.app.close()
