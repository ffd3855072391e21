"""``notifier resend-failed``: give failed alerts a fresh round of attempts."""

from __future__ import annotations

from datetime import timedelta

from notifier.application.delivery import Deliverer
from notifier.application.ports import AlertStore, Clock, Runner
from notifier.domain.events import Channel

__all__ = ["MAX_CLAIM", "STALE_CLAIM", "Resender"]

MAX_CLAIM = 10_000
#: A claim older than this is from a run that crashed: it may be claimed again.
STALE_CLAIM = timedelta(hours=1)


class Resender:
    """Claims failed alerts and delivers them again."""

    def __init__(self, *, store: AlertStore, deliverer: Deliverer, clock: Clock, run: Runner) -> None:
        self.store = store
        self.deliverer = deliverer
        self.clock = clock
        self._run = run

    async def resend_failed(
        self, *, alert_id: str | None = None, channel: Channel | None = None, limit: int = 1000
    ) -> dict[str, int]:
        """Claim failed alerts (and claims older than :data:`STALE_CLAIM`) and send them
        again; ``{"claimed", "sent", "failed"}``."""
        assert 1 <= limit <= MAX_CLAIM, limit
        now = self.clock()
        keys = await self._run(self.store.claim_failed, now, now - STALE_CLAIM, alert_id, channel, limit)
        await self.deliverer.deliver_all(keys, resend=True)
        sent = 0
        for key in keys:
            record = await self._run(self.store.alert, key)
            sent += record is not None and record.status == "sent"
        return {"claimed": len(keys), "sent": sent, "failed": len(keys) - sent}
