"""What an alert says: read what it is about from the store, then render it.

The two steps are apart on purpose: :func:`load_content` reads the store (its thread),
:func:`render_delivery` is pure CPU work (templates, CLDR formatting) and runs elsewhere, so
that rendering never holds up the store. A statement's e-mail carries the PDF as an
:class:`~notifier.application.ports.Attachment` to fetch at send time (from the link the
ledger published); its webhook carries the links only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from notifier.application.ports import AlertRecord, AlertStore, Attachment, Delivery
from notifier.application.render import DigestItem, Renderer
from notifier.domain.events import (
    CommissionEvent,
    DonationCredited,
    LedgerEnvelope,
    Party,
    PayoutRecorded,
    parse_payload,
)
from notifier.domain.statements import StatementIssued

__all__ = ["AlertContent", "AlertWithdrawn", "load_content", "render_delivery"]


class AlertWithdrawn(Exception):
    """The alert's party or event is no longer in the store (the party was erased since the
    alert was read): there is nothing to send."""


@dataclass(frozen=True, slots=True)
class AlertContent:
    """An alert with what it is about: its party and its ledger event (or the digest's)."""

    record: AlertRecord
    party: Party
    envelopes: tuple[LedgerEnvelope, ...]


def load_content(store: AlertStore, record: AlertRecord) -> AlertContent:
    """Read the alert's party and event(s) (blocking: call on the store's thread); raise
    :class:`AlertWithdrawn` when they are gone."""
    party = store.party(record.recipient)
    if party is None:
        raise AlertWithdrawn(str(record.key))
    key = record.key
    if record.is_digest:
        envelopes = tuple(store.digest_items(key.alert_id, key.channel))
    else:
        stored = store.event(key.alert_id)
        if stored is None:
            raise AlertWithdrawn(str(record.key))
        envelopes = (stored.envelope,)
    return AlertContent(record, party, envelopes)


def render_delivery(renderer: Renderer, content: AlertContent) -> Delivery:
    """The rendered alert (pure: no I/O)."""
    record, party = content.record, content.party
    key = record.key
    if record.is_digest:
        assert record.queued_day is not None, record
        items: list[DigestItem] = []
        for envelope in content.envelopes:
            payload = parse_payload(envelope.kind, envelope.data)
            assert isinstance(payload, CommissionEvent | DonationCredited | PayoutRecorded), envelope.id
            items.append(DigestItem(envelope.id, envelope.kind, envelope.ledgerposition, payload))
        rendered = renderer.render_digest(items, party, record.queued_day, key.alert_id)
        about: dict[str, Any] = {
            "kind": "digest",
            "day": record.queued_day.isoformat(),
            "events": [_about(e) for e in content.envelopes],
        }
        return Delivery(key, party, rendered, about)
    (envelope,) = content.envelopes
    payload = parse_payload(envelope.kind, envelope.data)
    if isinstance(payload, StatementIssued):
        rendered = renderer.render_statement(payload, party, envelope.id, attached=key.channel == "email")
        attachments: tuple[Attachment, ...] = ()
        if key.channel == "email":
            attachments = (Attachment(payload.attachment_name, payload.pdf_url, payload.link_expires),)
        return Delivery(key, party, rendered, _about(envelope), attachments)
    assert isinstance(payload, CommissionEvent | DonationCredited | PayoutRecorded), key
    rendered = renderer.render_event(envelope.kind, payload, party, envelope.id, envelope.ledgerposition)
    return Delivery(key, party, rendered, _about(envelope))


def _about(envelope: LedgerEnvelope) -> dict[str, Any]:
    return {
        "id": envelope.id,
        "kind": envelope.kind,
        "type": envelope.type,
        "ledger_position": envelope.ledgerposition,
        "data": envelope.data,
    }
