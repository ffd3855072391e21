"""Webhooks never reach the internal network: hostile URLs are refused before any name is
resolved or any connection made, names are resolved once and every address checked, the
connection goes to the address that was checked, and only the allow-list lifts a refusal.
Real HTTP receiver on loopback; resolvers are injected where real DNS cannot be relied on."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpcore
import pytest

from coop_runtime.netguard import NO_ALLOW, AllowList, IPAddress, parse_allow_list
from notifier.adapters.guarded_network import resolve
from notifier.adapters.webhook import HttpWebhookSender
from notifier.application.ports import Delivery, SendFailure
from notifier.application.render import Rendered
from notifier.domain.events import AlertKey, Introducer
from tests.conftest import EXAMPLES
from tests.notifier.support import HttpReceiver, derived_envelopes, make_rig

MASTER = "guard-master-secret"
HOSTILE = [
    ("https://10.0.0.5/hook", False),
    ("https://192.168.1.1/hook", False),
    ("https://169.254.169.254/latest/meta-data/", False),
    ("https://[fd00::1]/hook", False),
    ("https://100.64.0.1/hook", False),
    ("https://metadata.google.internal/", False),
    ("https://localhost:6443/", False),
    ("http://169.254.169.254/", True),
    ("https://user:pw@hooks.example.org/", False),
    ("https://2130706433/hook", False),
    ("https://[::ffff:169.254.169.254]/", False),
]


class RecordingNetwork(httpcore.AsyncNetworkBackend):
    """The real network, with every connection attempt recorded."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        return await self._real.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


class FakeDns:
    """Answers from a table, one answer per call in turn (the last one repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        turns = self.answers[host]
        answer = turns[min(len([h for h in self.asked if h == host]) - 1, len(turns) - 1)]
        return [ipaddress.ip_address(a) for a in answer]


def _noted() -> None:
    """The acceptance callback, for tests that do not look at it."""


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


def _delivery(url: str) -> Delivery:
    introducer = Introducer(
        introducer_id="int-guard", display_name="Guard", webhook_url=url, language="en"
    ).party()
    rendered = Rendered(subject="New commission", text="text\n", language="en")
    return Delivery(AlertKey("9:commission.accrued:x", "webhook"), introducer, rendered, {"kind": "x"})


def _sender(
    allow: AllowList = NO_ALLOW, *, allow_http: bool = False, dns: FakeDns | None = None
) -> tuple[HttpWebhookSender, RecordingNetwork]:
    network = RecordingNetwork()
    sender = HttpWebhookSender(
        master_secret=MASTER,
        timeout_s=5,
        allow_http=allow_http,
        per_host=2,
        allow=allow,
        resolver=resolve if dns is None else dns,
        network=network,
    )
    return sender, network


@pytest.mark.asyncio
@pytest.mark.parametrize(("url", "allow_http"), HOSTILE)
async def test_hostile_urls_are_refused_without_resolving_or_connecting(url: str, allow_http: bool) -> None:
    """Each internal or credentialed URL fails permanently with url_refused; no DNS query, no connection."""
    dns = FakeDns({})
    sender, network = _sender(allow_http=allow_http, dns=dns)
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery(url), _noted)
    await sender.close()
    assert (caught.value.reason, caught.value.permanent) == ("url_refused", True)
    assert dns.asked == [] and network.connects == []


@pytest.mark.asyncio
async def test_a_name_resolving_to_loopback_needs_its_addresses_allow_listed(receiver: HttpReceiver) -> None:
    """localhost allow-listed by name only: refused at resolution (loopback), nothing connected; with
    its addresses allow-listed too, the receiver gets the webhook."""
    url = f"http://localhost:{receiver.port}/hooks/local"
    sender, network = _sender(parse_allow_list("localhost"))
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery(url), _noted)
    await sender.close()
    assert (caught.value.reason, caught.value.permanent) == ("url_refused", True)
    assert "loopback" in caught.value.detail and network.connects == []
    assert receiver.received() == []

    sender, network = _sender(parse_allow_list("localhost,127.0.0.1,::1"))
    await sender.send(_delivery(url), _noted)
    await sender.close()
    assert len(receiver.received("/hooks/local")) == 1
    assert ("127.0.0.1", receiver.port) in network.connects


@pytest.mark.asyncio
async def test_the_connection_goes_to_the_address_that_was_checked(receiver: HttpReceiver) -> None:
    """A public-looking name resolving to a private address is refused unless allow-listed; when
    allowed, the connection goes to the checked address (the name itself is never resolved again:
    .example has no DNS), TLS/Host still carry the name; a later answer (rebinding) is checked anew."""
    name = "receiver.coop.example"
    url = f"http://{name}:{receiver.port}/hooks/rebind"
    private = FakeDns({name: [["10.0.0.5"]]})
    sender, network = _sender(dns=private, allow_http=True)
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery(url), _noted)
    await sender.close()
    assert caught.value.reason == "url_refused" and "10.0.0.5: private" in caught.value.detail
    assert network.connects == []

    rebinding = FakeDns({name: [["127.0.0.1"], ["10.0.0.5"]]})
    sender, network = _sender(parse_allow_list("127.0.0.1"), dns=rebinding, allow_http=True)
    await sender.send(_delivery(url), _noted)
    await sender.close()
    (hook,) = receiver.received("/hooks/rebind")
    assert hook.headers["Host"] == f"{name}:{receiver.port}"
    assert rebinding.asked == [name] and network.connects == [("127.0.0.1", receiver.port)]

    sender, network = _sender(parse_allow_list("127.0.0.1"), dns=rebinding, allow_http=True)
    with pytest.raises(SendFailure) as caught:  # the same name now answers a private address
        await sender.send(_delivery(url), _noted)
    await sender.close()
    assert caught.value.reason == "url_refused" and network.connects == []
    assert len(receiver.received("/hooks/rebind")) == 1


@pytest.mark.asyncio
async def test_one_refused_address_among_public_ones_refuses_the_host() -> None:
    """A name answering a public and a private address is refused; nothing is connected."""
    dns = FakeDns({"hooks.coop.example": [["8.8.8.8", "10.0.0.5"]]})
    sender, network = _sender(dns=dns)
    with pytest.raises(SendFailure) as caught:
        await sender.send(_delivery("https://hooks.coop.example/h"), _noted)
    await sender.close()
    assert caught.value.reason == "url_refused" and "10.0.0.5" in caught.value.detail
    assert network.connects == []


@pytest.mark.asyncio
async def test_a_refused_webhook_fails_at_once_and_the_email_still_goes(tmp_path: Path) -> None:
    """A metadata URL is failed with url_refused after one attempt and no back-off, the failure is
    published, and the same alert by e-mail is sent."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=5)
    sender, network = _sender()
    rig.deliverer.senders["webhook"] = sender
    lines = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    registration, *events = derived_envelopes(lines)[:2]
    hostile = registration.model_copy(
        update={"data": {**registration.data, "webhook_url": "https://169.254.169.254/latest/meta-data/"}}
    )
    await rig.feed([hostile, *events])
    await sender.close()
    assert [d.key.alert_id for d in rig.email.sent] == [events[0].id]
    ((_, notice),) = rig.publisher.notices
    assert (notice.channel, notice.reason, notice.attempts) == ("webhook", "url_refused", 1)
    assert rig.sleeps == [] and network.connects == []
    assert rig.observer.counts["failed:webhook:url_refused"] == 1
