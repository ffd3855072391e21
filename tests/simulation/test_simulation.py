"""The seeded simulation: thousands of seeds of redelivery, duplication, re-ordering, lost
acks and crashes between any two steps keep every invariant."""

from __future__ import annotations

import pytest

from ledger.application.ledger import Ledger
from tests.simulation.simulator import CRASH_POINTS, Simulation, run_seed

SEEDS_PER_CHUNK = 250
CHUNKS = 8  # 2,000 seeds in the test suite; `scripts/soak` runs many more


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_invariants_hold_for_every_seed(chunk: int) -> None:
    """For each seed the five invariants hold (see tests/simulation/simulator.py)."""
    for seed in range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK):
        run_seed(seed)


def test_every_crash_point_is_exercised() -> None:
    """The seeds do crash the process at every point between two steps."""
    seen: set[str] = set()
    for seed in range(300):
        simulation = Simulation(seed, crash_rate=0.1)
        simulation.run()
        seen |= set(simulation.world.crashes)
    assert seen == set(CRASH_POINTS)


def test_a_seed_replays_exactly() -> None:
    """The same seed gives the same run, step for step."""
    first, second = Simulation(1234), Simulation(1234)
    a, b = first.run(), second.run()
    assert a == b
    assert first.world.out.keys() == second.world.out.keys()


def test_the_simulation_catches_a_broken_idempotency(monkeypatch: pytest.MonkeyPatch) -> None:
    """With envelope-id de-duplication switched off, redelivered messages are caught as
    facts stored twice or figures that differ: the simulation can fail."""
    original = Ledger._decide

    def forgetful(self: Ledger, parsed: object) -> object:
        self.index.envelope_ids.clear()
        self.index.keys.clear()
        return original(self, parsed)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "_decide", forgetful)
    with pytest.raises(AssertionError):
        for seed in range(50):
            run_seed(seed)
