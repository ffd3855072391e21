"""Prometheus metrics of the ledger service (no client or person ids as labels)."""

from __future__ import annotations

import gc

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

__all__ = ["LedgerMetrics"]

_BATCH_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class LedgerMetrics:
    """Every metric the ledger exports, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if registry is None:  # process_* (memory, CPU, file descriptors), python_* (GC, version)
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                r.register(collector)
        self.facts_accepted = Counter(
            "ledger_facts_accepted_total", "Facts stored, by type.", ["type"], registry=r
        )
        self.facts_duplicate = Counter(
            "ledger_facts_duplicate_total",
            "Messages that repeated a stored fact (no change), by type.",
            ["type"],
            registry=r,
        )
        self.facts_rejected = Counter(
            "ledger_facts_rejected_total",
            "Messages rejected and sent to ledger.rejected, by reason.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "ledger_batch_size_messages", "Messages per consumed batch.", buckets=_BATCH_SIZES, registry=r
        )
        self.batch_seconds = Histogram(
            "ledger_batch_duration_seconds",
            "Time to validate, store and ack one batch.",
            buckets=_SECONDS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "ledger_store_commit_duration_seconds",
            "Time of one event-store transaction.",
            buckets=_SECONDS,
            registry=r,
        )
        self.store_errors = Counter(
            "ledger_store_errors_total",
            "Batches not stored because the store failed (redelivered later).",
            registry=r,
        )
        self.stored_position = Gauge(
            "ledger_stored_position", "Position of the last stored fact.", registry=r
        )
        self.published_position = Gauge(
            "ledger_published_position", "Position up to which derived events are published.", registry=r
        )
        self.publish_lag = Gauge(
            "ledger_publish_lag_facts", "Stored position minus published position.", registry=r
        )
        self.derived_published = Counter(
            "ledger_derived_events_published_total",
            "Derived events published to LEDGER_OUT, by kind.",
            ["kind"],
            registry=r,
        )
        self.erasures_completed = Counter(
            "ledger_erasures_completed_total",
            "Erasures completed (streams scrubbed, the person's data key destroyed).",
            registry=r,
        )
        self.scrubbed_messages = Counter(
            "ledger_scrubbed_messages_total",
            "Stream messages deleted because they held an erased person's data.",
            ["stream"],
            registry=r,
        )
        self.publish_errors = Counter(
            "ledger_publish_errors_total", "Failed attempts to publish derived events (retried).", registry=r
        )
        self.consumer_pending = Gauge(
            "ledger_consumer_pending_messages",
            "Messages of LEDGER_IN not yet delivered or not yet acked.",
            registry=r,
        )
        self.commission_accrued_minor = Counter(
            "ledger_commission_accrued_minor_total",
            "Commission amounts accrued (positive adjustments included), in minor units, by currency.",
            ["currency"],
            registry=r,
        )
        self.commission_reversed_minor = Counter(
            "ledger_commission_reversed_minor_total",
            "Commission amounts reduced by adjustments (credit notes, back-dated facts), in minor units.",
            ["currency"],
            registry=r,
        )
        self.queries = Counter(
            "ledger_queries_total",
            "Report queries served, by channel and view.",
            ["channel", "view"],
            registry=r,
        )
        self.checkpoints_published = Counter(
            "ledger_audit_checkpoints_published_total", "Chain-head checkpoints published.", registry=r
        )
        self.checkpoint_mismatch = Gauge(
            "ledger_checkpoint_mismatch",
            "1 when the stored chain does not match the last published checkpoint (the service "
            "then consumes nothing and is not ready).",
            registry=r,
        )
        self.consume_failures = Counter(
            "ledger_consume_failures_total",
            "Inbound batches not completed (nacked, redelivered later), by failing stage.",
            ["stage"],
            registry=r,
        )
        self.queries_refused = Counter(
            "ledger_queries_busy_total",
            "Report queries turned away because too many were in progress (HTTP 429), by channel.",
            ["channel"],
            registry=r,
        )
        self.heap_frozen = Gauge(
            "ledger_heap_frozen_objects",
            "Objects frozen out of the garbage collector's full passes (adapters/heap.py).",
            registry=r,
        )
        self.heap_frozen.set_function(gc.get_freeze_count)
        self.snapshots = Counter(
            "ledger_snapshots_total",
            "Snapshots taken, by outcome (written, personal_data: refused, failed).",
            ["outcome"],
            registry=r,
        )
        self.snapshots_refused = Counter(
            "ledger_snapshots_refused_total",
            "Snapshots not used at start-up (a full replay instead), by reason "
            "(corrupt, stale, chain_mismatch, failed).",
            ["reason"],
            registry=r,
        )
        self.snapshot_position = Gauge(
            "ledger_snapshot_position",
            "Log position of the last snapshot written or loaded.",
            registry=r,
        )
        self.snapshot_write_seconds = Gauge(
            "ledger_snapshot_write_seconds", "How long the last snapshot took to write.", registry=r
        )
        self.snapshot_load_seconds = Gauge(
            "ledger_snapshot_load_seconds",
            "How long loading the snapshot took at start-up (0: none loaded).",
            registry=r,
        )
