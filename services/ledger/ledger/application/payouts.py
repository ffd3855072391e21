"""Payout runs, the use cases the CLI (and any other entry point) share: propose a run from
a closed month, read a run with its transfers, and reconcile the bank's notifications.

- **Propose** (:func:`propose_run`): what is due to each beneficiary from the month's frozen
  statement (``outstanding`` at its close), less what was paid since and what open runs
  already propose; a minimum per currency; beneficiaries the cooperative cannot pay listed
  apart (:mod:`ledger.domain.payouts`). The run is then recorded as a fact
  (``payout_run.proposed``) by whoever calls this.
- **Read** (:func:`run_view`): a run, its approval (a second person), whether it was voided,
  and each transfer with its end-to-end id, the beneficiary's account and the payout the
  bank booked for it, if any. The accounts are those known when the run was proposed (the
  log up to the proposal, effective on the run's date): the two people who proposed and
  approved it saw them, and the payment file is the same whenever it is made again.
- **Reconcile** (:func:`reconcile`): each transfer the bank reports booked is matched by its
  end-to-end id to a run's line; a match with the same amount and currency becomes a payout
  (``payout.recorded``, ``payout_id`` = the end-to-end id, ``adviser_id`` = ``cooperative``:
  the cooperative paid), recorded once whatever the number of imports; returns, rejections,
  pending transfers, unknown ids and different amounts are listed, never guessed.

IBANs are personal data: nothing here logs them; views carry them for the payment file and
:func:`mask_iban` for everything shown.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from ledger.application.ledger import Ledger
from ledger.application.periods import available_months, closed_statement
from ledger.domain.books import Books, build_books
from ledger.domain.facts import (
    COOPERATIVE,
    BankDetailsChanged,
    Fact,
    IntroducerRegistered,
    PayoutLine,
    PayoutRecorded,
    PayoutRunApproved,
    PayoutRunProposed,
)
from ledger.domain.money import format_amount
from ledger.domain.payouts import Proposal, due_amounts, end_to_end_id, is_run_id, open_lines, propose
from ledger.domain.personal import ERASED

__all__ = [
    "PAYABLE_CURRENCIES",
    "BankAccount",
    "BankNotice",
    "PayoutRunError",
    "Reconciliation",
    "RunLineView",
    "RunProposal",
    "RunView",
    "accounts_at",
    "cannot_pay",
    "mask_iban",
    "next_run_id",
    "propose_run",
    "reconcile",
    "run_view",
]

#: The currencies a payment file is made in (Swiss domestic payments and SEPA).
PAYABLE_CURRENCIES = frozenset({"CHF", "EUR"})
_CHF_COUNTRIES = frozenset({"CH", "LI"})
_QR_IIDS = range(30000, 32000)
#: The most runs of one month (their ids are numbered).
MAX_RUNS_PER_PERIOD = 999


class PayoutRunError(ValueError):
    """A run that cannot be proposed, read or paid, with the reason in words."""


@dataclass(frozen=True, slots=True)
class BankAccount:
    """Where an introducer is paid (personal data)."""

    iban: str
    bic: str | None
    holder: str

    @property
    def masked(self) -> str:
        return mask_iban(self.iban)


def mask_iban(iban: str) -> str:
    """An IBAN with all but its last four characters hidden (statements, tables, logs)."""
    return "*" * max(len(iban) - 4, 0) + iban[-4:]


def accounts_at(facts: Sequence[Fact], day: date) -> dict[str, BankAccount]:
    """Each introducer's account effective on ``day``: the latest bank details effective on
    or before it (the later one recorded wins a tie), else the registration's IBAN."""
    names: dict[str, str] = {}
    registered: dict[str, BankAccount] = {}
    changes: dict[str, tuple[date, BankDetailsChanged]] = {}
    for fact in facts:
        if isinstance(fact, IntroducerRegistered) and fact.introducer_id not in names:
            names[fact.introducer_id] = fact.display_name
            if fact.iban is not None:
                holder = fact.account_holder or fact.display_name
                registered[fact.introducer_id] = BankAccount(fact.iban, fact.bic, holder)
        elif isinstance(fact, BankDetailsChanged) and fact.effective_date <= day:
            known = changes.get(fact.introducer_id)
            if known is None or fact.effective_date >= known[0]:
                changes[fact.introducer_id] = (fact.effective_date, fact)
    out = dict(registered)
    for introducer, (_, change) in changes.items():
        holder = change.account_holder or names.get(introducer, introducer)
        out[introducer] = BankAccount(change.iban, change.bic, holder)
    return out


def cannot_pay(account: BankAccount | None, currency: str) -> str | None:
    """Why a transfer in ``currency`` to ``account`` cannot be made, or None."""
    if currency not in PAYABLE_CURRENCIES:
        return f"payment files are made in CHF and EUR only, not {currency}"
    if account is None:
        return "no bank account: record the introducer's IBAN (coop.ledger.introducer.bank_details.v1)"
    if account.iban == ERASED:
        return "the introducer was erased: their bank details are gone (pay them before erasing them)"
    return _iban_refusal(account.iban, currency)


def _iban_refusal(text: str, currency: str) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            iban = IBAN(text)
    except SchwiftyException as exc:  # checked when recorded; a library update may disagree
        return f"the IBAN on record is not valid any more ({type(exc).__name__})"
    if currency == "CHF" and iban.country_code not in _CHF_COUNTRIES:
        return f"a CHF transfer needs a CH or LI IBAN (the one on record is in {iban.country_code})"
    if currency == "CHF" and int(text[4:9]) in _QR_IIDS:
        return "the IBAN on record is a QR-IBAN, which needs a QR reference: record the ordinary IBAN"
    if currency == "EUR" and not iban.in_sepa_zone:
        return f"a EUR transfer is a SEPA transfer; the IBAN on record is in {iban.country_code}"
    return None


@dataclass(frozen=True, slots=True)
class RunProposal:
    """A run proposed from a closed month (not recorded yet)."""

    run_id: str
    period: str
    date: date
    proposed_by: str
    proposal: Proposal
    accounts: dict[str, str]  # beneficiary -> masked IBAN, for the lines shown

    def fact_data(self) -> dict[str, Any]:
        """The data of its ``coop.ledger.payout_run.proposed.v1`` fact."""
        return {
            "run_id": self.run_id,
            "period": self.period,
            "date": self.date.isoformat(),
            "proposed_by": self.proposed_by,
            "lines": [
                {
                    "beneficiary_id": line.beneficiary_id,
                    "currency": line.currency,
                    "amount": format_amount(line.amount, line.currency),
                }
                for line in self.proposal.lines
            ],
        }

    def summary(self) -> dict[str, Any]:
        """The proposal as JSON: lines (with masked IBAN and end-to-end id), totals, what is
        carried over and what cannot be paid."""

        def held(items: Sequence[Any]) -> list[dict[str, str]]:
            return [
                {
                    "beneficiary_id": h.beneficiary_id,
                    "currency": h.currency,
                    "amount": format_amount(h.amount, h.currency),
                    "reason": h.reason,
                }
                for h in items
            ]

        return {
            "run_id": self.run_id,
            "period": self.period,
            "date": self.date.isoformat(),
            "proposed_by": self.proposed_by,
            "lines": [
                {
                    "beneficiary_id": line.beneficiary_id,
                    "currency": line.currency,
                    "amount": format_amount(line.amount, line.currency),
                    "iban": self.accounts.get(line.beneficiary_id),
                    "end_to_end_id": end_to_end_id(self.run_id, line.beneficiary_id, line.currency),
                }
                for line in self.proposal.lines
            ],
            "totals": [
                {"currency": c, "amount": format_amount(v, c), "transfers": self._count(c)}
                for c, v in self.proposal.totals().items()
            ],
            "carried_over": held(self.proposal.carried_over),
            "unpayable": held(self.proposal.unpayable),
        }

    def _count(self, currency: str) -> int:
        return sum(1 for line in self.proposal.lines if line.currency == currency)


def _current_books(ledger: Ledger) -> Books:
    head = ledger.index.head
    return build_books(ledger.index.by_position[: head.position], postings=False)


def _known_run_ids(ledger: Ledger) -> set[str]:
    return set(ledger.index.keys.get("payout_run", {}))


def next_run_id(ledger: Ledger, period: str) -> str:
    """The next free id ``PO<yyyymm>-<n>`` for a run of ``period``."""
    known = _known_run_ids(ledger)
    stem = "PO" + period.replace("-", "")
    for n in range(1, MAX_RUNS_PER_PERIOD + 1):
        if f"{stem}-{n}" not in known:
            return f"{stem}-{n}"
    raise PayoutRunError(f"{period} already has {MAX_RUNS_PER_PERIOD} runs")


def _outstanding_and_paid(statement: dict[str, Any]) -> tuple[dict[tuple[str, str], Decimal], ...]:
    outstanding: dict[tuple[str, str], Decimal] = {}
    paid: dict[tuple[str, str], Decimal] = {}
    for row in statement["balances"]:
        key = (row["beneficiary_id"], row["currency"])
        outstanding[key] = Decimal(row["closing"]["outstanding"])
        paid[key] = Decimal(row["closing"]["paid"])
    return outstanding, paid


def propose_run(
    ledger: Ledger,
    period: str,
    *,
    day: date,
    proposed_by: str,
    minimums: Mapping[str, Decimal],
    run_id: str | None = None,
) -> RunProposal:
    """The run to propose from closed month ``period`` on ``day`` (see the module)."""
    if period not in ledger.index.closes:
        closed = sorted(ledger.index.closes)
        raise PayoutRunError(
            f"{period} is not closed: a run is proposed from a closed month ({available_months(closed)})"
        )
    if run_id is not None and not is_run_id(run_id):
        raise PayoutRunError(
            f"{run_id[:40]!r}: a payout run id is 1-18 letters, digits, '.' or '-', starting with a "
            "letter or digit (it starts each transfer's end-to-end id, at most 35 characters)"
        )
    chosen = run_id or next_run_id(ledger, period)
    if chosen in _known_run_ids(ledger):
        raise PayoutRunError(f"payout run {chosen!r} already exists: choose another id")
    statement = closed_statement(ledger, period, save=False)
    outstanding, paid_at_close = _outstanding_and_paid(statement)
    books = _current_books(ledger)
    paid_since: dict[tuple[str, str], Decimal] = {}
    for balance in books.balances:
        key = (balance.beneficiary_id, balance.currency)
        paid_since[key] = balance.paid - paid_at_close.get(key, Decimal(0))
    for key, paid in paid_at_close.items():  # every payout counted at the close was voided since
        paid_since.setdefault(key, -paid)
    due = due_amounts(outstanding, paid_since, open_lines(books.payout_runs, books.payouts))
    head = ledger.index.head
    accounts = accounts_at(ledger.index.by_position[: head.position], day)
    proposal = propose(due, minimums, lambda who, currency: cannot_pay(accounts.get(who), currency))
    shown = {line.beneficiary_id for line in proposal.lines}
    masked = {who: accounts[who].masked for who in sorted(shown) if who in accounts}
    return RunProposal(chosen, period, day, proposed_by, proposal, masked)


# Reading a run ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunLineView:
    line: PayoutLine
    end_to_end_id: str
    account: BankAccount | None
    refused: str | None
    booked: PayoutRecorded | None


@dataclass(frozen=True, slots=True)
class RunView:
    run: PayoutRunProposed
    position: int
    approval: PayoutRunApproved | None
    voided: bool
    lines: tuple[RunLineView, ...]

    @property
    def status(self) -> str:
        if self.voided:
            return "voided"
        if self.approval is None:
            return "proposed"
        if all(line.booked is not None for line in self.lines):
            return "paid"
        return "approved"

    def payable(self) -> tuple[RunLineView, ...]:
        """The transfers of the payment file; :class:`PayoutRunError` when the run cannot be
        paid (not approved, voided, or a line without a usable account)."""
        name = self.run.run_id
        if self.voided:
            raise PayoutRunError(f"payout run {name!r} was voided: it is paid by no file")
        if self.approval is None:
            raise PayoutRunError(
                f"payout run {name!r} is not approved: a second person approves it first "
                f"(ledger payouts approve {name} --approved-by ...)"
            )
        refused = [line for line in self.lines if line.refused is not None]
        if refused:
            first = refused[0]
            raise PayoutRunError(
                f"payout run {name!r} cannot be paid: {first.line.beneficiary_id} in "
                f"{first.line.currency}: {first.refused}"
            )
        return self.lines

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run.run_id,
            "period": self.run.period,
            "date": self.run.date.isoformat(),
            "proposed_by": self.run.proposed_by,
            "approved_by": None if self.approval is None else self.approval.approved_by,
            "status": self.status,
            "lines": [
                {
                    "beneficiary_id": v.line.beneficiary_id,
                    "currency": v.line.currency,
                    "amount": format_amount(v.line.amount, v.line.currency),
                    "end_to_end_id": v.end_to_end_id,
                    "iban": None if v.account is None else v.account.masked,
                    "refused": v.refused,
                    "booked": None
                    if v.booked is None
                    else {"date": v.booked.date.isoformat(), "bank_reference": v.booked.bank_reference},
                }
                for v in self.lines
            ],
        }


def run_view(ledger: Ledger, run_id: str) -> RunView:
    """Run ``run_id`` as the log holds it now (see the module)."""
    found = ledger.index.at_key(("payout_run", run_id))
    if found is None:
        raise PayoutRunError(f"no payout run {run_id!r} was proposed")
    position, run = found
    assert isinstance(run, PayoutRunProposed), run
    books = _current_books(ledger)
    voided = any(isinstance(f, PayoutRunProposed) and f.run_id == run_id for f in books.voided)
    approval = next((a for a in books.run_approvals if a.run_id == run_id), None)
    booked = {p.end_to_end_id: p for p in books.payouts if p.end_to_end_id is not None}
    accounts = accounts_at(ledger.index.by_position[:position], run.date)
    lines = []
    for line in run.lines:
        e2e = end_to_end_id(run_id, line.beneficiary_id, line.currency)
        account = accounts.get(line.beneficiary_id)
        refused = cannot_pay(account, line.currency)
        lines.append(RunLineView(line, e2e, account, refused, booked.get(e2e)))
    return RunView(run, position, approval, voided, tuple(lines))


# Reconciliation --------------------------------------------------------------------


class BankNotice(Protocol):
    """One of our transfers as the bank reported it (a camt.053/054 transaction)."""

    @property
    def end_to_end_id(self) -> str | None: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def currency(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def booking_date(self) -> date | None: ...
    @property
    def bank_reference(self) -> str | None: ...
    @property
    def return_reason(self) -> str | None: ...


Outcome = Literal["recorded", "already_recorded", "returned", "rejected", "pending", "unmatched", "refused"]


@dataclass(frozen=True, slots=True)
class ReconciledLine:
    outcome: Outcome
    end_to_end_id: str | None
    currency: str
    amount: Decimal
    run_id: str | None = None
    beneficiary_id: str | None = None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "end_to_end_id": self.end_to_end_id,
            "run_id": self.run_id,
            "beneficiary_id": self.beneficiary_id,
            "currency": self.currency,
            "amount": format_amount(self.amount, self.currency)
            if self.currency in PAYABLE_CURRENCIES
            else str(self.amount),
            "message": self.message,
        }


@dataclass
class Reconciliation:
    """What a bank file gives: payouts to record, and every other line with its reason."""

    lines: list[ReconciledLine] = field(default_factory=list)
    payouts: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.lines:
            out[line.outcome] = out.get(line.outcome, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, Any]:
        return {"counts": self.counts(), "lines": [line.as_dict() for line in self.lines]}


def _run_lines(books: Books) -> dict[str, tuple[PayoutRunProposed, PayoutLine, bool]]:
    out: dict[str, tuple[PayoutRunProposed, PayoutLine, bool]] = {}
    voided_runs = [f for f in books.voided if isinstance(f, PayoutRunProposed)]
    for runs, voided in ((books.payout_runs, False), (voided_runs, True)):
        for run in runs:
            for line in run.lines:
                out[end_to_end_id(run.run_id, line.beneficiary_id, line.currency)] = (run, line, voided)
    return out


def reconcile(ledger: Ledger, notices: Sequence[BankNotice]) -> Reconciliation:
    """Match the bank's ``notices`` to runs' lines (see the module); the payouts to record
    are in ``payouts`` (the data of ``payout.recorded`` facts), one per booked transfer."""
    books = _current_books(ledger)
    recorded = {p.payout_id for p in books.payouts} | {
        f.payout_id for f in books.voided if isinstance(f, PayoutRecorded)
    }
    matcher = _Matcher(_run_lines(books), frozenset(recorded))
    for notice in notices:
        matcher.out.lines.append(matcher.one(notice))
    return matcher.out


@dataclass
class _Matcher:
    lines: Mapping[str, tuple[PayoutRunProposed, PayoutLine, bool]]
    recorded: frozenset[str]
    taken: set[str] = field(default_factory=set)
    out: Reconciliation = field(default_factory=Reconciliation)

    def one(self, notice: BankNotice) -> ReconciledLine:
        e2e = notice.end_to_end_id
        match = self.lines.get(e2e) if e2e is not None else None
        if e2e is None or match is None:
            why = "no end-to-end id" if e2e is None else "no run of this ledger has this end-to-end id"
            return ReconciledLine("unmatched", e2e, notice.currency, notice.amount, message=why)
        run, line, _ = match
        found = {"run_id": run.run_id, "beneficiary_id": line.beneficiary_id}
        if notice.status == "returned":
            hint = (
                "returned by the bank"
                + (f" ({notice.return_reason})" if notice.return_reason else "")
                + (
                    f": void payout {e2e} (two people), then correct the bank details"
                    if e2e in self.recorded
                    else ": nothing was recorded for it; correct the bank details and void the run"
                )
            )
            return ReconciledLine("returned", e2e, notice.currency, notice.amount, **found, message=hint)
        if notice.status in ("rejected", "pending"):
            rejected = notice.status == "rejected"
            message = "rejected by the bank: nothing recorded" if rejected else "not booked yet"
            outcome: Outcome = "rejected" if rejected else "pending"
            return ReconciledLine(outcome, e2e, notice.currency, notice.amount, **found, message=message)
        assert notice.status == "booked", notice.status
        return self._booked(notice, e2e, match)

    def _booked(
        self, notice: BankNotice, e2e: str, match: tuple[PayoutRunProposed, PayoutLine, bool]
    ) -> ReconciledLine:
        run, line, voided = match
        found = {"run_id": run.run_id, "beneficiary_id": line.beneficiary_id}
        if notice.currency != line.currency or notice.amount != line.amount:
            message = (
                f"the bank booked {notice.amount} {notice.currency}, the run proposed "
                f"{format_amount(line.amount, line.currency)} {line.currency}: not recorded"
            )
            return ReconciledLine("refused", e2e, notice.currency, notice.amount, **found, message=message)
        if e2e in self.recorded or e2e in self.taken:
            message = "recorded before" if e2e in self.recorded else "twice in this file: recorded once"
            return ReconciledLine(
                "already_recorded", e2e, notice.currency, notice.amount, **found, message=message
            )
        if notice.booking_date is None:
            message = "booked without a booking date: not recorded"
            return ReconciledLine("refused", e2e, notice.currency, notice.amount, **found, message=message)
        self.taken.add(e2e)
        self.out.payouts.append(
            {
                "payout_id": e2e,
                "adviser_id": COOPERATIVE,
                "beneficiary_id": line.beneficiary_id,
                "date": notice.booking_date.isoformat(),
                "currency": line.currency,
                "amount": format_amount(line.amount, line.currency),
                "run_id": run.run_id,
                "end_to_end_id": e2e,
                **({"bank_reference": notice.bank_reference} if notice.bank_reference else {}),
            }
        )
        message = "booked" + (" (its run was voided since: check the next run)" if voided else "")
        return ReconciledLine("recorded", e2e, notice.currency, notice.amount, **found, message=message)
