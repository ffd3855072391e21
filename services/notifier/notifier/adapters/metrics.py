"""Prometheus metrics of the notifier (no person ids as labels; reasons are bounded codes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from notifier.domain.events import KNOWN_KINDS, Channel

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
