"""Voids (rules R8): a fact recorded in error counts nowhere, at every as-of date.

:func:`apply_voids` takes a set of facts and returns the facts that count (neither voided
nor voids), one :class:`VoidLine` per void (``applied`` once its target is known), the
voided facts, and an ``unknown_target`` anomaly per void whose target is not (yet) known.
It depends only on the set of facts, so arrival order never matters: a void that comes
before its target applies as soon as the target arrives.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger.domain.anomalies import Anomaly
from ledger.domain.facts import Fact, FactKey, FactVoided

__all__ = ["VoidLine", "Voiding", "apply_voids", "unknown_targets", "void_lines"]


@dataclass(frozen=True, slots=True)
class VoidLine:
    void_id: str
    target_type: str
    target_id: str
    date: dt.date
    reason: str
    requested_by: str
    approved_by: str
    applied: bool


@dataclass(frozen=True, slots=True)
class Voiding:
    """The outcome of applying the voids of a set of facts."""

    counted: tuple[Fact, ...]
    voids: tuple[VoidLine, ...]
    #: The voided facts by business key (the target of at least one void).
    voided: dict[FactKey, Fact]
    #: Every key a void names, known or not (a voided purchase is left out of a rebate's
    #: split even before it arrives).
    targets: frozenset[FactKey]
    anomalies: tuple[Anomaly, ...]


def apply_voids(facts: Iterable[Fact]) -> Voiding:
    all_facts = list(facts)
    voids = [f for f in all_facts if isinstance(f, FactVoided)]
    if not voids:
        return Voiding(tuple(all_facts), (), {}, frozenset(), ())
    targets = frozenset(v.target for v in voids)
    counted: list[Fact] = []
    voided: dict[FactKey, Fact] = {}
    for fact in all_facts:
        if isinstance(fact, FactVoided):
            continue
        if fact.key in targets:
            voided[fact.key] = fact
        else:
            counted.append(fact)
    return Voiding(tuple(counted), void_lines(voids, voided), voided, targets, unknown_targets(voids, voided))


def void_lines(voids: Iterable[FactVoided], voided: Mapping[FactKey, Fact]) -> tuple[VoidLine, ...]:
    """One line per void, by void id: ``applied`` when its target is among ``voided``."""
    return tuple(
        VoidLine(
            v.void_id,
            v.target_type,
            v.target_id,
            v.date,
            v.reason,
            v.requested_by,
            v.approved_by,
            v.target in voided,
        )
        for v in sorted(voids, key=lambda v: v.void_id)
    )


def unknown_targets(voids: Iterable[FactVoided], voided: Mapping[FactKey, Fact]) -> tuple[Anomaly, ...]:
    """An ``unknown_target`` anomaly per void whose target is not (yet) known."""
    return tuple(
        Anomaly(
            "unknown_target",
            v.void_id,
            f"void of {v.target_type} {v.target_id!r}, which the ledger does not know (yet); "
            "it applies when it arrives",
        )
        for v in voids
        if v.target not in voided
    )
