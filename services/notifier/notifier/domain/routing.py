"""Who hears about an event, and how (pure functions)."""

from __future__ import annotations

from collections.abc import Collection

from notifier.domain.events import (
    COOPERATIVE,
    Channel,
    CommissionEvent,
    DonationCredited,
    Introducer,
    Payload,
)

__all__ = ["channels_for", "recipient_of"]


def recipient_of(kind: str, payload: Payload) -> str | None:
    """The introducer to alert about an event, or None when nobody is to be told.

    - ``commission.*`` goes to the beneficiary. A line credited to the cooperative (its
      introducer is a donor) is told to the donor by ``donation.credited`` instead, once.
    - A new commission of zero (a rate-0 period kept for the audit trail) and a payable
      change of zero tell nothing.
    - ``donation.credited`` goes to the donor.
    """
    if isinstance(payload, CommissionEvent):
        if payload.beneficiary_id == COOPERATIVE:
            return None
        if kind == "commission.accrued" and payload.amount == 0:
            return None
        if kind == "commission.payable" and payload.delta == 0:
            return None
        return payload.beneficiary_id
    if isinstance(payload, DonationCredited):
        return payload.donor_id if payload.amount != 0 else None
    return None


def channels_for(introducer: Introducer, enabled: Collection[Channel]) -> list[Channel]:
    """E-mail if the introducer has an address, webhook if a URL, each when enabled."""
    out: list[Channel] = []
    if introducer.email and "email" in enabled:
        out.append("email")
    if introducer.webhook_url and "webhook" in enabled:
        out.append("webhook")
    return out
