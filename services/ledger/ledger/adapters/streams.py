"""JetStream streams both services own: one configuration shape and one way to open them.

At start-up JetStream may not answer yet (a cluster still electing its meta leader, a
server restarting, a stream leader moving): opening a stream retries until it succeeds or
the service stops, reporting why it waits, instead of failing the whole start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

__all__ = ["MAX_RETRY_DELAY_S", "ensure_stream", "open_stream", "stream_config"]

log = structlog.get_logger("ledger.streams")

MAX_RETRY_DELAY_S = 10.0


def stream_config(name: str, subjects: list[str], duplicate_window_s: float, replicas: int) -> StreamConfig:
    """File storage, the duplicate window for ``Nats-Msg-Id``, ``replicas`` copies."""
    assert replicas >= 1, replicas
    return StreamConfig(
        name=name,
        subjects=subjects,
        storage=StorageType.FILE,
        duplicate_window=duplicate_window_s,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to ``config`` (one attempt)."""
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
    else:
        await js.update_stream(config)


async def open_stream(
    js: JetStreamContext,
    config: StreamConfig,
    *,
    retry_delay_s: float,
    stopping: asyncio.Event,
    on_wait: Callable[[str], None],
) -> bool:
    """:func:`ensure_stream` until it succeeds (True) or ``stopping`` is set (False). Each
    failure is reported through ``on_wait`` (readiness) and logged when its reason
    changes; the delay doubles up to ``MAX_RETRY_DELAY_S``."""
    assert retry_delay_s > 0, retry_delay_s
    delay_s = retry_delay_s
    told = ""
    while not stopping.is_set():
        try:
            await ensure_stream(js, config)
        except Exception as exc:
            reason = f"cannot open stream {config.name}: {type(exc).__name__}: {exc}"[:300]
            on_wait(reason)
            if reason != told:
                log.warning(reason + "; retrying", stream=config.name, retry_delay_s=delay_s)
                told = reason
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
            continue
        if told:
            log.info("stream opened after retrying", stream=config.name)
        return True
    return False
