"""Personal fields sealed in the log, opened when read back (crypto-shredding).

Before a fact is stored, each of its personal fields (``domain/personal.py``) is replaced by
a *sealed token*: the value encrypted with its owner's data key. The hash chain covers the
stored bytes, tokens included, so ``audit verify`` needs no key. Reading the log back opens
each token with the owner's key; once the owner is erased (key destroyed) or without any
key (an auditor replaying an export), the field reads as erased. No figure reads a personal
field, so every figure is the same either way.

A token is ``pd1:<kind>:<party id>:<base64url(nonce | ciphertext)>``: the owner is named by
kind and id (not personal by contract), the rest is opaque.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ledger.domain.personal import PartyRef, owner_of, personal_fields_of

__all__ = ["TOKEN_PREFIX", "Keyring", "Sealer", "is_token", "open_data", "token_owner"]

TOKEN_PREFIX = "pd1:"  # noqa: S105 (a format marker, not a secret)


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def token_owner(token: str) -> PartyRef | None:
    """The party a token is sealed for, or None when it is not a well-formed token."""
    parts = token.split(":", 2)
    if (
        len(parts) != 3
        or parts[0] + ":" != TOKEN_PREFIX
        or parts[1] not in ("introducer", "client", "adviser")
    ):
        return None
    party_id, _, blob = parts[2].rpartition(":")
    if not party_id or not blob:
        return None
    return PartyRef(parts[1], party_id)  # type: ignore[arg-type]


class Keyring(Protocol):
    """Per-person data keys (kept in the store, wrapped by the master key)."""

    def seal(self, owner: PartyRef, field: str, plaintext: str) -> str:
        """A token for ``plaintext`` under ``owner``'s data key (created when missing)."""

    def open(self, token: str, field: str) -> str | None:
        """The plaintext of ``token``, or None when its owner's key is gone (erased)."""

    def forget(self, owner: PartyRef) -> bool:
        """Destroy ``owner``'s data key; True when there was one."""

    def has_key(self, owner: PartyRef) -> bool: ...

    def preload(self, owners: Iterable[PartyRef]) -> None:
        """Open the data keys of ``owners`` in one read (before opening many of their facts)."""


def open_data(fact_type: type, data: Mapping[str, Any], keyring: Keyring | None) -> dict[str, Any]:
    """``data`` with every sealed personal field opened, or erased when it cannot be (no
    keyring, or the owner's key destroyed): text reads ``[erased]``, an optional contact
    field is left out."""
    fields = personal_fields_of(fact_type)
    if not fields:
        return data if isinstance(data, dict) else dict(data)
    out = dict(data)
    for name, erased in fields.items():
        value = out.get(name)
        if not isinstance(value, str) or not is_token(value):
            continue
        plaintext = keyring.open(value, name) if keyring is not None else None
        if plaintext is not None:
            out[name] = plaintext
        elif erased is None:
            out.pop(name)
        else:
            out[name] = erased
    return out


class Sealer:
    """Seals the personal fields of the envelopes the ledger stores, opens them read back.
    Without a keyring (a replay of an exported file), nothing is sealed and every token reads
    as erased."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring

    def seal(self, envelope: dict[str, Any], fact: Any) -> dict[str, Any]:
        """The envelope to store for ``fact``: its personal fields sealed for their owner."""
        owner = owner_of(fact)
        if owner is None or self.keyring is None:
            return envelope
        data = dict(envelope["data"])
        for name in personal_fields_of(type(fact)):
            value = data.get(name)
            if isinstance(value, str) and not is_token(value):
                data[name] = self.keyring.seal(owner, name, value)
        return {**envelope, "data": data}

    def open(self, fact_type: type, envelope: dict[str, Any]) -> dict[str, Any]:
        """The envelope as it was accepted (or with erased fields erased)."""
        if not personal_fields_of(fact_type):
            return envelope
        return {**envelope, "data": open_data(fact_type, envelope["data"], self.keyring)}
