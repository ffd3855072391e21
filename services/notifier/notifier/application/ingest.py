"""Ingest: record a ledger event in the store and say which alerts to send now.

One store transaction per event: a registration fills the directory and releases the
events that waited for it; an event for a known introducer gets one alert per usable
channel (``pending``, or ``queued`` for the daily digest); an event for an unknown
introducer waits in the store. Nothing is sent here. Re-ingesting an event (redelivery,
re-publication with the same id) changes nothing and returns only what is still unsettled.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import structlog
from pydantic import ValidationError

from notifier.application.digests import DigestPolicy
from notifier.application.ports import AlertStore, Clock, Observer, Runner
from notifier.domain.events import AlertKey, Channel, Introducer, LedgerEnvelope, parse_payload
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
        store = self.store
        with store.transaction():
            known = store.event(envelope.id)
            if known is not None:
                work = store.open_alerts_of_event(envelope.id)
                if known.state == "directory":
                    work += store.open_alerts_of_recipient(str(envelope.data.get("introducer_id", "")))
                return sorted(set(work))
            try:
                payload = parse_payload(envelope.kind, envelope.data)
            except ValidationError as exc:
                store.add_event(envelope, None, "invalid", now)
                self.observer.event(envelope.kind, "invalid")
                log.error(
                    "event data does not validate; no alert",
                    event_id=envelope.id,
                    errors=exc.errors(include_url=False, include_context=False, include_input=False)[:5],
                )
                return []
            if isinstance(payload, Introducer):
                return self._register(envelope, payload, now)
            recipient = None if payload is None else recipient_of(envelope.kind, payload)
            if recipient is None:
                store.add_event(envelope, None, "ignored", now)
                self.observer.event(envelope.kind, "ignored")
                return []
            introducer = store.introducer(recipient)
            if introducer is None:
                store.add_event(envelope, recipient, "waiting", now)
                self.observer.event(envelope.kind, "waiting")
                log.info(
                    "introducer not registered yet; event kept", event_id=envelope.id, introducer=recipient
                )
                return []
            store.add_event(envelope, recipient, "routed", now)
            return self._route(envelope, introducer, now)

    def _register(self, envelope: LedgerEnvelope, introducer: Introducer, now: datetime) -> list[AlertKey]:
        store = self.store
        store.add_event(envelope, None, "directory", now)
        self.observer.event(envelope.kind, "directory")
        if not store.add_introducer(introducer, envelope.id, now):
            log.warning(
                "introducer registered again; the first registration stands",
                introducer=introducer.introducer_id,
                event_id=envelope.id,
            )
        current = store.introducer(introducer.introducer_id)
        assert current is not None
        released = store.waiting_events(current.introducer_id)
        for waiting in released:
            self._route(waiting, current, now)
        if released:
            log.info(
                "events released by a registration", introducer=current.introducer_id, events=len(released)
            )
        return store.open_alerts_of_recipient(current.introducer_id)

    def _route(self, envelope: LedgerEnvelope, introducer: Introducer, now: datetime) -> list[AlertKey]:
        channels = channels_for(introducer, self.channels)
        if not channels:
            self.store.set_event_state(envelope.id, "no_channel")
            self.observer.event(envelope.kind, "no_channel")
            return []
        self.store.set_event_state(envelope.id, "routed")
        self.observer.event(envelope.kind, "routed")
        digest = self.digest.applies(introducer.introducer_id)
        work: list[AlertKey] = []
        for channel in channels:
            key = AlertKey(envelope.id, channel)
            if digest:
                self.store.add_alert(key, introducer.introducer_id, "queued", self.digest.local_day(now), now)
            elif self.store.add_alert(key, introducer.introducer_id, "pending", None, now):
                work.append(key)
        return work
