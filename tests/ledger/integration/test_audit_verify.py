"""`ledger audit verify` on SQLite and PostgreSQL stores: an untouched log verifies; every kind
of tampering is found at the right position with the right kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.support.stores import StoreUnderTest


def cli(store: StoreUnderTest, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "LEDGER_STORE_URL": store.url}
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", *args],
        capture_output=True,
        check=False,
        env=env,
        timeout=120,
    )


def verify(store: StoreUnderTest, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(store, "audit", "verify", "--format", "json", *args)
    assert proc.stdout, proc.stderr.decode()[-2000:]
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture
def filled(store: StoreUnderTest) -> StoreUnderTest:
    proc = cli(store, "ingest", *(str(EXAMPLES / f"{n}.jsonl") for n in EXAMPLE_NAMES))
    assert proc.returncode == 0, proc.stderr
    return store


def rows(store: StoreUnderTest) -> list[tuple[int, str]]:
    return store.rows()


def set_state(store: StoreUnderTest, position: int, state: str) -> None:
    store.set_state(position, state)


def kinds(result: dict[str, Any]) -> list[tuple[int, str]]:
    return [(f["position"], f["kind"]) for f in result["faults"]]


def test_untouched_store_verifies(filled: StoreUnderTest) -> None:
    """A store nobody touched verifies: exit 0, chain and projections hold."""
    store = filled
    code, result = verify(store)
    assert code == 0 and result["ok"] and result["facts"] == 30
    assert result["head"]["position"] == 30


def test_altered_fact_is_found_at_its_position(filled: StoreUnderTest) -> None:
    """Changing one amount inside a stored fact is reported as fact_altered at that position."""
    store = filled
    position, state = next(r for r in rows(store) if "2594.40" in r[1])
    set_state(store, position, state.replace("2594.40", "2494.40"))
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(position, "fact_altered")]


def test_altered_fact_with_recomputed_digest_breaks_the_chain(filled: StoreUnderTest) -> None:
    """A forger who also fixes the fact's digest still breaks the chain at that position."""
    store = filled
    from ledger.application.chain import fact_digest

    position, state = next(r for r in rows(store) if "1000.00" in r[1])
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace("1000.00", "9000.00")
    doc["fact_digest"] = fact_digest(doc["envelope_json"].encode())
    set_state(store, position, json.dumps(doc))
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(position, "hash_mismatch")]


def test_deleted_fact_is_a_gap(filled: StoreUnderTest) -> None:
    """Deleting a fact in the middle is reported as sequence_gap at the missing position."""
    store = filled
    store.delete(12)
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(12, "sequence_gap")]


def test_truncated_log_is_caught_by_a_checkpoint(filled: StoreUnderTest) -> None:
    """Deleting the last fact leaves no gap, but a checkpoint taken earlier shows it missing."""
    store = filled
    head = verify(store)[1]["head"]
    store.delete(30)
    code, result = verify(store, "--against", f"{head['position']}:{head['hash']}")
    assert code == 1 and kinds(result) == [(30, "fact_missing")]


def test_checkpoint_mismatch(filled: StoreUnderTest, tmp_path: Path) -> None:
    """A checkpoint (file form) whose hash differs from the log's is reported."""
    store = filled
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps({"position": 10, "hash": "f" * 64}))
    code, result = verify(store, "--against", str(checkpoint))
    assert code == 1 and kinds(result) == [(10, "checkpoint_mismatch")]
    good_hash = next(iter(json.loads(json.dumps(verify(store)[1]))["head"].values()))
    assert good_hash == 30


def test_swapped_facts_are_found(filled: StoreUnderTest) -> None:
    """Swapping two stored facts breaks the chain at both positions."""
    store = filled
    all_rows = rows(store)
    (p1, s1), (p2, s2) = all_rows[7], all_rows[8]
    set_state(store, p1, s2)
    set_state(store, p2, s1)
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(p1, "hash_mismatch"), (p2, "hash_mismatch")]


def test_fact_appended_without_its_hash_is_found(filled: StoreUnderTest) -> None:
    """A fact appended by hand with an empty hash is a hash_mismatch at its position; one with
    no hash field at all is unreadable there."""
    store = filled
    from ledger.application.chain import fact_digest

    _, state = rows(store)[-1]
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace("pt-1", "pt-forged")
    doc["fact_digest"] = fact_digest(doc["envelope_json"].encode())
    doc["chain_hash"] = ""
    store.append_raw(31, json.dumps(doc))
    del doc["chain_hash"]
    store.append_raw(32, json.dumps(doc))
    code, result = verify(store)
    assert code == 1 and kinds(result) == [(31, "hash_mismatch"), (32, "fact_unreadable")]


def test_service_refuses_to_build_on_a_broken_chain(filled: StoreUnderTest) -> None:
    """`ledger report` from a tampered store fails with a clear message instead of wrong figures."""
    store = filled
    position, state = next(r for r in rows(store) if "2594.40" in r[1])
    set_state(store, position, state.replace("2594.40", "2494.40"))
    proc = cli(store, "report", "--format", "json")
    assert proc.returncode != 0
    assert b"audit verify" in proc.stderr


def test_chain_only_split_over_processes_finds_what_the_full_verify_finds(filled: StoreUnderTest) -> None:
    """`--chain-only --workers 3` (three children, each on its own connection) verifies an
    untouched store to the same head, then finds the same faults as the full verify after an
    alteration, a deletion and a forged digest in different parts, and a checkpoint mismatch."""
    store = filled
    from ledger.application.chain import fact_digest

    code, whole = verify(store)
    code_parts, split = verify(store, "--chain-only", "--workers", "3")
    assert code == code_parts == 0 and split["ok"] and split["head"] == whole["head"] and split["facts"] == 30
    all_rows = rows(store)
    position, state = all_rows[3]
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace('"id":"', '"id":"x', 1)
    set_state(store, position, json.dumps(doc))
    store.delete(12)
    position, state = all_rows[24]
    doc = json.loads(state)
    doc["envelope_json"] = doc["envelope_json"].replace('"id":"', '"id":"y', 1)
    doc["fact_digest"] = fact_digest(doc["envelope_json"].encode())
    set_state(store, position, json.dumps(doc))
    against = ("--against", f"20:{'e' * 64}")
    code, whole = verify(store, *against)
    code_parts, split = verify(store, "--chain-only", "--workers", "3", *against)
    assert code == code_parts == 1
    assert (
        kinds(split)
        == kinds(whole)
        == [
            (4, "fact_altered"),
            (12, "sequence_gap"),
            (25, "hash_mismatch"),
            (20, "checkpoint_mismatch"),  # (the log's own faults first, then the checkpoints')
        ]
    )


def test_chain_only_refuses_options_it_does_not_check(filled: StoreUnderTest) -> None:
    """`--chain-only` with --statements-from-scratch is a usage error, not a silent no-op."""
    proc = cli(filled, "audit", "verify", "--chain-only", "--statements-from-scratch")
    assert proc.returncode == 2 and b"--chain-only" in proc.stderr
