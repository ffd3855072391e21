"""Service benchmark: `ledger serve` against a raw JetStream consumer, on a local nats-server.

    .venv/bin/python bench/service_throughput.py [--facts 100000] [--rate 1000] [--seconds 10]
                                                [--store-url sqlite:///...|postgresql://...]

In one run, on a fresh nats-server started here (loopback, temporary folder):

(a) raw baseline: a nats-py pull consumer that only fetches and acks the same messages,
    publishing and consuming concurrently; events/s from first publish to last ack;
(a') raw pipeline: the service's own I/O and nothing else: pull a batch, one SQLite
    transaction for it (in a thread), one acknowledged publish per fact, ack;
(b) `ledger serve` (SQLite by default): events/s from the first publish to the last derived
    event published (stored position = N and publish lag 0);
(c) end-to-end latency at a steady rate: invoices published at --rate events/s for
    --seconds, latency = arrival of their `commission.accrued` on ledger.out - publish time.

(d) restart: the ledger is stopped (SIGTERM) and started again on the same store (every
    fact stored and published): seconds from spawn to /readyz 200, next to the first start
    on the empty store in the same run (the issue's target: at most 2x), and the resident
    memory (VmRSS) once ready.

Prints the figures, the ratios (b)/(a) (target >= 0.6) and (b)/(a') (target >= 0.9) and
p50/p99 latency (target p99 < 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, StorageType, StreamConfig

BIN = Path(sys.executable).parent
CLIENTS = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envelope(i: int, kind: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"bench-{kind}-{i}",
            "source": "bench",
            "type": f"coop.ledger.{kind}.v1",
            "data": data,
        }
    ).encode()


def setup_facts() -> list[tuple[str, bytes]]:
    """Introducers and introductions so that every invoice carries a commission."""
    out = [
        (
            "ledger.in.introducer",
            envelope(0, "introducer.registered", {"introducer_id": "int-bench", "display_name": "Bench"}),
        )
    ]
    for c in range(CLIENTS):
        out.append(
            (
                "ledger.in.introduction",
                envelope(
                    c,
                    "introduction.recorded",
                    {
                        "introduction_id": f"intro-{c}",
                        "introducer_id": "int-bench",
                        "client_id": f"cli-{c}",
                        "adviser_id": "adv-bench",
                        "date": "2024-01-01",
                    },
                ),
            )
        )
    return out


def invoice(i: int, prefix: str = "inv") -> tuple[str, bytes]:
    day = 1 + (i // CLIENTS) % 28
    month = 1 + (i // (CLIENTS * 28)) % 12
    return (
        "ledger.in.invoice",
        json.dumps(
            {
                "specversion": "1.0",
                "id": f"bench-{prefix}-{i}",
                "source": "bench",
                "type": "coop.ledger.invoice.issued.v1",
                "data": {
                    "invoice_id": f"{prefix}-{i}",
                    "adviser_id": "adv-bench",
                    "client_id": f"cli-{i % CLIENTS}",
                    "issue_date": f"2024-{month:02d}-{day:02d}",
                    "currency": "CHF",
                    "net_amount": f"{100 + i % 900}.{i % 100:02d}",
                    "tax_amount": "8.10",
                },
            }
        ).encode(),
    )


async def publish_all(url: str, items: list[tuple[str, bytes]], window: int = 1000) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    for start in range(0, len(items), window):
        chunk = items[start : start + window]
        await asyncio.gather(
            *(
                js.publish(s, b, headers={"Nats-Msg-Id": f"{start + k}-{hash(b)}"})
                for k, (s, b) in enumerate(chunk)
            )
        )
    await nc.close()
    return started


async def raw_baseline(url: str, n: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="RAW_BENCH", subjects=["rawbench.>"], storage=StorageType.FILE))
    sub = await js.pull_subscribe(
        "rawbench.>", durable="raw", stream="RAW_BENCH", config=ConsumerConfig(max_ack_pending=-1)
    )
    items = [("rawbench." + s.split(".", 2)[2], b) for s, b in (invoice(i, "raw") for i in range(n))]
    started = time.perf_counter()
    publisher = asyncio.create_task(publish_all(url, items))
    got = 0
    while got < n:
        try:
            msgs = await sub.fetch(500, timeout=1)
        except TimeoutError:
            continue
        for m in msgs:
            await m.ack()
        got += len(msgs)
    elapsed = time.perf_counter() - started
    await publisher
    await nc.close()
    return n / elapsed


async def raw_pipeline(url: str, n: int, db: Path) -> float:
    """The service's own I/O, nothing else: pull a batch, store it in one SQLite transaction
    (in a thread, as the ledger's store thread does), publish one acknowledged message per
    fact (pipelined, with ``Nats-Msg-Id``), then ack the batch. Events/s, same run."""
    import sqlite3

    from ledger.adapters.jetstream import PipelinedPublisher

    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="RAW_PIPE", subjects=["rawpipe.>"], storage=StorageType.FILE))
    await js.add_stream(StreamConfig(name="RAW_OUT", subjects=["rawout.>"], storage=StorageType.FILE))
    sub = await js.pull_subscribe(
        "rawpipe.>", durable="pipe", stream="RAW_PIPE", config=ConsumerConfig(max_ack_pending=-1)
    )
    connection = sqlite3.connect(db, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE facts (position INTEGER PRIMARY KEY, body BLOB NOT NULL)")

    def store(first: int, bodies: list[bytes]) -> None:
        with connection:
            connection.executemany(
                "INSERT INTO facts VALUES (?, ?)", [(first + k, b) for k, b in enumerate(bodies)]
            )

    publisher = PipelinedPublisher(nc)
    items = [("rawpipe." + s.split(".", 2)[2], b) for s, b in (invoice(i, "pipe") for i in range(n))]
    started = time.perf_counter()
    producer = asyncio.create_task(publish_all(url, items))
    got = 0
    while got < n:
        try:
            msgs = await sub.fetch(500, timeout=1)
        except TimeoutError:
            continue
        await asyncio.to_thread(store, got + 1, [m.data for m in msgs])
        out = [(f"rawout.{got + k}", m.data, {"Nats-Msg-Id": f"out-{got + k}"}) for k, m in enumerate(msgs)]
        await publisher.publish(out, 30.0)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    elapsed = time.perf_counter() - started
    await producer
    await nc.close()
    connection.close()
    return n / elapsed


def metric(port: int, name: str) -> float:
    return metrics(port).get(name, 0.0)


def metrics(port: int) -> dict[str, float]:
    """One scrape of the ledger's unlabelled series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        found = {}
        for line in r.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if value and not line.startswith("#") and "{" not in name:
                found[name] = float(value.split()[0])
        return found


async def wait_metrics(port: int, done: Callable[[dict[str, float]], bool]) -> None:
    """Poll the metrics until ``done``: one scrape every 0.2 s, off the event loop (a scrape
    must neither stall the publisher here nor load the ledger: both would be measured)."""
    while not done(await asyncio.to_thread(metrics, port)):
        await asyncio.sleep(0.2)


def wait_http(port: int, path: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"ledger did not become ready on {path}")


async def ledger_run(url: str, port: int, n: int) -> float:
    await publish_all(url, setup_facts())
    base = len(setup_facts())
    await wait_metrics(port, lambda m: m.get("ledger_published_position", 0) >= base)
    started = time.perf_counter()
    publisher = asyncio.create_task(publish_all(url, [invoice(i) for i in range(n)]))
    await wait_metrics(
        port,
        lambda m: m.get("ledger_stored_position", 0) >= base + n and m.get("ledger_publish_lag_facts") == 0,
    )
    elapsed = time.perf_counter() - started
    await publisher
    return n / elapsed


async def latency_run(url: str, rate: int, seconds: int, first: int = 0) -> list[float]:
    """Latencies (s) of ``rate * seconds`` invoices numbered from ``first``."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent: dict[str, float] = {}
    latencies: list[float] = []

    async def on_out(msg: Any) -> None:
        body = json.loads(msg.data)
        invoice_id = body["data"].get("invoice_id", "")
        if invoice_id in sent:
            latencies.append(time.perf_counter() - sent.pop(invoice_id))

    await nc.subscribe("ledger.out.commission.accrued", cb=on_out)
    total = rate * seconds
    started = time.perf_counter()
    for i in range(first, first + total):
        subject, body = invoice(i, "lat")
        due = started + (i - first) / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[f"lat-{i}"] = time.perf_counter()
        await js.publish(subject, body)
    deadline = time.perf_counter() + 30
    while sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    await nc.close()
    if sent:
        print(f"WARNING: {len(sent)} invoices got no commission.accrued within 30 s")
    return latencies


def raw_store_rate(store_url: str, n: int = 20_000, per_save: int = 100) -> float:
    """eventsourcing's own batched-save rate on the same database (a separate table)."""
    from ledger.adapters.eventstore import EventSourcedFactStore, FactLogApplication
    from ledger.application.ports import StoredFact
    from ledger.settings import Settings

    class RawBench(FactLogApplication):
        name = "RawBench"

    store = EventSourcedFactStore.__new__(EventSourcedFactStore)
    store.app = RawBench(env=Settings(store_url=store_url).eventsourcing_env())
    body = invoice(0)[1]
    started = time.perf_counter()
    for start in range(0, n, per_save):
        store.append(
            [
                StoredFact(p, body, "2026-01-01T00:00:00+00:00", "0" * 64, "0" * 64)
                for p in range(start + 1, start + per_save + 1)
            ]
        )
    rate = n / (time.perf_counter() - started)
    store.app.close()
    return rate


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--store-url", default=None)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL and use it")
    args = parser.parse_args()
    pg = None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.support.postgres import PostgresServer

        pg = PostgresServer().start()
        args.store_url = pg.new_database()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    nats_port = free_port()
    url = f"nats://127.0.0.1:{nats_port}"
    server = subprocess.Popen(
        [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(tmp / "nats")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ledgers: list[subprocess.Popen[bytes]] = []
    envs: list[dict[str, str]] = []
    empty_ready_s = 0.0
    try:
        time.sleep(0.5)
        raw = asyncio.run(raw_baseline(url, args.facts))
        print(f"(a) raw JetStream pull+ack          {raw:>10,.0f} events/s  ({args.facts:,} messages)")
        pipeline = asyncio.run(raw_pipeline(url, args.facts, tmp / "raw-pipeline.sqlite3"))
        print(
            f"(a') raw pull + SQLite transaction + publish + ack {pipeline:>10,.0f} events/s "
            "(the service's own I/O, one message out per fact)"
        )
        store_url = args.store_url or f"sqlite:///{tmp / 'ledger.sqlite3'}"
        ports = []
        for r in range(args.replicas):
            port = free_port()
            ports.append(port)
            env = {
                **os.environ,
                "NATS_URL": url,
                "LEDGER_STORE_URL": store_url,
                "LEDGER_HTTP_PORT": str(port),
                "LEDGER_LOG_LEVEL": "warning",
                "LEDGER_METRICS_POLL_S": "1",
            }
            envs.append(env)
            spawned = time.perf_counter()
            ledgers.append(
                subprocess.Popen(
                    [str(BIN / "ledger"), "serve"],
                    env=env,
                    stdout=(tmp / f"ledger-{r}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            wait_http(port, "/readyz")
            if r == 0:
                empty_ready_s = time.perf_counter() - spawned
        served = asyncio.run(ledger_run(url, ports[0], args.facts))
        store = "PostgreSQL" if store_url.startswith("postgres") else "SQLite"
        print(
            f"(b) ledger serve ({store}, {args.replicas} replica(s)) {served:>10,.0f} events/s  "
            f"(first publish -> last derived event published)"
        )
        if store_url.startswith("postgres"):
            raw_save = raw_store_rate(store_url)
            print(
                f"    raw eventsourcing batched save (100/save), same database {raw_save:>10,.0f} events/s; "
                f"ratio (b)/raw {served / raw_save:.2f} (target >= 0.5)"
            )
        print(f"    ratio (b)/(a)                    {served / raw:>10.2f}   (target >= 0.6)")
        print(f"    ratio (b)/(a')                   {served / pipeline:>10.2f}   (target >= 0.9)")
        latencies = asyncio.run(latency_run(url, args.rate, args.seconds))
        if latencies:
            p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
            print(
                f"(c) latency at {args.rate}/s for {args.seconds}s      p50 {p50:.1f} ms  p99 {p99:.1f} ms  "
                f"max {max(latencies) * 1000:.1f} ms  mean {statistics.mean(latencies) * 1000:.1f} ms  "
                f"(n={len(latencies)}; target p99 < 50 ms)"
            )
        stored = metric(ports[0], "ledger_stored_position")
        ledgers[0].send_signal(signal.SIGTERM)
        ledgers[0].wait(60)
        spawned = time.perf_counter()
        ledgers[0] = subprocess.Popen(
            [str(BIN / "ledger"), "serve"],
            env=envs[0],
            stdout=(tmp / "ledger-0-restart.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_http(ports[0], "/readyz", timeout_s=600)
        restart_s = time.perf_counter() - spawned
        rss = _rss_mib(ledgers[0].pid)
        print(
            f"(d) restart to ready, {stored:,.0f} facts stored {restart_s:>8.2f} s  "
            f"(empty store {empty_ready_s:.2f} s; ratio {restart_s / empty_ready_s:.2f}, target <= 2); "
            f"RSS once ready {rss:,.0f} MiB "
            f"({rss * 1024 / max(stored, 1):.2f} KiB per stored fact)"
        )
    finally:
        for ledger in ledgers:
            ledger.send_signal(signal.SIGTERM)
            ledger.wait(30)
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
        if pg is not None:
            pg.cleanup()


if __name__ == "__main__":
    main()
