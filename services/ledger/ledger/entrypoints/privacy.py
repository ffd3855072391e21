"""Personal data on the command line: ``ledger forget`` erases a person (two people),
``ledger subject-export`` gives a person everything the ledger holds about them, ``ledger
keys`` manages the master keys that wrap the persons' data keys."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer

from coop_runtime.redact import redact_secrets
from ledger.application.contract import fact_to_data, type_of_fact
from ledger.domain.facts import Fact, PartyErased, PayoutRunProposed
from ledger.domain.personal import PartyRef, owner_of
from ledger.entrypoints.common import err, guard_store, open_ledger, settings_or_exit
from ledger.entrypoints.record import checked_envelope, record_fact

__all__ = ["forget", "keys_app", "subject_export"]

keys_app = typer.Typer(
    name="keys", help="The master keys wrapping the persons' data keys.", no_args_is_help=True
)


class Party(StrEnum):
    introducer = "introducer"
    client = "client"
    adviser = "adviser"


#: The fields that name a party of each kind in the facts.
_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "introducer": ("introducer_id", "beneficiary_id"),
    "client": ("client_id",),
    "adviser": ("adviser_id",),
}


def forget(
    party: Annotated[Party, typer.Option("--party", help="introducer, client or adviser.")],
    party_id: Annotated[str, typer.Option("--id", help="The person's id.")],
    requested_by: Annotated[
        str, typer.Option("--requested-by", help="Who asks (e.g. the data protection officer).")
    ],
    approved_by: Annotated[
        str, typer.Option("--approved-by", help="Who approves it (a second person: not the requester).")
    ],
    ingest: Annotated[
        bool,
        typer.Option(
            "--ingest",
            help="Append to the configured store and destroy the key at once "
            "(no service: the streams are not scrubbed).",
        ),
    ] = False,
    wait_s: Annotated[
        float,
        typer.Option("--wait-s", min=0, max=3600, help="How long to wait for the service to complete it."),
    ] = 60.0,
) -> None:
    """Erase a person's personal data (right to erasure): their data key is destroyed, so
    their names, contacts and bank details can never be read again; every figure stays.
    Refused before anything is sent when one person both asks and approves. Erasing the
    same person again changes nothing."""
    data = {
        "party_type": party.value,
        "party_id": party_id,
        "requested_by": requested_by,
        "approved_by": approved_by,
    }
    envelope_id = f"erase:{party.value}/{party_id}"
    who = PartyRef(party.value, party_id)
    if ingest:
        _forget_here(envelope_id, data, who)
        return
    record_fact("party.erased", data, envelope_id=envelope_id, ingest=False, quiet=True)
    position = _wait_erased(who, wait_s)
    if position is None:
        err.print(
            f"[red]not confirmed:[/red] the erasure of {who} was published, but the service did not "
            f"announce it within {wait_s:g} s; it completes it when it runs "
            "(watch ledger_erasures_completed_total)",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if position == 0:
        summary: dict[str, Any] = {"party": str(who), "status": "published", "confirmed": False}
    else:
        summary = {"party": str(who), "status": "erased", "position": position, "streams_scrubbed": True}
    sys.stdout.write(json.dumps(summary) + "\n")


def _forget_here(envelope_id: str, data: dict[str, Any], who: PartyRef) -> None:
    settings = settings_or_exit()
    raw = checked_envelope("party.erased", data, envelope_id)

    def act() -> dict[str, Any]:
        ledger = open_ledger(settings)
        [outcome] = ledger.ingest([raw])
        if outcome.status == "rejected":
            err.print(f"[red]rejected ({outcome.reason}):[/red] {outcome.message}", soft_wrap=True)
            raise typer.Exit(1)
        destroyed = any(ledger.complete_erasure(party) for party, _, _ in ledger.pending_erasures())
        return {
            "party": str(who),
            "status": "erased" if outcome.status == "accepted" else "already_erased",
            "position": outcome.position,
            "key_destroyed": destroyed,
            "streams_scrubbed": False,
        }

    summary = guard_store(settings, act)
    sys.stdout.write(json.dumps(summary) + "\n")


def _wait_erased(who: PartyRef, wait_s: float) -> int | None:
    """The position of ``who``'s erasure once the service announces it on LEDGER_OUT (it
    does once the key is destroyed and its streams scrubbed), None after ``wait_s``, or 0
    when LEDGER_OUT cannot be read (not confirmed)."""
    import nats
    from nats.js.api import DeliverPolicy

    from coop_runtime.broker import nats_servers

    settings = settings_or_exit()
    suffix = f":party.erased:{who}"

    async def go() -> int | None:
        nc = await nats.connect(
            nats_servers(settings.nats_url), name="ledger-cli", **settings.nats_connect_options()
        )
        try:
            js = nc.jetstream()
            deadline = asyncio.get_running_loop().time() + wait_s
            while True:
                sub = await js.subscribe(
                    "ledger.out.party.erased", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
                )
                try:
                    while True:
                        left = deadline - asyncio.get_running_loop().time()
                        if left <= 0:
                            return None
                        try:
                            msg = await sub.next_msg(timeout=min(left, 2.0))
                        except TimeoutError:
                            break
                        document = orjson.loads(msg.data)
                        if str(document.get("id", "")).endswith(suffix):
                            return int(document["data"]["position"])
                finally:
                    await sub.unsubscribe()
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except Exception as exc:
        # published, but this NATS user may not read LEDGER_OUT (e.g. a producer's role): the
        # service completes the erasure all the same
        err.print(
            f"[yellow]published, not confirmed:[/yellow] cannot read LEDGER_OUT at "
            f"{settings.redacted_nats_url()} ({redact_secrets(f'{type(exc).__name__}: {exc}')}); "
            "the service completes the erasure (watch ledger_erasures_completed_total)",
            soft_wrap=True,
        )
        return 0


def _concerns(fact: Fact, who: PartyRef) -> bool:
    if isinstance(fact, PartyErased):
        return fact.party_type == who.kind and fact.party_id == who.party_id
    if owner_of(fact) == who:
        return True
    if isinstance(fact, PayoutRunProposed) and who.kind == "introducer":
        return any(line.beneficiary_id == who.party_id for line in fact.lines)
    names = {item.name for item in dataclass_fields(fact)}  # type: ignore[arg-type]
    return any(name in names and getattr(fact, name) == who.party_id for name in _ID_FIELDS[who.kind])


def subject_export(
    party: Annotated[Party, typer.Option("--party", help="introducer, client or adviser.")],
    party_id: Annotated[str, typer.Option("--id", help="The person's id.")],
) -> None:
    """Everything the ledger holds about a person (right of access), as JSON: their
    personal data as registered (or that it was erased), and every fact naming them."""
    settings = settings_or_exit()
    who = PartyRef(party.value, party_id)

    def collect() -> dict[str, Any]:
        ledger = open_ledger(settings)
        head = ledger.index.head.position
        facts: list[dict[str, Any]] = []
        personal: dict[str, Any] = {}
        for position, fact in enumerate(ledger.index.by_position[:head], start=1):
            if not _concerns(fact, who):
                continue
            data = fact_to_data(fact)
            facts.append({"position": position, "type": type_of_fact(fact), "data": data})
            if owner_of(fact) == who:
                personal[type_of_fact(fact)] = data
        erased_at = ledger.index.erased.get(who)
        return {
            "party": {"kind": who.kind, "id": who.party_id},
            "generated_at": datetime.now(UTC).isoformat(),
            "erased": erased_at is not None,
            "erased_at_position": erased_at,
            "personal_data": personal,
            "facts": facts,
            "note": (
                "ids, amounts and dates are kept for the cooperative's accounts; personal data reads "
                "[erased] once erased"
            ),
        }

    document = guard_store(settings, collect)
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Option("--id", help="The new key's id (letters, digits, . _ -).")] = "",
) -> None:
    """Print a new master key as LEDGER_MASTER_KEYS takes it (put it first to start using it,
    then run `ledger keys rotate`)."""
    from ledger.adapters.keyring import MasterKeys, generate_master_key

    chosen = key_id or datetime.now(UTC).strftime("k%Y%m%d%H%M")
    entry = f"{chosen}:{generate_master_key()}"
    MasterKeys.parse(entry)  # the id must be valid
    sys.stdout.write(entry + "\n")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Rewrap every person's data key with the first (newest) master key; then the older
    master keys can be dropped from LEDGER_MASTER_KEYS."""
    from ledger.bootstrap import build_keyring, build_store

    settings = settings_or_exit()

    def rotate() -> dict[str, Any]:
        store = build_store(settings)
        try:
            keyring = build_keyring(settings, store)
            rewrapped = keyring.rotate()
            return {"rewrapped": rewrapped, "data_keys": len(keyring.people_keys())}
        finally:
            store.close()

    summary = guard_store(settings, rotate)
    sys.stdout.write(json.dumps(summary) + "\n")


@keys_app.command("check")
def keys_check() -> None:
    """Check that the configured master keys open every data key of the store."""
    from ledger.bootstrap import build_keyring, build_store

    settings = settings_or_exit()

    def check() -> dict[str, Any]:
        store = build_store(settings)
        try:
            owners = build_keyring(settings, store).people_keys()
            by_master: dict[str, int] = {}
            for _, master_id in owners:
                by_master[master_id] = by_master.get(master_id, 0) + 1
            return {"data_keys": len(owners), "by_master_key": by_master}
        finally:
            store.close()

    summary = guard_store(settings, check)
    sys.stdout.write(json.dumps(summary) + "\n")
