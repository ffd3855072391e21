"""Derived events: what each stored fact changes in the books, as outbound messages.

The :class:`Deriver` walks the log one position at a time and, for each fact, recomputes
only what that fact touches (the commission lines of one adviser/client pair, the rebates
of the clients behind one purchase) and emits the differences. Derived events are a pure
function of the log prefix, so their ids (``<position>:<kind>:<ref>``) are stable: a
crash between store and publish re-derives the same events with the same ids, and
JetStream's de-duplication (``Nats-Msg-Id``) and listeners drop the copies.
"""

from __future__ import annotations

from bisect import insort
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from ledger.application.outbound import (
    balance_payload,
    cause_payload,
    commission_payload,
    contact_payload,
    donation_payload,
    introducer_payload,
    payout_payload,
    rebate_owed_payload,
    void_payload,
)
from ledger.application.values import shared_value
from ledger.domain.books import build_books
from ledger.domain.commissions import (
    CommissionLine,
    IntroductionLine,
    commission_line,
    introduction_line,
    pair_commission_lines,
)
from ledger.domain.facts import (
    VOIDABLE_TYPES,
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
from ledger.domain.money import format_amount, minor_unit_exponent
from ledger.domain.personal import ERASED, redacted
from ledger.domain.purchasing import RebateLine

__all__ = ["DerivedEvent", "Deriver"]

ZERO = Decimal(0)
LineKey = tuple[str, str]  # (invoice_id, introduction_id)
Pair = tuple[str, str]  # (adviser_id, client_id)


@dataclass(frozen=True, slots=True)
class DerivedEvent:
    """One outbound event: ``id`` is stable for a given log, ``data`` is JSON-ready."""

    id: str
    kind: str
    position: int
    data: dict[str, Any]

    @property
    def subject(self) -> str:
        return f"ledger.out.{self.kind}"

    @property
    def type(self) -> str:
        return f"coop.ledger.out.{self.kind}.v1"

    def minor_delta(self) -> tuple[str, int] | None:
        """(currency, delta in minor units) of a commission amount change, if any."""
        if self.kind not in {"commission.accrued", "commission.adjusted"}:
            return None
        currency = self.data["currency"]
        delta = Decimal(self.data["delta"])
        return currency, int(delta.scaleb(minor_unit_exponent(currency)))


@dataclass
class _Facts:
    introducers: dict[str, IntroducerRegistered] = field(default_factory=dict)
    intros_by_pair: dict[Pair, list[IntroductionRecorded]] = field(default_factory=lambda: defaultdict(list))
    pairs_by_introducer: dict[str, set[Pair]] = field(default_factory=lambda: defaultdict(set))
    eligibility: dict[str, list[tuple[date, bool]]] = field(default_factory=lambda: defaultdict(list))
    invoices: dict[str, InvoiceIssued] = field(default_factory=dict)
    invoices_by_pair: dict[Pair, list[InvoiceIssued]] = field(default_factory=lambda: defaultdict(list))
    credit_notes: dict[str, list[CreditNoteIssued]] = field(default_factory=lambda: defaultdict(list))
    payments: dict[str, list[PaymentReceived]] = field(default_factory=lambda: defaultdict(list))
    purchases: dict[str, PurchaseRecorded] = field(default_factory=dict)
    purchases_by_client: dict[str, list[PurchaseRecorded]] = field(default_factory=lambda: defaultdict(list))
    resales: dict[str, list[ResaleInvoiced]] = field(default_factory=lambda: defaultdict(list))
    rebates_by_purchase: dict[str, list[RebateReceived]] = field(default_factory=lambda: defaultdict(list))
    pass_throughs: dict[str, list[RebatePassedThrough]] = field(default_factory=lambda: defaultdict(list))


class Deriver:
    """Turns the log, position by position, into derived events."""

    def __init__(self) -> None:
        self.position = 0
        self._facts = _Facts()
        self._lines: dict[Pair, dict[LineKey, CommissionLine]] = defaultdict(dict)
        self._intro_lines: dict[Pair, dict[str, IntroductionLine]] = defaultdict(dict)
        #: client -> currency -> the rebate line last published (indexed by client: a client's
        #: recompute must not scan every client's lines)
        self._rebates: defaultdict[str, dict[str, RebateLine]] = defaultdict(dict)
        # running balances per (beneficiary, currency): accrued, payable, paid
        self._balances: dict[tuple[str, str], list[Decimal]] = defaultdict(_zero_balance)
        #: Voidable facts seen, by business key (a void finds its target here).
        self._known: dict[FactKey, Fact] = {}
        #: The voids of each target (known or not), and the targets taken out.
        self._voids: dict[FactKey, list[FactVoided]] = defaultdict(list)
        self._voided: set[FactKey] = set()
        #: The void whose consequences are being derived (named in the events it causes).
        self._cause: FactVoided | None = None
        #: Fast-forwarding: commission lines move the balances but make no events.
        self._quiet = False

    def advance(self, position: int, fact: Fact) -> list[DerivedEvent]:
        """The events caused by ``fact``, stored at ``position`` (the next one)."""
        assert position == self.position + 1, (position, self.position)
        self.position = position
        if isinstance(fact, FactVoided):
            return self._void(fact)
        if fact.key in self._voids:
            return self._arrived_voided(fact)
        scope = self._index(fact)
        events: list[DerivedEvent] = []
        if isinstance(fact, IntroducerRegistered):
            events.append(self._event("introducer.registered", fact.introducer_id, introducer_payload(fact)))
        elif isinstance(fact, ClientRegistered):
            events.append(
                self._event("client.registered", fact.client_id, contact_payload(fact, "client_id"))
            )
        elif isinstance(fact, AdviserRegistered):
            events.append(
                self._event("adviser.registered", fact.adviser_id, contact_payload(fact, "adviser_id"))
            )
        elif isinstance(fact, PartyErased):
            ref = f"{fact.party_type}/{fact.party_id}"
            data = {"party_type": fact.party_type, "party_id": fact.party_id, "position": position}
            events.append(self._event("party.erased", ref, data))
        elif isinstance(fact, PayoutRecorded):
            accrued, payable, paid = self._balances[(fact.beneficiary_id, fact.currency)]
            balance = balance_payload(accrued, payable, paid, fact.currency)
            events.append(self._event("payout.recorded", fact.payout_id, payout_payload(fact, balance)))
        return events + self._recompute(scope, fact)

    def _index(self, fact: Fact) -> _Scope:
        scope = _Scope()
        _INDEXERS[type(fact)](self, fact, scope)
        if fact.key[0] in VOIDABLE_TYPES:
            self._known[fact.key] = fact
        return scope

    def fast_forward(self, facts: Sequence[Fact]) -> None:
        """Advance over ``facts`` (the next positions) whose events are already published,
        without deriving them: every fact is indexed (voids applied) as :meth:`advance`
        does, then each commission pair and rebate client they touched is recomputed once,
        instead of once per fact. The state reached is the one :meth:`advance` would reach
        (the recomputes are functions of the indexed facts; a property test compares the
        events both derive afterwards). What a restart runs over the published history."""
        pairs: set[Pair] = set()
        clients: set[str] = set()
        for fact in facts:
            self.position += 1
            if isinstance(fact, FactVoided):
                scope = self._take_out(fact)
            elif fact.key in self._voids:
                self._arrived_voided(fact)
                continue
            else:
                scope = self._index(fact)
            pairs |= scope.pairs
            if scope.invoice is not None:
                pairs.add(scope.invoice[0])
            clients |= scope.clients
        self._quiet = True  # the events are out already: only the state is wanted
        try:
            for pair in sorted(pairs):
                self._recompute_pair(pair)
            for client in sorted(clients):
                self._recompute_client(client, None)
        finally:
            self._quiet = False

    def _recompute(self, scope: _Scope, fact: Fact) -> list[DerivedEvent]:
        events: list[DerivedEvent] = []
        for pair in sorted(scope.pairs):
            events.extend(self._recompute_pair(pair))
        if scope.invoice is not None and scope.invoice[0] not in scope.pairs:
            events.extend(self._recompute_invoice(*scope.invoice))
        for client in sorted(scope.clients):
            events.extend(self._recompute_client(client, fact))
        return events

    # voids (rules R8) ------------------------------------------------------------------

    def _void(self, void: FactVoided) -> list[DerivedEvent]:
        """A void: announced (``fact.voided``), and when its target is known and counted,
        the target is taken out and everything it touched recomputed, each event naming
        the void as its cause."""
        events = [self._voided_event(void, applied=void.target in self._known)]
        scope = self._take_out(void)
        self._cause = void
        try:
            events.extend(self._recompute(scope, void))
        finally:
            self._cause = None
        return events

    def _take_out(self, void: FactVoided) -> _Scope:
        """Index ``void``; its target (when known and still counted) is taken out. Returns
        what must be recomputed."""
        self._voids[void.target].append(void)
        target = self._known.get(void.target)
        scope = _Scope()
        if target is not None and void.target not in self._voided:
            self._voided.add(void.target)
            _REMOVERS[type(target)](self, target, scope)
        elif target is None and void.target_type == "purchase":
            # a rebate listing the purchase is now split over its other purchases
            scope.clients |= self._clients_of_rebates(self._facts.rebates_by_purchase.get(void.target_id, []))
        return scope

    def _arrived_voided(self, fact: Fact) -> list[DerivedEvent]:
        """A fact whose void came first: it never counts (nothing to recompute: it was
        left out from the start); each of its voids is now applied."""
        self._known[fact.key] = fact
        self._voided.add(fact.key)
        if isinstance(fact, (PurchaseRecorded, ResaleInvoiced, RebateReceived, RebatePassedThrough)):
            _INDEXERS[type(fact)](self, fact, _Scope())  # kept beside its void for the client's books
        return [self._voided_event(void, applied=True) for void in self._voids[fact.key]]

    def _voided_event(self, void: FactVoided, *, applied: bool) -> DerivedEvent:
        return self._event("fact.voided", void.void_id, void_payload(void, applied=applied))

    def _unindex_introduction(self, fact: IntroductionRecorded, scope: _Scope) -> None:
        pair = (fact.adviser_id, fact.client_id)
        intros = self._facts.intros_by_pair[pair]
        intros.remove(fact)
        if not intros:
            del self._facts.intros_by_pair[pair]
        scope.pairs.add(pair)

    def _unindex_payment(self, fact: PaymentReceived, scope: _Scope) -> None:
        ix = self._facts
        ix.payments[fact.invoice_id].remove(fact)
        invoice = ix.invoices.get(fact.invoice_id)
        if invoice is not None and (invoice.adviser_id, invoice.client_id) in ix.intros_by_pair:
            scope.invoice = ((invoice.adviser_id, invoice.client_id), invoice.invoice_id)

    def _unindex_payout(self, fact: PayoutRecorded, scope: _Scope) -> None:
        self._balances[(fact.beneficiary_id, fact.currency)][2] -= fact.amount

    def _purchasing_voided(
        self, fact: PurchaseRecorded | ResaleInvoiced | RebateReceived | RebatePassedThrough, scope: _Scope
    ) -> None:
        """Purchasing facts stay indexed: the client's books are computed with the void
        beside them, which leaves them out (and splits a rebate over its other purchases)."""
        purchases = self._facts.purchases
        if isinstance(fact, PurchaseRecorded):
            scope.clients.add(fact.client_id)
            scope.clients |= self._clients_of_rebates(
                self._facts.rebates_by_purchase.get(fact.purchase_id, [])
            )
        elif isinstance(fact, ResaleInvoiced):
            if fact.purchase_id in purchases:
                scope.clients.add(purchases[fact.purchase_id].client_id)
        elif isinstance(fact, RebateReceived):
            scope.clients |= self._clients_of_rebates([fact])
        else:
            scope.clients.add(fact.client_id)

    # indexes ------------------------------------------------------------------------

    def _introducer(self, fact: IntroducerRegistered, scope: _Scope) -> None:
        self._facts.introducers[fact.introducer_id] = fact

    def _introduction(self, fact: IntroductionRecorded, scope: _Scope) -> None:
        pair = (fact.adviser_id, fact.client_id)
        self._facts.intros_by_pair[pair].append(fact)
        self._facts.pairs_by_introducer[fact.introducer_id].add(pair)
        scope.pairs.add(pair)

    def _eligibility(self, fact: EligibilityChanged, scope: _Scope) -> None:
        ix = self._facts
        ix.eligibility[fact.introducer_id].append((fact.effective_date, fact.can_receive_commission))
        scope.pairs |= ix.pairs_by_introducer.get(fact.introducer_id, set())

    def _invoice(self, fact: InvoiceIssued, scope: _Scope) -> None:
        ix = self._facts
        pair = (fact.adviser_id, fact.client_id)
        ix.invoices[fact.invoice_id] = fact
        insort(ix.invoices_by_pair[pair], fact, key=_invoice_order)
        if pair not in ix.intros_by_pair:
            return
        if self._moves_f_or_l(pair, fact):
            scope.pairs.add(pair)  # F or L moved: every line of the pair may change
        else:
            scope.invoice = (pair, fact.invoice_id)

    def _invoice_child(self, fact: CreditNoteIssued | PaymentReceived, scope: _Scope) -> None:
        ix = self._facts
        if isinstance(fact, CreditNoteIssued):
            ix.credit_notes[fact.invoice_id].append(fact)
        else:
            ix.payments[fact.invoice_id].append(fact)
        invoice = ix.invoices.get(fact.invoice_id)
        if invoice is not None and (invoice.adviser_id, invoice.client_id) in ix.intros_by_pair:
            scope.invoice = ((invoice.adviser_id, invoice.client_id), invoice.invoice_id)

    def _payout(self, fact: PayoutRecorded, scope: _Scope) -> None:
        self._balances[(fact.beneficiary_id, fact.currency)][2] += fact.amount

    def _purchase(self, fact: PurchaseRecorded, scope: _Scope) -> None:
        ix = self._facts
        ix.purchases[fact.purchase_id] = fact
        ix.purchases_by_client[fact.client_id].append(fact)
        scope.clients.add(fact.client_id)
        scope.clients |= self._clients_of_rebates(ix.rebates_by_purchase.get(fact.purchase_id, []))

    def _resale(self, fact: ResaleInvoiced, scope: _Scope) -> None:
        self._facts.resales[fact.purchase_id].append(fact)
        purchase = self._facts.purchases.get(fact.purchase_id)
        if purchase is not None:
            scope.clients.add(purchase.client_id)

    def _rebate(self, fact: RebateReceived, scope: _Scope) -> None:
        for purchase_id in fact.purchase_ids:
            self._facts.rebates_by_purchase[purchase_id].append(fact)
        scope.clients |= self._clients_of_rebates([fact])

    def _nothing_to_recompute(self, fact: Fact, scope: _Scope) -> None:
        """Contacts and disclosed vendor commissions change no figure."""

    def _erase(self, fact: PartyErased, scope: _Scope) -> None:
        """An erasure changes no figure, but the party's personal fields leave the deriver's
        memory too: the introducer's registration, and the client's introductions (their
        reason for custom terms), known, indexed or in a computed line, are kept redacted."""
        if fact.party_type == "introducer":
            held = self._facts.introducers.get(fact.party_id)
            if held is not None:
                self._facts.introducers[fact.party_id] = redacted(held)
            return
        if fact.party_type != "client":
            return
        for key, known in self._known.items():
            if isinstance(known, IntroductionRecorded) and known.client_id == fact.party_id:
                self._known[key] = redacted(known)
        for pair, intros in self._facts.intros_by_pair.items():
            if pair[1] == fact.party_id:
                intros[:] = [redacted(intro) for intro in intros]
        for pair, lines in self._intro_lines.items():
            if pair[1] == fact.party_id:
                for intro_id, line in lines.items():
                    if line.terms_reason is not None:
                        lines[intro_id] = replace(line, terms_reason=ERASED)

    def _close(self, fact: PeriodClosed, scope: _Scope) -> None:
        """A close changes no figure (the pipeline announces it with the month's totals)."""

    def _pass_through(self, fact: RebatePassedThrough, scope: _Scope) -> None:
        self._facts.pass_throughs[fact.client_id].append(fact)
        scope.clients.add(fact.client_id)

    def _clients_of_rebates(self, rebates: Iterable[RebateReceived]) -> set[str]:
        purchases = self._facts.purchases
        return {purchases[p].client_id for r in rebates for p in r.purchase_ids if p in purchases}

    # commissions --------------------------------------------------------------------

    def _moves_f_or_l(self, pair: Pair, invoice: InvoiceIssued) -> bool:
        """Does ``invoice`` change F (first invoice on/after D) or L (last before D) of an
        introduction of ``pair``? If not, only its own commission lines are new. F and L are
        dates (a minimum and a maximum), so an invoice dated exactly F or L moves neither."""
        day = invoice.issue_date
        for intro in self._intro_lines[pair].values():
            if day >= intro.date:
                if intro.first_invoice_date is None or day < intro.first_invoice_date:
                    return True
            elif intro.last_invoice_before is None or day > intro.last_invoice_before:
                return True
        return False

    def _intro_lines_of(self, pair: Pair) -> dict[str, IntroductionLine]:
        invoices = self._facts.invoices_by_pair.get(pair, [])
        return {
            intro.introduction_id: introduction_line(intro, invoices)
            for intro in self._facts.intros_by_pair.get(pair, [])
        }

    def _recompute_pair(self, pair: Pair) -> list[DerivedEvent]:
        ix = self._facts
        intro_lines = self._intro_lines_of(pair)
        invoices = ix.invoices_by_pair.get(pair, [])
        after: dict[LineKey, CommissionLine] = {}
        for intro in intro_lines.values():
            for line in pair_commission_lines(
                intro,
                invoices,
                ix.credit_notes,
                ix.payments,
                ix.eligibility.get(intro.introducer_id, []),
                anomalies=[],
            ):
                after[(line.invoice_id, line.introduction_id)] = _compact(line)
        before = self._lines[pair]
        events: list[DerivedEvent] = []
        for key in sorted(before.keys() | after.keys()):
            events.extend(self._line_events(key, before.get(key), after.get(key)))
        self._lines[pair] = after
        self._intro_lines[pair] = intro_lines
        return events

    def _recompute_invoice(self, pair: Pair, invoice_id: str) -> list[DerivedEvent]:
        ix = self._facts
        invoice = ix.invoices[invoice_id]
        lines = self._lines[pair]
        events: list[DerivedEvent] = []
        for intro_id in sorted(self._intro_lines[pair]):
            intro = self._intro_lines[pair][intro_id]
            key = (invoice_id, intro_id)
            new = commission_line(
                intro,
                invoice,
                ix.credit_notes.get(invoice_id, ()),
                ix.payments.get(invoice_id, ()),
                ix.eligibility.get(intro.introducer_id, ()),
                anomalies=[],
            )
            old = lines.get(key)
            events.extend(self._line_events(key, old, new))
            if new is None:
                lines.pop(key, None)
            else:
                lines[key] = _compact(new)
        return events

    def _line_events(
        self, key: LineKey, old: CommissionLine | None, new: CommissionLine | None
    ) -> list[DerivedEvent]:
        """The events of one commission line going from ``old`` to ``new`` (either may be
        None: the line appears or goes away)."""
        ref = f"{key[0]}/{key[1]}"
        if old is not None:
            self._move_balance(old, -1)
        if new is not None:
            self._move_balance(new, +1)
        if self._quiet:
            return []
        return [*self._amount_events(ref, old, new), *self._payable_events(ref, old, new)]

    def _amount_events(
        self, ref: str, old: CommissionLine | None, new: CommissionLine | None
    ) -> list[DerivedEvent]:
        events: list[DerivedEvent] = []
        if old is None and new is not None:
            events.append(self._commission("commission.accrued", ref, new, new.amount, None))
            if new.donor_id is not None and new.amount:
                events.append(self._donation(ref, new, new.amount))
        elif old is not None and new is None:
            events.append(self._commission("commission.adjusted", ref, _zeroed(old), -old.amount, old))
            if old.donor_id is not None and old.amount:
                events.append(self._donation(ref, old, -old.amount))
        elif old is not None and new is not None:
            moved = old.beneficiary_id != new.beneficiary_id
            changed = moved or old.amount != new.amount
            if changed or old.rate != new.rate:
                events.append(self._commission("commission.adjusted", ref, new, new.amount - old.amount, old))
            if changed and old.donor_id is not None and old.amount:
                events.append(self._donation(ref, old, -old.amount))
            if changed and new.donor_id is not None and new.amount:
                events.append(self._donation(ref, new, new.amount))
        return events

    def _payable_events(
        self, ref: str, old: CommissionLine | None, new: CommissionLine | None
    ) -> list[DerivedEvent]:
        """What the old beneficiary had payable is withdrawn when the line goes away or
        changes hands; the new beneficiary's payable is counted from zero in that case."""
        events: list[DerivedEvent] = []
        moved_or_gone = old is not None and (new is None or old.beneficiary_id != new.beneficiary_id)
        if old is not None and moved_or_gone and old.payable:
            events.append(
                self._commission(
                    "commission.payable", f"{ref}/-{old.beneficiary_id}", _zeroed(old), -old.payable, old
                )
            )
        before_payable = ZERO if old is None or moved_or_gone else old.payable
        if new is not None and new.payable != before_payable:
            events.append(self._commission("commission.payable", ref, new, new.payable - before_payable, old))
        return events

    def _move_balance(self, line: CommissionLine, sign: int) -> None:
        row = self._balances[(line.beneficiary_id, line.currency)]
        row[0] += sign * line.amount
        row[1] += sign * line.payable

    def _commission(
        self, kind: str, ref: str, line: CommissionLine, delta: Decimal, previous: CommissionLine | None
    ) -> DerivedEvent:
        accrued, payable, paid = self._balances[(line.beneficiary_id, line.currency)]
        balance = balance_payload(accrued, payable, paid, line.currency)
        return self._event(
            kind, ref, commission_payload(line, delta=delta, previous=previous, balance=balance)
        )

    def _donation(self, ref: str, line: CommissionLine, amount: Decimal) -> DerivedEvent:
        return self._event(
            "donation.credited", f"{ref}/{'+' if amount > 0 else '-'}", donation_payload(line, amount)
        )

    # rebates ------------------------------------------------------------------------

    def _recompute_client(self, client: str, fact: Fact | None) -> list[DerivedEvent]:
        ix = self._facts
        facts: list[Fact] = []
        rebates: dict[str, RebateReceived] = {}
        for purchase in ix.purchases_by_client.get(client, []):
            facts.append(purchase)
            facts.extend(ix.resales.get(purchase.purchase_id, []))
            for rebate in ix.rebates_by_purchase.get(purchase.purchase_id, []):
                rebates[rebate.rebate_id] = rebate
        for rebate in rebates.values():
            facts.append(rebate)
            facts.extend(
                ix.purchases[p]
                for p in rebate.purchase_ids
                if p in ix.purchases and ix.purchases[p].client_id != client
            )
        facts.extend(ix.pass_throughs.get(client, []))
        facts.extend(self._voids_among(facts, rebates.values()))
        rows = {r.currency: r for r in build_books(facts).rebates if r.client_id == client}
        published = self._rebates[client]
        events: list[DerivedEvent] = []
        for currency in sorted(rows.keys() | published.keys()):
            old, new = published.get(currency), rows.get(currency)
            old_owed = ZERO if old is None else old.owed
            new_owed = ZERO if new is None else new.owed
            if new is not None:
                published[currency] = new
            else:
                published.pop(currency, None)
            old_outstanding = ZERO if old is None else old.outstanding
            new_outstanding = ZERO if new is None else new.outstanding
            if new_owed != old_owed or (self._cause is not None and new_outstanding != old_outstanding):
                outstanding = ZERO if new is None else new.outstanding
                data = rebate_owed_payload(client, currency, new_owed, new_owed - old_owed, outstanding)
                events.append(self._event("rebate.owed", f"{client}/{currency}", data))
        if isinstance(fact, RebatePassedThrough) and fact.client_id == client:
            row = rows.get(fact.currency)
            events.append(
                self._event(
                    "rebate.passed_through",
                    fact.pass_through_id,
                    {
                        "pass_through_id": fact.pass_through_id,
                        "client_id": client,
                        "currency": fact.currency,
                        "date": fact.date.isoformat(),
                        "amount": format_amount(fact.amount, fact.currency),
                        "outstanding": format_amount(ZERO if row is None else row.outstanding, fact.currency),
                    },
                )
            )
        return events

    def _voids_among(self, facts: Iterable[Fact], rebates: Iterable[RebateReceived]) -> list[FactVoided]:
        """The voids of ``facts`` and of the purchases the ``rebates`` list (known or not)."""
        keys = {f.key for f in facts} | {("purchase", p) for r in rebates for p in r.purchase_ids}
        return [void for key in sorted(keys & self._voids.keys()) for void in self._voids[key]]

    def _event(self, kind: str, ref: str, data: dict[str, Any]) -> DerivedEvent:
        if self._cause is not None and kind != "fact.voided":
            data["cause"] = cause_payload(self._cause)
        return DerivedEvent(f"{self.position}:{kind}:{ref}", kind, self.position, data)


@dataclass
class _Scope:
    """What one fact makes the deriver recompute."""

    pairs: set[Pair] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)
    #: One invoice of a pair, when that is all that changes (no F or L moved).
    invoice: tuple[Pair, str] | None = None


#: How the deriver indexes each kind of fact (and what it then recomputes): adding a fact
#: type is adding its method and its line here.
_INDEXERS: dict[type, Callable[[Deriver, Any, _Scope], None]] = {
    IntroducerRegistered: Deriver._introducer,
    IntroductionRecorded: Deriver._introduction,
    EligibilityChanged: Deriver._eligibility,
    InvoiceIssued: Deriver._invoice,
    CreditNoteIssued: Deriver._invoice_child,
    PaymentReceived: Deriver._invoice_child,
    PayoutRecorded: Deriver._payout,
    PurchaseRecorded: Deriver._purchase,
    ResaleInvoiced: Deriver._resale,
    RebateReceived: Deriver._rebate,
    RebatePassedThrough: Deriver._pass_through,
    PeriodClosed: Deriver._close,
    ClientRegistered: Deriver._nothing_to_recompute,
    AdviserRegistered: Deriver._nothing_to_recompute,
    VendorCommissionReceived: Deriver._nothing_to_recompute,
    BankDetailsChanged: Deriver._nothing_to_recompute,
    PayoutRunProposed: Deriver._nothing_to_recompute,
    PayoutRunApproved: Deriver._nothing_to_recompute,
    PartyErased: Deriver._erase,
}


#: How the deriver takes each kind of voided fact out (rules R8).
_REMOVERS: dict[type, Callable[[Deriver, Any, _Scope], None]] = {
    IntroductionRecorded: Deriver._unindex_introduction,
    PaymentReceived: Deriver._unindex_payment,
    PayoutRecorded: Deriver._unindex_payout,
    PurchaseRecorded: Deriver._purchasing_voided,
    ResaleInvoiced: Deriver._purchasing_voided,
    RebateReceived: Deriver._purchasing_voided,
    RebatePassedThrough: Deriver._purchasing_voided,
    VendorCommissionReceived: Deriver._nothing_to_recompute,
    PayoutRunProposed: Deriver._nothing_to_recompute,
}


#: What a commission line computes; its other values are its facts' own (shared) objects.
_COMPUTED_AMOUNTS = ("credited_net", "base", "amount", "gross", "paid", "payable")


def _compact(line: CommissionLine) -> CommissionLine:
    """``line``, just computed and not yet seen by anyone else, made to hold shared amounts
    (:mod:`ledger.application.values`): the deriver keeps a line per invoice and
    introduction, and most amounts repeat across lines. Set in place, as a frozen
    dataclass's ``__post_init__`` would: a copy would cost an object per line.

    Only for a line fresh from ``commission_line`` / ``pair_commission_lines`` (a new object
    each call): never one from a cache such as ``domain.books``' line memo, whose lines
    other books hold."""
    for name in _COMPUTED_AMOUNTS:
        object.__setattr__(line, name, shared_value(getattr(line, name)))
    return line


def _zero_balance() -> list[Decimal]:
    """Accrued, payable, paid: nothing yet (a named function: the deriver is pickled in
    snapshots, a lambda is not picklable)."""
    return [ZERO, ZERO, ZERO]


def _invoice_order(invoice: InvoiceIssued) -> tuple[date, str]:
    return (invoice.issue_date, invoice.invoice_id)


def _zeroed(line: CommissionLine) -> CommissionLine:
    """A line that no longer carries a commission (its window or introduction moved)."""
    return replace(line, base=ZERO, amount=ZERO, payable=ZERO, payable_steps=())
