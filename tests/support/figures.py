"""What "the same figures" means in the end-to-end and simulation tests: the report keys that
must equal a clean replay, and the offline replay to compare with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "assert_same_figures", "offline_report"]

#: Report keys that are a pure function of the stored facts (not `head`: the chain follows
#: arrival order, and not `rejected`/`summary`: they describe one run's input).
FIGURES = (
    "introductions",
    "commissions",
    "balances",
    "donations",
    "rebates",
    "margins",
    "rebate_shares",
    "trial_balance",
    "anomalies",
)


def offline_report(path: Path) -> dict[str, Any]:
    """`ledger report --events PATH --format json`, as an auditor would run it."""
    from tests.support.servers import run_cli

    return dict(json.loads(run_cli("report", "--events", str(path), "--format", "json").stdout))


def assert_same_figures(live: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every figure of ``live`` equals ``expected``'s, naming the first that differs."""
    for key in FIGURES:
        assert live[key] == expected[key], key
