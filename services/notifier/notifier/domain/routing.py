"""Who hears about an event, and how (pure functions)."""

from __future__ import annotations

from collections.abc import Collection

from notifier.domain.events import (
    COOPERATIVE,
    Channel,
    CommissionEvent,
    DonationCredited,
    Party,
    Payload,
    PayoutRecorded,
    VoidCause,
    party_key,
)
from notifier.domain.statements import StatementIssued, has_figures

__all__ = ["channels_for", "correction_of", "recipient_of"]


def correction_of(kind: str, payload: Payload) -> VoidCause | None:
    """The void an event reports as a *correction* (worded as such), or None.

    - ``commission.adjusted`` caused by a void: the commission was taken back or changed.
    - ``commission.payable`` caused by a void that made less payable (a voided payment).
    - ``donation.credited`` caused by a void that withdrew a credit.

    Other events caused by a void (a commission that a void makes due to someone else, a
    payable or donation that grows) keep their ordinary wording, with the void mentioned.
    """
    cause = getattr(payload, "cause", None)
    if not isinstance(cause, VoidCause):
        return None
    if isinstance(payload, CommissionEvent):
        if kind == "commission.adjusted" or (kind == "commission.payable" and payload.delta < 0):
            return cause
        return None
    if isinstance(payload, DonationCredited) and payload.amount < 0:
        return cause
    return None


def _payable_of_a_line_taken_back(kind: str, payload: CommissionEvent) -> bool:
    """The payable withdrawn from a line that the same void takes back whole: the line's
    ``commission.adjusted`` correction (same position, same beneficiary) already says it,
    so the introducer hears one correction per line. (A void never moves a line to another
    beneficiary: a line's introducer is its introduction's and eligibility changes cannot be
    voided; so this payable is always the taken-back line's own beneficiary's.)"""
    return (
        kind == "commission.payable"
        and isinstance(payload.cause, VoidCause)
        and payload.amount == 0
        and payload.previous_amount is not None
        and payload.previous_amount != 0
    )


def recipient_of(kind: str, payload: Payload) -> str | None:
    """The directory key of the party to alert about an event (see
    :func:`notifier.domain.events.party_key`), or None when nobody is to be told.

    - ``commission.*`` goes to the beneficiary (an introducer). A line credited to the
      cooperative (its introducer is a donor) is told to the donor by ``donation.credited``
      instead, once.
    - A new commission of zero (a rate-0 period kept for the audit trail) and a payable
      change of zero tell nothing.
    - A void that takes a commission line back tells its beneficiary once, by the line's
      ``commission.adjusted`` correction: the payable withdrawn with it tells nothing more.
    - ``donation.credited`` goes to the donor.
    - ``payout.recorded`` goes to the introducer paid (its beneficiary); a payout to the
      cooperative, and one of zero, tell nobody.
    - ``statement.issued`` goes to its party (introducer, client or adviser), unless the
      month shows nothing for it (the ledger publishes none then; should one come, it tells
      nothing).
    """
    if isinstance(payload, CommissionEvent):
        silent = (
            payload.beneficiary_id == COOPERATIVE
            or (kind == "commission.accrued" and payload.amount == 0)
            or (kind == "commission.payable" and payload.delta == 0)
            or _payable_of_a_line_taken_back(kind, payload)
        )
        return None if silent else payload.beneficiary_id
    if isinstance(payload, DonationCredited):
        return payload.donor_id if payload.amount != 0 else None
    if isinstance(payload, PayoutRecorded):
        silent = payload.beneficiary_id == COOPERATIVE or payload.amount == 0
        return None if silent else payload.beneficiary_id
    if isinstance(payload, StatementIssued):
        if not has_figures(payload.statement):
            return None
        return party_key(payload.party_kind, payload.party_id)
    return None


def channels_for(party: Party, enabled: Collection[Channel]) -> list[Channel]:
    """E-mail if the party has an address, webhook if a URL, each when enabled."""
    out: list[Channel] = []
    if party.email and "email" in enabled:
        out.append("email")
    if party.webhook_url and "webhook" in enabled:
        out.append("webhook")
    return out
