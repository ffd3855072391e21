"""Erasure: the notifier's side of a party's right to erasure (GDPR art. 17, Swiss FADP).

On ``party.erased`` (see :class:`notifier.domain.events.PartyErased`), in the ingest's one
store transaction:

1. the party's contact (name, e-mail, webhook URL) is read from its directory entry, then
   the entry becomes a tombstone (kind, id, when erased), or a tombstone alone is written
   when the party was never registered: a registration seen later (redelivery, replay) is
   ignored, and events for the party are dropped, never sent;
2. every event and alert of which the party is the recipient is deleted: alerts not sent
   yet (pending, queued for a digest, failed) are cancelled, digests and failure details go
   with them;
3. its name, e-mail and URL are replaced by ``[erased]`` wherever else the store holds them
   (another party's statement naming it, an event that tells nobody, a failure detail):
   those rows stay, since they are what keeps other parties' alerts exactly-once.

After the transaction the store makes it real on disk (:meth:`AlertStore.shred`), and only
then is the message acked: a crash anywhere redelivers it and the erasure runs again. Run
again it deletes nothing more (the contact is gone, so there is nothing to look for) and
does not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from notifier.application.ports import AlertStore, Erasure
from notifier.domain.erasure import contact_strings, redactor
from notifier.domain.events import PartyErased

__all__ = ["ErasureOutcome", "forget_party"]


@dataclass(frozen=True, slots=True)
class ErasureOutcome:
    """What an erasure did (counts only: it is logged)."""

    deleted: Erasure
    #: the party had a contact in the directory (False: never registered, or erased before)
    had_contact: bool
    #: rows of other parties (events, failure details) whose mentions were replaced
    redacted: int


def forget_party(store: AlertStore, erased: PartyErased, at: datetime) -> ErasureOutcome:
    """Steps 1-3 of the module docstring (call inside a store transaction)."""
    contact = store.party(erased.key)  # before the entry becomes a tombstone
    deleted = store.erase_party(erased.party_type, erased.party_id, at)
    redacted = 0
    if contact is not None:
        redacted = store.redact_mentions(contact_strings(contact), redactor(contact))
    return ErasureOutcome(deleted=deleted, had_contact=contact is not None, redacted=redacted)
