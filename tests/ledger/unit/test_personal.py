"""Personal data: the field list, sealing and opening, the master keys, and erasure in the
ledger (on an in-memory store with a real AES-GCM keyring)."""

from __future__ import annotations

import base64
import gc
import json
import types
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.adapters.keyring import AesGcmKeyring, KeyringError, MasterKeys
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.contract import Rejection, fact_of_stored, parse_envelope
from ledger.application.derive import Deriver
from ledger.application.ledger import Ledger
from ledger.application.sealing import Sealer, is_token
from ledger.domain import facts as f
from ledger.domain.personal import ERASED, PartyRef, owner_of, personal_values, redacted
from tests.conftest import envelope

MASTER = f"m1:{base64.b64encode(b'k' * 32).decode()}"
REGISTRATION = {
    "introducer_id": "int-zoe",
    "display_name": "Zoë Kowalczyk",
    "email": "zoe@example.org",
    "iban": "CH9300762011623852957",
    "account_holder": "Zoë K.",
}


def keyring(store: MemoryFactStore | None = None, masters: str = MASTER) -> AesGcmKeyring:
    return AesGcmKeyring(store or MemoryFactStore(), MasterKeys.parse(masters))


def ledger_on(store: MemoryFactStore, ring: AesGcmKeyring) -> Ledger:
    return Ledger(store, lambda: datetime(2025, 5, 1, tzinfo=UTC), sealer=Sealer(ring))


def test_personal_fields_are_redacted_and_figures_kept() -> None:
    """Redacting erases names, contacts and bank details, keeps ids and dates; a fact without
    personal data is returned as is."""
    fact = parse_envelope(envelope("introducer.registered", REGISTRATION)).fact
    plain = redacted(fact)
    assert isinstance(plain, f.IntroducerRegistered)
    assert (plain.display_name, plain.email, plain.iban, plain.account_holder) == (
        ERASED,
        None,
        ERASED,
        ERASED,
    )
    assert plain.introducer_id == "int-zoe" and plain.key == fact.key
    assert sorted(personal_values(fact)) == sorted(
        ["Zoë Kowalczyk", "zoe@example.org", "CH9300762011623852957", "Zoë K."]
    )
    assert personal_values(plain) == [] and redacted(plain) == plain
    invoice = f.InvoiceIssued("INV-1", "adv-1", "cli-1", datetime(2025, 1, 1).date(), "CHF", 1)  # type: ignore[arg-type]
    assert redacted(invoice) is invoice and owner_of(invoice) is None


@pytest.mark.parametrize(
    ("kind", "data", "owner"),
    [
        ("introducer.registered", REGISTRATION, PartyRef("introducer", "int-zoe")),
        (
            "client.registered",
            {"client_id": "cli-1", "display_name": "Boulangerie Ferrand SA"},
            PartyRef("client", "cli-1"),
        ),
        (
            "adviser.registered",
            {"adviser_id": "adv-1", "display_name": "Luc Martin-Delacroix"},
            PartyRef("adviser", "adv-1"),
        ),
        (
            "introducer.bank_details",
            {"introducer_id": "int-zoe", "iban": "CH9300762011623852957", "effective_date": "2025-02-01"},
            PartyRef("introducer", "int-zoe"),
        ),
    ],
)
def test_each_personal_fact_is_sealed_for_its_owner(kind: str, data: dict[str, Any], owner: PartyRef) -> None:
    """Every personal field is stored as a token for its owner and opens back to the value."""
    parsed = parse_envelope(envelope(kind, data))
    assert owner_of(parsed.fact) == owner
    ring = keyring()
    sealed = Sealer(ring).seal(parsed.document, parsed.fact)
    personal = [k for k, v in sealed["data"].items() if is_token(v)]
    assert personal and all(
        sealed["data"][k].startswith(f"pd1:{owner.kind}:{owner.party_id}:") for k in personal
    )
    assert not [k for k in personal if data[k] in json.dumps(sealed, ensure_ascii=False)]
    assert fact_of_stored(sealed, ring) == parsed.fact


@settings(max_examples=50, deadline=None)
@given(text=st.text(min_size=1, max_size=200).filter(lambda t: t.strip() and t.isprintable()))
def test_sealing_round_trips_any_text(text: str) -> None:
    """Any name seals and opens back exactly; after the key is destroyed it cannot be opened."""
    ring = keyring()
    owner = PartyRef("client", "cli-1")
    token = ring.seal(owner, "display_name", text)
    blob = token.rpartition(":")[2]
    assert ring.open(token, "display_name") == text
    assert len(text) < 12 or text not in blob  # (a short text may occur by chance in base64)
    assert ring.forget(owner) and ring.open(token, "display_name") is None and not ring.forget(owner)


def test_a_tampered_or_moved_token_does_not_open() -> None:
    """The field name and owner are bound to the ciphertext: a token moved to another field,
    or altered, fails loudly instead of opening."""
    ring = keyring()
    token = ring.seal(PartyRef("client", "cli-1"), "display_name", "Boulangerie SA")
    with pytest.raises(KeyringError, match="does not open"):
        ring.open(token, "email")
    altered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    with pytest.raises(KeyringError):
        ring.open(altered, "display_name")


def test_tokens_are_refused_at_intake_and_erased_in_a_replay() -> None:
    """A sender may not send a sealed value; a replay of an exported log reads it as erased."""
    ring = keyring()
    parsed = parse_envelope(envelope("introducer.registered", REGISTRATION))
    sealed = Sealer(ring).seal(parsed.document, parsed.fact)
    with pytest.raises(Rejection) as refused:
        parse_envelope(json.dumps(sealed))
    assert refused.value.reason == "invalid_value" and "pd1:" in refused.value.message
    replayed = parse_envelope(json.dumps(sealed), sealed=True).fact
    assert replayed == redacted(parsed.fact)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("nokey", "must be id:base64key"),
        ("k1:!!!", "not base64"),
        (f"k1:{base64.b64encode(b'x' * 16).decode()}", "16 bytes, not 32"),
        (f"{MASTER},{MASTER}", "twice"),
    ],
)
def test_malformed_master_keys_are_refused_by_name(text: str, message: str) -> None:
    """Each malformed LEDGER_MASTER_KEYS names the problem, never the key."""
    with pytest.raises(KeyringError, match=message) as error:
        MasterKeys.parse(text)
    assert "k" * 10 not in str(error.value)


def test_a_missing_or_wrong_master_key_fails_the_check_and_rotation_fixes_it() -> None:
    """Data keys wrapped by k1 need k1; rotation rewraps them with the newest key."""
    store = MemoryFactStore()
    ring = keyring(store)
    token = ring.seal(PartyRef("adviser", "adv-1"), "display_name", "Luc")
    other = f"m2:{base64.b64encode(b'z' * 32).decode()}"
    with pytest.raises(KeyringError, match="does not hold"):
        keyring(store, other).check()
    with pytest.raises(KeyringError, match="is not the key they were wrapped with"):
        keyring(store, f"m1:{base64.b64encode(b'z' * 32).decode()}").check()
    assert keyring(store, f"{other},{MASTER}").rotate() == 1
    fresh = keyring(store, other)
    assert fresh.check() == 1 and fresh.open(token, "display_name") == "Luc"


def test_a_wrong_master_key_is_caught_even_after_everyone_is_erased() -> None:
    """The check key (made with the first person's key, never erased, not counted) still
    tells a wrong master key once every person's key is destroyed, and rotates with them."""
    store = MemoryFactStore()
    ring = keyring(store)
    ring.seal(PartyRef("adviser", "adv-1"), "display_name", "Luc Martin-Delacroix")
    ring.seal(PartyRef("client", "cli-1"), "display_name", "Boulangerie Ferrand SA")
    assert ring.check() == 2 and len(store.data_key_owners()) == 3
    assert ring.forget(PartyRef("adviser", "adv-1")) and ring.forget(PartyRef("client", "cli-1"))
    assert ring.check() == 0
    with pytest.raises(KeyringError, match="is not the key they were wrapped with"):
        keyring(store, f"m1:{base64.b64encode(b'z' * 32).decode()}").check()
    other = f"m2:{base64.b64encode(b'y' * 32).decode()}"
    assert keyring(store, f"{other},{MASTER}").rotate() == 0
    assert keyring(store, other).check() == 0
    with pytest.raises(KeyringError, match="does not hold"):
        keyring(store).check()


def test_erasure_in_the_ledger() -> None:
    """After an erasure: names read erased (in memory and read back), a redelivered
    registration is a duplicate, new personal data about the person is refused, erasing again
    is a duplicate, and the key goes once the erasure completes."""
    store = MemoryFactStore()
    ring = keyring(store)
    ledger = ledger_on(store, ring)
    registration = envelope("introducer.registered", REGISTRATION, id="reg-1")
    erase = envelope(
        "party.erased",
        {"party_type": "introducer", "party_id": "int-zoe", "requested_by": "dpo", "approved_by": "tre"},
        id="erase-1",
    )
    assert [o.status for o in ledger.ingest([registration, erase])] == ["accepted", "accepted"]
    assert ledger.index.names["int-zoe"] == ERASED
    [(party, position, needles)] = ledger.pending_erasures()
    assert party == PartyRef("introducer", "int-zoe") and position == 2 and "zoe@example.org" in needles
    again = envelope(
        "party.erased",
        {"party_type": "introducer", "party_id": "int-zoe", "requested_by": "dpo2", "approved_by": "tre"},
        id="erase-2",
    )
    bank = envelope(
        "introducer.bank_details",
        {"introducer_id": "int-zoe", "iban": "CH9300762011623852957", "effective_date": "2025-06-01"},
    )
    outcomes = ledger.ingest([registration, again, bank])
    assert [(o.status, o.reason) for o in outcomes] == [
        ("duplicate", None),
        ("duplicate", None),
        ("rejected", "party_erased"),
    ]
    assert ledger.complete_erasure(party) and not ring.has_key(party) and ledger.pending_erasures() == []
    reread = ledger_on(store, keyring(store))
    reread.catch_up()
    stored = reread.index.by_position[0]
    assert (
        isinstance(stored, f.IntroducerRegistered) and stored.display_name == ERASED and stored.email is None
    )


def test_an_erasure_interrupted_before_its_key_is_destroyed_is_redone_after_a_restart() -> None:
    """A crash between storing the erasure and destroying the key: the next process reads the
    person's values again (to scrub) and destroys the key; a crash after it finds nothing more
    to scrub and nothing to destroy, and every view reads erased."""
    store = MemoryFactStore()
    first = ledger_on(store, keyring(store))
    registration = envelope("introducer.registered", REGISTRATION, id="reg-1")
    erase = envelope(
        "party.erased",
        {"party_type": "introducer", "party_id": "int-zoe", "requested_by": "dpo", "approved_by": "tre"},
        id="erase-1",
    )
    first.ingest([registration, erase])  # ... and the process dies here, the key still there
    party = PartyRef("introducer", "int-zoe")
    second = ledger_on(store, keyring(store))
    second.catch_up()
    [(_, _, needles)] = second.pending_erasures()
    assert "zoe@example.org" in needles and second.index.names["int-zoe"] == ERASED
    assert second.complete_erasure(party)
    third = ledger_on(store, keyring(store))
    third.catch_up()
    assert [(p, n) for p, _, n in third.pending_erasures()] == [(party, [])]
    assert not third.complete_erasure(party) and third.index.names["int-zoe"] == ERASED


def test_an_erased_introducer_cannot_be_paid() -> None:
    """A payout to an erased introducer is refused with that reason, not as a bad IBAN."""
    from ledger.application.payouts import BankAccount, cannot_pay

    assert "was erased" in (cannot_pay(BankAccount(ERASED, None, ERASED), "CHF") or "")
    assert cannot_pay(BankAccount("CH9300762011623852957", None, "Zoë"), "CHF") is None


def _strings_held_by(root: object) -> set[str]:
    """Every string reachable from ``root`` through containers and instances (not through
    classes, modules or functions)."""
    seen: set[int] = set()
    found: set[str] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
        elif not isinstance(obj, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
            stack.extend(gc.get_referents(obj))
    return found


@pytest.mark.parametrize("fast_forward", [False, True])
def test_an_erasure_leaves_nothing_personal_in_the_derived_event_state(fast_forward: bool) -> None:
    """After an introducer and a client are erased, the outbox's deriver holds none of their
    personal values (registration, reason for custom terms, in a voided introduction too),
    whether it advanced fact by fact or fast-forwarded, and its figures are unchanged."""
    store = MemoryFactStore()
    ledger = ledger_on(store, keyring(store))
    reason = "Sous-traitance négociée avec Mme Dupont"
    intro = {
        "introducer_id": "int-zoe",
        "client_id": "cli-fer",
        "adviser_id": "adv-a",
        "date": "2025-01-01",
        "terms": [{"rate": "0.05", "months": 12}],
        "terms_reason": reason,
    }
    first = [
        envelope("introducer.registered", REGISTRATION, id="reg"),
        envelope("introduction.recorded", {**intro, "introduction_id": "intro-1"}, id="i1"),
        envelope("introduction.recorded", {**intro, "introduction_id": "intro-2", "adviser_id": "adv-b"}),
        envelope(
            "invoice.issued",
            {
                "invoice_id": "INV-1",
                "adviser_id": "adv-a",
                "client_id": "cli-fer",
                "issue_date": "2025-02-01",
                "currency": "CHF",
                "net_amount": "1000.00",
            },
        ),
        envelope(
            "fact.voided",
            {
                "void_id": "v-1",
                "target_type": "introduction",
                "target_id": "intro-2",
                "date": "2025-03-01",
                "reason": "recorded in error",
                "requested_by": "tre-ana",
                "approved_by": "tre-luc",
            },
        ),
    ]
    erasures = [
        envelope(
            "party.erased",
            {"party_type": kind, "party_id": who, "requested_by": "dpo", "approved_by": "tre"},
            id=f"erase-{who}",
        )
        for kind, who in (("introducer", "int-zoe"), ("client", "cli-fer"))
    ]
    deriver = Deriver()
    for batch in (first, erasures):
        start = ledger.head_position
        assert all(o.status == "accepted" for o in ledger.ingest(batch))
        new = ledger.index.by_position[start:]  # as the outbox sees them: opened at the time
        if fast_forward:
            deriver.fast_forward(new)
        else:
            for position, fact in enumerate(new, start=start + 1):
                deriver.advance(position, fact)
        if batch is first:
            held = _strings_held_by(deriver)
            assert reason in held and "zoe@example.org" in held  # the check can see them
            lines = {k: (v.amount, v.beneficiary_id) for p in deriver._lines.values() for k, v in p.items()}
    held = _strings_held_by(deriver)
    personal = [reason, *(v for k, v in REGISTRATION.items() if k != "introducer_id")]
    assert [value for value in personal if value in held] == []
    assert {k: (v.amount, v.beneficiary_id) for p in deriver._lines.values() for k, v in p.items()} == lines
