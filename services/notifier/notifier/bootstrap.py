"""The one wiring module: builds the notifier from settings. Nothing connects at import
time; the app connects to NATS when it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from zoneinfo import ZoneInfo

import structlog
from faststream.asgi import AsgiFastStream

from coop_runtime.broker import build_broker
from notifier.adapters.email import SmtpEmailSender
from notifier.adapters.metrics import NotifierMetrics
from notifier.adapters.pdf_fetcher import LedgerPdfFetcher
from notifier.adapters.runner import ThreadRunner
from notifier.adapters.sent_journal import FileSentJournal, journal_directory, recover_journals
from notifier.adapters.service import NotifierService, build_asgi
from notifier.adapters.store import SqliteAlertStore
from notifier.adapters.webhook import HttpWebhookSender
from notifier.application.delivery import Deliverer, record_accepted
from notifier.application.digests import Digester, DigestPolicy
from notifier.application.ingest import Ingestor
from notifier.application.ports import Clock, FailurePublisher, Sender
from notifier.application.render import Renderer
from notifier.application.resend import Resender
from notifier.domain.backoff import RetryPolicy
from notifier.domain.events import Channel
from notifier.settings import NotifierSettings

__all__ = ["Core", "build_app", "build_core", "build_senders", "utc_now"]

log = structlog.get_logger("notifier.bootstrap")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Core:
    """The notifier's use cases and what they own (closed by :meth:`close`)."""

    ingestor: Ingestor
    deliverer: Deliverer
    digester: Digester
    resender: Resender
    store: SqliteAlertStore
    journal: FileSentJournal
    store_runner: ThreadRunner
    render_runner: ThreadRunner
    senders: dict[Channel, Sender]
    fetcher: LedgerPdfFetcher
    metrics: NotifierMetrics

    async def close(self) -> None:
        """Close the channels and the PDF fetcher, then the threads, then the store and the
        journal."""
        closables: list[Sender | LedgerPdfFetcher] = [*self.senders.values(), self.fetcher]
        for closable in closables:
            try:
                await closable.close()
            except Exception as exc:  # closing is best effort
                log.warning("channel did not close cleanly", error=repr(exc)[:300])
        self.render_runner.close()
        self.store_runner.close()
        self.store.close()
        self.journal.close()


def build_senders(settings: NotifierSettings, clock: Clock) -> dict[Channel, Sender]:
    """The enabled channels."""
    senders: dict[Channel, Sender] = {}
    if settings.email_enabled:
        senders["email"] = SmtpEmailSender(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.resolved_smtp_security(),
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            sender=settings.smtp_from,
            timeout_s=settings.smtp_timeout_s,
            validate_certs=settings.smtp_validate_certs,
            clock=clock,
        )
    if settings.webhook_enabled:
        senders["webhook"] = HttpWebhookSender(
            master_secret=settings.webhook_secret.get_secret_value(),
            timeout_s=settings.webhook_timeout_s,
            allow_http=settings.webhook_allow_http,
            allow=settings.webhook_allow_list(),
            per_host=settings.webhook_per_host,
        )
    return senders


def build_core(settings: NotifierSettings, publisher: FailurePublisher, clock: Clock = utc_now) -> Core:
    """Store, renderer, channels and use cases from settings (used by serve and the CLI)."""
    store_path = settings.resolved_store_path()
    store = SqliteAlertStore(store_path)
    journal_dir = journal_directory(store_path)
    recover_journals(journal_dir, partial(record_accepted, store))  # a crashed run's last sends
    journal = FileSentJournal(journal_dir)
    store_runner = ThreadRunner("notifier-store")
    render_runner = ThreadRunner("notifier-render")
    metrics = NotifierMetrics()
    senders = build_senders(settings, clock)
    digest = DigestPolicy(
        mode=settings.digest_mode,
        introducers=settings.digest_introducer_ids(),
        hour=settings.digest_hour,
        zone=ZoneInfo(settings.timezone),
    )
    ingestor = Ingestor(
        store=store, observer=metrics, digest=digest, channels=senders, clock=clock, run=store_runner
    )
    renderer = Renderer(zone=ZoneInfo(settings.timezone))
    renderer.warm()
    fetcher = LedgerPdfFetcher(
        base_url=settings.ledger_url,
        public_base_url=settings.ledger_public_url or settings.ledger_url,
        timeout_s=settings.ledger_timeout_s,
        concurrency=settings.ledger_fetch_concurrency,
    )
    deliverer = Deliverer(
        store=store,
        renderer=renderer,
        senders=senders,
        publisher=publisher,
        journal=journal,
        observer=metrics,
        policy=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_s=settings.backoff_base_s,
            max_s=settings.backoff_max_s,
            jitter=settings.backoff_jitter,
        ),
        clock=clock,
        run=store_runner,
        render=render_runner,
        send_concurrency=settings.send_concurrency,
        fetcher=fetcher,
    )
    digester = Digester(store=store, policy=digest, deliverer=deliverer, clock=clock, run=store_runner)
    resender = Resender(store=store, deliverer=deliverer, clock=clock, run=store_runner)
    return Core(
        ingestor=ingestor,
        deliverer=deliverer,
        digester=digester,
        resender=resender,
        store=store,
        journal=journal,
        store_runner=store_runner,
        render_runner=render_runner,
        senders=senders,
        fetcher=fetcher,
        metrics=metrics,
    )


def build_app(settings: NotifierSettings) -> tuple[AsgiFastStream, NotifierService]:
    """``notifier serve``: the FastStream app and the service behind it."""
    from notifier.adapters.jetstream import NatsFailurePublisher

    broker = build_broker(settings, name="notifier", graceful_timeout_s=settings.graceful_timeout_s)
    publisher = NatsFailurePublisher(lambda: broker.config.connection_state.stream)
    core = build_core(settings, publisher)
    service = NotifierService(
        settings=settings,
        ingestor=core.ingestor,
        deliverer=core.deliverer,
        digester=core.digester,
        store=core.store,
        run=core.store_runner,
        metrics=core.metrics,
        close=core.close,
    )
    return build_asgi(settings, service, broker), service
