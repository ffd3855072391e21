"""`ledger report --events` on files with bad lines, and the table output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES


def report(path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "report", "--events", str(path), *args],
        capture_output=True,
        check=False,
        timeout=120,
    )


def test_bad_lines_are_listed_and_the_rest_still_counts(tmp_path: Path) -> None:
    """Each malformed line is listed under `rejected` with its number, id and reason; the valid
    lines around it give the same figures as the clean file."""
    good = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    first = json.loads(good[2])
    bad = {
        "not json {": "invalid_json",
        json.dumps(
            {**first, "id": "b-float", "data": {**first["data"], "invoice_id": "x1", "net_amount": 12.5}}
        ): "money_as_number",
        json.dumps(
            {**first, "id": "b-neg", "data": {**first["data"], "invoice_id": "x2", "net_amount": "-1.00"}}
        ): "negative_amount",
        json.dumps(
            {**first, "id": "b-dec", "data": {**first["data"], "invoice_id": "x3", "net_amount": "1.001"}}
        ): "too_many_decimals",
        json.dumps({**first, "id": "b-type", "type": "coop.ledger.invoice.voided.v1"}): "unknown_type",
        json.dumps(
            {**first, "id": "b-cur", "data": {**first["data"], "invoice_id": "x4", "currency": "ZZZ"}}
        ): "unknown_currency",
        json.dumps({**first, "id": "b-wrong", "data": {**first["data"], "invoice_id": 7}}): "wrong_type",
        json.dumps(
            {**first, "id": "b-conflict", "data": {**first["data"], "net_amount": "1.00"}}
        ): "conflict",
    }
    lines: list[str] = []
    expected: dict[int, str] = {}
    for i, line in enumerate(good):
        lines.append(line)
        if i < len(bad):
            text, reason = list(bad.items())[i]
            lines.append(text)
            expected[len(lines)] = reason
    lines.insert(3, "")  # a blank line is skipped, not refused
    expected = {(n + 1 if n >= 4 else n): r for n, r in expected.items()}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join(lines) + "\n")
    proc = report(mixed, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {r["line"]: r["reason"] for r in result["rejected"]} == expected
    assert all(r["message"] for r in result["rejected"])
    assert next(r for r in result["rejected"] if r["reason"] == "money_as_number")["id"] == "b-float"
    clean = json.loads(report(EXAMPLES / "01-standard-introduction.jsonl", "--format", "json").stdout)
    for key in ("commissions", "balances", "donations", "rebates", "trial_balance"):
        assert result[key] == clean[key], key
    assert result["summary"] == {
        "lines": len(good) + len(bad),
        "accepted": len(good),
        "duplicates": 0,
        "rejected": len(bad),
    }


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that cannot be read exits non-zero with a message naming it."""
    proc = report(tmp_path / "nope.jsonl")
    assert proc.returncode == 2
    assert b"nope.jsonl" in proc.stderr


def test_table_output_has_aligned_sections_and_totals() -> None:
    """`--format table` prints every section with per-currency totals, for people."""
    proc = report(EXAMPLES / "03-donation-and-rebates.jsonl", "--format", "table")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for title in ("Introductions", "Commissions", "Balances", "Donations", "Rebates", "Trial balance"):
        assert title in text
    assert "TOTAL" in text and "126.00" in text and "113.00" in text


def test_oversized_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """A line over the 64 KiB limit is refused as too_large; the next line still counts."""
    good = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    path = tmp_path / "big.jsonl"
    path.write_text(good[0] + "\n" + "x" * 200_000 + "\n" + "\n".join(good[1:]) + "\n")
    result = json.loads(report(path, "--format", "json").stdout)
    assert [(r["line"], r["reason"]) for r in result["rejected"]] == [(2, "too_large")]
    assert result["summary"]["accepted"] == len(good)
