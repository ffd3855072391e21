"""The outbox's pipeline: a close's statement, computed with the books brought forward from
the previous close, is the statement computed from the log alone, across erasures and
restarts."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bench.history import generate
from bench.periods import with_closes

from ledger.adapters.keyring import AesGcmKeyring, MasterKeys
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.audit import verify
from ledger.application.ledger import Ledger
from ledger.application.periods import CloseAt, closing_figures, compute_statement, statement_json
from ledger.application.pipeline import OUTBOX, Pipeline
from ledger.application.sealing import Sealer
from ledger.domain.books import PrefixBooks
from ledger.domain.facts import IntroducerRegistered
from ledger.domain.personal import personal_fields_of
from tests.conftest import envelope
from tests.ledger.unit.test_personal import _strings_held_by

MASTER = f"m1:{base64.b64encode(b'p' * 32).decode()}"


def _pipeline(store: MemoryFactStore) -> Pipeline:
    ring = AesGcmKeyring(store, MasterKeys.parse(MASTER))
    ledger = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC), sealer=Sealer(ring))
    pipeline = Pipeline(ledger, store, chunk_positions=97)
    pipeline.recover()
    return pipeline


def _drain(pipeline: Pipeline) -> None:
    while (chunk := pipeline.outbox_chunk()) is not None:
        pipeline.outbox_done(chunk)


def test_statements_frozen_by_the_pipeline_equal_the_log_alone() -> None:
    """Through batches, an erasure between two closes and a restart, every statement the
    pipeline stores at a close equals the one a fresh replay of the log computes."""
    raw = list(with_closes(generate(3000, 5)))
    introducer = next(
        json.loads(line)["data"]["introducer_id"] for line in raw if "introducer.registered" in line
    )
    erasure = envelope(
        "party.erased",
        {"party_type": "introducer", "party_id": introducer, "requested_by": "dpo", "approved_by": "tre"},
        id="erase-1",
    )
    registration = next(json.loads(line)["data"] for line in raw if introducer in line)
    personal = [registration[k] for k in personal_fields_of(IntroducerRegistered) if registration.get(k)]
    assert personal
    raw.insert(len(raw) // 2, erasure)
    store = MemoryFactStore()
    pipeline = _pipeline(store)
    for start in range(0, len(raw), 250):
        if start == 1000:
            pipeline = _pipeline(store)  # a restart: the books are brought forward anew
        outcomes = pipeline.ingest(raw[start : start + 250])
        assert all(o.status == "accepted" for o in outcomes), [o for o in outcomes if o.status != "accepted"]
        _drain(pipeline)
    held = _strings_held_by(pipeline.statement_books) | _strings_held_by(pipeline.deriver)
    assert [value for value in personal if value in held] == []  # gone from memory with the erasure
    periods = sorted(pipeline.ledger.index.closes)
    assert len(periods) > 20 and pipeline.statement_books is not None
    fresh = _pipeline(store).ledger  # the same log read back, the statements recomputed
    facts = fresh.index.by_position
    previous: CloseAt | None = None
    previous_closing = None
    for period in periods:
        position, close = fresh.index.closes[period]
        at = CloseAt(close, position)
        document = compute_statement(
            facts[:position],
            period,
            close=at,
            previous=previous,
            previous_closing=previous_closing,
            head={"position": position, "hash": fresh.hash_at(position)},
        )
        assert store.load_statement(period) == statement_json(document), period
        previous, previous_closing = at, closing_figures(document)


def _audit(store: MemoryFactStore, *, from_scratch: bool = False) -> list[tuple[str, str]]:
    """(kind, detail) of every fault ``verify`` finds in the store's log and statements."""
    ring = AesGcmKeyring(store, MasterKeys.parse(MASTER))
    fresh = Ledger(store, lambda: datetime(2026, 1, 1, tzinfo=UTC), sealer=Sealer(ring))
    fresh.catch_up()
    result = verify(
        store.read_raw(0, 1_000_000),
        published_position=store.published_position(OUTBOX),
        checkpoints=[],
        projections=False,
        clock=lambda: 0.0,
        stored_statement=store.load_statement,
        statements_from_scratch=from_scratch,
    )
    return [(f.kind, f.detail) for f in result.faults]


def test_the_audit_checks_the_books_brought_forward_against_the_log_alone(monkeypatch: Any) -> None:
    """`audit verify` finds the statements the pipeline froze, brought forward or from the
    log alone; were the books brought forward ever wrong, the audit's recompute of the last
    close from the log alone says so (and the stored statements no longer match)."""
    store = MemoryFactStore()
    pipeline = _pipeline(store)
    raw = list(with_closes(generate(1500, 3)))
    for start in range(0, len(raw), 300):
        pipeline.ingest(raw[start : start + 300])
        _drain(pipeline)
    assert len(pipeline.ledger.index.closes) > 10
    assert _audit(store) == [] and _audit(store, from_scratch=True) == []
    month = PrefixBooks.month

    def skewed(self: PrefixBooks, facts: Any, as_of: Any, which: Any) -> Any:
        books = month(self, facts, as_of, which)
        if not books.balances:
            return books
        first = books.balances[0]
        return replace(books, balances=(replace(first, paid=first.paid + 1), *books.balances[1:]))

    monkeypatch.setattr(PrefixBooks, "month", skewed)
    kinds = [kind for kind, _ in _audit(store)]
    assert "statement_recompute_mismatch" in kinds and "statement_mismatch" in kinds
    assert _audit(store, from_scratch=True) == []  # the log alone still agrees with what is stored


def test_an_outbox_chunk_that_fails_part_way_is_derived_again_whole(monkeypatch: Any) -> None:
    """A failure while a chunk is derived (here a close's statement, once) leaves nothing
    half-done: the retry derives the whole chunk again, and the events published in the end
    are those of a pipeline that never failed."""
    raw = list(with_closes(generate(1200, 4)))
    clean_store, failing_store = MemoryFactStore(), MemoryFactStore()
    clean, failing = _pipeline(clean_store), _pipeline(failing_store)
    closed = failing._closed
    failures = []

    def fail_once(position: int, close: Any) -> Any:
        if not failures:
            failures.append(position)
            raise RuntimeError("the store went away while freezing the statement")
        return closed(position, close)

    monkeypatch.setattr(failing, "_closed", fail_once)
    expected: list[Any] = []
    got: list[Any] = []
    for start in range(0, len(raw), 300):
        clean.ingest(raw[start : start + 300])
        failing.ingest(raw[start : start + 300])
        for pipeline, out in ((clean, expected), (failing, got)):
            while True:
                try:
                    chunk = pipeline.outbox_chunk()
                except RuntimeError:
                    continue  # as the outbox loop does: retry
                if chunk is None:
                    break
                out.extend(chunk.events)
                pipeline.outbox_done(chunk)
    assert failures and got == expected
