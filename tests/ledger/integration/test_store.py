"""The event store (SQLite and PostgreSQL) through the CLI: ingest is append-only and idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_NAMES, EXAMPLES, envelope
from tests.support.stores import StoreUnderTest


def ledger(*args: str, store: StoreUnderTest, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    environ = {**os.environ, "LEDGER_STORE_URL": store.url}
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", *args],
        capture_output=True,
        check=check,
        env=environ,
        timeout=120,
    )


def report(store: StoreUnderTest, *args: str) -> dict[str, Any]:
    return json.loads(ledger("report", "--format", "json", *args, store=store).stdout)


def test_ingest_then_report_equals_replay(tmp_path: Path, store: StoreUnderTest) -> None:
    """`ledger ingest` + `ledger report` give the same figures as `report --events`."""
    files = [str(EXAMPLES / f"{n}.jsonl") for n in EXAMPLE_NAMES]
    out = json.loads(ledger("ingest", *files, store=store).stdout)
    assert out["accepted"] == out["head_position"] > 0
    live = report(store)
    combined = tmp_path / "all.jsonl"
    combined.write_bytes(b"".join(Path(f).read_bytes() for f in files))
    replay = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "ledger.entrypoints.cli",
                "report",
                "--events",
                str(combined),
                "--format",
                "json",
            ],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
    )
    for key in ("introductions", "commissions", "balances", "donations", "rebates", "trial_balance"):
        assert live[key] == replay[key], key
    # the chain covers the stored bytes, personal fields sealed: the plaintext input replays to
    # the same position, the export (what an auditor gets) to the same head
    assert live["head"]["position"] == replay["head"]["position"]
    exported = tmp_path / "export.jsonl"
    exported.write_bytes(ledger("export", "--format", "cloudevents", store=store).stdout)
    assert report(store, "--events", str(exported))["head"] == live["head"]


def test_ingest_twice_changes_nothing(tmp_path: Path, store: StoreUnderTest) -> None:
    """Re-running ingest on the same file stores nothing new (idempotent by envelope id)."""
    path = EXAMPLES / "01-standard-introduction.jsonl"
    first = json.loads(ledger("ingest", str(path), store=store).stdout)
    before = report(store)
    second = json.loads(ledger("ingest", str(path), store=store).stdout)
    assert second["accepted"] == 0 and second["duplicates"] == first["accepted"]
    assert second["head_position"] == first["head_position"]
    assert report(store) == before
    assert store.count() == first["accepted"]


def test_conflicting_business_id_is_refused_and_the_first_stands(
    tmp_path: Path, store: StoreUnderTest
) -> None:
    """The same invoice id with different data under a new envelope id is a conflict."""
    data = {
        "invoice_id": "I-1",
        "adviser_id": "a",
        "client_id": "c",
        "issue_date": "2025-01-10",
        "currency": "CHF",
        "net_amount": "100.00",
    }
    first = tmp_path / "first.jsonl"
    first.write_text(envelope("invoice.issued", data, id="e-1") + "\n")
    again = tmp_path / "again.jsonl"
    again.write_text(
        envelope("invoice.issued", data, id="e-2")
        + "\n"
        + envelope("invoice.issued", {**data, "net_amount": "999.00"}, id="e-3")
        + "\n"
    )
    ledger("ingest", str(first), store=store)
    proc = ledger("ingest", str(again), store=store)
    summary = json.loads(proc.stdout)
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (0, 1, 1)
    assert b"conflict" in proc.stderr and b":2:" in proc.stderr


def test_report_as_of_and_at_position(tmp_path: Path, store: StoreUnderTest) -> None:
    """A store report can be taken as of a business day or of a log position."""
    ledger("ingest", str(EXAMPLES / "01-standard-introduction.jsonl"), store=store)
    early = report(store, "--as-of", "2025-06-30")
    assert [c["invoice_id"] for c in early["commissions"]] == ["2025-0311"]
    assert early["balances"][0]["paid"] == "200.00"
    at3 = report(store, "--at-position", "3")
    assert at3["head"]["position"] == 3
    assert [c["invoice_id"] for c in at3["commissions"]] == ["2025-0311"]
    assert at3["commissions"][0]["payable"] == "0.00"


def test_bad_store_url_is_a_clear_error(tmp_path: Path) -> None:
    """An unsupported store URL fails with a message naming the variable."""
    environ = {**os.environ, "LEDGER_STORE_URL": "mysql://x"}
    proc = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "report"],
        capture_output=True,
        check=False,
        env=environ,
        timeout=60,
    )
    assert proc.returncode != 0
    assert b"LEDGER_STORE_URL" in proc.stderr


def test_unreachable_postgres_is_a_clear_error() -> None:
    """A PostgreSQL store that cannot be reached fails fast with a readable message."""
    environ = {
        **os.environ,
        "LEDGER_STORE_URL": "postgresql://nobody:pw@127.0.0.1:9/none",
        "LEDGER_POSTGRES_CONNECT_TIMEOUT_S": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", "report"],
        capture_output=True,
        check=False,
        env=environ,
        timeout=120,
    )
    assert proc.returncode != 0
    assert b"127.0.0.1" in proc.stderr and b"Traceback" not in proc.stderr
