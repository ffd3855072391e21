"""Read use cases: the report and its per-introducer and per-client views, as of a day or
at a log position. HTTP, NATS request/reply and the CLI all answer through :func:`answer`
(the transports only parse their parameters with :meth:`ReportQuery.from_params`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from ledger.application.ledger import Ledger
from ledger.application.party_statements import PartyKind, party_statement
from ledger.application.periods import PeriodNotAvailableError, period_statement
from ledger.application.report import RejectedLine, render_report
from ledger.application.views import client_view, introducer_view
from ledger.domain.periods import parse_period

__all__ = ["MAX_ID_CHARS", "NotAvailableError", "QueryError", "ReportQuery", "View", "answer"]

View = Literal["report", "introducer", "client", "period", "page"]
MAX_ID_CHARS = 128
_PARAMS = frozenset({"as_of", "at_position", "introducer_id", "client_id", "period"})


class QueryError(ValueError):
    """A query that cannot be answered as asked (``bad_query``)."""


class NotAvailableError(QueryError):
    """What is asked does not exist (e.g. the statement of a month neither closed nor next)."""


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What to read: which view, of whom, as of which day, at which log position."""

    view: View = "report"
    party_id: str | None = None
    as_of: date | None = None
    at_position: int | None = None
    #: The month of a period statement (views ``period``, ``page``), ``YYYY-MM``.
    period: str | None = None
    #: A party's statement page (view ``page``): the party's kind, and html, pdf or json.
    party_kind: str | None = None
    page_format: str | None = None

    @classmethod
    def page(cls, kind: str, party_id: str, period: str, page_format: str) -> ReportQuery:
        """A party's month statement page; :class:`QueryError` for a wrong kind or format."""
        if kind not in {"introducer", "client", "adviser", "cooperative"}:
            raise QueryError(f"no statements for {kind[:20]!r}: introducer, client, adviser or cooperative")
        if page_format not in {"html", "pdf", "json"}:
            raise QueryError("a statement page is html, pdf or json")
        if not 1 <= len(party_id) <= MAX_ID_CHARS:
            raise QueryError(f"ids are strings of 1-{MAX_ID_CHARS} characters")
        try:
            parse_period(period)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        return cls("page", party_id, period=period, party_kind=kind, page_format=page_format)

    @classmethod
    def from_params(cls, view: View, params: Mapping[str, object]) -> ReportQuery:
        """Check a transport's parameters (strings or JSON values); raise :class:`QueryError`."""
        unknown = set(params) - _PARAMS
        if unknown:
            raise QueryError(f"unknown parameter(s): {', '.join(sorted(unknown))[:200]}")
        if view == "period" or "period" in params:
            return cls._period(params)
        as_of = _day(params.get("as_of"))
        at_position = _position(params.get("at_position"))
        introducer_id, client_id = params.get("introducer_id"), params.get("client_id")
        if introducer_id is not None and client_id is not None:
            raise QueryError("ask for introducer_id or client_id, not both")
        for value in (introducer_id, client_id):
            if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS):
                raise QueryError(f"ids are strings of 1-{MAX_ID_CHARS} characters")
        if view == "introducer" and introducer_id is None:
            raise QueryError("introducer_id is required")
        if view == "client" and client_id is None:
            raise QueryError("client_id is required")
        if view == "report" and introducer_id is not None:
            view = "introducer"
        elif view == "report" and client_id is not None:
            view = "client"
        party = introducer_id if view == "introducer" else client_id if view == "client" else None
        assert party is None or isinstance(party, str)
        return cls(view, party, as_of, at_position)

    @classmethod
    def _period(cls, params: Mapping[str, object]) -> ReportQuery:
        extra = set(params) - {"period"}
        if extra:
            raise QueryError(
                f"a period statement takes only period=YYYY-MM, not {', '.join(sorted(extra))[:100]}"
            )
        period = params.get("period")
        if not isinstance(period, str):
            raise QueryError("period=YYYY-MM is required")
        try:
            parse_period(period)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        return cls("period", period=period)


def _day(value: object) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise QueryError(f"as_of {str(value)[:40]!r} is not a date YYYY-MM-DD") from None


def _position(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isdigit() and len(value) <= 12:
        number = int(value)
    else:
        raise QueryError(f"at_position {str(value)[:40]!r} is not a position (0, 1, 2, ...)")
    if number < 0:
        raise QueryError("at_position must be 0 or more")
    return number


def answer(
    ledger: Ledger,
    query: ReportQuery,
    *,
    rejected: Sequence[RejectedLine] = (),
    summary: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The report (or view) ``query`` asks for, from a consistent snapshot of the ledger
    (safe to call on another thread than the store's)."""
    if query.view in {"period", "page"}:
        assert query.period is not None
        try:
            month = period_statement(ledger, query.period)
        except PeriodNotAvailableError as exc:
            raise NotAvailableError(str(exc)) from None
        if query.view == "period":
            return month
        assert query.party_kind is not None and query.party_id is not None
        kind: PartyKind = query.party_kind  # type: ignore[assignment]
        return party_statement(
            month, kind, query.party_id, ledger.index.names, ledger.index.masked_accounts()
        )
    head = ledger.index.head
    position = head.position if query.at_position is None else min(query.at_position, head.position)
    books = ledger.books(as_of=query.as_of, at_position=position)
    hash_at = head.hash if position == head.position else ledger.hash_at(position)
    report = render_report(
        books, head_position=position, head_hash=hash_at, rejected=rejected, summary=summary
    )
    report["periods"] = [
        {
            "period": period,
            "date": close.date.isoformat(),
            "closed_by": close.closed_by,
            "approved_by": close.approved_by,
            "position": at,
        }
        for period, (at, close) in sorted(ledger.index.closes.items())
        if at <= position
    ]
    if query.view == "introducer":
        assert query.party_id is not None
        return introducer_view(report, query.party_id)
    if query.view == "client":
        assert query.party_id is not None
        return client_view(report, query.party_id)
    return report
