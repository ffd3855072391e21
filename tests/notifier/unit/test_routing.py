"""Who hears about which ledger event, and on which channels."""

from __future__ import annotations

from notifier.domain.events import Introducer, parse_payload
from notifier.domain.routing import channels_for, recipient_of
from tests.conftest import EXAMPLES
from tests.notifier.support import derived_envelopes


def _recipients(name: str) -> list[tuple[str, str | None]]:
    lines = (EXAMPLES / f"{name}.jsonl").read_text().splitlines()
    out = []
    for env in derived_envelopes(lines):
        payload = parse_payload(env.kind, env.data)
        out.append((env.id, None if payload is None else recipient_of(env.kind, payload)))
    return out


def test_example_01_goes_to_the_beneficiary() -> None:
    """Every commission event and the payout of example 01 are for int-marie; her registration for nobody."""
    assert _recipients("01-standard-introduction") == [
        ("1:introducer.registered:int-marie", None),
        ("3:commission.accrued:2025-0311/intro-100", "int-marie"),
        ("4:commission.payable:2025-0311/intro-100", "int-marie"),
        ("5:commission.accrued:2025-0920/intro-100", "int-marie"),
        ("6:commission.adjusted:2025-0920/intro-100", "int-marie"),
        ("7:commission.accrued:2026-0311/intro-100", "int-marie"),
        ("9:payout.recorded:po-marie-1", "int-marie"),
    ]


def test_example_03_donor_hears_once_through_the_donation() -> None:
    """A donated commission is told to the donor once (donation.credited); rebates tell nobody."""
    assert _recipients("03-donation-and-rebates") == [
        ("1:introducer.registered:int-ines", None),
        ("4:commission.accrued:d-1/intro-300", None),
        ("4:donation.credited:d-1/intro-300/+", "int-ines"),
        ("8:rebate.owed:cli-ecole/CHF", None),
        ("9:rebate.owed:cli-asso/CHF", None),
        ("9:rebate.owed:cli-ecole/CHF", None),
        ("10:rebate.passed_through:pt-1", None),
    ]


def test_channels_follow_contact_details_and_configuration() -> None:
    """E-mail needs an address, a webhook a URL, each only when the channel is enabled."""
    both = Introducer(
        introducer_id="a", display_name="A", email="a@example.org", webhook_url="https://a.example/h"
    ).party()
    assert channels_for(both, {"email", "webhook"}) == ["email", "webhook"]
    assert channels_for(both, {"webhook"}) == ["webhook"]
    assert channels_for(both, set()) == []
    assert channels_for(Introducer(introducer_id="b", display_name="B").party(), {"email", "webhook"}) == []
