"""Corrections (rules R8 voids) through the notifier's real wiring (``build_core``: SQLite
store, store and render threads, SMTP and webhook channels) to a real aiosmtpd server and a
real HTTP receiver on loopback: one correction per voided commission line, with the reason,
exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.bootstrap import Core, build_core
from notifier.domain.events import LedgerEnvelope
from notifier.domain.signature import introducer_secret, verify_signature
from notifier.settings import NotifierSettings
from tests.conftest import EXAMPLES, envelope
from tests.notifier.support import FakePublisher, HttpReceiver, SmtpSink, derived_envelopes, introducer_line
from tests.notifier.unit.test_corrections import void_line

MASTER = "corrections-master-secret"
EXAMPLE_01 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
MARIE_REASON = "le client avait été apporté par une autre personne"
JOHN_REASON = "introduction recorded for the wrong introducer"


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


def _john(receiver: HttpReceiver) -> list[str]:
    """An English introducer (e-mail and webhook) whose introduction has two commission
    lines in EUR, one of them paid."""

    def fact(kind: str, ident: str, data: dict[str, str]) -> str:
        return envelope(kind, data, id=ident)

    pair = {"adviser_id": "adv-eva", "client_id": "cli-john"}
    return [
        introducer_line(
            "int-john", language="en", email_addr="john@example.org", webhook_url=receiver.url("/hooks/john")
        ),
        fact(
            "introduction.recorded",
            "j-intro",
            {"introduction_id": "intro-john", "introducer_id": "int-john", "date": "2025-02-01", **pair},
        ),
        *(
            fact(
                "invoice.issued",
                f"j-{n}",
                {
                    "invoice_id": f"inv-j{n}",
                    "issue_date": f"2025-0{n + 2}-15",
                    "currency": "EUR",
                    "net_amount": f"{n}000.00",
                    "tax_amount": "0.00",
                    **pair,
                },
            )
            for n in (1, 2)
        ),
        fact(
            "payment.received",
            "j-pay",
            {"payment_id": "pay-j1", "invoice_id": "inv-j1", "date": "2025-04-01", "amount": "1000.00"},
        ),
    ]


def _core(tmp_path: Path, sink: SmtpSink, publisher: FakePublisher) -> Core:
    settings = NotifierSettings(
        data_dir=tmp_path / "notifier",
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        webhook_secret=MASTER,
        webhook_allow_hosts="127.0.0.1",
        max_attempts=2,
        backoff_base_s=0.05,
        backoff_max_s=0.1,
    )
    return build_core(settings, publisher)


async def _feed(core: Core, envelopes: list[LedgerEnvelope]) -> None:
    """What the consumer does per message: ingest, then settle what it returned."""
    for env in envelopes:
        await core.deliverer.deliver_all(await core.ingestor.ingest(env))


def _lines_of(envelopes: list[LedgerEnvelope], introduction_id: str) -> set[str]:
    """The commission lines (invoice/introduction) an introduction accrued."""
    return {
        e.id.split(":", 2)[2]
        for e in envelopes
        if e.kind == "commission.accrued" and e.data["introduction_id"] == introduction_id
    }


@pytest.mark.asyncio
async def test_the_notifier_sends_one_correction_alert_per_voided_commission_line(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """Two voided introductions (3 lines, 2 lines): exactly one correction per line to its
    introducer, in their language, with the reason, by e-mail and signed webhook whose
    `about` is the ledger event with its cause; redelivered, before and after a restart,
    nothing more is sent."""
    history = EXAMPLE_01 + _john(receiver)
    before = derived_envelopes(history, webhook_allow_hosts="127.0.0.1")
    events = derived_envelopes(
        [
            *history,
            void_line("introduction", "intro-100", MARIE_REASON),
            void_line("introduction", "intro-john", JOHN_REASON),
        ],
        webhook_allow_hosts="127.0.0.1",
    )
    assert events[: len(before)] == before
    marie_lines, john_lines = _lines_of(before, "intro-100"), _lines_of(before, "intro-john")
    assert (len(marie_lines), len(john_lines)) == (3, 2)

    publisher = FakePublisher()
    core = _core(tmp_path, sink, publisher)
    try:
        await _feed(core, before)
        first_mails, first_hooks = len(sink.received()), len(receiver.received())
        assert (first_mails, first_hooks) == (
            6 + 3,
            3,
        )  # marie 6 (her payout too); john 3 by e-mail and webhook
        await _feed(core, events[len(before) :])
        mails = sink.received()[first_mails:]
        hooks = receiver.received()[first_hooks:]

        marie = [m for m in mails if m.rcpt_tos == ["marie@example.org"]]
        assert sorted(m.alert_id.split(":", 2)[2] for m in marie) == sorted(marie_lines)
        assert {m.alert_id.split(":", 2)[1] for m in marie} == {"commission.adjusted"}
        for mail in marie:
            assert mail.message["Content-Language"] == "fr"
            assert mail.subject.startswith("Correction : commission de CHF")
            assert f"Motif donné     : {MARIE_REASON}" in mail.text
            assert "Fait annulé     : l'apport intro-100" in mail.text

        john = [m for m in mails if m.rcpt_tos == ["john@example.org"]]
        assert sorted(m.alert_id.split(":", 2)[2] for m in john) == sorted(john_lines)
        assert len(mails) == len(marie) + len(john) == 5
        for mail in john:
            assert mail.message["Content-Language"] == "en"
            assert mail.subject.startswith("Correction: commission of €")
            assert f"Reason given    : {JOHN_REASON}" in mail.text

        assert sorted(h.headers["X-Coop-Alert-Id"] for h in hooks) == sorted(m.alert_id for m in john)
        key = introducer_secret(MASTER, "int-john")
        for hook in hooks:
            assert verify_signature(key, hook.headers["X-Coop-Signature"], hook.body, now=time.time())
            about = hook.json["data"]["about"]
            published = next(e for e in events if e.id == about["id"])
            assert about["data"] == published.data  # the ledger event as published, cause included
            assert about["data"]["cause"] == {
                "kind": "void",
                "void_id": "v-intro-john",
                "target_type": "introduction",
                "target_id": "intro-john",
                "reason": JOHN_REASON,
            }
            assert hook.json["data"]["subject"].startswith("Correction:")
        assert publisher.notices == []
        events_total = core.metrics.registry.get_sample_value
        assert events_total("notifier_events_total", {"kind": "fact.voided", "state": "ignored"}) == 2
        assert events_total("notifier_events_total", {"kind": "fact.voided", "state": "invalid"}) is None

        await _feed(core, events)  # everything redelivered
        assert (len(sink.received()), len(receiver.received())) == (first_mails + 5, first_hooks + 2)
    finally:
        await core.close()

    again = _core(tmp_path, sink, publisher)  # a restart on the same store
    try:
        await _feed(again, events[len(before) :])
    finally:
        await again.close()
    assert set(Counter(m.alert_id for m in sink.received()).values()) == {1}
    assert len(sink.received()) == first_mails + 5 and len(receiver.received()) == first_hooks + 2
