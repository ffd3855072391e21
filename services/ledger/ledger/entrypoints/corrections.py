"""Corrections and closes, each by two people: ``ledger void`` takes back a fact recorded in
error (rules R8), ``ledger close`` closes a month (rules R9)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from ledger.domain.facts import VOIDABLE_TYPES
from ledger.entrypoints.common import parse_day
from ledger.entrypoints.record import new_id, record_fact

__all__ = ["close", "void"]


def void(
    target_type: Annotated[
        str, typer.Option("--type", help=f"What to take back: {', '.join(sorted(VOIDABLE_TYPES))}.")
    ],
    target_id: Annotated[str, typer.Option("--id", help="Its business id (e.g. the payment_id).")],
    reason: Annotated[str, typer.Option("--reason", help="Why it was an error (1-500 characters).")],
    requested_by: Annotated[str, typer.Option("--requested-by", help="Who asks for the correction.")],
    approved_by: Annotated[
        str, typer.Option("--approved-by", help="Who approves it (a second person: not the requester).")
    ],
    void_id: Annotated[
        str | None, typer.Option("--void-id", help="The void's id (default: a new one).")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", help="The void's date (default: today, UTC).")] = None,
    ingest: Annotated[
        bool, typer.Option("--ingest", help="Append to the configured store instead of publishing over NATS.")
    ] = False,
) -> None:
    """Void a fact recorded in error: it counts nowhere from then on, at any as-of date.
    Rejected before anything is sent when the type cannot be voided or one person both asks
    and approves."""
    chosen = parse_day(day) or datetime.now(UTC).date()
    identifier = void_id or new_id("void")
    data = {
        "void_id": identifier,
        "target_type": target_type,
        "target_id": target_id,
        "date": chosen.isoformat(),
        "reason": reason,
        "requested_by": requested_by,
        "approved_by": approved_by,
    }
    record_fact("fact.voided", data, envelope_id=f"void:{identifier}", ingest=ingest)


def close(
    period: Annotated[str, typer.Option("--period", help="The month to close, YYYY-MM.")],
    closed_by: Annotated[str, typer.Option("--closed-by", help="Who closes it (the treasurer).")],
    approved_by: Annotated[
        str, typer.Option("--approved-by", help="Who approves it (a second person: not the one closing).")
    ],
    day: Annotated[
        str | None,
        typer.Option("--date", help="The close's date, after the month's end (default: today, UTC)."),
    ] = None,
    ingest: Annotated[
        bool, typer.Option("--ingest", help="Append to the configured store instead of publishing over NATS.")
    ] = False,
) -> None:
    """Close a month: its statement is frozen from then on; facts that arrive later and are
    dated in it show as prior-period adjustments of the next month. Rejected before
    anything is sent when the month has not ended or one person both closes and approves;
    the ledger rejects a month that is not the one after the last closed."""
    chosen = parse_day(day) or datetime.now(UTC).date()
    data = {"period": period, "date": chosen.isoformat(), "closed_by": closed_by, "approved_by": approved_by}
    record_fact("period.closed", data, envelope_id=f"close:{period}", ingest=ingest)
