"""Computing one query's answer as bytes (JSON, or a statement page as HTML or PDF), the
same in a worker process and on a worker thread."""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import orjson

from ledger.adapters.statement_render import render_party_html, render_pdf
from ledger.application.ledger import Ledger
from ledger.application.queries import ReportQuery, answer

__all__ = ["Answer", "compute_answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: its bytes, gzipped too (reports are large: a client that accepts gzip
    gets about a tenth), and its media type."""

    body: bytes
    gzipped: bytes
    media_type: str = "application/json"

    @classmethod
    def of(cls, body: bytes, media_type: str = "application/json") -> Answer:
        return cls(body, gzip.compress(body, compresslevel=5, mtime=0), media_type)


def compute_answer(ledger: Ledger, query: ReportQuery) -> Answer:
    """The answer to ``query`` from ``ledger`` (raises the queries' errors)."""
    document = answer(ledger, query)
    if query.view != "page" or query.page_format == "json":
        return Answer.of(orjson.dumps(document))
    html = render_party_html(document, ledger.index.languages.get(query.party_id or "", "fr"))
    if query.page_format == "pdf":
        return Answer.of(render_pdf(html), "application/pdf")
    return Answer.of(html.encode("utf-8"), "text/html; charset=utf-8")
