"""Monthly statements through the notifier's real wiring (``build_core``: SQLite store, store
and render threads, SMTP and webhook channels, the PDF fetcher) to a real aiosmtpd server, a
real HTTP receiver and a real HTTP server standing in for the ledger's statement PDFs: one
e-mail with the party's PDF and one signed webhook per statement, exactly once; PDF fetch
failures retried, refused, resent; links outside the ledger never fetched."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from notifier.adapters.pdf_fetcher import LedgerPdfFetcher
from notifier.application.ports import SendFailure
from notifier.bootstrap import Core, build_core, utc_now
from notifier.domain.events import AlertKey, LedgerEnvelope
from notifier.domain.signature import party_secret, verify_signature
from notifier.settings import NotifierSettings
from tests.notifier.support import (
    MONTH_LANGUAGES,
    FakePublisher,
    HttpReceiver,
    LedgerPdfServer,
    MonthClose,
    ReceivedMail,
    SmtpSink,
    expiry_in,
    month_close,
    month_directory,
    pdf_text,
    statement_link,
)

MASTER = "statements-master-secret"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def ledger() -> Iterator[LedgerPdfServer]:
    server = LedgerPdfServer().start()
    yield server
    server.stop()


def the_close(ledger: LedgerPdfServer, **kwargs: Any) -> MonthClose:
    """March's close with links on the stand-in ledger, valid for a month, its PDFs served."""
    close = month_close(base_url=ledger.base_url, expires=expiry_in(30), **kwargs)
    ledger.serve(close, MONTH_LANGUAGES)
    return close


def _core(
    tmp_path: Path,
    sink: SmtpSink,
    ledger: LedgerPdfServer,
    publisher: FakePublisher,
    clock: Callable[[], datetime] = utc_now,
) -> Core:
    settings = NotifierSettings(
        data_dir=tmp_path / "notifier",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        webhook_secret=MASTER,
        webhook_allow_hosts="127.0.0.1",
        ledger_url=ledger.base_url,
        max_attempts=3,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
    )
    return build_core(settings, publisher, clock)


async def _feed(core: Core, envelopes: list[LedgerEnvelope]) -> None:
    """What the consumer does per message: ingest, then settle what it returned."""
    for env in envelopes:
        await core.deliverer.deliver_all(await core.ingestor.ingest(env))


def _pdf_of(mail: ReceivedMail) -> tuple[str, bytes]:
    (part,) = [p for p in mail.message.iter_attachments() if isinstance(p, EmailMessage)]
    assert part.get_content_type() == "application/pdf"
    content = part.get_content()
    assert isinstance(content, bytes)
    return str(part.get_filename()), content


def _sent(core: Core, kind: str, channel: str) -> float:
    value = core.metrics.registry.get_sample_value(
        "notifier_statements_sent_total", {"party_kind": kind, "channel": channel}
    )
    return value or 0.0


@pytest.mark.asyncio
async def test_each_party_gets_its_statement_once_by_email_with_its_pdf_and_by_webhook(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """Each party with a figure gets one e-mail with its PDF and/or one signed webhook; redelivered or restarted: nothing more."""
    close = the_close(ledger)
    publisher = FakePublisher()
    core = _core(tmp_path, sink, ledger, publisher)
    try:
        await _feed(core, [*month_directory(receiver), *close.envelopes])
        mails = {m.rcpt_tos[0]: m for m in sink.received()}
        assert sorted(mails) == [
            "compta@dupont.example",
            "eva@example.org",
            "luc@example.org",
            "marie@example.org",
        ]
        assert len(sink.received()) == 4
        expected = {
            "compta@dupont.example": (
                "client",
                "cli-dupont",
                "fr",
                "Votre relevé de mars 2025 : commissions, marges et ristournes",
            ),
            "marie@example.org": (
                "introducer",
                "int-marie",
                "fr",
                "Votre relevé de commissions de mars 2025",
            ),
            "luc@example.org": (
                "adviser",
                "adv-luc",
                "en",
                "Statement for March 2025: introduction commissions on your invoices",
            ),
            "eva@example.org": (
                "adviser",
                "adv-eva",
                "fr",
                "Relevé de mars 2025 : commissions d'apport sur vos factures",
            ),
        }
        for address, (kind, party_id, language, subject) in expected.items():
            mail = mails[address]
            assert mail.alert_id == close.of(kind, party_id).id
            assert mail.subject == subject
            assert mail.message["Content-Language"] == language
            assert mail.message.get_content_type() == "multipart/mixed"
            name, pdf = _pdf_of(mail)
            assert name == f"statement-{kind}-{party_id}-2025-03.pdf"
            assert pdf == ledger.pdfs[ledger.pdf_path(kind, party_id)]
            assert close.of(kind, party_id).data["html_url"] in mail.text
            assert ledger.fetched(kind, party_id) == 1
        # the client's PDF, read back, has each commission line on its invoices: invoice,
        # introducer, rate, base, amount, and to whom it goes
        client = close.views[("client", "cli-dupont")]
        client_pdf = pdf_text(_pdf_of(mails["compta@dupont.example"])[1])
        for line in client["commissions"]:
            who = client["names"][line["introducer_id"]]
            to = "la coopérative (don)" if line["donor_id"] else client["names"][line["beneficiary_id"]]
            row = f"{who} {line['rate']} CHF {line['base']} CHF {line['amount']} {to}"
            pattern = rf"{line['invoice_id']} {line['invoice_date']} .*? {re.escape(row)}"
            assert re.search(pattern, client_pdf), row
        assert (
            "Versée à        : la coopérative, à qui Carl Berger en fait don"
            in mails["compta@dupont.example"].text
        )
        (tmp_path / "received-client-statement.eml").write_bytes(
            mails["compta@dupont.example"].raw
        )  # to read

        hooks = {h.path: h for h in receiver.received()}
        assert (
            sorted(hooks) == ["/hooks/carl", "/hooks/dupont", "/hooks/marie"]
            and len(receiver.received()) == 3
        )
        for path, (kind, party_id) in {
            "/hooks/carl": ("introducer", "int-carl"),
            "/hooks/dupont": ("client", "cli-dupont"),
            "/hooks/marie": ("introducer", "int-marie"),
        }.items():
            hook = hooks[path]
            key = party_secret(MASTER, kind, party_id)
            assert verify_signature(key, hook.headers["X-Coop-Signature"], hook.body, now=time.time())
            data = hook.json["data"]
            assert (data["party_kind"], data["party_id"]) == (kind, party_id)
            assert data.get("introducer_id") == (party_id if kind == "introducer" else None)
            assert (
                data["about"]["kind"] == "statement.issued"
                and data["about"]["id"] == hook.headers["X-Coop-Alert-Id"]
            )
            assert data["about"]["data"] == close.of(kind, party_id).data  # the statement and its links
            assert "(page et PDF)" in data["text"] or "(page and PDF)" in data["text"]
        assert ledger.fetched("introducer", "int-carl") == 0  # webhook only: no PDF fetched
        assert publisher.notices == []
        assert (_sent(core, "client", "email"), _sent(core, "client", "webhook")) == (1, 1)
        assert (_sent(core, "introducer", "email"), _sent(core, "introducer", "webhook")) == (1, 2)
        assert (_sent(core, "adviser", "email"), _sent(core, "adviser", "webhook")) == (2, 0)
        assert core.store.statement_backlog().unsettled == {}

        await _feed(core, [*close.envelopes, *month_directory(receiver)])  # the close redelivered
    finally:
        await core.close()
    again = _core(tmp_path, sink, ledger, publisher)  # a restart on the same store
    try:
        await _feed(again, close.envelopes)
    finally:
        await again.close()
    assert len(sink.received()) == 4 and len(receiver.received()) == 3
    assert sum(ledger.fetched(kind, party) for kind, party in close.views) == 4


@pytest.mark.asyncio
async def test_a_pdf_fetch_failing_twice_is_retried_and_the_statement_sent_once(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """The client's PDF answers 503 twice: the third attempt fetches it and the e-mail is sent once."""
    close = the_close(ledger)
    path = ledger.pdf_path("client", "cli-dupont")
    ledger.fail_next[path] = [503, 503]
    publisher = FakePublisher()
    core = _core(tmp_path, sink, ledger, publisher)
    try:
        await _feed(core, [*month_directory(receiver), close.of("client", "cli-dupont")])
        record = core.store.alert(AlertKey(close.of("client", "cli-dupont").id, "email"))
        assert record is not None and (record.status, record.attempts) == ("sent", 3)
        retries = core.metrics.registry.get_sample_value("notifier_retries_total", {"channel": "email"})
        assert retries == 2
    finally:
        await core.close()
    (mail,) = sink.received()
    assert _pdf_of(mail)[1] == ledger.pdfs[path] and ledger.fetched("client", "cli-dupont") == 3
    assert len(receiver.received("/hooks/dupont")) == 1 and publisher.notices == []


@pytest.mark.asyncio
async def test_a_refused_pdf_fails_the_email_and_resend_failed_sends_it_once_the_link_works(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """A 403 on the PDF fails the e-mail (notice, metric, backlog); resend-failed sends it once the link works."""
    close = the_close(ledger)
    path = ledger.pdf_path("client", "cli-dupont")
    ledger.status[path] = 403
    publisher = FakePublisher()
    core = _core(tmp_path, sink, ledger, publisher)
    statement = close.of("client", "cli-dupont")
    try:
        await _feed(core, [*month_directory(receiver), statement])
        assert sink.received() == [] and ledger.fetched("client", "cli-dupont") == 1
        assert len(receiver.received("/hooks/dupont")) == 1
        ((msg_id, notice),) = publisher.notices
        assert msg_id == f"{statement.id}#email#failed-1"
        assert (notice.event_id, notice.channel, notice.reason, notice.attempts) == (
            statement.id,
            "email",
            "pdf_http_4xx",
            1,
        )
        assert (notice.party_kind, notice.party_id, notice.introducer_id) == ("client", "cli-dupont", None)
        failed = core.metrics.registry.get_sample_value(
            "notifier_statements_failed_total", {"party_kind": "client", "channel": "email"}
        )
        assert failed == 1
        backlog = core.store.statement_backlog()
        assert backlog.unsettled == {"client": 1} and backlog.oldest_unsettled is not None
        core.metrics.statement_backlog(backlog, datetime.now(UTC))
        assert (
            core.metrics.registry.get_sample_value("notifier_statements_pending", {"party_kind": "client"})
            == 1
        )

        del ledger.status[path]
        assert await core.resender.resend_failed() == {"claimed": 1, "sent": 1, "failed": 0}
        assert await core.resender.resend_failed() == {"claimed": 0, "sent": 0, "failed": 0}
        await _feed(core, [statement])  # and the close redelivered
        assert core.store.statement_backlog().unsettled == {}
        assert _sent(core, "client", "email") == 1
    finally:
        await core.close()
    (mail,) = sink.received()
    assert mail.alert_id == statement.id and _pdf_of(mail)[1] == ledger.pdfs[path]
    assert len(publisher.notices) == 1


@pytest.mark.asyncio
async def test_an_expired_link_fails_the_email_without_fetching(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """Past link_expires the e-mail fails (link_expired) without a fetch; the webhook is still sent."""
    close = the_close(ledger)
    publisher = FakePublisher()
    settings_clock = datetime(2099, 1, 1, tzinfo=UTC)
    core = _core(tmp_path, sink, ledger, publisher, clock=lambda: settings_clock)
    try:
        await _feed(core, [*month_directory(receiver), close.of("client", "cli-dupont")])
    finally:
        await core.close()
    assert sink.received() == [] and ledger.fetched("client", "cli-dupont") == 0
    assert [(n.reason, n.attempts) for _, n in publisher.notices] == [("link_expired", 1)]
    assert len(receiver.received("/hooks/dupont")) == 1


@pytest.mark.asyncio
async def test_a_pdf_link_outside_the_ledger_is_never_fetched(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """A pdf_url outside NOTIFIER_LEDGER_URL is never requested; the e-mail fails at once (pdf_refused)."""
    elsewhere = LedgerPdfServer().start()
    try:
        close = month_close(base_url=elsewhere.base_url, expires=expiry_in(30))
        elsewhere.serve(close)
        publisher = FakePublisher()
        core = _core(tmp_path, sink, ledger, publisher)
        try:
            await _feed(core, [*month_directory(receiver), close.of("client", "cli-dupont")])
        finally:
            await core.close()
        assert elsewhere.requests == [] and ledger.requests == [] and sink.received() == []
        assert [(n.reason, n.attempts) for _, n in publisher.notices] == [("pdf_refused", 1)]
    finally:
        elsewhere.stop()


@pytest.mark.asyncio
async def test_statements_wait_for_their_partys_registration(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver, ledger: LedgerPdfServer
) -> None:
    """A close arriving before the registrations waits; each registration then sends its party's statement once."""
    close = the_close(ledger)
    publisher = FakePublisher()
    core = _core(tmp_path, sink, ledger, publisher)
    try:
        await _feed(core, close.envelopes)
        assert sink.received() == [] and receiver.received() == []
        assert core.store.statement_backlog().waiting == {"introducer": 2, "client": 1, "adviser": 2}
        await _feed(core, month_directory(receiver))
        assert core.store.statement_backlog().waiting == {}
    finally:
        await core.close()
    assert Counter(m.alert_id for m in sink.received()) == {
        close.of(k, p).id: 1
        for k, p in [
            ("client", "cli-dupont"),
            ("introducer", "int-marie"),
            ("adviser", "adv-luc"),
            ("adviser", "adv-eva"),
        ]
    }
    assert len(receiver.received()) == 3


@pytest.mark.asyncio
async def test_a_public_link_is_fetched_from_the_ledgers_internal_address(ledger: LedgerPdfServer) -> None:
    """With a public base (what parties see) the PDF of a public link is fetched from the
    ledger's internal address; a link under the internal address itself is then refused."""
    public = "https://ledger.coop.example"
    inside = statement_link(ledger.base_url, "client", "c-1", "2025-03", expiry_in(1), pdf=True)
    outside = public + inside.removeprefix(ledger.base_url)
    ledger.pdfs[ledger.pdf_path("client", "c-1")] = pdf = b"%PDF-1.7\n" + b"1" * 1000
    fetcher = LedgerPdfFetcher(base_url=ledger.base_url, public_base_url=public, timeout_s=5, concurrency=2)
    try:
        assert await fetcher.fetch(outside) == pdf
        with pytest.raises(SendFailure) as failure:
            await fetcher.fetch(inside)
        assert failure.value.reason == "pdf_refused"
    finally:
        await fetcher.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "body", "reason", "permanent"),
    [
        (200, b"<html>sign in</html>", "pdf_invalid", True),
        (429, b"", "pdf_http_429", False),
        (408, b"", "pdf_http_429", False),
        (503, b"", "pdf_http_5xx", False),
        (404, b"", "pdf_http_4xx", True),
        (302, b"", "pdf_http_3xx", True),
    ],
)
async def test_the_pdf_fetcher_maps_what_the_ledger_answers(
    ledger: LedgerPdfServer, status: int, body: bytes, reason: str, permanent: bool
) -> None:
    """Non-PDF, 4xx and 3xx answers are permanent, 408/429/5xx transient; then a real PDF is returned as is."""
    url = statement_link(ledger.base_url, "client", "c-1", "2025-03", expiry_in(1), pdf=True)
    path = ledger.pdf_path("client", "c-1")
    ledger.pdfs[path] = body
    if status != 200:
        ledger.status[path] = status
    fetcher = LedgerPdfFetcher(base_url=ledger.base_url, timeout_s=5, concurrency=2)
    try:
        with pytest.raises(SendFailure) as failure:
            await fetcher.fetch(url)
        assert (failure.value.reason, failure.value.permanent) == (reason, permanent)
        ledger.status.clear()
        ledger.pdfs[path] = pdf = b"%PDF-1.7\n" + b"0" * 200_000
        assert await fetcher.fetch(url) == pdf
    finally:
        await fetcher.close()
