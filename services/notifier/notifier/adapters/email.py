"""E-mail alerts over SMTP (aiosmtplib): STARTTLS, implicit TLS, or plain on loopback;
optional authentication. A message counts as sent once the server accepted it (the 250
after the data), which is reported at once, before the session is closed with QUIT.
A statement's e-mail is ``multipart/mixed``: the text, then the PDF (fetched beforehand)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import aiosmtplib

from notifier.application.ports import Accepted, Clock, Delivery, SendFailure
from notifier.domain.signature import ALERT_ID_HEADER

__all__ = ["SmtpEmailSender", "build_email"]

_SPACES = re.compile(r"\s+")


def build_email(delivery: Delivery, sender: str, now: datetime) -> EmailMessage:
    """The message for ``delivery``: UTF-8 plain text, quoted-printable, its attachments
    (base64), and a Message-ID derived from the alert id (the same at every attempt, so that
    a copy sent in the instant between the server's 250 and the store's record is
    recognisable)."""
    assert delivery.key.channel == "email", delivery.key
    to = delivery.party.email
    assert to, delivery.party.key
    _, from_addr = parseaddr(sender)
    domain = from_addr.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(f"{delivery.key.alert_id}#email#{to}".encode()).hexdigest()[:40]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(display_name=_SPACES.sub(" ", delivery.party.display_name).strip(), addr_spec=to)
    message["Subject"] = delivery.rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{digest}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message[ALERT_ID_HEADER] = delivery.key.alert_id
    message.set_content(delivery.rendered.text, charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = delivery.rendered.language  # after set_content, which resets Content-*
    for attachment in delivery.attachments:
        assert attachment.content is not None, attachment.filename  # fetched before the attempt
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    if delivery.attachments:  # the text part took Content-Language along: the message says it too
        message["Content-Language"] = delivery.rendered.language
    return message


class SmtpEmailSender:
    """:class:`notifier.application.ports.Sender` for e-mail."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Literal["starttls", "tls", "none"],
        username: str,
        password: str,
        sender: str,
        timeout_s: float,
        validate_certs: bool,
        clock: Clock,
    ) -> None:
        self.host = host
        self.port = port
        self.security = security
        self._username = username or None
        self._password = password or None
        self.sender = sender
        self.timeout_s = timeout_s
        self.validate_certs = validate_certs
        self._clock = clock

    async def send(self, delivery: Delivery, accepted: Accepted) -> None:
        try:
            message = build_email(delivery, self.sender, self._clock())
        except (ValueError, TypeError) as exc:  # e.g. an address the e-mail library refuses
            raise SendFailure("bad_address", str(exc), permanent=True) from None
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            use_tls=self.security == "tls",
            start_tls=self.security == "starttls",
            timeout=self.timeout_s,
            validate_certs=self.validate_certs,
        )
        try:
            try:
                await client.connect()
                await client.send_message(message)
            except Exception as exc:
                raise _failure(exc) from None
            accepted()  # the 250 after the data: recorded before QUIT or anything else
            with contextlib.suppress(Exception):  # accepted: how the session ends does not matter
                await client.quit()
        finally:
            client.close()

    async def close(self) -> None:
        return None


def _failure(exc: Exception) -> SendFailure:
    """The :class:`SendFailure` for an exception of aiosmtplib (or the network)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        permanent = all(500 <= c < 600 for c in codes)
        return SendFailure("smtp_rejected", f"recipient refused {codes}", permanent=permanent)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        permanent = 500 <= exc.code < 600
        reason = (
            "smtp_auth"
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError)
            else ("smtp_5xx" if permanent else "smtp_4xx")
        )
        return SendFailure(reason, f"{exc.code} {exc.message}", permanent=permanent)
    for kinds, reason, permanent in _FAILURES:
        if isinstance(exc, kinds):
            return SendFailure(reason, f"{type(exc).__name__}: {exc}"[:300], permanent=permanent)
    return SendFailure("error", f"{type(exc).__name__}: {exc}"[:300])


#: Other failures, most specific first: (exception types, reason, permanent).
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str, bool], ...] = (
    ((aiosmtplib.SMTPTimeoutError, TimeoutError), "timeout", False),
    (aiosmtplib.SMTPConnectError, "smtp_connect", False),
    (aiosmtplib.SMTPNotSupported, "smtp_tls", True),  # e.g. STARTTLS required but not offered
    ((aiosmtplib.SMTPException, OSError), "smtp_connect", False),
)
