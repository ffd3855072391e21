"""Amounts, rates and dates as people read them (Babel, CLDR data). Pure functions.

Money: CHF is written the Swiss way in both languages, ``CHF 1’234.50`` (apostrophe
grouping, decimal point, code first), which is how amounts in francs are printed in
Romandie as in German-speaking Switzerland. Babel's own ``fr_CH`` locale (CLDR) gives
``1 234,50 CHF`` instead (narrow no-break space, decimal comma, code last), so CHF uses the
CLDR ``de_CH`` number symbols with the pattern ``¤ #,##0.00`` (``¤ -#,##0.00`` below 0).
Other currencies follow the language's main CLDR locale: ``fr_FR`` (``1 234,50 €``,
``1 234 JPY``) and ``en_GB`` (``€1,234.50``, ``JP¥1,234``). Decimals always follow the
currency (JPY none, CHF and EUR two).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from babel.dates import format_date
from babel.dates import format_time as babel_time
from babel.numbers import format_currency, format_percent

from notifier.domain.events import Language

__all__ = [
    "format_day",
    "format_money",
    "format_month",
    "format_rate",
    "format_time",
    "money_locale",
    "text_table",
]

_SWISS_PATTERN = "¤\u00a0#,##0.00;¤\u00a0-#,##0.00"
_TEXT_LOCALE: dict[Language, str] = {"fr": "fr_CH", "en": "en_GB"}
_MONEY_LOCALE: dict[Language, str] = {"fr": "fr_FR", "en": "en_GB"}


def money_locale(language: Language, currency: str) -> str:
    """The CLDR locale whose number symbols are used for ``currency`` in ``language``."""
    return "de_CH" if currency == "CHF" else _MONEY_LOCALE[language]


def format_money(amount: Decimal, currency: str, language: Language) -> str:
    """``CHF 1’234.50`` / ``1 234,50 €`` / ``€1,234.50`` / ``JP¥1,234``."""
    if currency == "CHF":
        return format_currency(amount, currency, format=_SWISS_PATTERN, locale="de_CH", currency_digits=True)
    return format_currency(amount, currency, locale=_MONEY_LOCALE[language], currency_digits=True)


def format_rate(rate: Decimal, language: Language) -> str:
    """``10 %`` / ``7,5 %`` in French (no-break space), ``10%`` / ``7.5%`` in English."""
    pattern = "#,##0.###\u00a0%" if language == "fr" else "#,##0.###%"
    return format_percent(rate, format=pattern, locale=_TEXT_LOCALE[language])


def format_day(day: date, language: Language) -> str:
    """``11 mars 2025`` / ``11 March 2025``."""
    return format_date(day, format="long", locale=_TEXT_LOCALE[language])


def format_month(period: str, language: Language) -> str:
    """``mars 2025`` / ``March 2025`` for ``2025-03``."""
    year, month = (int(part) for part in period.split("-"))
    return format_date(date(year, month, 1), format="LLLL y", locale=_TEXT_LOCALE[language])


def format_time(moment: datetime, language: Language) -> str:
    """``14:05`` (24-hour clock in both languages)."""
    return babel_time(moment, format="HH:mm", locale=_TEXT_LOCALE[language])


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 2) -> str:
    """Rows as aligned plain-text columns: the first column left-aligned, the others (amounts)
    right-aligned, two spaces apart; ``header`` is a row above them (its first cell may be
    empty). Only layout: the words come from the templates."""
    table = [list(header), *(list(row) for row in rows)]
    width = max(len(row) for row in table)
    for row in table:
        row.extend([""] * (width - len(row)))
    widths = [max(len(row[i]) for row in table) for i in range(width)]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, width)]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)
