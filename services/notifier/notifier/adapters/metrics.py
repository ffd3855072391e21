"""Prometheus metrics of the notifier (no person ids as labels; reasons are bounded codes)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from notifier.application.ports import StatementBacklog
from notifier.domain.events import KNOWN_KINDS, PARTY_KINDS, Channel, PartyKind

__all__ = ["NotifierMetrics"]

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NotifierMetrics:
    """Every metric the notifier exports, on its own registry; implements the Observer port."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.alerts_sent = Counter(
            "notifier_alerts_sent_total",
            "Alerts accepted by the SMTP server or webhook.",
            ["channel"],
            registry=r,
        )
        self.alerts_failed = Counter(
            "notifier_alerts_failed_total",
            "Alerts that failed after their last attempt (published to notifier.failed).",
            ["channel", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "notifier_retries_total", "Send attempts retried after a failure.", ["channel"], registry=r
        )
        self.send_duration = Histogram(
            "notifier_send_duration_seconds",
            "Duration of one send attempt.",
            ["channel"],
            buckets=_SECONDS,
            registry=r,
        )
        self.duplicates = Counter(
            "notifier_alerts_duplicate_total",
            "Alerts asked again (redelivery, re-publication) and not sent because already sent.",
            ["channel"],
            registry=r,
        )
        self.events = Counter(
            "notifier_events_total",
            "Ledger events read, by kind and what became of them (routed, waiting, ignored, ...).",
            ["kind", "state"],
            registry=r,
        )
        self.consumer_pending = Gauge(
            "notifier_consumer_pending_messages",
            "Messages of LEDGER_OUT not yet delivered to the notifier or not yet acked.",
            registry=r,
        )
        self.in_flight = Gauge(
            "notifier_messages_in_flight", "Messages fetched and not yet settled.", registry=r
        )
        self.statements_sent = Counter(
            "notifier_statements_sent_total",
            "Monthly statements accepted by the SMTP server or webhook, by party kind.",
            ["party_kind", "channel"],
            registry=r,
        )
        self.statements_failed = Counter(
            "notifier_statements_failed_total",
            "Monthly statements that failed after their last attempt (on notifier.failed).",
            ["party_kind", "channel"],
            registry=r,
        )
        self.statements_pending = Gauge(
            "notifier_statements_pending",
            "Monthly statements not delivered yet (being sent, retried, or failed), by party kind.",
            ["party_kind"],
            registry=r,
        )
        self.statements_pending_age = Gauge(
            "notifier_statements_pending_age_seconds",
            "Age of the oldest monthly statement not delivered yet (0 when none).",
            registry=r,
        )
        self.statements_waiting = Gauge(
            "notifier_statements_waiting",
            "Monthly statements kept for a party not in the directory (not registered).",
            ["party_kind"],
            registry=r,
        )
        for kind in PARTY_KINDS:  # every series exists from the start (increase() needs a 0)
            for channel in ("email", "webhook"):
                self.statements_sent.labels(kind, channel)
                self.statements_failed.labels(kind, channel)
        self.store_errors = Counter(
            "notifier_store_errors_total",
            "Messages not settled because the store or NATS failed.",
            registry=r,
        )

    def sent(self, channel: Channel) -> None:
        self.alerts_sent.labels(channel).inc()

    def failed(self, channel: Channel, reason: str) -> None:
        self.alerts_failed.labels(channel, reason).inc()

    def retried(self, channel: Channel) -> None:
        self.retries.labels(channel).inc()

    def send_seconds(self, channel: Channel, seconds: float) -> None:
        self.send_duration.labels(channel).observe(seconds)

    def duplicate(self, channel: Channel) -> None:
        self.duplicates.labels(channel).inc()

    def event(self, kind: str, state: str) -> None:
        self.events.labels(kind if kind in KNOWN_KINDS else "other", state).inc()

    def statement_sent(self, party_kind: PartyKind, channel: Channel) -> None:
        self.statements_sent.labels(party_kind, channel).inc()

    def statement_failed(self, party_kind: PartyKind, channel: Channel) -> None:
        self.statements_failed.labels(party_kind, channel).inc()

    def statement_backlog(self, backlog: StatementBacklog, now: datetime) -> None:
        """Set the statement gauges from the store's figures."""
        for kind in PARTY_KINDS:
            self.statements_pending.labels(kind).set(backlog.unsettled.get(kind, 0))
            self.statements_waiting.labels(kind).set(backlog.waiting.get(kind, 0))
        oldest = backlog.oldest_unsettled
        self.statements_pending_age.set(0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
