"""`ledger audit verify` on a SQLite store: an untouched log verifies; every kind of tampering
is found at the right position with the right kind."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_NAMES, EXAMPLES


def cli(store: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "LEDGER_STORE_URL": f"sqlite:///{store}"}
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", *args],
        capture_output=True,
        check=False,
        env=env,
        timeout=120,
    )


def verify(store: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(store, "audit", "verify", "--format", "json", *args)
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite3"
    proc = cli(path, "ingest", *(str(EXAMPLES / f"{n}.jsonl") for n in EXAMPLE_NAMES))
    assert proc.returncode == 0, proc.stderr
    return path


def rows(store: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(store) as db:
        return [
            (v, s.decode() if isinstance(s, bytes) else s)
            for v, s in db.execute(
                "SELECT originator_version, state FROM stored_events ORDER BY originator_version"
            )
        ]


def set_state(store: Path, position: int, state: str) -> None:
    with sqlite3.connect(store) as db:
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = ?", (state.encode(), position)
        )


def kinds(result: dict[str, Any]) -> list[tuple[int, str]]:
    return [(f["position"], f["kind"]) for f in result["faults"]]


def test_untouched_store_verifies(store: Path) -> None:
    """A store nobody touched verifies: exit 0, chain and projections hold."""
    code, result = verify(store)
    assert code == 0 and result["ok"] and result["facts"] == 30
    assert result["head"]["position"] == 30


def test_altered_fact_is_found_at_its_position(store: Path) -> None:
    """Changing one amount inside a stored fact is reported as fact_altered at that position."""
    position, state = next(r for r in rows(store) if "2594.40" in r[1])
    set_state(store, position, state.replace("2594.40", "2494.40"))
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(position, "fact_altered")]


def test_altered_fact_with_recomputed_digest_breaks_the_chain(store: Path) -> None:
    """A forger who also fixes the fact's digest still breaks the chain at that position."""
    from ledger.application.chain import fact_digest

    position, state = next(r for r in rows(store) if "1000.00" in r[1])
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace("1000.00", "9000.00")
    doc["fact_digest"] = fact_digest(doc["envelope_json"].encode())
    set_state(store, position, json.dumps(doc))
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(position, "hash_mismatch")]


def test_deleted_fact_is_a_gap(store: Path) -> None:
    """Deleting a fact in the middle is reported as sequence_gap at the missing position."""
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM stored_events WHERE originator_version = 12")
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(12, "sequence_gap")]


def test_truncated_log_is_caught_by_a_checkpoint(store: Path) -> None:
    """Deleting the last fact leaves no gap, but a checkpoint taken earlier shows it missing."""
    head = verify(store)[1]["head"]
    with sqlite3.connect(store) as db:
        db.execute("DELETE FROM stored_events WHERE originator_version = 30")
    code, result = verify(store, "--against", f"{head['position']}:{head['hash']}")
    assert code == 1 and kinds(result) == [(30, "fact_missing")]


def test_checkpoint_mismatch(store: Path, tmp_path: Path) -> None:
    """A checkpoint (file form) whose hash differs from the log's is reported."""
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({"position": 10, "hash": "f" * 64}))
    code, result = verify(store, "--against", str(checkpoint))
    assert code == 1 and kinds(result) == [(10, "checkpoint_mismatch")]
    good_hash = next(iter(json.loads(json.dumps(verify(store)[1]))["head"].values()))
    assert good_hash == 30


def test_swapped_facts_are_found(store: Path) -> None:
    """Swapping two stored facts breaks the chain at both positions."""
    all_rows = rows(store)
    (p1, s1), (p2, s2) = all_rows[7], all_rows[8]
    set_state(store, p1, s2)
    set_state(store, p2, s1)
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(p1, "hash_mismatch"), (p2, "hash_mismatch")]


def test_fact_appended_without_its_hash_is_found(store: Path) -> None:
    """A fact appended by hand with an empty hash is a hash_mismatch at its position; one with
    no hash field at all is unreadable there."""
    from ledger.application.chain import fact_digest

    _, state = rows(store)[-1]
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace("pt-1", "pt-forged")
    doc["fact_digest"] = fact_digest(doc["envelope_json"].encode())
    doc["chain_hash"] = ""
    with sqlite3.connect(store) as db:
        originator, topic = db.execute("SELECT originator_id, topic FROM stored_events LIMIT 1").fetchone()
        db.execute(
            "INSERT INTO stored_events VALUES (?,?,?,?)", (originator, 31, topic, json.dumps(doc).encode())
        )
        del doc["chain_hash"]
        db.execute(
            "INSERT INTO stored_events VALUES (?,?,?,?)", (originator, 32, topic, json.dumps(doc).encode())
        )
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(31, "hash_mismatch"), (32, "fact_unreadable")]


def test_service_refuses_to_build_on_a_broken_chain(store: Path) -> None:
    """`ledger report` from a tampered store fails with a clear message instead of wrong figures."""
    position, state = next(r for r in rows(store) if "2594.40" in r[1])
    set_state(store, position, state.replace("2594.40", "2494.40"))
    proc = cli(store, "report", "--format", "json")
    assert proc.returncode != 0
    assert b"audit verify" in proc.stderr
