"""Helpers for the notifier tests: realistic ledger events (monthly statements included,
built from a real ledger's close), a real SMTP server (aiosmtpd), a real HTTP receiver, a
real HTTP server standing in for the ledger's statement PDFs, the notifier as a child
process, and in-memory doubles."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller

from ledger.adapters.statement_render import render_party_html, render_pdf
from ledger.application.derive import Deriver
from ledger.application.party_statements import has_figures, party_names, party_statement
from ledger.application.periods import period_statement
from ledger.bootstrap import build_ephemeral_ledger
from ledger.settings import Settings
from notifier.adapters.sent_journal import FileSentJournal, journal_directory
from notifier.adapters.store import SqliteAlertStore
from notifier.application.delivery import Deliverer
from notifier.application.digests import Digester, DigestPolicy
from notifier.application.ingest import Ingestor
from notifier.application.ports import Accepted, Delivery, FailureNotice, Sender, SendFailure
from notifier.application.render import Renderer
from notifier.application.resend import Resender
from notifier.domain.backoff import RetryPolicy
from notifier.domain.events import Channel, LedgerEnvelope, PartyKind
from tests.conftest import envelope
from tests.support.servers import VENV_BIN, free_port, wait_for

T = TypeVar("T")

# ledger events ---------------------------------------------------------------------------


def derived_envelopes(lines: list[str], *, webhook_allow_hosts: str = "") -> list[LedgerEnvelope]:
    """What the ledger would publish on ledger.out for these inbound lines (webhook URLs on
    the hosts allowed, e.g. a loopback receiver, pass the ledger's admission)."""
    settings = Settings(webhook_allow_hosts=webhook_allow_hosts) if webhook_allow_hosts else None
    ledger = build_ephemeral_ledger(settings=settings)
    outcomes = ledger.ingest(lines)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    deriver = Deriver()
    out: list[LedgerEnvelope] = []
    for position, fact in enumerate(ledger.index.by_position, start=1):
        for event in deriver.advance(position, fact):
            out.append(
                LedgerEnvelope.model_validate(
                    {
                        "specversion": "1.0",
                        "id": event.id,
                        "source": "coop-ledger",
                        "type": event.type,
                        "datacontenttype": "application/json",
                        "subject": event.kind,
                        "ledgerposition": event.position,
                        "data": json.loads(json.dumps(event.data)),
                    }
                )
            )
    return out


def introducer_line(
    introducer_id: str,
    *,
    language: str = "en",
    email_addr: str | None = None,
    webhook_url: str | None = None,
    name: str | None = None,
) -> str:
    data: dict[str, Any] = {"introducer_id": introducer_id, "display_name": name or introducer_id.title()}
    if email_addr:
        data["email"] = email_addr
    if webhook_url:
        data["webhook_url"] = webhook_url
    data["language"] = language
    return envelope("introducer.registered", data, id=f"reg-{introducer_id}")


def introduction_lines(
    introducer_id: str,
    client_id: str,
    currency: str,
    net: str,
    *,
    paid: bool = False,
    donor: bool = False,
    tag: str = "",
) -> list[str]:
    """An introduction on 2025-03-03 and one invoice on 2025-03-11 (optionally paid)."""
    tag = tag or client_id
    lines = []
    if donor:
        lines.append(
            envelope(
                "introducer.eligibility_changed",
                {
                    "introducer_id": introducer_id,
                    "can_receive_commission": False,
                    "effective_date": "2025-01-01",
                },
                id=f"elig-{tag}",
            )
        )
    lines += [
        envelope(
            "introduction.recorded",
            {
                "introduction_id": f"intro-{tag}",
                "introducer_id": introducer_id,
                "client_id": client_id,
                "adviser_id": "adv-luc",
                "date": "2025-03-03",
            },
            id=f"intro-{tag}",
        ),
        envelope(
            "invoice.issued",
            {
                "invoice_id": f"inv-{tag}",
                "adviser_id": "adv-luc",
                "client_id": client_id,
                "issue_date": "2025-03-11",
                "currency": currency,
                "net_amount": net,
                "tax_amount": "0" if currency == "JPY" else "0.00",
            },
            id=f"inv-{tag}",
        ),
    ]
    if paid:
        lines.append(
            envelope(
                "payment.received",
                {"payment_id": f"pay-{tag}", "invoice_id": f"inv-{tag}", "date": "2025-04-10", "amount": net},
                id=f"pay-{tag}",
            )
        )
    return lines


# payouts (payout.recorded) ----------------------------------------------------------------

#: int-ana's payout: a transfer of the cooperative's payout run, as the bank booked it.
PAYOUT_RUN = "R2025-04"
PAYOUT_E2E = "R2025-04-1a2b3c4d5e6f7a8b"
PAYOUT_BANK_REF = "ZKB-20250502-0042"


def payout_line(
    payout_id: str,
    beneficiary_id: str,
    currency: str,
    amount: str,
    *,
    adviser_id: str = "adv-luc",
    day: str = "2025-05-02",
    run_id: str | None = None,
    end_to_end_id: str | None = None,
    bank_reference: str | None = None,
) -> str:
    """``payout.recorded`` as a producer sends it: by hand (an adviser paid), or, with
    ``run_id``, as the bank reconciliation records a payout run's booked transfer."""
    data: dict[str, Any] = {
        "payout_id": payout_id,
        "adviser_id": adviser_id,
        "beneficiary_id": beneficiary_id,
        "date": day,
        "currency": currency,
        "amount": amount,
    }
    extra = {"run_id": run_id, "end_to_end_id": end_to_end_id, "bank_reference": bank_reference}
    data.update({k: v for k, v in extra.items() if v is not None})
    return envelope("payout.recorded", data, id=f"po-{payout_id}")


def payout_lines(*, ana_webhook: str | None = None) -> list[str]:
    """int-ana (French, e-mail, and a webhook if given) earns CHF 241.00, paid CHF 120.50 of
    it by the cooperative's payout run (a bank transfer booked, with its end-to-end id and the
    bank's reference); int-john (English, e-mail) earns €123.45, paid €50.00 of it by adv-luc
    by hand, and registers only after that payout; adv-luc also records a payout to the
    cooperative, which tells nobody."""
    return [
        introducer_line(
            "int-ana", language="fr", email_addr="ana@example.org", webhook_url=ana_webhook, name="Ana Moreau"
        ),
        *introduction_lines("int-ana", "cli-ana", "CHF", "2410.00", paid=True),
        payout_line(
            PAYOUT_E2E,
            "int-ana",
            "CHF",
            "120.50",
            adviser_id="cooperative",
            run_id=PAYOUT_RUN,
            end_to_end_id=PAYOUT_E2E,
            bank_reference=PAYOUT_BANK_REF,
        ),
        *introduction_lines("int-john", "cli-john", "EUR", "1234.50", paid=True),
        payout_line("po-john-1", "int-john", "EUR", "50.00"),
        payout_line("po-coop-1", "cooperative", "CHF", "30.00"),
        introducer_line("int-john", language="en", email_addr="john@example.org", name="John Smith"),
    ]


# monthly statements (statement.issued) ---------------------------------------------------

STATEMENT_PERIOD = "2025-03"
LINK_EXPIRES = "2025-05-02T12:00:00Z"
LINK_KEY = b"test-ledger-link-key"


def expiry_in(days: float) -> str:
    """A link expiry ``days`` from now, as the ledger writes it (``YYYY-MM-DDTHH:MM:SSZ``)."""
    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fact(kind: str, ident: str, **data: Any) -> str:
    return envelope(kind, data, id=ident)


def month_lines() -> list[str]:
    """March 2025, closed on 2 April: int-marie introduced cli-dupont to adv-luc (invoice paid,
    CHF 200.00 paid out to her); int-carl, who cannot take money, introduced cli-dupont to
    adv-eva (his commission is a donation); cli-dupont bought from sup-laptops (a margin and
    a rebate share owed to it, part passed through); a duplicated payout and a payment of
    another client are voided; cli-nobody and adv-idle have nothing in the month."""
    return [
        introducer_line("int-marie", language="fr", email_addr="marie@example.org", name="Marie Dupont"),
        introducer_line("int-carl", language="en", name="Carl Berger"),
        _fact(
            "introducer.eligibility_changed",
            "el-carl",
            introducer_id="int-carl",
            can_receive_commission=False,
            effective_date="2025-01-01",
        ),
        _fact(
            "introduction.recorded",
            "i-m",
            introduction_id="intro-m",
            introducer_id="int-marie",
            client_id="cli-dupont",
            adviser_id="adv-luc",
            date="2025-02-01",
        ),
        _fact(
            "introduction.recorded",
            "i-c",
            introduction_id="intro-c",
            introducer_id="int-carl",
            client_id="cli-dupont",
            adviser_id="adv-eva",
            date="2025-02-01",
        ),
        _fact(
            "introduction.recorded",
            "i-n",
            introduction_id="intro-n",
            introducer_id="int-marie",
            client_id="cli-nobody",
            adviser_id="adv-idle",
            date="2025-02-01",
        ),
        _fact(
            "invoice.issued",
            "inv-1",
            invoice_id="2025-031",
            adviser_id="adv-luc",
            client_id="cli-dupont",
            issue_date="2025-03-10",
            currency="CHF",
            net_amount="2400.00",
            tax_amount="0.00",
        ),
        _fact(
            "invoice.issued",
            "inv-2",
            invoice_id="2025-032",
            adviser_id="adv-eva",
            client_id="cli-dupont",
            issue_date="2025-03-12",
            currency="CHF",
            net_amount="1500.00",
            tax_amount="0.00",
        ),
        _fact(
            "payment.received",
            "pay-1",
            payment_id="pay-1",
            invoice_id="2025-031",
            date="2025-03-20",
            amount="2400.00",
        ),
        _fact(
            "payment.received",
            "pay-2",
            payment_id="pay-2",
            invoice_id="2025-032",
            date="2025-03-21",
            amount="1500.00",
        ),
        _fact(
            "payout.recorded",
            "po-1",
            payout_id="po-1",
            adviser_id="adv-luc",
            beneficiary_id="int-marie",
            date="2025-03-25",
            currency="CHF",
            amount="200.00",
        ),
        _fact(
            "payout.recorded",
            "po-2",
            payout_id="po-2",
            adviser_id="adv-luc",
            beneficiary_id="int-marie",
            date="2025-03-26",
            currency="CHF",
            amount="200.00",
        ),
        _fact(
            "purchase.recorded",
            "pu-1",
            purchase_id="pu-1",
            client_id="cli-dupont",
            supplier_id="sup-laptops",
            date="2025-03-03",
            currency="CHF",
            cost_amount="2000.00",
        ),
        _fact(
            "resale.invoiced",
            "rs-1",
            resale_id="rs-1",
            purchase_id="pu-1",
            date="2025-03-05",
            amount="2080.00",
        ),
        _fact(
            "rebate.received",
            "rb-1",
            rebate_id="rb-1",
            supplier_id="sup-laptops",
            date="2025-03-28",
            currency="CHF",
            amount="40.00",
            purchase_ids=["pu-1"],
        ),
        _fact(
            "rebate.passed_through",
            "pt-1",
            pass_through_id="pt-1",
            client_id="cli-dupont",
            date="2025-03-30",
            currency="CHF",
            amount="60.00",
        ),
        _fact(
            "fact.voided",
            "v-po-2",
            void_id="void-po-2",
            target_type="payout",
            target_id="po-2",
            date="2025-03-27",
            reason="versement saisi deux fois",
            requested_by="tre-ana",
            approved_by="tre-luc",
        ),
        _fact(
            "fact.voided",
            "v-pay-2",
            void_id="void-pay-2",
            target_type="payment",
            target_id="pay-2",
            date="2025-03-29",
            reason="paiement d'un autre client",
            requested_by="tre-ana",
            approved_by="tre-luc",
        ),
        _fact(
            "period.closed",
            "close-2025-03",
            period=STATEMENT_PERIOD,
            date="2025-04-02",
            closed_by="tre-ana",
            approved_by="tre-luc",
        ),
    ]


#: The voids each party's view lists (the ledger's party views get them from the close's
#: statement; the contract has them as a list of {void_id, target_type, ...}).
MONTH_VOIDS: dict[tuple[str, str], list[str]] = {
    ("introducer", "int-marie"): ["void-po-2"],
    ("adviser", "adv-luc"): ["void-po-2"],
    ("client", "cli-dupont"): ["void-pay-2"],
    ("adviser", "adv-eva"): ["void-pay-2"],
}
#: A vendor commission disclosed to cli-dupont (``disclosures``, being added by the ledger).
DISCLOSURE = {
    "vendor_commission_id": "vc-1",
    "adviser_id": "adv-luc",
    "supplier_id": "sup-laptops",
    "date": "2025-03-15",
    "currency": "CHF",
    "amount": "30.00",
    "description": "commission sur la vente des portables",
}


def statement_link(base_url: str, kind: str, party_id: str, period: str, expires: str, *, pdf: bool) -> str:
    """A signed link as the ledger publishes it (``/statements/<kind>/<id>[.pdf]?period=
    &expires=&sig=``); :class:`LedgerPdfServer` checks the signature."""
    path = f"/statements/{kind}/{party_id}" + (".pdf" if pdf else "")
    sig = hashlib.sha256(LINK_KEY + f"{kind}/{party_id}/{period}/{expires}".encode()).hexdigest()[:32]
    return f"{base_url}{path}?period={period}&expires={expires}&sig={sig}"


@dataclass(frozen=True)
class MonthClose:
    """What a close of ``period`` gives: one ``statement.issued`` per party with any figure,
    and each party's view (what ``ledger report --period`` shows of that party)."""

    period: str
    position: int
    envelopes: list[LedgerEnvelope]
    views: dict[tuple[str, str], dict[str, Any]]

    def of(self, kind: str, party_id: str) -> LedgerEnvelope:
        return next(
            e for e in self.envelopes if (e.data["party_kind"], e.data["party_id"]) == (kind, party_id)
        )


def close_statements(
    lines: list[str],
    period: str = STATEMENT_PERIOD,
    *,
    base_url: str = "http://127.0.0.1:8080",
    expires: str = LINK_EXPIRES,
    voids: dict[tuple[str, str], list[str]] | None = None,
    disclosures: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
) -> MonthClose:
    """The ``statement.issued`` events of the close of ``period`` in ``lines``, as the ledger
    will publish them (contract of the statements issue): each party's view is the real
    ledger's ``party_statement`` of the month; ``voids`` and ``disclosures`` add what the
    ledger's views do not carry yet."""
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(lines)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    month = period_statement(ledger, period)
    names = party_names(ledger.books())
    position = month["close"]["position"]
    details = month["details"]
    parties: set[tuple[PartyKind, str]] = set()
    for c in details["commissions"]:
        parties |= {
            ("introducer", c["introducer_id"]),
            ("client", c["client_id"]),
            ("adviser", c["adviser_id"]),
        }
    for p in details["payouts"]:
        parties |= {("adviser", p["adviser_id"]), ("introducer", p["beneficiary_id"])}
    parties |= {("introducer", r["beneficiary_id"]) for r in month["balances"]}
    parties |= {("client", r["client_id"]) for r in month["rebates"]}
    for key in ("margins", "rebate_shares", "pass_throughs"):
        parties |= {("client", x["client_id"]) for x in details[key]}
    parties |= set((voids or {}).keys()) | set((disclosures or {}).keys())  # type: ignore[arg-type]
    parties.discard(("introducer", "cooperative"))
    by_id = {v["void_id"]: v for v in details["voids"]}
    out: list[LedgerEnvelope] = []
    views: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, party_id in sorted(parties):
        view = party_statement(month, kind, party_id, names)
        view["voids"] = [by_id[v] for v in (voids or {}).get((kind, party_id), [])]
        if kind == "client":
            view["disclosures"] = list((disclosures or {}).get((kind, party_id), []))
        if not (has_figures(view) or view.get("disclosures")):
            continue
        views[(kind, party_id)] = view
        data = {
            "party_kind": kind,
            "party_id": party_id,
            "period": period,
            "close_position": position,
            "html_url": statement_link(base_url, kind, party_id, period, expires, pdf=False),
            "pdf_url": statement_link(base_url, kind, party_id, period, expires, pdf=True),
            "link_expires": expires,
            "statement": view,
        }
        out.append(
            ledger_event(
                "statement.issued", f"{position}:statement.issued:{kind}/{party_id}/{period}", data, position
            )
        )
    return MonthClose(period, position, out, views)


def month_close(**kwargs: Any) -> MonthClose:
    """The close of March 2025 of :func:`month_lines`, with its voids and a disclosure."""
    return close_statements(
        month_lines(),
        voids=MONTH_VOIDS,
        disclosures={("client", "cli-dupont"): [DISCLOSURE]},
        **kwargs,
    )


def report_rows(report: dict[str, Any], kind: str, party_id: str) -> list[dict[str, Any]]:
    """The rows of ``ledger report --period`` (JSON) that are ``kind``/``party_id``'s: an
    introducer's ``balances``, a client's ``rebates`` (an adviser has none): what its
    statement's ``rows`` must equal."""
    if kind == "introducer":
        return [r for r in report["balances"] if r["beneficiary_id"] == party_id]
    if kind == "client":
        return [r for r in report["rebates"] if r["client_id"] == party_id]
    return []


async def _create_ledger_out(url: str) -> None:
    import nats

    from coop_runtime.streams import ensure_stream, stream_config

    nc = await nats.connect(url)
    try:
        await ensure_stream(nc.jetstream(), stream_config("LEDGER_OUT", ["ledger.out.>"], 3600, 1))
    finally:
        await nc.close()


def create_ledger_out(url: str) -> None:
    """Stream ``LEDGER_OUT`` as the ledger creates it, for tests that publish the ledger's
    events themselves (no ``ledger serve``)."""
    asyncio.run(_create_ledger_out(url))


def publish_events(url: str, envelopes: list[LedgerEnvelope], *, msg_suffix: str = "") -> list[bool]:
    """Publish envelopes on ``ledger.out.<kind>`` as the ledger does (``Nats-Msg-Id`` = the
    event id, plus ``msg_suffix`` to publish them again past the de-duplication);
    returns which JetStream took as duplicates."""
    from tests.support.jetstream import publish_raw

    return publish_raw(
        url, [(f"ledger.out.{e.kind}", envelope_bytes(e), e.id + msg_suffix) for e in envelopes]
    )


def ledger_event(kind: str, event_id: str, data: dict[str, Any], position: int) -> LedgerEnvelope:
    """An envelope as the ledger publishes it on ``ledger.out.<kind>``."""
    return LedgerEnvelope.model_validate(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": "coop-ledger",
            "type": f"coop.ledger.out.{kind}.v1",
            "datacontenttype": "application/json",
            "subject": kind,
            "ledgerposition": position,
            "data": json.loads(json.dumps(data)),
        }
    )


def registration(
    kind: PartyKind,
    party_id: str,
    *,
    name: str | None = None,
    email_addr: str | None = None,
    webhook_url: str | None = None,
    language: str = "fr",
    position: int = 1,
) -> LedgerEnvelope:
    """``<kind>.registered`` as the ledger publishes it (clients and advisers: the contract
    of the statements issue; the same data as ``introducer.registered``)."""
    data: dict[str, Any] = {
        f"{kind}_id": party_id,
        "display_name": name or party_id,
        "email": email_addr,
        "webhook_url": webhook_url,
        "language": language,
    }
    return ledger_event(f"{kind}.registered", f"{position}:{kind}.registered:{party_id}", data, position)


#: The parties of :func:`month_directory` who read English (the others French).
MONTH_LANGUAGES = {("adviser", "adv-luc"): "en", ("introducer", "int-carl"): "en"}


def month_directory(receiver: HttpReceiver) -> list[LedgerEnvelope]:
    """The parties of :func:`month_lines` as the ledger's registrations publish them: e-mail
    and/or webhook (on ``receiver``), French or English (:data:`MONTH_LANGUAGES`); int-carl
    by webhook only; cli-nobody and adv-idle have nothing in March."""
    return [
        registration(
            "introducer",
            "int-marie",
            name="Marie Dupont",
            email_addr="marie@example.org",
            webhook_url=receiver.url("/hooks/marie"),
        ),
        registration(
            "introducer",
            "int-carl",
            name="Carl Berger",
            webhook_url=receiver.url("/hooks/carl"),
            language="en",
        ),
        registration(
            "client",
            "cli-dupont",
            name="Cabinet Dupont",
            email_addr="compta@dupont.example",
            webhook_url=receiver.url("/hooks/dupont"),
        ),
        registration("client", "cli-nobody", name="Nobody SA", email_addr="nobody@example.org"),
        registration("adviser", "adv-luc", name="Luc Martin", email_addr="luc@example.org", language="en"),
        registration("adviser", "adv-eva", name="Eva Rossi", email_addr="eva@example.org"),
        registration("adviser", "adv-idle", name="Idle", email_addr="idle@example.org"),
    ]


def envelope_bytes(env: LedgerEnvelope) -> bytes:
    """The message body the ledger publishes for ``env``."""
    return json.dumps(env.model_dump(mode="json")).encode()


@functools.lru_cache(maxsize=64)
def _pdf_of(view_json: str, language: str) -> bytes:
    return render_pdf(render_party_html(json.loads(view_json), language))  # type: ignore[arg-type]


def statement_pdf(view: dict[str, Any], language: str = "fr") -> bytes:
    """The ledger's own PDF of a party's view (WeasyPrint), as its statement page serves it."""
    return _pdf_of(json.dumps(view, sort_keys=True), language)


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF (pypdf), its pages joined, runs of whitespace (line breaks inside
    table cells) as one space."""
    import pypdf

    return " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages).split())


class LedgerPdfServer:
    """A real HTTP server on 127.0.0.1 standing in for the ledger's statement pages: ``GET
    /statements/<kind>/<id>.pdf?period=&expires=&sig=`` answers the PDF registered for that
    party (403 for a bad signature). ``fail_next[path]`` lists statuses to answer first
    (e.g. two 503), ``status[path]`` a status to answer until removed (e.g. 403)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.pdfs: dict[str, bytes] = {}
        self.fail_next: dict[str, list[int]] = {}
        self.status: dict[str, int] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = server._answer(self.path)
                self.send_response(code)
                self.send_header("Content-Type", "application/pdf" if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answer(self, raw: str) -> tuple[int, bytes]:
        parts = urlsplit(raw)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(parts.path)
            queued = self.fail_next.get(parts.path)
            if queued:
                return queued.pop(0), b"not now"
            if parts.path in self.status:
                return self.status[parts.path], b"refused"
            pdf = self.pdfs.get(parts.path)
        if pdf is None:
            return 404, b"no such statement"
        kind, party = parts.path.removeprefix("/statements/").removesuffix(".pdf").split("/", 1)
        expected = statement_link(
            "", kind, party, query.get("period", ""), query.get("expires", ""), pdf=True
        )
        if urlsplit(expected).query != parts.query:
            return 403, b"bad signature"
        return 200, pdf

    def serve(
        self, close: MonthClose, languages: dict[tuple[str, str], str] | None = None
    ) -> LedgerPdfServer:
        """Serve each party's PDF of ``close`` (French unless ``languages`` says otherwise)."""
        for key, view in close.views.items():
            self.pdfs[self.pdf_path(*key)] = statement_pdf(view, (languages or {}).get(key, "fr"))
        return self

    @staticmethod
    def pdf_path(kind: str, party_id: str) -> str:
        return f"/statements/{kind}/{party_id}.pdf"

    def fetched(self, kind: str, party_id: str) -> int:
        with self._lock:
            return self.requests.count(self.pdf_path(kind, party_id))

    def start(self) -> LedgerPdfServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# doubles --------------------------------------------------------------------------------


class FakeClock:
    """A settable, timezone-aware clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 11, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class FakeSender:
    """A channel that records deliveries; ``fail`` maps introducer ids to failures to raise
    (a count of failures before succeeding, or -1 for always)."""

    channel: Channel
    sent: list[Delivery] = field(default_factory=list)
    fail: dict[str, tuple[int, SendFailure]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0

    async def send(self, delivery: Delivery, accepted: Accepted) -> None:
        who = delivery.party.key
        self.attempts[who] = self.attempts.get(who, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if who in self.fail:
            count, failure = self.fail[who]
            if count < 0 or self.attempts[who] <= count:
                raise failure
        self.sent.append(delivery)
        accepted()

    async def close(self) -> None:
        return None


@dataclass
class FakeFetcher:
    """Stands in for the ledger's PDF links: answers ``pdf`` for any URL; ``fail`` maps a URL
    part to failures to raise first (a count, or -1 for always)."""

    pdf: bytes = b"%PDF-1.7\n% a statement\n%%EOF\n"
    fail: dict[str, tuple[int, SendFailure]] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    async def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        for part, (count, failure) in self.fail.items():
            if part in url and (count < 0 or sum(part in u for u in self.fetched) <= count):
                raise failure
        return self.pdf

    async def close(self) -> None:
        return None


@dataclass
class FakePublisher:
    notices: list[tuple[str, FailureNotice]] = field(default_factory=list)
    broken: bool = False

    async def publish(self, notice: FailureNotice, msg_id: str) -> None:
        if self.broken:
            raise ConnectionError("NATS is down")
        self.notices.append((msg_id, notice))


@dataclass
class CountingObserver:
    counts: dict[str, int] = field(default_factory=dict)

    def _add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def sent(self, channel: Channel) -> None:
        self._add(f"sent:{channel}")

    def failed(self, channel: Channel, reason: str) -> None:
        self._add(f"failed:{channel}:{reason}")

    def retried(self, channel: Channel) -> None:
        self._add(f"retried:{channel}")

    def send_seconds(self, channel: Channel, seconds: float) -> None:
        self._add(f"timed:{channel}")

    def duplicate(self, channel: Channel) -> None:
        self._add(f"duplicate:{channel}")

    def event(self, kind: str, state: str) -> None:
        self._add(f"event:{state}")

    def statement_sent(self, party_kind: str, channel: Channel) -> None:
        self._add(f"statement_sent:{party_kind}:{channel}")

    def statement_failed(self, party_kind: str, channel: Channel) -> None:
        self._add(f"statement_failed:{party_kind}:{channel}")


# real servers ---------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    rcpt_tos: list[str]
    raw: bytes
    #: when the sink accepted it (wall clock, just before its 250 went out)
    at: float = 0.0

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def alert_id(self) -> str:
        return str(self.message["X-Coop-Alert-Id"])

    @property
    def attachments(self) -> list[tuple[str, str, bytes]]:
        """(file name, content type, bytes) of each attachment."""
        out = []
        for part in self.message.iter_attachments():
            assert isinstance(part, EmailMessage)
            content = part.get_content()
            assert isinstance(content, bytes)
            out.append((str(part.get_filename()), part.get_content_type(), content))
        return out


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mails: list[ReceivedMail] = []
        self.reject: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.mails.append(
                ReceivedMail(list(envelope.rcpt_tos), bytes(envelope.original_content), time.time())
            )
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self.mails)


@dataclass
class ReceivedHook:
    path: str
    headers: dict[str, str]
    body: bytes
    #: when the receiver accepted it (wall clock, just before its 2xx went out)
    at: float = 0.0
    #: when its 2xx had been written to the connection (wall clock)
    written_at: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A real HTTP server on 127.0.0.1 (a thread) that records POSTs; ``status`` maps a path
    to the status it answers (200 by default)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hooks: list[ReceivedHook] = []
        self.status: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook = ReceivedHook(self.path, dict(self.headers.items()), body, time.time())
                with receiver._lock:
                    receiver.attempts[self.path] = receiver.attempts.get(self.path, 0) + 1
                    code = receiver.status.get(self.path, 200)
                    if 200 <= code < 300:
                        receiver.hooks.append(hook)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                hook.written_at = time.time()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, path: str | None = None) -> list[ReceivedHook]:
        with self._lock:
            return [h for h in self.hooks if path is None or h.path == path]


@dataclass
class NotifierProcess:
    """``notifier serve`` as a real child process."""

    nats_url: str
    data_dir: Path
    logs: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "NATS_URL": self.nats_url,
            "NOTIFIER_DATA_DIR": str(self.data_dir),
            "NOTIFIER_HTTP_PORT": str(self.http_port),
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_METRICS_POLL_S": "0.2",
            "NOTIFIER_FETCH_TIMEOUT_S": "1",
            "NOTIFIER_STREAM_WAIT_S": "0.3",
            "NOTIFIER_RETRY_DELAY_S": "0.3",
            **self.env_extra,
            **extra,
        }

    def start(self, wait_ready: bool = True, **extra: str) -> NotifierProcess:
        self.starts += 1
        log = (self.logs / f"notifier-{self.http_port}-{self.starts}.log").open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "notifier"), "serve"], env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT
        )
        if wait_ready:
            wait_for(lambda: self.get_json("/readyz")["ready"], 60, what="notifier /readyz")
        return self

    def get_json(self, path: str) -> Any:
        import urllib.error
        import urllib.request

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"notifier exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def run_cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(VENV_BIN / "notifier"), *args],
            env=self.env(**extra),
            capture_output=True,
            timeout=120,
            check=False,
        )


@contextlib.contextmanager
def running(*servers: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()


# the use cases on a real SQLite store, with doubles for the outside world ---------------------


@dataclass
class Rig:
    """Ingest, delivery, digests and resend on a real SQLite store with fake channels,
    publisher, clock and sleep."""

    ingestor: Ingestor
    deliverer: Deliverer
    digester: Digester
    resender: Resender
    store: SqliteAlertStore
    journal: FileSentJournal
    email: FakeSender
    webhook: FakeSender
    publisher: FakePublisher
    observer: CountingObserver
    clock: FakeClock
    sleeps: list[float]
    fetcher: FakeFetcher

    async def feed(self, envelopes: list[LedgerEnvelope]) -> None:
        """What the consumer does per message: ingest, then settle what it returned."""
        for env in envelopes:
            await self.deliverer.deliver_all(await self.ingestor.ingest(env))


async def inline(fn: Callable[..., T], /, *args: Any) -> T:
    """A runner that calls on the event loop (the tests' store is used from one thread)."""
    return fn(*args)


def make_rig(
    path: Path,
    *,
    max_attempts: int = 3,
    digest_mode: Literal["off", "daily"] = "off",
    digest_introducers: frozenset[str] = frozenset(),
    real_sleep: bool = False,
) -> Rig:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if real_sleep:
            await asyncio.sleep(seconds)

    store = SqliteAlertStore(path)
    journal = FileSentJournal(journal_directory(path))
    email_sender, webhook_sender = FakeSender("email"), FakeSender("webhook")
    publisher, observer, clock, fetcher = FakePublisher(), CountingObserver(), FakeClock(), FakeFetcher()
    senders: dict[Channel, Sender] = {"email": email_sender, "webhook": webhook_sender}
    digest = DigestPolicy(
        mode=digest_mode, introducers=digest_introducers, hour=7, zone=ZoneInfo("Europe/Zurich")
    )
    ingestor = Ingestor(
        store=store, observer=observer, digest=digest, channels=senders, clock=clock, run=inline
    )
    deliverer = Deliverer(
        store=store,
        renderer=Renderer(),
        senders=senders,
        publisher=publisher,
        journal=journal,
        observer=observer,
        policy=RetryPolicy(max_attempts=max_attempts, base_s=0.01, max_s=0.04, jitter=0.5),
        clock=clock,
        run=inline,
        render=inline,
        send_concurrency=4,
        sleep=fake_sleep,
        fetcher=fetcher,
    )
    digester = Digester(store=store, policy=digest, deliverer=deliverer, clock=clock, run=inline)
    resender = Resender(store=store, deliverer=deliverer, clock=clock, run=inline)
    return Rig(
        ingestor,
        deliverer,
        digester,
        resender,
        store,
        journal,
        email_sender,
        webhook_sender,
        publisher,
        observer,
        clock,
        sleeps,
        fetcher,
    )
