"""A seeded simulation of the ledger's processing (in the spirit of TigerBeetle's VOPR).

One seed drives everything: the history sent (valid facts, bad messages, re-sent facts),
a fake JetStream (redelivery of unacked messages, duplicate deliveries, re-ordered batches,
lost acks), a fake LEDGER_OUT with de-duplication by message id, and crashes injected
between any two steps of the real :class:`~ledger.application.pipeline.Pipeline` (before
store, after store before ack, during ack, before publish, mid-publish, before and after the
published position is recorded). The store survives crashes; the process state does not.

After the run the invariants are checked:

1. the live report equals a clean replay of the stored facts, and of the input;
2. every accepted fact is stored exactly once (envelope ids and business keys unique);
3. LEDGER_OUT holds exactly the derived events of the stored log, each id once;
4. the trial balance holds;
5. the published deltas add up to the report's figures.

A failing seed is printed and replays exactly: ``python -m tests.simulation.simulator --seed N``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bench.history import generate

from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.application.audit import compare_projections
from ledger.application.derive import DerivedEvent, Deriver
from ledger.application.ledger import Ledger, fact_from_envelope
from ledger.application.pipeline import Pipeline
from ledger.application.report import render_report
from ledger.bootstrap import build_ephemeral_ledger
from tests.support.figures import FIGURES

CRASH_POINTS = (
    "before_store",
    "after_store",
    "during_ack",
    "before_publish",
    "mid_publish",
    "before_track",
    "after_track",
)


class Crash(Exception):
    """The simulated process dies here."""


@dataclass
class Message:
    seq: int
    raw: bytes


@dataclass
class World:
    """What survives a crash: the store, the inbound stream and its acks, LEDGER_OUT."""

    store: EventSourcedFactStore
    stream: list[Message] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    out: dict[str, DerivedEvent] = field(default_factory=dict)
    publishes: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0


@dataclass
class Stats:
    seed: int
    messages: int
    stored: int
    derived: int
    crashes: int
    redeliveries: int
    steps: int


def _inputs(rng: random.Random) -> list[bytes]:
    """The messages a producer sends: a valid history, some bad lines, re-sent facts."""
    lines = [line.encode() for line in generate(rng.randint(15, 60), rng.randrange(1 << 30))]
    bad = [
        b"not json",
        b'{"specversion":"1.0"}',
        json.dumps(
            {
                "specversion": "1.0",
                "id": "bad-float",
                "source": "sim",
                "type": "coop.ledger.payment.received.v1",
                "data": {"payment_id": "p-x", "invoice_id": "i", "date": "2025-01-01", "amount": 1.5},
            }
        ).encode(),
    ]
    out = list(lines)
    for raw in rng.sample(bad, rng.randint(0, len(bad))):
        out.insert(rng.randrange(len(out) + 1), raw)
    for _ in range(rng.randint(0, 4)):  # the same fact again under a new envelope id
        doc = json.loads(rng.choice(lines))
        doc["id"] = f"resent-{rng.randrange(1 << 30)}"
        out.insert(rng.randrange(len(out) + 1), json.dumps(doc).encode())
    for _ in range(rng.randint(0, 3)):  # the very same envelope again
        out.insert(rng.randrange(len(out) + 1), rng.choice(lines))
    return out


class Simulation:
    def __init__(self, seed: int, crash_rate: float = 0.05) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.crash_rate = crash_rate
        self.inputs = _inputs(self.rng)
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.world = World(EventSourcedFactStore({"PERSISTENCE_MODULE": "eventsourcing.popo"}))
        self.pipeline = self._boot()
        self.in_flight: set[int] = set()
        self.steps = 0

    def _now(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def _boot(self) -> Pipeline:
        pipeline = Pipeline(
            Ledger(self.world.store, self._now),
            self.world.store,
            chunk_positions=self.rng.choice([1, 3, 10, 500]),
        )
        pipeline.recover()
        return pipeline

    def _maybe_crash(self, point: str) -> None:
        if self.rng.random() < self.crash_rate:
            self.world.crashes[point] += 1
            raise Crash(point)

    # the fake transport -----------------------------------------------------------------

    def _publish_inputs(self) -> None:
        for _ in range(self.rng.randint(1, 5)):
            if len(self.world.stream) < len(self.inputs):
                raw = self.inputs[len(self.world.stream)]
                self.world.stream.append(Message(len(self.world.stream) + 1, raw))

    def _deliver(self) -> list[Message]:
        waiting = [m for m in self.world.stream if m.seq not in self.world.acked]
        fresh = [m for m in waiting if m.seq not in self.in_flight]
        # unacked messages in flight time out and come again; sometimes a message twice
        pool = fresh if fresh and self.rng.random() < 0.8 else waiting
        if not pool:
            return []
        batch = pool[: self.rng.randint(1, 8)]
        if self.rng.random() < 0.3:
            self.rng.shuffle(batch)
        if self.rng.random() < 0.1:
            batch.append(self.rng.choice(batch))
        self.world.deliveries += len(batch)
        return batch

    # one step of the process --------------------------------------------------------------

    def _inbound_step(self) -> None:
        batch = self._deliver()
        if not batch:
            return
        self.in_flight.update(m.seq for m in batch)
        self._maybe_crash("before_store")
        self.pipeline.ingest([m.raw for m in batch])
        self._maybe_crash("after_store")
        for message in batch:
            if self.rng.random() < 0.05:
                continue  # the ack is lost on the way: redelivered later
            self.world.acked.add(message.seq)
            self.in_flight.discard(message.seq)
            self._maybe_crash("during_ack")

    def _outbox_step(self) -> None:
        chunk = self.pipeline.outbox_chunk()
        if chunk is None:
            return
        self._maybe_crash("before_publish")
        for event in chunk.events:
            self.world.publishes[event.id] += 1
            previous = self.world.out.setdefault(event.id, event)  # JetStream's Nats-Msg-Id dedupe
            assert previous == event, f"two different events under id {event.id}"
            self._maybe_crash("mid_publish")
        self._maybe_crash("before_track")
        self.pipeline.outbox_done(chunk)
        self._maybe_crash("after_track")

    def run(self, max_steps: int = 20_000) -> Stats:
        while True:
            self.steps += 1
            assert self.steps < max_steps, f"seed {self.seed}: no progress after {max_steps} steps"
            done_publishing = len(self.world.stream) == len(self.inputs)
            all_acked = len(self.world.acked) == len(self.world.stream)
            try:
                if done_publishing and all_acked:
                    if self.pipeline.outbox_chunk() is None:
                        break
                    self._outbox_step()
                    continue
                choice = self.rng.random()
                if choice < 0.3 and not done_publishing:
                    self._publish_inputs()
                elif choice < 0.8:
                    self._inbound_step()
                else:
                    self._outbox_step()
            except Crash:
                self.in_flight.clear()  # the new process knows nothing of earlier deliveries
                self.pipeline = self._boot()
        self.check()
        return Stats(
            self.seed,
            len(self.inputs),
            self.pipeline.ledger.head_position,
            len(self.world.out),
            sum(self.world.crashes.values()),
            self.world.deliveries - len(self.world.stream),
            self.steps,
        )

    # invariants ---------------------------------------------------------------------------

    def check(self) -> None:
        ledger = self.pipeline.ledger
        stored = list(ledger.stored_facts())
        envelopes = [s.envelope for s in stored]
        where = f"seed {self.seed}"
        # 2. every accepted fact stored once
        ids = [e["id"] for e in envelopes]
        assert len(ids) == len(set(ids)), f"{where}: an envelope id was stored twice"
        keys = [fact_from_envelope(e).key for e in envelopes]
        assert len(keys) == len(set(keys)), f"{where}: a business key was stored twice"
        clean = build_ephemeral_ledger()
        clean.ingest(self.inputs)
        assert clean.head_position == len(stored), (
            f"{where}: {len(stored)} facts stored, a clean run accepts {clean.head_position}"
        )
        # 1. the live report equals clean replays (figures do not depend on arrival order)
        live = render_report(ledger.books(), head_position=ledger.head_position, head_hash=ledger.head_hash)
        replay = build_ephemeral_ledger()
        replay.ingest([s.envelope_json for s in stored])
        again = render_report(replay.books(), head_position=replay.head_position, head_hash=replay.head_hash)
        from_input = render_report(
            clean.books(), head_position=clean.head_position, head_hash=clean.head_hash
        )
        for key in FIGURES:
            assert live[key] == again[key], f"{where}: {key} differs from a replay of the stored facts"
            assert live[key] == from_input[key], f"{where}: {key} differs from a clean run of the input"
        assert live["head"] == again["head"], f"{where}: the chain head differs from a replay"
        # 3. LEDGER_OUT holds exactly the derived events of the stored log, each once
        deriver = Deriver()
        expected = [e for p, f in enumerate(ledger.index.by_position, start=1) for e in deriver.advance(p, f)]
        assert {e.id: e for e in expected} == self.world.out, (
            f"{where}: LEDGER_OUT differs from the log's events"
        )
        # 4. trial balance; 5. published deltas add up to the figures
        for currency, sums in live["trial_balance"].items():
            assert sums["debits"] == sums["credits"], f"{where}: trial balance off in {currency}"
        faults = compare_projections(list(ledger.index.by_position))
        assert not faults, f"{where}: {faults[:3]}"


def run_seed(seed: int, crash_rate: float = 0.05) -> Stats:
    return Simulation(seed, crash_rate).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", type=int, default=1000, help="how many seeds (from --first)")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--crash-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    started = time.perf_counter()
    totals: Counter[str] = Counter()
    for seed in seeds:
        try:
            stats = run_seed(seed, args.crash_rate)
        except AssertionError as exc:
            print(f"FAILED seed {seed}: {exc}\nreplay: python -m tests.simulation.simulator --seed {seed}")
            return 1
        totals.update(
            {
                "seeds": 1,
                "messages": stats.messages,
                "stored": stats.stored,
                "derived": stats.derived,
                "crashes": stats.crashes,
                "redeliveries": stats.redeliveries,
            }
        )
        if totals["seeds"] % 1000 == 0:
            print(
                f"{totals['seeds']} seeds, {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True
            )
    elapsed = time.perf_counter() - started
    print(
        f"{totals['seeds']} seeds in {elapsed:.1f}s: {totals['messages']} messages, {totals['stored']} facts stored, "
        f"{totals['derived']} derived events, {totals['crashes']} crashes injected, "
        f"{totals['redeliveries']} redeliveries; every invariant held"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
