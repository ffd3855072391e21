"""``ledger publish``: feed a JSON Lines file to ``ledger.in.*`` on NATS JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.adapters.jsonl import read_lines

__all__ = [
    "PermissionWatch",
    "PublishError",
    "publish_files",
    "publish_one",
    "subject_for",
    "wait_for_stream",
]

WINDOW = 512
#: How long to wait for stream LEDGER_IN to answer before giving up (a NATS server or
#: cluster restarting answers within seconds).
STREAM_WAIT_S = 60.0
#: Attempts per message (same Nats-Msg-Id each time, so a retry never stores twice).
PUBLISH_ATTEMPTS = 6
PUBLISH_TIMEOUT_S = 15.0
_TYPE = re.compile(r"^coop\.ledger\.([a-z_]+(?:\.[a-z_]+)*)\.v[0-9]+$")


class PublishError(RuntimeError):
    """The facts cannot be published at all."""


def subject_for(raw: bytes) -> tuple[str, str]:
    """(subject, Nats-Msg-Id) for one line: ``ledger.in.<kind>`` and the envelope id when
    the line has them; otherwise ``ledger.in.unparsed`` and a hash of the bytes (the ledger
    refuses it and says why on ``ledger.rejected``: nothing is dropped here)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    kind, msg_id = "unparsed", None
    if isinstance(doc, dict):
        match = _TYPE.match(str(doc.get("type", "")))
        if match:
            kind = match.group(1)
        if isinstance(doc.get("id"), str) and 0 < len(doc["id"]) <= 256:
            msg_id = doc["id"]
    return f"ledger.in.{kind}", msg_id or "sha256:" + hashlib.sha256(raw).hexdigest()


async def publish_files(
    nats_url: str,
    files: Sequence[Path],
    console: Console,
    connect_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Publish every non-blank line of ``files``; returns counts. ``connect_options`` are
    extra ``nats.connect`` arguments (credentials, TLS: ``Settings.nats_connect_options``)."""
    watch = PermissionWatch()
    nc = await nats.connect(
        [url.strip() for url in nats_url.split(",")],
        max_reconnect_attempts=-1,
        name="ledger-publish",
        error_cb=watch.error_cb,
        **(connect_options or {}),
    )
    js = nc.jetstream()
    try:
        await wait_for_stream(js, watch)
    except Exception as exc:
        await nc.close()
        raise PublishError(
            f"stream LEDGER_IN is not available on {_redacted(nats_url)} ({exc}): is `ledger serve` running?"
        ) from exc
    counts = {"published": 0, "duplicates": 0, "failed": 0, "too_long": 0}
    try:
        total = sum(p.stat().st_size for p in files)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            task = progress.add_task("publishing", total=total)
            for path in files:
                with path.open("rb") as stream:
                    pending: list[asyncio.Future[object]] = []
                    for line in read_lines(stream):
                        if line.raw is None:
                            counts["too_long"] += 1
                            console.print(f"{path}:{line.number}: line too long, not published")
                            continue
                        subject, msg_id = subject_for(line.raw)
                        pending.append(asyncio.ensure_future(publish_one(js, subject, line.raw, msg_id)))
                        if len(pending) >= WINDOW:
                            await _settle(pending, counts, console)
                            progress.update(task, completed=line.offset)
                    await _settle(pending, counts, console)
                    progress.update(task, advance=0)
    finally:
        await nc.drain()
    return counts


class PermissionWatch:
    """The server's permission refusals on a connection (``error_cb``): they are final, so a
    command stops at the first instead of waiting for a stream it may never see."""

    def __init__(self) -> None:
        self.denied: str | None = None

    async def error_cb(self, exc: Exception) -> None:
        if "permissions violation" in str(exc).lower() and self.denied is None:
            self.denied = str(exc)[:300]


async def wait_for_stream(js: Any, watch: PermissionWatch | None = None) -> None:
    """``stream_info("LEDGER_IN")`` until it answers, doubling the wait, for at most
    :data:`STREAM_WAIT_S` (then the last error is raised); at once when the server refused
    the request for lack of permission (seen by ``watch``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAM_WAIT_S
    delay_s = 0.25
    while True:
        try:
            await js.stream_info("LEDGER_IN")
            return
        except NotFoundError:
            raise
        except Exception as exc:
            if watch is not None and watch.denied is not None:
                raise PermissionError(watch.denied) from exc
            if loop.time() + delay_s > deadline:
                raise
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


async def publish_one(js: Any, subject: str, raw: bytes, msg_id: str) -> object:
    """Publish one message and wait for its PubAck, retrying (same ``Nats-Msg-Id``: JetStream
    de-duplicates) through a server restart or a leader change."""
    delay_s = 0.5
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            return await js.publish(subject, raw, headers={"Nats-Msg-Id": msg_id}, timeout=PUBLISH_TIMEOUT_S)
        except (
            nats.errors.TimeoutError,
            nats.errors.NoRespondersError,
            # what js.publish raises while the stream is not back yet after a server restart
            nats.js.errors.NoStreamResponseError,
            nats.errors.ConnectionClosedError,
            nats.js.errors.ServiceUnavailableError,
            TimeoutError,
        ):
            if attempt == PUBLISH_ATTEMPTS:
                raise
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 8.0)
    raise AssertionError("unreachable")


def _redacted(nats_url: str) -> str:
    from coop_runtime.nats_security import redact_url

    return ",".join(redact_url(url) for url in nats_url.split(","))


async def _settle(pending: list[asyncio.Future[object]], counts: dict[str, int], console: Console) -> None:
    for result in await asyncio.gather(*pending, return_exceptions=True):
        if isinstance(result, BaseException):
            counts["failed"] += 1
            console.print(f"publish failed: {result}")
        elif getattr(result, "duplicate", False):
            counts["duplicates"] += 1
        else:
            counts["published"] += 1
    pending.clear()
