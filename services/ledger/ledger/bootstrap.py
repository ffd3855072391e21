"""The one wiring module: builds the ledger (and ``ledger serve``'s app) from settings.
Nothing connects at import time; the app connects to NATS when it starts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from coop_runtime.netguard import NO_ALLOW
from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.heap import DEFAULT_FREEZE_EVERY_FACTS, HeapFreezer
from ledger.adapters.keyring import AesGcmKeyring, MasterKeys
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.admission import webhook_admission
from ledger.application.ledger import Ledger
from ledger.application.ports import FactStore
from ledger.application.sealing import Sealer
from ledger.settings import Settings

if TYPE_CHECKING:  # the serving stack (FastStream, HTTP) is imported by build_app only, so
    # the offline commands (report, ingest, audit, ...) start without it
    from faststream.nats import NatsBroker
    from faststream.specification import AsyncAPI

    from coop_runtime.http_guard import HttpGuard
    from ledger.adapters.metrics import LedgerMetrics
    from ledger.adapters.service import LedgerService
    from ledger.application.queries import View

__all__ = [
    "LedgerApp",
    "all_schema_files",
    "build_app",
    "build_ephemeral_ledger",
    "build_keyring",
    "build_ledger",
    "build_store",
    "utc_now",
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_store(
    settings: Settings, metrics: LedgerMetrics | None = None, *, create: bool = True
) -> EventSourcedFactStore:
    """The configured store; without ``create``, its tables are not created (a second reader
    of a store already opened)."""
    on_commit = metrics.commit_seconds.observe if metrics is not None else None
    return EventSourcedFactStore(settings.eventsourcing_env(), on_commit=on_commit, create=create)


def build_keyring(settings: Settings, store: FactStore) -> AesGcmKeyring:
    """The persons' data keys in ``store``, wrapped by the configured master keys; raises
    :class:`KeyringError` when those do not fit the store (missing or wrong key)."""
    keyring = AesGcmKeyring(store, MasterKeys.parse(settings.master_keys_text()))
    keyring.check()
    return keyring


def build_ledger(settings: Settings, store: EventSourcedFactStore | None = None) -> Ledger:
    """A ledger on the configured store, or on ``store`` (not yet caught up: call
    ``catch_up``); its long-lived state is frozen out of the garbage collector's way every
    ``LEDGER_HEAP_FREEZE_EVERY_FACTS`` facts. Personal fields are sealed with the persons'
    data keys (:func:`build_keyring`)."""
    freezer = HeapFreezer(settings.heap_freeze_every_facts)
    admission = webhook_admission(settings.webhook_allow_list())
    store = store or build_store(settings)
    return Ledger(
        store,
        utc_now,
        on_growth=freezer.note,
        admission=admission,
        sealer=Sealer(build_keyring(settings, store)),
    )


def build_ephemeral_ledger(
    freeze_every_facts: int = DEFAULT_FREEZE_EVERY_FACTS, settings: Settings | None = None
) -> Ledger:
    """A ledger on an in-process store, for replaying a file (nothing is kept); with
    ``settings``, their admission policy applies as in the service."""
    admission = webhook_admission(settings.webhook_allow_list() if settings is not None else NO_ALLOW)
    return Ledger(
        MemoryFactStore(), utc_now, on_growth=HeapFreezer(freeze_every_facts).note, admission=admission
    )


def _register_nats_queries(broker: NatsBroker, service: LedgerService) -> None:
    from faststream import Context

    from ledger.adapters.query_api import nats_answer

    def max_payload() -> int:
        return int(broker.config.connection_state.connection.max_payload or 1024 * 1024)

    async def reply(msg: Any, view: View) -> bytes:
        return await nats_answer(service.queries, msg.body, view, max_payload())

    @broker.subscriber(
        "ledger.query.report",
        title="ledger.query.report",
        description="Request/reply: the report; JSON body {as_of?, at_position?, introducer_id?, "
        "client_id?}. An answer over the max payload is an error {reason: too_large} naming GET /report.",
    )
    async def query_report(msg: Any = Context("message")) -> bytes:
        return await reply(msg, "report")

    @broker.subscriber(
        "ledger.query.introducer",
        title="ledger.query.introducer",
        description="Request/reply: one introducer's view; body {introducer_id, as_of?, at_position?}.",
    )
    async def query_introducer(msg: Any = Context("message")) -> bytes:
        return await reply(msg, "introducer")

    @broker.subscriber(
        "ledger.query.period",
        title="ledger.query.period",
        description="Request/reply: a month's statement (rules R9), frozen when closed, provisional for the "
        "next open month; body {period: YYYY-MM}; another month: error {reason: not_available}.",
    )
    async def query_period(msg: Any = Context("message")) -> bytes:
        return await reply(msg, "period")

    @broker.subscriber(
        "ledger.query.client",
        title="ledger.query.client",
        description="Request/reply: one client's view; body {client_id, as_of?, at_position?}.",
    )
    async def query_client(msg: Any = Context("message")) -> bytes:
        return await reply(msg, "client")


def _declare_publishers(broker: NatsBroker) -> None:
    """The subjects the ledger publishes, for the AsyncAPI document. The service opens its
    streams itself (configured, retried): FastStream must not declare them at connect time."""
    from faststream.nats import JStream

    from ledger.adapters.consumer import REJECTED_SUBJECT
    from ledger.application.outbound import OUTBOUND_MODELS

    out_stream = JStream("LEDGER_OUT", declare=False)
    for kind, model in OUTBOUND_MODELS.items():
        broker.publisher(
            f"ledger.out.{kind}",
            stream=out_stream,
            title=f"ledger.out.{kind}",
            schema=model,
            description=f"Derived event coop.ledger.out.{kind}.v1 (CloudEvents; data as this schema).",
        )
    broker.publisher(
        REJECTED_SUBJECT,
        stream=JStream("LEDGER_REJECTED", declare=False),
        title=REJECTED_SUBJECT,
        description="Rejected inbound messages: the original (cut to fit, with its size and SHA-256), "
        "reason code, readable message; Nats-Msg-Id rejected:<stream sequence of the rejected message>.",
    )


def _asyncapi(broker: NatsBroker) -> AsyncAPI:
    from faststream.specification import AsyncAPI

    from ledger import __version__

    return AsyncAPI(
        broker,
        title="Commission ledger",
        version=__version__,
        description="Inbound facts, derived events, rejections and report queries.",
    )


@dataclass(frozen=True, slots=True)
class LedgerApp:
    """``ledger serve`` as built: the ASGI app (FastStream behind the HTTP guard), the
    service behind it, and its AsyncAPI document."""

    asgi: HttpGuard
    service: LedgerService
    asyncapi: dict[str, Any]


def build_app(settings: Settings | None = None) -> LedgerApp:
    """``ledger serve``: the FastStream app (behind the HTTP guard) and the service."""
    from faststream.asgi import AsgiFastStream, AsgiResponse, get
    from faststream.asgi.types import ASGIApp, Scope

    from coop_runtime.broker import build_broker
    from coop_runtime.http import json_response, operations_routes
    from coop_runtime.http_guard import HttpGuard
    from ledger import __version__
    from ledger.adapters.asyncapi import complete_asyncapi
    from ledger.adapters.docs import asyncapi_page, openapi_document, openapi_page
    from ledger.adapters.metrics import LedgerMetrics
    from ledger.adapters.query_api import http_routes, statement_pages
    from ledger.adapters.service import LedgerService

    settings = settings or Settings()
    metrics = LedgerMetrics()
    store = build_store(settings, metrics)
    service = LedgerService(settings, store, build_ledger(settings, store), metrics)
    broker = build_broker(settings, name="ledger", graceful_timeout_s=settings.graceful_timeout_s)
    _register_nats_queries(broker, service)
    _declare_publishers(broker)
    specification = _asyncapi(broker)
    asyncapi_doc = complete_asyncapi(specification.to_specification().to_jsonable())
    openapi_doc = openapi_document(__version__)
    asyncapi_html, openapi_html = asyncapi_page(asyncapi_doc), openapi_page(openapi_doc)

    def document(body: Any) -> ASGIApp:
        @get
        async def handler(scope: Scope) -> AsgiResponse:
            return json_response(body)

        return handler

    def page(html: str) -> ASGIApp:
        @get
        async def handler(scope: Scope) -> AsgiResponse:
            return AsgiResponse(
                html.encode(), status_code=200, headers={"Content-Type": "text/html; charset=utf-8"}
            )

        return handler

    routes: list[tuple[str, ASGIApp]] = [
        *operations_routes(metrics.registry, service.readiness),
        *http_routes(service.queries),
        ("/asyncapi.json", document(asyncapi_doc)),
        ("/asyncapi", page(asyncapi_html)),
        ("/openapi.json", document(openapi_doc)),
        ("/docs", page(openapi_html)),
    ]

    async def after_startup() -> None:
        await service.start(broker)

    async def on_shutdown() -> None:
        await service.stop_consuming()

    async def after_shutdown() -> None:
        await service.close()

    app = AsgiFastStream(
        broker,
        asgi_routes=routes,
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
        specification=specification,
    )
    pages = statement_pages(service.queries, service.link_key, utc_now)
    guard = HttpGuard(app, [path for path, _ in routes], prefixes={"/statements/": pages})
    return LedgerApp(guard, service, asyncapi_doc)


def all_schema_files() -> dict[str, dict[str, Any]]:
    """Every file of ``schemas/``: JSON Schema of each message and the AsyncAPI document
    (of the app ``ledger serve`` builds, on a throwaway in-memory store)."""
    from ledger.application.schemas import generate_schemas

    files = generate_schemas()
    app = build_app(Settings(store_url="memory:", nats_url="nats://127.0.0.1:4222"))
    try:
        files["asyncapi.json"] = app.asyncapi
    finally:
        app.service.store.close()
    return files
