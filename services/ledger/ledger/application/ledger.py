"""The ledger's service layer: accept inbound messages, keep them in the log, answer
with the books.

Check, then change: a batch is validated and de-duplicated against what the log already
holds, the new facts are appended in one transaction, and only then does the in-memory
index move. Nothing here does I/O itself; the store and the clock are given.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from ledger.application.admission import Admission, admit_everything
from ledger.application.chain import GENESIS, canonical_json, chain_hash, fact_digest
from ledger.application.contract import (
    Rejection,
    fact_of_accepted,
    fact_of_stored,
    parse_envelope,
    type_of_fact,
)
from ledger.application.ports import FactStore, IntegrityCheckError, PositionConflictError, StoredFact
from ledger.application.sealing import Sealer
from ledger.domain.books import Books, build_books
from ledger.domain.facts import (
    AdviserRegistered,
    BankDetailsChanged,
    ClientRegistered,
    Fact,
    FactKey,
    IntroducerRegistered,
    PartyErased,
    PayoutRunApproved,
    PayoutRunProposed,
    PeriodClosed,
)
from ledger.domain.periods import next_period
from ledger.domain.personal import ERASED, PartyRef, owner_of, personal_values, redacted

__all__ = ["MAX_BATCH", "FactIndex", "Head", "Ledger", "Outcome", "fact_from_envelope"]

#: Most messages handled in one call of :meth:`Ledger.ingest` (one transaction).
MAX_BATCH = 10_000
#: How often a batch is retried after another writer took its positions.
MAX_APPEND_ATTEMPTS = 20
READ_PAGE = 1_000
#: The facts that name, and hold the account of, a party (:meth:`FactIndex.note_party`).
PARTY_FACTS = (IntroducerRegistered, ClientRegistered, AdviserRegistered, BankDetailsChanged)

Status = Literal["accepted", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one inbound message."""

    status: Status
    envelope_id: str | None
    fact_type: str | None = None
    position: int | None = None
    reason: str | None = None
    message: str | None = None


def fact_from_envelope(envelope: dict[str, Any]) -> Fact:
    """The fact carried by a stored (already accepted) envelope, without opening its sealed
    personal fields (they read as erased): what an auditor without keys sees."""
    return fact_of_stored(envelope, None)


@dataclass
class _Batch:
    """What a batch being decided has taken in so far (on top of the log)."""

    position: int
    hash: str
    last_closed: str | None
    ids: dict[str, tuple[int, Fact]] = field(default_factory=dict)
    keys: dict[FactKey, tuple[int, Fact]] = field(default_factory=dict)
    erased: set[PartyRef] = field(default_factory=set)


def _out_of_order(period: str, last_closed: str | None) -> str | None:
    """Why closing ``period`` now breaks the order of closes (rules R9), or None."""
    if last_closed is None or period == next_period(last_closed):
        return None
    return (
        f"the last closed month is {last_closed}: the next close must be {next_period(last_closed)}, "
        f"not {period}"
    )


def _masked(iban: str) -> str:
    if iban == ERASED:
        return ERASED
    return "*" * max(len(iban) - 4, 0) + iban[-4:]


@dataclass(frozen=True, slots=True)
class Head:
    """A consistent point of the log: ``position`` facts, the chain hash after them."""

    position: int
    hash: str


@dataclass
class FactIndex:
    """In-memory projection of the log: what is known, by envelope id and business key.

    Only the store thread changes it. Readers on other threads take :attr:`head` (one
    attribute, replaced whole after each batch) and read ``by_position[:head.position]``:
    a consistent snapshot, since positions before the head never change."""

    head_position: int = 0
    head_hash: str = GENESIS
    head: Head = field(default_factory=lambda: Head(0, GENESIS))
    envelope_ids: dict[str, int] = field(default_factory=dict)
    #: Business keys, kind then id -> log position (the fact is ``by_position[position - 1]``);
    #: two levels, not one dict of (kind, id) tuples: a tuple per fact is 56 bytes.
    keys: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Facts in log order: ``by_position[p - 1]`` is the fact stored at position p.
    by_position: list[Fact] = field(default_factory=list)
    #: When facts were recorded, compactly: runs of consecutive positions that share a
    #: recording time (a batch is recorded at one time), as first positions and times.
    _time_starts: list[int] = field(default_factory=list)
    _times: list[str] = field(default_factory=list)
    #: Display names and languages from the registrations (introducers, clients, advisers).
    names: dict[str, str] = field(default_factory=dict)
    languages: dict[str, Literal["fr", "en"]] = field(default_factory=dict)
    #: Each introducer's payout account on record, masked (all but the last four
    #: characters): the registration's, replaced by the latest effective bank details.
    accounts: dict[str, tuple[date, str]] = field(default_factory=dict)
    #: Closed months (rules R9): period -> (position of the close, the close).
    closes: dict[str, tuple[int, PeriodClosed]] = field(default_factory=dict)
    last_closed: str | None = None
    #: The positions of the facts whose personal fields each party owns.
    owned: dict[PartyRef, list[int]] = field(default_factory=dict)
    #: Erased parties -> the position of their erasure.
    erased: dict[PartyRef, int] = field(default_factory=dict)
    #: Erasures whose copies outside the log may remain: party -> (position, the personal
    #: values it had, to look for). Held in memory only; emptied as each completes.
    pending_erasures: dict[PartyRef, tuple[int, list[str]]] = field(default_factory=dict)

    def apply(self, stored: StoredFact, envelope_id: str, fact: Fact) -> None:
        assert stored.position == self.head_position + 1, (stored.position, self.head_position)
        kind, key_id = fact.key
        of_kind = self.keys.get(kind)
        if of_kind is None:
            of_kind = self.keys[kind] = {}
        assert key_id not in of_kind, fact.key
        self.head_position = stored.position
        self.head_hash = stored.chain_hash
        self.envelope_ids[envelope_id] = stored.position
        of_kind[key_id] = stored.position
        self.by_position.append(fact)
        owner = owner_of(fact)
        if owner is not None:
            self.owned.setdefault(owner, []).append(stored.position)
        if isinstance(fact, PartyErased):
            self._erase(PartyRef(fact.party_type, fact.party_id), stored.position)
        elif isinstance(fact, PARTY_FACTS):
            self.note_party(fact)
        elif isinstance(fact, PeriodClosed):
            self.closes[fact.period] = (stored.position, fact)
            self.last_closed = fact.period
        if not self._times or self._times[-1] != stored.recorded_at:
            self._time_starts.append(stored.position)
            self._times.append(stored.recorded_at)

    def note_party(self, fact: Fact) -> None:
        """What a registration or a change of bank details tells about its party: display
        name, language, masked payout account (rebuilt from the facts when a snapshot is
        loaded, which never holds them)."""
        if isinstance(fact, (IntroducerRegistered, ClientRegistered, AdviserRegistered)):
            self.names.setdefault(fact.key[1], fact.display_name)
            self.languages.setdefault(fact.key[1], fact.language)
            if isinstance(fact, IntroducerRegistered) and fact.iban is not None:
                self.accounts.setdefault(fact.introducer_id, (date.min, _masked(fact.iban)))
        elif isinstance(fact, BankDetailsChanged):
            known = self.accounts.get(fact.introducer_id)
            if known is None or fact.effective_date >= known[0]:
                self.accounts[fact.introducer_id] = (fact.effective_date, _masked(fact.iban))

    def _erase(self, party: PartyRef, position: int) -> None:
        """Every fact ``party`` owns, redacted in place (figures unchanged); what they held is
        kept aside until the copies outside the log are scrubbed."""
        needles: list[str] = []
        for at in self.owned.get(party, []):
            fact = self.by_position[at - 1]
            needles.extend(personal_values(fact))
            plain = redacted(fact)
            self.by_position[at - 1] = plain
            if isinstance(plain, (IntroducerRegistered, ClientRegistered, AdviserRegistered)):
                self.names[plain.key[1]] = ERASED
        if party.kind == "introducer" and party.party_id in self.accounts:
            since, _ = self.accounts[party.party_id]
            self.accounts[party.party_id] = (since, ERASED)
        self.erased[party] = position
        self.pending_erasures[party] = (position, sorted(set(needles)))

    def at_key(self, key: FactKey) -> tuple[int, Fact] | None:
        """The position and fact of business key ``key``, or None."""
        of_kind = self.keys.get(key[0])
        position = None if of_kind is None else of_kind.get(key[1])
        return None if position is None else (position, self.by_position[position - 1])

    def masked_accounts(self) -> dict[str, str]:
        """Each introducer's payout account on record, masked."""
        return {who: masked for who, (_, masked) in self.accounts.items()}

    def recorded_at(self, position: int) -> str | None:
        """When the fact at ``position`` was recorded (ISO 8601 with offset)."""
        index = bisect_right(self._time_starts, position) - 1
        return self._times[index] if index >= 0 else None

    def publish_head(self) -> None:
        """Make everything applied so far visible to readers (after a batch)."""
        self.head = Head(self.head_position, self.head_hash)

    def all_facts(self) -> Iterable[Fact]:
        return iter(self.by_position)


class Ledger:
    """Accepts facts into the log and computes the books from it."""

    def __init__(
        self,
        store: FactStore,
        clock: Callable[[], datetime],
        on_growth: Callable[[int], None] | None = None,
        admission: Admission = admit_everything,
        sealer: Sealer | None = None,
    ) -> None:
        """``on_growth`` is told how many facts the in-memory index just took (after each
        stored batch and each page read back), e.g. to manage the process's heap;
        ``admission`` may reject well-formed facts by deployment policy (at intake only);
        ``sealer`` seals personal fields before they are stored and opens them read back
        (without a keyring, e.g. a replay of an exported log, sealed fields read as erased)."""
        self._store = store
        self._clock = clock
        self._on_growth = on_growth
        self._admission = admission
        self._sealer = sealer or Sealer(None)
        self.index = FactIndex()

    @property
    def sealer(self) -> Sealer:
        return self._sealer

    def pending_erasures(self) -> list[tuple[PartyRef, int, list[str]]]:
        """Erasures recorded whose data key still exists: (party, position, the personal values
        to look for in copies outside the log)."""
        return [(party, at, needles) for party, (at, needles) in self.index.pending_erasures.items()]

    def complete_erasure(self, party: PartyRef) -> bool:
        """Destroy ``party``'s data key (after the copies outside the log are scrubbed); True
        when a key was destroyed. Call on the store thread."""
        assert party in self.index.erased, party
        self.index.pending_erasures.pop(party, None)
        keyring = self._sealer.keyring
        return keyring.forget(party) if keyring is not None else False

    def adopt(self, index: FactIndex) -> None:
        """Take ``index`` (loaded from a snapshot) as the log read so far (``on_growth`` is
        not told: whoever loaded it manages the heap it made)."""
        assert self.index.head_position == 0, "adopt into a fresh ledger only"
        index.publish_head()
        self.index = index

    @property
    def store(self) -> FactStore:
        return self._store

    @property
    def head_position(self) -> int:
        return self.index.head_position

    @property
    def head_hash(self) -> str:
        return self.index.head_hash

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply what other writers (or an earlier run) stored. Returns facts read."""
        count = 0
        while True:
            page = self._store.read(self.index.head_position, READ_PAGE)
            if not page:
                return count
            for stored in page:
                self._check_link(stored)
                envelope = stored.envelope
                self.index.apply(stored, envelope["id"], fact_of_accepted(envelope, self._sealer.keyring))
            count += len(page)
            self.index.publish_head()
            if self._on_growth is not None:
                self._on_growth(len(page))
            if progress is not None:
                progress(len(page))

    def _check_link(self, stored: StoredFact) -> None:
        """Refuse to build on a log whose chain does not verify (cheap: one SHA-256)."""
        expected_position = self.index.head_position + 1
        if stored.position != expected_position:
            raise IntegrityCheckError(
                f"fact {expected_position} is missing (next stored is {stored.position}); "
                "run `ledger audit verify`"
            )
        if stored.chain_hash != chain_hash(self.index.head_hash, stored.position, stored.envelope_json):
            raise IntegrityCheckError(
                f"the hash chain breaks at position {stored.position}; run `ledger audit verify`"
            )

    def ingest(self, messages: Sequence[bytes | str]) -> list[Outcome]:
        """Validate, de-duplicate and store ``messages`` (one transaction) and return one
        outcome per message, in order. Nothing is acknowledged by this method: the
        caller may ack once it returns, because the facts are durable by then."""
        assert len(messages) <= MAX_BATCH, len(messages)
        parsed: list[tuple[dict[str, Any], Fact] | Rejection] = []
        for raw in messages:
            try:
                p = parse_envelope(raw, sealed=self._sealer.keyring is None)
            except Rejection as rejection:
                parsed.append(rejection.detached())
                continue
            refused = self._admission(p.fact)
            if refused is not None:
                parsed.append(Rejection(refused.reason, refused.message, p.envelope.id))
            else:
                parsed.append((p.document, p.fact))
        for _ in range(MAX_APPEND_ATTEMPTS):
            outcomes, new = self._decide(parsed)
            if not new:
                return outcomes
            try:
                self._store.append([stored for stored, _, _ in new])
            except PositionConflictError:
                self.catch_up()
                continue
            for stored, envelope_id, fact in new:
                self.index.apply(stored, envelope_id, fact)
            self.index.publish_head()
            if self._on_growth is not None:
                self._on_growth(len(new))
            return outcomes
        raise RuntimeError(f"could not append after {MAX_APPEND_ATTEMPTS} attempts (write contention)")

    def _decide(
        self, parsed: Sequence[tuple[dict[str, Any], Fact] | Rejection]
    ) -> tuple[list[Outcome], list[tuple[StoredFact, str, Fact]]]:
        """Check each message against the log and the batch so far; the new facts get their
        positions and chain hashes (nothing is stored here)."""
        batch = _Batch(self.index.head_position, self.index.head_hash, self.index.last_closed)
        recorded_at = self._clock().isoformat()
        outcomes: list[Outcome] = []
        new: list[tuple[StoredFact, str, Fact]] = []
        for item in parsed:
            if isinstance(item, Rejection):
                outcomes.append(
                    Outcome("rejected", item.envelope_id, reason=item.reason, message=item.message)
                )
                continue
            envelope, fact = item
            envelope_id: str = envelope["id"]
            kind = envelope["type"]
            judged = self._judge(envelope_id, kind, fact, batch)
            if judged is not None:
                outcomes.append(judged)
                continue
            batch.position += 1
            body = canonical_json(self._sealer.seal(envelope, fact))
            stored = StoredFact(
                batch.position,
                body,
                recorded_at,
                chain_hash(batch.hash, batch.position, body),
                fact_digest(body),
            )
            batch.hash = stored.chain_hash
            batch.ids[envelope_id] = (batch.position, fact)
            batch.keys[fact.key] = (batch.position, fact)
            if isinstance(fact, PeriodClosed):
                batch.last_closed = fact.period
            if isinstance(fact, PartyErased):
                batch.erased.add(PartyRef(fact.party_type, fact.party_id))
            new.append((stored, envelope_id, fact))
            outcomes.append(Outcome("accepted", envelope_id, kind, batch.position))
        return outcomes, new

    def _judge(self, envelope_id: str, kind: str, fact: Fact, batch: _Batch) -> Outcome | None:
        """The outcome of a message that is not a new fact (a duplicate, or a rejection by
        what the log already holds), or None: it is taken in."""
        seen = self._seen_envelope(envelope_id) or batch.ids.get(envelope_id)
        if seen is not None:
            seen_at, seen_fact = seen
            if self._same(seen_fact, fact) and type_of_fact(seen_fact) == kind:
                message = f"envelope id already accepted at position {seen_at}"
                return Outcome("duplicate", envelope_id, kind, seen_at, message=message)
            message = (
                f"envelope id {envelope_id!r} was accepted at position {seen_at} with another "
                "type or other data; the first one stands"
            )
            return Outcome("rejected", envelope_id, kind, reason="conflict", message=message)
        known = self.index.at_key(fact.key) or batch.keys.get(fact.key)
        if known is not None:
            known_at, known_fact = known
            if self._same(known_fact, fact):
                message = f"same {fact.key[0]} {fact.key[1]!r} already at position {known_at}"
                return Outcome("duplicate", envelope_id, kind, known_at, message=message)
            message = (
                f"{fact.key[0]} {fact.key[1]!r} was accepted at position {known_at} "
                "with different data; the first one stands"
            )
            return Outcome("rejected", envelope_id, kind, reason="conflict", message=message)
        refused = self._stateful_refusal(fact, batch)
        if refused is not None:
            return Outcome("rejected", envelope_id, kind, reason=refused[0], message=refused[1])
        return None

    def _same(self, stored: Fact, incoming: Fact) -> bool:
        """The same fact again: equal, or equal once redacted when the stored one belongs to
        an erased person (a message redelivered after the erasure is a duplicate)."""
        if stored == incoming or (isinstance(stored, PartyErased) and isinstance(incoming, PartyErased)):
            return True  # erasing the same person again changes nothing
        owner = owner_of(incoming)
        return owner is not None and owner in self.index.erased and stored == redacted(incoming)

    def _stateful_refusal(self, fact: Fact, batch: _Batch) -> tuple[str, str] | None:
        """Rules that depend on what the log holds: closes in order (R9), payout runs
        approved by another person than their proposer."""
        if isinstance(fact, PeriodClosed):
            out_of_order = _out_of_order(fact.period, batch.last_closed)
            return None if out_of_order is None else ("period_out_of_order", out_of_order)
        if isinstance(fact, PayoutRunApproved):
            return self._unapprovable(fact, batch.keys)
        owner = owner_of(fact)
        if owner is not None and (owner in self.index.erased or owner in batch.erased):
            message = (
                f"{owner} was erased: personal data about them is not taken in again "
                "(a new relationship needs a new id)"
            )
            return ("party_erased", message)
        return None

    def _unapprovable(
        self, approval: PayoutRunApproved, batch_keys: dict[FactKey, tuple[int, Fact]]
    ) -> tuple[str, str] | None:
        """Four eyes on a payout run: it exists, and its approver is not its proposer."""
        key: FactKey = ("payout_run", approval.run_id)
        known = self.index.at_key(key) or batch_keys.get(key)
        if known is None:
            return ("unknown_run", f"no payout run {approval.run_id!r} was proposed")
        proposal = known[1]
        assert isinstance(proposal, PayoutRunProposed), proposal
        if proposal.proposed_by == approval.approved_by:
            message = (
                f"payout run {approval.run_id!r} was proposed by {approval.approved_by!r}: "
                "another person must approve it"
            )
            return ("approval_required", message)
        return None

    def _seen_envelope(self, envelope_id: str) -> tuple[int, Fact] | None:
        position = self.index.envelope_ids.get(envelope_id)
        if position is None:
            return None
        return position, self.index.by_position[position - 1]

    def stored_facts(self, page_size: int = READ_PAGE) -> Iterator[StoredFact]:
        """Every stored fact, in log order, read from the store page by page."""
        after = 0
        while after < self.index.head_position:
            page = self._store.read(after, page_size)
            if not page:
                return
            yield from page
            after = page[-1].position

    def history(
        self, as_of: date | None = None, since: date | None = None, at_position: int | None = None
    ) -> Iterator[bytes]:
        """The accepted envelopes (canonical JSON) in log order (up to ``at_position``),
        filtered by business date; undated facts (registrations, voids, closes) are kept."""
        for position, stored in enumerate(self.stored_facts(), start=1):
            if at_position is not None and position > at_position:
                return
            day = self.index.by_position[position - 1].business_date
            if day is not None and (
                (as_of is not None and day > as_of) or (since is not None and day < since)
            ):
                continue
            yield stored.envelope_json

    def hash_at(self, position: int) -> str:
        """The chain hash after the ``position``-th fact (genesis for 0)."""
        assert 0 <= position <= self.index.head_position, position
        if position == self.index.head_position:
            return self.index.head_hash
        if position == 0:
            return GENESIS
        return self._store.read(position - 1, 1)[0].chain_hash

    def books(self, as_of: date | None = None, at_position: int | None = None) -> Books:
        """The books of every fact in the log (up to ``at_position``), as of a day. Safe
        to call from another thread than the store's: it reads a consistent snapshot."""
        head = self.index.head
        upto = head.position if at_position is None else min(at_position, head.position)
        return build_books(self.index.by_position[:upto], as_of)
