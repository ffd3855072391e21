"""Feeding a history of messages (a file's lines) to the ledger in batches."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ledger.application.contract import MAX_MESSAGE_BYTES
from ledger.application.ledger import Ledger
from ledger.application.report import RejectedLine

__all__ = ["DEFAULT_BATCH", "ReplayResult", "ingest_lines"]

DEFAULT_BATCH = 1_000


@dataclass
class ReplayResult:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: list[RejectedLine] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "lines": self.lines,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
        }


def ingest_lines(
    ledger: Ledger,
    lines: Iterable[tuple[int, bytes | None]],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[ReplayResult], None] | None = None,
) -> ReplayResult:
    """Submit numbered lines (``None`` = a line over the size limit) in batches; every
    refused line is kept with its number, reason and message."""
    assert 1 <= batch_size <= 10_000, batch_size
    result = ReplayResult()
    batch: list[tuple[int, bytes]] = []

    def flush() -> None:
        outcomes = ledger.ingest([raw for _, raw in batch])
        for (number, _), outcome in zip(batch, outcomes, strict=True):
            if outcome.status == "accepted":
                result.accepted += 1
            elif outcome.status == "duplicate":
                result.duplicates += 1
            else:
                assert outcome.reason is not None and outcome.message is not None
                result.rejected.append(
                    RejectedLine(number, outcome.envelope_id, outcome.reason, outcome.message)
                )
        batch.clear()
        if on_batch is not None:
            on_batch(result)

    for number, raw in lines:
        result.lines += 1
        if raw is None:
            result.rejected.append(
                RejectedLine(
                    number, None, "too_large", f"line longer than the {MAX_MESSAGE_BYTES}-byte limit"
                )
            )
            continue
        batch.append((number, raw))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    result.rejected.sort(key=lambda r: r.line)
    return result
