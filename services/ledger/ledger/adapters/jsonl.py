"""Reading CloudEvents JSON Lines files with bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ledger.application.contract import MAX_MESSAGE_BYTES

__all__ = ["Line", "read_lines"]

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its 1-based number, its bytes (None when too long) and the
    bytes read so far (for progress)."""

    number: int
    raw: bytes | None
    offset: int


def read_lines(stream: BinaryIO) -> Iterator[Line]:
    """Non-blank lines of ``stream``; a line longer than the message limit is yielded with
    ``raw=None`` (and skipped to its end) instead of being held in memory."""
    number = 0
    offset = 0
    while True:
        chunk = stream.readline(MAX_MESSAGE_BYTES + 2)
        if not chunk:
            return
        number += 1
        offset += len(chunk)
        content_bytes = len(chunk) - (1 if chunk.endswith(b"\n") else 0)
        if content_bytes > MAX_MESSAGE_BYTES:
            while not chunk.endswith(b"\n"):
                chunk = stream.readline(_CHUNK)
                if not chunk:
                    break
                offset += len(chunk)
            yield Line(number, None, offset)
            continue
        stripped = chunk.strip()
        if stripped:
            yield Line(number, stripped, offset)
