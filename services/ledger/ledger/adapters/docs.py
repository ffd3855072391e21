"""The service's API documents and their pages, served with no outside network: the
AsyncAPI document (every NATS subject) and an OpenAPI 3.1 document of the HTTP API, each
as JSON and as a plain HTML page rendered here (no JavaScript renderer from a CDN, and so
no "try it out" that would publish to the live broker)."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["asyncapi_page", "openapi_document", "openapi_page"]

_ENV = Environment(
    loader=PackageLoader("ledger.adapters", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_SCHEMA_CHARS = 20_000


def _schema_text(schema: Any) -> str:
    text = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SCHEMA_CHARS else text[:_SCHEMA_CHARS] + "\n… (cut: see the JSON document)"


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node and isinstance(node["$ref"], str):
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node


def asyncapi_page(document: dict[str, Any]) -> str:
    """An HTML page of an AsyncAPI 3 document: each channel, its direction and payload."""
    operations = document.get("operations", {})
    actions: dict[str, str] = {}
    for operation in operations.values():
        channel = str(operation.get("channel", {}).get("$ref", "")).rsplit("/", 1)[-1]
        actions[channel] = str(operation.get("action", ""))
    items = []
    for name, channel in sorted(document.get("channels", {}).items()):
        schemas = []
        for message in channel.get("messages", {}).values():
            resolved = _resolve(document, message)
            schemas.append(_resolve(document, resolved.get("payload", {})))
        items.append(
            {
                "tag": {"receive": "in", "send": "out"}.get(
                    actions.get(name, ""), actions.get(name, "") or "channel"
                ),
                "name": channel.get("address", name),
                "text": channel.get("description", ""),
                "headers": [],
                "rows": [],
                "schema": _schema_text(schemas[0] if len(schemas) == 1 else schemas) if schemas else "",
            }
        )
    info = document.get("info", {})
    return _ENV.get_template("api_docs.html.j2").render(
        title=f"{info.get('title', 'API')} {info.get('version', '')} (AsyncAPI)",
        description=info.get("description", ""),
        json_path="/asyncapi.json",
        sections=[{"anchor": "channels", "heading": "Channels (NATS subjects)", "entries": items}],
    )


def _get(summary: str, params: list[tuple[str, str, bool]], responses: dict[str, str]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {
                    "name": name,
                    "in": "query",
                    "required": required,
                    "description": text,
                    "schema": {"type": "string"},
                }
                for name, text, required in params
            ],
            "responses": {
                code: {"description": text, "content": {"application/json": {"schema": {"type": "object"}}}}
                for code, text in responses.items()
            },
        }
    }


_QUERY_ERRORS = {
    "400": "bad_query: a parameter is wrong (the message says which)",
    "401": "unauthorized: LEDGER_QUERY_TOKEN is set and the bearer token is missing or wrong",
    "429": "busy: too many queries in progress (LEDGER_MAX_CONCURRENT_QUERIES); retry after a second",
}
_AS_OF = ("as_of", "only facts dated up to this day (YYYY-MM-DD)", False)
_AT = ("at_position", "as of the N-th stored fact (0, 1, 2, ...)", False)


def openapi_document(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ledger's HTTP API."""
    report = {"200": "the report (shared/spec/contract.md, Reports)", **_QUERY_ERRORS}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Commission ledger HTTP API",
            "version": version,
            "description": "Reports, operations and documents. Only GET and HEAD are served; "
            "bodies over 64 KiB get 413, query strings over 4 KiB 414, unknown paths a JSON 404.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "LEDGER_QUERY_TOKEN"}
            }
        },
        "paths": {
            "/report": _get(
                "The whole report, or one party's view",
                [
                    _AS_OF,
                    _AT,
                    ("introducer_id", "only this introducer's view", False),
                    ("client_id", "only this client's view", False),
                ],
                report,
            ),
            "/report/introducer": _get(
                "One introducer's view", [("id", "the introducer's id", True), _AS_OF, _AT], report
            ),
            "/report/client": _get(
                "One client's view", [("id", "the client's id", True), _AS_OF, _AT], report
            ),
            "/metrics": _get("Prometheus metrics (text format)", [], {"200": "metrics"}),
            "/healthz": _get("The process is up", [], {"200": '{"status": "up"}'}),
            "/readyz": _get(
                "Ready to consume and answer", [], {"200": "ready", "503": "not ready, with the reason"}
            ),
            "/asyncapi.json": _get("The AsyncAPI document (every NATS subject)", [], {"200": "AsyncAPI 3"}),
            "/asyncapi": _get("The AsyncAPI document as a page", [], {"200": "HTML"}),
            "/openapi.json": _get("This document", [], {"200": "OpenAPI 3.1"}),
            "/docs": _get("This document as a page", [], {"200": "HTML"}),
        },
    }


def openapi_page(document: dict[str, Any]) -> str:
    """An HTML page of an OpenAPI document: each path, its parameters and responses."""
    items = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            rows = [
                [p["name"], "yes" if p.get("required") else "no", p.get("description", "")]
                for p in operation.get("parameters", [])
            ]
            rows += [
                [f"→ {code}", "", response["description"]]
                for code, response in operation["responses"].items()
            ]
            items.append(
                {
                    "tag": method.upper(),
                    "name": path,
                    "text": operation.get("summary", ""),
                    "headers": ["parameter / response", "required", "meaning"],
                    "rows": rows,
                    "schema": "",
                }
            )
    info = document["info"]
    return _ENV.get_template("api_docs.html.j2").render(
        title=f"{info['title']} {info['version']} (OpenAPI)",
        description=info["description"],
        json_path="/openapi.json",
        sections=[{"anchor": "paths", "heading": "Paths", "entries": items}],
    )
