"""Calendar arithmetic for commission windows (rule R1)."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

from dateutil.relativedelta import relativedelta

__all__ = ["MAX_MONTHS", "add_months"]

#: Longest span any schedule may cover (100 years).
MAX_MONTHS = 1200


@lru_cache(maxsize=1 << 16)
def add_months(day: date, months: int) -> date:
    """``day`` moved by whole calendar months, keeping the day of month clipped to the
    month's last day (2024-02-29 + 12 months = 2025-02-28)."""
    assert -MAX_MONTHS * 2 <= months <= MAX_MONTHS * 2, months
    result: date = day + relativedelta(months=months)
    return result
