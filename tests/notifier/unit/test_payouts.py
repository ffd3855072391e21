"""Payouts (``payout.recorded``): who hears of them, what the alert says in each language,
and how ingest treats them (exactly once, waiting for a registration, digests, malformed
events), on the events a real ledger derives."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from notifier.application.render import Renderer
from notifier.domain.events import (
    DIGESTIBLE_KINDS,
    KNOWN_KINDS,
    PAYOUT_KIND,
    AlertKey,
    Introducer,
    LedgerEnvelope,
    Party,
    PayoutRecorded,
    parse_payload,
)
from notifier.domain.routing import correction_of, recipient_of
from tests.notifier.support import (
    PAYOUT_BANK_REF,
    PAYOUT_E2E,
    PAYOUT_RUN,
    derived_envelopes,
    introducer_line,
    introduction_lines,
    make_rig,
    payout_line,
    payout_lines,
)

NBSP = "\u00a0"
RENDERER = Renderer()
EVENTS = derived_envelopes(payout_lines())
ANA_PAYOUT = f"5:payout.recorded:{PAYOUT_E2E}"
JOHN_PAYOUT = "9:payout.recorded:po-john-1"
COOP_PAYOUT = "10:payout.recorded:po-coop-1"


def _event(event_id: str) -> LedgerEnvelope:
    return next(e for e in EVENTS if e.id == event_id)


def _payout(env: LedgerEnvelope) -> PayoutRecorded:
    payload = parse_payload(env.kind, env.data)
    assert isinstance(payload, PayoutRecorded), env
    return payload


def _who(language: str, introducer_id: str = "int-ana") -> Party:
    return Introducer(introducer_id=introducer_id, display_name="Ana Moreau", language=language).party()


def _render(event_id: str, language: str) -> tuple[str, str]:
    env = _event(event_id)
    rendered = RENDERER.render_event(env.kind, _payout(env), _who(language), env.id, env.ledgerposition)
    return rendered.subject, rendered.text


def test_payouts_go_to_the_introducer_paid_and_never_to_the_cooperative() -> None:
    """A payout is for its beneficiary; one to the cooperative, or of zero, tells nobody; none is a correction."""
    payouts = [e for e in EVENTS if e.kind == PAYOUT_KIND]
    assert [(e.id, recipient_of(e.kind, _payout(e))) for e in payouts] == [
        (ANA_PAYOUT, "int-ana"),
        (JOHN_PAYOUT, "int-john"),
        (COOP_PAYOUT, None),
    ]
    assert all(correction_of(e.kind, _payout(e)) is None for e in payouts)
    zero = _payout(_event(JOHN_PAYOUT)).model_copy(update={"amount": 0})
    assert recipient_of(PAYOUT_KIND, zero) is None
    assert PAYOUT_KIND in KNOWN_KINDS and PAYOUT_KIND in DIGESTIBLE_KINDS  # its own metric label; digested


@pytest.mark.parametrize(
    ("language", "subject", "needles"),
    [
        (
            "fr",
            f"Virement effectué : CHF{NBSP}120.50 sur votre compte",
            (
                "Bonjour Ana Moreau,",
                f"La coopérative vous a versé CHF{NBSP}120.50 au titre de vos commissions, par virement "
                "bancaire ; la banque l'a comptabilisé le 2 mai 2025.",
                f"  Versement       : {PAYOUT_E2E}\n",
                "  Date            : 2 mai 2025\n",
                f"  Montant         : CHF{NBSP}120.50\n",
                f"  Série           : {PAYOUT_RUN}\n",
                f"  ID bout en bout : {PAYOUT_E2E}\n",
                f"  Réf. banque     : {PAYOUT_BANK_REF}\n",
                f"  acquis         : CHF{NBSP}241.00\n",
                f"  exigible       : CHF{NBSP}241.00\n",
                f"  déjà versé     : CHF{NBSP}120.50\n",
                f"  reste à verser : CHF{NBSP}120.50\n",
                f"Il vous reste CHF{NBSP}120.50 de commissions exigibles à recevoir.",
                f"Référence : {ANA_PAYOUT}",
            ),
        ),
        (
            "en",
            f"Transfer made: CHF{NBSP}120.50 to your account",
            (
                "Hello Ana Moreau,",
                f"The cooperative paid you CHF{NBSP}120.50 towards your commissions by bank transfer; "
                "the bank booked it on 2 May 2025.",
                f"  Payout          : {PAYOUT_E2E}\n",
                "  Date            : 2 May 2025\n",
                f"  Amount          : CHF{NBSP}120.50\n",
                f"  Payout run      : {PAYOUT_RUN}\n",
                f"  End-to-end id   : {PAYOUT_E2E}\n",
                f"  Bank reference  : {PAYOUT_BANK_REF}\n",
                f"  already paid   : CHF{NBSP}120.50\n",
                f"  outstanding    : CHF{NBSP}120.50\n",
                f"CHF{NBSP}120.50 of your payable commissions remains to be paid to you.",
                f"Reference: {ANA_PAYOUT}",
            ),
        ),
    ],
)
def test_a_bank_transfer_is_told_with_its_run_end_to_end_id_and_bank_reference(
    language: str, subject: str, needles: tuple[str, ...]
) -> None:
    """A payout run's booked transfer is worded as such, with date, amount, run, end-to-end id, bank reference and the balance after."""
    rendered_subject, text = _render(ANA_PAYOUT, language)
    assert rendered_subject == subject
    for needle in needles:
        assert needle in text, (needle, text)
    assert "advance" not in text and "avance" not in text


@pytest.mark.parametrize(
    ("language", "subject", "needles", "absent"),
    [
        (
            "fr",
            f"Versement enregistré : 50,00{NBSP}€ sur vos commissions",
            (
                f"Un versement de 50,00{NBSP}€ au titre de vos commissions vous a été fait le 2 mai 2025 "
                "par le conseiller ou la conseillère adv-luc ; il est maintenant enregistré.",
                "  Versement       : po-john-1\n",
                f"  reste à verser : 73,45{NBSP}€\n",
            ),
            ("Série", "ID bout en bout", "Réf. banque", "virement"),
        ),
        (
            "en",
            "Payout recorded: €50.00 of your commissions",
            (
                "A payout of €50.00 towards your commissions was made to you on 2 May 2025 by the adviser "
                "adv-luc, and is now recorded.",
                "  Amount          : €50.00\n",
                "  accrued        : €123.45\n",
                "  outstanding    : €73.45\n",
                "€73.45 of your payable commissions remains to be paid to you.",
            ),
            ("Payout run", "End-to-end id", "Bank reference", "transfer"),
        ),
    ],
)
def test_a_payout_recorded_by_hand_names_the_adviser_and_no_bank_details(
    language: str, subject: str, needles: tuple[str, ...], absent: tuple[str, ...]
) -> None:
    """A payout an adviser made (no run) names the adviser and shows no run, end-to-end id or bank reference."""
    rendered_subject, text = _render(JOHN_PAYOUT, language)
    assert rendered_subject == subject
    for needle in needles:
        assert needle in text, (needle, text)
    for word in absent:
        assert word not in text, (word, text)


def test_a_payout_beyond_what_is_payable_is_told_as_an_advance() -> None:
    """Paid before the client paid the invoice: the balance is negative and the alert explains the advance."""
    lines = [
        introducer_line("int-eve", email_addr="eve@example.org"),
        *introduction_lines("int-eve", "cli-e", "EUR", "1000.00"),
        payout_line("po-eve", "int-eve", "EUR", "80.00", adviser_id="cooperative"),
    ]
    env = next(e for e in derived_envelopes(lines) if e.kind == PAYOUT_KIND)
    payload = _payout(env)
    assert payload.balance.outstanding == -80
    fr = RENDERER.render_event(env.kind, payload, _who("fr", "int-eve"), env.id, env.ledgerposition).text
    assert "par la coopérative ; il est maintenant enregistré." in fr
    assert f"dépasse maintenant vos commissions exigibles de 80,00{NBSP}€" in fr
    assert "Il vous reste" not in fr
    en = RENDERER.render_event(env.kind, payload, _who("en", "int-eve"), env.id, env.ledgerposition).text
    assert "exceeds your payable commissions by €80.00: the difference counts as an advance." in en


def test_every_payable_commission_paid_is_said() -> None:
    """A payout that leaves nothing outstanding says everything payable was paid."""
    payload = _payout(_event(ANA_PAYOUT))
    balance = payload.balance.model_copy(update={"paid": payload.balance.payable, "outstanding": 0})
    settled = payload.model_copy(update={"balance": balance})
    fr = RENDERER.render_event(PAYOUT_KIND, settled, _who("fr"), ANA_PAYOUT, 5).text
    assert "Toutes vos commissions exigibles en CHF vous ont maintenant été versées." in fr
    en = RENDERER.render_event(PAYOUT_KIND, settled, _who("en"), ANA_PAYOUT, 5).text
    assert "All your payable commissions in CHF have now been paid to you." in en


@pytest.mark.asyncio
async def test_a_cooperative_payout_tells_nobody(tmp_path: Path) -> None:
    """A payout to the cooperative is recorded ignored: no alert, nothing waiting, nothing sent."""
    rig = make_rig(tmp_path / "n.sqlite3")
    coop = _event(COOP_PAYOUT)
    assert await rig.ingestor.ingest(coop) == []
    stored = rig.store.event(coop.id)
    assert stored is not None and (stored.state, stored.recipient) == ("ignored", None)
    assert rig.observer.counts == {"event:ignored": 1}
    assert rig.email.sent == rig.webhook.sent == [] and rig.store.counts()["waiting_events"] == 0


@pytest.mark.asyncio
async def test_each_payout_is_sent_once_also_when_redelivered(tmp_path: Path) -> None:
    """Every event delivered twice: one alert per payout and channel, its id the ledger event's id."""
    rig = make_rig(tmp_path / "n.sqlite3")
    await rig.feed(EVENTS)
    await rig.feed(EVENTS)
    sent = [d.key.alert_id for d in rig.email.sent]
    assert Counter(sent)[ANA_PAYOUT] == Counter(sent)[JOHN_PAYOUT] == 1
    assert COOP_PAYOUT not in sent
    assert set(Counter(sent).values()) == {1}
    for key in (AlertKey(ANA_PAYOUT, "email"), AlertKey(JOHN_PAYOUT, "email")):
        record = rig.store.alert(key)
        assert record is not None and (record.status, record.kind) == ("sent", PAYOUT_KIND)


@pytest.mark.asyncio
async def test_a_payout_waits_for_its_introducers_registration(tmp_path: Path) -> None:
    """int-john's payout comes before his registration: kept waiting, then sent once when he registers."""
    rig = make_rig(tmp_path / "n.sqlite3")
    registration = EVENTS[-1]
    assert registration.kind == "introducer.registered" and registration.data["introducer_id"] == "int-john"
    await rig.feed(EVENTS[:-1])
    assert JOHN_PAYOUT not in [d.key.alert_id for d in rig.email.sent]
    stored = rig.store.event(JOHN_PAYOUT)
    assert stored is not None and (stored.state, stored.recipient) == ("waiting", "int-john")
    await rig.feed([registration, registration, _event(JOHN_PAYOUT)])
    john = [d for d in rig.email.sent if d.party.party_id == "int-john"]
    assert [d.key.alert_id for d in john].count(JOHN_PAYOUT) == 1
    assert next(d for d in john if d.key.alert_id == JOHN_PAYOUT).rendered.language == "en"


@pytest.mark.asyncio
async def test_payouts_are_lines_of_the_daily_digest(tmp_path: Path) -> None:
    """With daily digests, a payout is queued and listed with its bank details; the closing balance is the one after it."""
    rig = make_rig(tmp_path / "n.sqlite3", digest_mode="daily")
    await rig.feed(EVENTS)
    assert rig.email.sent == []
    assert await rig.digester.run_digests(datetime(2025, 3, 12, 7, 0, tzinfo=UTC)) == 2
    ana = next(d for d in rig.email.sent if d.party.party_id == "int-ana")
    assert ana.rendered.subject == "Votre récapitulatif du 11 mars 2025 : 3 mouvements"
    assert (
        f"3. Virement effectué : CHF{NBSP}120.50, comptabilisé par la banque le 2 mai 2025 (série "
        f"{PAYOUT_RUN}, ID de bout en bout {PAYOUT_E2E}, référence de la banque {PAYOUT_BANK_REF})"
    ) in ana.rendered.text
    assert f"déjà versé CHF{NBSP}120.50, reste à verser CHF{NBSP}120.50" in ana.rendered.text
    john = next(d for d in rig.email.sent if d.party.party_id == "int-john")
    assert "3. Payout recorded: €50.00 on 2 May 2025, made by the adviser adv-luc (payout po-john-1)" in (
        john.rendered.text
    )
    assert [e["kind"] for e in ana.about["events"]] == [
        "commission.accrued",
        "commission.payable",
        PAYOUT_KIND,
    ]


def _broken(change: dict[str, Any]) -> LedgerEnvelope:
    env = _event(ANA_PAYOUT)
    data = {k: v for k, v in {**env.data, **change}.items() if v is not ...}
    return env.model_copy(update={"data": data})


@pytest.mark.parametrize(
    "change",
    [
        {"balance": ...},
        {"amount": "12,50"},
        {"date": "2025-13-02"},
        {"beneficiary_id": ""},
        {"balance": {"accrued": "1", "payable": "1", "paid": "1"}},
    ],
    ids=["no-balance", "amount", "date", "beneficiary", "balance-figure"],
)
@pytest.mark.asyncio
async def test_a_malformed_payout_is_recorded_invalid_not_dropped(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    """A payout that does not validate is kept in the store as invalid (counted), alerts nobody, and stays so when redelivered."""
    rig = make_rig(tmp_path / "n.sqlite3")
    await rig.feed(EVENTS[:1])  # int-ana is registered: nothing would stop a valid payout
    bad = _broken(change)
    assert await rig.ingestor.ingest(bad) == []
    stored = rig.store.event(bad.id)
    assert stored is not None and stored.state == "invalid" and stored.envelope == bad
    assert rig.observer.counts == {"event:directory": 1, "event:invalid": 1}
    assert await rig.ingestor.ingest(bad) == [] and rig.observer.counts["event:invalid"] == 1
    assert rig.email.sent == []
