"""Snapshots of the pipeline's state: a restart from a snapshot and the log's tail reaches the
state of a full replay, derives the same events after it, never holds personal data, and a
snapshot the log does not hold is refused with the pipeline untouched."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from bench.history import generate
from bench.periods import with_closes

from ledger.adapters.keyring import AesGcmKeyring, MasterKeys
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application import snapshots
from ledger.application.derive import DerivedEvent
from ledger.application.ledger import Ledger
from ledger.application.pipeline import OUTBOX, Pipeline
from ledger.application.report import render_report
from ledger.application.sealing import Sealer
from ledger.application.snapshots import SnapshotError, SnapshotHeader
from ledger.domain.facts import IntroducerRegistered
from ledger.domain.personal import PERSONAL_FIELDS, PartyRef, owner_of
from tests.conftest import envelope

MASTER = f"m1:{base64.b64encode(b's' * 32).decode()}"


def _pipeline(store: MemoryFactStore, *, recover: bool = True) -> Pipeline:
    ring = AesGcmKeyring(store, MasterKeys.parse(MASTER))
    ledger = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC), sealer=Sealer(ring))
    pipeline = Pipeline(ledger, store, chunk_positions=89)
    if recover:
        pipeline.recover()
    return pipeline


def _drain(pipeline: Pipeline) -> list[DerivedEvent]:
    events: list[DerivedEvent] = []
    while (chunk := pipeline.outbox_chunk()) is not None:
        events.extend(chunk.events)
        pipeline.outbox_done(chunk)
    return events


def _fed(n: int, seed: int) -> Pipeline:
    """A pipeline on a new in-memory store that took :func:`_history` (n, seed), published."""
    pipeline = _pipeline(MemoryFactStore())
    _feed(pipeline, _history(n, seed)[0])
    return pipeline


def _hold_a_personal_copy(pipeline: Pipeline) -> None:
    """Make the deriver hold a copy (not the log's own object) of a registration with an e-mail."""
    registration = next(
        f for f in pipeline.ledger.index.by_position if isinstance(f, IntroducerRegistered) and f.email
    )
    pipeline.deriver._facts.introducers["copy"] = dataclasses.replace(registration)


def _erasure(kind: str, party_id: str, n: int) -> str:
    data = {"party_type": kind, "party_id": party_id, "requested_by": "dpo", "approved_by": "tre"}
    return envelope("party.erased", data, id=f"erase-{n}")


def _history(n: int, seed: int) -> tuple[list[str], list[str]]:
    """A history with monthly closes, voids, registrations of clients and advisers, changed
    bank details and two erasures (an introducer, a client), and every personal value it
    carries."""
    raw = list(with_closes(generate(n, seed)))
    invoices = [json.loads(line)["data"] for line in raw if ".invoice.issued." in line]
    clients = sorted({i["client_id"] for i in invoices})[:25]
    advisers = sorted({i["adviser_id"] for i in invoices})
    introducers = [
        json.loads(line)["data"]["introducer_id"] for line in raw if ".introducer.registered." in line
    ]
    parties = [
        envelope(
            "client.registered", {"client_id": c, "display_name": f"Atelier {c} Sàrl", "email": f"{c}@ex.ch"}
        )
        for c in clients
    ] + [envelope("adviser.registered", {"adviser_id": a, "display_name": f"Conseil {a}"}) for a in advisers]
    raw[1:1] = parties
    for k, introducer in enumerate(introducers[:3]):
        details = {
            "introducer_id": introducer,
            "iban": "CH9300762011623852957",
            "effective_date": f"202{k}-03-01",
        }
        raw.insert(len(raw) // (k + 4), envelope("introducer.bank_details", details))
    raw.insert(len(raw) // 3, _erasure("introducer", introducers[0], 1))
    raw.insert(2 * len(raw) // 3, _erasure("client", clients[0], 2))
    personal_names = {name for fields in PERSONAL_FIELDS.values() for name in fields}
    personal = sorted(
        {
            str(value)
            for line in raw
            for key, value in json.loads(line)["data"].items()
            if key in personal_names and value
        }
    )
    return raw, personal


def _feed(pipeline: Pipeline, lines: list[str], batch: int = 211) -> list[DerivedEvent]:
    events: list[DerivedEvent] = []
    for start in range(0, len(lines), batch):
        outcomes = pipeline.ingest(lines[start : start + batch])
        assert all(o.status == "accepted" for o in outcomes), [o for o in outcomes if o.status != "accepted"]
        events.extend(_drain(pipeline))
    return events


def _complete_first_erasure(pipeline: Pipeline) -> None:
    """As the outbox does once the streams are scrubbed: destroy the first erased person's key."""
    party = next(iter(pipeline.ledger.index.erased))
    assert pipeline.ledger.complete_erasure(party)


def _state(pipeline: Pipeline, *, hashes: bool = True) -> dict[str, Any]:
    """Everything a restart rebuilds, by value."""
    index = pipeline.ledger.index
    skipped = set() if hashes else {"head", "head_hash"}
    return {
        "index": {f.name: getattr(index, f.name) for f in dataclasses.fields(index) if f.name not in skipped},
        "deriver": dict(vars(pipeline.deriver)),
        "published": pipeline.published,
    }


def _report(pipeline: Pipeline) -> bytes:
    ledger = pipeline.ledger
    document = render_report(ledger.books(), head_position=ledger.head_position, head_hash=ledger.head_hash)
    return json.dumps(document, sort_keys=True, default=str).encode()


def _restored(store: MemoryFactStore, header: SnapshotHeader, body: bytes) -> Pipeline:
    pipeline = _pipeline(store, recover=False)
    snapshots.restore(pipeline, header, body, published=store.published_position(OUTBOX))
    pipeline.recover()
    return pipeline


@pytest.mark.parametrize(("n", "seed", "cut"), [(2500, 3, 0.2), (2500, 8, 0.55), (2500, 11, 0.9)])
def test_a_restart_from_a_snapshot_equals_a_full_replay(n: int, seed: int, cut: float) -> None:
    """Snapshot at a cut of a history with closes, voids and erasures (one completed, one
    pending or not yet recorded); the restart from it and the tail reaches the full replay's
    index, deriver, names, accounts and pending erasures, the same report byte for byte, and
    derives the same events and freezes the same statements for what arrives next."""
    raw, _ = _history(n, seed)
    store = MemoryFactStore()
    live = _pipeline(store)
    at = int((len(raw) - 700) * cut)
    _feed(live, raw[:at])
    if live.ledger.index.erased:
        _complete_first_erasure(live)
    header, body = snapshots.dump(live)
    assert header.position == at and header.derived == at
    rest, later = raw[at : len(raw) - 700], raw[len(raw) - 700 :]
    _feed(live, rest)
    twin_store = copy.deepcopy(store)
    full = _pipeline(store)
    restored = _restored(twin_store, header, body)
    assert _state(restored) == _state(full)
    for pipeline in (restored, full):
        assert pipeline.ledger.index.names == live.ledger.index.names
        assert pipeline.ledger.index.accounts == live.ledger.index.accounts
    assert restored.ledger.index.pending_erasures == full.ledger.index.pending_erasures
    assert _report(restored) == _report(full)
    events_full, events_restored = _feed(full, later), _feed(restored, later)
    assert events_restored == events_full and any(e.kind == "period.closed" for e in events_full)
    # (each store seals the new personal fields with its own nonces: the chain hashes differ)
    assert _state(restored, hashes=False) == _state(full, hashes=False)
    closes = sorted(full.ledger.index.closes)
    assert [_unhashed(twin_store.load_statement(p)) for p in closes] == [
        _unhashed(store.load_statement(p)) for p in closes
    ]


def _unhashed(statement: bytes | None) -> dict[str, Any]:
    assert statement is not None
    document: dict[str, Any] = json.loads(statement)
    document["head"].pop("hash")
    return document


def test_a_snapshot_holds_no_personal_value() -> None:
    """Neither the header nor the pickled state of a snapshot holds any personal value the
    history carried (names, e-mails, IBANs, holders, reasons), erased or not: the facts that
    hold them are positions, read back from the log and opened with their owner's key."""
    raw, personal = _history(2000, 5)
    assert len(personal) > 50
    store = MemoryFactStore()
    pipeline = _pipeline(store)
    _feed(pipeline, raw)
    header, body = snapshots.dump(pipeline)
    dumped = json.dumps(header.to_json()).encode() + body
    assert [value for value in personal if value.encode() in dumped] == []
    assert header.personal  # and yet they are there once loaded
    restored = _restored(copy.deepcopy(store), header, body)
    held = {
        value
        for fact in restored.ledger.index.by_position
        if owner_of(fact) is not None
        for value in vars_of(fact)
    }
    assert len(held & set(personal)) > 50


def vars_of(fact: Any) -> list[str]:
    return [str(getattr(fact, f.name)) for f in dataclasses.fields(fact)]


def test_a_copy_of_personal_data_outside_the_log_positions_is_never_written() -> None:
    """Should any state hold a personal fact that is not the log's own object, the snapshot
    is refused (``personal_data``) rather than written with the values in it."""
    pipeline = _fed(600, 2)
    _hold_a_personal_copy(pipeline)
    with pytest.raises(SnapshotError) as refused:
        snapshots.dump(pipeline)
    assert refused.value.reason == "personal_data"


def _mangled(
    header: SnapshotHeader, body: bytes, store: MemoryFactStore, case: str
) -> tuple[SnapshotHeader, bytes, MemoryFactStore]:
    if case == "log_shorter":
        shorter = MemoryFactStore()
        _feed(_pipeline(shorter), _history(1200, 4)[0][:200])
        return header, body, shorter
    if case == "other_log":
        other = MemoryFactStore()
        _feed(_pipeline(other), _history(1500, 9)[0])
        return header, body, other
    if case == "published_behind":
        behind = copy.deepcopy(store)
        behind._tracking[OUTBOX] = header.derived - 1  # a store restored from an older backup
        return header, body, behind
    if case == "other_format":
        return dataclasses.replace(header, format=snapshots.FORMAT + 1), body, store
    if case == "garbage_body":
        return header, body[: len(body) // 2], store
    if case == "positions_swapped":
        return dataclasses.replace(header, personal=header.personal[1:]), body, store
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("log_shorter", "stale"),
        ("other_log", "chain_mismatch"),
        ("published_behind", "stale"),
        ("other_format", "stale"),
        ("garbage_body", "corrupt"),
        ("positions_swapped", "corrupt"),
    ],
)
def test_a_snapshot_the_log_does_not_hold_is_refused_and_nothing_is_loaded(case: str, reason: str) -> None:
    """A snapshot whose point the log does not hold (shorter log, another log, outbox behind
    its deriver), of another format, or damaged is refused with its reason, and the pipeline
    is untouched: a full replay then reaches the right state."""
    raw, _ = _history(1200, 4)
    store = MemoryFactStore()
    live = _pipeline(store)
    _feed(live, raw)
    header, body = snapshots.dump(live)
    header, body, target = _mangled(header, body, store, case)
    pipeline = _pipeline(target, recover=False)
    with pytest.raises(SnapshotError) as refused:
        snapshots.restore(pipeline, header, body, published=target.published_position(OUTBOX))
    assert refused.value.reason == reason, refused.value
    assert pipeline.ledger.head_position == 0 and pipeline.deriver.position == 0
    assert pipeline.statement_books is None
    pipeline.recover()
    assert _state(pipeline) == _state(_pipeline(target))


def test_header_round_trips_and_a_damaged_header_is_corrupt() -> None:
    """The header survives JSON; one missing or mistyped field reads as ``corrupt``."""
    header = SnapshotHeader(1, 10, "ab" * 32, 9, (2, 5), (("client", "c-1"),))
    assert SnapshotHeader.from_json(json.loads(json.dumps(header.to_json()))) == header
    for broken in (
        {**header.to_json(), "position": "x"},
        {k: v for k, v in header.to_json().items() if k != "hash"},
    ):
        with pytest.raises(SnapshotError) as refused:
            SnapshotHeader.from_json(broken)
        assert refused.value.reason == "corrupt"
    assert PartyRef("client", "c-1") in {PartyRef(k, p) for k, p in header.erased}  # type: ignore[arg-type]


def _close(period: str, day: str) -> str:
    data = {"period": period, "date": day, "closed_by": "tre-ana", "approved_by": "tre-luc"}
    return envelope("period.closed", data, id=f"close-{period}")


def test_a_fact_counted_before_the_snapshot_voided_after_it_closes_alike() -> None:
    """A payout counted in a closed month before the snapshot, voided after the restart,
    then the next month closed: the restored pipeline derives the same events and freezes
    the same statement as a full replay (the statement books, which key their entries by
    object identity, are not in the snapshot)."""
    first = [
        envelope(
            "introducer.registered",
            {"introducer_id": "int-m", "display_name": "Marie Curie", "language": "fr"},
        ),
        envelope(
            "introduction.recorded",
            {
                "introduction_id": "i1",
                "introducer_id": "int-m",
                "client_id": "c1",
                "adviser_id": "a1",
                "date": "2025-03-03",
            },
        ),
        envelope(
            "invoice.issued",
            {
                "invoice_id": "inv1",
                "adviser_id": "a1",
                "client_id": "c1",
                "issue_date": "2025-03-11",
                "currency": "CHF",
                "net_amount": "2400.00",
                "tax_amount": "194.40",
            },
        ),
        envelope(
            "payout.recorded",
            {
                "payout_id": "po1",
                "adviser_id": "a1",
                "beneficiary_id": "int-m",
                "date": "2025-03-30",
                "currency": "CHF",
                "amount": "200.00",
            },
        ),
        _close("2025-03", "2025-04-05"),
    ]
    void = {
        "void_id": "v1",
        "target_type": "payout",
        "target_id": "po1",
        "date": "2025-04-10",
        "reason": "recorded in error",
        "requested_by": "tre-ana",
        "approved_by": "tre-luc",
    }
    later = [envelope("fact.voided", void), _close("2025-04", "2025-05-05")]
    store = MemoryFactStore()
    live = _pipeline(store)
    _feed(live, first)
    assert live.statement_books is not None
    header, body = snapshots.dump(live)
    twin = copy.deepcopy(store)
    full = _pipeline(store)
    restored = _restored(twin, header, body)
    events_full, events_restored = _feed(full, later), _feed(restored, later)
    assert [e.kind for e in events_full].count("period.closed") == 1
    assert events_restored == events_full
    assert _unhashed(twin.load_statement("2025-04")) == _unhashed(store.load_statement("2025-04"))


def test_a_personal_fact_altered_in_the_store_refuses_the_snapshot() -> None:
    """The facts a snapshot reads back from the log are checked to be linked into the chain:
    a custom-terms introduction whose rate was edited in the store (a full start refuses the
    log) refuses the snapshot too (``chain_mismatch``), nothing loaded."""
    raw, _ = _history(800, 3)
    store = MemoryFactStore()
    live = _pipeline(store)
    _feed(live, raw)
    header, body = snapshots.dump(live)
    at = next(p for p in header.personal if "terms" in store.read(p - 1, 1)[0].envelope["data"])
    text, recorded, chain, digest = store._facts[at - 1]
    document = json.loads(text)
    terms = document["data"]["terms"]
    terms[0]["rate"] = "0.50" if terms[0]["rate"] != "0.50" else "0.40"  # the rate edited in place
    store._facts[at - 1] = (json.dumps(document, separators=(",", ":")), recorded, chain, digest)
    pipeline = _pipeline(store, recover=False)
    with pytest.raises(SnapshotError) as refused:
        snapshots.restore(pipeline, header, body, published=store.published_position(OUTBOX))
    assert refused.value.reason == "chain_mismatch"
    assert pipeline.ledger.head_position == 0


def test_a_snapshot_naming_anything_outside_the_pure_layers_is_refused() -> None:
    """Unpickling resolves only the ledger's domain and application names and a few standard
    types: a body that names ``os.system`` (or a ledger adapter) is refused before it runs."""
    raw, _ = _history(600, 1)
    store = MemoryFactStore()
    live = _pipeline(store)
    _feed(live, raw)
    header, _ = snapshots.dump(live)

    def naming(module: str, name: str, call_with: str | None = None) -> bytes:
        def text(value: str) -> bytes:
            return b"\x8c" + bytes([len(value)]) + value.encode()

        body = b"\x80\x04" + text(module) + text(name) + b"\x93"  # PROTO 4, STACK_GLOBAL
        if call_with is not None:
            body += text(call_with) + b"\x85R"  # TUPLE1, REDUCE
        return body + b"."

    hostile = [
        naming("os", "system", "true"),
        naming("ledger.adapters.service", "LedgerService"),
        naming("ledger.application.ledger", "date"),  # imported there, not defined there
        naming("ledger.application.ledger", "Ledger.catch_up"),
    ]
    for body in hostile:
        pipeline = _pipeline(store, recover=False)
        with pytest.raises(SnapshotError) as refused:
            snapshots.restore(pipeline, header, body, published=store.published_position(OUTBOX))
        assert refused.value.reason == "corrupt" and "never holds" in str(refused.value)
