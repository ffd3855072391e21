"""Erasure (right to erasure): which of an erased party's strings the notifier looks for in
what it keeps of others, and how they are blotted out (pure functions).

The strings are the party's contact: its display name, e-mail address and webhook URL (read
from its directory entry before the entry becomes a tombstone). Ids are not erased: the
ledger keeps them (its ids are pseudonyms) and so does the tombstone; a value under an id
key (``id``, ``*_id``) is never changed, nor is any key, and a name that is the party's id
(a party registered without a name of its own) is not looked for. Elsewhere, in the data of
a stored event:

- a string that *is* the name, the e-mail or the URL (e-mail and URL in any case) becomes
  :data:`ERASED` (a statement's ``names``, ``party_name``);
- inside a longer string, the e-mail and the URL (any case) are replaced wherever they
  appear, and the name (exact case, as whole words) only in free text, i.e. a string with
  white space in it (a void's reason, a description): a one-word string is an id, a code,
  a currency or a date, never changed for a name that happens to be in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from notifier.domain.events import Party

__all__ = ["ERASED", "Redactor", "contact_strings", "redactor"]

#: What replaces an erased party's name, e-mail or webhook URL.
ERASED = "[erased]"

#: Rewrites a JSON value (dicts, lists, strings, numbers) with the erased strings replaced.
Redactor = Callable[[Any], Any]


def contact_strings(party: Party) -> tuple[str, ...]:
    """The strings of ``party`` that no stored data may keep once it is erased: its name,
    e-mail and webhook URL (those it has), longest first."""
    found = {s.strip() for s in (_name(party), party.email, party.webhook_url) if s and s.strip()}
    return tuple(sorted(found, key=lambda s: (-len(s), s)))


def _name(party: Party) -> str:
    """The name to look for: none when it is the party's id."""
    name = party.display_name.strip()
    return "" if name.casefold() == party.party_id.casefold() else name


def _is_id_key(key: Any) -> bool:
    return isinstance(key, str) and (key == "id" or key.endswith("_id"))


def redactor(party: Party) -> Redactor:
    """The function that blots ``party``'s contact out of a JSON value (see the module
    docstring); it returns the value unchanged (equal) when there was nothing to blot."""
    name = _name(party)
    exact = {s.casefold() for s in (party.email, party.webhook_url) if s and s.strip()}
    anywhere = [
        re.compile(re.escape(s.strip()), re.IGNORECASE)
        for s in sorted((party.email, party.webhook_url), key=lambda s: -len(s or ""))
        if s and s.strip()
    ]
    words = re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)") if name else None

    def text(value: str) -> str:
        if (name and value.strip() == name) or value.strip().casefold() in exact:
            return ERASED
        for pattern in anywhere:
            value = pattern.sub(ERASED, value)
        if words is not None and any(c.isspace() for c in value.strip()):
            value = words.sub(ERASED, value)
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return text(value)
        if isinstance(value, dict):
            return {k: v if _is_id_key(k) else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk
