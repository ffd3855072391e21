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

from datetime import date
from decimal import Decimal

from babel.dates import format_date
from babel.numbers import format_currency, format_percent

from notifier.domain.events import Language

__all__ = ["format_day", "format_money", "format_rate", "money_locale"]

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
