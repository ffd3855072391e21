"""The one wiring module: builds the application from settings. Nothing connects at
import time."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.heap import DEFAULT_FREEZE_EVERY_FACTS, HeapFreezer
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.ledger import Ledger
from ledger.settings import Settings

__all__ = ["build_ephemeral_ledger", "build_ledger", "build_store", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_store(settings: Settings) -> EventSourcedFactStore:
    return EventSourcedFactStore(settings.eventsourcing_env())


def build_ledger(settings: Settings, store: EventSourcedFactStore | None = None) -> Ledger:
    """A ledger on the configured store, or on ``store`` (not yet caught up: call
    ``catch_up``); its long-lived state is frozen out of the garbage collector's way every
    ``LEDGER_HEAP_FREEZE_EVERY_FACTS`` facts."""
    freezer = HeapFreezer(settings.heap_freeze_every_facts)
    return Ledger(store or build_store(settings), utc_now, on_growth=freezer.note)


def build_ephemeral_ledger(freeze_every_facts: int = DEFAULT_FREEZE_EVERY_FACTS) -> Ledger:
    """A ledger on an in-process store, for replaying a file (nothing is kept)."""
    return Ledger(MemoryFactStore(), utc_now, on_growth=HeapFreezer(freeze_every_facts).note)
