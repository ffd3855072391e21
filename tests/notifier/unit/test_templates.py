"""Alert templates in French and English, for CHF, EUR and JPY commissions and donations."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from notifier.application.formatting import format_money
from notifier.application.render import TEMPLATES, DigestItem, Renderer
from notifier.domain.events import CommissionEvent, DonationCredited, Introducer, Party, parse_payload
from tests.conftest import EXAMPLES
from tests.notifier.support import derived_envelopes, introducer_line, introduction_lines

NBSP = "\u00a0"
RENDERER = Renderer()


def _who(language: str) -> Party:
    return Introducer(
        introducer_id="int-x", display_name="Alex Martin", email="alex@example.org", language=language
    ).party()


def _events(
    currency: str, net: str, *, donor: bool = False
) -> list[tuple[str, str, int, CommissionEvent | DonationCredited]]:
    lines = [introducer_line("int-x", email_addr="alex@example.org")]
    lines += introduction_lines("int-x", "cli-z", currency, net, paid=True, donor=donor)
    out = []
    for env in derived_envelopes(lines):
        payload = parse_payload(env.kind, env.data)
        if isinstance(payload, CommissionEvent | DonationCredited):
            out.append((env.id, env.kind, env.ledgerposition, payload))
    return out


def test_both_languages_have_the_same_templates() -> None:
    """Every template (corrections, payouts and monthly statements included) exists in French and in English."""
    fr = sorted(p.name for p in (TEMPLATES / "fr").iterdir())
    en = sorted(p.name for p in (TEMPLATES / "en").iterdir())
    assert fr == en
    assert {
        "commission.accrued.txt.j2",
        "commission.adjusted.txt.j2",
        "commission.payable.txt.j2",
        "donation.credited.txt.j2",
        "payout.recorded.txt.j2",
        "digest.txt.j2",
        "commission.adjusted.correction.txt.j2",
        "commission.payable.correction.txt.j2",
        "donation.credited.correction.txt.j2",
        "statement.issued.introducer.txt.j2",
        "statement.issued.client.txt.j2",
        "statement.issued.adviser.txt.j2",
    } <= set(fr)


@pytest.mark.parametrize(
    ("currency", "net", "commission", "base_fr", "base_en"),
    [
        ("CHF", "12345.60", f"CHF{NBSP}1’234.56", f"CHF{NBSP}12’345.60", f"CHF{NBSP}12’345.60"),
        ("EUR", "12345.60", "1\u202f234,56\u00a0€", "12\u202f345,60\u00a0€", "€12,345.60"),
        ("JPY", "123456", "12\u202f346\u00a0JPY", "123\u202f456\u00a0JPY", "JP¥123,456"),
    ],
)
def test_accrued_and_payable_in_french_and_english(
    currency: str, net: str, commission: str, base_fr: str, base_en: str
) -> None:
    """Accrued and payable alerts carry amount, invoice, client, rate, rule, window and balance."""
    events = _events(currency, net)
    kinds = [kind for _, kind, _, _ in events]
    assert kinds == ["commission.accrued", "commission.payable"]
    event_id, kind, position, payload = events[0]
    assert isinstance(payload, CommissionEvent)
    fr = RENDERER.render_event(kind, payload, _who("fr"), event_id, position)
    amount_fr = format_money(payload.amount, currency, "fr")
    if currency != "JPY":
        assert amount_fr == commission
    assert fr.subject == f"Nouvelle commission : {amount_fr} sur la facture inv-cli-z"
    for needle in (
        "Bonjour Alex Martin,",
        "Facture         : inv-cli-z du 11 mars 2025",
        "Client          : cli-z (conseiller ou conseillère : adv-luc)",
        f"Base (HT)       : {base_fr}",
        f"Taux            : 10{NBSP}%",
        "apport standard : 10 % la première année, 5 % la deuxième (année 1)",
        "Période         : du 11 mars 2025 au 10 mars 2026",
        f"acquis         : {amount_fr}",
        f"Référence : {event_id}",
    ):
        assert needle in fr.text, (needle, fr.text)
    en = RENDERER.render_event(kind, payload, _who("en"), event_id, position)
    amount_en = format_money(payload.amount, currency, "en")
    assert en.subject == f"New commission: {amount_en} on invoice inv-cli-z"
    for needle in (
        "Hello Alex Martin,",
        "Invoice         : inv-cli-z of 11 March 2025",
        f"Base (net)      : {base_en}",
        "Rate            : 10%",
        "standard introduction: 10% the first year, 5% the second (year 1)",
        "Window          : 11 March 2025 to 10 March 2026",
        f"accrued        : {amount_en}",
    ):
        assert needle in en.text, (needle, en.text)
    event_id, kind, position, payable = events[1]
    assert isinstance(payable, CommissionEvent)
    fr = RENDERER.render_event(kind, payable, _who("fr"), event_id, position)
    assert fr.subject == f"Commission exigible : {amount_fr} sur la facture inv-cli-z"
    assert f"reste à verser : {amount_fr}" in fr.text
    en = RENDERER.render_event(kind, payable, _who("en"), event_id, position)
    assert f"outstanding    : {amount_en}" in en.text


def test_adjusted_shows_previous_new_and_change() -> None:
    """Example 01's credit note: CHF 180.00 becomes CHF 150.00, a change of CHF -30.00."""
    lines = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    env = next(e for e in derived_envelopes(lines) if e.kind == "commission.adjusted")
    payload = parse_payload(env.kind, env.data)
    assert isinstance(payload, CommissionEvent)
    fr = RENDERER.render_event(env.kind, payload, _who("fr"), env.id, env.ledgerposition)
    assert fr.subject == f"Commission ajustée : CHF{NBSP}150.00 sur la facture 2025-0920"
    assert f"Ancien montant  : CHF{NBSP}180.00" in fr.text
    assert f"Nouveau montant : CHF{NBSP}150.00" in fr.text
    assert f"Écart           : CHF{NBSP}-30.00" in fr.text
    assert f"acquis         : CHF{NBSP}390.00" in fr.text
    en = RENDERER.render_event(env.kind, payload, _who("en"), env.id, env.ledgerposition)
    assert f"Change          : CHF{NBSP}-30.00" in en.text


@pytest.mark.parametrize(("currency", "net"), [("CHF", "750.00"), ("EUR", "750.00"), ("JPY", "75000")])
def test_donation_thanks_the_donor(currency: str, net: str) -> None:
    """A donation alert thanks the donor in their language with the credited amount."""
    event_id, kind, position, payload = next(
        e for e in _events(currency, net, donor=True) if e[1] == "donation.credited"
    )
    assert isinstance(payload, DonationCredited)
    fr = RENDERER.render_event(kind, payload, _who("fr"), event_id, position)
    amount = format_money(payload.amount, currency, "fr")
    assert fr.subject == f"Merci : votre commission de {amount} a été créditée à la coopérative"
    assert "Merci pour votre soutien" in fr.text
    en = RENDERER.render_event(kind, payload, _who("en"), event_id, position)
    assert (
        en.subject
        == f"Thank you: your commission of {format_money(payload.amount, currency, 'en')} was credited to the cooperative"
    )


def test_withdrawn_donation_is_not_thanked() -> None:
    """A negative donation (withdrawn after an adjustment) is worded as a correction."""
    event_id, kind, position, payload = next(
        e for e in _events("CHF", "750.00", donor=True) if e[1] == "donation.credited"
    )
    assert isinstance(payload, DonationCredited)
    negative = payload.model_copy(update={"amount": -payload.amount})
    fr = RENDERER.render_event(kind, negative, _who("fr"), event_id, position)
    assert fr.subject == f"Don à la coopérative corrigé : CHF{NBSP}-75.00"
    assert "Merci" not in fr.text


def test_digest_lists_every_event_and_closing_balances() -> None:
    """A digest has one numbered line per event and the latest balance per currency."""
    items = [DigestItem(i, k, p, pl) for i, k, p, pl in _events("CHF", "2400.00") + _events("EUR", "1000.00")]
    fr = RENDERER.render_digest(items, _who("fr"), date(2025, 3, 11), "digest:2025-03-11:int-x")
    assert fr.subject == "Votre récapitulatif du 11 mars 2025 : 4 mouvements"
    assert "1. Nouvelle commission : CHF\u00a0240.00" in fr.text
    assert "Commission exigible : 100,00\u00a0€" in fr.text
    assert "CHF : acquis CHF\u00a0240.00" in fr.text
    assert "EUR : acquis 100,00\u00a0€" in fr.text
    en = RENDERER.render_digest(items[:1], _who("en"), date(2025, 3, 11), "digest:2025-03-11:int-x")
    assert en.subject == "Your summary of 11 March 2025: 1 change"


def test_subject_is_one_line_even_with_a_newline_in_the_name() -> None:
    """Whitespace in names is collapsed: no header injection through the subject."""
    event_id, kind, position, payload = _events("CHF", "100.00")[0]
    who = Introducer(introducer_id="int-x", display_name="A\nBcc: evil@example.org", language="fr").party()
    rendered = RENDERER.render_event(kind, payload, who, event_id, position)
    assert "\n" not in rendered.subject
    assert Decimal("10.00") == payload.amount
