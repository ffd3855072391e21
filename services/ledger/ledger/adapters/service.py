"""``ledger serve``'s running state: start-up, the supervised loops, readiness, shut-down.

The work itself is in :mod:`~ledger.adapters.consumer` (inbound), :mod:`~ledger.adapters.outbox`
(derived events, checkpoints) and :mod:`~ledger.adapters.query_api` (reads); this module
starts them in order and reports whether the whole is ready. ``bootstrap.build_app`` wires
it into the FastStream app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from coop_runtime.retry import retry_until
from coop_runtime.streams import open_stream, stream_config
from ledger.adapters.consumer import InboundConsumer
from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.heap import release_free_memory
from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.keyring import AesGcmKeyring
from ledger.adapters.metrics import LedgerMetrics
from ledger.adapters.outbox import CheckpointMismatchError, Outbox
from ledger.adapters.query_api import QueryService
from ledger.adapters.query_worker import MASTER_KEYS_ENTRY, SNAPSHOT_DIR_ENTRY
from ledger.adapters.snapshot_files import ForkedSnapshots, SnapshotFiles, code_fingerprint
from ledger.adapters.stream_scrub import MAX_NEEDLES, ack_floor, scrub_streams
from ledger.application.ledger import Ledger
from ledger.application.links import StatementLinks
from ledger.application.pipeline import OUTBOX, Pipeline
from ledger.application.snapshots import SnapshotError, restore
from ledger.settings import Settings

__all__ = ["STREAMS", "LedgerService"]

T = TypeVar("T")

log = structlog.get_logger("ledger.service")

#: The streams the ledger owns, opened in this order (LEDGER_IN last: nothing is consumed
#: before its rejections and derived events have somewhere to go).
STREAMS = (
    ("LEDGER_OUT", ["ledger.out.>"]),
    ("LEDGER_REJECTED", ["ledger.rejected"]),
    ("LEDGER_IN", ["ledger.in.>"]),
)


class LedgerService:
    """The running service: the ledger, its store, the consumer, the outbox, the queries."""

    def __init__(
        self, settings: Settings, store: EventSourcedFactStore, ledger: Ledger, metrics: LedgerMetrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.ledger = ledger
        self.metrics = metrics
        self.pipeline = Pipeline(ledger, store)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-store")
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.broker: NatsBroker | None = None
        self.consumer_pending = 0
        self.ready_reason = "starting"
        self._publisher: PipelinedPublisher | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._js: JetStreamContext | None = None
        self.consumer = InboundConsumer(
            pipeline=self.pipeline,
            run_store=self.run,
            publisher=self.publisher,
            metrics=metrics,
            retry_delay_s=settings.retry_delay_s,
            publish_timeout_s=settings.publish_timeout_s,
            max_payload=self._max_payload,
            on_stored=self._stored,
        )
        self.outbox = Outbox(
            pipeline=self.pipeline,
            run_store=self.run,
            publisher=self.publisher,
            metrics=metrics,
            publish_timeout_s=settings.publish_timeout_s,
            retry_delay_s=settings.retry_delay_s,
            checkpoint_interval_s=settings.checkpoint_interval_s,
            checkpoint_every_facts=settings.checkpoint_every_facts,
            on_progress=self.update_gauges,
            scrub=self._scrub_streams,
            after_chunk=self._maybe_snapshot,
        )
        #: Snapshots of the in-memory state (set up at start-up, once the store is open).
        self.snapshots: ForkedSnapshots | None = None
        self.queries = QueryService(
            ledger,
            metrics,
            workers=settings.query_workers,
            max_concurrent=settings.max_concurrent_queries,
            token=settings.query_token,
            worker_env=None
            if settings.resolved_store_url() == "memory:"
            else {
                **settings.eventsourcing_env(),
                MASTER_KEYS_ENTRY: settings.master_keys_text(),
                **(
                    {SNAPSHOT_DIR_ENTRY: str(settings.snapshot_folder())}
                    if settings.snapshot_every_facts
                    else {}
                ),
            },
            auditor_token=settings.auditor_token,
        )

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the single store thread (eventsourcing has no async API)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    def link_key(self) -> bytes | None:
        """The key of the statement links (None until the store is open)."""
        links = self.pipeline.links
        return None if links is None else links.key

    def publisher(self) -> PipelinedPublisher:
        assert self._publisher is not None, "not started"
        return self._publisher

    def _max_payload(self) -> int:
        assert self.broker is not None
        return int(self.broker.config.connection_state.connection.max_payload or 1024 * 1024)

    @property
    def published(self) -> int:
        return self.pipeline.published

    # start-up and shut-down ------------------------------------------------------

    def _recover(self) -> None:
        self.pipeline.links = StatementLinks(
            self.settings.public_url,
            self.store.deployment_key("statement-links"),
            self.settings.statement_link_ttl_days,
        )
        loaded = self._load_snapshot()
        caught = self.pipeline.recover()
        log.info(
            "store recovered",
            facts=caught,
            from_snapshot=loaded,
            published_position=self.published,
            head_position=self.ledger.head_position,
            head_hash=self.ledger.head_hash,
        )

        self._maybe_snapshot()

    def _load_snapshot(self) -> int:
        """Load the newest snapshot that holds (its MAC, its code, the log at its position);
        a refused one is counted and logged, and the log is read from the start instead.
        Returns the position loaded (0: none)."""
        every = self.settings.snapshot_every_facts
        if every == 0 or self.settings.resolved_store_url() == "memory:":
            return 0
        keyring = self.ledger.sealer.keyring
        if not isinstance(keyring, AesGcmKeyring):
            return 0
        try:  # MAC'd under a key from the master key: one who reads the store cannot forge one
            files = SnapshotFiles(
                self.settings.snapshot_folder(), keyring.derived_key("snapshots"), code_fingerprint()
            )
            files.clear_scratch()
        except Exception as exc:  # a cache: its folder failing stops nothing
            log.warning(
                "snapshots off: their folder cannot be used", error=f"{type(exc).__name__}: {exc}"[:300]
            )
            return 0
        self.snapshots = ForkedSnapshots(
            files, every, self._snapshot_done, timeout_s=self.settings.snapshot_timeout_s
        )
        for path in files.paths():
            started = time.monotonic()
            try:
                position = self._restore(files, path)
            except Exception as exc:
                reason = exc.reason if isinstance(exc, SnapshotError) else "failed"
                self.metrics.snapshots_refused.labels(reason).inc()
                log.warning(
                    "snapshot refused: reading the log instead",
                    snapshot=path.name,
                    reason=reason,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                continue
            seconds = time.monotonic() - started
            self.metrics.snapshot_load_seconds.set(seconds)
            self.metrics.snapshot_position.set(position)
            self.snapshots.last_position = position
            log.info("snapshot loaded", snapshot=path.name, position=position, seconds=round(seconds, 3))
            return position
        return 0

    def _restore(self, files: SnapshotFiles, path: Path) -> int:
        """Read, check and load one snapshot (all or nothing); returns its position."""
        gc.disable()  # millions of objects unpickled: no collection pass among them
        try:
            snapshot = files.read(path)
            restore(
                self.pipeline,
                snapshot.header,
                snapshot.body,
                published=self.store.published_position(OUTBOX),
            )
            gc.freeze()  # what was loaded is long-lived state (see adapters/heap.py): no scan of it
        finally:
            gc.enable()
        position = snapshot.header.position
        del snapshot
        release_free_memory()  # the unpickler's transient objects leave holes among the kept ones
        return position

    def _maybe_snapshot(self) -> None:
        """On the store thread, between two steps: fork a snapshot when one is due. Never
        raises: a snapshot is a cache, its failure stops neither start-up nor publishing."""
        if self.snapshots is None or not self.snapshots.due(self.ledger.head_position):
            return
        try:
            self.snapshots.take(self.pipeline)
        except Exception as exc:
            self.metrics.snapshots.labels("failed").inc()
            log.warning("snapshot not taken", error=f"{type(exc).__name__}: {exc}"[:300])

    def _snapshot_done(self, outcome: str, position: int, seconds: float) -> None:
        self.metrics.snapshots.labels(outcome).inc()
        if outcome == "written":
            self.metrics.snapshot_position.set(position)
            self.metrics.snapshot_write_seconds.set(seconds)
            log.info("snapshot written", position=position, seconds=round(seconds, 3))
        else:
            log.warning("snapshot not written", position=position, outcome=outcome)

    async def start(self, broker: NatsBroker) -> None:
        """Recover the store, then open the streams, check the published checkpoint and
        start the loops in the background: HTTP (/healthz, /readyz with the reason)
        answers while JetStream is not there yet."""
        self.broker = broker
        await self.run(self._recover)
        self.update_gauges()
        self.ready_reason = "opening the JetStream streams"
        self._tasks = [asyncio.create_task(self._open_then_run(broker), name="open")]

    def _waiting(self, reason: str) -> None:
        self.ready_reason = reason

    async def _scrub_streams(self, needles: list[str]) -> None:
        """Delete, from the streams the ledger owns, every message holding one of an erased
        person's values (LEDGER_IN only up to what the ledger has acknowledged)."""
        js = self._js
        if js is None:
            raise RuntimeError("the streams are not open yet")
        floor = await ack_floor(js, "LEDGER_IN", self.settings.consumer_name)
        streams = [("LEDGER_OUT", None), ("LEDGER_REJECTED", None), ("LEDGER_IN", floor)]
        for start in range(0, len(needles), MAX_NEEDLES):
            group = needles[start : start + MAX_NEEDLES]
            for result in await scrub_streams(js, streams, group, timeout_s=self.settings.publish_timeout_s):
                self.metrics.scrubbed_messages.labels(result.stream).inc(result.deleted)
                log.info(
                    "stream scrubbed",
                    stream=result.stream,
                    scanned=result.scanned,
                    deleted=result.deleted,
                    left_unacked=result.skipped_unacked,
                )

    async def _open_then_run(self, broker: NatsBroker) -> None:
        js = broker.config.connection_state.stream
        self._js = js
        for name, subjects in STREAMS:
            config = stream_config(
                name, subjects, self.settings.duplicate_window_s, self.settings.stream_replicas
            )
            if not await open_stream(
                js,
                config,
                retry_delay_s=self.settings.retry_delay_s,
                stopping=self._stopping,
                on_wait=self._waiting,
            ):
                return
        if not await self._checkpoint_holds(js):
            return
        subscription = await self._subscribe(js)
        if subscription is None:
            return
        self._subscription = subscription
        self._publisher = PipelinedPublisher(broker.config.connection_state.connection)
        await self._publisher.start()

        async def fetch() -> list[Msg]:
            return await subscription.fetch(self.settings.batch_size, timeout=self.settings.fetch_timeout_s)

        self._tasks += [
            asyncio.create_task(self.consumer.run(fetch, self._stopping), name="consume"),
            asyncio.create_task(self.outbox.run(self._stopping), name="outbox"),
            asyncio.create_task(self.outbox.run_checkpoints(self._stopping), name="checkpoint"),
            asyncio.create_task(self._watch_consumer(), name="consumer-watch"),
        ]
        self.ready_reason = ""
        log.info(
            "ledger ready",
            http=f"http://{self.settings.http_host}:{self.settings.http_port}",
            head_position=self.ledger.head_position,
            consumer=self.settings.consumer_name,
        )

    async def _checkpoint_holds(self, js: JetStreamContext) -> bool:
        """The stored chain against the last published checkpoint (retried while JetStream
        does not answer). On a mismatch the service stays up, not ready, consuming nothing."""
        if not self.settings.verify_checkpoint:
            log.warning("checking the stored chain against the published checkpoint is turned off")
            return True
        try:
            checked = await self._verify_with_retry(js)
        except CheckpointMismatchError as exc:
            self.metrics.checkpoint_mismatch.set(1)
            self.ready_reason = f"{exc}; run `ledger audit verify --published`"
            log.error(
                "the stored history does not match the published checkpoint; not consuming",
                error=str(exc),
                head_position=self.ledger.head_position,
            )
            return False
        self.metrics.checkpoint_mismatch.set(0)
        if checked is not None:
            log.info("stored chain matches the published checkpoint", position=checked.position)
        return not self._stopping.is_set()

    async def _verify_with_retry(self, js: JetStreamContext) -> Any:
        """:meth:`Outbox.verify_checkpoint` until JetStream answers; a mismatch is raised."""
        delay_s = self.settings.retry_delay_s
        while not self._stopping.is_set():
            try:
                return await self.outbox.verify_checkpoint(js)
            except CheckpointMismatchError:
                raise
            except Exception as exc:
                self.ready_reason = f"cannot read the last published checkpoint: {type(exc).__name__}: {exc}"[
                    :300
                ]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay_s)
                delay_s = min(delay_s * 2, 10.0)
        return None

    async def _subscribe(self, js: JetStreamContext) -> JetStreamContext.PullSubscription | None:
        """The durable pull consumer on ``LEDGER_IN``, retried like the streams; None if
        the service stops first."""

        async def attempt() -> JetStreamContext.PullSubscription:
            return await js.pull_subscribe(
                "ledger.in.>",
                durable=self.settings.consumer_name,
                stream="LEDGER_IN",
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.settings.ack_wait_s,
                    max_ack_pending=-1,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )

        return await retry_until(
            attempt,
            what="create the consumer",
            retry_delay_s=self.settings.retry_delay_s,
            stopping=self._stopping,
            on_wait=self._waiting,
        )

    async def stop_consuming(self) -> None:
        """First step of a graceful stop (NATS still connected): take no new batch, finish
        and ack the batch in hand, publish what it derived."""
        self.ready_reason = "stopping"
        self._stopping.set()
        self.outbox.wake.set()
        in_hand = self.consumer.in_hand
        if in_hand is not None and not in_hand.done():
            log.info("finishing the batch in hand before stopping")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(in_hand), self.settings.graceful_timeout_s)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._subscription is not None:
            # a pending fetch would otherwise hold the connection's drain for its full timeout
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.outbox.drain(), self.settings.graceful_timeout_s)

    async def close(self) -> None:
        """Last step of a graceful stop: release the store."""
        self.queries.close()
        self._worker.shutdown(wait=True)
        if self.snapshots is not None:
            self.snapshots.stop()
        self.store.close()
        log.info("ledger stopped", head_position=self.ledger.head_position, published_position=self.published)

    # running -------------------------------------------------------------------------

    def _stored(self) -> None:
        self.update_gauges()
        self.outbox.wake.set()

    async def _watch_consumer(self) -> None:
        while not self._stopping.is_set():
            try:
                assert self.broker is not None
                js = self.broker.config.connection_state.stream
                info = await js.consumer_info("LEDGER_IN", self.settings.consumer_name)
                self.consumer_pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                self.metrics.consumer_pending.set(self.consumer_pending)
            except Exception as exc:
                log.debug("consumer info unavailable", error=str(exc))
            await asyncio.sleep(self.settings.metrics_poll_s)

    def update_gauges(self) -> None:
        head = self.ledger.index.head
        self.metrics.stored_position.set(head.position)
        self.metrics.published_position.set(self.published)
        self.metrics.publish_lag.set(head.position - self.published)

    async def readiness(self) -> tuple[bool, str]:
        """Ready, or the first reason it is not (each check in turn)."""
        for check in (
            self._started,
            self._consuming,
            self._connected,
            self._store_answers,
            self._lag_bounded,
        ):
            reason = await check()
            if reason is not None:
                return False, reason
        return True, "ready"

    async def _started(self) -> str | None:
        return self.ready_reason or None

    async def _consuming(self) -> str | None:
        consume = next((t for t in self._tasks if t.get_name() == "consume"), None)
        if consume is None or consume.done() or not self.consumer.state.running:
            return "the consumer loop is not running"
        return self.consumer.state.failure

    async def _connected(self) -> str | None:
        assert self.broker is not None
        return None if self.broker.config.connection_state.connection.is_connected else "NATS not connected"

    async def _store_answers(self) -> str | None:
        in_hand = self.consumer.in_hand
        if in_hand is not None and not in_hand.done():
            # the store thread is busy with a batch: it answers, unless the batch hangs
            held_s = asyncio.get_running_loop().time() - self.consumer.in_hand_since
            if held_s > self.settings.ready_timeout_s:
                return f"store not answering: a batch has been in hand for {held_s:.1f} s"
            return None
        try:
            await asyncio.wait_for(self.run(self.store.ping), timeout=self.settings.ready_timeout_s)
        except Exception as exc:
            return f"store unreachable: {type(exc).__name__}: {exc}"[:300]
        return None

    async def _lag_bounded(self) -> str | None:
        if self.consumer_pending > self.settings.ready_max_pending:
            return f"consumer lag {self.consumer_pending} above {self.settings.ready_max_pending}"
        return None
