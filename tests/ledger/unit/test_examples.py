"""The worked examples of the spec replay to their expected figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_NAMES, EXAMPLES


def _subset(actual: Any, expected: Any, where: str = "$") -> None:
    """Every key and list item the expectation lists must be in the report, equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), where
        for key, value in expected.items():
            assert key in actual, f"{where}.{key} missing"
            _subset(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: {actual!r} vs {expected!r}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _subset(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def run_report(*args: str) -> tuple[dict[str, Any], bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "report", *args],
        capture_output=True,
        check=True,
        timeout=120,
    )
    return json.loads(proc.stdout), proc.stdout


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_worked_example_replays_to_expected_figures(name: str) -> None:
    """`ledger report --events` on each worked example gives the hand-worked figures."""
    expected = json.loads((EXAMPLES / f"{name}.expected.json").read_text())
    report, _ = run_report("--events", str(EXAMPLES / f"{name}.jsonl"), "--format", "json")
    _subset(report, expected)
    assert report["rejected"] == []
    for currency, sums in report["trial_balance"].items():
        assert sums["debits"] == sums["credits"], currency


def test_replaying_twice_is_byte_identical(tmp_path: Path) -> None:
    """Replaying the same file twice gives byte-identical JSON."""
    history = tmp_path / "all.jsonl"
    history.write_bytes(b"".join((EXAMPLES / f"{n}.jsonl").read_bytes() for n in EXAMPLE_NAMES))
    _, first = run_report("--events", str(history), "--format", "json")
    _, second = run_report("--events", str(history), "--format", "json")
    assert first == second
    assert json.loads(first)["summary"]["accepted"] == sum(
        len((EXAMPLES / f"{n}.jsonl").read_text().splitlines()) for n in EXAMPLE_NAMES
    )
