"""Retry policy: bounded attempts, exponential back-off with jitter (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy", "backoff_delay"]


def backoff_delay(attempt: int, base_s: float, max_s: float, jitter: float, u: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...).

    The ceiling doubles each time, ``min(max_s, base_s * 2**(attempt-1))``, and the delay
    is drawn in ``[ceiling * (1 - jitter), ceiling]`` by ``u`` in [0, 1): jitter spreads
    the retries of many alerts that failed together.
    """
    assert attempt >= 1, attempt
    assert 0.0 <= jitter <= 1.0, jitter
    assert 0.0 <= u < 1.0, u
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 62))
    return ceiling * (1.0 - jitter * u)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many attempts an alert gets per round, and the waits between them."""

    max_attempts: int
    base_s: float
    max_s: float
    jitter: float

    def __post_init__(self) -> None:
        assert 1 <= self.max_attempts <= 50, self.max_attempts
        assert 0 < self.base_s <= self.max_s, (self.base_s, self.max_s)

    def delay(self, attempt: int, u: float) -> float:
        return backoff_delay(attempt, self.base_s, self.max_s, self.jitter, u)

    def worst_case_wait_s(self) -> float:
        """Upper bound of the total back-off of one round (attempt time not included)."""
        return sum(self.delay(n, 0.0) for n in range(1, self.max_attempts))
