"""Benchmark of `ledger report --events` (the auditor's offline replay).

    .venv/bin/python bench/report_replay.py [--sizes 10000 100000 1000000] [--seed 1]

For each size: generate a valid mixed history (every fact type) to a temporary file, run
`ledger report --events FILE --format json` as a child process, and print wall time,
facts/s (target 20,000), peak RSS of the child and how RSS grows with size (linear growth
means the ratio of RSS growth to size growth stays near 1 or below).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.history import generate

BIN = Path(sys.executable).parent
TARGET_FACTS_PER_S = 20_000


def run(size: int, seed: int, folder: Path) -> tuple[float, int, dict[str, object]]:
    history = folder / f"history-{size}.jsonl"
    with history.open("w") as out:
        for line in generate(size, seed):
            out.write(line + "\n")
    report = folder / "report.json"
    started = time.perf_counter()
    with report.open("wb") as sink:
        child = subprocess.Popen(
            [str(BIN / "ledger"), "report", "--events", str(history), "--format", "json"],
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"ledger report failed on {size} facts (status {status})")
    document = json.loads(report.read_bytes())
    history.unlink()
    return elapsed, usage.ru_maxrss * 1024, document


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'facts':>10} {'seconds':>9} {'facts/s':>10} {'vs target':>9} {'peak RSS':>10} {'KiB/fact':>9} "
        f"{'RSS growth / size growth':>25}"
    )
    previous: tuple[int, int] | None = None
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        for size in args.sizes:
            elapsed, rss, document = run(size, args.seed, Path(tmp))
            summary = document["summary"]
            assert isinstance(summary, dict)
            balanced = all(v["debits"] == v["credits"] for v in document["trial_balance"].values())  # type: ignore[union-attr]
            growth = ""
            if previous is not None:
                growth = f"{(rss / previous[1]) / (size / previous[0]):.2f}"
            rate = size / elapsed
            print(
                f"{size:>10,} {elapsed:>9.2f} {rate:>10,.0f} {rate / TARGET_FACTS_PER_S:>8.2f}x "
                f"{rss / 2**20:>8.0f}Mi {rss / 1024 / size:>9.2f} {growth:>25}"
            )
            if summary["lines"] != size or not balanced:
                print(f"FAIL: {summary} balanced={balanced}")
            previous = (size, rss)


if __name__ == "__main__":
    main()
