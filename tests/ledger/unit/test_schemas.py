"""schemas/ is generated from the models and must not go stale."""

from __future__ import annotations

import json

import pytest

from ledger.application.contract import INBOUND_TYPES
from ledger.application.schemas import render_schema
from ledger.bootstrap import all_schema_files
from tests.conftest import ROOT


def test_schemas_folder_matches_the_models() -> None:
    """Every generated schema file exists in schemas/ with exactly the generated text."""
    stale = [
        name
        for name, schema in all_schema_files().items()
        if not (ROOT / "schemas" / name).is_file()
        or (ROOT / "schemas" / name).read_text(encoding="utf-8") != render_schema(schema)
    ]
    assert not stale, f"schemas/ is stale for {stale}: run `ledger schemas`"


@pytest.mark.parametrize("type_name", sorted(INBOUND_TYPES))
def test_every_inbound_type_has_a_schema_that_fixes_its_type(type_name: str) -> None:
    """Each inbound type's schema pins `type` and forbids unknown data fields."""
    schema = json.loads((ROOT / "schemas" / "inbound" / f"{type_name}.json").read_text())
    assert schema["properties"]["type"]["const"] == type_name
    assert schema["properties"]["data"]["additionalProperties"] is False
    assert "data" in schema["required"]


def test_asyncapi_document_lists_every_subject() -> None:
    """schemas/asyncapi.json names inbound, derived, rejected and query subjects."""
    doc = json.loads((ROOT / "schemas" / "asyncapi.json").read_text())
    channels = set(doc["channels"])
    assert {
        "ledger.in.invoice.issued",
        "ledger.out.commission.accrued",
        "ledger.rejected",
        "ledger.query.report",
    } <= channels
    assert len([c for c in channels if c.startswith("ledger.in.")]) == len(INBOUND_TYPES)
