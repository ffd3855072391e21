"""The contract: strict envelopes and data, each kind of bad input with its own reason."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.contract import (
    _DIRECT,
    MAX_MESSAGE_BYTES,
    Rejection,
    fact_of_accepted,
    fact_of_stored,
    fact_to_data,
    has_duplicate_keys,
    parse_envelope,
    type_of_fact,
)
from ledger.domain.facts import InvoiceIssued
from tests.conftest import EXAMPLE_NAMES, EXAMPLES, envelope

INVOICE = {
    "invoice_id": "INV-1",
    "adviser_id": "adv-anne",
    "client_id": "cli-bakery",
    "issue_date": "2025-01-10",
    "currency": "CHF",
    "net_amount": "1000.00",
    "tax_amount": "81.00",
}


def env(
    data: dict[str, object] | None = None, type_: str = "coop.ledger.invoice.issued.v1", **over: object
) -> str:
    doc: dict[str, object] = {
        "specversion": "1.0",
        "id": "erp-1",
        "source": "erp/acme",
        "type": type_,
        "time": "2025-01-10T09:00:00Z",
        "datacontenttype": "application/json",
        "data": INVOICE if data is None else data,
    }
    doc.update(over)
    return json.dumps(doc)


def with_data(**changes: object) -> str:
    data = {**INVOICE, **changes}
    return env({k: v for k, v in data.items() if v is not DROP})


DROP = object()


def test_contract_example_is_accepted() -> None:
    """The contract's own example envelope parses into an invoice fact."""
    parsed = parse_envelope(env())
    assert parsed.fact == InvoiceIssued(
        "INV-1", "adv-anne", "cli-bakery", date(2025, 1, 10), "CHF", Decimal("1000.00"), Decimal("81.00")
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        ('"a string"', "invalid_json"),
        ('{"specversion": "1.0"', "invalid_json"),
        (env(specversion="0.3"), "invalid_envelope"),
        (env(id=""), "invalid_envelope"),
        (env(id="has space"), "invalid_envelope"),
        (env(source=""), "invalid_envelope"),
        (env(time="yesterday"), "invalid_envelope"),
        (env(time="2025-01-10"), "invalid_envelope"),
        (env(datacontenttype="text/xml"), "invalid_envelope"),
        (env(data=[1, 2]), "invalid_envelope"),
        (env(type_="coop.ledger.invoice.deleted.v1"), "unknown_type"),
        (env(type_="coop.ledger.invoice.issued.v2"), "unknown_type"),
        (with_data(net_amount=1000.5), "money_as_number"),
        (with_data(net_amount=1000), "money_as_number"),
        (with_data(net_amount="-5.00"), "negative_amount"),
        (with_data(net_amount="10.005"), "too_many_decimals"),
        (with_data(currency="JPY", net_amount="10.5", tax_amount="0"), "too_many_decimals"),
        (with_data(net_amount="1e3"), "invalid_amount"),
        (with_data(net_amount="1,000.00"), "invalid_amount"),
        (with_data(net_amount="  12"), "invalid_amount"),
        (with_data(net_amount="10000000000000"), "invalid_amount"),
        (with_data(net_amount="NaN"), "invalid_amount"),
        (with_data(currency="ABC"), "unknown_currency"),
        (with_data(currency="XAU"), "unknown_currency"),
        (with_data(currency="chf"), "unknown_currency"),
        (with_data(invoice_id="has space"), "invalid_id"),
        (with_data(invoice_id=""), "invalid_id"),
        (with_data(invoice_id="x" * 129), "invalid_id"),
        (with_data(issue_date="2025-02-30"), "invalid_date"),
        (with_data(issue_date="9999-06-01"), "invalid_date"),  # its schedule would end after 9999
        (with_data(issue_date="9950-01-01"), "invalid_date"),
        (with_data(issue_date="1899-12-31"), "invalid_date"),
        (with_data(issue_date="0001-01-01"), "invalid_date"),
        (with_data(issue_date="10/01/2025"), "invalid_date"),
        (with_data(issue_date="2025-01-10T00:00:00Z"), "invalid_date"),
        (with_data(issue_date=20250110), "invalid_date"),
        (with_data(net_amount=DROP), "missing_field"),
        (with_data(client_id=DROP), "missing_field"),
        (with_data(colour="blue"), "unknown_field"),
        (with_data(adviser_id=12), "wrong_type"),
        (
            env(
                {"introducer_id": "i", "can_receive_commission": "no", "effective_date": "2025-01-01"},
                "coop.ledger.introducer.eligibility_changed.v1",
            ),
            "wrong_type",
        ),
        (
            env(
                {
                    "introduction_id": "i",
                    "introducer_id": "a",
                    "client_id": "c",
                    "adviser_id": "x",
                    "date": "2025-02-03",
                    "terms": [{"rate": "0.10", "months": 12}],
                },
                "coop.ledger.introduction.recorded.v1",
            ),
            "invalid_terms",
        ),
        (
            env(
                {
                    "introduction_id": "i",
                    "introducer_id": "a",
                    "client_id": "c",
                    "adviser_id": "x",
                    "date": "2025-02-03",
                    "terms": [{"rate": "1.5", "months": 12}],
                    "terms_reason": "x",
                },
                "coop.ledger.introduction.recorded.v1",
            ),
            "invalid_terms",
        ),
        (
            env(
                {
                    "introduction_id": "i",
                    "introducer_id": "a",
                    "client_id": "c",
                    "adviser_id": "x",
                    "date": "2025-02-03",
                    "terms": [{"rate": 0.1, "months": 12}],
                    "terms_reason": "x",
                },
                "coop.ledger.introduction.recorded.v1",
            ),
            "rate_as_number",
        ),
        (
            env(
                {
                    "introduction_id": "i",
                    "introducer_id": "a",
                    "client_id": "c",
                    "adviser_id": "x",
                    "date": "2025-02-03",
                    "prior_last_invoice_date": "2025-02-03",
                },
                "coop.ledger.introduction.recorded.v1",
            ),
            "invalid_value",
        ),
        (
            env(
                {
                    "rebate_id": "r",
                    "supplier_id": "s",
                    "date": "2025-01-01",
                    "currency": "CHF",
                    "amount": "1.00",
                    "purchase_ids": [],
                },
                "coop.ledger.rebate.received.v1",
            ),
            "invalid_data",
        ),
        (
            env(
                {
                    "rebate_id": "r",
                    "supplier_id": "s",
                    "date": "2025-01-01",
                    "currency": "CHF",
                    "amount": "1.00",
                    "purchase_ids": ["p1", "p1"],
                },
                "coop.ledger.rebate.received.v1",
            ),
            "invalid_value",
        ),
        (
            env(
                {"introducer_id": "i", "display_name": "I", "email": "not-an-address"},
                "coop.ledger.introducer.registered.v1",
            ),
            "invalid_value",
        ),
        (
            env(
                {"introducer_id": "i", "display_name": "I", "language": "de"},
                "coop.ledger.introducer.registered.v1",
            ),
            "invalid_value",
        ),
        ("{" + " " * MAX_MESSAGE_BYTES + "}", "too_large"),
        # full-string matches: a trailing newline is not a different spelling of the same value
        (with_data(invoice_id="INV-1\n"), "invalid_id"),
        (with_data(net_amount="100.00\n"), "invalid_amount"),
        (with_data(issue_date="2025-01-10\n"), "invalid_date"),
        (with_data(currency="CHF\n"), "unknown_currency"),
        # 13 integer digits: at least 10^12, refused by the pattern (not by an assert)
        (with_data(net_amount="1000000000000"), "invalid_amount"),
        (with_data(net_amount="999999999999.99"), None),
        (env(time="2025-W10-1T00:00Z"), "invalid_envelope"),
        (env(time="2025-01-10T09:00:00Z\n"), "invalid_envelope"),
        (env(time="2025-02-30T09:00:00Z"), "invalid_envelope"),
        (env(source="erp\x00acme"), "invalid_envelope"),
        (env(subject="line\nbreak"), "invalid_envelope"),
        (env(traceparent="x" * 513), "invalid_envelope"),
        (env(traceparent="a\nb"), "invalid_envelope"),
        (env(**{f"ext{i}": "v" for i in range(18)}), "invalid_envelope"),  # 25 attributes
        (env(**{f"ext{i}": "v" * 500 for i in range(5)}), "invalid_envelope"),
        (
            '{"specversion": "1.0", "specversion": "1.0", "id": "a", "source": "s", "type": "t", "data": {}}',
            "invalid_json",
        ),
        (
            with_data().replace('"invoice_id": "INV-1"', '"invoice_id": "INV-1", "invoice_id": "INV-2"'),
            "invalid_json",
        ),
        (
            env(
                {"introducer_id": "i", "display_name": "Bob\nBcc: x@y"},
                "coop.ledger.introducer.registered.v1",
            ),
            "invalid_value",
        ),
        (
            env(
                {"introducer_id": "i", "display_name": "I", "webhook_url": "https://exa\tmple.org/hook"},
                "coop.ledger.introducer.registered.v1",
            ),
            "invalid_value",
        ),
    ],
)
def test_bad_input_gets_a_specific_reason(raw: str, reason: str | None) -> None:
    """Each kind of malformed message is rejected with its own reason code and a message
    (``None``: the edge case is accepted)."""
    if reason is None:
        assert parse_envelope(raw).fact is not None
        return
    with pytest.raises(Rejection) as caught:
        parse_envelope(raw)
    assert caught.value.reason == reason, caught.value.message
    assert caught.value.message


def test_an_escaped_quote_before_a_colon_in_a_value_is_not_taken_for_a_key() -> None:
    """The duplicate-key check counts keys, not quotes followed by colons inside strings."""
    parsed = parse_envelope(env(source='erp \\"a\\":b \\\\":', traceparent='q\\":'))
    assert parsed.envelope.source.startswith("erp")


def test_strings_that_begin_with_a_colon_are_not_taken_for_keys() -> None:
    """A value (or an extension) starting with ':' is accepted: it is not a second key."""
    parsed = parse_envelope(env(source=":erp", traceparent=":", subject=": a colon first"))
    assert parsed.envelope.source == ":erp"
    spaced = env(source=":erp").replace('": ', '" : ').encode()
    assert parse_envelope(spaced).envelope.source == ":erp"


@pytest.mark.parametrize("depth", [100, 300, 1000, 5000])
def test_deep_nesting_is_refused_as_invalid_json_never_a_crash(depth: int) -> None:
    """Arrays or objects nested hundreds of levels deep are refused (``invalid_json``, or the
    envelope's own checks when shallow enough), never raised as an unexpected error."""
    for inner in (b"[" * depth + b"]" * depth, b'{"x":' * depth + b"1" + b"}" * depth):
        raw = b'{"specversion":"1.0","id":"deep-1","source":"s","type":"t","data":{"a":' + inner + b"}}"
        with pytest.raises(Rejection) as caught:
            parse_envelope(raw)
        assert caught.value.reason in {"invalid_json", "unknown_type", "too_large"}, caught.value.message


def _reference_has_duplicates(text: bytes) -> bool:
    found = False

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal found
        found = found or len({k for k, _ in items}) != len(items)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs)
    return found


_KEYS = st.sampled_from(["a", "b", ":", "a:", ' "x":', "\\", '"', "é", "\u2028", ""])
_LEAVES = st.one_of(st.integers(-5, 5), st.none(), st.booleans(), _KEYS, st.text(max_size=6))


@st.composite
def _json_texts(draw: st.DrawFn) -> bytes:
    """JSON texts written by hand: any spacing, escapes, keys repeated or not."""
    space = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])

    def write(depth: int) -> str:
        kind = draw(st.sampled_from(["leaf", "list", "object", "object"] if depth < 3 else ["leaf"]))
        if kind == "leaf":
            return json.dumps(draw(_LEAVES), ensure_ascii=draw(st.booleans()))
        if kind == "list":
            items = [write(depth + 1) for _ in range(draw(st.integers(0, 3)))]
            return "[" + ",".join(draw(space) + item + draw(space) for item in items) + "]"
        keys = draw(st.lists(_KEYS | st.text(max_size=4), max_size=4))
        members = [
            draw(space)
            + json.dumps(key, ensure_ascii=draw(st.booleans()))
            + draw(space)
            + ":"
            + draw(space)
            + write(depth + 1)
            + draw(space)
            for key in keys
        ]
        return "{" + ",".join(members) + "}"

    return write(0).encode()


@settings(max_examples=400, deadline=None)
@given(_json_texts())
def test_duplicate_keys_are_found_exactly_as_a_reference_parser_finds_them(text: bytes) -> None:
    """The duplicate-key check agrees with json's object_pairs_hook on any spacing, escape or
    string that starts with a colon."""
    assert has_duplicate_keys(text, orjson.loads(text)) == _reference_has_duplicates(text)


def test_refusal_keeps_the_envelope_id_when_there_is_one() -> None:
    """A refused envelope is reported with its id so the producer can find it."""
    with pytest.raises(Rejection) as caught:
        parse_envelope(with_data(net_amount=12.5))
    assert caught.value.envelope_id == "erp-1"


def test_extension_attributes_are_kept() -> None:
    """CloudEvents extension attributes are allowed and kept with the envelope."""
    parsed = parse_envelope(env(traceparent="00-abc-def-01"))
    assert parsed.envelope.model_extra == {"traceparent": "00-abc-def-01"}


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_fact_to_data_round_trips(name: str) -> None:
    """Every example fact maps back to contract data that parses to the same fact."""
    for line in (EXAMPLES / f"{name}.jsonl").read_text().splitlines():
        fact = parse_envelope(line).fact
        again = parse_envelope(env(fact_to_data(fact), type_of_fact(fact))).fact
        assert again == fact


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/hook",
        "https://100.64.0.1/hook",
        "https://metadata.google.internal/",
        "https://localhost:6443/",
        "http://169.254.169.254/",
        "https://user:pw@hooks.example.org/x",
        "http://hooks.example.org/x",
    ],
)
def test_webhooks_into_the_internal_network_are_refused_at_registration(url: str) -> None:
    """An introducer registered with a webhook to a private, loopback, link-local, CGNAT,
    unique-local or metadata target (or with credentials, or plain http) is rejected as
    invalid_value; the same registration to a public https URL is accepted."""
    from coop_runtime.netguard import parse_allow_list
    from ledger.application.admission import webhook_admission
    from ledger.bootstrap import build_ephemeral_ledger
    from ledger.settings import Settings

    ledger = build_ephemeral_ledger()
    raw = env(
        {"introducer_id": "int-x", "display_name": "X", "webhook_url": url},
        "coop.ledger.introducer.registered.v1",
    )
    [outcome] = ledger.ingest([raw])
    assert (outcome.status, outcome.reason) == ("rejected", "invalid_value"), outcome
    public = env(
        {"introducer_id": "int-x", "display_name": "X", "webhook_url": "https://hooks.example.org/x"},
        "coop.ledger.introducer.registered.v1",
        id="erp-2",
    )
    assert ledger.ingest([public])[0].status == "accepted"
    assert (
        webhook_admission(parse_allow_list("10.0.0.5"))(
            parse_envelope(
                env(
                    {"introducer_id": "i", "display_name": "X", "webhook_url": "https://10.0.0.5/h"},
                    "coop.ledger.introducer.registered.v1",
                )
            ).fact
        )
        is None
    )  # an allow-listed address passes
    assert Settings(store_url="memory:", webhook_allow_hosts="127.0.0.1,localhost").webhook_allow_list()


def _accepted_documents() -> list[dict[str, Any]]:
    from bench.history import generate

    raw = [line for n in EXAMPLE_NAMES for line in (EXAMPLES / f"{n}.jsonl").read_text().splitlines()]
    by_id = {"requested_by": "ops-anne", "approved_by": "ops-bob"}
    more = [
        envelope(
            "payout_run.approved", {"run_id": "R-2025-01", "date": "2025-02-03", "approved_by": "ops-b"}
        ),
        envelope(
            "period.closed",
            {"period": "2025-01", "date": "2025-02-01", "closed_by": "ops-anne", "approved_by": "ops-bob"},
        ),
        envelope("party.erased", {"party_type": "client", "party_id": "cli-1", **by_id}),
        envelope(
            "vendor_commission.received",
            {
                "vendor_commission_id": "vc-1",
                "adviser_id": "adv-1",
                "client_id": "cli-1",
                "supplier_id": "sup-1",
                "date": "2025-01-05",
                "currency": "JPY",
                "amount": "1200",
                "description": "licence résumé 😀",
            },
        ),
        envelope(
            "payout.recorded",
            {
                "payout_id": "po-9",
                "adviser_id": "coop",
                "beneficiary_id": "int-1",
                "date": "2025-02-10",
                "currency": "EUR",
                "amount": "10.50",
                "run_id": "R-2025-01",
                "end_to_end_id": "R-2025-01-00ab",
                "bank_reference": "BANK 42",
            },
        ),
        envelope(
            "fact.voided",
            {
                "void_id": "v-1",
                "target_type": "payment",
                "target_id": "pay-1",
                "date": "2025-01-15",
                "reason": "typed twice",
                **by_id,
            },
        ),
    ]
    return [orjson.loads(line) for line in [*raw, *more, *generate(3000, 7)]]


def test_accepted_facts_read_back_directly_equal_the_validated_reading() -> None:
    """Start-up's direct reading of accepted facts gives, for every type, the very fact
    (values and their exact decimals) the validating reading gives."""
    documents = _accepted_documents()
    assert set(_DIRECT) <= {d["type"] for d in documents}, "a directly read type is not tested"
    for document in documents:
        assert repr(fact_of_accepted(document, None)) == repr(fact_of_stored(document, None)), document


@pytest.mark.parametrize(
    "change",
    [{"surprise": "1"}, {"net_amount": "abc"}, {"issue_date": "not a date"}, {"net_amount": 12}],
)
def test_an_unexpected_stored_fact_is_read_the_validating_way(change: dict[str, object]) -> None:
    """A stored invoice the direct reading cannot build is refused as the validating
    reading refuses it (the same error), never built half-way."""
    document = json.loads(env(dict(INVOICE, **change)))
    try:
        fact_of_stored(document, None)
    except Exception as exc:  # whatever the validating reading raises
        with pytest.raises(type(exc)):
            fact_of_accepted(document, None)
    else:
        assert repr(fact_of_accepted(document, None)) == repr(fact_of_stored(document, None))


def test_the_calendar_bounds_keep_every_schedule_and_month_computable() -> None:
    """Dates and months at the ledger calendar's bounds are accepted and every figure and
    statement computes (a 600-month schedule from 9949-12-31 ends in 9999; the month before
    1900-01 exists); one day or month outside is refused with the bounds in the message."""
    from ledger.application.periods import closed_statement, period_statement
    from ledger.bootstrap import build_ephemeral_ledger
    from ledger.domain.books import build_books

    ledger = build_ephemeral_ledger()
    terms = [{"rate": "0.10", "months": 600}]
    history = [
        envelope(
            "introduction.recorded",
            {
                "introduction_id": "I-1",
                "introducer_id": "int-a",
                "client_id": "cli-a",
                "adviser_id": "adv-a",
                "date": "1900-01-01",
                "terms": terms,
                "terms_reason": "long engagement",
            },
        ),
        *(
            envelope(
                "invoice.issued",
                {
                    "invoice_id": f"INV-{day}",
                    "adviser_id": "adv-a",
                    "client_id": "cli-a",
                    "issue_date": day,
                    "currency": "CHF",
                    "net_amount": "100.00",
                },
            )
            for day in ("9949-12-31", "1900-01-01")
        ),
        envelope(
            "period.closed", {"period": "1900-01", "date": "1900-02-01", "closed_by": "a", "approved_by": "b"}
        ),
    ]
    assert [o.status for o in ledger.ingest(history)] == ["accepted"] * 4
    books = build_books(ledger.index.by_position)
    assert [c.amount for c in books.commissions] == [Decimal("10.00")]  # 9949 is past the 50 years
    assert closed_statement(ledger, "1900-01", save=False)["status"] == "closed"
    assert period_statement(ledger, "1900-02")["status"] == "provisional"
    for kind, data in (
        ("period.closed", {"period": "1899-12", "date": "1900-01-02", "closed_by": "a", "approved_by": "b"}),
        ("payment.received", {"payment_id": "P", "invoice_id": "X", "date": "9950-01-01", "amount": "1.00"}),
    ):
        with pytest.raises(Rejection, match=r"outside the ledger's calendar \(years 1900 to 9949\)"):
            parse_envelope(envelope(kind, data))
