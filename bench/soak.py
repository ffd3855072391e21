"""Load and soak: a steady load at half the measured maximum, then a burst at twice it.

    .venv/bin/python bench/soak.py [--minutes 10] [--burst-seconds 60] [--max RATE] [--plot docs/soak.png]

Starts nats-server and `ledger serve` (SQLite) in a temporary folder, measures the maximum
rate (unless --max is given) with a short all-out run, then publishes invoices at half that
rate for --minutes and at twice it for --burst-seconds, and keeps publishing at half rate
for a recovery period. Every second it samples the ledger's RSS (/proc), its stored
position (throughput) and the publish-to-`commission.accrued` latency of that second's
invoices. Prints a summary (RSS growth, latency p99 before/during/after the burst, lost
facts) and writes a PNG plot of throughput, latency p99 and RSS over time.
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
from service_throughput import (
    BIN,
    free_port,
    invoice,
    ledger_run,
    metric,
    publish_all,
    setup_facts,
    wait_http,
)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def drive(
    url: str, http_port: int, pid: int, phases: list[tuple[str, int, float]]
) -> list[dict[str, Any]]:
    """Publish at each phase's rate; sample every second."""
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
                subject, body = invoice(counter, "soak")
                sent[f"soak-{counter}"] = (time.perf_counter(), second)
                pending.append(js.publish(subject, body, headers={"Nats-Msg-Id": f"soak-{counter}"}))
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
    deadline = time.perf_counter() + 60
    while sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    await nc.close()
    for second, sample in enumerate(samples):
        values = sorted(latencies.get(second, []))
        sample["p99_ms"] = values[min(len(values) - 1, int(0.99 * len(values)))] * 1000 if values else None
    samples.append({"lost": len(sent), "published": counter})
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
        maximum = args.max or asyncio.run(ledger_run(url, http_port, 20_000))
        if args.max:
            asyncio.run(publish_all(url, setup_facts()))
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
        samples = asyncio.run(drive(url, http_port, ledger.pid, phases))
        tail = samples.pop()
        plot(samples, args.plot)
        steady = [s for s in samples if s["phase"] == "steady"]
        third = max(1, len(steady) // 3)
        rss_start = statistics.mean(s["rss_mib"] for s in steady[:third])
        rss_end = statistics.mean(s["rss_mib"] for s in steady[-third:])

        def p99(phase: str) -> str:
            values = [s["p99_ms"] for s in samples if s["phase"] == phase and s["p99_ms"] is not None]
            return (
                f"{max(values):.0f} ms worst second, {statistics.median(values):.0f} ms median"
                if values
                else "n/a"
            )

        print(f"published {tail['published']:,}, without commission event after 60 s: {tail['lost']}")
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
