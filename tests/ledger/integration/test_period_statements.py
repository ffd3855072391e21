"""Each party's statement of a month (rules R9): the views, the PDF read back, the page in
a real browser (title, language, table headers, no console error)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pypdf
import pytest

from ledger.adapters.statement_render import render_party_html
from ledger.application.party_statements import (
    PartyKind,
    has_figures,
    parties_of,
    party_names,
    party_statement,
)
from ledger.application.periods import period_statement
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLES, envelope
from tests.ledger.unit.test_periods import close
from tests.support.servers import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def history() -> list[str]:
    lines = [
        *(EXAMPLES / "03-donation-and-rebates.jsonl").read_text().splitlines(),
        *(EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines(),
    ]
    return [
        *lines,
        close("2025-01", "2025-02-01"),
        close("2025-02", "2025-03-01"),
        close("2025-03", "2025-04-02"),
    ]


def march() -> tuple[dict[str, Any], dict[str, str]]:
    ledger = build_ephemeral_ledger()
    ledger.ingest(history())
    return period_statement(ledger, "2025-03"), party_names(ledger.books())


def test_each_party_sees_its_part_of_the_month() -> None:
    """March 2025: the introducer sees its commission and figures, the client its commission
    (introducer, rate) and margins, the adviser the commissions on its invoices, the
    cooperative its donations balance; a party with nothing has no figures."""
    month, names = march()
    marie = party_statement(month, "introducer", "int-marie", names)
    assert [c["invoice_id"] for c in marie["commissions"]] == ["2025-0311"]
    assert marie["party_name"] == "Int-Marie"
    assert marie["rows"][0]["closing"]["accrued"] == "240.00"
    client = party_statement(month, "client", "cli-cabinet-dupont", names)
    assert [(c["introducer_id"], c["rate"], c["amount"]) for c in client["commissions"]] == [
        ("int-marie", "0.10", "240.00")
    ]
    school = party_statement(month, "client", "cli-ecole", names)
    assert [m["margin"] for m in school["margins"]] == ["50.00"]
    adviser = party_statement(month, "adviser", "adv-luc", names)
    assert [c["amount"] for c in adviser["commissions"]] == ["240.00"]
    cooperative = party_statement(month, "cooperative", "cooperative", names)
    assert cooperative["rows"][0]["closing"]["accrued"] == "75.00" and not cooperative["commissions"]
    assert not has_figures(party_statement(month, "client", "cli-nobody", names))


@pytest.mark.parametrize(
    ("kind", "party"),
    [
        ("introducer", "int-marie"),
        ("client", "cli-cabinet-dupont"),
        ("adviser", "adv-luc"),
        ("cooperative", "cooperative"),
        ("client", "cli-nobody"),
    ],
)
@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_party_kind_renders_in_each_language(kind: PartyKind, party: str, language: str) -> None:
    """The month's page renders for each kind of party (with or without figures, with or
    without an account on record) in both languages, named in its title."""
    month, names = march()
    view = party_statement(month, kind, party, names, {"int-marie": "*" * 17 + "2957"})
    html = render_party_html(view, "fr" if language == "fr" else "en")
    assert f'<html lang="{language}">' in html and view["party_name"] in html
    assert ("*" * 17 + "2957" in html) == (kind == "introducer")


def test_a_void_is_on_the_statement_of_every_party_its_target_concerned() -> None:
    """A payment voided in March is told to the invoice's client and adviser and to the
    introducer paid on it; a voided purchase to its client; nobody else sees either void."""
    voids = [
        envelope(
            "fact.voided",
            {
                "void_id": f"void-{target}",
                "target_type": kind,
                "target_id": target,
                "date": "2025-03-30",
                "reason": "typed twice",
                "requested_by": "tre-ana",
                "approved_by": "tre-luc",
            },
            id=f"void-{target}",
        )
        for kind, target in (("payment", "pay-0311"), ("purchase", "pu-2"))
    ]
    lines = history()
    ledger = build_ephemeral_ledger()
    ledger.ingest([*lines[:-1], *voids, lines[-1]])
    month, names = period_statement(ledger, "2025-03"), party_names(ledger.books())

    def voided(kind: PartyKind, party: str) -> list[str]:
        return [v["void_id"] for v in party_statement(month, kind, party, names)["voids"]]

    assert voided("client", "cli-cabinet-dupont") == ["void-pay-0311"]
    assert voided("adviser", "adv-luc") == ["void-pay-0311"]
    assert voided("introducer", "int-marie") == ["void-pay-0311"]
    purchase_client = next(v["clients"] for v in month["details"]["voids"] if v["void_id"] == "void-pu-2")
    assert purchase_client and voided("client", purchase_client[0]) == ["void-pu-2"]
    assert voided("introducer", "int-ines") == [] and voided("client", "cli-nobody") == []
    assert ("client", purchase_client[0]) in parties_of(month)


def test_the_pdf_reads_back_every_commission_line_of_the_client(tmp_path: Path) -> None:
    """The client's PDF (WeasyPrint), read back as text, shows each commission line on its
    invoices: invoice, introducer, rate, amount; and the month and its status."""
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(history()) + "\n")
    pdf = tmp_path / "client.pdf"
    run_cli(
        "statement",
        "--events",
        str(path),
        "--period",
        "2025-03",
        "--client",
        "cli-cabinet-dupont",
        "--format",
        "pdf",
        "-o",
        str(pdf),
    )
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
    for expected in ("2025-03", "clôturé", "2025-0311", "Int-Marie", "0.10", "CHF 240.00", "CHF 2400.00"):
        assert expected in text, expected
    english = tmp_path / "client-en.pdf"
    run_cli(
        "statement",
        "--events",
        str(path),
        "--period",
        "2025-03",
        "--client",
        "cli-cabinet-dupont",
        "--format",
        "pdf",
        "--language",
        "en",
        "-o",
        str(english),
    )
    assert "commissions on your invoices" in pypdf.PdfReader(english).pages[0].extract_text().lower()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test-deps installs it)")
def test_the_page_renders_in_a_browser_and_is_accessible(tmp_path: Path) -> None:
    """Headless Chromium renders the introducer's page with its figures, a title, a language,
    table headers with a scope, and logs no console error."""
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(history()) + "\n")
    page = tmp_path / "introducer.html"
    run_cli(
        "statement",
        "--events",
        str(path),
        "--period",
        "2025-04",
        "--introducer",
        "int-marie",
        "--language",
        "en",
        "-o",
        str(page),
    )
    proc = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    dom = proc.stdout
    assert '<html lang="en">' in dom
    assert "<title>Introduction commissions · 2025-04 · Int-Marie</title>" in dom
    assert dom.count('<th scope="col"') >= 6
    for figure in ("240.00", "200.00", "40.00"):
        assert figure in dom, figure
    assert "CONSOLE" not in proc.stderr and "Uncaught" not in proc.stderr, proc.stderr[-2000:]


def test_a_month_statement_as_csv_has_one_line_per_figure(tmp_path: Path) -> None:
    """`ledger statement --period P --format csv` lists every row of the month, one line per
    figure, and closing = opening + adjustments + movements on each."""
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(history()) + "\n")
    text = run_cli(
        "statement", "--events", str(path), "--period", "2025-03", "--format", "csv"
    ).stdout.decode()
    lines = [line.split(",") for line in text.strip().splitlines()]
    assert lines[0] == [
        "party_kind",
        "party_id",
        "currency",
        "figure",
        "opening",
        "adjustments",
        "movements",
        "closing",
    ]
    assert len(lines) > 1
    from decimal import Decimal

    for _, _, _, _, opening, adjustments, movements, closing in lines[1:]:
        assert Decimal(opening) + Decimal(adjustments) + Decimal(movements) == Decimal(closing)
    month = json.loads(
        run_cli("report", "--events", str(path), "--period", "2025-03", "--format", "json").stdout
    )
    assert len(lines) - 1 == 4 * len(month["balances"]) + 3 * len(month["rebates"])


def test_the_beancount_books_of_a_closed_month_assert_its_frozen_closing(tmp_path: Path) -> None:
    """`export --format beancount --period P` (facts up to P's close, as of its last day)
    passes bean-check and its balance assertions at the month's end are the frozen closing:
    Accrued = accrued - payable and Payable = payable - paid of each beneficiary, even after
    late facts dated in the month."""
    from decimal import Decimal

    from beancount import loader

    from tests.ledger.unit.test_periods import credit_note

    path = tmp_path / "h.jsonl"
    path.write_text(
        "\n".join([*history(), credit_note("CN-LATE", "2025-0311", "2025-03-20", "400.00")]) + "\n"
    )
    text = run_cli(
        "export", "--events", str(path), "--format", "beancount", "--period", "2025-03"
    ).stdout.decode()
    entries, errors, _ = loader.load_string(text)
    assert not errors, [str(e.message) for e in errors[:3]]
    asserted = {
        (e.account, e.amount.currency): e.amount.number
        for e in entries
        if type(e).__name__ == "Balance" and e.date.isoformat() == "2025-04-01"
    }
    month = json.loads(
        run_cli("report", "--events", str(path), "--period", "2025-03", "--format", "json").stdout
    )
    row = next(r for r in month["balances"] if r["beneficiary_id"] == "int-marie")
    closing = {k: Decimal(v) for k, v in row["closing"].items()}
    assert asserted[("Liabilities:Commissions:Accrued:Int-marie", "CHF")] == -(
        closing["accrued"] - closing["payable"]
    )
    assert closing["accrued"] == Decimal("240.00")  # the late credit note is not in the closed month
