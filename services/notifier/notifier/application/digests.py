"""Daily digests: who gets one instead of one message per event, and building the digests
that are due (one per introducer and channel for day D, sent on D + 1 at the hour).

A digest is an alert like any other (``digest:<day>:<introducer>``): it is delivered,
retried and resent by :class:`notifier.application.delivery.Deliverer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from notifier.application.delivery import Deliverer
from notifier.application.ports import AlertStore, Clock, Runner
from notifier.domain.events import AlertKey

__all__ = ["MAX_DIGEST_ITEMS", "MAX_DIGEST_PARTS", "DigestPolicy", "Digester"]

MAX_DIGEST_ITEMS = 500
MAX_DIGEST_PARTS = 100


@dataclass(frozen=True, slots=True)
class DigestPolicy:
    """Who gets a daily digest instead of one message per event, and when it is sent."""

    mode: Literal["off", "daily"]
    introducers: frozenset[str]
    hour: int
    zone: ZoneInfo

    def applies(self, introducer_id: str) -> bool:
        return self.mode == "daily" or introducer_id in self.introducers

    @property
    def enabled(self) -> bool:
        return self.mode == "daily" or bool(self.introducers)

    def local_day(self, now: datetime) -> date:
        assert now.tzinfo is not None, "the clock must be timezone-aware"
        return now.astimezone(self.zone).date()

    def last_due_day(self, now: datetime) -> date:
        """The latest day whose digest is due at ``now``: day D is sent on D + 1 at ``hour``."""
        local = now.astimezone(self.zone)
        return local.date() - timedelta(days=1 if local.hour >= self.hour else 2)


class Digester:
    """Builds the digests due and hands them to delivery."""

    def __init__(
        self, *, store: AlertStore, policy: DigestPolicy, deliverer: Deliverer, clock: Clock, run: Runner
    ) -> None:
        self.store = store
        self.policy = policy
        self.deliverer = deliverer
        self.clock = clock
        self._run = run

    async def run_digests(self, now: datetime | None = None) -> int:
        """Build the digests due at ``now`` (default: the clock) and deliver every digest
        not yet settled. Returns how many digests were delivered or attempted."""
        keys = await self._run(self._plan_sync, now or self.clock())
        await self.deliverer.deliver_all(keys)
        return len(keys)

    def _plan_sync(self, now: datetime) -> list[AlertKey]:
        store = self.store
        with store.transaction():
            for recipient, channel, day in store.queued_groups(self.policy.last_due_day(now)):
                for part in range(1, MAX_DIGEST_PARTS + 1):
                    digest_id = f"digest:{day.isoformat()}:{recipient}" + (f":{part}" if part > 1 else "")
                    if store.alert(AlertKey(digest_id, channel)) is not None:
                        continue
                    taken = store.make_digest(
                        recipient=recipient,
                        channel=channel,
                        day=day,
                        digest_id=digest_id,
                        limit=MAX_DIGEST_ITEMS,
                        at=now,
                    )
                    if taken < MAX_DIGEST_ITEMS:
                        break
            return store.pending_digests()
