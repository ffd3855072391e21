"""Alerts as text, from Jinja2 templates (``notifier/templates/<language>/``).

A template defines two blocks: ``subject`` (one line) and ``body`` (plain text). The
templates own every word; Python hands them the typed event and the formatting functions
of :mod:`notifier.application.formatting` bound to the reader's language. An event that
is a correction (:func:`notifier.domain.routing.correction_of`: a void took a commission
back) is rendered with ``<kind>.correction.txt.j2`` instead of ``<kind>.txt.j2``. A month's
statement (``statement.issued``) is rendered with ``statement.issued.<party kind>.txt.j2``.
A payout (``payout.recorded``) is rendered with ``payout.recorded.txt.j2``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifier.application.formatting import (
    format_day,
    format_money,
    format_month,
    format_rate,
    format_time,
    text_table,
)
from notifier.domain.events import AlertPayload, Balance, CommissionEvent, Language, Party, PayoutRecorded
from notifier.domain.routing import correction_of
from notifier.domain.statements import StatementIssued

__all__ = ["TEMPLATES", "DigestItem", "Rendered", "Renderer", "closing_balances"]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
MAX_SUBJECT_CHARS = 200
#: A month's statement may list many lines (an adviser's invoices): the bound is generous.
MAX_TEXT_CHARS = 1_000_000
#: Line breaks and ordinary spaces (no-break spaces inside amounts are kept).
_SPACES = re.compile(r"[ \t\r\n\v\f\x1c-\x1f\x85\u2028\u2029]+")


@dataclass(frozen=True, slots=True)
class Rendered:
    """One alert, ready for any channel."""

    subject: str
    text: str
    language: Language


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One event in a daily digest."""

    event_id: str
    kind: str
    position: int
    payload: AlertPayload

    @property
    def correction(self) -> bool:
        """A void took (part of) a commission back: the digest words it as a correction."""
        return correction_of(self.kind, self.payload) is not None


def closing_balances(items: Sequence[DigestItem]) -> dict[str, Balance]:
    """Per currency, the balance carried by the latest commission or payout event of the digest."""
    latest: dict[str, tuple[int, Balance]] = {}
    for item in items:
        if isinstance(item.payload, CommissionEvent | PayoutRecorded):
            currency = item.payload.currency
            if currency not in latest or item.position >= latest[currency][0]:
                latest[currency] = (item.position, item.payload.balance)
    return {currency: latest[currency][1] for currency in sorted(latest)}


def _no_blank_runs(lines: Iterable[str]) -> Iterator[str]:
    """The lines with at most one blank line in a row (optional sections of a template each
    open with a blank line, whatever came before them)."""
    blank = False
    for line in lines:
        if line or not blank:
            yield line
        blank = not line


class Renderer:
    """Renders alerts in French (default) or English."""

    def __init__(self, directory: Path = TEMPLATES, zone: ZoneInfo | None = None) -> None:
        #: the time zone in which times (a link's expiry) are written
        self.zone = zone or ZoneInfo("Europe/Zurich")
        self._env = Environment(
            loader=FileSystemLoader(directory),
            autoescape=select_autoescape(("html", "xml"), default_for_string=False, default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def warm(self) -> int:
        """Compile every template now (at start-up) rather than at the first alert of each
        kind, when the compilation would hold up sends; returns how many."""
        names = self._env.list_templates(extensions=["j2"])
        for name in names:
            self._env.get_template(name)
        return len(names)

    def render_event(
        self,
        kind: str,
        payload: AlertPayload,
        introducer: Party,
        event_id: str,
        position: int,
    ) -> Rendered:
        language = introducer.language
        correction = correction_of(kind, payload)
        context: dict[str, Any] = {
            **self._helpers(language),
            "kind": kind,
            "e": payload,
            "introducer": introducer,
            "event_id": event_id,
            "position": position,
        }
        name = f"{kind}.correction" if correction is not None else kind
        return self._render(f"{language}/{name}.txt.j2", context, language)

    def render_statement(
        self, event: StatementIssued, party: Party, event_id: str, *, attached: bool = True
    ) -> Rendered:
        """A month's statement to its party (introducer, client or adviser); ``attached``:
        the message carries the PDF (e-mail), or only the links (webhook)."""
        language = party.language
        context: dict[str, Any] = {
            **self._helpers(language),
            "e": event,
            "s": event.statement,
            "party": party,
            "event_id": event_id,
            "name": event.statement.name,
            "attached": attached,
        }
        return self._render(f"{language}/statement.issued.{event.party_kind}.txt.j2", context, language)

    def render_digest(
        self, items: Sequence[DigestItem], introducer: Party, day: date, digest_id: str
    ) -> Rendered:
        assert items, "an empty digest is never sent"
        language = introducer.language
        ordered = sorted(items, key=lambda item: (item.position, item.event_id))
        context: dict[str, Any] = {
            **self._helpers(language),
            "items": ordered,
            "introducer": introducer,
            "digest_day": day,
            "digest_id": digest_id,
            "balances": closing_balances(ordered),
        }
        return self._render(f"{language}/digest.txt.j2", context, language)

    def _render(self, name: str, context: dict[str, Any], language: Language) -> Rendered:
        template = self._env.get_template(name)
        subject = "".join(template.blocks["subject"](template.new_context(context)))
        text = "".join(template.blocks["body"](template.new_context(context)))
        subject = _SPACES.sub(" ", subject).strip()[:MAX_SUBJECT_CHARS]
        text = "\n".join(_no_blank_runs(line.rstrip() for line in text.strip().splitlines())) + "\n"
        assert subject, name
        assert len(text) <= MAX_TEXT_CHARS, (name, len(text))
        return Rendered(subject=subject, text=text, language=language)

    def _helpers(self, language: Language) -> dict[str, Any]:
        def money(amount: Decimal, currency: str) -> str:
            return format_money(amount, currency, language)

        def rate(value: Decimal) -> str:
            return format_rate(value, language)

        def day(value: date) -> str:
            return format_day(value, language)

        def last_day(window_end: date) -> date:
            """The last day of a half-open window [start, end)."""
            return window_end - timedelta(days=1)

        def month(period: str) -> str:
            """``mars 2025`` for ``2025-03``."""
            return format_month(period, language)

        def local_day(moment: datetime) -> str:
            return format_day(moment.astimezone(self.zone).date(), language)

        def local_time(moment: datetime) -> str:
            return format_time(moment.astimezone(self.zone), language)

        return {
            "money": money,
            "rate": rate,
            "day": day,
            "last_day": last_day,
            "month": month,
            "local_day": local_day,
            "local_time": local_time,
            "zone": self.zone.key,
            "table": text_table,
            "language": language,
        }
