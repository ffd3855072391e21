"""A party's monthly statement as a printable HTML page and as PDF (the same page, rendered
by WeasyPrint), in French or English. Jinja2 template, autoescaped; the page loads nothing
from the network (fonts are the system's, DejaVu)."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["LABELS", "Language", "render_party_html", "render_pdf"]

Language = Literal["fr", "en"]

_ENV = Environment(
    loader=PackageLoader("ledger.adapters", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Every word of the statements, in each language.
#: Every word of the statements, in each language (``templates/period_statement.labels.json``).
LABELS: dict[str, dict[str, Any]] = json.loads(
    resources.files("ledger.adapters").joinpath("templates/period_statement.labels.json").read_text("utf-8")
)


def render_party_html(party: dict[str, Any], language: Language = "fr") -> str:
    """A party's statement (``party_statements.party_statement``) as a self-contained page."""
    assert language in LABELS, language
    return _ENV.get_template("period_statement.html.j2").render(p=party, t=LABELS[language], lang=language)


def render_pdf(html: str) -> bytes:
    """The page as PDF (A4, text selectable)."""
    from weasyprint import HTML

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
