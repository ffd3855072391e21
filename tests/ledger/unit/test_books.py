"""The books of a growing log (``PrefixBooks``) and the commission-line memo: the same books
as a full build, whatever the arrival order, the cuts and the as-of days."""

from __future__ import annotations

import datetime as dt
import json
from random import Random
from typing import Any

from bench.history import generate
from bench.periods import with_closes
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.periods import CloseAt, closing_figures, compute_statement, statement_json
from ledger.bootstrap import build_ephemeral_ledger
from ledger.domain.books import LineMemo, PrefixBooks, build_books, month_books
from ledger.domain.facts import Fact, PeriodClosed
from ledger.domain.periods import month_end, previous_period
from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.ledger.strategies import START, histories_with_voids, lines, void_doc, voidable_targets


def check(prefix: PrefixBooks, facts: list[Fact], day: dt.date | None, *, every_month: bool = False) -> None:
    """The prefix's books and month books equal a full build's: for the day's month (or the
    last fact's), or for every month a fact is dated in."""
    expected = build_books(facts, day, postings=False)
    assert prefix.books(facts, day) == expected, (len(facts), day)
    dated = [d for f in facts if (d := f.business_date) is not None]
    months: set[tuple[int, int] | None] = {None}
    if every_month:
        months |= {(d.year, d.month) for d in dated}
    elif day is not None or dated:
        last = day if day is not None else dated[-1]
        months.add((last.year, last.month))
    for month in sorted(months, key=lambda m: m or (0, 0)):
        assert prefix.month(facts, day, month) == month_books(expected, month), (len(facts), day, month)


def facts_of(raw: list[str]) -> list[Fact]:
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(raw)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    return list(ledger.index.by_position)


@st.composite
def steps(draw: st.DrawFn, total: int) -> list[tuple[int, dt.date | None]]:
    """Growing cuts of the log, each with an as-of day that never goes back (None last)."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=1, max_size=6)))
    dates = st.dates(START, START + dt.timedelta(days=365 * 5))
    days: list[dt.date | None] = list(sorted(draw(st.lists(dates, min_size=len(cuts), max_size=len(cuts)))))
    if draw(st.booleans()):
        days[-1] = None
    return list(zip(cuts, days, strict=True))


@settings(max_examples=200, deadline=None)
@given(history=histories_with_voids(), order=st.randoms(use_true_random=False), data=st.data())
def test_prefix_books_equal_a_full_build_at_every_cut_and_day(
    history: list[dict[str, Any]], order: Random, data: st.DataObject
) -> None:
    """At any growing cut and as-of day, in any arrival order (voids before their targets,
    payments before their invoices, facts dated after the as-of day), the books brought
    forward are the books built from scratch."""
    if order.random() < 0.5:
        order.shuffle(history)
    facts = facts_of(lines(history))
    prefix = PrefixBooks()
    for cut, day in data.draw(steps(len(facts))):
        check(prefix, facts[:cut], day)


def test_prefix_books_over_a_generated_history_month_by_month() -> None:
    """Over a generated history with voids and monthly closes, the books of each close as of
    the end of the month before and of the month equal a full build (the statements' use)."""
    facts = facts_of(list(with_closes(generate(4000, 7))))
    prefix = PrefixBooks()
    closes = [(p, f) for p, f in enumerate(facts, start=1) if isinstance(f, PeriodClosed)]
    assert len(closes) > 20
    for position, close in closes:
        for day in (month_end(previous_period(close.period)), month_end(close.period)):
            check(prefix, facts[:position], day)
    assert prefix.memo.hits > prefix.memo.misses  # most pairs did not change from month to month


def test_prefix_books_answer_a_repeated_key_with_a_full_build() -> None:
    """A log where a business key repeats (never stored by the intake) still gets the books
    of a full build: the index's order would matter there."""
    facts = facts_of((EXAMPLES / f"{EXAMPLE_NAMES[0]}.jsonl").read_text().splitlines())
    doubled = [*facts, facts[len(facts) // 2]]
    prefix = PrefixBooks()
    check(prefix, doubled[: len(facts)], None)
    check(prefix, doubled, None)


def test_prefix_books_refuse_an_as_of_day_that_goes_back() -> None:
    """The as-of day only moves forward: an earlier day is a programming error, not books."""
    prefix = PrefixBooks()
    prefix.books([], dt.date(2025, 1, 31))
    try:
        prefix.books([], dt.date(2024, 12, 31))
    except AssertionError as exc:
        assert "2024-12-31" in str(exc)
    else:
        raise AssertionError("an earlier as-of day was accepted")


@settings(max_examples=100, deadline=None)
@given(history=histories_with_voids(), cut=st.floats(0, 1))
def test_line_memo_gives_the_books_of_a_build_without_it(history: list[dict[str, Any]], cut: float) -> None:
    """Builds sharing a memo (a prefix, then the whole log, then the prefix again) give the
    books of builds without it, anomalies included."""
    facts = facts_of(lines(history))
    split = round(cut * len(facts))
    memo = LineMemo()
    for part in (facts[:split], facts, facts[:split]):
        assert build_books(part, memo=memo) == build_books(part)


def test_statements_brought_forward_are_the_statements_built_from_scratch() -> None:
    """Each close's statement computed with the books brought forward from the previous
    close is byte-identical to the one computed from the log alone (``audit verify``)."""
    facts = facts_of(list(with_closes(generate(3000, 11))))
    prefix = PrefixBooks()
    previous: CloseAt | None = None
    previous_closing = None
    checked = 0
    for position, fact in enumerate(facts, start=1):
        if not isinstance(fact, PeriodClosed):
            continue
        at = CloseAt(fact, position)
        args: dict[str, Any] = {
            "close": at,
            "previous": previous,
            "previous_closing": previous_closing,
            "head": {"position": position},
        }
        fast = compute_statement(facts[:position], fact.period, prefix=prefix, **args)
        slow = compute_statement(facts[:position], fact.period, **args)
        assert statement_json(fast) == statement_json(slow), fact.period
        checked += bool(slow["balances"]) and bool(slow["details"]["commissions"])
        previous, previous_closing = at, closing_figures(slow)
    assert checked > 10  # statements with figures were compared, not empty ones


def test_prefix_books_over_the_examples_after_every_fact() -> None:
    """On every worked example (eligibility changes, voids, back-dated facts), the books
    brought forward after each fact, as of every day, equal a full build."""
    for name in EXAMPLE_NAMES:
        facts = facts_of((EXAMPLES / f"{name}.jsonl").read_text().splitlines())
        for as_of in (None, "first"):
            prefix = PrefixBooks()
            days = sorted({d for f in facts if (d := f.business_date) is not None})
            for cut in range(len(facts) + 1):
                day = None if as_of is None else days[min(cut, len(days) - 1)]
                check(prefix, facts[:cut], day, every_month=True)


def test_prefix_books_when_a_fact_comes_last_or_is_voided_last() -> None:
    """Lines already computed are recomputed when a fact that changes them comes after them:
    each fact of each worked example arriving last (a late eligibility change, payment,
    credit note), or voided last (a payment, an introduction, a purchase taken back)."""
    checked = 0
    for name in EXAMPLE_NAMES:
        raw = (EXAMPLES / f"{name}.jsonl").read_text().splitlines()
        docs = [json.loads(line) for line in raw]
        late = [[*raw[:i], *raw[i + 1 :], raw[i]] for i in range(len(raw))]
        voided = [
            [*raw, *lines([void_doc(n, kind, ident, day="2027-06-30")])]
            for n, (kind, ident) in enumerate(voidable_targets(docs))
        ]
        # a purchase that never came, voided: a rebate listing it is split over the others
        missing = [
            [*(line for line in raw if ident not in line or "rebate.received" in line), void]
            for kind, ident in voidable_targets(docs)
            if kind == "purchase"
            for void in lines([void_doc(99, kind, ident, day="2027-06-30")])
        ]
        for history in (*late, *voided, *missing):
            facts = facts_of(history)
            prefix = PrefixBooks()
            for cut in (len(facts) - 1, len(facts)):
                check(prefix, facts[:cut], None, every_month=True)
            checked += 1
    assert checked > 30
