"""Payouts through the notifier's real wiring (``build_core``: SQLite store, store and render
threads, SMTP and webhook channels) to a real aiosmtpd server and a real HTTP receiver on
loopback: the introducer paid hears once, in their language, with the payout's figures;
the cooperative's payout tells nobody; redelivery and a restart send nothing more."""

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
from tests.notifier.support import (
    PAYOUT_BANK_REF,
    PAYOUT_E2E,
    PAYOUT_RUN,
    FakePublisher,
    HttpReceiver,
    SmtpSink,
    derived_envelopes,
    payout_lines,
)

MASTER = "payouts-master-secret"
NBSP = "\u00a0"
ANA_PAYOUT = f"5:payout.recorded:{PAYOUT_E2E}"
JOHN_PAYOUT = "9:payout.recorded:po-john-1"
COOP_PAYOUT = "10:payout.recorded:po-coop-1"


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


@pytest.mark.asyncio
async def test_a_payout_reaches_its_introducer_once_by_email_and_signed_webhook(
    tmp_path: Path, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """A payout run's transfer (French, e-mail and webhook) and a payout by hand (English, registered
    after it) arrive once each with their figures; the cooperative's tells nobody; redelivery and a
    restart send nothing more."""
    events = derived_envelopes(
        payout_lines(ana_webhook=receiver.url("/hooks/ana")), webhook_allow_hosts="127.0.0.1"
    )
    payouts = [e for e in events if e.kind == "payout.recorded"]
    assert [e.id for e in payouts] == [ANA_PAYOUT, JOHN_PAYOUT, COOP_PAYOUT]

    publisher = FakePublisher()
    core = _core(tmp_path, sink, publisher)
    try:
        await _feed(core, events)
        mails = {m.alert_id: m for m in sink.received()}
        assert Counter(m.alert_id for m in sink.received()) == {
            "3:commission.accrued:inv-cli-ana/intro-cli-ana": 1,
            "4:commission.payable:inv-cli-ana/intro-cli-ana": 1,
            ANA_PAYOUT: 1,
            "7:commission.accrued:inv-cli-john/intro-cli-john": 1,
            "8:commission.payable:inv-cli-john/intro-cli-john": 1,
            JOHN_PAYOUT: 1,
        }

        ana = mails[ANA_PAYOUT]
        ana_text = ana.text.replace("\r\n", "\n")  # as written: SMTP carries CRLF line ends
        assert ana.rcpt_tos == ["ana@example.org"] and ana.message["Content-Language"] == "fr"
        assert ana.subject == f"Virement effectué : CHF{NBSP}120.50 sur votre compte"
        for needle in (
            "Bonjour Ana Moreau,",
            "la banque l'a comptabilisé le 2 mai 2025.",
            f"  Montant         : CHF{NBSP}120.50\n",
            f"  Série           : {PAYOUT_RUN}\n",
            f"  ID bout en bout : {PAYOUT_E2E}\n",
            f"  Réf. banque     : {PAYOUT_BANK_REF}\n",
            f"  déjà versé     : CHF{NBSP}120.50\n",
            f"  reste à verser : CHF{NBSP}120.50\n",
            f"Référence : {ANA_PAYOUT}",
        ):
            assert needle in ana_text, (needle, ana_text)

        john = mails[JOHN_PAYOUT]
        john_text = john.text.replace("\r\n", "\n")
        assert john.rcpt_tos == ["john@example.org"] and john.message["Content-Language"] == "en"
        assert john.subject == "Payout recorded: €50.00 of your commissions"
        assert "made to you on 2 May 2025 by the adviser adv-luc" in john_text
        assert "  outstanding    : €73.45\n" in john_text and "Payout run" not in john_text

        hooks = [h for h in receiver.received("/hooks/ana") if h.headers["X-Coop-Alert-Id"] == ANA_PAYOUT]
        assert len(hooks) == 1
        (hook,) = hooks
        key = introducer_secret(MASTER, "int-ana")
        assert verify_signature(key, hook.headers["X-Coop-Signature"], hook.body, now=time.time())
        data = hook.json["data"]
        assert data["subject"] == ana.subject and data["text"] == ana_text
        assert data["about"]["kind"] == "payout.recorded"
        assert data["about"]["data"] == next(e for e in events if e.id == ANA_PAYOUT).data  # as published
        assert publisher.notices == []

        sample = core.metrics.registry.get_sample_value
        assert sample("notifier_events_total", {"kind": "payout.recorded", "state": "routed"}) == 2
        assert sample("notifier_events_total", {"kind": "payout.recorded", "state": "ignored"}) == 1
        assert sample("notifier_events_total", {"kind": "payout.recorded", "state": "waiting"}) == 1
        assert sample("notifier_events_total", {"kind": "other", "state": "ignored"}) is None

        before = (len(sink.received()), len(receiver.received()))
        await _feed(core, events)  # everything redelivered
        assert (len(sink.received()), len(receiver.received())) == before
    finally:
        await core.close()

    again = _core(tmp_path, sink, publisher)  # a restart on the same store
    try:
        await _feed(again, payouts)
    finally:
        await again.close()
    assert (len(sink.received()), len(receiver.received())) == before
    assert set(Counter(m.alert_id for m in sink.received()).values()) == {1}
    (tmp_path / "received-payout.eml").write_bytes(ana.raw)  # for people to read
