"""``party.erased`` as the notifier reads it, and the pure rules that blot an erased party's
name, e-mail and webhook URL out of what the notifier keeps of other parties."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from notifier.domain.erasure import ERASED, contact_strings, redactor
from notifier.domain.events import (
    ERASURE_KIND,
    KNOWN_KINDS,
    PARTY_KINDS,
    Party,
    PartyErased,
    parse_payload,
)
from notifier.domain.routing import recipient_of

MARIE = Party(
    kind="introducer",
    party_id="int-marie",
    display_name="Marie Dupont",
    email="marie@example.org",
    webhook_url="https://hooks.example.org/marie?token=abc",
)


def test_party_erased_is_read_with_its_directory_key_and_tolerates_new_fields() -> None:
    """The event's data gives the party (kind, id) and its directory key; unknown fields are ignored."""
    for party_type, key in [
        ("introducer", "int-a"),
        ("client", "client/int-a"),
        ("adviser", "adviser/int-a"),
    ]:
        data = {"party_type": party_type, "party_id": "int-a", "position": 42, "reason": "art. 17"}
        payload = parse_payload(ERASURE_KIND, data)
        assert isinstance(payload, PartyErased)
        assert payload.key == key
        assert recipient_of(ERASURE_KIND, payload) is None  # nobody is told
    assert ERASURE_KIND in KNOWN_KINDS  # its own metric label


def test_the_ledgers_party_erased_is_what_the_notifier_reads() -> None:
    """Once the ledger has its outbound model of party.erased, what that model accepts the notifier reads alike."""
    from ledger.application.outbound import OUTBOUND_MODELS

    model = OUTBOUND_MODELS.get(ERASURE_KIND)
    if model is None:
        pytest.skip("the ledger does not publish party.erased yet")
    for party_type in PARTY_KINDS:
        data = {"party_type": party_type, "party_id": "int-a", "position": 7}
        model.model_validate(data)  # what the ledger publishes (its models forbid other fields)
        payload = parse_payload(ERASURE_KIND, data)
        assert isinstance(payload, PartyErased) and (payload.party_type, payload.party_id) == (
            party_type,
            "int-a",
        )


@pytest.mark.parametrize(
    "data",
    [
        {"party_type": "cooperative", "party_id": "cooperative", "position": 1},
        {"party_type": "introducer", "position": 1},
        {"party_type": "introducer", "party_id": "", "position": 1},
    ],
)
def test_a_malformed_party_erased_does_not_validate(data: dict[str, object]) -> None:
    """An erasure of an unknown kind of party, or without an id, is invalid (recorded, not applied)."""
    with pytest.raises(ValidationError):
        parse_payload(ERASURE_KIND, data)


def test_the_contact_strings_are_the_name_the_email_and_the_url() -> None:
    """What is looked for: the name, e-mail and URL the party has, longest first."""
    assert contact_strings(MARIE) == (
        "https://hooks.example.org/marie?token=abc",
        "marie@example.org",
        "Marie Dupont",
    )
    assert contact_strings(Party(kind="client", party_id="cli-a", display_name="A")) == ("A",)


def test_a_statement_naming_the_party_keeps_its_ids_and_figures() -> None:
    """A value that is the name, e-mail or URL becomes [erased]; ids, keys and figures stay."""
    redact = redactor(MARIE)
    statement = {
        "party_id": "cli-dupont",
        "party_name": "Cabinet Dupont",
        "names": {"int-marie": "Marie Dupont", "adv-luc": "Luc Martin"},
        "commissions": [{"introducer_id": "int-marie", "amount": "240.00", "currency": "CHF"}],
        "contact": "MARIE@example.org",
        "hook": "https://hooks.example.org/marie?token=abc",
    }
    assert redact(statement) == {
        "party_id": "cli-dupont",
        "party_name": "Cabinet Dupont",
        "names": {"int-marie": ERASED, "adv-luc": "Luc Martin"},
        "commissions": [{"introducer_id": "int-marie", "amount": "240.00", "currency": "CHF"}],
        "contact": ERASED,
        "hook": ERASED,
    }
    untouched = {"names": {"adv-luc": "Luc Martin"}, "amount": 12, "ok": True, "none": None}
    assert redact(untouched) == untouched


def test_free_text_loses_the_name_as_a_word_and_the_address_anywhere() -> None:
    """In free text the name (whole words, exact case) and the e-mail or URL (any case) are replaced."""
    redact = redactor(MARIE)
    assert redact({"reason": "saisi pour Marie Dupont par erreur"}) == {
        "reason": f"saisi pour {ERASED} par erreur"
    }
    assert redact("550 5.1.1 <Marie@Example.org>: no such user") == f"550 5.1.1 <{ERASED}>: no such user"
    assert redact("POST https://hooks.example.org/marie?token=abc failed") == f"POST {ERASED} failed"
    # not a word of its own, or not free text: left as it is
    assert redact({"reason": "Marie Duponts est partie"}) == {"reason": "Marie Duponts est partie"}
    short = redactor(Party(kind="adviser", party_id="adv-eva", display_name="Eva"))
    assert short({"rule": "Eva-2025", "adviser_id": "Eva", "text": "vu par Eva hier"}) == {
        "rule": "Eva-2025",
        "adviser_id": "Eva",
        "text": f"vu par {ERASED} hier",
    }
    assert short("Eva") == ERASED


def test_a_name_that_is_the_partys_id_is_not_looked_for() -> None:
    """A party registered with its id as its name keeps that id wherever it appears (ids are not erased)."""
    nameless = Party(kind="introducer", party_id="int-a", display_name="int-a", email="a@example.org")
    assert contact_strings(nameless) == ("a@example.org",)
    redact = redactor(nameless)
    voids = {"introducers": ["int-a", "int-b"], "names": {"int-a": "int-a"}, "to": "a@example.org"}
    assert redact(voids) == {"introducers": ["int-a", "int-b"], "names": {"int-a": "int-a"}, "to": ERASED}
