"""Payout runs from the command line on a real SQLite store: propose from a closed month,
approve by a second person, write the pain.001 file, reconcile the bank's camt.054 built
from it, and find the introducers paid: payouts equal to the proposal, nothing outstanding;
partial, returned, rejected and unknown bank lines; re-imports that record nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ledger.adapters.iso20022 import Account, BankEntry, camt054, parse_camt, validate_pain001
from tests.conftest import envelope
from tests.ledger.unit.test_periods import close, introduction, invoice, payment
from tests.support.servers import run_cli

IBAN_A = "CH9300762011623852957"
IBAN_E = "FR1420041010050500013M02606"
IBAN_S = "CH5604835012345678009"
DEBTOR_CHF = "CH3500762000123456789"
DEBTOR_EUR = "DE89370400440532013000"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}


def registered(who: str, iban: str | None = None) -> str:
    data: dict[str, Any] = {"introducer_id": who, "display_name": f"Zoé {who}"}
    if iban is not None:
        data["iban"] = iban
    return envelope("introducer.registered", data)


def bank_details(who: str, iban: str, day: str) -> str:
    data = {"introducer_id": who, "iban": iban, "effective_date": day, "account_holder": "Éric Lévêque"}
    return envelope("introducer.bank_details", data, id=f"bank-{who}-{day}")


def payout(number: str, who: str, day: str, amount: str, currency: str = "CHF") -> str:
    data = {
        "payout_id": number,
        "adviser_id": "adv-a",
        "beneficiary_id": who,
        "date": day,
        "currency": currency,
        "amount": amount,
    }
    return envelope("payout.recorded", data)


def client_of(who: str, number: str, net: str, currency: str = "CHF") -> list[str]:
    """An introduction of client cli-<who> by ``who``, a January invoice, fully paid."""
    client = f"cli-{who}"
    return [
        introduction(f"intro-{who}", who, client),
        invoice(number, "2025-01-10", net, currency, client=client),
        payment(f"pay-{number}", number, "2025-01-15", net),
    ]


HISTORY = [
    registered("int-a", IBAN_A),
    registered("int-e"),
    bank_details("int-e", IBAN_E, "2025-01-01"),
    registered("int-s", IBAN_S),
    registered("int-n"),
    *client_of("int-a", "INV-A", "1000.00"),  # 100.00 CHF
    *client_of("int-e", "INV-E", "2000.00", "EUR"),  # 200.00 EUR
    *client_of("int-s", "INV-S", "100.00"),  # 10.00 CHF: below the minimum
    *client_of("int-n", "INV-N", "500.00"),  # 50.00 CHF: no IBAN
    payout("PO-HAND-1", "int-a", "2025-01-20", "30.00"),
    close("2025-01", "2025-02-01"),
    payout("PO-HAND-2", "int-a", "2025-02-02", "10.00"),  # paid after the close
]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {
        "LEDGER_STORE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LEDGER_PAYOUT_DEBTOR_NAME": "Coopérative des conseillers",
        "LEDGER_PAYOUT_DEBTOR_CHF_IBAN": DEBTOR_CHF,
        "LEDGER_PAYOUT_DEBTOR_CHF_BIC": "UBSWCHZH80A",
        "LEDGER_PAYOUT_DEBTOR_EUR_IBAN": DEBTOR_EUR,
        "LEDGER_PAYOUT_DEBTOR_EUR_BIC": "COBADEFFXXX",
        "LEDGER_LOG_FORMAT": "json",
    }
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(HISTORY) + "\n")
    run_cli("ingest", str(history), env=values)
    return values


def cli(env: dict[str, str], *args: str, check: bool = True) -> Any:
    proc = run_cli(*args, env=env, check=False)
    assert (proc.returncode == 0) == check, proc.stderr.decode()[-2000:]
    for iban in (IBAN_A, IBAN_E, IBAN_S):  # never shown nor logged in full
        assert iban.encode() not in proc.stdout + proc.stderr
    return json.loads(proc.stdout) if check and proc.stdout.strip() else proc


def balances(env: dict[str, str]) -> dict[tuple[str, str], dict[str, str]]:
    report = cli(env, "report", "--format", "json")
    return {(b["beneficiary_id"], b["currency"]): b for b in report["balances"]}


def booked(xml: bytes, reference: str = "REF") -> list[BankEntry]:
    """What the bank books for every transfer of a pain.001 file."""
    root = etree.fromstring(xml)
    return [
        BankEntry(
            end_to_end_id=tx.findtext("p:PmtId/p:EndToEndId", namespaces=NS),
            amount=Decimal(tx.findtext("p:Amt/p:InstdAmt", namespaces=NS)),
            currency=tx.find("p:Amt/p:InstdAmt", namespaces=NS).get("Ccy"),
            status="booked",
            booking_date=date(2025, 2, 5),
            bank_reference=f"{reference}-{n}",
            creditor_iban=tx.findtext("p:CdtrAcct/p:Id/p:IBAN", namespaces=NS),
            return_reason=None,
        )
        for n, tx in enumerate(root.iterfind(".//p:CdtTrfTxInf", namespaces=NS), start=1)
    ]


def notification(path: Path, entries: list[BankEntry]) -> Path:
    account = Account("Cooperative des conseillers", DEBTOR_CHF, "UBSWCHZH80A")
    created = datetime(2025, 2, 5, 18, 0, tzinfo=UTC)
    path.write_bytes(camt054(message_id=path.stem, created_at=created, account=account, entries=entries))
    return path


def propose(env: dict[str, str], *extra: str) -> dict[str, Any]:
    args = ("payouts", "propose", "--period", "2025-01", "--proposed-by", "tre-ana", "--date", "2025-02-03")
    return dict(cli(env, *args, "--ingest", "--format", "json", *extra))


def test_a_run_goes_round_trip_to_zero_outstanding(env: dict[str, str], tmp_path: Path) -> None:
    """Proposal = outstanding at the close less payouts since; the proposer cannot approve;
    the file validates, is the same bytes twice and its control sums are the proposal's; the
    bank's camt.054 of it records payouts equal to the proposal, once however often it is
    imported, and nothing is outstanding any more; the statement shows run and reference."""
    run = propose(env)
    assert run["run_id"] == "PO202501-1" and run["status"] == "accepted"
    assert [(x["beneficiary_id"], x["currency"], x["amount"]) for x in run["lines"]] == [
        ("int-a", "CHF", "60.00"),  # 100 payable - 30 paid at the close - 10 paid since
        ("int-e", "EUR", "200.00"),
    ]
    assert [x["iban"] for x in run["lines"]] == ["*" * 17 + IBAN_A[-4:], "*" * 23 + IBAN_E[-4:]]
    assert [(h["beneficiary_id"], h["amount"]) for h in run["carried_over"]] == [("int-s", "10.00")]
    assert [(h["beneficiary_id"], h["amount"]) for h in run["unpayable"]] == [("int-n", "50.00")]
    assert "no bank account" in run["unpayable"][0]["reason"]
    assert propose(env)["status"] == "nothing to pay"  # the open run holds what is due

    out = tmp_path / "run.xml"
    refused = cli(env, "payouts", "file", "PO202501-1", "--out", str(out), check=False)
    assert b"not approved" in refused.stderr and not out.exists()
    four_eyes = cli(
        env, "payouts", "approve", "PO202501-1", "--approved-by", "tre-ana", "--ingest", check=False
    )
    assert b"another person must approve" in four_eyes.stderr
    cli(
        env,
        "payouts",
        "approve",
        "PO202501-1",
        "--approved-by",
        "tre-luc",
        "--date",
        "2025-02-04",
        "--ingest",
    )

    written = cli(env, "payouts", "file", "PO202501-1", "--out", str(out))
    first = out.read_bytes()
    cli(env, "payouts", "file", "PO202501-1", "--out", str(out))
    assert out.read_bytes() == first
    validate_pain001(first)
    root = etree.fromstring(first)
    blocks = {
        b.findtext("p:PmtTpInf/p:SvcLvl/p:Cd", namespaces=NS) or "CHF": b.findtext("p:CtrlSum", namespaces=NS)
        for b in root.iterfind("p:CstmrCdtTrfInitn/p:PmtInf", namespaces=NS)
    }
    assert blocks == {"CHF": "60.00", "SEPA": "200.00"}
    assert [(b["currency"], b["control_sum"]) for b in written["blocks"]] == [
        ("CHF", "60.00"),
        ("EUR", "200.00"),
    ]
    assert root.findtext("p:CstmrCdtTrfInitn/p:GrpHdr/p:CtrlSum", namespaces=NS) == "260.00"
    assert b"Eric Leveque" in first  # the account holder, in the SEPA character set

    bank = notification(tmp_path / "camt-1.xml", booked(first))
    summary = cli(env, "payouts", "reconcile", str(bank), "--ingest", "--format", "json")
    assert summary["counts"] == {"recorded": 2}
    after = balances(env)
    assert after[("int-a", "CHF")]["outstanding"] == "0.00"
    assert after[("int-e", "EUR")]["outstanding"] == "0.00"
    again = cli(env, "payouts", "reconcile", str(bank), "--ingest", "--format", "json")
    assert again["counts"] == {"already_recorded": 2} and "recorded" not in again
    assert balances(env) == after
    shown = cli(env, "payouts", "show", "PO202501-1", "--format", "json")
    assert shown["status"] == "paid"
    assert [x["booked"]["bank_reference"] for x in shown["lines"]] == ["REF-1", "REF-2"]
    month = ("statement", "--period", "2025-02", "--introducer", "int-a")
    view = cli(env, *month, "--format", "json")
    assert [(p["payout_id"], p["run_id"], p["bank_reference"]) for p in view["payouts"]] == [
        ("PO-HAND-2", None, None),
        (shown["lines"][0]["end_to_end_id"], "PO202501-1", "REF-1"),
    ]
    assert view["account"] == "*" * 17 + IBAN_A[-4:]
    page = run_cli(*month, "--language", "en", env=env)
    html = page.stdout.decode()
    assert "run PO202501-1 · bank ref. REF-1" in html and IBAN_A[-4:] in html and IBAN_A not in html


def test_partial_returned_unknown_and_different_bank_lines(env: dict[str, str], tmp_path: Path) -> None:
    """Only the transfer booked with the proposed amount is recorded; a returned one, a
    pending one, one for another amount and one nobody proposed are listed
    with their reason; voiding the run (two people) frees what it did not pay."""
    propose(env)
    cli(
        env,
        "payouts",
        "approve",
        "PO202501-1",
        "--approved-by",
        "tre-luc",
        "--date",
        "2025-02-04",
        "--ingest",
    )
    out = tmp_path / "run.xml"
    cli(env, "payouts", "file", "PO202501-1", "--out", str(out))
    chf, eur = booked(out.read_bytes())
    entries = [
        chf,
        BankEntry(eur.end_to_end_id, eur.amount, "EUR", "returned", date(2025, 2, 6), "RET-1", None, "AC04"),
        BankEntry(eur.end_to_end_id, Decimal("199.00"), "EUR", "booked", date(2025, 2, 6), "X-1", None, None),
        BankEntry(eur.end_to_end_id, eur.amount, "EUR", "pending", None, None, None, None),
        BankEntry(
            "PO202412-9-0123456789abcdef", Decimal("5.00"), "CHF", "booked", date(2025, 2, 6), "Z", None, None
        ),
        BankEntry(None, Decimal("2.50"), "CHF", "booked", date(2025, 2, 6), "FEE", None, None),
    ]
    bank = notification(tmp_path / "camt-2.xml", entries)
    assert len(parse_camt(bank.read_bytes())) == len(entries)
    summary = cli(env, "payouts", "reconcile", str(bank), "--ingest", "--format", "json")
    assert summary["counts"] == {
        "pending": 1,
        "recorded": 1,
        "refused": 1,
        "returned": 1,
        "unmatched": 2,
    }
    by_outcome = {line["outcome"]: line for line in summary["lines"]}
    assert "AC04" in by_outcome["returned"]["message"]
    assert (
        "199.00 EUR" in by_outcome["refused"]["message"] and "200.00 EUR" in by_outcome["refused"]["message"]
    )
    after = balances(env)
    assert after[("int-a", "CHF")]["outstanding"] == "0.00"
    assert after[("int-e", "EUR")]["outstanding"] == "200.00"
    assert propose(env)["status"] == "nothing to pay"  # int-e's line is still open
    cli(
        env,
        "void",
        "--type",
        "payout_run",
        "--id",
        "PO202501-1",
        "--reason",
        "transfer returned: wrong account",
        "--requested-by",
        "tre-ana",
        "--approved-by",
        "tre-luc",
        "--ingest",
    )
    again = propose(env)
    assert again["run_id"] == "PO202501-2"
    assert [(x["beneficiary_id"], x["amount"]) for x in again["lines"]] == [("int-e", "200.00")]


def test_refusals_are_clear_and_record_nothing(env: dict[str, str], tmp_path: Path) -> None:
    """An open month, an unknown run, a bank file that is not one, a run id too long for
    the end-to-end ids: each a clear error, the store unchanged."""
    before = cli(env, "report", "--format", "json")["head"]
    open_month = cli(
        env, "payouts", "propose", "--period", "2025-02", "--proposed-by", "a", "--ingest", check=False
    )
    assert b"2025-02 is not closed" in open_month.stderr
    unknown = cli(env, "payouts", "approve", "PO-NOPE", "--approved-by", "b", "--ingest", check=False)
    assert b"no payout run 'PO-NOPE'" in unknown.stderr
    junk = tmp_path / "junk.xml"
    junk.write_bytes(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>")
    bad_file = cli(env, "payouts", "reconcile", str(junk), "--ingest", check=False)
    assert bad_file.returncode == 2 and b"is not a bank notification" in bad_file.stderr
    long_id = cli(
        env,
        "payouts",
        "propose",
        "--period",
        "2025-01",
        "--proposed-by",
        "a",
        "--run-id",
        "R" * 19,
        "--ingest",
        check=False,
    )
    assert b"payout run id is 1-18" in long_id.stderr
    assert cli(env, "report", "--format", "json")["head"] == before
