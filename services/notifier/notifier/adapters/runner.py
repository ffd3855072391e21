"""Blocking work off the event loop, each kind on its own thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ThreadRunner"]

T = TypeVar("T")


class ThreadRunner:
    """:class:`notifier.application.ports.Runner` on one dedicated thread: calls run one at
    a time, in order (the store's connection is used by one thread; rendering gets its own)."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def __call__(self, fn: Callable[..., T], /, *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
