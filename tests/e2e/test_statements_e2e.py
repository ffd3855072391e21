"""Monthly statements end to end: a real nats-server, `ledger serve`, `notifier serve` and an
SMTP server (aiosmtpd). Closing March sends each introducer, client and adviser with
figures one e-mail with its PDF fetched from the ledger's signed link; the figures are
`ledger report --period`'s; a party with nothing that month gets nothing; a notifier
SIGKILLed mid-way and a re-published close send nothing twice."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path

from tests.conftest import envelope
from tests.e2e.test_notifier_e2e import consumer, notifier, sink  # noqa: F401  (fixture)
from tests.notifier.support import SmtpSink, month_lines, pdf_text, report_rows
from tests.support.jetstream import publish_raw
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

PERIOD = "2025-03"
#: Who is registered with an e-mail (introducers come from month_lines: int-marie has one).
CONTACTS = {
    ("client", "cli-dupont"): "compta@dupont.example",
    ("client", "cli-nobody"): "nobody@client.example",
    ("adviser", "adv-luc"): "luc@coop.example",
    ("adviser", "adv-eva"): "eva@coop.example",
    ("adviser", "adv-idle"): "idle@coop.example",
}
#: Who has anything in March, and so gets its statement by e-mail (int-carl has no e-mail).
TOLD = {
    "marie@example.org": "introducer/int-marie",
    "compta@dupont.example": "client/cli-dupont",
    "luc@coop.example": "adviser/adv-luc",
    "eva@coop.example": "adviser/adv-eva",
}


def contacts() -> list[str]:
    out = []
    for (kind, ident), address in CONTACTS.items():
        data = {f"{kind}_id": ident, "display_name": ident.title(), "email": address, "language": "fr"}
        out.append(envelope(f"{kind}.registered", data, id=f"reg-{kind}-{ident}"))
    return out


def publish_file(nats: NatsServer, path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")
    summary = json.loads(run_cli("publish", str(path), env={"NATS_URL": nats.url}).stdout)
    assert summary["published"] == len(lines), summary


def statements_of(mails: list) -> Counter[str]:
    return Counter(m.alert_id for m in mails if ":statement.issued:" in m.alert_id)


def test_closing_a_month_tells_every_party_once_with_its_pdf(
    tmp_path: Path,
    nats: NatsServer,
    sink: SmtpSink,  # noqa: F811
) -> None:
    """One statement e-mail per party with figures (introducer, client, advisers), none for
    a client and an adviser with nothing in March; the rows equal `ledger report --period`;
    the client's PDF lists each commission on its invoices; a SIGKILL of the notifier after
    its first statement and the close published again send nothing twice."""
    db = tmp_path / "ledger.db"
    ledger = LedgerProcess(nats.url, f"sqlite:///{db}", tmp_path)
    ledger.env_extra = {"LEDGER_PUBLIC_URL": ledger.http, "LEDGER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1"}
    ledger.start()
    service = notifier(tmp_path, nats, sink.port, NOTIFIER_LEDGER_URL=ledger.http).start()
    try:
        lines = contacts() + month_lines()
        publish_file(nats, tmp_path / "month.jsonl", lines)
        wait_for(lambda: len(statements_of(sink.received())) >= 1, 120, what="a first statement")
        service.kill()  # mid-way: at least one sent, probably not all, maybe not acked
        publish_raw(nats.url, [("ledger.in.period", lines[-1].encode(), "close-again")])
        service.start()
        wait_for(lambda: len(statements_of(sink.received())) >= len(TOLD), 120, what="every statement")
        wait_for(lambda: ledger.settled(len(lines)), 60, what="ledger settled")
        wait_for(lambda: _acked(nats.url), 60, what="notifier acked everything")

        mails = [m for m in sink.received() if ":statement.issued:" in m.alert_id]
        assert all(count == 1 for count in statements_of(mails).values()), statements_of(mails)
        assert {m.rcpt_tos[0]: m.alert_id.split(":statement.issued:")[1] for m in mails} == {
            address: f"{who}/{PERIOD}" for address, who in TOLD.items()
        }
        report = json.loads(
            run_cli(
                "report", "--period", PERIOD, "--format", "json", env={"LEDGER_STORE_URL": f"sqlite:///{db}"}
            ).stdout
        )
        for mail in mails:
            kind, party_id = TOLD[mail.rcpt_tos[0]].split("/")
            for row in report_rows(report, kind, party_id):
                for value in row["closing"].values():
                    assert value in mail.text.replace("\u2019", "").replace("'", ""), (kind, value)
            [(name, content_type, pdf)] = mail.attachments
            assert name == f"statement-{kind}-{party_id}-{PERIOD}.pdf" and content_type == "application/pdf"
            assert pdf.startswith(b"%PDF-") and party_id in pdf_text(pdf)
        client = next(m for m in mails if m.rcpt_tos == ["compta@dupont.example"])
        text = pdf_text(client.attachments[0][2])
        for commission in report["details"]["commissions"]:
            if commission["client_id"] == "cli-dupont":
                assert commission["invoice_id"] in text and commission["amount"] in text, commission
        link = next(line for line in client.text.splitlines() if "/statements/client/cli-dupont?" in line)
        with urllib.request.urlopen(link.strip(), timeout=30) as page:
            assert page.status == 200 and b"2025-031" in page.read()
    finally:
        service.kill()
        ledger.kill()


def _acked(url: str) -> bool:
    floor, last, unacked, undelivered = consumer(url)
    return floor == last and unacked == undelivered == 0
