"""What each party sees of a month's statement (rules R9): an introducer, a client, an
adviser, the cooperative. Each is a view of the month's statement document (frozen when the
month is closed), so the figures are the month's figures to the cent; names are looked up
when the view is made, never stored in the frozen statement (they are personal data)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from ledger.domain.books import Books
from ledger.domain.facts import COOPERATIVE
from ledger.domain.money import format_amount

__all__ = [
    "MAX_EVENT_LINES",
    "PARTY_KINDS",
    "PartyKind",
    "bounded",
    "has_figures",
    "parties_of",
    "party_names",
    "party_statement",
]

#: Most lines of each list a statement event carries (the page and the PDF have them all).
MAX_EVENT_LINES = 200

PartyKind = Literal["introducer", "client", "adviser", "cooperative"]
PARTY_KINDS: tuple[PartyKind, ...] = ("introducer", "client", "adviser", "cooperative")


def _totals(lines: list[dict[str, Any]], field: str = "amount") -> list[dict[str, str]]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        sums[line["currency"]] += Decimal(line[field])
    return [{"currency": c, "amount": format_amount(v, c)} for c, v in sorted(sums.items())]


def party_names(books: Books) -> dict[str, str]:
    """The display names the ledger knows, by id (registrations of introducers, clients and
    advisers)."""
    names = {i.introducer_id: i.display_name for i in books.introducers}
    names.update((c.client_id, c.display_name) for c in books.clients)
    names.update((a.adviser_id, a.display_name) for a in books.advisers)
    return names


def party_statement(
    statement: dict[str, Any],
    kind: PartyKind,
    party_id: str,
    names: Mapping[str, str] | None = None,
    accounts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The part of ``statement`` (a month's statement document) that concerns one party,
    with the names known for the ids it shows (and an introducer's payout account on
    record, masked, from ``accounts``)."""
    names = names or {}
    details = statement["details"]
    commissions = details["commissions"]
    if kind == "introducer":
        lines = [c for c in commissions if c["introducer_id"] == party_id]
        rows = [r for r in statement["balances"] if r["beneficiary_id"] == party_id]
        payouts = [p for p in details["payouts"] if p["beneficiary_id"] == party_id]
        extra: dict[str, Any] = {
            "donations": _totals([c for c in lines if c["beneficiary_id"] == COOPERATIVE]),
            "payouts": payouts,
            "account": (accounts or {}).get(party_id),
        }
        voids = [v for v in details["voids"] if party_id in v.get("introducers", [])]
    elif kind == "client":
        lines = [c for c in commissions if c["client_id"] == party_id]
        rows = [r for r in statement["rebates"] if r["client_id"] == party_id]
        extra = {
            key: [x for x in details.get(key, []) if x["client_id"] == party_id]
            for key in ("margins", "rebate_shares", "pass_throughs", "disclosures")
        }
        voids = [v for v in details["voids"] if party_id in v.get("clients", [])]
    elif kind == "adviser":
        lines = [c for c in commissions if c["adviser_id"] == party_id]
        rows = []
        payouts = [p for p in details["payouts"] if p["adviser_id"] == party_id]
        extra = {"payouts": payouts, "payout_totals": _totals(payouts)}
        voids = [v for v in details["voids"] if party_id in v.get("advisers", [])]
    else:
        assert kind == "cooperative", kind
        party_id = COOPERATIVE
        lines = [c for c in commissions if c["beneficiary_id"] == COOPERATIVE]
        rows = [r for r in statement["balances"] if r["beneficiary_id"] == COOPERATIVE]
        extra = {"payouts": [p for p in details["payouts"] if p["beneficiary_id"] == COOPERATIVE]}
        voids = []
    shown = (
        {
            ident
            for line in lines
            for ident in (line["introducer_id"], line["client_id"], line["adviser_id"], line.get("donor_id"))
            if ident
        }
        | {party_id}
        | {d["adviser_id"] for d in extra.get("disclosures", [])}
    )
    return {
        "statement": kind,
        "party_id": party_id,
        "party_name": names.get(party_id, party_id),
        "period": statement["period"],
        "status": statement["status"],
        "close": statement["close"],
        "head": statement["head"],
        "rows": rows,
        "commissions": lines,
        "commission_totals": _totals(lines),
        "voids": voids,
        "names": {ident: names[ident] for ident in sorted(shown) if ident in names},
        **extra,
    }


def has_figures(party: dict[str, Any]) -> bool:
    """Whether a party's month shows anything (a party with nothing is sent nothing)."""
    return bool(
        party["rows"]
        or party["commissions"]
        or party["voids"]
        or party.get("payouts")
        or party.get("margins")
        or party.get("rebate_shares")
        or party.get("pass_throughs")
        or party.get("disclosures")
    )


def parties_of(statement: dict[str, Any]) -> list[tuple[PartyKind, str]]:
    """Every introducer, client and adviser a month's statement shows (sorted)."""
    details = statement["details"]
    introducers = {r["beneficiary_id"] for r in statement["balances"]}
    introducers |= {c["introducer_id"] for c in details["commissions"]}
    introducers |= {p["beneficiary_id"] for p in details["payouts"]}
    introducers.discard(COOPERATIVE)
    clients = {r["client_id"] for r in statement["rebates"]} | {
        c["client_id"] for c in details["commissions"]
    }
    for key in ("margins", "rebate_shares", "pass_throughs", "disclosures"):
        clients |= {x["client_id"] for x in details.get(key, [])}
    advisers = {c["adviser_id"] for c in details["commissions"]} | {
        p["adviser_id"] for p in details["payouts"]
    }
    for void in details["voids"]:
        introducers |= set(void.get("introducers", []))
        clients |= set(void.get("clients", []))
        advisers |= set(void.get("advisers", []))
    kinds: list[tuple[PartyKind, set[str]]] = [
        ("introducer", introducers),
        ("client", clients),
        ("adviser", advisers),
    ]
    return [(kind, ident) for kind, ids in kinds for ident in sorted(ids)]


def bounded(party: dict[str, Any], limit: int = MAX_EVENT_LINES) -> dict[str, Any]:
    """The party's view with each list cut to ``limit`` lines (``truncated`` names those cut,
    with their full length): an event must fit a message; the page has every line."""
    out = dict(party)
    cut = {}
    for key, value in party.items():
        if isinstance(value, list) and len(value) > limit:
            out[key] = value[:limit]
            cut[key] = len(value)
    out["truncated"] = cut
    return out
