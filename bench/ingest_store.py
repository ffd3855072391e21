"""Benchmark of the store path: `ledger ingest` and the fact log's append, each next to a raw
SQLite insert of the same rows in the same run.

    .venv/bin/python bench/ingest_store.py [--facts 100000] [--batch 500] [--seed 1]

1. A valid mixed history (``bench/history.py``) is ingested by ``ledger ingest`` into a fresh
   SQLite store (a child process: parse, validate, seal, chain, store; wall time).
2. The facts that run stored are read back and appended again, in batches of ``--batch``,
   to a second fresh store through ``EventSourcedFactStore.append`` (the write path the
   service uses: one transaction per batch).
3. The same rows are inserted by plain ``sqlite3`` into a table of the same shape (WAL,
   ``executemany``, one transaction per batch, the stored JSON encoded with orjson).

Printed: facts/s of each and the ratios store/raw and ingest/raw (the issue's target for
the store path: at least 0.3 of raw).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.history import generate
from ledger.adapters.eventstore import EventSourcedFactStore
from ledger.adapters.keyring import generate_master_key
from ledger.application.ports import StoredFact

BIN = Path(sys.executable).parent


def _sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


def raw_insert(path: Path, facts: list[StoredFact], batch: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(
        "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
        "state BLOB, PRIMARY KEY (originator_id, originator_version))"
    )
    started = time.perf_counter()
    for at in range(0, len(facts), batch):
        rows = [
            (
                "0" * 32,
                fact.position,
                "ledger.adapters.eventstore:FactRecorded",
                orjson.dumps(
                    {
                        "timestamp": fact.recorded_at,
                        "envelope_json": fact.envelope_json.decode("utf-8"),
                        "chain_hash": fact.chain_hash,
                        "fact_digest": fact.fact_digest,
                    }
                ),
            )
            for fact in facts[at : at + batch]
        ]
        connection.execute("BEGIN")
        connection.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", rows)
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ledger-ingest-bench-") as tmp:
        folder = Path(tmp)
        history = folder / "history.jsonl"
        with history.open("w") as out:
            for line in generate(args.facts, args.seed):
                out.write(line + "\n")
        first = folder / "ingested.sqlite3"
        env = {
            **os.environ,
            "LEDGER_STORE_URL": f"sqlite:///{first}",
            "LEDGER_MASTER_KEYS": f"bench:{generate_master_key()}",
        }
        started = time.perf_counter()
        done = subprocess.run(
            [str(BIN / "ledger"), "ingest", str(history)], env=env, capture_output=True, check=True
        )
        ingest_s = time.perf_counter() - started
        accepted = json.loads(done.stdout)["accepted"]
        source = EventSourcedFactStore(_sqlite_env(first))
        facts = list(source.read(0, accepted + 1))
        source.close()
        assert len(facts) == accepted, (len(facts), accepted)

        target = EventSourcedFactStore(_sqlite_env(folder / "appended.sqlite3"))
        started = time.perf_counter()
        for at in range(0, len(facts), args.batch):
            target.append(facts[at : at + args.batch])
        store_s = time.perf_counter() - started
        assert list(target.read(len(facts) - 1, 2)) == facts[-1:]
        target.close()
        raw_s = raw_insert(folder / "raw.sqlite3", facts, args.batch)

    raw_rate = accepted / raw_s
    print(
        f"{accepted:,} facts, batches of {args.batch}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(f"raw sqlite3 insert      {raw_rate:>10,.0f} facts/s  (baseline)")
    print(
        f"store append            {accepted / store_s:>10,.0f} facts/s  ratio {raw_s / store_s:.2f} "
        "(target >= 0.3)"
    )
    print(
        f"ledger ingest (process) {accepted / ingest_s:>10,.0f} facts/s  ratio {raw_s / ingest_s:.2f} "
        "(parse, validate, seal, chain and store; start-up included)"
    )


if __name__ == "__main__":
    main()
