"""Pipelined, acknowledged JetStream publishing.

``JetStreamContext.publish`` is a request per message (a future, a timer, a task); at
thousands of messages a second that overhead dominates. Here every message is published on
the core connection with its own reply subject under one inbox; JetStream answers each with
a PubAck on that subject, and a batch completes only when every message has its PubAck (or
fails as a whole, to be retried: the ``Nats-Msg-Id`` header makes retries idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

__all__ = ["PipelinedPublisher", "PublishFailedError"]

MAX_IN_FLIGHT = 4096


class PublishFailedError(RuntimeError):
    """Some message of a batch was not acknowledged by JetStream."""


@dataclass
class _Batch:
    expected: int
    acked: int = 0
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class PipelinedPublisher:
    """Publishes batches of messages to JetStream and waits for every PubAck."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._batches: dict[int, _Batch] = {}
        self._next = 0
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._nc.subscribe(self._prefix + ".*.*", cb=self._on_ack)
            self._started = True

    async def _on_ack(self, msg: Msg) -> None:
        _, batch_id, _ = msg.subject.rsplit(".", 2)
        batch = self._batches.get(int(batch_id))
        if batch is None:  # a late ack of a batch that already timed out
            return
        try:
            body = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            body = {"error": {"description": f"unreadable PubAck: {msg.data[:100]!r}"}}
        if "error" in body:
            batch.errors.append(str(body["error"].get("description", body["error"])))
        else:
            batch.acked += 1
            batch.duplicates += bool(body.get("duplicate"))
        if batch.acked + len(batch.errors) >= batch.expected and not batch.done.done():
            batch.done.set_result(None)

    async def publish(
        self, messages: Sequence[tuple[str, bytes, dict[str, str]]], timeout_s: float = 10.0
    ) -> int:
        """Publish (subject, body, headers) messages; returns how many JetStream reported as
        duplicates. Raises :class:`PublishFailedError` unless every message was stored."""
        await self.start()
        stored_duplicates = 0
        for start in range(0, len(messages), MAX_IN_FLIGHT):
            chunk = messages[start : start + MAX_IN_FLIGHT]
            batch_id = self._next
            self._next += 1
            batch = _Batch(expected=len(chunk))
            self._batches[batch_id] = batch
            try:
                for i, (subject, body, headers) in enumerate(chunk):
                    await self._nc.publish(
                        subject, body, reply=f"{self._prefix}.{batch_id}.{i}", headers=headers
                    )
                await asyncio.wait_for(asyncio.shield(batch.done), timeout_s)
            except TimeoutError:
                raise PublishFailedError(
                    f"{batch.expected - batch.acked - len(batch.errors)} of {batch.expected} messages "
                    f"not acknowledged within {timeout_s}s"
                ) from None
            finally:
                self._batches.pop(batch_id, None)
            if batch.errors:
                raise PublishFailedError(
                    f"{len(batch.errors)} messages refused by JetStream: {batch.errors[0]}"
                )
            stored_duplicates += batch.duplicates
        return stored_duplicates
