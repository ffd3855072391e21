"""The one wiring module: builds the application from settings. Nothing connects at
import time."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.memory_store import MemoryFactStore
from ledger.application.ledger import Ledger
from ledger.settings import Settings

__all__ = ["build_ephemeral_ledger", "build_ledger", "build_store", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_store(settings: Settings) -> EventSourcedFactStore:
    return EventSourcedFactStore(settings.eventsourcing_env())


def build_ledger(settings: Settings) -> Ledger:
    """A ledger on the configured store (not yet caught up: call ``catch_up``)."""
    return Ledger(build_store(settings), utc_now)


def build_ephemeral_ledger() -> Ledger:
    """A ledger on an in-process store, for replaying a file (nothing is kept)."""
    return Ledger(MemoryFactStore(), utc_now)
