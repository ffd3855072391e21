"""`notifier serve` end to end: worked examples published through a real `ledger serve` on a
real nats-server reach a real SMTP server (aiosmtpd) and a real HTTP receiver, once each,
in the introducer's language, through a SIGKILL, a re-publication, an SMTP outage and a
webhook that never answers 2xx; a void (rules R8) gives one correction per commission line;
a payout tells the introducer paid once, through a SIGKILL and a re-publication."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats as nats_client
import pytest

from notifier.domain.signature import introducer_secret, verify_signature
from tests.conftest import EXAMPLES, envelope
from tests.notifier.support import (
    PAYOUT_BANK_REF,
    PAYOUT_E2E,
    PAYOUT_RUN,
    HttpReceiver,
    NotifierProcess,
    SmtpSink,
    introducer_line,
    introduction_lines,
    payout_lines,
)
from tests.support.jetstream import publish_raw, read_stream
from tests.support.servers import LedgerProcess, NatsServer, free_port, run_cli, wait_for

MASTER = "e2e-master-secret"
NBSP = "\u00a0"
MARIE = [
    "3:commission.accrued:2025-0311/intro-100",
    "4:commission.payable:2025-0311/intro-100",
    "5:commission.accrued:2025-0920/intro-100",
    "6:commission.adjusted:2025-0920/intro-100",
    "7:commission.accrued:2026-0311/intro-100",
    "9:payout.recorded:po-marie-1",
]
MARIE_SUBJECTS = [
    f"Nouvelle commission : CHF{NBSP}240.00 sur la facture 2025-0311",
    f"Commission exigible : CHF{NBSP}240.00 sur la facture 2025-0311",
    f"Nouvelle commission : CHF{NBSP}180.00 sur la facture 2025-0920",
    f"Commission ajustée : CHF{NBSP}150.00 sur la facture 2025-0920",
    f"Nouvelle commission : CHF{NBSP}50.00 sur la facture 2026-0311",
    f"Versement enregistré : CHF{NBSP}200.00 sur vos commissions",
]

VOID_REASON = "apport enregistré pour la mauvaise apporteuse"
#: The commission lines of example 01's introduction, each taken back by its void (position 10).
MARIE_CORRECTIONS = [
    "10:commission.adjusted:2025-0311/intro-100",
    "10:commission.adjusted:2025-0920/intro-100",
    "10:commission.adjusted:2026-0311/intro-100",
]


def example(name: str) -> list[str]:
    return (EXAMPLES / f"{name}.jsonl").read_text().splitlines()


def extras(receiver: HttpReceiver) -> list[str]:
    """More introducers: English with e-mail and webhook (EUR), webhook only (JPY), a French
    donor by webhook (EUR), and one whose commission is published before her registration."""
    return [
        introducer_line(
            "int-john",
            language="en",
            email_addr="john@example.org",
            webhook_url=receiver.url("/hooks/john"),
            name="John Smith",
        ),
        *introduction_lines("int-john", "cli-euro", "EUR", "1234.50", paid=True),
        introducer_line("int-kenji", language="en", webhook_url=receiver.url("/hooks/kenji"), name="Kenji"),
        *introduction_lines("int-kenji", "cli-tokyo", "JPY", "123456"),
        introducer_line("int-nora", language="fr", webhook_url=receiver.url("/hooks/nora"), name="Nora"),
        *introduction_lines("int-nora", "cli-paris", "EUR", "750.00", donor=True),
        *introduction_lines("int-late", "cli-late", "CHF", "500.00"),
        introducer_line("int-late", language="fr", email_addr="late@example.org", name="Léa"),
    ]


def publish(nats: NatsServer, tmp_path: Path, lines: list[str], name: str = "history") -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = json.loads(run_cli("publish", str(path), env={"NATS_URL": nats.url}).stdout)
    assert summary["published"] == len(lines), summary


async def _consumer(url: str) -> tuple[int, int, int, int]:
    nc = await nats_client.connect(url)
    try:
        js = nc.jetstream()
        info = await js.consumer_info("LEDGER_OUT", "notifier-v1")
        stream = await js.stream_info("LEDGER_OUT")
        return info.ack_floor.stream_seq, stream.state.last_seq, info.num_ack_pending, info.num_pending
    finally:
        await nc.close()


def consumer(url: str) -> tuple[int, int, int, int]:
    """(ack floor, last sequence of LEDGER_OUT, messages delivered not acked, not delivered)."""
    return asyncio.run(_consumer(url))


def settled(url: str, ledger: LedgerProcess, facts: int) -> bool:
    """Every fact stored and published by the ledger, and every ledger.out message acked."""
    if not ledger.settled(facts):
        return False
    floor, last, unacked, undelivered = consumer(url)
    return floor == last and unacked == undelivered == 0


def by_alert(mails: list) -> Counter[str]:
    return Counter(m.alert_id for m in mails)


@pytest.fixture
def ledger_service(tmp_path: Path, nats: NatsServer) -> Iterator[LedgerProcess]:
    """The ledger on SQLite only: the notifier does not depend on the ledger's store."""
    service = LedgerProcess(
        nats.url,
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        tmp_path,
        # the receivers are on loopback: the ledger refuses such webhook URLs unless allow-listed
        env_extra={"LEDGER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1,localhost"},
    )
    service.start()
    yield service
    service.kill()


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


_STARTED: list[NotifierProcess] = []


@pytest.fixture(autouse=True)
def _no_notifier_outlives_its_test() -> Iterator[None]:
    """Every notifier a test made is killed when the test ends, passed or failed."""
    yield
    while _STARTED:
        _STARTED.pop().kill()


def notifier(tmp_path: Path, nats: NatsServer, smtp_port: int, **env: str) -> NotifierProcess:
    process = NotifierProcess(
        nats.url,
        tmp_path / "notifier-data",
        tmp_path,
        env_extra={
            "NOTIFIER_SMTP_HOST": "127.0.0.1",
            "NOTIFIER_SMTP_PORT": str(smtp_port),
            "NOTIFIER_WEBHOOK_SECRET": MASTER,
            "NOTIFIER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "NOTIFIER_BACKOFF_BASE_S": "0.1",
            "NOTIFIER_BACKOFF_MAX_S": "0.4",
            "NOTIFIER_ACK_WAIT_S": "2",
            **env,
        },
    )
    _STARTED.append(process)
    return process


def test_worked_examples_arrive_once_in_the_right_language(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """Examples 01/03 and four more introducers: each alert arrives once, in its language, amounts right, signed."""
    service = notifier(tmp_path, nats, sink.port).start()
    lines = example("01-standard-introduction") + example("03-donation-and-rebates") + extras(receiver)
    publish(nats, tmp_path, lines)
    wait_for(lambda: len(sink.received()) >= 9 and len(receiver.received()) >= 4, 60, what="alerts")
    wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 60, what="every message acked")
    time.sleep(0.5)  # anything extra would show up now

    mails = sink.received()
    assert (
        sorted(m.rcpt_tos[0] for m in mails)
        == ["john@example.org"] * 2 + ["late@example.org"] + ["marie@example.org"] * 6
    )
    assert all(count == 1 for count in by_alert(mails).values())
    marie = sorted(
        (m for m in mails if m.rcpt_tos == ["marie@example.org"]), key=lambda m: int(m.alert_id.split(":")[0])
    )
    assert [m.alert_id for m in marie] == MARIE
    assert [m.subject for m in marie] == MARIE_SUBJECTS
    assert all(m.message["Content-Language"] == "fr" for m in marie)
    assert f"acquis         : CHF{NBSP}440.00" in marie[-1].text
    assert f"Écart           : CHF{NBSP}-30.00" in marie[3].text
    john = sorted(m.subject for m in mails if m.rcpt_tos == ["john@example.org"])
    assert john == [
        "Commission payable: €123.45 on invoice inv-cli-euro",
        "New commission: €123.45 on invoice inv-cli-euro",
    ]
    (late,) = [m for m in mails if m.rcpt_tos == ["late@example.org"]]
    assert late.subject == f"Nouvelle commission : CHF{NBSP}50.00 sur la facture inv-cli-late"
    assert late.text.startswith("Bonjour Léa,")

    hooks = receiver.received()
    assert Counter(h.path for h in hooks) == {"/hooks/john": 2, "/hooks/kenji": 1, "/hooks/nora": 1}
    assert len({h.headers["X-Coop-Alert-Id"] for h in hooks}) == 4
    for hook in hooks:
        who = hook.json["data"]["introducer_id"]
        key = introducer_secret(MASTER, who)
        assert verify_signature(key, hook.headers["X-Coop-Signature"], hook.body, now=time.time()), who
        tampered = hook.body.replace(b'"amount"', b'"amount" ', 1)
        assert not verify_signature(key, hook.headers["X-Coop-Signature"], tampered, now=time.time())
    (kenji,) = receiver.received("/hooks/kenji")
    assert kenji.json["data"]["subject"] == "New commission: JP¥12,346 on invoice inv-cli-tokyo"
    (nora,) = receiver.received("/hooks/nora")
    assert (
        nora.json["data"]["subject"]
        == f"Merci : votre commission de 75,00{NBSP}€ a été créditée à la coopérative"
    )
    assert nora.json["data"]["about"]["kind"] == "donation.credited"

    # kept next to the test's logs, for people to look at what an introducer receives
    (tmp_path / "received-email.eml").write_bytes(marie[0].raw)
    (tmp_path / "received-webhook.json").write_text(
        json.dumps({"headers": kenji.headers, "body": kenji.body.decode()}, indent=2, ensure_ascii=False)
    )
    assert service.metric("notifier_alerts_sent_total", {"channel": "email"}) == 9
    assert service.metric("notifier_alerts_sent_total", {"channel": "webhook"}) == 4
    assert service.metric("notifier_alerts_failed_total") == 0
    assert service.terminate() == 0


def test_republished_event_sends_nothing(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink
) -> None:
    """An event re-published with the same id (same or new Nats-Msg-Id) sends nothing."""
    service = notifier(tmp_path, nats, sink.port).start()
    lines = example("01-standard-introduction")
    publish(nats, tmp_path, lines)
    wait_for(
        lambda: settled(nats.url, ledger_service, len(lines)) and len(sink.received()) == len(MARIE),
        60,
        what="alerts",
    )
    msg_id, body = next((i, b) for i, b in read_stream(nats.url, "LEDGER_OUT") if i == MARIE[0])
    raw = json.dumps(body).encode()
    assert publish_raw(nats.url, [("ledger.out.commission.accrued", raw, msg_id)]) == [True]
    assert publish_raw(nats.url, [("ledger.out.commission.accrued", raw, "replayed-by-hand-1")]) == [False]
    wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 30, what="the copy acked")
    time.sleep(0.5)
    assert by_alert(sink.received()) == dict.fromkeys(MARIE, 1)
    assert service.metric("notifier_alerts_sent_total") == len(MARIE)


def test_sigkill_between_send_and_ack_sends_no_duplicate(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink
) -> None:
    """SIGKILL after the sends and before the acks, then restart: every message redelivered, no alert twice."""
    service = notifier(tmp_path, nats, sink.port)
    service.start(NOTIFIER_ACK_DELAY_S="60")
    lines = example("01-standard-introduction")
    publish(nats, tmp_path, lines)
    wait_for(lambda: len(sink.received()) == len(MARIE), 60, what="int-marie's six alerts")
    wait_for(
        lambda: consumer(nats.url)[2] > 0 and consumer(nats.url)[0] == 0, 10, what="messages held unacked"
    )
    service.kill()
    floor, last, unacked, _ = consumer(nats.url)
    assert floor == 0 and last > 0 and unacked > 0
    service.start()
    wait_for(
        lambda: settled(nats.url, ledger_service, len(lines)), 60, what="every message acked after restart"
    )
    time.sleep(0.5)
    assert by_alert(sink.received()) == dict.fromkeys(MARIE, 1)
    assert service.metric("notifier_alerts_sent_total") == 0  # the new process sent nothing


def test_smtp_down_then_up_delivers_everything_once(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, receiver: HttpReceiver
) -> None:
    """SMTP down then up: e-mails retried (webhooks unaffected), then each delivered once, none failed."""
    sink = SmtpSink(port=free_port())  # not started: connections are refused
    service = notifier(tmp_path, nats, sink.port, NOTIFIER_MAX_ATTEMPTS="40").start()
    lines = (
        example("01-standard-introduction") + extras(receiver)[:4]
    )  # marie, and john (e-mail + webhook, paid)
    publish(nats, tmp_path, lines)
    try:
        wait_for(
            lambda: service.metric("notifier_retries_total", {"channel": "email"}) >= 10, 60, what="retries"
        )
        # the dead SMTP server blocks no webhook: they arrive while it is still down
        wait_for(lambda: len(receiver.received("/hooks/john")) == 2, 60, what="webhooks while SMTP is down")
        assert consumer(nats.url)[2] > 0  # the e-mails' messages are held, not acked
        sink.start()
        wait_for(lambda: len(sink.received()) >= 8, 60, what="e-mails after recovery")
        wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 60, what="every message acked")
        time.sleep(0.5)
        counts = by_alert(sink.received())
        assert len(counts) == 8 and set(counts.values()) == {1}
        assert service.metric("notifier_alerts_failed_total") == 0
    finally:
        sink.stop()


def test_failing_webhook_ends_on_notifier_failed_and_can_be_resent(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """A 503 webhook gets the configured attempts then notifier.failed; others unaffected; resend-failed delivers once."""
    receiver.status["/hooks/broken"] = 503
    service = notifier(tmp_path, nats, sink.port, NOTIFIER_MAX_ATTEMPTS="3").start()
    lines = [
        *example("01-standard-introduction"),
        introducer_line("int-broken", language="en", webhook_url=receiver.url("/hooks/broken")),
        *introduction_lines("int-broken", "cli-b", "CHF", "1000.00", paid=True),
        introducer_line("int-ok", language="en", webhook_url=receiver.url("/hooks/ok")),
        *introduction_lines("int-ok", "cli-o", "EUR", "200.00", paid=True),
    ]
    publish(nats, tmp_path, lines)
    wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 60, what="every message settled")
    notices = [body for _, body in read_stream(nats.url, "NOTIFIER_FAILED")]
    assert sorted(n["event_id"].split(":")[1] for n in notices) == [
        "commission.accrued",
        "commission.payable",
    ]
    assert {(n["introducer_id"], n["channel"], n["reason"], n["attempts"]) for n in notices} == {
        ("int-broken", "webhook", "http_5xx", 3)
    }
    assert receiver.attempts["/hooks/broken"] == 6
    assert len(receiver.received("/hooks/ok")) == 2 and len(sink.received()) == len(MARIE)
    assert service.metric("notifier_alerts_failed_total", {"channel": "webhook", "reason": "http_5xx"}) == 2

    receiver.status["/hooks/broken"] = 200
    result = service.run_cli("resend-failed")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads(result.stdout) == {"claimed": 2, "sent": 2, "failed": 0}
    assert Counter(h.headers["X-Coop-Alert-Id"] for h in receiver.received("/hooks/broken")) == {
        n["event_id"]: 1 for n in notices
    }
    again = service.run_cli("resend-failed")
    assert json.loads(again.stdout) == {"claimed": 0, "sent": 0, "failed": 0}
    assert len(read_stream(nats.url, "NOTIFIER_FAILED")) == 2


def test_voided_introduction_sends_one_correction_per_commission_line(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink
) -> None:
    """Example 01 then a void of its introduction: int-marie gets one French correction
    e-mail per commission line, with the reason; a re-published correction sends nothing."""
    service = notifier(tmp_path, nats, sink.port).start()
    lines = example("01-standard-introduction")
    publish(nats, tmp_path, lines)
    wait_for(
        lambda: settled(nats.url, ledger_service, len(lines)) and len(sink.received()) == len(MARIE),
        60,
        what="example 01's alerts",
    )
    void = envelope(
        "fact.voided",
        {
            "void_id": "void-intro-100",
            "target_type": "introduction",
            "target_id": "intro-100",
            "date": "2026-04-02",
            "reason": VOID_REASON,
            "requested_by": "tre-ana",
            "approved_by": "tre-luc",
        },
        id="void-1",
    )
    publish(nats, tmp_path, [void], name="void")
    # settled: every ledger.out message acked, so every alert it caused was sent before
    wait_for(lambda: settled(nats.url, ledger_service, len(lines) + 1), 60, what="the void's events acked")
    corrections = sorted(sink.received()[len(MARIE) :], key=lambda m: m.alert_id)
    assert [m.alert_id for m in corrections] == MARIE_CORRECTIONS
    assert [m.subject for m in corrections] == [
        f"Correction : commission de CHF{NBSP}240.00 reprise sur la facture 2025-0311",
        f"Correction : commission de CHF{NBSP}150.00 reprise sur la facture 2025-0920",
        f"Correction : commission de CHF{NBSP}50.00 reprise sur la facture 2026-0311",
    ]
    for mail in corrections:
        assert mail.rcpt_tos == ["marie@example.org"]
        assert mail.message["Content-Language"] == "fr"
        assert f"Motif donné     : {VOID_REASON}" in mail.text
        assert "un fait avait été enregistré par erreur : l'apport intro-100." in mail.text
    assert (
        f"Exigible        : CHF{NBSP}0.00 sur cette facture (auparavant CHF{NBSP}240.00)"
        in corrections[0].text
    )
    assert f"reste à verser : CHF{NBSP}-200.00" in corrections[-1].text
    (tmp_path / "received-correction.eml").write_bytes(corrections[0].raw)  # for people to read

    body = next(b for i, b in read_stream(nats.url, "LEDGER_OUT") if i == MARIE_CORRECTIONS[0])
    assert body["data"]["cause"]["reason"] == VOID_REASON
    raw = json.dumps(body).encode()
    assert publish_raw(nats.url, [("ledger.out.commission.adjusted", raw, "correction-replayed-1")]) == [
        False
    ]
    wait_for(lambda: settled(nats.url, ledger_service, len(lines) + 1), 30, what="the copy acked")
    assert by_alert(sink.received()) == dict.fromkeys(MARIE + MARIE_CORRECTIONS, 1)
    assert service.metric("notifier_events_total", {"kind": "fact.voided", "state": "ignored"}) == 1
    assert service.metric("notifier_events_total", {"state": "invalid"}) == 0
    assert service.terminate() == 0


def test_a_payout_sends_one_email_through_a_sigkill_and_a_republication(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """payout.recorded from `ledger serve`: one e-mail per payout to the introducer paid (none for the
    cooperative's), also after a SIGKILL before the acks and a re-publication under a new message id."""
    ana_payout, john_payout = f"5:payout.recorded:{PAYOUT_E2E}", "9:payout.recorded:po-john-1"
    service = notifier(tmp_path, nats, sink.port)
    service.start(NOTIFIER_ACK_DELAY_S="60")  # sends, then holds its acks
    lines = payout_lines(ana_webhook=receiver.url("/hooks/ana"))
    publish(nats, tmp_path, lines)
    wait_for(lambda: len(sink.received()) == 6 and len(receiver.received()) == 3, 60, what="the alerts")
    wait_for(lambda: consumer(nats.url)[2] > 0 and consumer(nats.url)[0] == 0, 10, what="acks held")
    wait_for(
        lambda: service.metric("notifier_events_total", {"kind": "payout.recorded", "state": "ignored"}) == 1,
        10,
        what="the cooperative's payout recorded as telling nobody",
    )
    service.kill()
    service.start()  # JetStream redelivers every message to the new process
    wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 60, what="every message acked")
    assert service.metric("notifier_alerts_sent_total") == 0  # the new process sent nothing

    body = next(b for i, b in read_stream(nats.url, "LEDGER_OUT") if i == ana_payout)
    assert (body["type"], body["data"]["run_id"]) == ("coop.ledger.out.payout.recorded.v1", PAYOUT_RUN)
    raw = json.dumps(body).encode()
    assert publish_raw(nats.url, [("ledger.out.payout.recorded", raw, "payout-replayed-1")]) == [False]
    wait_for(lambda: settled(nats.url, ledger_service, len(lines)), 30, what="the copy acked")
    time.sleep(0.5)  # anything extra would show up now

    mails = sink.received()
    assert set(by_alert(mails).values()) == {1} and len(mails) == 6
    payouts = {m.alert_id: m for m in mails if ":payout.recorded:" in m.alert_id}
    assert sorted(payouts) == [ana_payout, john_payout]
    ana, john = payouts[ana_payout], payouts[john_payout]
    assert ana.rcpt_tos == ["ana@example.org"]
    assert ana.subject == f"Virement effectué : CHF{NBSP}120.50 sur votre compte"
    for needle in (PAYOUT_RUN, PAYOUT_E2E, PAYOUT_BANK_REF, f"reste à verser : CHF{NBSP}120.50"):
        assert needle in ana.text, (needle, ana.text)
    assert john.rcpt_tos == ["john@example.org"]
    assert john.subject == "Payout recorded: €50.00 of your commissions"
    assert Counter(h.headers["X-Coop-Alert-Id"] for h in receiver.received("/hooks/ana"))[ana_payout] == 1
    (tmp_path / "received-payout.eml").write_bytes(ana.raw)  # for people to read
    assert service.metric("notifier_events_total", {"state": "invalid"}) == 0
    assert service.terminate() == 0
