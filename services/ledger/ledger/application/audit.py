"""The audit: walk the stored log, recompute the hash chain, replay the projections.

Fault kinds (each reported with the position where it is found):

- ``sequence_gap``: positions are missing inside the log (a fact was deleted);
- ``fact_unreadable``: a stored record cannot be decoded at all;
- ``fact_altered``: a fact's bytes no longer match its own digest;
- ``hash_mismatch``: a fact's chain hash does not follow from the previous one (a hash was
  edited or is missing, facts were swapped or inserted, or appended without a hash);
- ``invalid_fact``: a stored envelope no longer satisfies the contract;
- ``fact_missing``: the log ends before a position known from outside (a checkpoint, or
  what the outbox already published);
- ``checkpoint_mismatch``: the chain hash at a checkpoint's position differs from it;
- ``projection_mismatch``: the incremental projection (what the service publishes) and a
  replay from scratch disagree;
- ``statement_mismatch``: a closed month's frozen statement differs from the one its close's
  position gives (rules R9); ``statement_missing``: none was stored for a close.
"""

from __future__ import annotations

import sys
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import orjson

from ledger.application.chain import GENESIS, chain_hash, fact_digest
from ledger.application.contract import Rejection
from ledger.application.derive import Deriver
from ledger.application.ledger import fact_from_envelope
from ledger.application.periods import CloseAt, closing_figures, compute_statement, statement_json
from ledger.application.ports import StoredFact
from ledger.domain.books import PrefixBooks, build_books
from ledger.domain.facts import Fact, PeriodClosed
from ledger.domain.periods import Figures

__all__ = [
    "MAX_FAULTS",
    "AuditResult",
    "ChainWalk",
    "Checkpoint",
    "Fault",
    "compare_projections",
    "merge_walks",
    "parse_facts",
    "verify",
    "verify_chain",
    "walk_chain",
]

_CLOSE_TYPE = b'"coop.ledger.period.closed.v1"'
#: Faults listed at most (the count keeps going).
MAX_FAULTS = 1000
#: How many recent stored hashes an intact fact may link to after disturbed neighbours.
RECENT_WINDOW = 8
#: How many positions before its part a part's walk reads at least to seed its links.
SEED_POSITIONS = RECENT_WINDOW + 1


@dataclass(frozen=True, slots=True)
class Fault:
    position: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A (position, chain hash) pair obtained earlier, e.g. from ledger.out.audit.checkpoint."""

    position: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        position, _, digest = text.strip().partition(":")
        if not position.isdigit() or len(digest) != 64:
            raise ValueError(f"checkpoint {text[:80]!r} is not POSITION:SHA256HEX")
        return cls(int(position), digest.lower())


@dataclass
class ChainWalk:
    """What walking the log found."""

    facts: int = 0
    head_position: int = 0
    head_hash: str = GENESIS
    #: The position of the record ``head_hash`` was read from (0: none; the head's own when
    #: it is readable).
    head_hash_at: int = 0
    faults: list[Fault] = field(default_factory=list)
    fault_count: int = 0
    hash_at: dict[int, str] = field(default_factory=dict)
    valid_facts: list[Fact] = field(default_factory=list)
    #: (position, canonical bytes) of every fact whose digest holds, for :func:`parse_facts`.
    intact: list[tuple[int, bytes]] = field(default_factory=list)

    def add(self, fault: Fault) -> None:
        self.fault_count += 1
        if len(self.faults) < MAX_FAULTS:
            self.faults.append(fault)


def walk_chain(
    records: Iterable[tuple[int, StoredFact | str]],
    *,
    keep_facts: bool = False,
    watch: Sequence[int] = (),
    progress: Callable[[int], None] | None = None,
    start: int = 1,
    stop: int | None = None,
) -> ChainWalk:
    """Check every stored record in order: positions, digests, chain links, contract.
    ``watch`` lists positions whose chain hash to remember (checkpoints).

    A part of the log (:func:`merge_walks` joins the parts): ``start``/``stop`` bound the
    positions it answers for. ``records`` may begin before ``start`` (at least
    :data:`SEED_POSITIONS` before, to reach it in the state one walk would): those only seed
    the links (their own faults are the previous part's), and may run past ``stop``: the
    first record after it closes a gap that began within."""
    assert start >= 1, start
    walk = ChainWalk()
    watched = set(watch)
    # the position expected next (0: any, a later part's first) and the stored hash of the
    # previous record (None: unknown)
    expected, previous = (1, GENESIS) if start == 1 else (0, None)
    last = stop if stop is not None else sys.maxsize
    seeded = 0
    add = walk.add if start == 1 else (lambda fault: walk.add(fault) if fault.position >= start else None)
    recent: deque[str] = deque(maxlen=RECENT_WINDOW)  # stored hashes of the last records
    # (the loop runs a million times: locals, no attribute writes per fact)
    keep = walk.intact.append if keep_facts else None
    remember = recent.append
    hash_at = walk.hash_at
    count = 0
    head_hash = GENESIS
    hashed_at = position = 0
    for at, record in records:
        if at > last:  # past the part: only a gap that begins within it is still its own
            if expected and at != expected and expected <= last:
                add(Fault(expected, "sequence_gap", f"positions {expected} to {at - 1} are missing"))
            break
        position = at
        count += 1
        seeded += position < start
        if position != expected and expected:
            add(Fault(expected, "sequence_gap", f"positions {expected} to {position - 1} are missing"))
            previous = None
        if isinstance(record, str):
            add(Fault(position, "fact_unreadable", record))
            previous = None
        else:
            body = record.envelope_json
            stored_hash = record.chain_hash
            altered = fact_digest(body) != record.fact_digest
            if altered:
                add(Fault(position, "fact_altered", "the fact's bytes do not match its digest"))
            elif (
                previous is not None
                and chain_hash(previous, position, body) != stored_hash
                and not any(chain_hash(h, position, body) == stored_hash for h in recent)
            ):
                # (an intact fact right after disturbed neighbours links to a recent stored
                # hash: the disturbance is reported where it is, not again here)
                add(Fault(position, "hash_mismatch", "the chain hash does not follow from the previous fact"))
            if keep is not None and not altered:
                keep((position, body))
            previous = head_hash = stored_hash
            hashed_at = position
            remember(stored_hash)
            if position in watched or _CLOSE_TYPE in body:
                hash_at[position] = stored_hash
        expected = position + 1
        if progress is not None and count % 10_000 == 0:
            walk.facts = count - seeded
            progress(count - seeded)
    walk.facts = count - seeded
    if position >= start:  # (a part that holds nothing past its seed has no head)
        walk.head_position, walk.head_hash, walk.head_hash_at = position, head_hash, hashed_at
    return walk


def merge_walks(parts: Sequence[ChainWalk]) -> ChainWalk:
    """One walk of the whole log from the walks of its consecutive parts (in order)."""
    whole = ChainWalk()
    for part in parts:
        assert not part.intact and not part.valid_facts, "parts walk the chain only"
        whole.facts += part.facts
        for fault in part.faults:
            whole.add(fault)
        whole.fault_count += part.fault_count - len(part.faults)  # those past a part's list
        whole.hash_at.update(part.hash_at)
        whole.head_position = max(whole.head_position, part.head_position)
        if part.head_hash_at > whole.head_hash_at:  # the last readable record's, in any part
            whole.head_hash, whole.head_hash_at = part.head_hash, part.head_hash_at
    return whole


def parse_facts(walk: ChainWalk) -> None:
    """Second phase: every intact stored envelope must still satisfy the contract; the
    facts are kept (in log order) for the projection replay."""
    for position, body in walk.intact:
        try:
            walk.valid_facts.append(fact_from_envelope(orjson.loads(body)))
        except (Rejection, ValueError, KeyError, TypeError) as exc:
            walk.add(Fault(position, "invalid_fact", f"the stored envelope no longer parses: {exc}"[:300]))
    walk.intact.clear()


def check_checkpoint(walk: ChainWalk, checkpoint: Checkpoint) -> list[Fault]:
    """Faults of the log against a checkpoint taken earlier."""
    if checkpoint.position > walk.head_position:
        return [
            Fault(
                walk.head_position + 1,
                "fact_missing",
                f"the log ends at {walk.head_position}, the checkpoint is at {checkpoint.position}",
            )
        ]
    if checkpoint.position == 0:
        return [] if checkpoint.hash == GENESIS else [Fault(0, "checkpoint_mismatch", "genesis differs")]
    found = walk.hash_at.get(checkpoint.position)
    if found != checkpoint.hash:
        return [
            Fault(
                checkpoint.position,
                "checkpoint_mismatch",
                f"chain hash {found} at position {checkpoint.position}, checkpoint says {checkpoint.hash}",
            )
        ]
    return []


def compare_projections(facts: Sequence[Fact]) -> list[Fault]:
    """Replay ``facts`` twice, incrementally (the service's derived events, position by
    position) and from scratch (the books), and list every figure where they differ."""
    deriver = Deriver()
    amounts: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    payable: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    donations: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    owed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for position, fact in enumerate(facts, start=1):
        for event in deriver.advance(position, fact):
            d = event.data
            if event.kind in {"commission.accrued", "commission.adjusted"}:
                amounts[(d["invoice_id"], d["introduction_id"])] += Decimal(d["delta"])
            elif event.kind == "commission.payable":
                payable[(d["invoice_id"], d["introduction_id"])] += Decimal(d["delta"])
            elif event.kind == "donation.credited":
                donations[(d["donor_id"], d["currency"])] += Decimal(d["amount"])
            elif event.kind == "rebate.owed":
                owed[(d["client_id"], d["currency"])] += Decimal(d["delta"])
    books = build_books(facts)
    faults: list[Fault] = []
    head = len(facts)

    def compare(
        what: str, incremental: dict[tuple[str, str], Decimal], scratch: dict[tuple[str, str], Decimal]
    ) -> None:
        for key in sorted(incremental.keys() | scratch.keys()):
            a, b = incremental.get(key, Decimal(0)), scratch.get(key, Decimal(0))
            if a != b:
                faults.append(
                    Fault(head, "projection_mismatch", f"{what} {key}: incremental {a}, replay {b}")
                )

    compare("commission", amounts, {(c.invoice_id, c.introduction_id): c.amount for c in books.commissions})
    compare("payable", payable, {(c.invoice_id, c.introduction_id): c.payable for c in books.commissions})
    compare("donation", donations, {(d.donor_id, d.currency): d.amount for d in books.donations})
    compare("rebate owed", owed, {(r.client_id, r.currency): r.owed for r in books.rebates})
    for currency, (debits, credits) in books.trial_balance.items():
        if debits != credits:
            faults.append(
                Fault(head, "projection_mismatch", f"trial balance {currency}: {debits} != {credits}")
            )
    return faults


@dataclass
class AuditResult:
    """What ``ledger audit verify`` found: ``ok`` when there is no fault at all."""

    walk: ChainWalk
    faults: list[Fault]
    published_position: int
    checkpoints: list[Checkpoint]
    seconds_chain: float
    seconds_total: float

    @property
    def ok(self) -> bool:
        return not self.faults

    @property
    def fault_count(self) -> int:
        return self.walk.fault_count + len(self.faults) - len(self.walk.faults)

    def summary(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "facts": self.walk.facts,
            "head": {"position": self.walk.head_position, "hash": self.walk.head_hash},
            "published_position": self.published_position,
            "checkpoints": [{"position": c.position, "hash": c.hash} for c in self.checkpoints],
            "faults": [{"position": f.position, "kind": f.kind, "detail": f.detail} for f in self.faults],
            "fault_count": self.fault_count,
            "seconds": {"chain": round(self.seconds_chain, 3), "total": round(self.seconds_total, 3)},
        }


def verify(
    records: Iterable[tuple[int, StoredFact | str]],
    *,
    published_position: int,
    checkpoints: Sequence[Checkpoint],
    projections: bool,
    clock: Callable[[], float],
    progress: Callable[[int], None] | None = None,
    parsed: Callable[[], None] | None = None,
    stored_statement: Callable[[str], bytes | None] | None = None,
    statements_from_scratch: bool = False,
) -> AuditResult:
    """The whole audit of a stored log: walk the chain, re-check every fact against the
    contract, compare with the checkpoints and with what the outbox published, and replay
    the projections. ``clock`` (seconds) times the phases; ``parsed`` is told when the facts
    are parsed (the CLI freezes them out of the garbage collector's way)."""
    started = clock()
    walk = walk_chain(records, keep_facts=True, watch=[c.position for c in checkpoints], progress=progress)
    walked = clock()
    parse_facts(walk)
    if parsed is not None:
        parsed()
    faults = _log_faults(walk, checkpoints, published_position)
    if projections and walk.fault_count == 0:
        faults.extend(compare_projections(walk.valid_facts))
    if stored_statement is not None and walk.fault_count == 0:
        faults.extend(compare_statements(walk, stored_statement, from_scratch=statements_from_scratch))
    return AuditResult(
        walk, faults, published_position, list(checkpoints), walked - started, clock() - started
    )


def verify_chain(
    walk: ChainWalk, *, published_position: int, checkpoints: Sequence[Checkpoint], seconds: float
) -> AuditResult:
    """The audit of the log's integrity alone, from a walk of its chain (``seconds`` long):
    positions, digests, links, the checkpoints, what the outbox published. Not the contract
    nor the projections (:func:`verify` does it all)."""
    faults = _log_faults(walk, checkpoints, published_position)
    return AuditResult(walk, faults, published_position, list(checkpoints), seconds, seconds)


def _log_faults(walk: ChainWalk, checkpoints: Sequence[Checkpoint], published_position: int) -> list[Fault]:
    """The walk's faults, then those against each checkpoint and the outbox's position."""
    faults = list(walk.faults)
    for checkpoint in checkpoints:
        faults.extend(check_checkpoint(walk, checkpoint))
    if published_position > walk.head_position:
        faults.append(
            Fault(
                walk.head_position + 1,
                "fact_missing",
                f"derived events were published up to {published_position}, "
                f"the log ends at {walk.head_position}",
            )
        )
    return faults


def compare_statements(
    walk: ChainWalk, stored_statement: Callable[[str], bytes | None], *, from_scratch: bool = False
) -> list[Fault]:
    """Each closed month's statement recomputed from the log up to its close, against the
    bytes stored when it was closed (rules R9).

    The books are brought forward from one close to the next (:class:`PrefixBooks`, as
    the service's outbox does); the last close is also recomputed from the log alone and
    must give the same bytes, so that the audit does not rest on the incremental
    computation only. With ``from_scratch`` every close is recomputed from the log alone
    (independent of it throughout; the cost grows with closes × facts)."""
    faults: list[Fault] = []
    previous: CloseAt | None = None
    previous_closing = None
    prefix = None if from_scratch else PrefixBooks()
    last: tuple[int, PeriodClosed, CloseAt | None, Figures | None, bytes] | None = None
    for position, fact in enumerate(walk.valid_facts, start=1):
        if not isinstance(fact, PeriodClosed):
            continue
        at = CloseAt(fact, position)
        head = {"position": position, "hash": walk.hash_at[position]}
        statement = compute_statement(
            walk.valid_facts[:position],
            fact.period,
            close=at,
            previous=previous,
            previous_closing=previous_closing,
            head=head,
            prefix=prefix,
        )
        body = stored_statement(fact.period)
        computed = statement_json(statement)
        if body is None:
            faults.append(Fault(position, "statement_missing", f"no statement was stored for {fact.period}"))
        elif body != computed:
            faults.append(
                Fault(
                    position,
                    "statement_mismatch",
                    f"the statement stored for {fact.period} differs from the one its close gives",
                )
            )
        last = (position, fact, previous, previous_closing, computed)
        previous, previous_closing = at, closing_figures(statement)
    if last is not None and prefix is not None:
        position, fact, before, before_closing, computed = last
        alone = compute_statement(
            walk.valid_facts[:position],
            fact.period,
            close=CloseAt(fact, position),
            previous=before,
            previous_closing=before_closing,
            head={"position": position, "hash": walk.hash_at[position]},
        )
        if statement_json(alone) != computed:
            faults.append(
                Fault(
                    position,
                    "statement_recompute_mismatch",
                    f"{fact.period}: the books brought forward from close to close and the log "
                    "alone give different statements (run with --statements-from-scratch)",
                )
            )
    return faults
