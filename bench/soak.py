"""Load and soak: a steady load at half the measured maximum, then a burst at twice it.

    .venv/bin/python bench/soak.py [--minutes 10] [--burst-seconds 60] [--max RATE] [--plot docs/soak.png]

Starts nats-server and `ledger serve` (SQLite) in a temporary folder. The load is a
realistic history with all 11 fact types (bench/history.py: introductions, invoices, credit
notes, payments, payouts, purchases, resales, rebates, ...), generated to a file first. The
maximum rate (unless --max is given) is measured by publishing its first 20,000 facts all
out; then the following facts go at half that rate for --minutes, at twice it for
--burst-seconds, and at half rate again for a recovery period. Every second it samples the
ledger's RSS (/proc), its stored position (throughput) and the publish-to-
`commission.accrued` latency of that second's invoices. Prints a summary (RSS growth, latency
p99 before/during/after the burst, facts lost = published - stored) and writes a PNG plot
of throughput, latency p99 and RSS over time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import nats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from history import generate
from service_throughput import BIN, free_port, metric, wait_http

MAX_PROBE_FACTS = 20_000


class Facts:
    """The generated history, read line by line: (subject, body, message id, invoice id or
    None)."""

    def __init__(self, path: Path) -> None:
        self.lines = path.open("rb")

    def next(self) -> tuple[str, bytes, str, str | None]:
        line = self.lines.readline().rstrip(b"\n")
        if not line:
            raise RuntimeError("the generated history is exhausted: generate more facts")
        fact = json.loads(line)
        kind = fact["type"].removeprefix("coop.ledger.").removesuffix(".v1").split(".")[0]
        invoice_id = fact["data"]["invoice_id"] if fact["type"] == "coop.ledger.invoice.issued.v1" else None
        return f"ledger.in.{kind}", line, fact["id"], invoice_id


def write_history(path: Path, n: int) -> None:
    with path.open("w", encoding="ascii") as out:
        for line in generate(n, seed=7):
            out.write(line + "\n")


async def wait_stored(http_port: int, position: int, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if metric(http_port, "ledger_stored_position") >= position:
            return True
        await asyncio.sleep(0.2)
    return False


async def probe_maximum(url: str, http_port: int, facts: Facts) -> float:
    """Publish the first facts all out; facts stored per second until the last is stored."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    pending = []
    for _ in range(MAX_PROBE_FACTS):
        subject, body, msg_id, _invoice = facts.next()
        pending.append(js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}))
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    await nc.close()
    if not await wait_stored(http_port, MAX_PROBE_FACTS, 300):
        raise RuntimeError("the ledger did not store the probe facts within 300 s")
    return MAX_PROBE_FACTS / (time.perf_counter() - started)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def drive(
    url: str, http_port: int, pid: int, phases: list[tuple[str, int, float]], *, facts: Facts, first: int
) -> list[dict[str, Any]]:
    """Publish at each phase's rate; sample every second. ``first`` facts are stored already."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent: dict[str, tuple[float, int]] = {}
    latencies: dict[int, list[float]] = defaultdict(list)

    async def on_out(msg: Any) -> None:
        invoice_id = json.loads(msg.data)["data"].get("invoice_id", "")
        if invoice_id in sent:
            at, second = sent.pop(invoice_id)
            latencies[second].append(time.perf_counter() - at)

    await nc.subscribe("ledger.out.commission.accrued", cb=on_out)
    samples: list[dict[str, Any]] = []
    started = time.perf_counter()
    counter = 0
    last_stored = metric(http_port, "ledger_stored_position")
    for name, seconds, rate in phases:
        for _ in range(seconds):
            second = len(samples)
            tick = time.perf_counter()
            pending = []
            for i in range(int(rate)):
                subject, body, msg_id, invoice_id = facts.next()
                if invoice_id is not None:
                    sent[invoice_id] = (time.perf_counter(), second)
                pending.append(js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}))
                counter += 1
                if len(pending) >= 200 or i == int(rate) - 1:
                    await asyncio.gather(*pending)
                    pending = []
                    due = tick + (i + 1) / rate
                    if due > time.perf_counter():
                        await asyncio.sleep(due - time.perf_counter())
            await asyncio.sleep(max(0.0, tick + 1 - time.perf_counter()))
            stored = metric(http_port, "ledger_stored_position")
            samples.append(
                {
                    "t": time.perf_counter() - started,
                    "phase": name,
                    "offered": rate,
                    "stored_per_s": stored - last_stored,
                    "rss_mib": rss_mib(pid),
                }
            )
            last_stored = stored
    drained = await wait_stored(http_port, first + counter, 600)
    stored = int(metric(http_port, "ledger_stored_position"))
    await nc.close()
    for second, sample in enumerate(samples):
        values = sorted(latencies.get(second, []))
        sample["p99_ms"] = values[min(len(values) - 1, int(0.99 * len(values)))] * 1000 if values else None
    samples.append(
        {
            "lost": first + counter - stored,
            "published": counter,
            "drained": drained,
            "drain_s": time.perf_counter() - started - samples[-1]["t"],
            "refused": metric(http_port, "ledger_facts_rejected_total"),
        }
    )
    return samples


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(t, [s["offered"] for s in samples], label="offered /s", color="#999")
    axes[0].plot(t, [s["stored_per_s"] for s in samples], label="stored /s", color="#2d5b8a")
    axes[0].set_ylabel("facts / s")
    axes[0].legend(loc="upper left")
    axes[1].plot(
        t, [s["p99_ms"] if s["p99_ms"] is not None else float("nan") for s in samples], color="#b5472c"
    )
    axes[1].set_ylabel("latency p99 (ms)")
    axes[1].set_yscale("log")
    axes[2].plot(t, [s["rss_mib"] for s in samples], color="#3c7d3c")
    axes[2].set_ylabel("ledger RSS (MiB)")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        for s0, s1 in itertools.pairwise(samples):
            if s1["phase"] != s0["phase"]:
                ax.axvline(s1["t"], color="#ccc", linestyle="--")
    fig.suptitle("ledger serve: steady load at half the maximum, burst at twice it, recovery")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--burst-seconds", type=int, default=60)
    parser.add_argument("--recovery-seconds", type=int, default=240)
    parser.add_argument("--max", type=float, default=None, help="skip measuring the maximum rate")
    parser.add_argument("--plot", type=Path, default=Path("docs/soak.png"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-soak-"))
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp / "n")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    http_port = free_port()
    env = {
        **os.environ,
        "NATS_URL": url,
        "LEDGER_STORE_URL": f"sqlite:///{tmp / 'l.db'}",
        "LEDGER_HTTP_PORT": str(http_port),
        "LEDGER_LOG_LEVEL": "warning",
        "LEDGER_METRICS_POLL_S": "1",
    }
    ledger = subprocess.Popen(
        [str(BIN / "ledger"), "serve"], env=env, stdout=(tmp / "l.log").open("wb"), stderr=subprocess.STDOUT
    )
    try:
        wait_http(http_port, "/readyz")
        estimate = args.max or 5_000
        total = MAX_PROBE_FACTS + int(
            estimate * (args.minutes * 60 / 2 + args.burst_seconds * 2 + args.recovery_seconds / 2) * 1.3
        )
        history = tmp / "history.jsonl"
        print(f"generating a history of {total:,} facts (all 11 types) ...", flush=True)
        write_history(history, total)
        facts = Facts(history)
        if args.max:
            maximum = args.max
            first = 0
        else:
            maximum = asyncio.run(probe_maximum(url, http_port, facts))
            first = MAX_PROBE_FACTS
        half, double = maximum / 2, maximum * 2
        print(
            f"maximum {maximum:,.0f}/s -> steady {half:,.0f}/s for {args.minutes} min, burst {double:,.0f}/s "
            f"for {args.burst_seconds}s, recovery {args.recovery_seconds}s"
        )
        phases = [
            ("steady", int(args.minutes * 60), half),
            ("burst", args.burst_seconds, double),
            ("recovery", args.recovery_seconds, half),
        ]
        samples = asyncio.run(drive(url, http_port, ledger.pid, phases, facts=facts, first=first))
        tail = samples.pop()
        plot(samples, args.plot)
        steady = [s for s in samples if s["phase"] == "steady"]
        third = max(1, len(steady) // 3)
        rss_start = statistics.mean(s["rss_mib"] for s in steady[:third])
        rss_end = statistics.mean(s["rss_mib"] for s in steady[-third:])

        def p99(phase: str) -> str:
            values = [s["p99_ms"] for s in samples if s["phase"] == phase and s["p99_ms"] is not None]
            return (
                f"{max(values):.0f} ms worst second, {statistics.median(values):.0f} ms median, "
                f"{sum(v > 250 for v in values)} of {len(values)} seconds over 250 ms"
                if values
                else "n/a"
            )

        print(
            f"published {tail['published']:,} facts; stored all: {tail['drained']} "
            f"({tail['drain_s']:.0f} s after the last second); lost: {tail['lost']}; "
            f"refused: {tail['refused']:.0f}"
        )
        print(
            f"RSS during steady load: {rss_start:.0f} MiB (first third) -> {rss_end:.0f} MiB (last third); "
            f"max {max(s['rss_mib'] for s in samples):.0f} MiB"
        )
        print(f"latency p99 steady: {p99('steady')}; burst: {p99('burst')}; recovery: {p99('recovery')}")
        recovered = [s for s in samples if s["phase"] == "recovery"][-10:]
        print(
            f"throughput in the last 10 s of recovery: "
            f"{statistics.mean(s['stored_per_s'] for s in recovered):,.0f}/s "
            f"(offered {half:,.0f}/s)"
        )
        print(f"plot written to {args.plot}")
    finally:
        ledger.terminate()
        ledger.wait(30)
        server.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
