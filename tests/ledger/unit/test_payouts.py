"""Payout runs: the proposal's arithmetic and its refusals (domain), proposals from any
history equal to the closed month's outstanding figures, four eyes, bank details, and the
reconciliation of each kind of bank line (application)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ledger.application.contract import Rejection, parse_envelope
from ledger.application.payouts import (
    BankAccount,
    PayoutRunError,
    accounts_at,
    cannot_pay,
    mask_iban,
    propose_run,
    reconcile,
    run_view,
)
from ledger.application.periods import closed_statement
from ledger.bootstrap import build_ephemeral_ledger
from ledger.domain.facts import COOPERATIVE, BankDetailsChanged, IntroducerRegistered, PayoutRunProposed
from ledger.domain.payouts import due_amounts, end_to_end_id, open_lines, propose
from tests.conftest import envelope
from tests.ledger.unit.test_periods import close

D = Decimal
IBAN_CH = "CH9300762011623852957"
IBAN_FR = "FR1420041010050500013M02606"
QR_IBAN = "CH4431999123000889012"


def never(_who: str, _currency: str) -> str | None:
    return None


@pytest.mark.parametrize(
    ("due", "minimums", "lines", "carried", "unpayable"),
    [
        ({("a", "CHF"): D("20.00")}, {}, [("a", "CHF", "20.00")], [], []),
        ({("a", "CHF"): D("19.99")}, {}, [], [("a", "CHF", "19.99")], []),
        ({("a", "CHF"): D("5.00")}, {"CHF": D("0")}, [("a", "CHF", "5.00")], [], []),
        ({("a", "EUR"): D("50.00")}, {"EUR": D("100")}, [], [("a", "EUR", "50.00")], []),
        ({("a", "JPY"): D("5000")}, {}, [], [], [("a", "JPY", "5000")]),
        (
            {("b", "CHF"): D("30"), ("a", "CHF"): D("40"), ("a", "EUR"): D("1")},
            {},
            [("a", "CHF", "40"), ("b", "CHF", "30")],
            [("a", "EUR", "1")],
            [],
        ),
    ],
)
def test_a_proposal_pays_what_reaches_the_minimum_and_can_be_paid(
    due: dict[tuple[str, str], Decimal],
    minimums: dict[str, Decimal],
    lines: list[tuple[str, str, str]],
    carried: list[tuple[str, str, str]],
    unpayable: list[tuple[str, str, str]],
) -> None:
    """Amounts at or above the currency's minimum are paid, lower ones carried over, and
    what cannot be transferred (here: not CHF or EUR) listed apart, in a stable order."""

    def currency_only(_who: str, currency: str) -> str | None:
        return None if currency in {"CHF", "EUR"} else "not CHF or EUR"

    proposal = propose(due, minimums, currency_only)
    assert [(x.beneficiary_id, x.currency, x.amount) for x in proposal.lines] == [
        (b, c, D(a)) for b, c, a in lines
    ]
    assert [(x.beneficiary_id, x.currency, x.amount) for x in proposal.carried_over] == [
        (b, c, D(a)) for b, c, a in carried
    ]
    assert [(x.beneficiary_id, x.currency, x.amount) for x in proposal.unpayable] == [
        (b, c, D(a)) for b, c, a in unpayable
    ]


def test_due_leaves_out_the_cooperative_advances_and_what_is_paid_or_proposed() -> None:
    """Due = outstanding at the close - paid since - open run lines, above zero only; the
    cooperative's donations are never paid out."""
    due = due_amounts(
        {("a", "CHF"): D("100"), ("b", "CHF"): D("50"), (COOPERATIVE, "CHF"): D("70"), ("c", "CHF"): D("-5")},
        {("a", "CHF"): D("30"), ("b", "CHF"): D("-10")},  # b: a payout counted at the close was voided
        {("a", "CHF"): D("70")},
    )
    assert due == {("b", "CHF"): D("60")}


@given(
    run=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,17}", fullmatch=True),
    who=st.lists(st.text(min_size=1, max_size=128), min_size=2, max_size=2, unique=True),
)
def test_end_to_end_ids_fit_iso_20022_and_differ_per_line(run: str, who: list[str]) -> None:
    """An end-to-end id is at most 35 identifier characters, starts with its run, is the
    same each time and differs per beneficiary and per currency."""
    first = end_to_end_id(run, who[0], "CHF")
    assert len(first) <= 35 and first.startswith(f"{run}-")
    assert all(ch.isascii() and (ch.isalnum() or ch in ".-") for ch in first)
    assert first == end_to_end_id(run, who[0], "CHF")
    assert first not in {end_to_end_id(run, who[1], "CHF"), end_to_end_id(run, who[0], "EUR")}


def test_an_iban_is_masked_but_its_last_four_characters() -> None:
    """Masking keeps the length and only the last four characters."""
    assert mask_iban(IBAN_CH) == "*" * 17 + "2957"


@pytest.mark.parametrize(
    ("iban", "currency", "refusal"),
    [
        (IBAN_CH, "CHF", None),
        (IBAN_CH, "EUR", None),  # Switzerland is in the SEPA zone
        (IBAN_FR, "EUR", None),
        (IBAN_FR, "CHF", "needs a CH or LI IBAN"),
        (QR_IBAN, "CHF", "QR-IBAN"),
        (None, "CHF", "no bank account"),
        (IBAN_CH, "USD", "CHF and EUR only"),
    ],
)
def test_who_cannot_be_paid_says_why(iban: str | None, currency: str, refusal: str | None) -> None:
    """A transfer needs an account that can receive its currency by a Swiss or SEPA payment."""
    account = None if iban is None else BankAccount(iban, None, "Holder")
    found = cannot_pay(account, currency)
    assert (found is None) if refusal is None else (refusal in (found or ""))


def test_the_account_paid_is_the_latest_effective_on_the_run_date() -> None:
    """The registration's IBAN until bank details take effect; details effective later are
    not used yet; the holder defaults to the display name."""
    facts = [
        IntroducerRegistered("int-a", "Anne", iban=IBAN_CH),
        BankDetailsChanged("int-a", IBAN_FR, date(2025, 3, 1), account_holder="Anne Martin"),
        BankDetailsChanged("int-a", "DE89370400440532013000", date(2025, 6, 1)),
    ]
    assert accounts_at(facts, date(2025, 2, 28))["int-a"] == BankAccount(IBAN_CH, None, "Anne")
    assert accounts_at(facts, date(2025, 3, 1))["int-a"] == BankAccount(IBAN_FR, None, "Anne Martin")
    assert accounts_at(facts, date(2025, 6, 1))["int-a"].iban == "DE89370400440532013000"


@pytest.mark.parametrize(
    ("iban", "accepted"),
    [
        (IBAN_CH, True),
        ("CH9300762011623852958", False),  # checksum
        ("XX9300762011623852957", False),  # country
        ("CH93 0076 2011 6238 5295 7", False),  # not the electronic form
        ("ch9300762011623852957", False),
        ("CH93007620116238529", False),  # length
    ],
)
def test_bank_details_with_a_wrong_iban_are_refused(iban: str, accepted: bool) -> None:
    """An IBAN is checked by schwifty (checksum, country, length); a wrong one is refused
    with reason invalid_iban."""
    raw = envelope(
        "introducer.bank_details", {"introducer_id": "int-a", "iban": iban, "effective_date": "2025-01-01"}
    )
    if accepted:
        assert parse_envelope(raw).fact.key == ("bank_details", "int-a@2025-01-01")
        return
    with pytest.raises(Rejection) as refused:
        parse_envelope(raw)
    assert refused.value.reason in {"invalid_iban", "invalid_data"}
    assert iban not in refused.value.message


def run_doc(run: str, by: str, lines: list[tuple[str, str, str]]) -> str:
    data = {
        "run_id": run,
        "period": "2025-01",
        "date": "2025-02-03",
        "proposed_by": by,
        "lines": [{"beneficiary_id": b, "currency": c, "amount": a} for b, c, a in lines],
    }
    return envelope("payout_run.proposed", data, id=f"run-{run}")


def approval(run: str, by: str) -> str:
    return envelope(
        "payout_run.approved", {"run_id": run, "date": "2025-02-04", "approved_by": by}, id=f"ok-{run}-{by}"
    )


def test_a_run_is_approved_by_another_person_once_it_exists() -> None:
    """Approving an unknown run or one's own run is rejected (unknown_run,
    approval_required); another person's approval is accepted, in the same batch too."""
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(
        [
            approval("R-0", "luc"),
            run_doc("R-1", "ana", [("int-a", "CHF", "25.00")]),
            approval("R-1", "ana"),
            approval("R-1", "luc"),
        ]
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("rejected", "unknown_run"),
        ("accepted", None),
        ("rejected", "approval_required"),
        ("accepted", None),
    ]
    assert run_view(ledger, "R-1").status == "approved"
    with pytest.raises(PayoutRunError, match="no payout run 'R-9'"):
        run_view(ledger, "R-9")


@pytest.mark.parametrize(
    "lines",
    [
        [("int-a", "CHF", "0.00")],
        [("int-a", "CHF", "1.001")],
        [("int-a", "CHF", "5.00"), ("int-a", "CHF", "6.00")],
        [],
    ],
)
def test_a_run_with_bad_lines_is_refused(lines: list[tuple[str, str, str]]) -> None:
    """A run pays above zero in the currency's minor unit, each beneficiary once per
    currency, at least one line."""
    with pytest.raises(Rejection):
        parse_envelope(run_doc("R-1", "ana", lines))


def _outstanding(statement: dict[str, Any], *, positive: bool = True) -> dict[tuple[str, str], Decimal]:
    return {
        (r["beneficiary_id"], r["currency"]): Decimal(r["closing"]["outstanding"])
        for r in statement["balances"]
        if r["beneficiary_id"] != COOPERATIVE and (not positive or Decimal(r["closing"]["outstanding"]) > 0)
    }


INTRODUCERS = ("int-x", "int-y", "int-z")  # int-z has no IBAN


@st.composite
def paid_months(draw: st.DrawFn) -> tuple[list[str], dict[tuple[str, str], Decimal]]:
    """January 2025's invoices (CHF, EUR, JPY) of three introducers' clients, paid in part
    or in full, payouts before and after January's close (some voided since), and the
    close; with what was paid after the close per introducer and currency."""
    raw = [
        envelope("introducer.registered", {"introducer_id": "int-x", "display_name": "X", "iban": IBAN_CH}),
        envelope("introducer.registered", {"introducer_id": "int-y", "display_name": "Y"}),
        envelope(
            "introducer.bank_details",
            {"introducer_id": "int-y", "iban": IBAN_FR, "effective_date": "2024-01-01"},
        ),
        envelope("introducer.registered", {"introducer_id": "int-z", "display_name": "Z"}),
    ]
    for who in INTRODUCERS:
        raw.append(
            envelope(
                "introduction.recorded",
                {
                    "introduction_id": f"intro-{who}",
                    "introducer_id": who,
                    "client_id": f"cli-{who}",
                    "adviser_id": "adv-a",
                    "date": "2025-01-01",
                },
            )
        )
    for n in range(draw(st.integers(1, 8))):
        who = draw(st.sampled_from(INTRODUCERS))
        currency = draw(st.sampled_from(["CHF", "EUR", "JPY"]))
        net = draw(st.integers(1, 500_000))
        amount = str(net) if currency == "JPY" else f"{net / 100:.2f}"
        raw.append(
            envelope(
                "invoice.issued",
                {
                    "invoice_id": f"INV-{n}",
                    "adviser_id": "adv-a",
                    "client_id": f"cli-{who}",
                    "issue_date": f"2025-01-{draw(st.integers(1, 28)):02d}",
                    "currency": currency,
                    "net_amount": amount,
                },
            )
        )
        if draw(st.booleans()):
            paid = amount if draw(st.booleans()) else str(Decimal(amount) / 2).split(".")[0]
            data = {"payment_id": f"PAY-{n}", "invoice_id": f"INV-{n}", "date": "2025-01-29", "amount": paid}
            if Decimal(paid) > 0:
                raw.append(envelope("payment.received", data))
    since: dict[tuple[str, str], Decimal] = {}
    payouts: list[tuple[str, str, str, Decimal]] = []
    after_close: list[str] = []
    for n in range(draw(st.integers(0, 4))):
        who = draw(st.sampled_from(INTRODUCERS))
        currency = draw(st.sampled_from(["CHF", "EUR"]))
        amount = Decimal(draw(st.integers(1, 5_000))) / 100
        after = draw(st.booleans())
        payouts.append((f"PO-{n}", who, currency, amount))
        data = {
            "payout_id": f"PO-{n}",
            "adviser_id": "adv-a",
            "beneficiary_id": who,
            "date": "2025-02-10" if after else "2025-01-30",
            "currency": currency,
            "amount": str(amount),
        }
        (after_close if after else raw).append(envelope("payout.recorded", data))
        if after:
            since[(who, currency)] = since.get((who, currency), Decimal(0)) + amount
    raw.append(close("2025-01", "2025-02-01"))
    raw.extend(after_close)
    voided = draw(st.sampled_from([None, *[p[0] for p in payouts]])) if payouts else None
    if voided is not None:
        _, who, currency, amount = next(p for p in payouts if p[0] == voided)
        raw.append(
            envelope(
                "fact.voided",
                {
                    "void_id": f"v-{voided}",
                    "target_type": "payout",
                    "target_id": voided,
                    "date": "2025-02-11",
                    "reason": "typed twice",
                    "requested_by": "ana",
                    "approved_by": "luc",
                },
            )
        )
        since[(who, currency)] = since.get((who, currency), Decimal(0)) - amount
    return raw, since


@settings(max_examples=150, deadline=None)
@given(history=paid_months(), minimum=st.sampled_from(["0", "20.00", "500"]))
def test_proposals_from_any_history_are_the_closed_months_outstanding(
    history: tuple[list[str], dict[tuple[str, str], Decimal]], minimum: str
) -> None:
    """For any month, the proposal (lines + carried over + not payable) is the closed
    statement's outstanding less what was paid since (a voided payout counts back), per
    introducer and currency where above zero; only payable accounts get lines; once the
    run is recorded, the next proposal has no line."""
    raw, since = history
    ledger = build_ephemeral_ledger()
    assert all(o.status == "accepted" for o in ledger.ingest(raw))
    minimums = {"CHF": D(minimum), "EUR": D(minimum)}
    run = propose_run(ledger, "2025-01", day=date(2025, 2, 12), proposed_by="ana", minimums=minimums)
    proposal = run.proposal
    found = {(x.beneficiary_id, x.currency): x.amount for x in proposal.lines}
    for held in (*proposal.carried_over, *proposal.unpayable):
        assert (held.beneficiary_id, held.currency) not in found
        found[(held.beneficiary_id, held.currency)] = held.amount
    expected = {
        key: value - since.get(key, D(0))
        for key, value in _outstanding(
            closed_statement(ledger, "2025-01", save=False), positive=False
        ).items()
    }
    assert found == {key: value for key, value in expected.items() if value > 0}
    assert all(
        x.beneficiary_id in {"int-x", "int-y"} and x.currency in {"CHF", "EUR"} for x in proposal.lines
    )
    assert all(x.beneficiary_id != "int-y" or x.currency == "EUR" for x in proposal.lines)  # a French IBAN
    assert all(x.amount >= D(minimum) for x in proposal.lines)
    if not proposal.lines:
        return
    event("a run was proposed")
    [outcome] = ledger.ingest([envelope("payout_run.proposed", run.fact_data())])
    assert outcome.status == "accepted", outcome
    again = propose_run(ledger, "2025-01", day=date(2025, 2, 12), proposed_by="ana", minimums=minimums)
    assert again.run_id != run.run_id and not again.proposal.lines
    runs = [f for f in ledger.index.by_position if isinstance(f, PayoutRunProposed)]
    assert open_lines(runs, []) == {(x.beneficiary_id, x.currency): x.amount for x in proposal.lines}


@dataclass(frozen=True)
class Notice:
    end_to_end_id: str | None
    amount: Decimal
    currency: str
    status: str
    booking_date: date | None = date(2025, 2, 5)
    bank_reference: str | None = "REF"
    return_reason: str | None = None


def test_each_kind_of_bank_line_is_matched_or_listed_never_guessed() -> None:
    """Booked with the proposed amount: a payout (id = end-to-end id, paid by the
    cooperative); the same line twice in one file: once; returned, rejected, pending,
    another amount, another currency, an unknown or missing id, no booking date: listed."""
    ledger = build_ephemeral_ledger()
    ledger.ingest([run_doc("R-1", "ana", [("int-a", "CHF", "25.00"), ("int-b", "EUR", "40.00")])])
    a = end_to_end_id("R-1", "int-a", "CHF")
    b = end_to_end_id("R-1", "int-b", "EUR")
    result = reconcile(
        ledger,
        [
            Notice(a, D("25.00"), "CHF", "booked"),
            Notice(a, D("25.00"), "CHF", "booked"),
            Notice(b, D("40.00"), "EUR", "returned", return_reason="AC04"),
            Notice(b, D("40.00"), "EUR", "rejected"),
            Notice(b, D("40.00"), "EUR", "pending", booking_date=None),
            Notice(b, D("39.99"), "EUR", "booked"),
            Notice(b, D("40.00"), "CHF", "booked"),
            Notice(b, D("40.00"), "EUR", "booked", booking_date=None),
            Notice("R-0-0000000000000000", D("1.00"), "CHF", "booked"),
            Notice(None, D("3.00"), "CHF", "booked"),
        ],
    )
    assert [line.outcome for line in result.lines] == [
        "recorded",
        "already_recorded",
        "returned",
        "rejected",
        "pending",
        "refused",
        "refused",
        "refused",
        "unmatched",
        "unmatched",
    ]
    assert result.payouts == [
        {
            "payout_id": a,
            "adviser_id": COOPERATIVE,
            "beneficiary_id": "int-a",
            "date": "2025-02-05",
            "currency": "CHF",
            "amount": "25.00",
            "run_id": "R-1",
            "end_to_end_id": a,
            "bank_reference": "REF",
        }
    ]
    outcomes = ledger.ingest(
        [envelope("payout.recorded", p, id=f"payout:{p['payout_id']}") for p in result.payouts]
    )
    assert [o.status for o in outcomes] == ["accepted"]
    again = reconcile(ledger, [Notice(a, D("25.00"), "CHF", "booked")])
    assert [line.outcome for line in again.lines] == ["already_recorded"] and not again.payouts
    assert run_view(ledger, "R-1").lines[0].booked is not None


def test_propose_refuses_an_open_month_and_a_taken_run_id() -> None:
    """A run comes from a closed month; its id is new."""
    ledger = build_ephemeral_ledger()
    ledger.ingest([run_doc("PO202501-1", "ana", [("int-a", "CHF", "25.00")])])
    with pytest.raises(PayoutRunError, match="2025-01 is not closed"):
        propose_run(ledger, "2025-01", day=date(2025, 2, 3), proposed_by="ana", minimums={})
    ledger.ingest([close("2025-01", "2025-02-01")])
    with pytest.raises(PayoutRunError, match="'PO202501-1' already exists"):
        propose_run(
            ledger, "2025-01", day=date(2025, 2, 3), proposed_by="ana", minimums={}, run_id="PO202501-1"
        )
    assert propose_run(ledger, "2025-01", day=date(2025, 2, 3), proposed_by="ana", minimums={}).run_id == (
        "PO202501-2"
    )
