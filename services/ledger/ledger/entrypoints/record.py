"""Recording one fact from the command line (a void, a period close, a payout run, an
erasure): the envelope is built here, checked against the contract before it leaves (a
refusal is a clear error, nothing is sent), then published to ``ledger.in.<kind>`` with
``Nats-Msg-Id`` = its id (the default: the running service stores it), or appended to the
configured store directly with ``--ingest``. An operator never writes JSON by hand."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import typer

from coop_runtime.redact import redact_secrets
from ledger.application.contract import Rejection, parse_envelope
from ledger.entrypoints.common import err, open_ledger, settings_or_exit

__all__ = ["checked_envelope", "new_id", "record_fact", "record_facts"]


def new_id(prefix: str) -> str:
    """A fresh business id for a fact made on the command line."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def checked_envelope(kind: str, data: dict[str, Any], envelope_id: str) -> bytes:
    """The checked envelope of one fact; a contract refusal exits 1, nothing sent."""
    envelope = {
        "specversion": "1.0",
        "id": envelope_id,
        "source": "ledger-cli",
        "type": f"coop.ledger.{kind}.v1",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }
    raw = json.dumps(envelope).encode()
    try:
        parse_envelope(raw)
    except Rejection as rejection:
        err.print(f"[red]rejected ({rejection.reason}):[/red] {rejection.message}")
        raise typer.Exit(1) from None
    return raw


def record_facts(kind: str, items: list[tuple[str, dict[str, Any]]], *, ingest: bool) -> list[dict[str, Any]]:
    """Check every ``(envelope id, data)`` of type ``coop.ledger.<kind>.v1`` (one refusal
    sends nothing), then publish them (or with ``ingest`` append them in one batch); the
    outcome of each. Exits 1 after reporting when the ledger rejects any (when appending)."""
    raws = [(envelope_id, checked_envelope(kind, data, envelope_id)) for envelope_id, data in items]
    out: list[dict[str, Any]] = []
    if ingest:
        ledger = open_ledger(settings_or_exit())
        outcomes = ledger.ingest([raw for _, raw in raws])
        for (envelope_id, _), outcome in zip(raws, outcomes, strict=True):
            entry: dict[str, Any] = {
                "id": envelope_id,
                "status": outcome.status,
                "position": outcome.position,
            }
            if outcome.status == "rejected":
                entry.update(reason=outcome.reason, message=outcome.message)
                err.print(f"[red]rejected ({outcome.reason}):[/red] {envelope_id}: {outcome.message}")
            out.append(entry)
        if any(entry["status"] == "rejected" for entry in out):
            sys.stdout.write(json.dumps(out) + "\n")
            raise typer.Exit(1)
        return out
    _publish(kind, raws)
    return [{"id": envelope_id, "status": "published"} for envelope_id, _ in raws]


def record_fact(
    kind: str, data: dict[str, Any], *, envelope_id: str, ingest: bool, quiet: bool = False
) -> dict[str, Any]:
    """Check, then publish (or with ``ingest`` append) one fact of type
    ``coop.ledger.<kind>.v1``; prints (unless ``quiet``) and returns a JSON summary; exits 1
    when the fact is rejected (by the contract here, or by the ledger when appending)."""
    [outcome] = record_facts(kind, [(envelope_id, data)], ingest=ingest)
    summary: dict[str, Any] = {"id": envelope_id, "type": f"coop.ledger.{kind}.v1", "data": data}
    summary.update((k, v) for k, v in outcome.items() if k != "id")
    if not quiet:
        sys.stdout.write(json.dumps(summary) + "\n")
    return summary


def _publish(kind: str, raws: list[tuple[str, bytes]]) -> None:
    import nats

    from coop_runtime.broker import nats_servers
    from ledger.adapters.publish import PermissionWatch, publish_one, wait_for_stream

    settings = settings_or_exit()

    async def go() -> None:
        watch = PermissionWatch()
        nc = await nats.connect(
            nats_servers(settings.nats_url),
            name="ledger-cli",
            error_cb=watch.error_cb,
            **settings.nats_connect_options(),
        )
        try:
            js = nc.jetstream()
            await wait_for_stream(js, watch)
            for envelope_id, raw in raws:
                await publish_one(js, f"ledger.in.{kind}", raw, envelope_id)
        finally:
            await nc.close()

    try:
        asyncio.run(go())
    except Exception as exc:
        err.print(
            f"[red]error:[/red] cannot publish to {settings.redacted_nats_url()} "
            f"({redact_secrets(f'{type(exc).__name__}: {exc}')}); is `ledger serve` running? "
            "(--ingest appends to the store directly)"
        )
        raise typer.Exit(2) from None
