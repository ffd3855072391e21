"""``ledger statement``: what one party can see of the books, as a printable page (HTML or
PDF) or JSON: the transparency statement of a client or an introducer over the whole
history, or (with ``--period``) any party's statement of one month (rules R9)."""

from __future__ import annotations

import csv
import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.application.party_statements import PartyKind, party_statement
from ledger.application.queries import QueryError, ReportQuery, answer
from ledger.entrypoints.common import err, parse_day, source_ledger

__all__ = ["statement"]


class StatementFormat(StrEnum):
    html = "html"
    pdf = "pdf"
    json = "json"
    csv = "csv"


class Language(StrEnum):
    fr = "fr"
    en = "en"


def statement(
    client: Annotated[str | None, typer.Option("--client", help="The client's id.")] = None,
    introducer: Annotated[str | None, typer.Option("--introducer", help="The introducer's id.")] = None,
    adviser: Annotated[
        str | None, typer.Option("--adviser", help="The adviser's id (with --period).")
    ] = None,
    cooperative: Annotated[
        bool, typer.Option("--cooperative", help="The cooperative's donations (with --period).")
    ] = False,
    period: Annotated[
        str | None, typer.Option("--period", help="One month's statement, YYYY-MM (rules R9).")
    ] = None,
    fmt: Annotated[
        StatementFormat,
        typer.Option("--format", help="html (printable page), pdf, json, or csv (a month's rows)."),
    ] = StatementFormat.html,
    language: Annotated[Language, typer.Option("--language", help="fr or en (pages and PDF).")] = Language.fr,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Only facts dated up to this day.")] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="A replayed file instead of the store.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """A transparency statement for one client (every invoice, the commission on it and who
    gets it, rebates owed back) or one introducer; with --period, one month's statement of an
    introducer, a client, an adviser or the cooperative (frozen when the month is closed)."""
    chosen = [(k, v) for k, v in (("client", client), ("introducer", introducer), ("adviser", adviser)) if v]
    if cooperative:
        chosen.append(("cooperative", "cooperative"))
    ledger = source_ledger(events)
    if period is None:
        if len(chosen) != 1 or chosen[0][0] not in {"client", "introducer"}:
            raise typer.BadParameter("give exactly one of --client or --introducer (or a --period)")
        data: Any = _whole_history(ledger, chosen[0][0], chosen[0][1], as_of, fmt, language)
    else:
        if as_of is not None:
            raise typer.BadParameter("--period and --as-of do not go together")
        if len(chosen) > 1 or (not chosen and fmt is not StatementFormat.csv):
            raise typer.BadParameter("give one party (--client, --introducer, --adviser or --cooperative)")
        data = _month(ledger, period, chosen[0] if chosen else None, fmt, language)
    _write(data, output)


def _whole_history(
    ledger: Any, kind: str, party_id: str, as_of: str | None, fmt: StatementFormat, language: Language
) -> str:
    from ledger.adapters.statement_html import render_statement_html
    from ledger.application.statements import client_statement, introducer_statement

    books = ledger.books(as_of=parse_day(as_of))
    head = {"position": ledger.head_position, "hash": ledger.head_hash}
    doc = (
        client_statement(books, party_id, head)
        if kind == "client"
        else introducer_statement(books, party_id, head)
    )
    if fmt is StatementFormat.json:
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt is not StatementFormat.html:
        raise typer.BadParameter("the whole-history statement is html or json (pdf and csv: use --period)")
    return render_statement_html(doc)


def _month(
    ledger: Any, period: str, party: tuple[str, str] | None, fmt: StatementFormat, language: Language
) -> str | bytes:
    from ledger.adapters.statement_render import render_party_html, render_pdf
    from ledger.application.party_statements import party_names

    try:
        month = answer(ledger, ReportQuery.from_params("period", {"period": period}))
    except QueryError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if party is None:
        return _rows_csv(month["balances"] + month["rebates"])
    kind: PartyKind = party[0]  # type: ignore[assignment]
    view = party_statement(month, kind, party[1], party_names(ledger.books()), ledger.index.masked_accounts())
    if fmt is StatementFormat.json:
        return json.dumps(view, indent=2, ensure_ascii=False) + "\n"
    if fmt is StatementFormat.csv:
        return _rows_csv(view["rows"])
    html = render_party_html(view, "en" if language is Language.en else "fr")
    return render_pdf(html) if fmt is StatementFormat.pdf else html


def _rows_csv(rows: list[dict[str, Any]]) -> str:
    """One CSV line per (party, currency, figure): opening, adjustments, movements, closing."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        ["party_kind", "party_id", "currency", "figure", "opening", "adjustments", "movements", "closing"]
    )
    for row in rows:
        kind, party = (
            ("beneficiary", row["beneficiary_id"])
            if "beneficiary_id" in row
            else ("client", row["client_id"])
        )
        for name in row["closing"]:
            writer.writerow(
                [
                    kind,
                    party,
                    row["currency"],
                    name,
                    *(row[part][name] for part in ("opening", "adjustments", "movements", "closing")),
                ]
            )
    return out.getvalue()


def _write(data: str | bytes, output: Path | None) -> None:
    if isinstance(data, bytes):
        if output is None:
            if sys.stdout.isatty():
                raise typer.BadParameter("a PDF goes to a file (--output) or a pipe, not a terminal")
            sys.stdout.buffer.write(data)
        else:
            output.write_bytes(data)
        return
    if output is not None:
        output.write_text(data, encoding="utf-8")
    else:
        sys.stdout.write(data)
