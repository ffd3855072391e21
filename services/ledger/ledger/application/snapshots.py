"""Snapshots of ``ledger serve``'s state, so that a restart replays only the tail of the log.

A snapshot is the pipeline's in-memory state at one point of the log: the fact index (what
idempotency and the rules read: envelope ids, business keys, the facts in log order, closes,
erasures) and the deriver's state (commission lines, balances, voids). Not the statement
books brought forward from close to close: they key their entries by object identity, which
means nothing in another process; the first close after a start reads the log once, as it
does without a snapshot. It names that point (position and chain hash) and the
deriver's position; :func:`restore` refuses it unless the log still holds that exact point.

It never holds personal data. Every fact owned by a person is written as a reference to its
log position (pickle's persistent ids) and read back from the log when the snapshot is
loaded, opened with its owner's data key, so erasing a person (destroying the key) reaches
the snapshots too; the names and masked accounts taken from those facts are rebuilt from
them, and the values kept to scrub a pending erasure are re-read. A fact with personal
values outside those positions makes :func:`dump` refuse (:class:`SnapshotError`).

Pure: bytes in, bytes out. Where snapshots are kept, their MAC and when they are taken are
the adapters' (:mod:`ledger.adapters.snapshot_files`).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.application.chain import GENESIS, chain_hash
from ledger.application.contract import fact_of_accepted
from ledger.application.derive import Deriver
from ledger.application.ledger import PARTY_FACTS, FactIndex
from ledger.application.pipeline import Pipeline
from ledger.application.ports import FactStore, StoredFact
from ledger.application.sealing import Keyring, is_token, token_owner
from ledger.domain import books, commissions, facts, purchasing
from ledger.domain.commissions import IntroductionLine
from ledger.domain.facts import Fact, IntroductionRecorded
from ledger.domain.personal import ERASED, PERSONAL_FIELDS, PartyRef, owner_of, personal_values, redacted

__all__ = ["FORMAT", "SnapshotError", "SnapshotHeader", "dump", "not_ready", "restore"]

#: The layout of what is pickled; a snapshot of another format is stale.
FORMAT = 2
_PERSONAL_TYPES = frozenset(PERSONAL_FIELDS)


class SnapshotError(Exception):
    """A snapshot cannot be taken or used; ``reason`` is a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """What a snapshot claims, checked against the log before anything is unpickled."""

    format: int
    #: The fact index's point of the log: ``position`` facts, chain hash ``hash`` after them.
    position: int
    hash: str
    #: The deriver's position (at most ``position``; events up to it were published).
    derived: int
    #: The positions of the facts owned by a person (read back from the log at load).
    personal: tuple[int, ...]
    #: The erased parties (their facts are read back redacted).
    erased: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "position": self.position,
            "hash": self.hash,
            "derived": self.derived,
            "personal": list(self.personal),
            "erased": [list(party) for party in self.erased],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotHeader:
        try:
            return cls(
                format=int(data["format"]),
                position=int(data["position"]),
                hash=str(data["hash"]),
                derived=int(data["derived"]),
                personal=tuple(int(p) for p in data["personal"]),
                erased=tuple((str(kind), str(party)) for kind, party in data["erased"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError("corrupt", f"snapshot header unreadable: {exc}") from exc


@dataclass(slots=True)
class _State:
    index: FactIndex
    deriver: Deriver


def _field_reducer(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    names = tuple(f.name for f in dataclasses.fields(cls))

    def reduce(obj: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, tuple([getattr(obj, name) for name in names])

    return reduce


def _reducers() -> dict[type, Callable[[Any], tuple[type, tuple[Any, ...]]]]:
    """Frozen dataclasses rebuilt through their constructor (a third faster to load than
    pickle's per-field ``__setstate__``); only those whose fields are all ``init`` fields."""
    out: dict[type, Callable[[Any], tuple[type, tuple[Any, ...]]]] = {}
    for module in (facts, commissions, purchasing, books):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and dataclasses.is_dataclass(value)
                and value.__module__ == module.__name__
                and value.__dataclass_params__.frozen  # type: ignore[attr-defined]
                and all(f.init for f in dataclasses.fields(value))
            ):
                out[value] = _field_reducer(value)
    return out


_REDUCERS = _reducers()


def _with_reason(line: IntroductionLine, introduction: IntroductionRecorded) -> IntroductionLine:
    """An introduction's line given back the reason for its terms, from the introduction
    (read back from the log, opened or erased)."""
    return dataclasses.replace(line, terms_reason=introduction.terms_reason)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, positions: dict[int, int], index: FactIndex) -> None:
        super().__init__(file, protocol=5)
        self._positions = positions
        self._index = index
        self.dispatch_table = {**_REDUCERS, IntroductionLine: self._introduction_line}

    def _introduction_line(self, line: IntroductionLine) -> tuple[Any, tuple[Any, ...]]:
        """A line copies its introduction's reason for custom terms (personal): written
        without it, with a reference to the introduction it is read back from."""
        if line.terms_reason is None or line.terms_reason == ERASED:
            return _REDUCERS[IntroductionLine](line)
        known = self._index.at_key(("introduction", line.introduction_id))
        introduction = known[1] if known is not None else None
        if (
            not isinstance(introduction, IntroductionRecorded)
            or introduction.terms_reason != line.terms_reason
        ):
            raise SnapshotError(
                "personal_data",
                f"introduction line {line.introduction_id!r} holds a reason its introduction does not: "
                "not written to a snapshot",
            )
        return _with_reason, (dataclasses.replace(line, terms_reason=None), introduction)

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) not in _PERSONAL_TYPES:
            return None
        at = self._positions.get(id(obj))
        if at is not None:
            return at
        if personal_values(obj):
            raise SnapshotError(
                "personal_data",
                f"a {type(obj).__name__} with personal values is held outside the log positions: "
                "not written to a snapshot",
            )
        return None


#: What a snapshot may name besides the ledger's own classes and functions (a second line of
#: defence behind the MAC: unpickling never resolves anything else).
_STANDARD_GLOBALS = frozenset(
    {
        ("builtins", "list"),
        ("builtins", "dict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "tuple"),
        ("collections", "defaultdict"),
        ("collections", "OrderedDict"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("copyreg", "_reconstructor"),
    }
)


_PURE_LAYERS = ("ledger.domain.", "ledger.application.")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, personal: dict[int, Fact]) -> None:
        super().__init__(file)
        self._personal = personal

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _STANDARD_GLOBALS:
            return super().find_class(module, name)
        # only the pure layers (domain, application: no I/O), only what they define
        if module.startswith(_PURE_LAYERS) and name.isidentifier():
            found = super().find_class(module, name)
            if callable(found) and getattr(found, "__module__", "").startswith(_PURE_LAYERS):
                return found
        raise SnapshotError("corrupt", f"snapshot names {module}.{name}, which a snapshot never holds")

    def persistent_load(self, pid: Any) -> Fact:
        fact = self._personal.get(pid) if isinstance(pid, int) else None
        if fact is None:
            raise SnapshotError("corrupt", f"snapshot refers to position {pid!r}, not among its own")
        return fact


def not_ready(pipeline: Pipeline) -> str | None:
    """Why the pipeline's state cannot be written now (None: it can): an outbox chunk is
    pending (the deriver is ahead of what was published), or an erasure is stored that the
    deriver has not reached (it still holds the person's values)."""
    if pipeline.has_pending_chunk():
        return "an outbox chunk is pending: the deriver is ahead of what was published"
    derived = pipeline.deriver.position
    if any(at > derived for at in pipeline.ledger.index.erased.values()):
        return "an erasure is stored that the deriver has not reached yet"
    return None


def dump(pipeline: Pipeline) -> tuple[SnapshotHeader, bytes]:
    """The pipeline's state, between two steps (see :func:`not_ready`)."""
    busy = not_ready(pipeline)
    if busy is not None:
        raise SnapshotError("busy", busy)
    index = pipeline.ledger.index
    positions: dict[int, int] = {}
    for owned in index.owned.values():
        for at in owned:
            positions[id(index.by_position[at - 1])] = at
    header = SnapshotHeader(
        format=FORMAT,
        position=index.head_position,
        hash=index.head_hash,
        derived=pipeline.deriver.position,
        personal=tuple(sorted(positions.values())),
        erased=tuple((party.kind, party.party_id) for party in index.erased),
    )
    assert header.derived <= header.position, (header.derived, header.position)
    # what holds personal values by value is left out and rebuilt at load
    bare = copy.copy(index)
    bare.names, bare.accounts, bare.pending_erasures = {}, {}, {}
    buffer = io.BytesIO()
    _Pickler(buffer, positions, index).dump(_State(bare, pipeline.deriver))
    return header, buffer.getvalue()


def _check_against_log(header: SnapshotHeader, store: FactStore, published: int) -> None:
    """The log still holds the snapshot's point: same chain hash at its position, and the
    outbox published at least what its deriver derived."""
    if header.format != FORMAT:
        raise SnapshotError("stale", f"snapshot format {header.format}, this ledger reads {FORMAT}")
    if header.position < 1 or not 0 <= header.derived <= header.position:
        raise SnapshotError("corrupt", f"snapshot positions {header.derived}/{header.position} make no sense")
    at = store.read(header.position - 1, 1)
    if not at or at[0].position != header.position:
        raise SnapshotError("stale", f"the log ends before the snapshot's position {header.position}")
    if at[0].chain_hash != header.hash:
        raise SnapshotError(
            "chain_mismatch", f"the log's chain hash at position {header.position} is not the snapshot's"
        )
    if published < header.derived:
        raise SnapshotError(
            "stale", f"the outbox published up to {published}, the snapshot's deriver is at {header.derived}"
        )


def _linked(store: FactStore, header: SnapshotHeader) -> list[StoredFact]:
    """The stored facts at the snapshot's personal positions, each checked to be linked into
    the chain (to its predecessor's stored hash, and its successor's to it) as a full replay
    checks every link: a fact altered in the store is not taken in because the snapshot
    skips reading the log's other facts."""
    wanted = set(header.personal)
    around = sorted(
        wanted | {p - 1 for p in wanted if p > 1} | {p + 1 for p in wanted if p + 1 <= header.position}
    )
    read = {stored.position: stored for stored in store.read_at(around)}
    if len(read) != len(around):
        raise SnapshotError("stale", "the log no longer holds every fact the snapshot refers to")
    out = []
    for position in header.personal:
        stored = read[position]
        previous = GENESIS if position == 1 else read[position - 1].chain_hash
        following = read.get(position + 1) if position < header.position else None
        if chain_hash(previous, position, stored.envelope_json) != stored.chain_hash or (
            following is not None
            and chain_hash(stored.chain_hash, position + 1, following.envelope_json) != following.chain_hash
        ):
            raise SnapshotError(
                "chain_mismatch",
                f"the log's hash chain does not hold at position {position}; run `ledger audit verify`",
            )
        out.append(stored)
    return out


def _personal_facts(
    header: SnapshotHeader, store: FactStore, keyring: Keyring | None
) -> tuple[dict[int, Fact], dict[PartyRef, list[str]]]:
    """The facts owned by a person, read back from the log and opened (an erased person's
    redacted), and the values each erased person's facts still open to (what a pending
    erasure scrubs)."""
    erased = {PartyRef(kind, party) for kind, party in header.erased}  # type: ignore[arg-type]
    personal: dict[int, Fact] = {}
    needles: dict[PartyRef, list[str]] = {}
    found = _linked(store, header)
    envelopes = [(stored.position, stored.envelope) for stored in found]
    if keyring is not None:  # one read of the data keys, not one per person
        keyring.preload(
            owner
            for _, envelope in envelopes
            for value in envelope["data"].values()
            if is_token(value) and (owner := token_owner(value)) is not None
        )
    for position, envelope in envelopes:
        fact = fact_of_accepted(envelope, keyring)
        owner = owner_of(fact)
        if owner is not None and owner in erased:
            needles.setdefault(owner, []).extend(personal_values(fact))
            fact = redacted(fact)
        personal[position] = fact
    return personal, needles


def restore(pipeline: Pipeline, header: SnapshotHeader, body: bytes, *, published: int) -> None:
    """Load a snapshot into ``pipeline`` (whose ledger has read nothing yet), checked against
    the log first (``published``: the outbox's position in the store); then
    :meth:`Pipeline.recover` reads only the tail. All or nothing: when it raises
    (:class:`SnapshotError` or anything else) the pipeline is untouched."""
    ledger = pipeline.ledger
    assert ledger.index.head_position == 0, "restore into a fresh pipeline only"
    _check_against_log(header, pipeline.store, published)
    personal, needles = _personal_facts(header, pipeline.store, ledger.sealer.keyring)
    try:
        state = _Unpickler(io.BytesIO(body), personal).load()
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError("corrupt", f"snapshot unreadable: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, _State) or state.index.head_position != header.position:
        raise SnapshotError("corrupt", "snapshot body does not match its header")
    index = state.index
    for fact in index.by_position:
        if isinstance(fact, PARTY_FACTS):
            index.note_party(fact)
    for party, erased_at in index.erased.items():
        index.pending_erasures[party] = (erased_at, sorted(set(needles.get(party, []))))
    ledger.adopt(index)
    pipeline.deriver = state.deriver
    pipeline.statement_books = None  # rebuilt at the first close (see the module docstring)
