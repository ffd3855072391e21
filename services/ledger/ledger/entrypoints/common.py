"""What the ``ledger`` commands share: the error console, output formats, reading the
settings and the store (each failure a clear message and an exit status), feeding files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from coop_runtime.redact import redact_secrets
from ledger.adapters.jsonl import read_lines
from ledger.adapters.tables import print_report_tables
from ledger.application.replay import ReplayResult, ingest_lines
from ledger.bootstrap import build_ephemeral_ledger, build_ledger
from ledger.settings import Settings

__all__ = [
    "PROGRESS_MIN_BYTES",
    "Format",
    "emit",
    "err",
    "feed",
    "guard_store",
    "open_ledger",
    "parse_day",
    "settings_or_exit",
    "source_ledger",
]

err = Console(stderr=True)

#: Files with more lines than this show progress on stderr.
PROGRESS_MIN_BYTES = 1 << 20


class Format(StrEnum):
    json = "json"
    table = "table"


def parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


def feed(ledger: Any, path: Path) -> ReplayResult:
    """Submit a JSON Lines file's facts to ``ledger``, with progress on stderr."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    size = path.stat().st_size if path.is_file() else 0
    show = size >= PROGRESS_MIN_BYTES
    offset = 0

    def numbered() -> Any:
        nonlocal offset
        for line in read_lines(stream):
            offset = line.offset
            yield line.number, line.raw

    with stream:
        if not show:
            return ingest_lines(ledger, numbered())
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
            MofNCompleteColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            task = progress.add_task(f"reading {path.name}", total=size)
            marks = [0]

            def on_batch(result: ReplayResult) -> None:
                progress.update(task, completed=offset)
                if not err.is_terminal and offset * 10 // max(size, 1) > marks[0]:
                    marks[0] = offset * 10 // max(size, 1)
                    err.print(f"{path.name}: {result.lines} lines, {offset * 100 // max(size, 1)}%")

            return ingest_lines(ledger, numbered(), on_batch=on_batch)


def emit(
    report: dict[str, Any],
    fmt: Format | None,
    tables: Callable[[dict[str, Any], Console], None] = print_report_tables,
) -> None:
    """JSON (the default off a terminal) or tables."""
    chosen = fmt or (Format.table if sys.stdout.isatty() else Format.json)
    if chosen is Format.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        tables(report, Console(width=max(Console().width, 140)))


def guard_store(settings: Settings, action: Any) -> Any:
    """Run ``action``; a store that cannot be reached or does not verify is a clear error."""
    from eventsourcing.persistence import PersistenceError

    from ledger.adapters.keyring import KeyringError
    from ledger.application.ports import IntegrityCheckError

    try:
        return action()
    except KeyringError as exc:
        err.print(f"[red]key error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    except IntegrityCheckError as exc:
        err.print(f"[red]integrity error:[/red] {exc}")
        raise typer.Exit(3) from None
    except (PersistenceError, OSError) as exc:
        err.print(
            f"[red]error:[/red] cannot use the store {settings.redacted_store_url()}: "
            f"{redact_secrets(str(exc))}"
        )
        raise typer.Exit(2) from None


def open_ledger(settings: Settings) -> Any:
    """The ledger on the configured store, caught up."""

    def open_and_catch_up() -> Any:
        ledger = build_ledger(settings)
        ledger.catch_up()
        return ledger

    return guard_store(settings, open_and_catch_up)


def settings_or_exit() -> Settings:
    try:
        settings = Settings()
        settings.eventsourcing_env()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {redact_secrets(str(exc))}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    return settings


def source_ledger(events: Path | None) -> Any:
    if events is not None:
        ledger = build_ephemeral_ledger(settings=settings_or_exit())
        result = feed(ledger, events)
        for r in result.rejected:
            err.print(f"{events}:{r.line}: {r.reason}: {r.message}")
        return ledger
    return open_ledger(settings_or_exit())
