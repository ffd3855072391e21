"""Corrections: events the ledger publishes because of a void (rules R8), as the notifier
parses, routes and words them."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from notifier.application.render import DigestItem, Renderer
from notifier.domain.events import (
    KNOWN_KINDS,
    CommissionEvent,
    DonationCredited,
    Introducer,
    LedgerEnvelope,
    OtherCause,
    Party,
    VoidCause,
    parse_payload,
)
from notifier.domain.routing import correction_of, recipient_of
from tests.conftest import EXAMPLES, envelope
from tests.notifier.support import derived_envelopes, make_rig

NBSP = "\u00a0"
RENDERER = Renderer()
EXAMPLE_01 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
EXAMPLE_03 = (EXAMPLES / "03-donation-and-rebates.jsonl").read_text().splitlines()
REASON = "le client avait été apporté par une autre personne"


def void_line(target_type: str, target_id: str, reason: str = REASON) -> str:
    """A void by two people, as a producer sends it."""
    return envelope(
        "fact.voided",
        {
            "void_id": f"v-{target_id}",
            "target_type": target_type,
            "target_id": target_id,
            "date": "2025-12-31",
            "reason": reason,
            "requested_by": "tre-ana",
            "approved_by": "tre-luc",
        },
        id=f"env-v-{target_id}",
    )


def _after_void(lines: list[str], void: str) -> list[LedgerEnvelope]:
    """The events the ledger publishes because of ``void`` (the last line)."""
    envelopes = derived_envelopes([*lines, void])
    last = max(e.ledgerposition for e in envelopes)
    return [e for e in envelopes if e.ledgerposition == last]


def _who(language: str, introducer_id: str = "int-marie") -> Party:
    return Introducer(introducer_id=introducer_id, display_name="Marie Dupont", language=language).party()


def _payload(env: LedgerEnvelope) -> CommissionEvent | DonationCredited:
    payload = parse_payload(env.kind, env.data)
    assert isinstance(payload, CommissionEvent | DonationCredited), env
    return payload


def test_a_voided_introduction_is_one_correction_per_line_for_its_introducer() -> None:
    """Each commission line of a voided introduction is a correction for its beneficiary;
    the payable withdrawn with a line taken back tells nothing more; fact.voided tells nobody."""
    events = _after_void(EXAMPLE_01, void_line("introduction", "intro-100"))
    routed: list[tuple[str, str | None, bool]] = []
    for env in events:
        payload = parse_payload(env.kind, env.data)
        if payload is None:
            routed.append((env.id, None, False))
            continue
        routed.append((env.id, recipient_of(env.kind, payload), correction_of(env.kind, payload) is not None))
    assert routed == [
        ("10:fact.voided:v-intro-100", None, False),
        ("10:commission.adjusted:2025-0311/intro-100", "int-marie", True),
        ("10:commission.payable:2025-0311/intro-100/-int-marie", None, True),
        ("10:commission.adjusted:2025-0920/intro-100", "int-marie", True),
        ("10:commission.adjusted:2026-0311/intro-100", "int-marie", True),
    ]
    cause = correction_of(events[1].kind, _payload(events[1]))
    assert cause == VoidCause(
        kind="void", void_id="v-intro-100", target_type="introduction", target_id="intro-100", reason=REASON
    )


def test_a_voided_payment_is_a_payable_correction() -> None:
    """A voided payment makes less payable: one correction for the beneficiary."""
    (voided, payable) = _after_void(EXAMPLE_01, void_line("payment", "pay-0311", "saisi deux fois"))
    assert voided.kind == "fact.voided" and parse_payload(voided.kind, voided.data) is None
    payload = _payload(payable)
    assert payable.kind == "commission.payable" and payload.delta < 0
    assert recipient_of(payable.kind, payload) == "int-marie"
    assert correction_of(payable.kind, payload) is not None


def test_events_without_a_cause_are_not_corrections() -> None:
    """An ordinary adjustment (example 01's credit note) keeps its own wording, and so does
    an event whose cause is of a kind the notifier does not know."""
    env = next(e for e in derived_envelopes(EXAMPLE_01) if e.kind == "commission.adjusted")
    payload = _payload(env)
    assert payload.cause is None and correction_of(env.kind, payload) is None
    rendered = RENDERER.render_event(env.kind, payload, _who("fr"), env.id, env.ledgerposition)
    assert rendered.subject.startswith("Commission ajustée") and "Correction" not in rendered.text
    other = _payload(env.model_copy(update={"data": {**env.data, "cause": {"kind": "period", "x": 1}}}))
    assert isinstance(other, CommissionEvent) and isinstance(other.cause, OtherCause)
    assert correction_of(env.kind, other) is None


def test_a_void_cause_without_its_reason_is_invalid() -> None:
    """A void cause is validated in full: one without its reason does not parse."""
    env = _after_void(EXAMPLE_01, void_line("introduction", "intro-100"))[1]
    cause = {k: v for k, v in env.data["cause"].items() if k != "reason"}
    with pytest.raises(ValidationError):
        parse_payload(env.kind, {**env.data, "cause": cause})


@pytest.mark.parametrize("language", ["fr", "en"])
def test_taken_back_commission_renders_reason_target_and_amounts(language: str) -> None:
    """The correction of a voided introduction's line says what was taken back, which fact,
    the reason, the previous amount, the change, the payable withdrawn and the balance."""
    env = _after_void(EXAMPLE_01, void_line("introduction", "intro-100"))[1]
    rendered = RENDERER.render_event(env.kind, _payload(env), _who(language), env.id, env.ledgerposition)
    chf = f"CHF{NBSP}"
    if language == "fr":
        assert rendered.subject == f"Correction : commission de {chf}240.00 reprise sur la facture 2025-0311"
        needles: tuple[str, ...] = (
            "La commission sur la facture 2025-0311 (client cli-cabinet-dupont, conseiller ou "
            "conseillère adv-luc, apport intro-100) vous est reprise, parce qu'un fait avait été "
            "enregistré par erreur : l'apport intro-100. Ce fait a été annulé.",
            "Fait annulé     : l'apport intro-100",
            f"Motif donné     : {REASON}",
            "Facture         : 2025-0311 du 11 mars 2025",
            f"Ancien montant  : {chf}240.00",
            f"Nouveau montant : {chf}0.00",
            f"Écart           : {chf}-240.00",
            f"Exigible        : {chf}0.00 sur cette facture (auparavant {chf}240.00)",
            f"acquis         : {chf}200.00",
            f"reste à verser : {chf}-200.00",
            f"dépasse maintenant vos commissions exigibles de {chf}200.00",
            "Référence : 10:commission.adjusted:2025-0311/intro-100",
        )
    else:
        assert rendered.subject == f"Correction: commission of {chf}240.00 taken back on invoice 2025-0311"
        needles = (
            "The commission on invoice 2025-0311 (client cli-cabinet-dupont, adviser adv-luc, "
            "introduction intro-100) was taken back because a fact had been recorded in error: "
            "introduction intro-100. That fact was voided.",
            "Voided fact     : introduction intro-100",
            f"Reason given    : {REASON}",
            "Invoice         : 2025-0311 of 11 March 2025",
            f"Previous amount : {chf}240.00",
            f"New amount      : {chf}0.00",
            f"Change          : {chf}-240.00",
            f"Payable         : {chf}0.00 on this invoice (was {chf}240.00)",
            f"accrued        : {chf}200.00",
            f"outstanding    : {chf}-200.00",
            f"exceeds your payable commissions by {chf}200.00",
        )
    for needle in needles:
        assert needle in rendered.text, (needle, rendered.text)


@pytest.mark.parametrize(
    ("language", "subject", "needles"),
    [
        (
            "fr",
            f"Correction : part exigible ramenée à CHF{NBSP}0.00 sur la facture 2025-0311",
            (
                f"est réduite de CHF{NBSP}240.00, parce qu'un fait avait été enregistré par erreur : "
                "le paiement pay-0311.",
                "Motif donné     : saisi deux fois",
                f"Ancien exigible : CHF{NBSP}240.00 sur cette facture",
                f"Écart           : CHF{NBSP}-240.00",
                f"exigible       : CHF{NBSP}0.00",
            ),
        ),
        (
            "en",
            f"Correction: payable part reduced to CHF{NBSP}0.00 on invoice 2025-0311",
            (
                f"was reduced by CHF{NBSP}240.00 because a fact had been recorded in error: payment pay-0311.",
                "Reason given    : saisi deux fois",
                f"Payable before  : CHF{NBSP}240.00 on this invoice",
                f"Change          : CHF{NBSP}-240.00",
            ),
        ),
    ],
)
def test_payable_reduced_by_a_void_renders_as_a_correction(
    language: str, subject: str, needles: tuple[str, ...]
) -> None:
    """A voided payment's payable correction names the payment, the reason and the amounts."""
    env = _after_void(EXAMPLE_01, void_line("payment", "pay-0311", "saisi deux fois"))[1]
    rendered = RENDERER.render_event(env.kind, _payload(env), _who(language), env.id, env.ledgerposition)
    assert rendered.subject == subject
    for needle in needles:
        assert needle in rendered.text, (needle, rendered.text)


def test_donation_withdrawn_by_a_void_tells_the_donor_why() -> None:
    """Example 03's donor hears, in each language, that the credit was withdrawn by the correction."""
    events = _after_void(EXAMPLE_03, void_line("introduction", "intro-300", "doublon"))
    env = next(e for e in events if e.kind == "donation.credited")
    payload = _payload(env)
    assert recipient_of(env.kind, payload) == "int-ines" and correction_of(env.kind, payload) is not None
    assert all(
        recipient_of(e.kind, p) is None
        for e in events
        if e.kind.startswith("commission.") and (p := parse_payload(e.kind, e.data)) is not None
    )
    fr = RENDERER.render_event(env.kind, payload, _who("fr", "int-ines"), env.id, env.ledgerposition)
    assert fr.subject == f"Correction : votre don de CHF{NBSP}75.00 à la coopérative est retiré"
    assert (
        "Ce crédit est retiré, parce qu'un fait avait été enregistré par erreur : l'apport intro-300."
        in fr.text
    )
    assert "Motif donné     : doublon" in fr.text and "Merci" not in fr.text
    en = RENDERER.render_event(env.kind, payload, _who("en", "int-ines"), env.id, env.ledgerposition)
    assert en.subject == f"Correction: your donation of CHF{NBSP}75.00 to the cooperative was withdrawn"
    assert "Reason given    : doublon" in en.text


@pytest.mark.parametrize(
    ("target_type", "fr", "en"),
    [
        ("introduction", "l'apport intro-7", "introduction intro-7"),
        ("payment", "le paiement intro-7", "payment intro-7"),
        ("payout", "le versement intro-7", "payout intro-7"),
        ("payout_run", "la série de virements intro-7", "payout run intro-7"),
        ("pass_through", "le reversement de ristourne intro-7", "rebate pass-through intro-7"),
        ("something_new", "le fait « something_new » intro-7", "fact “something_new” intro-7"),
    ],
)
def test_the_voided_fact_is_named_in_words(target_type: str, fr: str, en: str) -> None:
    """target_type and target_id are written in words in each language (unknown types verbatim)."""
    env = _after_void(EXAMPLE_01, void_line("introduction", "intro-100"))[1]
    cause = {**env.data["cause"], "target_type": target_type, "target_id": "intro-7"}
    payload = _payload(env.model_copy(update={"data": {**env.data, "cause": cause}}))
    assert (
        f"Fait annulé     : {fr}\n" in RENDERER.render_event(env.kind, payload, _who("fr"), env.id, 10).text
    )
    assert (
        f"Voided fact     : {en}\n" in RENDERER.render_event(env.kind, payload, _who("en"), env.id, 10).text
    )


def test_an_ordinary_event_brought_about_by_a_void_mentions_it() -> None:
    """A new commission that carries a void's cause keeps its wording and says which void."""
    env = next(e for e in derived_envelopes(EXAMPLE_01) if e.kind == "commission.accrued")
    cause: dict[str, Any] = {
        "kind": "void",
        "void_id": "v-1",
        "target_type": "introduction",
        "target_id": "intro-9",
        "reason": "mauvais apporteur",
    }
    payload = _payload(env.model_copy(update={"data": {**env.data, "cause": cause}}))
    assert correction_of(env.kind, payload) is None
    fr = RENDERER.render_event(env.kind, payload, _who("fr"), env.id, env.ledgerposition)
    assert fr.subject.startswith("Nouvelle commission")
    assert (
        "Ce mouvement fait suite à une correction : un fait enregistré par erreur a été annulé "
        "(l'apport intro-9 ; motif : mauvais apporteur)."
    ) in fr.text
    en = RENDERER.render_event(env.kind, payload, _who("en"), env.id, env.ledgerposition)
    assert "This follows a correction: a fact recorded in error was voided (introduction intro-9" in en.text


def test_digest_lists_corrections_with_their_reason() -> None:
    """A daily digest words each correction as such, with the voided fact and the reason."""
    events = _after_void(EXAMPLE_01, void_line("introduction", "intro-100"))
    items = [
        DigestItem(e.id, e.kind, e.ledgerposition, _payload(e))
        for e in events
        if (p := parse_payload(e.kind, e.data)) is not None and recipient_of(e.kind, p) == "int-marie"
    ]
    assert [item.correction for item in items] == [True, True, True]
    fr = RENDERER.render_digest(items, _who("fr"), date(2025, 12, 31), "digest:2025-12-31:int-marie")
    assert (
        f"1. Correction : commission de CHF{NBSP}240.00 reprise, écart CHF{NBSP}-240.00 (facture 2025-0311 "
        "du 11 mars 2025, client cli-cabinet-dupont, apport intro-100) ; fait annulé : l'apport intro-100, "
        f"motif : {REASON}"
    ) in fr.text
    assert f"CHF : acquis CHF{NBSP}0.00" in fr.text
    en = RENDERER.render_digest(items, _who("en"), date(2025, 12, 31), "digest:2025-12-31:int-marie")
    assert f"3. Correction: commission of CHF{NBSP}50.00 taken back, change CHF{NBSP}-50.00" in en.text
    assert en.text.count(f"reason: {REASON}") == 3


@pytest.mark.asyncio
async def test_fact_voided_creates_no_alert_and_is_not_invalid(tmp_path: Path) -> None:
    """fact.voided (applied or not) and rebate events with a void's cause are recorded as
    ignored (known kinds for the metrics), never invalid, and alert nobody."""
    rig = make_rig(tmp_path / "n.sqlite3")
    (early,) = [e for e in derived_envelopes([void_line("payment", "pay-x")]) if e.kind == "fact.voided"]
    assert early.data["applied"] is False  # a void that came before its target
    voided_purchase = _after_void(EXAMPLE_03, void_line("purchase", "pu-1"))
    assert [e.kind for e in voided_purchase] == ["fact.voided", "rebate.owed", "rebate.owed"]
    assert all("cause" in e.data for e in voided_purchase[1:])
    for env in [early, *voided_purchase]:
        assert await rig.ingestor.ingest(env) == []
        stored = rig.store.event(env.id)
        assert stored is not None and stored.state == "ignored", env.id
        assert env.kind in KNOWN_KINDS
    assert rig.observer.counts == {"event:ignored": 4}
