"""``ledger publish``: feed a JSON Lines file to ``ledger.in.*`` on NATS JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.adapters.jsonl import read_lines

__all__ = ["PublishError", "publish_files", "subject_for"]

WINDOW = 512
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
    nc = await nats.connect(
        [url.strip() for url in nats_url.split(",")],
        max_reconnect_attempts=-1,
        name="ledger-publish",
        **(connect_options or {}),
    )
    js = nc.jetstream()
    try:
        await js.stream_info("LEDGER_IN")
    except Exception as exc:
        await nc.close()
        raise PublishError(
            f"stream LEDGER_IN is not available on {nats_url} ({exc}): is `ledger serve` running?"
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
                        pending.append(
                            asyncio.ensure_future(
                                js.publish(subject, line.raw, headers={"Nats-Msg-Id": msg_id}, timeout=30)
                            )
                        )
                        if len(pending) >= WINDOW:
                            await _settle(pending, counts, console)
                            progress.update(task, completed=line.offset)
                    await _settle(pending, counts, console)
                    progress.update(task, advance=0)
    finally:
        await nc.drain()
    return counts


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
