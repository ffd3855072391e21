"""The inbound side of ``ledger serve``: a durable pull consumer on ``LEDGER_IN``.

A batch is validated and stored in one transaction (on the store thread), every rejection
is published to ``ledger.rejected`` (acknowledged by JetStream), and only then are the
messages acked. The loop is supervised: no exception ends it. A failed step (the store,
the rejection publish, an ack) is logged with its cause and counted, the batch is nacked
(redelivered later, and idempotency makes the redelivery harmless), and the loop waits,
longer each time, before it takes the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
import structlog
from nats.aio.msg import Msg

from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.metrics import LedgerMetrics
from ledger.application.ledger import Outcome
from ledger.application.pipeline import Pipeline

__all__ = [
    "REJECTED_SUBJECT",
    "REJECTION_MAX_BYTES",
    "InboundConsumer",
    "StoreFailedError",
    "rejection_body",
    "rejection_msg_id",
]

log = structlog.get_logger("ledger.consumer")

REJECTED_SUBJECT = "ledger.rejected"
#: Largest ``ledger.rejected`` message: the copy of the original is cut to fit (its size
#: and SHA-256 are kept), so a rejection always fits the server's max payload.
REJECTION_MAX_BYTES = 96 * 1024
#: Longest pause after consecutive failures.
MAX_PAUSE_S = 30.0

Run = Callable[..., Awaitable[object]]


class StoreFailedError(RuntimeError):
    """The store did not take the batch (down, disk full, read-only)."""


def rejection_msg_id(msg: Msg) -> str:
    """``Nats-Msg-Id`` of the rejection of ``msg``: derived from the rejected message's
    stream sequence, so a redelivered message is rejected once on ``LEDGER_REJECTED``."""
    try:
        return f"rejected:{msg.metadata.sequence.stream}"
    except Exception:  # not a JetStream message (tests): the bytes identify it
        return "rejected:sha256:" + hashlib.sha256(msg.data).hexdigest()


def rejection_body(raw: bytes, outcome: Outcome, max_bytes: int = REJECTION_MAX_BYTES) -> bytes:
    """The JSON of a rejection: reason, message, envelope id and the original (as text,
    cut to fit ``max_bytes`` whatever it holds: escaping can grow a byte six-fold), with
    the original's size and SHA-256 so the cut copy is still identified."""
    assert 4096 <= max_bytes <= 8 * 1024 * 1024, max_bytes
    text = raw.decode("utf-8", errors="replace")
    doc = {
        "reason": outcome.reason,
        "message": (outcome.message or "")[:2000],
        "id": outcome.envelope_id,
        "original": text,
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "original_truncated": False,
    }
    body = orjson.dumps(doc)
    if len(body) <= max_bytes:
        return body
    doc["original_truncated"] = True
    low, high = 0, len(text)  # longest prefix that fits: ``low`` always fits
    while low < high:
        middle = (low + high + 1) // 2
        doc["original"] = text[:middle]
        if len(orjson.dumps(doc)) <= max_bytes:
            low = middle
        else:
            high = middle - 1
    doc["original"] = text[:low]
    body = orjson.dumps(doc)
    assert len(body) <= max_bytes, len(body)
    return body


@dataclass
class ConsumerState:
    """What readiness needs to know about the loop."""

    running: bool = False
    #: Why the last step failed (cleared by the next success); None when all is well.
    failure: str | None = None
    consecutive_failures: int = 0


class InboundConsumer:
    """Fetch, store, publish rejections, ack; supervised (see the module docstring)."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        run_store: Run,
        publisher: Callable[[], PipelinedPublisher],
        metrics: LedgerMetrics,
        retry_delay_s: float,
        publish_timeout_s: float,
        max_payload: Callable[[], int],
        on_stored: Callable[[], None],
    ) -> None:
        self._pipeline = pipeline
        self._run_store = run_store
        self._publisher = publisher
        self._metrics = metrics
        self._retry_delay_s = retry_delay_s
        self._publish_timeout_s = publish_timeout_s
        self._max_payload = max_payload
        self._on_stored = on_stored
        self.state = ConsumerState()
        self.in_hand: asyncio.Future[None] | None = None
        #: When the batch in hand was taken (event-loop time).
        self.in_hand_since = 0.0

    async def run(self, fetch: Callable[[], Awaitable[list[Msg]]], stopping: asyncio.Event) -> None:
        """Take batches until ``stopping`` is set; nothing raised inside ends the loop."""
        self.state.running = True
        try:
            while not stopping.is_set():
                try:
                    msgs = await fetch()
                except TimeoutError:
                    continue
                except Exception as exc:
                    if stopping.is_set():
                        return
                    await self._failed("fetch", exc, [], stopping)
                    continue
                if not msgs:
                    continue
                self.in_hand_since = asyncio.get_running_loop().time()
                self.in_hand = asyncio.ensure_future(self.handle_batch(msgs))
                try:
                    await asyncio.shield(self.in_hand)
                except Exception as exc:
                    await self._failed(
                        "store" if isinstance(exc, StoreFailedError) else "batch", exc, msgs, stopping
                    )
                    continue
                if self.state.consecutive_failures:
                    log.info("consuming works again", after_failures=self.state.consecutive_failures)
                self.state.failure = None
                self.state.consecutive_failures = 0
        finally:
            self.state.running = False

    async def _failed(
        self, stage: str, exc: BaseException, msgs: Sequence[Msg], stopping: asyncio.Event
    ) -> None:
        """Count and log the failure, nack the batch, pause (doubling, bounded)."""
        self.state.consecutive_failures += 1
        cause = f"{type(exc).__name__}: {exc}"[:300]
        what = "store writes failing" if stage == "store" else f"{stage} failing"
        self.state.failure = f"{what}: {cause}"
        self._metrics.consume_failures.labels(stage).inc()
        if stage == "store":
            self._metrics.store_errors.inc()
        pause_s = min(self._retry_delay_s * 2 ** (self.state.consecutive_failures - 1), MAX_PAUSE_S)
        log.error(
            "batch not completed; it will be redelivered, consuming paused",
            stage=stage,
            error=cause,
            batch_size=len(msgs),
            consecutive_failures=self.state.consecutive_failures,
            pause_s=pause_s,
        )
        for msg in msgs:
            with contextlib.suppress(Exception):
                await msg.nak(delay=self._retry_delay_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), pause_s)

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Store one batch, publish its rejections, ack it; raises on any failure (the
        caller nacks)."""
        raws: list[bytes] = [m.data for m in msgs]
        started = time.perf_counter()
        bound = log.bind(batch_id=uuid.uuid4().hex[:12], batch_size=len(raws))
        try:
            outcomes: list[Outcome] = await self._run_store(self._pipeline.ingest, raws)  # type: ignore[assignment]
        except Exception as exc:
            raise StoreFailedError(f"{type(exc).__name__}: {exc}") from exc
        rejections: list[tuple[str, bytes, dict[str, str]]] = []
        limit = min(REJECTION_MAX_BYTES, self._max_payload() - 4096)
        for msg, outcome in zip(msgs, outcomes, strict=True):
            self._count(outcome)
            if outcome.status == "rejected":
                msg_id = rejection_msg_id(msg)
                bound.warning(
                    "message rejected",
                    envelope_id=outcome.envelope_id,
                    reason=outcome.reason,
                    detail=outcome.message,
                    rejection_id=msg_id,
                )
                headers = {
                    "Nats-Msg-Id": msg_id,
                    "Ledger-Reason": outcome.reason or "",
                    "Content-Type": "application/json",
                }
                rejections.append((REJECTED_SUBJECT, rejection_body(msg.data, outcome, limit), headers))
            elif outcome.status == "duplicate":
                bound.debug("duplicate ignored", envelope_id=outcome.envelope_id, position=outcome.position)
        self._on_stored()
        if rejections:
            await self._publisher().publish(rejections, self._publish_timeout_s)
        for m in msgs:
            await m.ack()
        self._metrics.batch_size.observe(len(raws))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

    def _count(self, outcome: Outcome) -> None:
        if outcome.status == "accepted":
            self._metrics.facts_accepted.labels(outcome.fact_type or "unknown").inc()
        elif outcome.status == "duplicate":
            self._metrics.facts_duplicate.labels(outcome.fact_type or "unknown").inc()
        else:
            self._metrics.facts_rejected.labels(outcome.reason or "unknown").inc()
