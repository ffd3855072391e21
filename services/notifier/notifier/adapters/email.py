"""E-mail alerts over SMTP (aiosmtplib): STARTTLS, implicit TLS, or plain on loopback;
optional authentication. A message counts as sent once the server accepted it (250)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Literal

import aiosmtplib

from notifier.application.ports import Clock, Delivery, SendFailure
from notifier.domain.signature import ALERT_ID_HEADER

__all__ = ["SmtpEmailSender", "build_email"]

_SPACES = re.compile(r"\s+")


def build_email(delivery: Delivery, sender: str, now: datetime) -> EmailMessage:
    """The message for ``delivery``: UTF-8 plain text, quoted-printable, and a Message-ID
    derived from the alert id (the same at every attempt, so that a copy sent in the
    instant between the server's 250 and the store's record is recognisable)."""
    assert delivery.key.channel == "email", delivery.key
    to = delivery.introducer.email
    assert to, delivery.introducer.introducer_id
    _, from_addr = parseaddr(sender)
    domain = from_addr.rpartition("@")[2] or "localhost"
    digest = hashlib.sha256(f"{delivery.key.alert_id}#email#{to}".encode()).hexdigest()[:40]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(
        display_name=_SPACES.sub(" ", delivery.introducer.display_name).strip(), addr_spec=to
    )
    message["Subject"] = delivery.rendered.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{digest}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message[ALERT_ID_HEADER] = delivery.key.alert_id
    message.set_content(delivery.rendered.text, charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = delivery.rendered.language  # after set_content, which resets Content-*
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

    async def send(self, delivery: Delivery) -> None:
        try:
            message = build_email(delivery, self.sender, self._clock())
        except (ValueError, TypeError) as exc:  # e.g. an address the e-mail library refuses
            raise SendFailure("bad_address", str(exc), permanent=True) from None
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                timeout=self.timeout_s,
                validate_certs=self.validate_certs,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = all(500 <= c < 600 for c in codes)
            raise SendFailure("smtp_rejected", f"recipient refused {codes}", permanent=permanent) from None
        except aiosmtplib.SMTPTimeoutError as exc:
            raise SendFailure("timeout", str(exc)) from None
        except aiosmtplib.SMTPConnectError as exc:
            raise SendFailure("smtp_connect", str(exc)) from None
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            reason = (
                "smtp_auth"
                if isinstance(exc, aiosmtplib.SMTPAuthenticationError)
                else ("smtp_5xx" if permanent else "smtp_4xx")
            )
            raise SendFailure(reason, f"{exc.code} {exc.message}", permanent=permanent) from None
        except aiosmtplib.SMTPNotSupported as exc:  # e.g. STARTTLS required but not offered
            raise SendFailure("smtp_tls", str(exc), permanent=True) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise SendFailure("smtp_connect", f"{type(exc).__name__}: {exc}") from None
        except TimeoutError as exc:
            raise SendFailure("timeout", str(exc)) from None

    async def close(self) -> None:
        return None
