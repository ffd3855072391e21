"""Retry back-off: exponential ceilings, capped, jittered downwards, bounded in total."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifier.domain.backoff import RetryPolicy, backoff_delay


def test_ceilings_double_then_cap() -> None:
    """Without jitter the waits are base, 2 base, 4 base, ... up to the cap."""
    assert [backoff_delay(n, 1.0, 10.0, 0.0, 0.5) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@given(
    attempt=st.integers(1, 200),
    base=st.floats(0.001, 10),
    cap_factor=st.floats(1, 1000),
    jitter=st.floats(0, 1),
    u=st.floats(0, 1, exclude_max=True),
)
def test_delay_is_within_jitter_band(
    attempt: int, base: float, cap_factor: float, jitter: float, u: float
) -> None:
    """Every delay lies in [ceiling x (1 - jitter), ceiling] and never above the cap."""
    cap = base * cap_factor
    ceiling = min(cap, base * 2 ** min(attempt - 1, 62))
    delay = backoff_delay(attempt, base, cap, jitter, u)
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_policy_bounds_total_wait() -> None:
    """A round of N attempts waits N-1 times, at most the sum of the ceilings."""
    policy = RetryPolicy(max_attempts=5, base_s=0.5, max_s=3.0, jitter=0.5)
    assert policy.worst_case_wait_s() == 0.5 + 1 + 2 + 3
    assert all(policy.delay(n, 0.999) >= policy.delay(n, 0.0) * 0.5 for n in range(1, 5))


@pytest.mark.parametrize("bad", [{"max_attempts": 0}, {"max_attempts": 51}, {"base_s": 5.0, "max_s": 1.0}])
def test_policy_refuses_unbounded_settings(bad: dict[str, float]) -> None:
    """Attempts are bounded (1-50) and the cap is not below the base."""
    args = {"max_attempts": 3, "base_s": 1.0, "max_s": 2.0, "jitter": 0.1} | bad
    with pytest.raises(AssertionError):
        RetryPolicy(**args)  # type: ignore[arg-type]
