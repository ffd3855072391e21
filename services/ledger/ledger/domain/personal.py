"""Personal data: which fields of which facts are about a person, and what an erased one
looks like. The one list the ledger seals, opens, redacts and exports by.

A person is a *party*: an introducer, a client or an adviser, named by kind and id. Ids are
opaque references chosen by the systems that send the facts and are not personal data by
contract (README, "Personal data"); amounts, dates and rates are not either. Personal are:
names, e-mail addresses, webhook URLs, IBANs and account holders, and the reason given for a
client's custom terms (free text about the client's history). Each personal field belongs
to one party (:func:`owner_of`): its data key encrypts the field in the log, and erasing the
party destroys that key.

Not personal, by decision (README, "Personal data"): a void's reason and a vendor
commission's description are accounting justifications frozen into the month's statement
(rules R9) and shown to every party concerned; the operator tools and the contract say they
must not name anyone.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from ledger.domain import facts as f

__all__ = [
    "ERASED",
    "PARTY_KINDS",
    "PERSONAL_FIELDS",
    "PartyKind",
    "PartyRef",
    "owner_of",
    "personal_fields_of",
    "personal_values",
    "redacted",
]

#: What an erased text field reads as (names, holders, free text). Erased contact fields
#: (e-mail, webhook URL, IBAN where optional) read as absent.
ERASED = "[erased]"

PartyKind: TypeAlias = Literal["introducer", "client", "adviser"]
PARTY_KINDS: tuple[PartyKind, ...] = ("introducer", "client", "adviser")


@dataclass(frozen=True, slots=True, order=True)
class PartyRef:
    """One person the ledger knows: ``introducer/int-1``."""

    kind: PartyKind
    party_id: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.party_id}"


#: The personal fields of each fact type, and the value each takes once erased
#: (``ERASED`` for text, ``None`` for an optional contact field).
PERSONAL_FIELDS: dict[type, dict[str, str | None]] = {
    f.IntroducerRegistered: {
        "display_name": ERASED,
        "email": None,
        "webhook_url": None,
        "iban": ERASED,
        "account_holder": ERASED,
    },
    f.ClientRegistered: {"display_name": ERASED, "email": None, "webhook_url": None},
    f.AdviserRegistered: {"display_name": ERASED, "email": None, "webhook_url": None},
    f.BankDetailsChanged: {"iban": ERASED, "account_holder": ERASED},
    f.IntroductionRecorded: {"terms_reason": ERASED},
}


def owner_of(fact: f.Fact) -> PartyRef | None:
    """The party whose data key seals ``fact``'s personal fields (None: it has none)."""
    if isinstance(fact, f.IntroducerRegistered):
        return PartyRef("introducer", fact.introducer_id)
    if isinstance(fact, f.ClientRegistered):
        return PartyRef("client", fact.client_id)
    if isinstance(fact, f.AdviserRegistered):
        return PartyRef("adviser", fact.adviser_id)
    if isinstance(fact, f.BankDetailsChanged):
        return PartyRef("introducer", fact.introducer_id)
    if isinstance(fact, f.IntroductionRecorded) and fact.terms_reason is not None:
        return PartyRef("client", fact.client_id)
    return None


def personal_fields_of(fact_type: type) -> dict[str, str | None]:
    """The personal fields of ``fact_type`` (empty for facts without any)."""
    return PERSONAL_FIELDS.get(fact_type, {})


def personal_values(fact: f.Fact) -> list[str]:
    """The personal values ``fact`` holds (what must not survive its owner's erasure)."""
    out: list[str] = []
    for name in personal_fields_of(type(fact)):
        value = getattr(fact, name)
        if isinstance(value, str) and value and value != ERASED:
            out.append(value)
    return out


FactT = TypeVar("FactT", bound=f.Fact)


def redacted(fact: FactT) -> FactT:
    """``fact`` with every personal field erased (absent ones stay absent). Every figure
    is unchanged: no rule reads a personal field."""
    fields = personal_fields_of(type(fact))
    if not fields:
        return fact
    changes = {
        name: (None if getattr(fact, name) is None else erased)
        for name, erased in fields.items()
        if getattr(fact, name) != erased
    }
    if not changes:
        return fact
    out: FactT = dataclasses.replace(fact, **changes)  # type: ignore[type-var]
    return out
