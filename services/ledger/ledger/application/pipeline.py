"""The ledger's processing, independent of any transport.

What `ledger serve` does with each batch of inbound messages and each step of its outbox,
as plain synchronous steps; the NATS service drives it, and so does the seeded simulation
(with a fake transport, duplicated and re-ordered deliveries and crashes between steps).

Durable state lives only in the store (the facts and the outbox's published position);
everything held here is rebuilt by :meth:`Pipeline.recover` after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ledger.application.derive import DerivedEvent, Deriver
from ledger.application.ledger import Ledger, Outcome
from ledger.application.links import StatementLinks
from ledger.application.outbound import period_closed_payload, statement_issued_payload
from ledger.application.party_statements import bounded, has_figures, parties_of, party_statement
from ledger.application.periods import closed_statement, period_totals
from ledger.application.ports import FactStore
from ledger.domain.books import PrefixBooks
from ledger.domain.facts import PartyErased, PeriodClosed

__all__ = ["OUTBOX", "OutboxChunk", "Pipeline"]

#: The outbox's name for its tracked position in the store.
OUTBOX = "ledger-outbox-v1"
#: Most log positions derived (and published) in one outbox step.
CHUNK_POSITIONS = 500


@dataclass(frozen=True, slots=True)
class OutboxChunk:
    """Derived events of the positions up to ``upto``, to publish before marking them done."""

    events: tuple[DerivedEvent, ...]
    upto: int


class Pipeline:
    """Inbound batches in, derived events out; one instance per running process."""

    def __init__(
        self,
        ledger: Ledger,
        store: FactStore,
        chunk_positions: int = CHUNK_POSITIONS,
        links: StatementLinks | None = None,
    ) -> None:
        """``links`` signs the statement links each party is sent when a month closes
        (without it, no ``statement.issued`` event goes out)."""
        assert 1 <= chunk_positions <= 100_000, chunk_positions
        self.links = links
        self.ledger = ledger
        self.store = store
        self.chunk_positions = chunk_positions
        self.deriver = Deriver()
        #: The books as of each close, brought forward from one close to the next (a close's
        #: statement then costs what changed since the last one, not a replay of the log).
        #: Dropped at each erasure: they hold the facts as they were read.
        self.statement_books: PrefixBooks | None = None
        self.published = 0
        self._pending: OutboxChunk | None = None

    def recover(self) -> int:
        """Catch up with the store and bring the deriver to the published position (its
        events are already out). Returns how many facts were read."""
        caught = self.ledger.catch_up()
        self.published = self.store.published_position(OUTBOX)
        if self.published > self.ledger.head_position:
            raise RuntimeError(
                f"derived events were published up to position {self.published} but the log ends at "
                f"{self.ledger.head_position}: facts are missing; run `ledger audit verify`"
            )
        # from where the deriver stands: the start, or a snapshot's position
        self.deriver.fast_forward(self.ledger.index.by_position[self.deriver.position : self.published])
        return caught

    def has_pending_chunk(self) -> bool:
        """An outbox chunk is derived but not yet marked published."""
        return self._pending is not None

    def ingest(self, messages: Sequence[bytes | str]) -> list[Outcome]:
        """Validate and store one batch (one transaction); durable when this returns."""
        return self.ledger.ingest(messages)

    def outbox_chunk(self) -> OutboxChunk | None:
        """The next derived events to publish (the same chunk again until it is marked done),
        or None when everything stored is published."""
        if self._pending is not None:
            return self._pending
        self.ledger.catch_up()  # facts other replicas stored
        head = self.ledger.head_position
        if self.deriver.position >= head:
            return None
        upto = min(head, self.deriver.position + self.chunk_positions)
        try:
            events = self._derive(upto)
        except BaseException:
            # all or nothing: a deriver left part-way through the chunk would skip its events
            # on the retry; bring it back to what was published (the retry derives them again)
            self.deriver = Deriver()
            self.deriver.fast_forward(self.ledger.index.by_position[: self.published])
            self.statement_books = None
            raise
        # another replica may have published part of this: the deriver needed every position,
        # but only what lies past the tracked position still has to go out
        tracked = self.store.published_position(OUTBOX)
        self._pending = OutboxChunk(tuple(e for e in events if e.position > tracked), upto)
        return self._pending

    def _derive(self, upto: int) -> list[DerivedEvent]:
        facts = self.ledger.index.by_position
        events: list[DerivedEvent] = []
        for position in range(self.deriver.position + 1, upto + 1):
            fact = facts[position - 1]
            events.extend(self.deriver.advance(position, fact))
            if isinstance(fact, PartyErased):
                self.statement_books = None
            elif isinstance(fact, PeriodClosed):
                events.extend(self._closed(position, fact))
        return events

    def _closed(self, position: int, close: PeriodClosed) -> list[DerivedEvent]:
        """A month closed: its statement frozen (stored) before the close is announced, then
        one ``statement.issued`` per party with anything that month."""
        if self.statement_books is None:
            self.statement_books = PrefixBooks()
        statement = closed_statement(self.ledger, close.period, save=True, prefix=self.statement_books)
        data = period_closed_payload(statement, period_totals(statement))
        events = [DerivedEvent(f"{position}:period.closed:{close.period}", "period.closed", position, data)]
        if self.links is None:
            return events
        recorded = self.ledger.index.recorded_at(position)
        assert recorded is not None, position
        closed_at = datetime.fromisoformat(recorded)
        names = self.ledger.index.names
        accounts = self.ledger.index.masked_accounts()
        for kind, party_id in parties_of(statement):
            view = party_statement(statement, kind, party_id, names, accounts)
            if not has_figures(view):
                continue
            payload = statement_issued_payload(
                kind,
                party_id,
                period=close.period,
                position=position,
                links=self.links.for_party(kind, party_id, close.period, closed_at),
                view=bounded(view),
            )
            ref = f"{kind}/{party_id}/{close.period}"
            events.append(
                DerivedEvent(f"{position}:statement.issued:{ref}", "statement.issued", position, payload)
            )
        return events

    def outbox_done(self, chunk: OutboxChunk) -> None:
        """Every event of ``chunk`` was acknowledged by the broker: record the position."""
        assert chunk is self._pending, "only the pending chunk can be marked done"
        self.store.save_published_position(OUTBOX, chunk.upto)
        self.published = chunk.upto
        self._pending = None
