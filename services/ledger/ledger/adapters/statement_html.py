"""Statements as clean, printable HTML pages (Jinja2 template, autoescaped)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["render_statement_html"]

_ENV = Environment(
    loader=PackageLoader("ledger.adapters", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_statement_html(statement: dict[str, Any]) -> str:
    """The statement (client or introducer) as a self-contained HTML page."""
    return _ENV.get_template("statement.html.j2").render(s=statement)
