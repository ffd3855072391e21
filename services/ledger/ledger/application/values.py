"""Shared immutable values: one object per distinct amount, day and reference in memory.

A long history repeats the same few values millions of times: three currencies, a few
hundred advisers, thousands of clients, a few thousand days, amounts such as ``1430.00``.
Each fact read from JSON would hold its own copies (a ``Decimal`` is 104 bytes, a ``date``
32, a short ``str`` about 55); facts built here hold the one shared object instead, which
is what lets the in-memory index grow by less per fact (README, "Memory and pauses") and a
snapshot, whose pickle writes a shared object once, load faster.

Safe because the values are immutable and nothing compares them by identity. Never used for
personal values (names, e-mails, IBANs, free text): a table of them would keep an erased
person's data in memory. Each table is bounded (:data:`MAX_SHARED_VALUES`): once full, new
values are simply not shared. Pure: no I/O; tables are process-wide and only grow.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from ledger.domain.personal import personal_fields_of

__all__ = [
    "MAX_SHARED_VALUES",
    "SHARED_TEXT_FIELDS",
    "shared_date",
    "shared_decimal",
    "shared_facts_values",
    "shared_fields",
    "shared_text",
    "shared_value",
]

#: Most distinct values each table holds: about 200 bytes each, so at most ~50 MiB for a
#: table that hostile input filled with values seen once (a million-fact history has about
#: 200,000 distinct amounts and a few thousand days and parties).
MAX_SHARED_VALUES = 1 << 18
#: The text fields shared: parties, codes and who did what, the values that repeat. Never
#: a personal field, nor the ids of other facts (each referred to by a handful at most).
SHARED_TEXT_FIELDS = frozenset(
    {
        "adviser_id",
        "approved_by",
        "beneficiary_id",
        "client_id",
        "closed_by",
        "currency",
        "introducer_id",
        "language",
        "party_id",
        "proposed_by",
        "requested_by",
        "supplier_id",
        "target_type",
    }
)

_decimals: dict[str, Decimal] = {}
_dates: dict[str, date] = {}
_texts: dict[str, str] = {}

T = TypeVar("T")


def shared_decimal(text: str) -> Decimal:
    """``Decimal(text)``, the same object for the same text (``"1.0"`` and ``"1.00"`` stay
    two values: their exponents differ)."""
    found = _decimals.get(text)
    if found is None:
        found = Decimal(text)
        if len(_decimals) < MAX_SHARED_VALUES:
            _decimals[text] = found
    return found


def shared_date(text: str) -> date:
    """``date.fromisoformat(text)``, the same object for the same text."""
    found = _dates.get(text)
    if found is None:
        found = date.fromisoformat(text)
        if len(_dates) < MAX_SHARED_VALUES:
            _dates[text] = found
    return found


def shared_text(text: str) -> str:
    """An equal string, the same object for the same text (a reference or a code, never a
    personal value)."""
    found = _texts.get(text)
    if found is None:
        if len(_texts) < MAX_SHARED_VALUES:
            _texts[text] = text
        return text
    return found


def shared_value(value: T) -> T:
    """``value`` itself, or the equal shared object when it is an amount or a day."""
    shared: T = _shared(value)
    return shared


def _shared(value: Any) -> Any:
    kind = type(value)
    if kind is Decimal:
        key = str(value)
        found = _decimals.get(key)
        if found is None:
            found = value
            if len(_decimals) < MAX_SHARED_VALUES:
                _decimals[key] = value
        return found
    if kind is date:
        return shared_date(value.isoformat())
    return value


#: Per fact type: its text fields that are shared (named in SHARED_TEXT_FIELDS, not personal).
_plans: dict[type, tuple[str, ...]] = {}


def _text_fields(kind: type) -> tuple[str, ...]:
    plan = _plans.get(kind)
    if plan is None:
        personal = personal_fields_of(kind)
        assert not SHARED_TEXT_FIELDS & set(personal), kind
        plan = tuple(
            item.name
            for item in dataclasses.fields(kind)
            if item.name in SHARED_TEXT_FIELDS and item.name not in personal
        )
        _plans[kind] = plan
    return plan


def shared_fields(kind: type, fields: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fields`` of a ``kind`` (a frozen dataclass) with shared
    references: the texts of :data:`SHARED_TEXT_FIELDS` (not a fact's own id, unique, nor a
    personal field). Amounts and days come shared from the contract's validators
    (``application.fields``) and the direct decoders already."""
    for name in _text_fields(kind):
        value = fields.get(name)
        if type(value) is str:
            fields[name] = shared_text(value)
    return fields


def shared_facts_values(fact: T) -> T:
    """``fact`` (a frozen dataclass) rebuilt with shared references (see :func:`shared_fields`)."""
    assert dataclasses.is_dataclass(fact) and not isinstance(fact, type), fact
    kind = type(fact)
    names = [item.name for item in dataclasses.fields(kind)]
    rebuilt: T = kind(**shared_fields(kind, {name: getattr(fact, name) for name in names}))
    return rebuilt
