"""Voids (rules R8): a voided fact counts nowhere at any as-of date, order independence
holds, several voids of one target void it once, and only two people can void."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.application.contract import Rejection, parse_envelope
from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLES, envelope
from tests.ledger.strategies import (
    VOIDABLE_ID_FIELDS,
    histories,
    histories_with_voids,
    lines,
    void_doc,
    voidable_targets,
)
from tests.ledger.unit.test_derive import assert_deltas_match_report, derive_all

FIGURES = (
    "introductions",
    "commissions",
    "balances",
    "donations",
    "rebates",
    "margins",
    "rebate_shares",
    "trial_balance",
)


def report(raw: list[str], as_of: date | None = None) -> dict[str, Any]:
    ledger = build_ephemeral_ledger()
    outcomes = ledger.ingest(raw)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    return render_report(
        ledger.books(as_of=as_of), head_position=ledger.head_position, head_hash=ledger.head_hash
    )


def void(target_type: str, target_id: str, **over: str) -> str:
    data = {
        "void_id": over.pop("void_id", f"v-{target_type}-{target_id}"),
        "target_type": target_type,
        "target_id": target_id,
        "date": "2025-12-31",
        "reason": "recorded in error",
        "requested_by": "tre-ana",
        "approved_by": "tre-luc",
        **over,
    }
    return envelope("fact.voided", data, id=f"env-{data['void_id']}")


EXAMPLE_1 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
EXAMPLE_3 = (EXAMPLES / "03-donation-and-rebates.jsonl").read_text().splitlines()


@pytest.mark.parametrize(
    ("target_type", "reason"),
    [
        ("invoice", "not_voidable"),
        ("credit_note", "not_voidable"),
        ("introducer", "not_voidable"),
        ("eligibility", "not_voidable"),
        ("void", "not_voidable"),
        ("fact", "not_voidable"),
        ("banana", "not_voidable"),
    ],
)
def test_what_cannot_be_voided_is_rejected(target_type: str, reason: str) -> None:
    """Invoices, credit notes, registrations, eligibility changes and voids (and unknown
    kinds) are not voidable: rejected with not_voidable and a readable message."""
    with pytest.raises(Rejection) as caught:
        parse_envelope(void(target_type, "x-1"))
    assert caught.value.reason == reason
    assert "credit note" in caught.value.message


def test_one_person_alone_cannot_void() -> None:
    """requested_by = approved_by is rejected as approval_required."""
    with pytest.raises(Rejection) as caught:
        parse_envelope(void("payment", "P-1", requested_by="tre-ana", approved_by="tre-ana"))
    assert caught.value.reason == "approval_required"
    assert "two people" in caught.value.message


@pytest.mark.parametrize("kind", sorted(VOIDABLE_ID_FIELDS))
def test_each_voidable_type_is_accepted(kind: str) -> None:
    """A void of each voidable type, by two people, is accepted."""
    target_type, _ = VOIDABLE_ID_FIELDS[kind]
    assert parse_envelope(void(target_type, "some-id")).fact.key == ("void", f"v-{target_type}-some-id")


def _without(history: list[dict[str, Any]], target: tuple[str, str]) -> list[dict[str, Any]]:
    """The history without the target; a purchase also leaves the rebates that list it (R8:
    a rebate is split over its other purchases; one left with none is not split at all)."""
    out = []
    for doc in history:
        if target[0] == "purchase" and doc["type"] == "coop.ledger.rebate.received.v1":
            kept = [p for p in doc["data"]["purchase_ids"] if p != target[1]]
            if kept:
                out.append({**doc, "data": {**doc["data"], "purchase_ids": kept}})
            continue
        kind = doc["type"].removeprefix("coop.ledger.").removesuffix(".v1")
        if kind in VOIDABLE_ID_FIELDS:
            target_type, field = VOIDABLE_ID_FIELDS[kind]
            if (target_type, doc["data"][field]) == target:
                continue
        out.append(doc)
    return out


@settings(max_examples=150, deadline=None)
@given(history=histories(), data=st.data())
def test_a_void_gives_the_books_of_the_history_without_its_target(
    history: list[dict[str, Any]], data: st.DataObject
) -> None:
    """History + a void of X gives the same figures as the history without X (a purchase
    also out of the rebates that list it), for every voidable X, at any as-of date."""
    targets = voidable_targets(history)
    if not targets:
        return
    target = data.draw(st.sampled_from(targets))
    as_of = data.draw(st.sampled_from([None, date(2023, 6, 30), date(2025, 1, 1)]))
    with_void = report(lines([*history, void_doc(0, *target)]), as_of)
    without = report(lines(_without(history, target)), as_of)
    for key in FIGURES:
        assert with_void[key] == without[key], key
    [line] = with_void["voids"]
    assert line["applied"] is True and (line["target_type"], line["target_id"]) == target


@settings(max_examples=120, deadline=None)
@given(history=histories_with_voids(), data=st.data())
def test_voids_are_order_independent(history: list[dict[str, Any]], data: st.DataObject) -> None:
    """Any arrival order of a history with voids (a void before its target included) gives
    the same report, voids list and anomalies included."""
    shuffled = data.draw(st.permutations(history))
    first, second = report(lines(history)), report(lines(shuffled))
    for key in (*FIGURES, "voids", "anomalies"):
        assert first[key] == second[key], key


@settings(max_examples=120, deadline=None)
@given(history=histories_with_voids(), data=st.data())
def test_derived_events_of_voids_add_up_to_the_report(
    history: list[dict[str, Any]], data: st.DataObject
) -> None:
    """The incremental projection (what the service publishes) agrees with the books, with
    voids arriving before or after their targets."""
    shuffled = data.draw(st.permutations(history))
    events, final = derive_all(lines(shuffled))
    assert_deltas_match_report(events, final)
    voided = [e for e in events if e.kind == "fact.voided"]
    assert {e.data["void_id"] for e in voided} == {v["void_id"] for v in final["voids"]}


def test_several_voids_of_one_target_void_it_once() -> None:
    """Two voids of the same payment are both listed and applied; the payment is gone once."""
    payment = next(line for line in EXAMPLE_1 if "payment.received" in line)
    payment_id = json.loads(payment)["data"]["payment_id"]
    twice = report(
        [*EXAMPLE_1, void("payment", payment_id, void_id="v-a"), void("payment", payment_id, void_id="v-b")]
    )
    once = report([line for line in EXAMPLE_1 if line != payment])
    assert [v["void_id"] for v in twice["voids"]] == ["v-a", "v-b"]
    assert all(v["applied"] for v in twice["voids"])
    for key in FIGURES:
        assert twice[key] == once[key], key


def test_a_void_before_its_target_waits_as_an_anomaly_then_applies() -> None:
    """A void whose target is unknown is kept (anomaly unknown_target, applied false) and
    takes effect when the target arrives."""
    payment = next(line for line in EXAMPLE_1 if "payment.received" in line)
    payment_id = json.loads(payment)["data"]["payment_id"]
    rest = [line for line in EXAMPLE_1 if line != payment]
    early = report([void("payment", payment_id), *rest])
    assert early["voids"][0]["applied"] is False
    assert [a["kind"] for a in early["anomalies"]] == ["unknown_target"]
    later = report([void("payment", payment_id), *rest, payment])
    assert later["voids"][0]["applied"] is True
    assert not later["anomalies"]
    for key in FIGURES:
        assert later[key] == report(rest)[key], key


def test_a_voided_introduction_takes_its_commissions_and_leaves_the_payouts_as_an_advance() -> None:
    """Voiding the introduction removes its commission lines; the payout made stays and
    the introducer's balance shows it as an advance."""
    intro_id = json.loads(next(line for line in EXAMPLE_1 if "introduction.recorded" in line))["data"][
        "introduction_id"
    ]
    before = report(EXAMPLE_1)
    after = report([*EXAMPLE_1, void("introduction", intro_id)])
    assert before["commissions"] and not after["commissions"]
    paid = [b for b in after["balances"] if Decimal(b["paid"]) > 0]
    assert paid and all(Decimal(b["advance"]) == Decimal(b["paid"]) for b in paid)
    assert all(b["accrued"] in {"0.00", "0"} for b in after["balances"])


def test_a_voided_purchase_leaves_the_rebate_split_over_the_others() -> None:
    """A rebate over two purchases, one voided: the whole rebate goes to the other purchase;
    both voided: not split, listed as an anomaly."""
    rebate = json.loads(next(line for line in EXAMPLE_3 if "rebate.received" in line))
    purchases = rebate["data"]["purchase_ids"]
    assert len(purchases) >= 2
    one = report([*EXAMPLE_3, void("purchase", purchases[0])])
    shares = [s for s in one["rebate_shares"] if s["rebate_id"] == rebate["data"]["rebate_id"]]
    assert [s["purchase_id"] for s in shares] == purchases[1:]
    assert sum(Decimal(s["amount"]) for s in shares) == Decimal(rebate["data"]["amount"])
    every = report([*EXAMPLE_3, *(void("purchase", p) for p in purchases)])
    assert not [s for s in every["rebate_shares"] if s["rebate_id"] == rebate["data"]["rebate_id"]]
    assert "all_purchases_voided" in {a["kind"] for a in every["anomalies"]}


def test_voids_count_at_every_as_of_date() -> None:
    """A void dated after the as-of day still takes its target back (it was never true)."""
    payment = json.loads(next(line for line in EXAMPLE_1 if "payment.received" in line))
    as_of = date.fromisoformat(payment["data"]["date"])
    voided = report([*EXAMPLE_1, void("payment", payment["data"]["payment_id"], date="2030-01-01")], as_of)
    without = report([line for line in EXAMPLE_1 if json.loads(line)["id"] != payment["id"]], as_of)
    for key in FIGURES:
        assert voided[key] == without[key], key
