"""The published JSON Schemas (schemas/inbound) and the ledger's models give the same
verdict on the same input: a property test mutates valid envelopes of every type (values
with a trailing newline, control characters, numbers for strings, amounts of every shape
and currency, dates and times that are almost right, unknown and missing fields, extension
attributes) and requires that the schema accepts exactly what the ledger accepts.

Rules a JSON Schema cannot express are left out of the mutations and stated in the schema's
description: the terms' months adding up to at most 600, ``prior_last_invoice_date`` before
``date``, all extension attributes together at most 2 KiB of JSON, two different people behind a void
or a close (``approved_by`` is therefore never mutated), and a close dated after its month
(a close's ``date`` is never mutated), an IBAN's checksum and national format (``iban`` is
never mutated) and a payout run's amounts in their currency's minor unit (``lines`` is never
mutated)."""

from __future__ import annotations

import copy
import json
import os
from functools import cache
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.contract import INBOUND_TYPES, Rejection, parse_envelope
from tests.conftest import ROOT, envelope

VALID: dict[str, dict[str, Any]] = {
    "introducer.registered": {
        "introducer_id": "int-bob",
        "display_name": "Bob",
        "email": "bob@example.org",
        "language": "en",
    },
    "client.registered": {"client_id": "cli-a", "display_name": "Cabinet A", "email": "a@example.org"},
    "adviser.registered": {"adviser_id": "adv-a", "display_name": "Anne", "language": "fr"},
    "vendor_commission.received": {
        "vendor_commission_id": "VC-1",
        "adviser_id": "adv-a",
        "client_id": "cli-a",
        "supplier_id": "sup-1",
        "date": "2025-03-15",
        "currency": "CHF",
        "amount": "35.00",
        "description": "reseller commission",
    },
    "introducer.eligibility_changed": {
        "introducer_id": "int-bob",
        "can_receive_commission": False,
        "effective_date": "2025-03-01",
    },
    "introduction.recorded": {
        "introduction_id": "intro-1",
        "introducer_id": "int-bob",
        "client_id": "cli-a",
        "adviser_id": "adv-a",
        "date": "2025-01-01",
        "terms": [{"rate": "0.10", "months": 12}],
        "terms_reason": "subcontracting",
    },
    "invoice.issued": {
        "invoice_id": "INV-1",
        "adviser_id": "adv-a",
        "client_id": "cli-a",
        "issue_date": "2025-01-10",
        "currency": "CHF",
        "net_amount": "1000.00",
        "tax_amount": "81.00",
    },
    "credit_note.issued": {
        "credit_note_id": "CN-1",
        "invoice_id": "INV-1",
        "issue_date": "2025-02-01",
        "net_amount": "100.00",
    },
    "payment.received": {
        "payment_id": "P-1",
        "invoice_id": "INV-1",
        "date": "2025-02-01",
        "amount": "500.00",
    },
    "payout.recorded": {
        "payout_id": "PO-1",
        "adviser_id": "adv-a",
        "beneficiary_id": "int-bob",
        "date": "2025-03-01",
        "currency": "EUR",
        "amount": "50.00",
    },
    "purchase.recorded": {
        "purchase_id": "PU-1",
        "client_id": "cli-a",
        "supplier_id": "sup-1",
        "date": "2025-01-05",
        "currency": "CHF",
        "cost_amount": "300.00",
    },
    "resale.invoiced": {"resale_id": "RS-1", "purchase_id": "PU-1", "date": "2025-01-06", "amount": "310.00"},
    "rebate.received": {
        "rebate_id": "RB-1",
        "supplier_id": "sup-1",
        "date": "2025-12-31",
        "currency": "CHF",
        "amount": "12.00",
        "purchase_ids": ["PU-1", "PU-2"],
    },
    "period.closed": {
        "period": "2025-03",
        "date": "2025-04-02",
        "closed_by": "tre-ana",
        "approved_by": "tre-luc",
    },
    "fact.voided": {
        "void_id": "V-1",
        "target_type": "payment",
        "target_id": "P-1",
        "date": "2026-01-15",
        "reason": "typed twice",
        "requested_by": "tre-ana",
        "approved_by": "tre-luc",
    },
    "introducer.bank_details": {
        "introducer_id": "int-bob",
        "iban": "CH9300762011623852957",
        "effective_date": "2025-03-01",
        "bic": "UBSWCHZH80A",
        "account_holder": "Bob Martin",
    },
    "payout_run.proposed": {
        "run_id": "run-2025-03",
        "period": "2025-03",
        "date": "2025-04-03",
        "proposed_by": "tre-ana",
        "lines": [{"beneficiary_id": "int-bob", "currency": "CHF", "amount": "120.50"}],
    },
    "payout_run.approved": {"run_id": "run-2025-03", "date": "2025-04-03", "approved_by": "tre-luc"},
    "party.erased": {
        "party_type": "client",
        "party_id": "cli-a",
        "requested_by": "dpo-ana",
        "approved_by": "tre-luc",
    },
    "rebate.passed_through": {
        "pass_through_id": "PT-1",
        "client_id": "cli-a",
        "date": "2026-01-15",
        "currency": "CHF",
        "amount": "5.00",
    },
}

#: Strings that are almost right, for any field.
TRICKY = [
    "",
    " ",
    "\n",
    "INV-1\n",
    "100.00\n",
    "100.00\r",
    "x\x00y",
    "x\x1fy",
    "x\x7fy",
    "x\u0085y",
    "invoice",
    "payment",
    "void",
    "1e3",
    "-5.00",
    "-0",
    "0",
    "0.0",
    "00.10",
    "10.005",
    "10.5",
    "10",
    "999999999999.99",
    "1000000000000",
    "100000000000",
    "0.123",
    "0.1234",
    "0.12345",
    "1.0",
    "1.000001",
    "0.1000001",
    "2025-02-30",
    "2025-02-28",
    "2025-1-5",
    "2025-01-10T00:00:00Z",
    "2025-W10-1T00:00Z",
    "CHF",
    "JPY",
    "BHD",
    "CLF",
    "XAU",
    "chf",
    "fr",
    "en",
    "de",
    "a" * 128,
    "a" * 129,
    "a" * 501,
    "ok-id",
    "has space",
    "é",
]
TIMES = [
    "2025-01-10T09:00:00Z",
    "2025-01-10t09:00:00z",
    "2025-01-10T09:00:00.123456789+01:00",
    "2025-01-10T09:00:00",
    "2025-01-10 09:00:00Z",
    "2025-W10-1T00:00Z",
    "2025-01-10T09:00:00Z\n",
    "2025-02-30T09:00:00Z",
    "2025-01-10T25:00:00Z",
    "2025-01-10T09:00:00+2:00",
    "20250110T090000Z",
]


@cache
def _validator(type_name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((ROOT / "schemas" / "inbound" / f"{type_name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def model_accepts(doc: dict[str, Any]) -> bool:
    try:
        parse_envelope(json.dumps(doc))
    except Rejection:
        return False
    return True


def schema_accepts(doc: dict[str, Any]) -> bool:
    return bool(_validator(doc["type"]).is_valid(doc))


values = (
    st.sampled_from(TRICKY) | st.integers(-5, 10**13) | st.booleans() | st.none() | st.just(1.5) | st.just([])
)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(VALID)))
    doc = json.loads(envelope(kind, copy.deepcopy(VALID[kind]), id="e-1"))
    data = doc["data"]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "add", "time", "envelope", "extension", "term"]))
        if action == "set":
            field = draw(st.sampled_from(sorted(data)))
            if field in {"email", "webhook_url", "approved_by", "iban", "lines"}:  # see the module docstring
                continue
            if kind == "period.closed" and field == "date":  # after the month's end: see the docstring
                continue
            data[field] = draw(values)
        elif action == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif action == "add":
            data[draw(st.sampled_from(["colour", "invoice_id", "terms_reason", "tax_amount"]))] = draw(values)
        elif action == "time":
            doc["time"] = draw(st.sampled_from(TIMES))
        elif action == "envelope":
            attribute = draw(st.sampled_from(["id", "source", "subject", "specversion", "datacontenttype"]))
            doc[attribute] = draw(values)
        elif action == "extension":
            name = draw(st.sampled_from(["traceparent", "Bad", "x" * 21, "partitionkey", "a1"]))
            doc[name] = draw(st.sampled_from(["00-abc-01", "x\ny", "a" * 513, 7, True, None, 1.5]))
        elif action == "term" and "terms" in data and isinstance(data["terms"], list) and data["terms"]:
            term = data["terms"][0]
            if isinstance(term, dict):
                term[draw(st.sampled_from(["rate", "months"]))] = draw(
                    st.sampled_from(["0.10", "1", "1.5", 0.1, 12, 0, 601, True, "12"])
                )
    return doc


def test_every_inbound_type_has_a_valid_example() -> None:
    """The generator covers every inbound type with an envelope both accept."""
    assert {f"coop.ledger.{k}.v1" for k in VALID} == set(INBOUND_TYPES)
    for kind, data in VALID.items():
        doc = json.loads(envelope(kind, data, id="e-1"))
        assert model_accepts(doc) and schema_accepts(doc), kind


@settings(
    max_examples=int(os.environ.get("AGREEMENT_EXAMPLES", "600")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(doc=mutated())
def test_schema_and_models_agree(doc: dict[str, Any]) -> None:
    """The JSON Schema accepts an envelope exactly when the ledger does."""
    assert schema_accepts(doc) == model_accepts(doc), json.dumps(doc)[:500]
