"""Per-introducer and per-client views of a report."""

from __future__ import annotations

from typing import Any

__all__ = ["client_view", "introducer_view"]


def introducer_view(report: dict[str, Any], introducer_id: str) -> dict[str, Any]:
    """What concerns one introducer: their introductions, commissions, balance, donations."""
    return {
        "introducer_id": introducer_id,
        "as_of": report["as_of"],
        "head": report["head"],
        "introductions": [i for i in report["introductions"] if i["introducer_id"] == introducer_id],
        "commissions": [c for c in report["commissions"] if c["introducer_id"] == introducer_id],
        "balances": [b for b in report["balances"] if b["beneficiary_id"] == introducer_id],
        "donations": [d for d in report["donations"] if d["donor_id"] == introducer_id],
    }


def client_view(report: dict[str, Any], client_id: str) -> dict[str, Any]:
    """What concerns one client: commissions on its invoices (with introducer, rate and
    beneficiary) and the margins and rebates owed back to it (rules R5 and R6)."""
    return {
        "client_id": client_id,
        "as_of": report["as_of"],
        "head": report["head"],
        "introductions": [i for i in report["introductions"] if i["client_id"] == client_id],
        "commissions": [c for c in report["commissions"] if c["client_id"] == client_id],
        "rebates": [r for r in report["rebates"] if r["client_id"] == client_id],
        "margins": [m for m in report["margins"] if m["client_id"] == client_id],
        "rebate_shares": [s for s in report["rebate_shares"] if s["client_id"] == client_id],
        "disclosures": [d for d in report["disclosures"] if d["client_id"] == client_id],
    }
