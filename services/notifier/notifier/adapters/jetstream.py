"""NATS JetStream plumbing of the notifier (nats-py): the durable pull consumer on
``LEDGER_OUT`` and the ``NOTIFIER_FAILED`` stream with its publisher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from coop_runtime.retry import retry_until
from coop_runtime.streams import ensure_stream, stream_config
from notifier.application.ports import FailureNotice

__all__ = [
    "FAILED_STREAM",
    "FAILED_SUBJECT",
    "IN_FILTER",
    "IN_STREAM",
    "NatsFailurePublisher",
    "ensure_failed_stream",
    "failed_stream_config",
    "subscribe_ledger_out",
    "wait_for_stream",
]

IN_STREAM = "LEDGER_OUT"
IN_FILTER = "ledger.out.>"
FAILED_STREAM = "NOTIFIER_FAILED"
FAILED_SUBJECT = "notifier.failed"


def failed_stream_config(duplicate_window_s: float, replicas: int = 1) -> StreamConfig:
    """Stream ``NOTIFIER_FAILED`` on subject ``notifier.failed`` only, with ``replicas``
    copies in a cluster."""
    return stream_config(FAILED_STREAM, [FAILED_SUBJECT], duplicate_window_s, replicas)


async def ensure_failed_stream(js: JetStreamContext, duplicate_window_s: float, replicas: int = 1) -> None:
    """Create (or update) stream ``NOTIFIER_FAILED`` (one attempt)."""
    await ensure_stream(js, failed_stream_config(duplicate_window_s, replicas))


async def wait_for_stream(
    js: JetStreamContext,
    name: str,
    interval_s: float,
    stopping: asyncio.Event,
    on_wait: Callable[[str], None],
) -> bool:
    """Wait until stream ``name`` exists (the ledger creates ``LEDGER_OUT``); False if
    stopped first. Never raises: NATS errors are reported and retried (one retry policy)."""

    async def attempt() -> bool:
        await js.stream_info(name)
        return True

    def describe(exc: Exception) -> str:
        if isinstance(exc, NotFoundError):
            return "it does not exist yet (the ledger creates it)"
        return f"{type(exc).__name__}: {exc}"

    found = await retry_until(
        attempt,
        what=f"find stream {name}",
        retry_delay_s=interval_s,
        stopping=stopping,
        on_wait=on_wait,
        describe=describe,
    )
    return bool(found)


async def subscribe_ledger_out(
    js: JetStreamContext, consumer_name: str, ack_wait_s: float, max_ack_pending: int
) -> JetStreamContext.PullSubscription:
    """The durable pull consumer (explicit acks) on ``ledger.out.>``."""
    return await js.pull_subscribe(
        IN_FILTER,
        durable=consumer_name,
        stream=IN_STREAM,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_ack_pending=max_ack_pending,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=IN_FILTER,
        ),
    )


class NatsFailurePublisher:
    """Publishes failure notices to ``notifier.failed`` and waits for JetStream's PubAck."""

    def __init__(self, js: Callable[[], JetStreamContext], timeout_s: float = 10.0) -> None:
        self._js = js
        self._timeout_s = timeout_s

    async def publish(self, notice: FailureNotice, msg_id: str) -> None:
        await self._js().publish(
            FAILED_SUBJECT,
            notice.model_dump_json().encode(),
            timeout=self._timeout_s,
            stream=FAILED_STREAM,
            headers={"Nats-Msg-Id": msg_id, "Content-Type": "application/json"},
        )
