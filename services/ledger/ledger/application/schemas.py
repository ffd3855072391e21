"""JSON Schema files for the contract, generated from the models themselves."""

from __future__ import annotations

import copy
import json
from typing import Any

from ledger.application.contract import INBOUND_TYPES, Envelope
from ledger.application.outbound import OUTBOUND_MODELS, OutboundEnvelope

__all__ = ["generate_schemas", "render_schema"]

_BASE = "https://coop-ledger.example/schemas/"


def _envelope_for(type_name: str, data_schema: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(Envelope.model_json_schema())
    data = copy.deepcopy(data_schema)
    defs = data.pop("$defs", {})
    schema["properties"]["type"] = {"const": type_name, "title": "Type", "type": "string"}
    schema["properties"]["data"] = data
    if defs:
        schema.setdefault("$defs", {}).update(defs)
    schema["title"] = type_name
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"{_BASE}inbound/{type_name}.json"
    return schema


def generate_schemas() -> dict[str, dict[str, Any]]:
    """Relative file name -> schema document, for every inbound type and the envelope."""
    files: dict[str, dict[str, Any]] = {}
    envelope = Envelope.model_json_schema()
    envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    envelope["$id"] = f"{_BASE}envelope.json"
    files["envelope.json"] = envelope
    for type_name, model in sorted(INBOUND_TYPES.items()):
        files[f"inbound/{type_name}.json"] = _envelope_for(type_name, model.model_json_schema())
    for kind, out_model in sorted(OUTBOUND_MODELS.items()):
        schema = copy.deepcopy(OutboundEnvelope.model_json_schema())
        data = out_model.model_json_schema()
        schema.setdefault("$defs", {}).update(data.pop("$defs", {}))
        schema["properties"]["type"] = {"const": f"coop.ledger.out.{kind}.v1", "type": "string"}
        schema["properties"]["data"] = data
        schema["title"] = f"coop.ledger.out.{kind}.v1"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{_BASE}outbound/coop.ledger.out.{kind}.v1.json"
        files[f"outbound/coop.ledger.out.{kind}.v1.json"] = schema
    return files


def render_schema(schema: dict[str, Any]) -> str:
    """Stable text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
