"""Reads against writes: ingestion latency of `ledger serve` idle and under a storm of
report queries, in one run.

    .venv/bin/python bench/query_isolation.py [--facts 20000] [--rate 500] [--seconds 10] [--clients 200]

On a fresh nats-server and `ledger serve` (SQLite), after --facts invoices are stored:

(a) idle: invoices published at --rate/s for --seconds; latency = arrival of their
    `commission.accrued` on ledger.out - publish time;
(b) the same while waves of --clients concurrent GET /report hit the service (all clients
    ask at once, read their answer, and ask again at the next wave, every --wave-s s),
    /readyz polled every 100 ms.

Prints p50/p99 of (a) and (b), the ratio p99(b)/p99(a) (target <= 2), how many queries were
answered 200 and 429, and how often /readyz was not 200 (target 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.service_throughput import (
    BIN,
    free_port,
    invoice,
    latency_run,
    metric,
    percentile,
    publish_all,
    setup_facts,
    wait_http,
)


def storm(
    port: int,
    clients: int,
    wave_s: float,
    *,
    stop: threading.Event,
    statuses: list[int],
    readiness: list[int],
) -> list[threading.Thread]:
    """Waves of ``clients`` concurrent report requests, every ``wave_s`` seconds."""
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        while not stop.is_set():
            try:
                barrier.wait(timeout=wave_s * 10)
            except threading.BrokenBarrierError:
                return
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/report", headers={"Accept-Encoding": "gzip"}
                )
                with urllib.request.urlopen(request, timeout=120) as r:
                    r.read()
                    statuses.append(r.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except OSError:
                statuses.append(0)

    def waves() -> None:
        while not stop.is_set():
            try:
                barrier.wait(timeout=wave_s * 10)
            except threading.BrokenBarrierError:
                return
            time.sleep(wave_s)
        barrier.abort()

    def ready() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
                    readiness.append(r.status)
            except urllib.error.HTTPError as exc:
                readiness.append(exc.code)
            except OSError:
                readiness.append(0)
            time.sleep(0.1)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    threads += [threading.Thread(target=waves, daemon=True), threading.Thread(target=ready, daemon=True)]
    for thread in threads:
        thread.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--wave-s", type=float, default=3.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-queries-"))
    nats_port, port = free_port(), free_port()
    url = f"nats://127.0.0.1:{nats_port}"
    server = subprocess.Popen(
        [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(tmp / "nats")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        **os.environ,
        "NATS_URL": url,
        "LEDGER_STORE_URL": f"sqlite:///{tmp / 'ledger.sqlite3'}",
        "LEDGER_HTTP_PORT": str(port),
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_METRICS_POLL_S": "1",
    }
    ledger = subprocess.Popen(
        [str(BIN / "ledger"), "serve"],
        env=env,
        stdout=(tmp / "ledger.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(port, "/readyz")
        base = setup_facts()
        asyncio.run(publish_all(url, base + [invoice(i, "load") for i in range(args.facts)]))
        while metric(port, "ledger_published_position") < len(base) + args.facts:
            time.sleep(0.2)
        idle = asyncio.run(latency_run(url, args.rate, args.seconds))
        stop = threading.Event()
        statuses: list[int] = []
        readiness: list[int] = []
        threads = storm(port, args.clients, args.wave_s, stop=stop, statuses=statuses, readiness=readiness)
        loaded = asyncio.run(latency_run(url, args.rate, args.seconds, first=10_000_000))
        stop.set()
        for thread in threads:
            thread.join(60)
        a50, a99 = percentile(idle, 0.5) * 1000, percentile(idle, 0.99) * 1000
        b50, b99 = percentile(loaded, 0.5) * 1000, percentile(loaded, 0.99) * 1000
        print(f"stored facts before measuring       {len(base) + args.facts:>10,}")
        print(
            f"(a) idle latency at {args.rate}/s       p50 {a50:7.1f} ms  p99 {a99:7.1f} ms  (n={len(idle)})"
        )
        print(
            f"(b) with {args.clients} report clients  p50 {b50:7.1f} ms  p99 {b99:7.1f} ms  (n={len(loaded)})"
        )
        print(f"    ratio p99 (b)/(a)               {b99 / a99:10.2f}   (target <= 2)")
        print(
            f"    queries answered 200: {statuses.count(200)}, 429: {statuses.count(429)}, "
            f"other: {len(statuses) - statuses.count(200) - statuses.count(429)}"
        )
        print(f"    /readyz not 200: {sum(1 for s in readiness if s != 200)} of {len(readiness)} (target 0)")
    finally:
        ledger.send_signal(signal.SIGTERM)
        ledger.wait(60)
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
