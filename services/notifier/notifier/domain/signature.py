"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``.

Header ``X-Coop-Signature: t=<unix seconds>,v1=<hex digest>``. Each party's key is
derived from the notifier's master secret (an introducer's by :func:`introducer_secret`, a
client's or an adviser's by :func:`party_secret`), so one party cannot forge alerts to
another. A receiver checks with :func:`verify_signature`, which refuses a changed body or
timestamp, and a timestamp older (or newer) than the tolerance; within the tolerance, the
``id`` of the body (also header ``X-Coop-Alert-Id``) lets the receiver drop a replay it has
already seen.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "ALERT_ID_HEADER",
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "introducer_secret",
    "party_secret",
    "sign",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Coop-Signature"
ALERT_ID_HEADER = "X-Coop-Alert-Id"
DEFAULT_TOLERANCE_S = 300.0
MAX_HEADER_CHARS = 1024
MAX_SIGNATURES = 8


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def introducer_secret(master: str | bytes, introducer_id: str) -> str:
    """The signing key of one introducer's webhooks (hex), given to that introducer."""
    return hmac.new(
        _key(master), b"coop-notifier-webhook:" + introducer_id.encode(), hashlib.sha256
    ).hexdigest()


def party_secret(master: str | bytes, kind: str, party_id: str) -> str:
    """The signing key of one party's webhooks (hex): an introducer's is
    :func:`introducer_secret` (unchanged since introducers were the only parties); a client's
    or an adviser's is derived from ``<kind>/<id>`` (ids never hold ``/``, so no two parties
    share a key)."""
    if kind == "introducer":
        return introducer_secret(master, party_id)
    return hmac.new(
        _key(master), b"coop-notifier-webhook:" + f"{kind}/{party_id}".encode(), hashlib.sha256
    ).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}." + body``."""
    return hmac.new(_key(secret), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The value of the ``X-Coop-Signature`` header."""
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify_signature(
    secret: str | bytes, header: str, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """True when ``header`` signs exactly ``body`` with ``secret`` and its timestamp is
    within ``tolerance_s`` of ``now`` (unix seconds). Several ``v1=`` entries are allowed
    (key rotation): one matching is enough."""
    if not header or len(header) > MAX_HEADER_CHARS:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(",")[: 2 + MAX_SIGNATURES]:
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
