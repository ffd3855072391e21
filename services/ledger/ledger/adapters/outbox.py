"""The outbound side of ``ledger serve``: derived events and audit checkpoints.

- Derived events are computed from the stored log, position by position, published to
  ``LEDGER_OUT`` with ``Nats-Msg-Id`` = the event id, and the published position is
  tracked in the store. Publishing never runs ahead of storing.
- The chain head is published on ``ledger.out.audit.checkpoint`` every
  ``checkpoint_every_facts`` facts and every ``checkpoint_interval_s`` when it moved, so a
  copy of it lives outside the store. At start-up the stored chain is compared with the
  last checkpoint published: a history edited since (even with its chain recomputed) does
  not match, and the service refuses to build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.metrics import LedgerMetrics
from ledger.application.derive import DerivedEvent
from ledger.application.pipeline import OutboxChunk, Pipeline

__all__ = [
    "CHECKPOINT_SUBJECT",
    "CheckpointMismatchError",
    "Outbox",
    "cloudevent",
    "last_published_checkpoint",
    "read_published_checkpoints",
]

#: Most checkpoints read back by ``audit verify --published`` (a limit on everything).
MAX_CHECKPOINTS_READ = 1_000_000

log = structlog.get_logger("ledger.outbox")

CHECKPOINT_SUBJECT = "ledger.out.audit.checkpoint"

Run = Callable[..., Awaitable[object]]


class CheckpointMismatchError(RuntimeError):
    """The stored history does not match a checkpoint the ledger published earlier."""


@dataclass(frozen=True, slots=True)
class PublishedCheckpoint:
    position: int
    hash: str


def cloudevent(event: DerivedEvent, time: str | None) -> bytes:
    """The CloudEvents envelope of a derived event; ``time`` is when the fact that caused it
    was recorded (stable: re-deriving gives the same bytes)."""
    envelope: dict[str, object] = {
        "specversion": "1.0",
        "id": event.id,
        "source": "coop-ledger",
        "type": event.type,
        "datacontenttype": "application/json",
        "subject": event.kind,
        "ledgerposition": event.position,
        "data": event.data,
    }
    if time is not None:
        envelope["time"] = time
    return orjson.dumps(envelope)


async def last_published_checkpoint(js: JetStreamContext) -> PublishedCheckpoint | None:
    """The last checkpoint on ``LEDGER_OUT`` (None when none was ever published)."""
    try:
        msg = await js.get_last_msg("LEDGER_OUT", CHECKPOINT_SUBJECT)
    except NotFoundError:
        return None
    data = orjson.loads(msg.data or b"{}").get("data", {})
    return PublishedCheckpoint(int(data["position"]), str(data["hash"]))


async def read_published_checkpoints(
    nats_url: str, connect_options: Mapping[str, Any], timeout_s: float = 10.0
) -> list[PublishedCheckpoint]:
    """Every checkpoint published on ``LEDGER_OUT`` so far, oldest first (an ordered,
    ephemeral consumer on the checkpoint subject: nothing is acked or changed)."""
    import nats

    from coop_runtime.broker import nats_servers

    nc = await nats.connect(nats_servers(nats_url), name="ledger-audit", **connect_options)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info("LEDGER_OUT", subjects_filter=CHECKPOINT_SUBJECT)
        except NotFoundError:
            return []
        expected = int((info.state.subjects or {}).get(CHECKPOINT_SUBJECT, 0))
        found: list[PublishedCheckpoint] = []
        if expected == 0:
            return found
        subscription = await js.subscribe(CHECKPOINT_SUBJECT, stream="LEDGER_OUT", ordered_consumer=True)
        try:
            while len(found) < min(expected, MAX_CHECKPOINTS_READ):
                msg = await subscription.next_msg(timeout=timeout_s)
                data = orjson.loads(msg.data).get("data", {})
                found.append(PublishedCheckpoint(int(data["position"]), str(data["hash"])))
        finally:
            await subscription.unsubscribe()
        return found
    finally:
        await nc.close()


class Outbox:
    """Publishes what the pipeline derives, and the checkpoints (see module docstring)."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        run_store: Run,
        publisher: Callable[[], PipelinedPublisher],
        metrics: LedgerMetrics,
        publish_timeout_s: float,
        retry_delay_s: float,
        checkpoint_interval_s: float,
        checkpoint_every_facts: int,
        on_progress: Callable[[], None],
        scrub: Callable[[list[str]], Awaitable[None]] | None = None,
        after_chunk: Callable[[], None] | None = None,
    ) -> None:
        """``scrub`` removes the messages holding any of the given personal values from the
        streams the ledger owns (an erasure's copies outside the log); ``after_chunk`` runs
        on the store thread right after each chunk is marked published (no chunk pending:
        where a snapshot may be taken)."""
        self._after_chunk = after_chunk
        assert checkpoint_every_facts >= 1, checkpoint_every_facts
        self._scrub = scrub
        self._pipeline = pipeline
        self._run_store = run_store
        self._publisher = publisher
        self._metrics = metrics
        self._publish_timeout_s = publish_timeout_s
        self._retry_delay_s = retry_delay_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._checkpoint_every_facts = checkpoint_every_facts
        self._on_progress = on_progress
        self.wake = asyncio.Event()
        self._checkpointed = -1

    # derived events ----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)
            self.wake.clear()
            try:
                await self.drain()
            except Exception as exc:
                self._metrics.publish_errors.inc()
                log.warning(
                    "publishing derived events failed; retrying", error=f"{type(exc).__name__}: {exc}"[:300]
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), self._retry_delay_s)

    async def drain(self) -> None:
        """Publish everything stored and not yet published. An erasure completes before the
        chunk that announces it goes out: every earlier event is out by then (scrubbed), and
        this chunk's were derived from the redacted facts."""
        await self._complete_erasures(self._pipeline.published)
        while (chunk := await self._run_store(self._pipeline.outbox_chunk)) is not None:
            await self._complete_erasures(chunk.upto)  # type: ignore[attr-defined]
            await self._publish_events(chunk.events)  # type: ignore[attr-defined]
            await self._run_store(self._chunk_done, chunk)
            self._on_progress()

    def _chunk_done(self, chunk: OutboxChunk) -> None:
        self._pipeline.outbox_done(chunk)
        if self._after_chunk is not None:
            self._after_chunk()

    async def _complete_erasures(self, upto: int) -> None:
        """Scrub the streams of each pending erasure up to position ``upto``, then destroy the
        person's data key (a crash in between redoes both: the key is still there)."""
        ledger = self._pipeline.ledger
        pending = await self._run_store(ledger.pending_erasures)
        for party, position, needles in pending:  # type: ignore[attr-defined]
            if position > upto:
                continue
            if needles and self._scrub is not None:
                await self._scrub(needles)
            destroyed = await self._run_store(ledger.complete_erasure, party)
            self._metrics.erasures_completed.inc()
            log.info("erasure completed", party_kind=party.kind, position=position, key_destroyed=destroyed)

    async def _publish_events(self, events: Sequence[DerivedEvent]) -> None:
        recorded = self._pipeline.ledger.index.recorded_at
        await self._publisher().publish(
            [(e.subject, cloudevent(e, recorded(e.position)), {"Nats-Msg-Id": e.id}) for e in events],
            self._publish_timeout_s,
        )
        for e in events:
            self._metrics.derived_published.labels(e.kind).inc()
            delta = e.minor_delta()
            if delta is not None:
                currency, minor = delta
                if minor > 0:
                    self._metrics.commission_accrued_minor.labels(currency).inc(minor)
                elif minor < 0:
                    self._metrics.commission_reversed_minor.labels(currency).inc(-minor)

    # checkpoints -------------------------------------------------------------------------

    async def verify_checkpoint(self, js: JetStreamContext) -> PublishedCheckpoint | None:
        """Compare the stored chain with the last published checkpoint; raise
        :class:`CheckpointMismatchError` when they differ."""
        checkpoint = await last_published_checkpoint(js)
        if checkpoint is None:
            return None
        ledger = self._pipeline.ledger
        head = ledger.index.head
        if checkpoint.position > head.position:
            raise CheckpointMismatchError(
                f"the stored log ends at position {head.position}, but a checkpoint was published at "
                f"position {checkpoint.position}: facts are missing"
            )
        stored = await self._run_store(ledger.hash_at, checkpoint.position)
        if stored != checkpoint.hash:
            raise CheckpointMismatchError(
                f"the stored chain hash at position {checkpoint.position} is {stored}, the checkpoint "
                f"published then says {checkpoint.hash}: the stored history was changed"
            )
        self._checkpointed = checkpoint.position
        return checkpoint

    async def run_checkpoints(self, stopping: asyncio.Event) -> None:
        """Publish the chain head every ``checkpoint_every_facts`` facts, and every
        ``checkpoint_interval_s`` when it moved."""
        loop = asyncio.get_running_loop()
        last_at = loop.time()
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=min(1.0, self._checkpoint_interval_s))
            head = self._pipeline.ledger.index.head
            if head.position == self._checkpointed:
                continue
            due = loop.time() - last_at >= self._checkpoint_interval_s
            if not due and head.position - max(self._checkpointed, 0) < self._checkpoint_every_facts:
                continue
            event = DerivedEvent(
                f"checkpoint:{head.position}",
                "audit.checkpoint",
                max(head.position, 1),
                {"position": head.position, "hash": head.hash},
            )
            try:
                await self._publisher().publish(
                    [(event.subject, cloudevent(event, _now()), {"Nats-Msg-Id": event.id})],
                    self._publish_timeout_s,
                )
            except Exception as exc:
                log.warning(
                    "checkpoint not published; will retry", error=f"{type(exc).__name__}: {exc}"[:300]
                )
                continue
            self._metrics.checkpoints_published.inc()
            self._checkpointed = head.position
            last_at = loop.time()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
