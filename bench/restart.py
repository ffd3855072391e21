"""Restart benchmark: `ledger serve` to ready on a long history, from the log and from a snapshot.

    .venv/bin/python bench/restart.py [--facts 1000000] [--tail 10000] [--closes] [--store PATH]

In one run, on a nats-server started here (loopback, temporary folder):

(0) the empty-store baseline: `ledger serve` on an empty SQLite store, spawn to /readyz 200;
(1) a realistic history of --facts facts (bench/history.py, all types; --closes: a close of
    each month) ingested with `ledger ingest`, the outbox's position set to the head (as if
    every derived event were published: only the restart is measured, not a first publish);
(2) start without a snapshot: the whole log read (spawn to ready), then the snapshot the
    service forks once ready (its write time, from the metric);
(3) restart from that snapshot (spawn to ready), and resident memory once ready;
(4) --tail more facts ingested while the service is stopped, then a restart: the snapshot
    plus the tail.

Prints each figure with the empty-store start of the same run and the ratio (issue 17's
target: ready at 1,000,000 facts within 2x the empty start).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.history import generate
from bench.periods import with_closes
from bench.service_throughput import _rss_mib as rss_mib
from bench.service_throughput import free_port, wait_http
from ledger.adapters.keyring import generate_master_key

BIN = Path(sys.executable).parent


def master_key(store: Path | None) -> str:
    """A new master key, or the one kept beside a reused store (a store's data keys are
    wrapped by the key of the run that made it: another key would not open them)."""
    if store is None:
        return generate_master_key()
    kept = Path(f"{store}.bench-master-key")
    if store.exists():
        if not kept.exists():
            raise SystemExit(
                f"{store} exists but {kept.name} does not: its data keys cannot be opened; "
                "set LEDGER_MASTER_KEYS to the key that made it, or remove the store"
            )
        return kept.read_text().strip()
    key = generate_master_key()
    kept.touch(mode=0o600)
    kept.write_text(key)
    return key


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        found: dict[str, float] = {}
        for line in r.read().decode().splitlines():
            if line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
        return found


class Serve:
    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.port = int(env["LEDGER_HTTP_PORT"])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> float:
        self.starts += 1
        spawned = time.perf_counter()
        self.process = subprocess.Popen(
            [str(BIN / "ledger"), "serve"],
            env=self.env,
            stdout=(self.folder / f"serve-{self.starts}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_http(self.port, "/readyz", timeout_s=1800)
        return time.perf_counter() - spawned

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        self.process = None


def ingest(env: dict[str, str], path: Path) -> None:
    subprocess.run([str(BIN / "ledger"), "ingest", str(path)], env=env, capture_output=True, check=True)


def mark_published(env: dict[str, str], store: Path) -> int:
    """Set the outbox's position to the head (a store whose derived events are all out)."""
    connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    (head,) = connection.execute(
        "SELECT MAX(originator_version) FROM stored_events WHERE topic LIKE '%FactRecorded'"
    ).fetchone()
    connection.close()
    code = (
        "import sys\n"
        "from ledger.settings import Settings\n"
        "from ledger.bootstrap import build_store\n"
        "from ledger.application.pipeline import OUTBOX\n"
        "build_store(Settings()).save_published_position(OUTBOX, int(sys.argv[1]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(head)], env=env, capture_output=True, check=True)
    return int(head)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=10_000)
    parser.add_argument("--closes", action="store_true", help="close each month as the stream passes it")
    parser.add_argument("--store", type=Path, default=None, help="reuse (or keep) this SQLite store")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ledger-restart-"))
    atexit.register(shutil.rmtree, folder, True)
    store = args.store or folder / "ledger.sqlite3"
    nats_port = free_port()
    nats = subprocess.Popen(
        [
            str(BIN / "nats-server"),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(nats_port),
            "-sd",
            str(folder / "nats"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(nats.terminate)
    base = {
        **os.environ,
        "NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_METRICS_POLL_S": "1",
        "LEDGER_DATA_DIR": str(folder / "data"),
    }
    if "LEDGER_MASTER_KEYS" not in base:
        base["LEDGER_MASTER_KEYS"] = f"bench:{master_key(args.store)}"
    # the service's default (100,000) unless the history is shorter
    base.setdefault("LEDGER_SNAPSHOT_EVERY_FACTS", str(min(100_000, args.facts)))
    empty = Serve(
        {
            **base,
            "LEDGER_STORE_URL": f"sqlite:///{folder / 'empty.sqlite3'}",
            "LEDGER_HTTP_PORT": str(free_port()),
        },
        folder,
    )
    empty_s = empty.start()
    empty.stop()
    print(f"(0) empty store, spawn to ready            {empty_s:8.2f} s")
    env = {**base, "LEDGER_STORE_URL": f"sqlite:///{store}", "LEDGER_HTTP_PORT": str(free_port())}
    lines = list(generate(args.facts + args.tail, 3))
    if args.closes:
        lines = list(with_closes(iter(lines)))
    body, tail = lines[: args.facts], lines[args.facts :]
    if not store.exists():
        history = folder / "history.jsonl"
        history.write_text("\n".join(body) + "\n")
        started = time.perf_counter()
        ingest(env, history)
        print(f"(1) ingested {len(body):,} facts in {time.perf_counter() - started:.1f} s")
    head = mark_published(env, store)
    serve = Serve(env, folder)
    shutil.rmtree(Path(f"{store}.snapshots"), ignore_errors=True)
    full_s = serve.start()
    rss_full = rss_mib(serve.process.pid)  # type: ignore[union-attr]
    deadline = time.monotonic() + 3600
    while (seen := scrape(serve.port)).get('ledger_snapshots_total{outcome="written"}', 0) < 1:
        if time.monotonic() > deadline or any(
            seen.get(f'ledger_snapshots_total{{outcome="{bad}"}}', 0) for bad in ("failed", "personal_data")
        ):
            raise SystemExit(f"no snapshot written (see {folder}/serve-1.log)")
        time.sleep(0.2)
    write_s = scrape(serve.port)["ledger_snapshot_write_seconds"]
    serve.stop()
    size = sum(p.stat().st_size for p in Path(f"{store}.snapshots").glob("snapshot-*.bin"))
    print(
        f"(2) {head:,} facts, no snapshot: spawn to ready {full_s:8.2f} s  "
        f"(ratio {full_s / empty_s:.2f} of the empty start); RSS {rss_full:,.0f} MiB; "
        f"snapshot written in {write_s:.1f} s by a forked child, "
        f"{size / 2**20:,.0f} MiB ({size / head:,.0f} bytes per fact)"
    )
    snap_s = serve.start()
    rss_snap = rss_mib(serve.process.pid)  # type: ignore[union-attr]
    metrics = scrape(serve.port)
    serve.stop()
    print(
        f"(3) {head:,} facts, from the snapshot: spawn to ready {snap_s:8.2f} s  "
        f"(ratio {snap_s / empty_s:.2f} of the empty start, target <= 2; "
        f"{full_s / snap_s:.1f}x faster than from the log); loading it "
        f"{metrics.get('ledger_snapshot_load_seconds', 0):.2f} s; RSS {rss_snap:,.0f} MiB"
    )
    if tail:
        history = folder / "tail.jsonl"
        history.write_text("\n".join(tail) + "\n")
        ingest(env, history)
        mark_published(env, store)
        tail_s = serve.start()
        serve.stop()
        print(
            f"(4) the snapshot + {len(tail):,} facts of tail: spawn to ready {tail_s:8.2f} s  "
            f"(ratio {tail_s / empty_s:.2f} of the empty start)"
        )
    log = (folder / f"serve-{serve.starts}.log").read_text()
    refused = [line for line in log.splitlines() if "snapshot refused" in line]
    print(f"snapshots refused in the last start: {len(refused)}")
    print(json.dumps({"empty_s": empty_s, "full_s": full_s, "snapshot_s": snap_s}))


if __name__ == "__main__":
    main()
