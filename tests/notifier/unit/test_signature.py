"""Webhook signatures: a genuine body verifies; tampering, replays and other keys do not."""

from __future__ import annotations

import pytest

from notifier.domain.signature import introducer_secret, sign, signature_header, verify_signature

SECRET = introducer_secret("master-secret", "int-john")
BODY = b'{"id":"3:commission.accrued:inv-1/intro-1","data":{"amount":"240.00"}}'
NOW = 1_760_000_000


def test_genuine_signature_verifies() -> None:
    """The header made by the notifier verifies with the introducer's key."""
    header = signature_header(SECRET, BODY, NOW)
    assert header == f"t={NOW},v1={sign(SECRET, BODY, NOW)}"
    assert verify_signature(SECRET, header, BODY, now=NOW + 10)


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"240.00", b"2400.0"), BODY + b" ", BODY[:-1], b""],
)
def test_tampered_body_fails(body: bytes) -> None:
    """Any change to the body breaks the signature."""
    assert not verify_signature(SECRET, signature_header(SECRET, BODY, NOW), body, now=NOW)


def test_tampered_timestamp_fails() -> None:
    """The timestamp is signed: moving it forward to dodge the replay window fails."""
    header = signature_header(SECRET, BODY, NOW).replace(f"t={NOW}", f"t={NOW + 60}")
    assert not verify_signature(SECRET, header, BODY, now=NOW + 60)


def test_replay_older_than_tolerance_fails() -> None:
    """A captured request replayed after the tolerance is refused; within it, accepted."""
    header = signature_header(SECRET, BODY, NOW)
    assert verify_signature(SECRET, header, BODY, now=NOW + 300, tolerance_s=300)
    assert not verify_signature(SECRET, header, BODY, now=NOW + 301, tolerance_s=300)
    assert not verify_signature(SECRET, header, BODY, now=NOW - 301, tolerance_s=300)


def test_other_introducers_key_fails() -> None:
    """Keys are per introducer: one introducer cannot forge alerts to another."""
    other = introducer_secret("master-secret", "int-marie")
    assert other != SECRET
    assert not verify_signature(other, signature_header(SECRET, BODY, NOW), BODY, now=NOW)
    assert not verify_signature(
        SECRET, signature_header(introducer_secret("other-master", "int-john"), BODY, NOW), BODY, now=NOW
    )


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"t={NOW}", "v1=abcd", f"t=abc,v1={sign(SECRET, BODY, NOW)}", "t=1," + "v1=x," * 500],
)
def test_malformed_header_fails(header: str) -> None:
    """Missing parts, non-numeric timestamps and oversized headers are refused."""
    assert not verify_signature(SECRET, header, BODY, now=NOW)


def test_key_rotation_accepts_any_matching_v1() -> None:
    """Several v1 entries (old and new key) verify if one of them matches."""
    header = f"t={NOW},v1={'0' * 64},v1={sign(SECRET, BODY, NOW)}"
    assert verify_signature(SECRET, header, BODY, now=NOW)
