"""Signed links to a party's statement page: anyone holding the link sees that page, and
only that page, until it expires.

A link names the party (kind and id), the month and an expiry; its signature is
HMAC-SHA256 over those four, with a key per deployment. Changing any of them, or using it
after the expiry, makes it worthless: the page answers 403 and shows no figure. Pure
functions; the key and the clock are given.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

__all__ = ["LinkError", "StatementLink", "StatementLinks", "link_expiry", "sign_link", "verify_link"]

PARTY_KINDS = frozenset({"introducer", "client", "adviser", "cooperative"})
MIN_KEY_BYTES = 32


class LinkError(ValueError):
    """A link that does not open the page (altered, another party's, expired)."""


@dataclass(frozen=True, slots=True)
class StatementLink:
    kind: str
    party_id: str
    period: str
    expires: datetime
    signature: str

    def path(self, base_url: str, *, pdf: bool = False) -> str:
        """The link's URL under ``base_url`` (the ledger's public address)."""
        query = urlencode({"period": self.period, "expires": _timestamp(self.expires), "sig": self.signature})
        suffix = ".pdf" if pdf else ""
        return (
            f"{base_url.rstrip('/')}/statements/{self.kind}/{quote(self.party_id, safe='')}{suffix}?{query}"
        )


def _timestamp(moment: datetime) -> str:
    assert moment.tzinfo is not None, moment
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signature(key: bytes, kind: str, party_id: str, period: str, expires: str) -> str:
    message = "\n".join(("coop-ledger/statement-link/v1", kind, party_id, period, expires)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_link(key: bytes, kind: str, party_id: str, period: str, expires: datetime) -> StatementLink:
    """A link to ``kind``/``party_id``'s statement of ``period``, valid until ``expires``."""
    assert len(key) >= MIN_KEY_BYTES, "the link key is too short"
    assert kind in PARTY_KINDS, kind
    expiry = _timestamp(expires)
    return StatementLink(kind, party_id, period, expires, _signature(key, kind, party_id, period, expiry))


def verify_link(
    key: bytes, *, kind: str, party_id: str, period: str, expires: str, signature: str, now: datetime
) -> None:
    """Raise :class:`LinkError` unless the link is intact, for this page, and not expired."""
    try:
        expiry = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    except ValueError:
        raise LinkError("the link's expiry is not readable") from None
    expected = _signature(key, kind, party_id, period, expires)
    if not hmac.compare_digest(expected, signature.lower()):
        raise LinkError("the link is not valid for this page")
    if now >= expiry:
        raise LinkError(f"the link expired on {expires}")


def link_expiry(closed_at: datetime, ttl_days: int) -> datetime:
    """When the links of a close expire: ``ttl_days`` after it was recorded (so the links
    of one close are the same whenever they are derived)."""
    assert 1 <= ttl_days <= 3650, ttl_days
    return closed_at.replace(microsecond=0) + timedelta(days=ttl_days)


@dataclass(frozen=True, slots=True)
class StatementLinks:
    """How this deployment signs its statement links: its public address, its key, and how
    long a link stays valid after the month's close."""

    base_url: str
    key: bytes
    ttl_days: int

    def for_party(self, kind: str, party_id: str, period: str, closed_at: datetime) -> dict[str, str]:
        """The signed page and PDF links of a party's statement of a closed month."""
        link = sign_link(self.key, kind, party_id, period, link_expiry(closed_at, self.ttl_days))
        return {
            "html_url": link.path(self.base_url),
            "pdf_url": link.path(self.base_url, pdf=True),
            "link_expires": _timestamp(link.expires),
        }
