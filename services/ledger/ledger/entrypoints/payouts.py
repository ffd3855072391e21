"""``ledger payouts``: pay introducers from the books, by two people, through the bank.

``propose`` (one person) records a run from a closed month; ``approve`` (another person)
approves it; ``file`` writes its ISO 20022 ``pain.001`` credit-transfer file for the bank;
``reconcile`` reads the bank's ``camt.054``/``camt.053`` and records a payout for each
transfer the bank booked; ``show`` prints a run and where each transfer stands. Facts are
published to the running service (or appended to the store with ``--ingest``), checked
against the contract first; IBANs are shown masked and never logged.
"""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ledger.adapters.iso20022 import (
    Account,
    Iso20022Error,
    PaymentBlock,
    Transfer,
    XmlInputError,
    pain001,
    parse_camt,
    payment_text,
)
from ledger.application.payouts import (
    PayoutRunError,
    RunLineView,
    RunView,
    propose_run,
    reconcile,
    run_view,
)
from ledger.entrypoints.common import Format, emit, err, open_ledger, parse_day, settings_or_exit
from ledger.entrypoints.record import record_fact, record_facts
from ledger.settings import Settings

__all__ = ["payouts_app"]

payouts_app = typer.Typer(
    name="payouts",
    help="Payout runs: propose, approve (a second person), pay by ISO 20022 file, reconcile.",
    no_args_is_help=True,
)

#: The largest bank file read (the parser refuses more anyway).
MAX_BANK_FILE_BYTES = 32 << 20

Ingest = Annotated[
    bool, typer.Option("--ingest", help="Append to the configured store instead of publishing over NATS.")
]
Fmt = Annotated[Format | None, typer.Option("--format", help="table or json (default: json off a terminal).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(code)


def _proposal_tables(summary: dict[str, Any], console: Console) -> None:
    title = f"Payout run {summary['run_id']} from {summary['period']} (proposed by {summary['proposed_by']})"
    table = Table(title=title)
    for column in ("beneficiary", "currency", "amount", "IBAN", "end-to-end id"):
        table.add_column(column, justify="right" if column == "amount" else "left")
    for line in summary["lines"]:
        table.add_row(
            line["beneficiary_id"],
            line["currency"],
            line["amount"],
            line["iban"] or "",
            line["end_to_end_id"],
        )
    console.print(table)
    for total in summary["totals"]:
        console.print(f"total {total['currency']}: {total['amount']} in {total['transfers']} transfer(s)")
    for key, label in (("carried_over", "carried over"), ("unpayable", "not payable")):
        if summary[key]:
            held = Table(title=label)
            for column in ("beneficiary", "currency", "amount", "reason"):
                held.add_column(column)
            for h in summary[key]:
                held.add_row(h["beneficiary_id"], h["currency"], h["amount"], h["reason"])
            console.print(held)


@payouts_app.command("propose")
def propose(
    period: Annotated[str, typer.Option("--period", help="The closed month to pay from, YYYY-MM.")],
    proposed_by: Annotated[str, typer.Option("--proposed-by", help="Who proposes the run.")],
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="The run's id (default: PO<yyyymm>-<n>, the next free).")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", help="The run's date (default: today, UTC).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the proposal, record nothing.")] = False,
    ingest: Ingest = False,
    fmt: Fmt = None,
) -> None:
    """Propose a run from a closed month: each introducer's outstanding at the close, less
    what was paid since and what open runs propose; amounts below the minimum carried over,
    introducers the cooperative cannot pay listed apart. Recorded as a fact unless --dry-run
    or there is nothing to pay."""
    settings = settings_or_exit()
    ledger = open_ledger(settings)
    chosen = parse_day(day) or datetime.now(UTC).date()
    try:
        proposal = propose_run(
            ledger,
            period,
            day=chosen,
            proposed_by=proposed_by,
            minimums=settings.payout_minimum_amounts(),
            run_id=run_id,
        )
    except PayoutRunError as exc:
        raise _fail(str(exc)) from None
    summary = proposal.summary()
    if not proposal.proposal.lines:
        summary["status"] = "nothing to pay"
    elif dry_run:
        summary["status"] = "dry run: not recorded"
    else:
        kind = "payout_run.proposed"
        outcome = record_fact(
            kind, proposal.fact_data(), envelope_id=f"payout-run:{proposal.run_id}", ingest=ingest, quiet=True
        )
        summary["status"] = outcome["status"]
    emit(summary, fmt, _proposal_tables)


@payouts_app.command("approve")
def approve(
    run_id: Annotated[str, typer.Argument(help="The run to approve.")],
    approved_by: Annotated[
        str, typer.Option("--approved-by", help="Who approves it (a second person: not the proposer).")
    ],
    day: Annotated[str | None, typer.Option("--date", help="The approval's date (default: today).")] = None,
    ingest: Ingest = False,
) -> None:
    """Approve a proposed run (four eyes): its payment file can then be made. Refused
    before anything is sent when the run is unknown, voided or its proposer approves it."""
    ledger = open_ledger(settings_or_exit())
    try:
        view = run_view(ledger, run_id)
    except PayoutRunError as exc:
        raise _fail(str(exc)) from None
    if view.voided:
        raise _fail(f"payout run {run_id!r} was voided")
    if view.approval is not None:
        raise _fail(f"payout run {run_id!r} was approved by {view.approval.approved_by} already")
    if view.run.proposed_by == approved_by:
        raise _fail(f"payout run {run_id!r} was proposed by {approved_by!r}: another person must approve it")
    chosen = parse_day(day) or datetime.now(UTC).date()
    data = {"run_id": run_id, "date": chosen.isoformat(), "approved_by": approved_by}
    record_fact("payout_run.approved", data, envelope_id=f"payout-run-approval:{run_id}", ingest=ingest)


def _run_tables(summary: dict[str, Any], console: Console) -> None:
    title = (
        f"Payout run {summary['run_id']} ({summary['status']}) from {summary['period']}: "
        f"proposed by {summary['proposed_by']}, approved by {summary['approved_by'] or '-'}"
    )
    table = Table(title=title)
    for column in ("beneficiary", "currency", "amount", "IBAN", "end-to-end id", "booked"):
        table.add_column(column)
    for line in summary["lines"]:
        booked = line["booked"]
        table.add_row(
            line["beneficiary_id"],
            line["currency"],
            line["amount"],
            line["iban"] or line["refused"] or "",
            line["end_to_end_id"],
            "" if booked is None else f"{booked['date']} {booked['bank_reference'] or ''}",
        )
    console.print(table)


@payouts_app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="The run.")], fmt: Fmt = None) -> None:
    """A run: its lines, masked IBANs, end-to-end ids, and which transfers the bank booked."""
    ledger = open_ledger(settings_or_exit())
    try:
        view = run_view(ledger, run_id)
    except PayoutRunError as exc:
        raise _fail(str(exc)) from None
    emit(view.summary(), fmt, _run_tables)


def _debtor(settings: Settings, currency: str) -> Account:
    found = settings.payout_debtor(currency)
    if found is None or not settings.payout_debtor_name:
        raise _fail(
            f"no account pays {currency}: set LEDGER_PAYOUT_DEBTOR_NAME, "
            f"LEDGER_PAYOUT_DEBTOR_{currency}_IBAN and LEDGER_PAYOUT_DEBTOR_{currency}_BIC",
            2,
        )
    try:
        return Account(settings.payout_debtor_name, found[0], found[1])
    except Iso20022Error as exc:
        raise _fail(f"the {currency} paying account: {exc}", 2) from None


def _transfer(view: RunView, line: RunLineView) -> Transfer:
    assert line.account is not None
    who = f"{line.line.beneficiary_id} ({line.line.currency})"
    try:
        creditor = Account(
            payment_text(line.account.holder, max_chars=70), line.account.iban, line.account.bic
        )
        remittance = f"Commissions {view.run.period} {view.run.run_id}"
        return Transfer(line.end_to_end_id, line.line.amount, line.line.currency, creditor, remittance)
    except Iso20022Error as exc:
        raise _fail(f"payout run {view.run.run_id}: {who}: {exc}") from None


def payment_file(view: RunView, settings: Settings, execution_date: date) -> bytes:
    """The run's pain.001 file: one block per currency (one paying account each), the same
    bytes whenever it is made again for the same execution date."""
    try:
        lines = view.payable()
    except PayoutRunError as exc:
        raise _fail(str(exc)) from None
    assert view.approval is not None
    created = datetime.combine(view.approval.date, datetime.min.time(), tzinfo=UTC)
    if execution_date < view.approval.date:
        raise _fail(f"the execution date {execution_date} is before the approval ({view.approval.date})")
    blocks = []
    for currency in sorted({line.line.currency for line in lines}):
        transfers = tuple(_transfer(view, line) for line in lines if line.line.currency == currency)
        blocks.append(
            PaymentBlock(
                f"{view.run.run_id}-{currency}",
                _debtor(settings, currency),
                currency,
                execution_date,
                transfers,
            )
        )
    try:
        return pain001(
            message_id=view.run.run_id,
            created_at=created,
            initiating_party=settings.payout_debtor_name,
            blocks=blocks,
        )
    except Iso20022Error as exc:
        raise _fail(f"payout run {view.run.run_id}: the payment file cannot be made: {exc}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise _fail(f"cannot write {path}: {exc.strerror}", 2) from None


@payouts_app.command("file")
def file(
    run_id: Annotated[str, typer.Argument(help="The approved run.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the pain.001 XML file.")],
    execution_date: Annotated[
        str | None,
        typer.Option("--execution-date", help="When the bank should pay (default: the approval's date)."),
    ] = None,
) -> None:
    """Write an approved run's ISO 20022 pain.001.001.09 file (validated against the XSD
    before it is written; control sums per block and for the file)."""
    settings = settings_or_exit()
    ledger = open_ledger(settings)
    try:
        view = run_view(ledger, run_id)
    except PayoutRunError as exc:
        raise _fail(str(exc)) from None
    approved = view.approval.date if view.approval is not None else None
    chosen = parse_day(execution_date) or approved or datetime.now(UTC).date()
    xml = payment_file(view, settings, chosen)
    _write_atomically(out, xml)
    totals: dict[str, Any] = {}
    for line in view.lines:
        entry = totals.setdefault(line.line.currency, {"transfers": 0, "amount": 0})
        entry["transfers"] += 1
        entry["amount"] += line.line.amount
    summary = {
        "run_id": run_id,
        "file": str(out),
        "sha256": hashlib.sha256(xml).hexdigest(),
        "execution_date": chosen.isoformat(),
        "blocks": [
            {"currency": c, "transfers": v["transfers"], "control_sum": f"{v['amount']:.2f}"}
            for c, v in sorted(totals.items())
        ],
    }
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


def _reconcile_tables(summary: dict[str, Any], console: Console) -> None:
    counts = ", ".join(f"{k}: {v}" for k, v in summary["counts"].items()) or "no transfer of ours"
    table = Table(title=f"Bank file {summary['file']}: {counts}")
    for column in ("outcome", "end-to-end id", "run", "beneficiary", "amount", "message"):
        table.add_column(column)
    for line in summary["lines"]:
        table.add_row(
            line["outcome"],
            line["end_to_end_id"] or "",
            line["run_id"] or "",
            line["beneficiary_id"] or "",
            f"{line['amount']} {line['currency']}",
            line["message"],
        )
    console.print(table)


@payouts_app.command("reconcile")
def reconcile_file(
    path: Annotated[Path, typer.Argument(help="The bank's camt.054 or camt.053 XML file.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the matching, record nothing.")] = False,
    ingest: Ingest = False,
    fmt: Fmt = None,
) -> None:
    """Record a payout for each transfer of ours the bank booked (matched by end-to-end id,
    same amount and currency); importing a file again records nothing new. Returned,
    rejected and pending transfers, unknown ids and different amounts are listed."""
    try:
        if path.stat().st_size > MAX_BANK_FILE_BYTES:
            raise _fail(f"{path} is larger than {MAX_BANK_FILE_BYTES >> 20} MiB", 2)
        xml = path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}", 2) from None
    try:
        entries = parse_camt(xml)
    except XmlInputError as exc:
        raise _fail(f"{path} is not a bank notification this ledger reads: {exc}", 2) from None
    ledger = open_ledger(settings_or_exit())
    result = reconcile(ledger, entries)
    summary: dict[str, Any] = {"file": str(path), **result.summary()}
    if result.payouts and not dry_run:
        outcomes = record_facts(
            "payout.recorded",
            [(f"payout:{p['payout_id']}", p) for p in result.payouts],
            ingest=ingest,
        )
        summary["recorded"] = outcomes
    emit(summary, fmt, _reconcile_tables)
