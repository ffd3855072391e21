"""The chart of accounts and the double-entry postings (rule R7: the books balance).

An :class:`Account` is a fixed path in the chart and, for the accounts kept per party, the
party's id: ``Liabilities:Commissions:Accrued:int-bob`` is ``ACCRUED.of("int-bob")``. The
postings, the trial balance and every export use these typed accounts (no account name is
ever parsed back from a string).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "ACCRUED",
    "ADVISER_CASH",
    "COMMISSION_EXPENSES",
    "PAYABLE",
    "PURCHASING_CASH",
    "PURCHASING_RESALES",
    "REBATES_OWED",
    "REBATES_RECEIVABLE",
    "Account",
    "AccountFamily",
    "Posting",
    "trial_balance",
]

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """One account: its place in the chart and, for per-party accounts, the party."""

    path: tuple[str, ...]
    party: str | None = None

    def __post_init__(self) -> None:
        assert self.path and self.path[0] in {"Assets", "Liabilities", "Income", "Expenses", "Equity"}, (
            self.path
        )

    @property
    def family(self) -> str:
        """The chart's part of the name, without the party (``Liabilities:Commissions:Accrued``)."""
        return ":".join(self.path)

    def __str__(self) -> str:
        return self.family if self.party is None else f"{self.family}:{self.party}"


@dataclass(frozen=True, slots=True)
class AccountFamily:
    """Accounts kept per party (per adviser, introducer, client or supplier)."""

    path: tuple[str, ...]

    def of(self, party: str) -> Account:
        return Account(self.path, party)


#: What an adviser owes for introductions (the commission is the adviser's expense).
COMMISSION_EXPENSES = AccountFamily(("Expenses", "Commissions"))
#: Commissions accrued to a beneficiary (introducer or the cooperative), not yet payable.
ACCRUED = AccountFamily(("Liabilities", "Commissions", "Accrued"))
#: Commissions made payable by the client's payments, not yet paid out.
PAYABLE = AccountFamily(("Liabilities", "Commissions", "Payable"))
#: An adviser's cash, out of which payouts are made.
ADVISER_CASH = AccountFamily(("Assets", "Cash"))
#: Resale income of the purchasing centre (retained margins are owed back from it).
PURCHASING_RESALES = Account(("Income", "Purchasing", "Resales"))
#: What the purchasing centre owes a client back (margins and rebate shares).
REBATES_OWED = AccountFamily(("Liabilities", "Rebates", "Owed"))
#: What a supplier owes as a rebate.
REBATES_RECEIVABLE = AccountFamily(("Assets", "Rebates", "Receivable"))
#: The purchasing centre's cash, out of which pass-throughs are paid.
PURCHASING_CASH = Account(("Assets", "Cash", "Purchasing"))


@dataclass(frozen=True, slots=True)
class Posting:
    """A balanced group of legs (debits positive, credits negative) in one currency."""

    date: dt.date
    kind: str
    ref: str
    currency: str
    legs: tuple[tuple[Account, Decimal], ...]
    meta: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        assert sum((amount for _, amount in self.legs), ZERO) == 0, self


def trial_balance(postings: Iterable[Posting]) -> dict[str, tuple[Decimal, Decimal]]:
    """Debits and credits per currency (equal when the books balance)."""
    sums: dict[str, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for posting in postings:
        for _, amount in posting.legs:
            if amount > 0:
                sums[posting.currency][0] += amount
            else:
                sums[posting.currency][1] -= amount
    return {cur: (v[0], v[1]) for cur, v in sorted(sums.items())}
