"""Benchmark of `ledger report --events` (the auditor's offline replay of a history).

    .venv/bin/python bench/report_replay.py [--sizes 10000 100000 1000000] [--seed 1]

For each size (default 10,000 and 100,000 facts): generate a valid history mixing every
inbound fact type (``bench/history.py``) to a temporary file, run

    .venv/bin/ledger report --events FILE --format json

as a fresh child process (report to a temporary file, progress on stderr discarded) and
read its wall time and its own peak RSS (``ru_maxrss`` from ``os.wait4`` on the child, so
sizes never mix). A run with an empty history first gives the fixed cost (interpreter and
imports). Printed per size: facts, seconds, facts/s and its ratio to the 20,000 facts/s
target, peak RSS in MiB, RSS per 1,000 facts, and against the previous size the ratio of
RSS growth to size growth (at most about 1 means memory grows linearly, not faster) and
the marginal RSS per 1,000 added facts.

The same file then goes through ``bench/replay_ceiling.py`` (the unavoidable work: read,
one JSON parse with native pydantic validation, one canonical dump, two SHA-256), and the
ratio of its time to the report's is printed ("of ceil", the issue's target 0.8).

Each report is checked: ``summary.accepted`` must equal the number of lines, nothing may
be rejected, and the trial balance must have debits equal to credits in every currency;
otherwise a FAIL line is printed and the exit status is 1. Anomalies (which a valid
history should not have) are counted and shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.history import generate
from bench.periods import with_closes

REPO = Path(__file__).resolve().parents[1]
LEDGER = REPO / ".venv" / "bin" / "ledger"
CEILING = REPO / "bench" / "replay_ceiling.py"
TARGET_FACTS_PER_S = 20_000
MIB = 2**20


@dataclass(frozen=True)
class Run:
    facts: int
    generate_s: float
    seconds: float
    rss: int  # bytes, peak of the child
    report: dict[str, Any]
    ceiling_s: float  # the same file through bench/replay_ceiling.py, same run


def write_history(path: Path, size: int, seed: int, closes: bool = False) -> tuple[float, int]:
    """Write the history; its generation time and its number of lines (with ``closes``, a
    close of each month is inserted as the stream passes it: bench/periods.py)."""
    started = time.perf_counter()
    count = 0
    lines = with_closes(generate(size, seed)) if closes else generate(size, seed)
    with path.open("w", encoding="ascii") as out:
        batch: list[str] = []
        for line in lines:
            count += 1
            batch.append(line)
            if len(batch) >= 10_000:
                out.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            out.write("\n".join(batch) + "\n")
    return time.perf_counter() - started, count


def replay(history: Path, folder: Path) -> tuple[float, int, dict[str, Any]]:
    """Run `ledger report` on ``history`` in a child; its wall time, peak RSS and report."""
    report, errors = folder / "report.json", folder / "stderr.txt"
    with report.open("wb") as sink, errors.open("wb") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [str(LEDGER), "report", "--events", str(history), "--format", "json"],
            stdout=sink,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = errors.read_text(errors="replace")[-2000:]
        raise SystemExit(f"FAIL: ledger report exited with {child.returncode} on {history.name}:\n{tail}")
    document: dict[str, Any] = json.loads(report.read_bytes())
    report.unlink()
    return elapsed, usage.ru_maxrss * 1024, document  # ru_maxrss is in KiB on Linux


def measure(size: int, seed: int, folder: Path, closes: bool = False) -> Run:
    history = folder / f"history-{size}.jsonl"
    generate_s, size = write_history(history, size, seed, closes)
    try:
        seconds, rss, document = replay(history, folder)
        started = time.perf_counter()
        subprocess.run([sys.executable, str(CEILING), str(history)], check=True, stdout=subprocess.DEVNULL)
        ceiling_s = time.perf_counter() - started
    finally:
        history.unlink()
    return Run(size, generate_s, seconds, rss, document, ceiling_s)


def check(run: Run) -> list[str]:
    """What is wrong with a run's report (empty when all is well)."""
    problems = []
    summary = run.report.get("summary") or {}
    if summary.get("accepted") != run.facts or summary.get("lines") != run.facts:
        problems.append(f"summary {summary} does not accept all {run.facts} lines")
    rejected = run.report.get("rejected") or []
    if rejected:
        problems.append(f"{len(rejected)} lines rejected, first: {rejected[0]}")
    for currency, sides in sorted((run.report.get("trial_balance") or {}).items()):
        if sides["debits"] != sides["credits"]:
            problems.append(
                f"trial balance {currency}: debits {sides['debits']} != credits {sides['credits']}"
            )
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--closes", action="store_true", help="close each month as the stream passes it (rules R9)"
    )
    args = parser.parse_args()
    if not LEDGER.is_file():
        raise SystemExit(f"{LEDGER} is missing: run scripts/setup first")
    if any(size < 1 for size in args.sizes):
        parser.error("sizes must be >= 1")

    print(
        f"ledger report --events, seed {args.seed}{', monthly closes' if args.closes else ''}; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    failed = False
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        folder = Path(tmp)
        base = measure(0, args.seed, folder)
        print(f"fixed cost (empty history): {base.seconds:.2f} s, peak RSS {base.rss / MIB:.0f} MiB\n")
        header = (
            f"{'facts':>10} {'seconds':>8} {'facts/s':>9} {'ceiling/s':>9} {'of ceil':>7} "
            f"{'vs 20k/s':>8} {'peak RSS':>9} "
            f"{'per 1k facts':>12} {'RSS growth':>10} {'size growth':>11} {'ratio':>6} "
            f"{'marginal/1k':>11} {'anomalies':>9} {'generate':>8}"
        )
        print(header)
        print("-" * len(header))
        previous: Run | None = None
        for wanted in args.sizes:
            run = measure(wanted, args.seed, folder, args.closes)
            size = run.facts
            rate = size / run.seconds
            growth = size_growth = ratio = marginal = ""
            if previous is not None and size != previous.facts:
                rss_x, size_x = run.rss / previous.rss, size / previous.facts
                growth, size_growth, ratio = f"{rss_x:.2f}x", f"{size_x:.2f}x", f"{rss_x / size_x:.2f}"
                marginal = f"{(run.rss - previous.rss) / 1024 / (size - previous.facts) * 1000:.0f} KiB"
            print(
                f"{size:>10,} {run.seconds:>8.2f} {rate:>9,.0f} {size / run.ceiling_s:>9,.0f} "
                f"{run.ceiling_s / run.seconds:>7.2f} {rate / TARGET_FACTS_PER_S:>7.2f}x "
                f"{run.rss / MIB:>5.0f} MiB {run.rss / 1024 / size * 1000:>8.0f} KiB "
                f"{growth:>10} {size_growth:>11} {ratio:>6} {marginal:>11} "
                f"{len(run.report.get('anomalies') or []):>9} {run.generate_s:>7.1f}s",
                flush=True,
            )
            for problem in check(run):
                failed = True
                print(f"FAIL ({size:,} facts): {problem}", flush=True)
            previous = run
    print(
        "\nratio = RSS growth / size growth between consecutive sizes (<= ~1: memory grows at most "
        "linearly); marginal = extra RSS per 1,000 extra facts; per 1k facts includes the fixed cost;\n"
        "ceiling/s = the same file through bench/replay_ceiling.py (read, one native-validated JSON "
        "parse, one canonical dump, two SHA-256: no rules), same run; of ceil = its time / ours."
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
