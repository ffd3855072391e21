"""Benchmark of the GDPR stream scrub (``ledger.adapters.stream_scrub``) on a local nats-server.

    .venv/bin/python bench/stream_scrub.py [--msgs 20000] [--matches 50] [--batch 256 ...]

On a fresh nats-server (loopback, temporary folder, file storage as the ledger configures
its streams) it publishes ``--msgs`` CloudEvents of about 600 bytes, ``--matches`` of them
holding one person's personal data, then for each ``--batch``:

(a) a scan that matches nothing (5 needles of another person): messages scanned per second;
(b) nats-py's ``fetch`` on the same kind of consumer, reading only (the alternative);
(c) the scrub of the person (5 needles): scan + erase, and the time per erase;

and finally searches every file under the store directory for the person's data (as the
test does) and prints what it finds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext

from coop_runtime.streams import stream_config
from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.stream_scrub import needle_forms, scrub_streams

BIN = Path(sys.executable).parent
PERSON = ["Zoë Dupont-Müller", "Zoe.Dupont@Example.ORG", "https://hooks.example.org/z/1?a=1&b=2"]
PERSON += ["CH9300762011623852957", "Zoë Dupont"]
NOBODY = ["Nobody Atall", "nobody@nowhere.invalid", "https://nowhere.invalid/x"]
NOBODY += ["DE89370400440532013000", "Nobody Holder"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event(i: int, person: bool) -> bytes:
    name, email, url, iban, holder = PERSON if person else (f"Party {i}", f"p{i}@example.net", "", "", "")
    data = {
        "party_id": f"party-{i % 1000}",
        "display_name": name,
        "email": email,
        "webhook_url": url,
        "iban": iban,
        "account_holder": holder,
        "note": "x" * (200 + i % 300),
    }
    ensure_ascii = person and i % 2 == 0
    body = {"specversion": "1.0", "id": f"bench-{i}", "source": "bench", "type": "coop.ledger.x.v1"}
    return json.dumps({**body, "data": data}, ensure_ascii=ensure_ascii).encode()


def holds_person(path: Path) -> bool:
    if not path.is_file():
        return False
    data = path.read_bytes()
    for needle in PERSON:
        haystack = data.lower() if "@" in needle else data
        if any(form in haystack for form in needle_forms(needle)):
            return True
    return False


async def fetch_baseline(js: JetStreamContext, msgs: int, batch: int) -> float:
    """Seconds nats-py's own pull ``fetch`` takes to read ``msgs`` messages (no matching)."""
    name = f"baseline-{batch}"
    config = ConsumerConfig(name=name, ack_policy=AckPolicy.NONE, mem_storage=True)
    await js.add_consumer("BENCH", config)
    subscription = await js.pull_subscribe_bind(consumer=name, stream="BENCH")
    started = time.perf_counter()
    seen = 0
    while seen < msgs:
        for msg in await subscription.fetch(batch, timeout=10):
            seen += 1
            _ = msg.metadata.sequence.stream
    elapsed = time.perf_counter() - started
    await subscription.unsubscribe()
    await js.delete_consumer("BENCH", name)
    return elapsed


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="scrub-bench-"))
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp / "data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.5)
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        js = nc.jetstream()
        await js.add_stream(stream_config("BENCH", ["bench.>"], 120.0, 1))
        every = max(1, args.msgs // max(1, args.matches))
        items = [
            (f"bench.{i % 7}", event(i, i % every == every // 2), {"Nats-Msg-Id": f"bench-{i}"})
            for i in range(args.msgs)
        ]
        started = time.perf_counter()
        await PipelinedPublisher(nc).publish(items, timeout_s=60)
        print(f"published {len(items)} messages in {time.perf_counter() - started:.2f}s")
        for batch in args.batch:
            started = time.perf_counter()
            [none] = await scrub_streams(js, [("BENCH", None)], NOBODY, batch=batch)
            elapsed = time.perf_counter() - started
            print(
                f"batch {batch:5d}: scan only  {none.scanned} msgs in {elapsed:.2f}s = "
                f"{none.scanned / elapsed:,.0f} msgs/s (deleted {none.deleted})"
            )
        for batch in args.batch:
            elapsed = await fetch_baseline(js, args.msgs, batch)
            print(f"batch {batch:5d}: nats-py fetch, reading only: {args.msgs / elapsed:,.0f} msgs/s")
        started = time.perf_counter()
        [result] = await scrub_streams(js, [("BENCH", None)], PERSON, batch=args.batch[-1])
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        await scrub_streams(js, [("BENCH", None)], NOBODY, batch=args.batch[-1])
        scan_s = time.perf_counter() - started
        print(
            f"scrub: {result.scanned} scanned, {result.deleted} erased in {elapsed:.2f}s "
            f"({result.scanned / elapsed:,.0f} msgs/s overall; about "
            f"{(elapsed - scan_s) / max(1, result.deleted) * 1000:.1f} ms per erase)"
        )
        await nc.close()
        left = [str(path.relative_to(tmp)) for path in (tmp / "data").rglob("*") if holds_person(path)]
        print("store files still holding the person's data:", left or "none")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msgs", type=int, default=20_000)
    parser.add_argument("--matches", type=int, default=50)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256, 1024])
    asyncio.run(main(parser.parse_args()))
