"""Reading and writing JetStream directly with nats-py, for assertions."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import orjson


async def _read_stream(url: str, stream: str) -> list[tuple[str | None, dict[str, Any]]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out: list[tuple[str | None, dict[str, Any]]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            if info.state.messages == 0:
                break
            try:
                msg = await js.get_msg(stream, seq)
            except Exception:  # deleted sequence
                continue
            msg_id = (msg.headers or {}).get("Nats-Msg-Id")
            out.append((msg_id, orjson.loads(msg.data)))
        return out
    finally:
        await nc.close()


def read_stream(url: str, stream: str) -> list[tuple[str | None, dict[str, Any]]]:
    """Every message in ``stream``: (Nats-Msg-Id, JSON body)."""
    return asyncio.run(_read_stream(url, stream))


async def _publish_raw(url: str, items: list[tuple[str, bytes, str]]) -> list[bool]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        acks = []
        for subject, body, msg_id in items:
            ack = await js.publish(subject, body, headers={"Nats-Msg-Id": msg_id})
            acks.append(bool(ack.duplicate))
        return acks
    finally:
        await nc.close()


def publish_raw(url: str, items: list[tuple[str, bytes, str]]) -> list[bool]:
    """Publish (subject, body, msg id) items; returns which JetStream took as duplicates."""
    return asyncio.run(_publish_raw(url, items))


async def _request(url: str, subject: str, body: bytes) -> Any:
    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, body, timeout=30)
        return orjson.loads(msg.data)
    finally:
        await nc.close()


def request(url: str, subject: str, body: dict[str, Any] | bytes) -> Any:
    """NATS request/reply with a JSON answer."""
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return asyncio.run(_request(url, subject, payload))


async def _delete_consumer(url: str, stream: str, name: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_consumer(stream, name)
    finally:
        await nc.close()


def delete_consumer(url: str, stream: str, name: str) -> None:
    asyncio.run(_delete_consumer(url, stream, name))


async def _consumer_state(url: str, stream: str, name: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(stream, name)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0), int(
            info.ack_floor.stream_seq or 0
        )
    finally:
        await nc.close()


def consumer_state(url: str, stream: str, name: str) -> tuple[int, int]:
    """(messages not yet acked, last stream sequence acked in order) of a durable consumer."""
    return asyncio.run(_consumer_state(url, stream, name))
