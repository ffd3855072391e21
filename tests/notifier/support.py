"""Helpers for the notifier tests: realistic ledger events, a real SMTP server (aiosmtpd),
a real HTTP receiver, the notifier as a child process, and in-memory doubles."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller

from ledger.application.derive import Deriver
from ledger.bootstrap import build_ephemeral_ledger
from ledger.settings import Settings
from notifier.adapters.sent_journal import FileSentJournal, journal_directory
from notifier.adapters.store import SqliteAlertStore
from notifier.application.delivery import Deliverer
from notifier.application.digests import Digester, DigestPolicy
from notifier.application.ingest import Ingestor
from notifier.application.ports import Accepted, Delivery, FailureNotice, Sender, SendFailure
from notifier.application.render import Renderer
from notifier.application.resend import Resender
from notifier.domain.backoff import RetryPolicy
from notifier.domain.events import Channel, LedgerEnvelope
from tests.conftest import envelope
from tests.support.servers import VENV_BIN, free_port, wait_for

T = TypeVar("T")

# ledger events ---------------------------------------------------------------------------


def derived_envelopes(lines: list[str], *, webhook_allow_hosts: str = "") -> list[LedgerEnvelope]:
    """What the ledger would publish on ledger.out for these inbound lines (webhook URLs on
    the hosts allowed, e.g. a loopback receiver, pass the ledger's admission)."""
    settings = Settings(webhook_allow_hosts=webhook_allow_hosts) if webhook_allow_hosts else None
    ledger = build_ephemeral_ledger(settings=settings)
    outcomes = ledger.ingest(lines)
    assert all(o.status != "rejected" for o in outcomes), [o for o in outcomes if o.status == "rejected"]
    deriver = Deriver()
    out: list[LedgerEnvelope] = []
    for position, fact in enumerate(ledger.index.by_position, start=1):
        for event in deriver.advance(position, fact):
            out.append(
                LedgerEnvelope.model_validate(
                    {
                        "specversion": "1.0",
                        "id": event.id,
                        "source": "coop-ledger",
                        "type": event.type,
                        "datacontenttype": "application/json",
                        "subject": event.kind,
                        "ledgerposition": event.position,
                        "data": json.loads(json.dumps(event.data)),
                    }
                )
            )
    return out


def introducer_line(
    introducer_id: str,
    *,
    language: str = "en",
    email_addr: str | None = None,
    webhook_url: str | None = None,
    name: str | None = None,
) -> str:
    data: dict[str, Any] = {"introducer_id": introducer_id, "display_name": name or introducer_id.title()}
    if email_addr:
        data["email"] = email_addr
    if webhook_url:
        data["webhook_url"] = webhook_url
    data["language"] = language
    return envelope("introducer.registered", data, id=f"reg-{introducer_id}")


def introduction_lines(
    introducer_id: str,
    client_id: str,
    currency: str,
    net: str,
    *,
    paid: bool = False,
    donor: bool = False,
    tag: str = "",
) -> list[str]:
    """An introduction on 2025-03-03 and one invoice on 2025-03-11 (optionally paid)."""
    tag = tag or client_id
    lines = []
    if donor:
        lines.append(
            envelope(
                "introducer.eligibility_changed",
                {
                    "introducer_id": introducer_id,
                    "can_receive_commission": False,
                    "effective_date": "2025-01-01",
                },
                id=f"elig-{tag}",
            )
        )
    lines += [
        envelope(
            "introduction.recorded",
            {
                "introduction_id": f"intro-{tag}",
                "introducer_id": introducer_id,
                "client_id": client_id,
                "adviser_id": "adv-luc",
                "date": "2025-03-03",
            },
            id=f"intro-{tag}",
        ),
        envelope(
            "invoice.issued",
            {
                "invoice_id": f"inv-{tag}",
                "adviser_id": "adv-luc",
                "client_id": client_id,
                "issue_date": "2025-03-11",
                "currency": currency,
                "net_amount": net,
                "tax_amount": "0" if currency == "JPY" else "0.00",
            },
            id=f"inv-{tag}",
        ),
    ]
    if paid:
        lines.append(
            envelope(
                "payment.received",
                {"payment_id": f"pay-{tag}", "invoice_id": f"inv-{tag}", "date": "2025-04-10", "amount": net},
                id=f"pay-{tag}",
            )
        )
    return lines


# doubles --------------------------------------------------------------------------------


class FakeClock:
    """A settable, timezone-aware clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 11, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class FakeSender:
    """A channel that records deliveries; ``fail`` maps introducer ids to failures to raise
    (a count of failures before succeeding, or -1 for always)."""

    channel: Channel
    sent: list[Delivery] = field(default_factory=list)
    fail: dict[str, tuple[int, SendFailure]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0

    async def send(self, delivery: Delivery, accepted: Accepted) -> None:
        who = delivery.introducer.introducer_id
        self.attempts[who] = self.attempts.get(who, 0) + 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if who in self.fail:
            count, failure = self.fail[who]
            if count < 0 or self.attempts[who] <= count:
                raise failure
        self.sent.append(delivery)
        accepted()

    async def close(self) -> None:
        return None


@dataclass
class FakePublisher:
    notices: list[tuple[str, FailureNotice]] = field(default_factory=list)
    broken: bool = False

    async def publish(self, notice: FailureNotice, msg_id: str) -> None:
        if self.broken:
            raise ConnectionError("NATS is down")
        self.notices.append((msg_id, notice))


@dataclass
class CountingObserver:
    counts: dict[str, int] = field(default_factory=dict)

    def _add(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def sent(self, channel: Channel) -> None:
        self._add(f"sent:{channel}")

    def failed(self, channel: Channel, reason: str) -> None:
        self._add(f"failed:{channel}:{reason}")

    def retried(self, channel: Channel) -> None:
        self._add(f"retried:{channel}")

    def send_seconds(self, channel: Channel, seconds: float) -> None:
        self._add(f"timed:{channel}")

    def duplicate(self, channel: Channel) -> None:
        self._add(f"duplicate:{channel}")

    def event(self, kind: str, state: str) -> None:
        self._add(f"event:{state}")


# real servers ---------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    rcpt_tos: list[str]
    raw: bytes
    #: when the sink accepted it (wall clock, just before its 250 went out)
    at: float = 0.0

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def alert_id(self) -> str:
        return str(self.message["X-Coop-Alert-Id"])


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mails: list[ReceivedMail] = []
        self.reject: set[str] = set()
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reject:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.mails.append(
                ReceivedMail(list(envelope.rcpt_tos), bytes(envelope.original_content), time.time())
            )
        return "250 Message accepted for delivery"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self.mails)


@dataclass
class ReceivedHook:
    path: str
    headers: dict[str, str]
    body: bytes
    #: when the receiver accepted it (wall clock, just before its 2xx went out)
    at: float = 0.0
    #: when its 2xx had been written to the connection (wall clock)
    written_at: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """A real HTTP server on 127.0.0.1 (a thread) that records POSTs; ``status`` maps a path
    to the status it answers (200 by default)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hooks: list[ReceivedHook] = []
        self.status: dict[str, int] = {}
        self.attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook = ReceivedHook(self.path, dict(self.headers.items()), body, time.time())
                with receiver._lock:
                    receiver.attempts[self.path] = receiver.attempts.get(self.path, 0) + 1
                    code = receiver.status.get(self.path, 200)
                    if 200 <= code < 300:
                        receiver.hooks.append(hook)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                hook.written_at = time.time()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self, path: str | None = None) -> list[ReceivedHook]:
        with self._lock:
            return [h for h in self.hooks if path is None or h.path == path]


@dataclass
class NotifierProcess:
    """``notifier serve`` as a real child process."""

    nats_url: str
    data_dir: Path
    logs: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "NATS_URL": self.nats_url,
            "NOTIFIER_DATA_DIR": str(self.data_dir),
            "NOTIFIER_HTTP_PORT": str(self.http_port),
            "NOTIFIER_LOG_FORMAT": "json",
            "NOTIFIER_METRICS_POLL_S": "0.2",
            "NOTIFIER_FETCH_TIMEOUT_S": "1",
            "NOTIFIER_STREAM_WAIT_S": "0.3",
            "NOTIFIER_RETRY_DELAY_S": "0.3",
            **self.env_extra,
            **extra,
        }

    def start(self, wait_ready: bool = True, **extra: str) -> NotifierProcess:
        self.starts += 1
        log = (self.logs / f"notifier-{self.http_port}-{self.starts}.log").open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "notifier"), "serve"], env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT
        )
        if wait_ready:
            wait_for(lambda: self.get_json("/readyz")["ready"], 60, what="notifier /readyz")
        return self

    def get_json(self, path: str) -> Any:
        import urllib.error
        import urllib.request

        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"notifier exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def run_cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(VENV_BIN / "notifier"), *args],
            env=self.env(**extra),
            capture_output=True,
            timeout=120,
            check=False,
        )


@contextlib.contextmanager
def running(*servers: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()


# the use cases on a real SQLite store, with doubles for the outside world ---------------------


@dataclass
class Rig:
    """Ingest, delivery, digests and resend on a real SQLite store with fake channels,
    publisher, clock and sleep."""

    ingestor: Ingestor
    deliverer: Deliverer
    digester: Digester
    resender: Resender
    store: SqliteAlertStore
    journal: FileSentJournal
    email: FakeSender
    webhook: FakeSender
    publisher: FakePublisher
    observer: CountingObserver
    clock: FakeClock
    sleeps: list[float]

    async def feed(self, envelopes: list[LedgerEnvelope]) -> None:
        """What the consumer does per message: ingest, then settle what it returned."""
        for env in envelopes:
            await self.deliverer.deliver_all(await self.ingestor.ingest(env))


async def inline(fn: Callable[..., T], /, *args: Any) -> T:
    """A runner that calls on the event loop (the tests' store is used from one thread)."""
    return fn(*args)


def make_rig(
    path: Path,
    *,
    max_attempts: int = 3,
    digest_mode: Literal["off", "daily"] = "off",
    digest_introducers: frozenset[str] = frozenset(),
    real_sleep: bool = False,
) -> Rig:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if real_sleep:
            await asyncio.sleep(seconds)

    store = SqliteAlertStore(path)
    journal = FileSentJournal(journal_directory(path))
    email_sender, webhook_sender = FakeSender("email"), FakeSender("webhook")
    publisher, observer, clock = FakePublisher(), CountingObserver(), FakeClock()
    senders: dict[Channel, Sender] = {"email": email_sender, "webhook": webhook_sender}
    digest = DigestPolicy(
        mode=digest_mode, introducers=digest_introducers, hour=7, zone=ZoneInfo("Europe/Zurich")
    )
    ingestor = Ingestor(
        store=store, observer=observer, digest=digest, channels=senders, clock=clock, run=inline
    )
    deliverer = Deliverer(
        store=store,
        renderer=Renderer(),
        senders=senders,
        publisher=publisher,
        journal=journal,
        observer=observer,
        policy=RetryPolicy(max_attempts=max_attempts, base_s=0.01, max_s=0.04, jitter=0.5),
        clock=clock,
        run=inline,
        render=inline,
        send_concurrency=4,
        sleep=fake_sleep,
    )
    digester = Digester(store=store, policy=digest, deliverer=deliverer, clock=clock, run=inline)
    resender = Resender(store=store, deliverer=deliverer, clock=clock, run=inline)
    return Rig(
        ingestor,
        deliverer,
        digester,
        resender,
        store,
        journal,
        email_sender,
        webhook_sender,
        publisher,
        observer,
        clock,
        sleeps,
    )
