"""The channels against real servers on loopback: aiosmtpd for e-mail, an HTTP server for
webhooks. What arrives is exactly what an introducer reads or verifies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from coop_runtime.netguard import parse_allow_list
from notifier.adapters.email import SmtpEmailSender
from notifier.adapters.webhook import HttpWebhookSender
from notifier.application.ports import Delivery, SendFailure
from notifier.application.render import Renderer
from notifier.domain.events import AlertKey, CommissionEvent, Introducer, parse_payload
from notifier.domain.signature import introducer_secret, verify_signature
from tests.conftest import EXAMPLES
from tests.notifier.support import HttpReceiver, SmtpSink, derived_envelopes
from tests.support.servers import free_port

MASTER = "test-master-secret"
#: The receivers listen on loopback, which webhooks may reach only when allow-listed.
LOOPBACK = parse_allow_list("127.0.0.1")
NOW = datetime(2025, 3, 11, 10, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


def _noted() -> None:
    """The acceptance callback, for tests that do not look at it."""


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def _delivery(channel: str, **who: str) -> Delivery:
    env = derived_envelopes((EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines())[1]
    payload = parse_payload(env.kind, env.data)
    assert isinstance(payload, CommissionEvent)
    introducer = Introducer.model_validate(
        {"introducer_id": "int-marie", "display_name": "Marie Dupont", "language": "fr", **who}
    ).party()
    rendered = Renderer().render_event(env.kind, payload, introducer, env.id, env.ledgerposition)
    about = {"id": env.id, "kind": env.kind, "ledger_position": env.ledgerposition, "data": env.data}
    return Delivery(AlertKey(env.id, channel), introducer, rendered, about)  # type: ignore[arg-type]


def _smtp(port: int) -> SmtpEmailSender:
    return SmtpEmailSender(
        host="127.0.0.1",
        port=port,
        security="none",
        username="",
        password="",
        sender="Commissions <commissions@coop.example>",
        timeout_s=5,
        validate_certs=True,
        clock=lambda: NOW,
    )


@pytest.mark.asyncio
async def test_email_arrives_readable_in_french(sink: SmtpSink) -> None:
    """aiosmtpd receives a UTF-8 French message with stable Message-ID and alert id."""
    delivery = _delivery("email", email="marie@example.org")
    await _smtp(sink.port).send(delivery, _noted)
    await _smtp(sink.port).send(delivery, _noted)
    first, second = sink.received()
    assert first.rcpt_tos == ["marie@example.org"]
    message = first.message
    assert message["To"] == "Marie Dupont <marie@example.org>"
    assert message["Subject"] == "Nouvelle commission : CHF\u00a0240.00 sur la facture 2025-0311"
    assert message["Content-Language"] == "fr"
    assert message["Auto-Submitted"] == "auto-generated"
    assert first.alert_id == "3:commission.accrued:2025-0311/intro-100"
    assert message["Message-ID"] == second.message["Message-ID"]  # same alert, same id
    assert message["Message-ID"].endswith("@coop.example>")
    assert "Base (HT)       : CHF\u00a02’400.00" in first.text


@pytest.mark.asyncio
async def test_email_to_a_dead_server_is_a_transient_failure() -> None:
    """Nothing listening: a retryable smtp_connect failure."""
    with pytest.raises(SendFailure) as caught:
        await _smtp(free_port()).send(_delivery("email", email="marie@example.org"), _noted)
    assert caught.value.reason == "smtp_connect" and not caught.value.permanent


@pytest.mark.asyncio
async def test_refused_mailbox_is_permanent(sink: SmtpSink) -> None:
    """A 550 on RCPT is permanent: retrying cannot help."""
    sink.reject.add("nobody@example.org")
    with pytest.raises(SendFailure) as caught:
        await _smtp(sink.port).send(_delivery("email", email="nobody@example.org"), _noted)
    assert caught.value.reason == "smtp_rejected" and caught.value.permanent


@pytest.mark.asyncio
async def test_webhook_is_signed_and_verifiable(receiver: HttpReceiver) -> None:
    """The received CloudEvent body verifies with the introducer's key, and fails once tampered."""
    sender = HttpWebhookSender(
        master_secret=MASTER, timeout_s=5, allow_http=False, per_host=2, allow=LOOPBACK
    )
    await sender.send(_delivery("webhook", webhook_url=receiver.url("/hooks/marie")), _noted)
    await sender.close()
    (hook,) = receiver.received()
    key = introducer_secret(MASTER, "int-marie")
    assert verify_signature(key, hook.headers["X-Coop-Signature"], hook.body, now=time.time())
    assert not verify_signature(
        key, hook.headers["X-Coop-Signature"], hook.body.replace(b"240.00", b"999.00"), now=time.time()
    )
    assert hook.headers["X-Coop-Alert-Id"] == "3:commission.accrued:2025-0311/intro-100"
    body = hook.json
    assert body["type"] == "coop.notifier.alert.v1" and body["id"] == hook.headers["X-Coop-Alert-Id"]
    assert body["data"]["about"]["data"]["amount"] == "240.00"
    assert body["data"]["subject"].startswith("Nouvelle commission")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("status", "reason", "permanent"),
    [(503, "http_5xx", False), (429, "http_429", False), (410, "http_4xx", True), (301, "http_3xx", True)],
)
async def test_webhook_status_codes(
    receiver: HttpReceiver, status: int, reason: str, permanent: bool
) -> None:
    """5xx and 429 are retried; other 4xx and redirects are permanent."""
    receiver.status["/h"] = status
    sender = HttpWebhookSender(
        master_secret=MASTER, timeout_s=5, allow_http=False, per_host=2, allow=LOOPBACK
    )
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery("webhook", webhook_url=receiver.url("/h")), _noted)
    await sender.close()
    assert (caught.value.reason, caught.value.permanent) == (reason, permanent)


@pytest.mark.asyncio
async def test_webhook_refuses_plain_http_off_loopback_and_dead_hosts_are_transient() -> None:
    """http:// to a public host is refused without a request; a closed port is retryable."""
    sender = HttpWebhookSender(
        master_secret=MASTER, timeout_s=2, allow_http=False, per_host=2, allow=LOOPBACK
    )
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery("webhook", webhook_url="http://hooks.example.org/x"), _noted)
    assert (caught.value.reason, caught.value.permanent) == ("url_refused", True)
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery("webhook", webhook_url=f"http://127.0.0.1:{free_port()}/x"), _noted)
    assert (caught.value.reason, caught.value.permanent) == ("connection", False)
    await sender.close()


class Acceptances:
    """Counts the acceptance callbacks, and whether the far end had already answered."""

    def __init__(self, seen: Callable[[], int]) -> None:
        self.calls: list[int] = []
        self._seen = seen

    def __call__(self) -> None:
        self.calls.append(self._seen())


@pytest.mark.asyncio
async def test_email_acceptance_is_reported_at_the_250_and_only_then(sink: SmtpSink) -> None:
    """The callback runs once the server took the message (before QUIT), never for a refusal."""
    accepted = Acceptances(lambda: len(sink.received()))
    await _smtp(sink.port).send(_delivery("email", email="marie@example.org"), accepted)
    assert accepted.calls == [1]
    sink.reject.add("nobody@example.org")
    refused = Acceptances(lambda: len(sink.received()))
    with pytest.raises(SendFailure):
        await _smtp(sink.port).send(_delivery("email", email="nobody@example.org"), refused)
    assert refused.calls == []


@pytest.mark.asyncio
async def test_webhook_acceptance_is_reported_at_the_2xx_and_only_then(receiver: HttpReceiver) -> None:
    """The callback runs once for a 2xx (after the receiver recorded it), never for a 503."""
    sender = HttpWebhookSender(
        master_secret=MASTER, timeout_s=5, allow_http=False, per_host=2, allow=LOOPBACK
    )
    accepted = Acceptances(lambda: len(receiver.received()))
    await sender.send(_delivery("webhook", webhook_url=receiver.url("/ok")), accepted)
    assert accepted.calls == [1]
    receiver.status["/busy"] = 503
    refused = Acceptances(lambda: len(receiver.received()))
    with pytest.raises(SendFailure):
        await sender.send(_delivery("webhook", webhook_url=receiver.url("/busy")), refused)
    await sender.close()
    assert refused.calls == []
