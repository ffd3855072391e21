"""The books: every figure the ledger derives from a set of facts.

:func:`build_books` is a pure function of the facts (and an optional as-of day): the
order in which facts arrived never matters, which is what makes a back-dated fact simply
recompute everything it touches (rule R4). The rules themselves are in
:mod:`~ledger.domain.commissions` (R1-R5) and :mod:`~ledger.domain.purchasing` (R6); the
accounts and postings in :mod:`~ledger.domain.accounts`.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from heapq import heappop, heappush
from operator import attrgetter
from typing import Any, TypeVar

from ledger.domain.accounts import Posting, trial_balance
from ledger.domain.anomalies import Anomaly
from ledger.domain.commissions import (
    BalanceLine,
    CommissionLine,
    DonationLine,
    IntroductionLine,
    balances,
    commission_postings,
    donations,
    introduction_line,
    pair_commission_lines,
    payout_posting,
)
from ledger.domain.facts import (
    AdviserRegistered,
    BankDetailsChanged,
    ClientRegistered,
    CreditNoteIssued,
    EligibilityChanged,
    Fact,
    FactKey,
    FactVoided,
    IntroducerRegistered,
    IntroductionRecorded,
    InvoiceIssued,
    PartyErased,
    PaymentReceived,
    PayoutRecorded,
    PayoutRunApproved,
    PayoutRunProposed,
    PeriodClosed,
    PurchaseRecorded,
    RebatePassedThrough,
    RebateReceived,
    ResaleInvoiced,
    VendorCommissionReceived,
)
from ledger.domain.purchasing import (
    MarginLine,
    RebateLine,
    RebateShareLine,
    margins,
    rebate_postings,
    rebate_shares,
    rebates,
)
from ledger.domain.voids import Voiding, VoidLine, apply_voids, unknown_targets, void_lines

__all__ = [
    "Anomaly",
    "BalanceLine",
    "Books",
    "CommissionLine",
    "DonationLine",
    "IntroductionLine",
    "LineMemo",
    "MarginLine",
    "MonthBooks",
    "Posting",
    "PrefixBooks",
    "RebateLine",
    "RebateShareLine",
    "VoidLine",
    "build_books",
    "month_books",
]


F = TypeVar("F")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Books:
    as_of: dt.date | None
    introducers: tuple[IntroducerRegistered, ...]
    introductions: tuple[IntroductionLine, ...]
    commissions: tuple[CommissionLine, ...]
    balances: tuple[BalanceLine, ...]
    donations: tuple[DonationLine, ...]
    margins: tuple[MarginLine, ...]
    rebate_shares: tuple[RebateShareLine, ...]
    rebates: tuple[RebateLine, ...]
    postings: tuple[Posting, ...]
    anomalies: tuple[Anomaly, ...]
    trial_balance: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    #: Every invoice counted (sorted by date and id), and the pass-throughs, for statements.
    invoices: tuple[InvoiceIssued, ...] = ()
    credit_notes: tuple[CreditNoteIssued, ...] = ()
    pass_throughs: tuple[RebatePassedThrough, ...] = ()
    purchases: tuple[PurchaseRecorded, ...] = ()
    payouts: tuple[PayoutRecorded, ...] = ()
    clients: tuple[ClientRegistered, ...] = ()
    advisers: tuple[AdviserRegistered, ...] = ()
    #: Vendor commissions disclosed to clients (never revenue, never a commission base).
    disclosures: tuple[VendorCommissionReceived, ...] = ()
    #: Every void (rules R8), and the facts they took back (counted nowhere).
    voids: tuple[VoidLine, ...] = ()
    voided: tuple[Fact, ...] = ()
    #: Where introducers are paid, and the payout runs (not voided) with their approvals.
    bank_details: tuple[BankDetailsChanged, ...] = ()
    payout_runs: tuple[PayoutRunProposed, ...] = ()
    run_approvals: tuple[PayoutRunApproved, ...] = ()


Month = tuple[int, int]  # (year, month)


def _month(day: dt.date) -> Month:
    return (day.year, day.month)


@dataclass(frozen=True, slots=True)
class MonthBooks:
    """What a month's statement reads of the books as of a day: every beneficiary's and
    client's figures, and the lines dated in one month (none without a month).

    ``voided``, ``invoices`` and ``purchases`` (voided ones included) and
    ``introducers_of`` (the introducers with a commission line on an invoice) name the
    parties a void concerned. They are read when the statement is computed, before the
    books move on (those of :class:`PrefixBooks` are live views)."""

    balances: tuple[BalanceLine, ...]
    rebates: tuple[RebateLine, ...]
    commissions: tuple[CommissionLine, ...]
    payouts: tuple[PayoutRecorded, ...]
    margins: tuple[MarginLine, ...]
    rebate_shares: tuple[RebateShareLine, ...]
    pass_throughs: tuple[RebatePassedThrough, ...]
    disclosures: tuple[VendorCommissionReceived, ...]
    voided: Mapping[FactKey, Fact] = field(compare=False)
    invoices: Mapping[str, InvoiceIssued] = field(compare=False)
    purchases: Mapping[str, PurchaseRecorded] = field(compare=False)
    introducers_of: Callable[[str], frozenset[str]] = field(compare=False)


def month_books(books: Books, month: Month | None) -> MonthBooks:
    """The :class:`MonthBooks` of ``books`` for ``month`` (None: figures only)."""

    def dated(day: dt.date) -> bool:
        return month is not None and _month(day) == month

    by_invoice: dict[str, set[str]] | None = None

    def introducers_of(invoice_id: str) -> frozenset[str]:
        nonlocal by_invoice
        if by_invoice is None:
            by_invoice = defaultdict(set)
            for line in books.commissions:
                by_invoice[line.invoice_id].add(line.introducer_id)
        return frozenset(by_invoice.get(invoice_id, ()))

    purchases = {p.purchase_id: p for p in books.purchases}
    purchases.update((v.purchase_id, v) for v in books.voided if isinstance(v, PurchaseRecorded))
    return MonthBooks(
        balances=books.balances,
        rebates=books.rebates,
        commissions=tuple(c for c in books.commissions if dated(c.invoice_date)),
        payouts=tuple(p for p in books.payouts if dated(p.date)),
        margins=tuple(m for m in books.margins if dated(m.date)),
        rebate_shares=tuple(r for r in books.rebate_shares if dated(r.date)),
        pass_throughs=tuple(p for p in books.pass_throughs if dated(p.date)),
        disclosures=tuple(d for d in books.disclosures if dated(d.date)),
        voided={fact.key: fact for fact in books.voided},
        invoices={i.invoice_id: i for i in books.invoices},
        purchases=purchases,
        introducers_of=introducers_of,
    )


@dataclass
class _Index:
    """The facts counted, indexed the way the rules read them."""

    introducers: dict[str, IntroducerRegistered] = field(default_factory=dict)
    eligibility: dict[str, list[tuple[dt.date, bool]]] = field(default_factory=lambda: defaultdict(list))
    introductions: list[IntroductionRecorded] = field(default_factory=list)
    invoices: dict[str, InvoiceIssued] = field(default_factory=dict)
    by_pair: dict[tuple[str, str], list[InvoiceIssued]] = field(default_factory=lambda: defaultdict(list))
    credit_notes: dict[str, list[CreditNoteIssued]] = field(default_factory=lambda: defaultdict(list))
    payments: dict[str, list[PaymentReceived]] = field(default_factory=lambda: defaultdict(list))
    payouts: list[PayoutRecorded] = field(default_factory=list)
    purchases: dict[str, PurchaseRecorded] = field(default_factory=dict)
    resales: dict[str, list[ResaleInvoiced]] = field(default_factory=lambda: defaultdict(list))
    rebates: list[RebateReceived] = field(default_factory=list)
    pass_throughs: list[RebatePassedThrough] = field(default_factory=list)
    clients: dict[str, ClientRegistered] = field(default_factory=dict)
    advisers: dict[str, AdviserRegistered] = field(default_factory=dict)
    disclosures: list[VendorCommissionReceived] = field(default_factory=list)
    bank_details: list[BankDetailsChanged] = field(default_factory=list)
    payout_runs: dict[str, PayoutRunProposed] = field(default_factory=dict)
    run_approvals: dict[str, PayoutRunApproved] = field(default_factory=dict)


#: Where each kind of fact goes in the index: adding a fact type is adding its indexer
#: here, next to the rules that read it.
_INDEXERS: dict[type, Callable[[_Index, Any], None]] = {}


def _indexes(kind: type[F]) -> Callable[[Callable[[_Index, F], None]], Callable[[_Index, F], None]]:
    def register(indexer: Callable[[_Index, F], None]) -> Callable[[_Index, F], None]:
        assert kind not in _INDEXERS, kind
        _INDEXERS[kind] = indexer
        return indexer

    return register


@_indexes(PartyErased)
def _erasure(ix: _Index, fact: PartyErased) -> None:
    """Changes no figure: the person's personal fields already read as erased."""


@_indexes(IntroducerRegistered)
def _introducer(ix: _Index, fact: IntroducerRegistered) -> None:
    ix.introducers[fact.introducer_id] = fact


@_indexes(EligibilityChanged)
def _eligibility(ix: _Index, fact: EligibilityChanged) -> None:
    ix.eligibility[fact.introducer_id].append((fact.effective_date, fact.can_receive_commission))


@_indexes(IntroductionRecorded)
def _introduction(ix: _Index, fact: IntroductionRecorded) -> None:
    ix.introductions.append(fact)


@_indexes(InvoiceIssued)
def _invoice(ix: _Index, fact: InvoiceIssued) -> None:
    ix.invoices[fact.invoice_id] = fact
    ix.by_pair[(fact.adviser_id, fact.client_id)].append(fact)


@_indexes(CreditNoteIssued)
def _credit_note(ix: _Index, fact: CreditNoteIssued) -> None:
    ix.credit_notes[fact.invoice_id].append(fact)


@_indexes(PaymentReceived)
def _payment(ix: _Index, fact: PaymentReceived) -> None:
    ix.payments[fact.invoice_id].append(fact)


@_indexes(PayoutRecorded)
def _payout(ix: _Index, fact: PayoutRecorded) -> None:
    ix.payouts.append(fact)


@_indexes(PurchaseRecorded)
def _purchase(ix: _Index, fact: PurchaseRecorded) -> None:
    ix.purchases[fact.purchase_id] = fact


@_indexes(ResaleInvoiced)
def _resale(ix: _Index, fact: ResaleInvoiced) -> None:
    ix.resales[fact.purchase_id].append(fact)


@_indexes(RebateReceived)
def _rebate(ix: _Index, fact: RebateReceived) -> None:
    ix.rebates.append(fact)


@_indexes(ClientRegistered)
def _client(ix: _Index, fact: ClientRegistered) -> None:
    ix.clients[fact.client_id] = fact


@_indexes(AdviserRegistered)
def _adviser(ix: _Index, fact: AdviserRegistered) -> None:
    ix.advisers[fact.adviser_id] = fact


@_indexes(VendorCommissionReceived)
def _vendor_commission(ix: _Index, fact: VendorCommissionReceived) -> None:
    """Disclosed only: an adviser's kickback is never revenue nor a commission base (R1)."""
    ix.disclosures.append(fact)


@_indexes(PeriodClosed)
def _close(ix: _Index, fact: PeriodClosed) -> None:
    """A close changes no figure (its statement is computed from the others, rules R9)."""


@_indexes(BankDetailsChanged)
def _bank_details(ix: _Index, fact: BankDetailsChanged) -> None:
    """Bank details change no figure: payout runs read them."""
    ix.bank_details.append(fact)


@_indexes(PayoutRunProposed)
def _payout_run(ix: _Index, fact: PayoutRunProposed) -> None:
    """A proposed run changes no figure: the payouts the bank books do."""
    ix.payout_runs[fact.run_id] = fact


@_indexes(PayoutRunApproved)
def _payout_run_approval(ix: _Index, fact: PayoutRunApproved) -> None:
    """An approval changes no figure."""
    ix.run_approvals[fact.run_id] = fact


@_indexes(RebatePassedThrough)
def _pass_through(ix: _Index, fact: RebatePassedThrough) -> None:
    ix.pass_throughs.append(fact)


def _index(facts: Iterable[Fact], as_of: dt.date | None) -> _Index:
    ix = _Index()
    for fact in facts:
        day = fact.business_date
        if as_of is not None and day is not None and day > as_of:
            continue
        _INDEXERS[type(fact)](ix, fact)
    for invoices in ix.by_pair.values():
        invoices.sort(key=attrgetter("issue_date", "invoice_id"))
    return ix


def build_books(
    facts: Iterable[Fact],
    as_of: dt.date | None = None,
    *,
    postings: bool = True,
    memo: LineMemo | None = None,
) -> Books:
    """Every figure of rules R1-R6 for ``facts`` counted up to ``as_of`` (inclusive), the
    voided facts left out at every as-of date (R8). Without ``postings`` the double-entry
    postings (and the trial balance) are left empty: what the figures alone need. With a
    ``memo`` shared by successive calls, an introduction whose inputs are the same facts
    as in the previous call (or the one before) reuses its lines (see :class:`LineMemo`)."""
    voiding = apply_voids(facts)
    return _assemble(_index(voiding.counted, as_of), voiding, as_of, postings=postings, memo=memo)


def _assemble(
    ix: _Index,
    voiding: Voiding,
    as_of: dt.date | None,
    *,
    postings: bool,
    memo: LineMemo | None,
    versions: Callable[[IntroductionRecorded], tuple[int, int]] | None = None,
) -> Books:
    """The books of the counted facts indexed in ``ix`` (pairs' invoices sorted)."""
    anomalies: list[Anomaly] = list(voiding.anomalies)
    journal: list[Posting] = []

    introductions: list[IntroductionLine] = []
    commissions: list[CommissionLine] = []
    for intro in ix.introductions:
        intro_line, lines = _introduction_commissions(intro, ix, anomalies, memo, versions)
        introductions.append(intro_line)
        commissions.extend(lines)
    introductions.sort(key=attrgetter("introduction_id"))
    commissions.sort(key=attrgetter("invoice_id", "introduction_id"))
    if memo is not None:
        memo.built()
    _check_orphans(ix, anomalies)
    if postings:
        for commission in commissions:
            journal.extend(commission_postings(commission))
        journal.extend(payout_posting(payout) for payout in ix.payouts)

    margin_lines = margins(ix.purchases, ix.resales, anomalies)
    voided_purchases = frozenset(target_id for kind, target_id in voiding.targets if kind == "purchase")
    shares = rebate_shares(ix.rebates, ix.purchases, anomalies, voided_purchases)
    if postings:
        journal.extend(rebate_postings(margin_lines, shares, ix.pass_throughs))
    journal.sort(key=attrgetter("date", "kind", "ref"))
    return Books(
        as_of=as_of,
        introducers=tuple(sorted(ix.introducers.values(), key=attrgetter("introducer_id"))),
        introductions=tuple(introductions),
        commissions=tuple(commissions),
        balances=balances(commissions, ix.payouts),
        donations=donations(commissions),
        margins=tuple(margin_lines),
        rebate_shares=tuple(shares),
        rebates=rebates(margin_lines, shares, ix.pass_throughs),
        postings=tuple(journal),
        anomalies=tuple(sorted(set(anomalies), key=attrgetter("kind", "fact_id", "message"))),
        trial_balance=trial_balance(journal),
        invoices=tuple(sorted(ix.invoices.values(), key=attrgetter("issue_date", "invoice_id"))),
        credit_notes=tuple(
            sorted(
                (n for ns in ix.credit_notes.values() for n in ns),
                key=attrgetter("issue_date", "credit_note_id"),
            )
        ),
        pass_throughs=tuple(sorted(ix.pass_throughs, key=attrgetter("date", "pass_through_id"))),
        purchases=tuple(sorted(ix.purchases.values(), key=attrgetter("purchase_id"))),
        payouts=tuple(sorted(ix.payouts, key=attrgetter("date", "payout_id"))),
        clients=tuple(sorted(ix.clients.values(), key=attrgetter("client_id"))),
        advisers=tuple(sorted(ix.advisers.values(), key=attrgetter("adviser_id"))),
        disclosures=tuple(sorted(ix.disclosures, key=attrgetter("date", "vendor_commission_id"))),
        voids=voiding.voids,
        voided=tuple(voiding.voided[key] for key in sorted(voiding.voided)),
        bank_details=tuple(sorted(ix.bank_details, key=attrgetter("introducer_id", "effective_date"))),
        payout_runs=tuple(ix.payout_runs[r] for r in sorted(ix.payout_runs)),
        run_approvals=tuple(ix.run_approvals[r] for r in sorted(ix.run_approvals)),
    )


#: What one introduction's lines are computed from, by identity (see :class:`LineMemo`).
_MemoKey = tuple[int, tuple[int, ...], tuple[tuple[dt.date, bool], ...]]


@dataclass(frozen=True, slots=True)
class _MemoEntry:
    #: The facts the key names by ``id``: held so that no other object takes their ids.
    inputs: tuple[object, ...]
    line: IntroductionLine
    lines: tuple[CommissionLine, ...]
    anomalies: tuple[Anomaly, ...]


class LineMemo:
    """The commission lines of each introduction, computed once per set of input facts.

    An introduction's lines are a pure function of the introduction, its pair's invoices
    (sorted), their credit notes and payments (in log order) and the introducer's
    eligibility (R1-R5). Successive :func:`build_books` calls over a growing log (each
    closed month's statement, ``ledger audit verify``) mostly see the same facts for most
    pairs: the memo finds them by the identity of those facts and reuses the lines and
    anomalies computed before. Entries not used by the last two builds are dropped, so the
    memo holds at most two builds' worth of lines.
    """

    __slots__ = ("_current", "_previous", "hits", "misses")

    def __init__(self) -> None:
        self._current: dict[_MemoKey, _MemoEntry] = {}
        self._previous: dict[_MemoKey, _MemoEntry] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: _MemoKey) -> _MemoEntry | None:
        entry = self._current.get(key)
        if entry is None:
            entry = self._previous.get(key)
            if entry is not None:
                self._current[key] = entry
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: _MemoKey, entry: _MemoEntry) -> None:
        self._current[key] = entry

    def built(self) -> None:
        """One build is over: what it did not use ages by one build."""
        self._previous, self._current = self._current, {}


def _introduction_commissions(
    intro: IntroductionRecorded,
    ix: _Index,
    anomalies: list[Anomaly],
    memo: LineMemo | None,
    versions: Callable[[IntroductionRecorded], tuple[int, int]] | None,
) -> tuple[IntroductionLine, Sequence[CommissionLine]]:
    """R1-R5 for one introduction: its line and its commission lines (through ``memo``,
    found by the identity of the input facts, or by ``versions``: the versions of the
    pair's invoices with their credit notes and payments and of the introducer's
    eligibility, when whoever fills ``ix`` counts them)."""
    invoices = ix.by_pair.get((intro.adviser_id, intro.client_id), [])
    eligibility = ix.eligibility.get(intro.introducer_id, [])
    if memo is None:
        line = introduction_line(intro, invoices)
        return line, pair_commission_lines(
            line, invoices, ix.credit_notes, ix.payments, eligibility, anomalies=anomalies
        )
    inputs: list[object] = [intro]
    if versions is not None:
        key: _MemoKey = (id(intro), versions(intro), ())
    else:
        for invoice in invoices:
            inputs.append(invoice)
            # a marker between the groups: the same facts split differently are other inputs
            inputs.append(_NOTES)
            inputs.extend(ix.credit_notes.get(invoice.invoice_id, ()))
            inputs.append(_PAYMENTS)
            inputs.extend(ix.payments.get(invoice.invoice_id, ()))
        key = (id(intro), tuple(map(id, inputs)), tuple(eligibility))
    entry = memo.get(key)
    if entry is None:
        found: list[Anomaly] = []
        line = introduction_line(intro, invoices)
        lines = pair_commission_lines(
            line, invoices, ix.credit_notes, ix.payments, eligibility, anomalies=found
        )
        entry = _MemoEntry(tuple(inputs), line, tuple(lines), tuple(found))
        memo.put(key, entry)
    anomalies.extend(entry.anomalies)
    return entry.line, entry.lines


_NOTES = object()
_PAYMENTS = object()


def _orphans(
    kind: str,
    children: Mapping[str, Sequence[CreditNoteIssued | PaymentReceived | ResaleInvoiced]],
    parents: Mapping[str, object],
    what: str,
) -> list[Anomaly]:
    return [
        Anomaly(kind, child.key[1], f"{what} {parent_id!r}, which the ledger does not know (yet)")
        for parent_id, group in children.items()
        if parent_id not in parents
        for child in group
    ]


def _check_orphans(ix: _Index, anomalies: list[Anomaly]) -> None:
    """Credit notes, payments and resales whose parent is not (yet) known."""
    anomalies.extend(_orphans("unknown_invoice", ix.credit_notes, ix.invoices, "credit note for invoice"))
    anomalies.extend(_orphans("unknown_invoice", ix.payments, ix.invoices, "payment for invoice"))
    anomalies.extend(_orphans("unknown_purchase", ix.resales, ix.purchases, "resale of purchase"))


def _take_out(found: list[Any], fact: Fact) -> None:
    """Remove ``fact`` itself (by identity) from ``found``; a void's target is most often
    one of the latest facts, so the search starts from the end."""
    for i in range(len(found) - 1, -1, -1):
        if found[i] is fact:
            del found[i]
            return
    raise AssertionError(f"{fact.key} is not indexed")


def _unindex(ix: _Index, fact: Fact) -> bool:
    """Take a voided ``fact`` out of ``ix``; False for a kind this cannot take out."""
    if isinstance(fact, IntroductionRecorded):
        _take_out(ix.introductions, fact)
    elif isinstance(fact, PaymentReceived):
        _take_out(ix.payments[fact.invoice_id], fact)
    elif isinstance(fact, PayoutRecorded):
        _take_out(ix.payouts, fact)
    elif isinstance(fact, PurchaseRecorded):
        assert ix.purchases.get(fact.purchase_id) is fact, fact.key
        del ix.purchases[fact.purchase_id]
    elif isinstance(fact, ResaleInvoiced):
        _take_out(ix.resales[fact.purchase_id], fact)
    elif isinstance(fact, RebateReceived):
        _take_out(ix.rebates, fact)
    elif isinstance(fact, RebatePassedThrough):
        _take_out(ix.pass_throughs, fact)
    elif isinstance(fact, VendorCommissionReceived):
        _take_out(ix.disclosures, fact)
    elif isinstance(fact, PayoutRunProposed):
        assert ix.payout_runs.get(fact.run_id) is fact, fact.key
        del ix.payout_runs[fact.run_id]
    else:
        return False
    return True


class PrefixBooks:
    """The books of a growing log, as of a day that never goes back, at the cost of what
    changed: ``books(facts, as_of)`` equals ``build_books(facts, as_of, postings=False)``.

    What a run over the closed months needs (each close's statement reads the books of the
    log up to the close, as of the end of the month before and of the month): the facts are
    indexed once, as they come or, when dated after the as-of day, once it reaches them; a
    void takes its target out of the index; the commission lines go through a
    :class:`LineMemo`. Each call costs the new facts plus assembling the books, instead of a
    replay of the whole log.

    This relies on what the intake guarantees: one fact per business key (a duplicate is
    not stored, a conflict is refused), so the order in which the index received the facts
    changes nothing. A log where a key repeats, or a void of a kind the index cannot take
    out, is still answered exactly: by a full :func:`build_books` (with the memo).
    """

    def __init__(self) -> None:
        self._facts: list[Fact] = []
        self._ix = _Index()
        self._as_of = dt.date.min
        #: Facts read but dated after the as-of day: (day, position, fact), a heap.
        self._pending: list[tuple[dt.date, int, Fact]] = []
        self._unsorted: set[tuple[str, str]] = set()
        self._latest: dict[FactKey, Fact] = {}
        self._voids: list[FactVoided] = []
        self._targets: set[FactKey] = set()
        self._voided: dict[FactKey, Fact] = {}
        self._irregular = False
        #: Bumped when a pair's invoices, credit notes or payments, or an introducer's
        #: eligibility, change in the index: an introduction's lines are found by them.
        self._pair_versions: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._introducer_versions: defaultdict[str, int] = defaultdict(int)
        self.memo = LineMemo()
        self._full_memo = LineMemo()  # for the full builds of an irregular log
        self._running = _Running()

    def books(self, facts: Sequence[Fact], as_of: dt.date | None) -> Books:
        """The books of ``facts`` (the log so far: what earlier calls read, and more) as of
        ``as_of`` (None: every day; never before an earlier call's day), without postings."""
        if not self._move(facts, as_of):
            return build_books(self._facts, as_of, postings=False, memo=self._full_memo)
        voided = dict(self._voided)
        voiding = Voiding(
            (),
            void_lines(self._voids, voided),
            voided,
            frozenset(self._targets),
            unknown_targets(self._voids, voided),
        )
        return _assemble(self._ix, voiding, as_of, postings=False, memo=self.memo, versions=self._versions)

    def month(self, facts: Sequence[Fact], as_of: dt.date | None, month: Month | None) -> MonthBooks:
        """``month_books(self.books(facts, as_of), month)``, from figures kept as running sums
        (each changed pair, purchase and rebate recomputed, the others as they were): what
        a closed month's statement reads, at the cost of what changed since the last call."""
        if not self._move(facts, as_of):
            return month_books(build_books(self._facts, as_of, postings=False, memo=self._full_memo), month)
        purchases = self._targets_of("purchase")
        return self._running.month(self._ix, frozenset(purchases), self._voided, month)

    def _targets_of(self, kind: str) -> list[str]:
        return [target_id for target_kind, target_id in self._targets if target_kind == kind]

    def can_reach(self, facts: Sequence[Fact], as_of: dt.date | None) -> bool:
        """Can these books be brought to ``facts`` as of ``as_of``: the same log, no shorter
        than what was read, and a day no earlier than the last one?"""
        day = dt.date.max if as_of is None else as_of
        read = len(self._facts)
        return day >= self._as_of and len(facts) >= read and (read == 0 or facts[read - 1] is self._facts[-1])

    def _move(self, facts: Sequence[Fact], as_of: dt.date | None) -> bool:
        """Read ``facts`` up to their end and index what ``as_of`` reaches; False when the
        log is irregular (a full build answers)."""
        day = dt.date.max if as_of is None else as_of
        assert day >= self._as_of, f"as of {day}, after as of {self._as_of}"
        assert len(facts) >= len(self._facts), (len(facts), len(self._facts))
        assert not self._facts or facts[len(self._facts) - 1] is self._facts[-1], "another log"
        self._as_of = day
        # first what waited for the day (read before what follows, and a void read next
        # must find its target in the index), then the new facts
        while self._pending and self._pending[0][0] <= day:
            fact = heappop(self._pending)[2]
            if fact.key not in self._targets:  # voided while it waited
                self._add(fact)
        for fact in facts[len(self._facts) :]:
            self._read(fact)
        if self._irregular:
            return False
        for pair in self._unsorted:
            self._ix.by_pair[pair].sort(key=attrgetter("issue_date", "invoice_id"))
        self._unsorted.clear()
        return True

    def _versions(self, intro: IntroductionRecorded) -> tuple[int, int]:
        pair = (intro.adviser_id, intro.client_id)
        return self._pair_versions[pair], self._introducer_versions[intro.introducer_id]

    def _changed(self, fact: Fact) -> None:
        """Bump the version ``fact`` (indexed or taken out) changes."""
        if isinstance(fact, InvoiceIssued):
            self._pair_versions[(fact.adviser_id, fact.client_id)] += 1
        elif isinstance(fact, CreditNoteIssued | PaymentReceived):
            invoice = self._ix.invoices.get(fact.invoice_id)
            if invoice is not None:  # else the invoice bumps its pair when it comes
                self._pair_versions[(invoice.adviser_id, invoice.client_id)] += 1
        elif isinstance(fact, EligibilityChanged):
            self._introducer_versions[fact.introducer_id] += 1

    def _read(self, fact: Fact) -> None:
        self._facts.append(fact)
        if isinstance(fact, FactVoided):
            self._void(fact)
            return
        key = fact.key
        if key in self._latest:
            self._irregular = True  # not what the intake stores: answered by a full build
        self._latest[key] = fact
        if key in self._targets:
            self._voided[key] = fact
            return
        day = fact.business_date
        if day is not None and day > self._as_of:
            heappush(self._pending, (day, len(self._facts), fact))
        else:
            self._add(fact)

    def _add(self, fact: Fact) -> None:
        _INDEXERS[type(fact)](self._ix, fact)
        self._changed(fact)
        self._running.track(self._ix, fact, +1)
        if isinstance(fact, InvoiceIssued):
            self._unsorted.add((fact.adviser_id, fact.client_id))

    def _void(self, void: FactVoided) -> None:
        self._voids.append(void)
        target = void.target
        if target in self._targets:
            return  # taken out already
        self._targets.add(target)
        if void.target_type == "purchase":  # known or not, out of every rebate's split
            self._running.purchase_voided(void.target_id)
        fact = self._latest.get(target)
        if fact is None:
            return  # not known yet: it is left out when it comes
        self._voided[target] = fact
        day = fact.business_date
        if day is not None and day > self._as_of:
            return  # still pending: left out when the as-of day reaches it
        if _unindex(self._ix, fact):
            self._changed(fact)
            self._running.track(self._ix, fact, -1)
        else:
            self._irregular = True  # a kind the index cannot take out: a full build answers


Pair = tuple[str, str]


class _Running:
    """The figures of :class:`PrefixBooks` as running sums, and the lines by month.

    Each fact indexed or taken out marks what it changes (a pair's commission lines, a
    purchase's margin, a rebate's split) or moves a sum at once (payouts, pass-throughs);
    :meth:`month` recomputes what is marked, with the very functions of
    :func:`build_books`, and moves the sums by the difference. A row exists while any line
    counts in it, as in a full build."""

    def __init__(self) -> None:
        self.pair_intros: defaultdict[Pair, list[IntroductionRecorded]] = defaultdict(list)
        self.introducer_pairs: defaultdict[str, set[Pair]] = defaultdict(set)
        self.rebates: dict[str, RebateReceived] = {}
        self.rebates_of_purchase: defaultdict[str, set[str]] = defaultdict(set)
        self.dirty_pairs: set[Pair] = set()
        self.dirty_purchases: set[str] = set()
        self.dirty_rebates: set[str] = set()
        self.pair_lines: dict[Pair, tuple[CommissionLine, ...]] = {}
        self.margin_lines: dict[str, MarginLine] = {}
        self.share_lines: dict[str, tuple[RebateShareLine, ...]] = {}
        #: (beneficiary, currency) -> [accrued, payable, paid, lines and payouts counted]
        self.balances: dict[tuple[str, str], list[Any]] = {}
        #: (client, currency) -> [margins, rebate shares, passed through, lines counted]
        self.owed: dict[tuple[str, str], list[Any]] = {}
        self.invoice_introducers: defaultdict[str, dict[str, int]] = defaultdict(dict)
        self.commissions: defaultdict[Month, dict[tuple[str, str], CommissionLine]] = defaultdict(dict)
        self.payouts: defaultdict[Month, dict[int, PayoutRecorded]] = defaultdict(dict)
        self.margins: defaultdict[Month, dict[str, MarginLine]] = defaultdict(dict)
        self.shares: defaultdict[Month, dict[str, tuple[RebateShareLine, ...]]] = defaultdict(dict)
        self.pass_throughs: defaultdict[Month, dict[int, RebatePassedThrough]] = defaultdict(dict)
        self.disclosures: defaultdict[Month, dict[int, VendorCommissionReceived]] = defaultdict(dict)

    def track(self, ix: _Index, fact: Fact, sign: int) -> None:
        """``fact`` was indexed (+1) or taken out (-1) of ``ix``."""
        if not self._track_commissions(ix, fact, sign):
            self._track_purchasing(fact, sign)

    def _track_commissions(self, ix: _Index, fact: Fact, sign: int) -> bool:
        """Commission lines and payouts; False for any other kind."""
        if isinstance(fact, IntroductionRecorded):
            pair = (fact.adviser_id, fact.client_id)
            if sign > 0:
                self.pair_intros[pair].append(fact)
                self.introducer_pairs[fact.introducer_id].add(pair)
            else:
                _take_out(self.pair_intros[pair], fact)
            self.dirty_pairs.add(pair)
        elif isinstance(fact, InvoiceIssued):
            self.dirty_pairs.add((fact.adviser_id, fact.client_id))
        elif isinstance(fact, CreditNoteIssued | PaymentReceived):
            invoice = ix.invoices.get(fact.invoice_id)
            if invoice is not None:  # else its invoice marks the pair when it comes
                self.dirty_pairs.add((invoice.adviser_id, invoice.client_id))
        elif isinstance(fact, EligibilityChanged):
            self.dirty_pairs |= self.introducer_pairs.get(fact.introducer_id, set())
        elif isinstance(fact, PayoutRecorded):
            _move(self.balances, (fact.beneficiary_id, fact.currency), 2, fact.amount, sign)
            _place(self.payouts[_month(fact.date)], id(fact), fact, sign)
        else:
            return False
        return True

    def _track_purchasing(self, fact: Fact, sign: int) -> None:
        """Margins, rebates, pass-throughs and disclosed vendor commissions."""
        if isinstance(fact, PurchaseRecorded):
            self.dirty_purchases.add(fact.purchase_id)
            self.dirty_rebates |= self.rebates_of_purchase.get(fact.purchase_id, set())
        elif isinstance(fact, ResaleInvoiced):
            self.dirty_purchases.add(fact.purchase_id)
        elif isinstance(fact, RebateReceived):
            if sign > 0:
                self.rebates[fact.rebate_id] = fact
                for purchase_id in fact.purchase_ids:
                    self.rebates_of_purchase[purchase_id].add(fact.rebate_id)
            else:
                del self.rebates[fact.rebate_id]
            self.dirty_rebates.add(fact.rebate_id)
        elif isinstance(fact, RebatePassedThrough):
            _move(self.owed, (fact.client_id, fact.currency), 2, fact.amount, sign)
            _place(self.pass_throughs[_month(fact.date)], id(fact), fact, sign)
        elif isinstance(fact, VendorCommissionReceived):
            _place(self.disclosures[_month(fact.date)], id(fact), fact, sign)

    def purchase_voided(self, purchase_id: str) -> None:
        self.dirty_rebates |= self.rebates_of_purchase.get(purchase_id, set())

    def month(
        self,
        ix: _Index,
        voided_purchases: frozenset[str],
        voided: Mapping[FactKey, Fact],
        month: Month | None,
    ) -> MonthBooks:
        self._refresh(ix, voided_purchases)
        purchases: dict[str, PurchaseRecorded] = dict(ix.purchases)
        purchases.update((v.purchase_id, v) for v in voided.values() if isinstance(v, PurchaseRecorded))

        def introducers_of(invoice_id: str) -> frozenset[str]:
            return frozenset(self.invoice_introducers.get(invoice_id, ()))

        def dated(by_month: Mapping[Month, Mapping[Any, Any]]) -> list[Any]:
            found = by_month.get(month) if month is not None else None
            return [] if found is None else list(found.values())

        return MonthBooks(
            balances=tuple(
                BalanceLine(b, c, accrued, payable, paid)
                for (b, c), (accrued, payable, paid, _) in sorted(self.balances.items())
            ),
            rebates=tuple(
                RebateLine(client, c, margins_, shares, passed)
                for (client, c), (margins_, shares, passed, _) in sorted(self.owed.items())
            ),
            commissions=tuple(
                sorted(dated(self.commissions), key=attrgetter("invoice_id", "introduction_id"))
            ),
            payouts=tuple(sorted(dated(self.payouts), key=attrgetter("date", "payout_id"))),
            margins=tuple(sorted(dated(self.margins), key=attrgetter("purchase_id"))),
            rebate_shares=tuple(
                share for group in sorted(dated(self.shares), key=lambda g: g[0].rebate_id) for share in group
            ),
            pass_throughs=tuple(sorted(dated(self.pass_throughs), key=attrgetter("date", "pass_through_id"))),
            disclosures=tuple(
                sorted(dated(self.disclosures), key=attrgetter("date", "vendor_commission_id"))
            ),
            voided=dict(voided),
            invoices=ix.invoices,
            purchases=purchases,
            introducers_of=introducers_of,
        )

    def _refresh(self, ix: _Index, voided_purchases: frozenset[str]) -> None:
        for pair in self.dirty_pairs:
            self._refresh_pair(ix, pair)
        self.dirty_pairs.clear()
        for purchase_id in self.dirty_purchases:
            self._refresh_margin(ix, purchase_id)
        self.dirty_purchases.clear()
        for rebate_id in self.dirty_rebates:
            self._refresh_rebate(ix, rebate_id, voided_purchases)
        self.dirty_rebates.clear()

    def _refresh_pair(self, ix: _Index, pair: Pair) -> None:
        for line in self.pair_lines.pop(pair, ()):
            self._line(line, -1)
        lines: list[CommissionLine] = []
        for intro in self.pair_intros.get(pair, []):
            lines.extend(_introduction_commissions(intro, ix, [], None, None)[1])
        if lines:
            self.pair_lines[pair] = tuple(lines)
        for line in lines:
            self._line(line, +1)

    def _refresh_margin(self, ix: _Index, purchase_id: str) -> None:
        old = self.margin_lines.pop(purchase_id, None)
        if old is not None:
            self._margin(old, -1)
        purchase, resales = ix.purchases.get(purchase_id), ix.resales.get(purchase_id)
        if purchase is not None and resales:
            for margin in margins({purchase_id: purchase}, {purchase_id: resales}, []):
                self.margin_lines[purchase_id] = margin
                self._margin(margin, +1)

    def _refresh_rebate(self, ix: _Index, rebate_id: str, voided_purchases: frozenset[str]) -> None:
        for share in self.share_lines.pop(rebate_id, ()):
            self._share(share, -1)
        rebate = self.rebates.get(rebate_id)
        split = () if rebate is None else tuple(rebate_shares([rebate], ix.purchases, [], voided_purchases))
        if split:
            self.share_lines[rebate_id] = split
            self.shares[_month(split[0].date)][rebate_id] = split
        for share in split:
            self._share(share, +1)

    def _line(self, line: CommissionLine, sign: int) -> None:
        row = _move(self.balances, (line.beneficiary_id, line.currency), 0, line.amount, sign)
        row[1] += sign * line.payable
        _place(
            self.commissions[_month(line.invoice_date)], (line.invoice_id, line.introduction_id), line, sign
        )
        introducers = self.invoice_introducers[line.invoice_id]
        introducers[line.introducer_id] = introducers.get(line.introducer_id, 0) + sign
        if not introducers[line.introducer_id]:
            del introducers[line.introducer_id]

    def _margin(self, line: MarginLine, sign: int) -> None:
        _move(self.owed, (line.client_id, line.currency), 0, line.margin, sign)
        _place(self.margins[_month(line.date)], line.purchase_id, line, sign)

    def _share(self, share: RebateShareLine, sign: int) -> None:
        _move(self.owed, (share.client_id, share.currency), 1, share.amount, sign)
        if sign < 0:
            self.shares[_month(share.date)].pop(share.rebate_id, None)


def _move(sums: dict[Any, list[Any]], key: Any, at: int, amount: Decimal, sign: int) -> list[Any]:
    """Add ``sign * amount`` to figure ``at`` of row ``key`` (its last slot counts what is
    in it: the row goes when that reaches zero)."""
    row = sums.get(key)
    if row is None:
        row = sums[key] = [ZERO, ZERO, ZERO, 0]
    row[at] += sign * amount
    row[3] += sign
    if not row[3]:
        del sums[key]
    return row


def _place(into: dict[Any, Any], key: Any, value: Any, sign: int) -> None:
    if sign > 0:
        into[key] = value
    else:
        del into[key]
