"""The AsyncAPI document of every subject, completed with the inbound contract.

The ledger reads ``ledger.in.>`` with its own pull loop (not a FastStream subscriber), so
FastStream does not see those channels: they are added here from the contract's models.
"""

from __future__ import annotations

import copy
from typing import Any

from ledger.application.contract import INBOUND_TYPES
from ledger.application.schemas import generate_schemas

__all__ = ["complete_asyncapi"]


def complete_asyncapi(document: dict[str, Any]) -> dict[str, Any]:
    """Add one receive channel per inbound type (``ledger.in.<kind>``) with its schema."""
    doc = copy.deepcopy(document)
    schemas = generate_schemas()
    components = doc.setdefault("components", {})
    messages = components.setdefault("messages", {})
    payloads = components.setdefault("schemas", {})
    for type_name in sorted(INBOUND_TYPES):
        kind = type_name.removeprefix("coop.ledger.").removesuffix(".v1")
        channel = f"ledger.in.{kind}"
        schema = copy.deepcopy(schemas[f"inbound/{type_name}.json"])
        for name, definition in schema.pop("$defs", {}).items():
            payloads.setdefault(name, definition)
        schema.pop("$schema", None)
        schema.pop("$id", None)
        payload_name = f"{type_name}"
        payloads[payload_name] = _rewrite_refs(schema)
        message_name = f"{channel}:Message"
        messages[message_name] = {
            "title": message_name,
            "correlationId": {"location": "$message.header#/Nats-Msg-Id"},
            "payload": {"$ref": f"#/components/schemas/{payload_name}"},
        }
        doc.setdefault("channels", {})[channel] = {
            "address": channel,
            "description": f"Inbound fact {type_name} (CloudEvents 1.0 structured JSON; stream LEDGER_IN; "
            "Nats-Msg-Id = envelope id). Any ledger.in.> subject is read; the envelope's type decides.",
            "messages": {"Message": {"$ref": f"#/components/messages/{message_name}"}},
            "bindings": {"nats": {"subject": channel, "bindingVersion": "custom"}},
        }
        doc.setdefault("operations", {})[channel] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/Message"}],
        }
    return doc


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rewrite_refs(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node
