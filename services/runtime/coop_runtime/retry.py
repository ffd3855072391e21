"""One retry policy for everything a service waits on at start-up or after a fault
(JetStream streams, durable consumers, a stream another service creates): try, and on
failure report why, wait (doubling from ``retry_delay_s`` up to :data:`MAX_RETRY_DELAY_S`)
and try again, until it succeeds or the service stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

__all__ = ["MAX_RETRY_DELAY_S", "retry_until"]

T = TypeVar("T")
MAX_RETRY_DELAY_S = 10.0

log = structlog.get_logger("coop_runtime.retry")


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    retry_delay_s: float,
    stopping: asyncio.Event,
    on_wait: Callable[[str], None],
    describe: Callable[[Exception], str] | None = None,
) -> T | None:
    """``attempt()`` until it returns (its result) or ``stopping`` is set (None). Each
    failure is reported through ``on_wait`` (readiness) and logged when its reason changes."""
    assert retry_delay_s > 0, retry_delay_s
    delay_s = retry_delay_s
    told = ""
    while not stopping.is_set():
        try:
            result = await attempt()
        except Exception as exc:
            detail = describe(exc) if describe is not None else f"{type(exc).__name__}: {exc}"
            reason = f"cannot {what}: {detail}"[:300]
            on_wait(reason)
            if reason != told:
                log.warning(reason + "; retrying", retry_delay_s=delay_s)
                told = reason
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_DELAY_S)
            continue
        if told:
            log.info(f"{what}: done after retrying")
        return result
    return None
