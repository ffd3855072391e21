"""Payout runs: what the cooperative transfers to each beneficiary from a closed month.

Pure rules, no I/O and no clock. What is *due* to a beneficiary in a currency is its
``outstanding`` at the close (payable minus paid, rules R5), minus what was paid since the
close (payouts recorded after it, or dated after the month), minus what open runs already
propose (lines not booked by the bank yet, of runs not voided). A due amount below the
currency's minimum is carried over to a later run; one the cooperative cannot transfer (no
bank account, or none that can receive the currency) is listed apart with the reason. The
cooperative itself (donations) is never paid out.

A transfer's end-to-end id is derived from the run, the beneficiary and the currency
(:func:`end_to_end_id`): it goes to the bank in the payment file, comes back in the bank's
notifications, and is the id of the payout the ledger records when the bank books it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from ledger.domain.facts import COOPERATIVE, PayoutLine, PayoutRecorded, PayoutRunProposed

__all__ = [
    "DEFAULT_MINIMUM",
    "MAX_RUN_ID_CHARS",
    "Held",
    "Proposal",
    "due_amounts",
    "end_to_end_id",
    "is_run_id",
    "open_lines",
    "propose",
]

#: The smallest transfer per currency unless configured (the same in CHF and EUR).
DEFAULT_MINIMUM = Decimal("20.00")
#: A run id is at most this long, so that its end-to-end ids fit ISO 20022's 35 characters.
MAX_RUN_ID_CHARS = 18
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,17}")

Key = tuple[str, str]


def is_run_id(text: str) -> bool:
    """Whether ``text`` can name a run (1-18 of ``A-Z a-z 0-9 . -``, not starting with . or -)."""
    return _RUN_ID.fullmatch(text) is not None


def end_to_end_id(run_id: str, beneficiary_id: str, currency: str) -> str:
    """The end-to-end id of one transfer of a run: the run id, a dash and 16 hex digits of
    SHA-256(run | beneficiary | currency). At most 35 characters of ``A-Z a-z 0-9 . -``,
    the same whenever the run's file is made again, distinct per beneficiary and currency,
    and with no personal data (it is shown on the beneficiary's bank statement)."""
    assert _RUN_ID.fullmatch(run_id), run_id
    digest = hashlib.sha256(f"{run_id}|{beneficiary_id}|{currency}".encode()).hexdigest()[:16]
    result = f"{run_id}-{digest}"
    assert len(result) <= 35, result
    return result


@dataclass(frozen=True, slots=True)
class Held:
    """An amount due that this run does not pay, and why."""

    beneficiary_id: str
    currency: str
    amount: Decimal
    reason: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a run pays (``lines``), carries over (below the minimum) and cannot pay."""

    lines: tuple[PayoutLine, ...]
    carried_over: tuple[Held, ...]
    unpayable: tuple[Held, ...]

    def totals(self) -> dict[str, Decimal]:
        """The run's total per currency."""
        out: dict[str, Decimal] = {}
        for line in self.lines:
            out[line.currency] = out.get(line.currency, Decimal(0)) + line.amount
        return dict(sorted(out.items()))


def open_lines(runs: Iterable[PayoutRunProposed], payouts: Iterable[PayoutRecorded]) -> dict[Key, Decimal]:
    """Per (beneficiary, currency): what runs propose that no payout booked yet (a line is
    booked by the payout whose ``end_to_end_id`` is the line's)."""
    booked = {p.end_to_end_id for p in payouts if p.end_to_end_id is not None}
    out: dict[Key, Decimal] = {}
    for run in runs:
        for line in run.lines:
            if end_to_end_id(run.run_id, line.beneficiary_id, line.currency) not in booked:
                key = (line.beneficiary_id, line.currency)
                out[key] = out.get(key, Decimal(0)) + line.amount
    return out


def due_amounts(
    outstanding_at_close: Mapping[Key, Decimal],
    paid_since_close: Mapping[Key, Decimal],
    proposed_open: Mapping[Key, Decimal],
) -> dict[Key, Decimal]:
    """Per (beneficiary, currency), the amounts due now (above zero only), the cooperative
    left out."""
    out: dict[Key, Decimal] = {}
    for key in sorted(outstanding_at_close):
        if key[0] == COOPERATIVE:
            continue
        due = (
            outstanding_at_close[key]
            - paid_since_close.get(key, Decimal(0))
            - proposed_open.get(key, Decimal(0))
        )
        if due > 0:
            out[key] = due
    return out


def propose(
    due: Mapping[Key, Decimal],
    minimums: Mapping[str, Decimal],
    cannot_pay: Callable[[str, str], str | None],
) -> Proposal:
    """The run for ``due``: each amount at or above its currency's minimum (default
    :data:`DEFAULT_MINIMUM`) that ``cannot_pay(beneficiary, currency)`` does not refuse."""
    lines: list[PayoutLine] = []
    carried: list[Held] = []
    unpayable: list[Held] = []
    for (beneficiary, currency), amount in sorted(due.items()):
        assert amount > 0, (beneficiary, currency, amount)
        assert beneficiary != COOPERATIVE
        refused = cannot_pay(beneficiary, currency)
        minimum = minimums.get(currency, DEFAULT_MINIMUM)
        if refused is not None:
            unpayable.append(Held(beneficiary, currency, amount, refused))
        elif amount < minimum:
            reason = f"below the minimum transfer of {minimum} {currency}: carried over"
            carried.append(Held(beneficiary, currency, amount, reason))
        else:
            lines.append(PayoutLine(beneficiary, currency, amount))
    return Proposal(tuple(lines), tuple(carried), tuple(unpayable))
