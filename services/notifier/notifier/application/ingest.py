"""Ingest: record a ledger event in the store and say which alerts to send now.

One store transaction per event: a registration (introducer, client or adviser) fills the
directory and releases the events that waited for it; an event for a known party gets one
alert per usable channel (``pending``, or ``queued`` for an introducer's daily digest;
statements are never digested); an event for a party not in the directory yet waits in the
store. Nothing is sent here. Re-ingesting an event (redelivery, re-publication with the same
id) changes nothing and returns only what is still unsettled.

``party.erased`` forgets a party (:mod:`notifier.application.erasure`), then has the store
shred what was deleted before returning (so before the ack); it runs again, harmlessly, each
time it is redelivered. An event for an erased party (a registration included) is recorded
``erased`` without its data, and sends nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import structlog
from pydantic import ValidationError

from notifier.application.digests import DigestPolicy
from notifier.application.erasure import forget_party
from notifier.application.ports import AlertStore, Clock, Observer, Runner
from notifier.domain.events import (
    DIGESTIBLE_KINDS,
    ERASURE_KIND,
    REGISTRATION_KINDS,
    AdviserRegistered,
    AlertKey,
    Channel,
    ClientRegistered,
    Introducer,
    LedgerEnvelope,
    Party,
    PartyErased,
    parse_payload,
)
from notifier.domain.routing import channels_for, recipient_of

__all__ = ["Ingestor"]

log = structlog.get_logger("notifier.ingest")


class Ingestor:
    """Turns ledger events into stored alerts (see the module docstring)."""

    def __init__(
        self,
        *,
        store: AlertStore,
        observer: Observer,
        digest: DigestPolicy,
        channels: Collection[Channel],
        clock: Clock,
        run: Runner,
    ) -> None:
        self.store = store
        self.observer = observer
        self.digest = digest
        self.channels = frozenset(channels)
        self.clock = clock
        self._run = run

    async def ingest(self, envelope: LedgerEnvelope) -> list[AlertKey]:
        """Record ``envelope``; return the alerts to send now (none are sent here)."""
        return await self._run(self._ingest_sync, envelope, self.clock())

    def _ingest_sync(self, envelope: LedgerEnvelope, now: datetime) -> list[AlertKey]:
        if envelope.kind == ERASURE_KIND:
            return self._erase(envelope, now)
        store = self.store
        with store.transaction():
            known = store.event(envelope.id)
            if known is not None:
                work = store.open_alerts_of_event(envelope.id)
                if known.state == "directory":
                    registered = known.recipient or _registered_key(envelope)
                    if registered:
                        work += store.open_alerts_of_recipient(registered)
                return sorted(set(work))
            try:
                payload = parse_payload(envelope.kind, envelope.data)
            except ValidationError as exc:
                self._invalid(envelope, exc, now)
                return []
            if isinstance(payload, Introducer | ClientRegistered | AdviserRegistered):
                return self._register(envelope, payload.party(), now)
            recipient = None if payload is None else recipient_of(envelope.kind, payload)
            if recipient is None:
                store.add_event(envelope, None, "ignored", now)
                self.observer.event(envelope.kind, "ignored")
                return []
            return self._for(envelope, recipient, now)

    def _for(self, envelope: LedgerEnvelope, recipient: str, now: datetime) -> list[AlertKey]:
        """An event for ``recipient``: routed to it, kept until it registers, or dropped
        when it was erased."""
        store = self.store
        party = store.party(recipient)
        if party is not None:
            store.add_event(envelope, recipient, "routed", now)
            return self._route(envelope, party, now)
        if store.party_erased(recipient):
            self._drop(envelope, recipient, now)
            log.info("event for an erased party dropped; nothing sent", event_id=envelope.id, party=recipient)
            return []
        store.add_event(envelope, recipient, "waiting", now)
        self.observer.event(envelope.kind, "waiting")
        log.info("party not registered yet; event kept", event_id=envelope.id, party=recipient)
        return []

    def _invalid(self, envelope: LedgerEnvelope, exc: ValidationError, now: datetime) -> None:
        self.store.add_event(envelope, None, "invalid", now)
        self.observer.event(envelope.kind, "invalid")
        log.error(
            "event data does not validate; no alert",
            event_id=envelope.id,
            errors=exc.errors(include_url=False, include_context=False, include_input=False)[:5],
        )

    def _drop(self, envelope: LedgerEnvelope, recipient: str, now: datetime) -> None:
        """Record an event for an erased party without its data (its id stays, so that a
        redelivery is recognised); it sends nothing."""
        self.store.add_event(envelope.model_copy(update={"data": {}}), recipient, "erased", now)
        self.observer.event(envelope.kind, "erased")

    def _erase(self, envelope: LedgerEnvelope, now: datetime) -> list[AlertKey]:
        """``party.erased``: forget the party, then shred; again on every redelivery."""
        store = self.store
        with store.transaction():
            known = store.event(envelope.id)
            if known is not None and known.state != "erasure":
                return []  # recorded invalid
            try:
                payload = parse_payload(envelope.kind, envelope.data)
            except ValidationError as exc:
                self._invalid(envelope, exc, now)
                return []
            assert isinstance(payload, PartyErased), envelope.id
            outcome = forget_party(store, payload, now)
            if known is None:
                store.add_event(envelope, payload.key, "erasure", now)
                self.observer.event(envelope.kind, "erasure")
        store.shred()
        log.info(
            "party erased" if known is None else "party erasure applied again",
            event_id=envelope.id,
            party=payload.key,
            had_contact=outcome.had_contact,
            tombstoned=outcome.deleted.tombstoned,
            events_deleted=outcome.deleted.events,
            alerts_deleted=outcome.deleted.alerts,
            alerts_cancelled=outcome.deleted.unsent,
            mentions_redacted=outcome.redacted,
        )
        return []

    def _register(self, envelope: LedgerEnvelope, party: Party, now: datetime) -> list[AlertKey]:
        store = self.store
        if store.party_erased(party.key):
            self._drop(envelope, party.key, now)
            log.warning("registration of an erased party ignored", party=party.key, event_id=envelope.id)
            return []
        store.add_event(envelope, party.key, "directory", now)
        self.observer.event(envelope.kind, "directory")
        if not store.add_party(party, envelope.id, now):
            log.warning(
                "party registered again; the first registration stands", party=party.key, event_id=envelope.id
            )
        current = store.party(party.key)
        assert current is not None
        released = store.waiting_events(current.key)
        for waiting in released:
            self._route(waiting, current, now)
        if released:
            log.info("events released by a registration", party=current.key, events=len(released))
        return store.open_alerts_of_recipient(current.key)

    def _route(self, envelope: LedgerEnvelope, party: Party, now: datetime) -> list[AlertKey]:
        channels = channels_for(party, self.channels)
        if not channels:
            self.store.set_event_state(envelope.id, "no_channel")
            self.observer.event(envelope.kind, "no_channel")
            return []
        self.store.set_event_state(envelope.id, "routed")
        self.observer.event(envelope.kind, "routed")
        digest = (
            envelope.kind in DIGESTIBLE_KINDS
            and party.kind == "introducer"
            and self.digest.applies(party.party_id)
        )
        work: list[AlertKey] = []
        for channel in channels:
            key = AlertKey(envelope.id, channel)
            if digest:
                self.store.add_alert(key, party.key, "queued", self.digest.local_day(now), now)
            elif self.store.add_alert(key, party.key, "pending", None, now):
                work.append(key)
        return work


def _registered_key(envelope: LedgerEnvelope) -> str | None:
    """The directory key a stored registration filled (stores written before registrations
    recorded it on the event)."""
    if envelope.kind not in REGISTRATION_KINDS:
        return None
    try:
        payload = parse_payload(envelope.kind, envelope.data)
    except ValidationError:
        return None
    if isinstance(payload, Introducer | ClientRegistered | AdviserRegistered):
        return payload.party().key
    return None
