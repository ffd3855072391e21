"""Rules R1-R6, their edges and their decisions, table-driven."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger.domain.calendar import add_months
from ledger.domain.facts import Term
from ledger.domain.rules import (
    CharterRule,
    charter_rule,
    charter_terms,
    commission_amount,
    is_below_minimum,
    is_eligible,
    payable_amount,
    retained_margin,
    schedule_windows,
    split_rebate,
    window_for,
)

D = Decimal


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2024, 2, 29), 12, date(2025, 2, 28)),  # leap day clipped to month end
        (date(2024, 2, 29), 24, date(2026, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 3, 11), 12, date(2026, 3, 11)),
        (date(2025, 5, 1), -24, date(2023, 5, 1)),
        (date(2025, 3, 31), -1, date(2025, 2, 28)),
    ],
)
def test_add_months_keeps_day_clipped_to_month_end(start: date, months: int, expected: date) -> None:
    """Calendar-month arithmetic keeps the day of month, clipped to the month's last day."""
    assert add_months(start, months) == expected


@pytest.mark.parametrize(
    ("last", "expected"),
    [
        (None, CharterRule.STANDARD),
        (date(2022, 5, 1), CharterRule.STANDARD),
        (date(2023, 5, 1), CharterRule.STANDARD),  # exactly D - 24 months: introducer's favour
        (date(2023, 4, 30), CharterRule.STANDARD),
        (date(2023, 5, 2), CharterRule.REINTRODUCTION_REDUCED),  # just inside 24 months
        (date(2024, 5, 1), CharterRule.REINTRODUCTION_REDUCED),  # exactly D - 12 months: reduced
        (date(2024, 5, 2), CharterRule.REINTRODUCTION_NONE),
        (date(2025, 4, 30), CharterRule.REINTRODUCTION_NONE),
    ],
)
def test_reintroduction_bands_and_their_exact_edges(last: date | None, expected: CharterRule) -> None:
    """R3: the band follows L against D - 24 and D - 12 months; edges favour the introducer."""
    assert charter_rule(date(2025, 5, 1), last) is expected


def test_reintroduction_edges_on_a_leap_day() -> None:
    """R3 edges on 29 February use month-end clipping (D - 12 months = 28 February)."""
    d = date(2024, 2, 29)
    assert charter_rule(d, date(2023, 2, 28)) is CharterRule.REINTRODUCTION_REDUCED
    assert charter_rule(d, date(2023, 3, 1)) is CharterRule.REINTRODUCTION_NONE
    assert charter_rule(d, date(2022, 2, 28)) is CharterRule.STANDARD


@pytest.mark.parametrize(
    ("rule", "terms"),
    [
        (CharterRule.STANDARD, [(D("0.10"), 12), (D("0.05"), 12)]),
        (CharterRule.REINTRODUCTION_REDUCED, [(D("0.05"), 12)]),
        (CharterRule.REINTRODUCTION_NONE, []),
    ],
)
def test_charter_terms(rule: CharterRule, terms: list[tuple[Decimal, int]]) -> None:
    """R1/R3 schedules: 10 % then 5 %, 5 % for a year, or nothing."""
    assert [(t.rate, t.months) for t in charter_terms(rule)] == terms


def test_windows_are_half_open_from_the_first_invoice() -> None:
    """R1: year 1 is [F, F+12m), year 2 is [F+12m, F+24m); exactly F+12m is year 2."""
    windows = schedule_windows(date(2025, 3, 11), charter_terms(CharterRule.STANDARD))
    assert [(w.year, w.start, w.end) for w in windows] == [
        (1, date(2025, 3, 11), date(2026, 3, 11)),
        (2, date(2026, 3, 11), date(2027, 3, 11)),
    ]
    assert window_for(date(2025, 3, 11), windows).year == 1  # type: ignore[union-attr]
    assert window_for(date(2026, 3, 10), windows).year == 1  # type: ignore[union-attr]
    assert window_for(date(2026, 3, 11), windows).year == 2  # type: ignore[union-attr]
    assert window_for(date(2027, 3, 10), windows).year == 2  # type: ignore[union-attr]
    assert window_for(date(2027, 3, 11), windows) is None  # exactly 24 months: nothing
    assert window_for(date(2025, 3, 10), windows) is None


def test_windows_from_a_leap_day_do_not_drift() -> None:
    """Bounds are F + cumulative months, so 29 Feb + 24 months is 28 Feb two years on."""
    windows = schedule_windows(date(2024, 2, 29), charter_terms(CharterRule.STANDARD))
    assert [(w.start, w.end) for w in windows] == [
        (date(2024, 2, 29), date(2025, 2, 28)),
        (date(2025, 2, 28), date(2026, 2, 28)),
    ]
    monthly = schedule_windows(date(2024, 1, 31), [Term(D("0.1"), 1), Term(D("0.1"), 1)])
    assert [w.end for w in monthly] == [date(2024, 2, 29), date(2024, 3, 31)]


@pytest.mark.parametrize(
    ("custom", "charter", "below"),
    [
        ([(D("0.10"), 12), (D("0.05"), 12)], CharterRule.STANDARD, False),
        ([(D("0.08"), 24)], CharterRule.STANDARD, True),  # less in year 1
        ([(D("0.10"), 12), (D("0.05"), 6)], CharterRule.STANDARD, True),  # ends early
        ([(D("0.15"), 6), (D("0.10"), 6), (D("0.05"), 12)], CharterRule.STANDARD, False),
        ([(D("0.12"), 12), (D("0.04"), 12)], CharterRule.STANDARD, True),  # more overall, less in a month
        ([(D("0.05"), 12)], CharterRule.REINTRODUCTION_NONE, False),  # courtesy above nothing
        ([(D("0.04"), 12)], CharterRule.REINTRODUCTION_REDUCED, True),
        ([(D("0.05"), 24)], CharterRule.REINTRODUCTION_REDUCED, False),
    ],
)
def test_custom_terms_below_the_normalised_minimum(
    custom: list[tuple[Decimal, int]], charter: CharterRule, below: bool
) -> None:
    """R2: custom terms are flagged when they pay less than the charter in any month."""
    assert is_below_minimum([Term(r, m) for r, m in custom], charter_terms(charter)) is below


@pytest.mark.parametrize(
    ("net", "rate", "currency", "expected"),
    [
        ("1000.00", "0.10", "CHF", "100.00"),
        ("0.05", "0.10", "CHF", "0.01"),  # 0.005 rounds half up
        ("0.15", "0.10", "CHF", "0.02"),  # 0.015 -> 0.02 (half-even would keep 0.02 too)
        ("0.25", "0.10", "CHF", "0.03"),  # 0.025 -> 0.03 where half-even gives 0.02
        ("125", "0.10", "JPY", "13"),  # 12.5 yen -> 13
        ("115", "0.10", "JPY", "12"),  # 11.5 yen -> 12 where half-even gives 12 too
        ("105", "0.10", "JPY", "11"),  # 10.5 yen -> 11 where half-even gives 10
        ("0", "0.10", "CHF", "0.00"),  # a fully credited invoice carries zero
    ],
)
def test_commission_is_rounded_half_up_per_invoice(net: str, rate: str, currency: str, expected: str) -> None:
    """R4: commission = round_half_up(current net x rate) in the invoice's currency."""
    assert str(commission_amount(D(net), D(rate), currency)) == expected


@pytest.mark.parametrize(
    ("changes", "on", "eligible"),
    [
        ([], date(2025, 1, 1), True),
        ([(date(2025, 1, 1), False)], date(2024, 12, 31), True),
        ([(date(2025, 1, 1), False)], date(2025, 1, 1), False),
        ([(date(2025, 1, 1), False), (date(2025, 6, 1), True)], date(2025, 5, 31), False),
        ([(date(2025, 6, 1), True), (date(2025, 1, 1), False)], date(2025, 6, 1), True),  # order-free
    ],
)
def test_eligibility_at_the_invoice_date(changes: list[tuple[date, bool]], on: date, eligible: bool) -> None:
    """R5: the latest change in effect on the invoice date decides; default eligible."""
    assert is_eligible(changes, on) is eligible


@pytest.mark.parametrize(
    ("commission", "gross", "paid", "expected"),
    [
        ("100.00", "1081.00", "0", "0.00"),
        ("100.00", "1081.00", "540.50", "50.00"),
        ("100.00", "1081.00", "1081.00", "100.00"),
        ("100.00", "1081.00", "2000.00", "100.00"),  # overpayment counts as full payment
        ("0.03", "3.00", "1.00", "0.01"),
        ("0.03", "3.00", "2.00", "0.02"),
        ("0.03", "3.00", "3.00", "0.03"),  # the completing payment takes the remainder
        ("10.00", "0.00", "0.00", "10.00"),  # nothing left to pay: all payable
    ],
)
def test_payable_in_proportion_to_gross_paid(commission: str, gross: str, paid: str, expected: str) -> None:
    """R5: payable follows the gross paid; full (or over-) payment makes it all payable."""
    assert str(payable_amount(D(commission), D(gross), D(paid), "CHF")) == expected


def test_retained_margin_is_never_negative() -> None:
    """R6: a resale above cost owes the margin back; below cost owes nothing."""
    assert retained_margin(D("2100.00"), D("2150.00")) == D("50.00")
    assert retained_margin(D("2100.00"), D("2000.00")) == 0


@pytest.mark.parametrize(
    ("amount", "costs", "currency", "shares"),
    [
        ("189.00", ["4200.00", "2100.00"], "CHF", ["126.00", "63.00"]),
        ("0.01", ["1.00", "1.00"], "CHF", ["0.01", "0.00"]),  # tie: first listed purchase
        ("0.02", ["1.00", "1.00", "1.00"], "CHF", ["0.01", "0.01", "0.00"]),
        ("100.00", ["1.00", "1.00", "1.00"], "CHF", ["33.34", "33.33", "33.33"]),
        ("10", ["1", "2"], "JPY", ["3", "7"]),  # 3.33 / 6.67: the larger remainder wins
        ("5", ["0", "0"], "JPY", ["3", "2"]),  # all costs zero: even split
        ("0.00", ["5.00"], "CHF", ["0.00"]),
    ],
)
def test_rebate_split_by_largest_remainder(
    amount: str, costs: list[str], currency: str, shares: list[str]
) -> None:
    """R6: shares are rounded down, leftover units go to the largest remainders, ties first."""
    result = split_rebate(D(amount), [D(c) for c in costs], currency)
    assert [str(s) for s in result] == shares
    assert sum(result) == D(amount)
