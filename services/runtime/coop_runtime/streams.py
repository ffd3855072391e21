"""JetStream streams the services own: one configuration shape and one way to open them.

At start-up JetStream may not answer yet (a cluster still electing its meta leader, a
server restarting, a stream leader moving): opening a stream retries (:mod:`retry`) until
it succeeds or the service stops, reporting why it waits, instead of failing start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from coop_runtime.retry import retry_until

__all__ = ["ensure_stream", "open_stream", "stream_config"]


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
    """:func:`ensure_stream` until it succeeds (True) or ``stopping`` is set (False)."""

    async def attempt() -> bool:
        await ensure_stream(js, config)
        return True

    opened = await retry_until(
        attempt,
        what=f"open stream {config.name}",
        retry_delay_s=retry_delay_s,
        stopping=stopping,
        on_wait=on_wait,
    )
    return bool(opened)
