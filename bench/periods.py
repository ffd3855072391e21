"""Period statements against full reports, on one store (rules R9), in one run.

    .venv/bin/python bench/periods.py [--facts 100000] [--seed 1]

Writes a realistic history (bench/history.py, with its voids) into a SQLite store, with a
close of each month inserted a few days after the month's end as the stream goes by (later
facts dated in closed months arrive too, as in life), then measures on that store:

(a) a full report (`ledger report`): every figure of the whole log;
(b) a report as of the last closed month's end (`report --as-of`);
(c) closing a month: computing and storing its frozen statement (K at two dates, R9);
(d) a closed month's statement query: read back as stored;
(e) the next open month's provisional statement.

Prints each time and the ratios (d)/(a) (target <= 0.05) and (c)/(b) (target <= 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.history import generate


def with_closes(lines: Iterator[str]) -> Iterator[str]:
    """The history with a close of each month once the stream is 5 days past its end."""
    last_closed: str | None = None
    for line in lines:
        yield line
        data = json.loads(line)["data"]
        day = next((data[k] for k in ("issue_date", "date", "effective_date") if k in data), None)
        if day is None:
            continue
        seen = date.fromisoformat(day) - timedelta(days=5)
        month = f"{seen.year:04d}-{seen.month:02d}"
        previous = f"{seen.year - (seen.month == 1):04d}-{(seen.month - 2) % 12 + 1:02d}"
        while last_closed is None or last_closed < previous:
            period = previous if last_closed is None else _next(last_closed)
            last_closed = period
            year, number = map(int, period.split("-"))
            closed_on = date(year + (number == 12), number % 12 + 1, 1) + timedelta(days=4)
            yield json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"close-{period}",
                    "source": "treasury",
                    "type": "coop.ledger.period.closed.v1",
                    "data": {
                        "period": period,
                        "date": closed_on.isoformat(),
                        "closed_by": "tre-ana",
                        "approved_by": "tre-luc",
                    },
                }
            )
        del month


def _recompute(ledger: Any, period: str, prefix: Any) -> dict[str, Any]:
    """Month ``period``'s statement computed again (the previous close's as stored), with
    the books brought forward by ``prefix``."""
    from ledger.application.periods import CloseAt, closing_figures, compute_statement
    from ledger.domain.periods import previous_period

    position, close = ledger.index.closes[period]
    before = ledger.index.closes.get(previous_period(period))
    stored = None if before is None else ledger.store.load_statement(previous_period(period))
    statement: dict[str, Any] = compute_statement(
        ledger.index.by_position[:position],
        period,
        close=CloseAt(close, position),
        previous=None if before is None else CloseAt(before[1], before[0]),
        previous_closing=None if stored is None else closing_figures(json.loads(stored)),
        head={"position": position, "hash": ledger.hash_at(position)},
        prefix=prefix,
    )
    return statement


def _next(period: str) -> str:
    year, month = map(int, period.split("-"))
    return f"{year + (month == 12):04d}-{month % 12 + 1:02d}"


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    results = []
    value = None
    for _ in range(repeat):
        started = time.perf_counter()
        value = fn()
        results.append(time.perf_counter() - started)
    return statistics.median(results), value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--facts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from ledger.application.periods import closed_statement, period_statement, statement_json
    from ledger.application.queries import ReportQuery, answer
    from ledger.bootstrap import build_ledger
    from ledger.domain.books import PrefixBooks
    from ledger.domain.periods import month_end, next_period
    from ledger.settings import Settings

    with tempfile.TemporaryDirectory(prefix="ledger-periods-") as tmp:
        settings = Settings(store_url=f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}")
        ledger = build_ledger(settings)
        batch: list[str] = []
        started = time.perf_counter()
        for line in with_closes(generate(args.facts, args.seed)):
            batch.append(line)
            if len(batch) == 1000:
                ledger.ingest(batch)
                batch.clear()
        ledger.ingest(batch)
        loaded = time.perf_counter() - started
        closes = sorted(ledger.index.closes)
        last = closes[-1]
        print(
            f"store: {ledger.head_position:,} facts, {len(closes)} closed months (last {last}), "
            f"written in {loaded:.1f} s"
        )
        full, _ = timed(lambda: answer(ledger, ReportQuery()), repeat=1)
        as_of, _ = timed(lambda: answer(ledger, ReportQuery(as_of=month_end(last))), repeat=1)
        started = time.perf_counter()
        for period in closes[:-1]:
            closed_statement(ledger, period, save=True)  # the earlier months, from the log
        earlier_scratch = time.perf_counter() - started
        prefix = PrefixBooks()  # as the service's outbox does: brought forward close to close
        started = time.perf_counter()
        for period in closes[:-1]:
            _recompute(ledger, period, prefix)
        earlier_forward = time.perf_counter() - started
        forward, forwarded = timed(lambda: _recompute(ledger, last, prefix), repeat=1)
        closing, _ = timed(lambda: closed_statement(ledger, last, save=True), repeat=1)
        assert statement_json(forwarded) == ledger.store.load_statement(last)
        query, _ = timed(lambda: period_statement(ledger, last))
        provisional, _ = timed(lambda: period_statement(ledger, next_period(last)), repeat=1)
        print(f"(a) full report                      {full:8.2f} s")
        print(f"(b) report as of {month_end(last)}        {as_of:8.2f} s")
        print(
            f"(c) closing {last} (statement frozen) {closing:8.2f} s   "
            f"ratio (c)/(b) {closing / as_of:5.2f} (target <= 2)"
        )
        print(
            f"(c') closing {last}, books brought forward from the previous close (ledger serve) "
            f"{forward:8.2f} s   ratio (c')/(c) {forward / closing:5.2f}"
        )
        print(
            f"    every earlier close: from the log {earlier_scratch:8.2f} s, "
            f"brought forward {earlier_forward:8.2f} s (ratio {earlier_forward / earlier_scratch:5.2f})"
        )
        print(
            f"(d) closed {last} statement query     {query:8.4f} s   "
            f"ratio (d)/(a) {query / full:7.4f} (target <= 0.05)"
        )
        print(f"(e) provisional {next_period(last)} statement  {provisional:8.2f} s")
        ledger.store.close()


if __name__ == "__main__":
    main()
