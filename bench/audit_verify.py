"""Benchmark of `ledger audit verify` on a SQLite store.

    .venv/bin/python bench/audit_verify.py [--facts 1000000] [--store PATH]

Generates a valid mixed history, ingests it into a SQLite store (or reuses --store if it
exists), then runs `ledger audit verify --chain-only` (the chain walk, split over one process per
CPU) and `ledger audit verify` (one process: the chain phase, then the contract check and the
projection replay) and prints facts/s for each, also as a ratio of the raw ceiling measured
in the same run: a plain ``sqlite3`` select of the same rows, one orjson parse of each and
one SHA-256 of each stored fact (no checks, no rules; one process).

With ``--closes`` a close of each month is inserted as the stream passes it. A store filled
by ``ledger ingest`` has no frozen statements (the service's outbox freezes them), so the
result lists them as ``statement_missing``; the full verify still recomputes every closed
month's statement, so its time is that of a served store.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.history import generate
from bench.periods import with_closes
from ledger.adapters.keyring import generate_master_key

BIN = Path(sys.executable).parent


def raw_ceiling(store: Path) -> tuple[int, float]:
    """Rows and seconds of: select every stored fact in order, parse, hash (same rows)."""
    started = time.perf_counter()
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    cursor = connection.execute(
        "SELECT state FROM stored_events WHERE topic LIKE '%FactRecorded' ORDER BY originator_version"
    )
    count = 0
    while rows := cursor.fetchmany(10_000):
        for (state,) in rows:
            hashlib.sha256(orjson.loads(state)["envelope_json"].encode("utf-8")).hexdigest()
        count += len(rows)
    connection.close()
    return count, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument(
        "--closes", action="store_true", help="close each month as the stream passes it (rules R9)"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ledger-verify-"))
    atexit.register(shutil.rmtree, folder, True)  # the generated store goes with the run
    store = args.store or folder / "ledger.sqlite3"
    env = {**os.environ, "LEDGER_STORE_URL": f"sqlite:///{store}"}
    env.setdefault("LEDGER_MASTER_KEYS", f"bench:{generate_master_key()}")  # for a new store
    if not store.exists():
        history = folder / "history.jsonl"
        with history.open("w") as out:
            lines = generate(args.facts, 3)
            for line in with_closes(lines) if args.closes else lines:
                out.write(line + "\n")
        started = time.perf_counter()
        ingest = json.loads(
            subprocess.run(
                [str(BIN / "ledger"), "ingest", str(history)], env=env, capture_output=True, check=True
            ).stdout
        )
        elapsed = time.perf_counter() - started
        print(
            f"ingest      {ingest['accepted']:>10,} facts in {elapsed:7.1f}s  "
            f"{ingest['accepted'] / elapsed:>10,.0f} facts/s"
        )
        history.unlink()
    raw_ceiling(store)  # warms the page cache: every run below reads the store from memory
    rows, raw = raw_ceiling(store)
    started = time.perf_counter()
    only = json.loads(
        subprocess.run(
            [str(BIN / "ledger"), "audit", "verify", "--chain-only", "--format", "json"],
            env=env,
            capture_output=True,
            check=True,
        ).stdout
    )
    only_wall = time.perf_counter() - started
    started = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ledger"), "audit", "verify", "--format", "json"],
        env=env,
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    result = json.loads(proc.stdout)
    facts = result["facts"]
    chain, total = result["seconds"]["chain"], result["seconds"]["total"]
    assert only["ok"] == result["ok"] and only["head"] == result["head"], (only, result)
    walked = only["seconds"]["chain"]
    raw = min(raw, raw_ceiling(store)[1])  # again after the runs: the best of two
    print(
        f"raw ceiling {rows:>10,} facts in {raw:7.1f}s  {rows / raw:>10,.0f} facts/s  "
        "(select + orjson + SHA-256, one process; best of two, before and after the runs)"
    )
    print(
        f"chain walk  {facts:>10,} facts in {walked:7.1f}s  {facts / walked:>10,.0f} facts/s  "
        f"({raw / walked:.2f} of the raw ceiling; `--chain-only`, one process per CPU ({os.cpu_count()}); "
        f"process wall time {only_wall:.1f}s)"
    )
    print(
        f"  in full   {facts:>10,} facts in {chain:7.1f}s  {facts / chain:>10,.0f} facts/s  "
        f"({raw / chain:.2f} of the raw ceiling; the full verify's chain phase, one process, "
        "keeping each fact for the contract check)"
    )
    print(
        f"full verify {facts:>10,} facts in {total:7.1f}s  {facts / total:>10,.0f} facts/s  "
        f"({raw / total:.2f} of the raw ceiling; {facts / total / 30_000:.2f}x the 30,000 target; "
        f"process wall time {wall:.1f}s)"
    )
    print(f"result: ok={result['ok']} faults={result['fault_count']}")


if __name__ == "__main__":
    main()
