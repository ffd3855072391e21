"""``ledger``: the command line for auditors and operators."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TextColumn

from coop_runtime.redact import redact_secrets
from ledger.adapters.tables import print_period_tables
from ledger.application.queries import QueryError, ReportQuery, answer
from ledger.application.schemas import render_schema
from ledger.bootstrap import build_ephemeral_ledger
from ledger.entrypoints import corrections, privacy, statements
from ledger.entrypoints.common import (
    Format,
    emit,
    err,
    feed,
    guard_store,
    open_ledger,
    parse_day,
    settings_or_exit,
    source_ledger,
)
from ledger.entrypoints.payouts import payouts_app
from ledger.settings import Settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="ledger",
    help="The cooperative's commission ledger: replay, ingest and report facts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def report(
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="Replay this CloudEvents JSON Lines file in an ephemeral store, not the configured one.",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Keep only facts dated up to this day (YYYY-MM-DD).")
    ] = None,
    at_position: Annotated[
        int | None, typer.Option("--at-position", min=0, help="Report as of the N-th stored fact.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="A month's statement (YYYY-MM): frozen when closed, provisional for the next open month.",
        ),
    ] = None,
    fmt: Annotated[
        Format | None, typer.Option("--format", help="json (default when not a terminal) or table.")
    ] = None,
) -> None:
    """Print the statement of a history: commissions, balances, donations, rebates (or, with
    --period, one month's statement: opening, prior-period adjustments, movements, closing)."""
    if period is not None and (as_of is not None or at_position is not None):
        raise typer.BadParameter("--period goes alone (a month's statement has its own position)")
    day = parse_day(as_of)
    if events is not None:
        ledger = build_ephemeral_ledger(settings=settings_or_exit())
        result = feed(ledger, events)
        rejected, summary = result.rejected, result.summary()
    else:
        ledger = open_ledger(settings_or_exit())
        rejected, summary = [], None
    if period is not None:
        try:
            statement = answer(ledger, ReportQuery.from_params("period", {"period": period}))
        except QueryError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        emit(statement, fmt, tables=print_period_tables)
        return
    query = ReportQuery(as_of=day, at_position=at_position)
    emit(answer(ledger, query, rejected=rejected, summary=summary), fmt)


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CloudEvents JSON Lines files to append to the store.")],
) -> None:
    """Append files' facts to the configured store (idempotent: re-running changes nothing)."""
    settings = settings_or_exit()
    ledger = open_ledger(settings)
    total: dict[str, int] = {"lines": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
    for path in files:
        result = feed(ledger, path)
        for r in result.rejected:
            err.print(
                f"{path}:{r.line}: {r.reason}: {r.message}"
                + (f" (id {r.envelope_id})" if r.envelope_id else "")
            )
        for key, value in result.summary().items():
            total[key] += value
    total["head_position"] = ledger.head_position
    sys.stdout.write(
        json.dumps({"store": settings.redacted_store_url(), **total, "head_hash": ledger.head_hash}) + "\n"
    )


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Folder to write the JSON Schema files into.")] = Path("schemas"),
    check: Annotated[bool, typer.Option("--check", help="Only check that the folder is up to date.")] = False,
) -> None:
    """Generate (or check) the JSON Schema files of the contract from the models."""
    stale = []
    from ledger.bootstrap import all_schema_files

    for name, schema in all_schema_files().items():
        target = out / name
        text = render_schema(schema)
        if check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if stale:
        err.print(f"[red]stale schemas[/red] in {out}: {', '.join(stale)}; run `ledger schemas`")
        raise typer.Exit(1)


@app.command()
def serve() -> None:
    """Run the ledger service: NATS JetStream in and out, HTTP for metrics, health and reports."""
    import asyncio

    import faststream  # noqa: F401  (its loggers exist before configure_logging takes them over)
    import structlog

    from coop_runtime.asgi_server import serve_asgi
    from coop_runtime.logs import configure_logging
    from ledger.bootstrap import build_app

    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    logger = structlog.get_logger("ledger")
    logger.info("ledger starting", config=settings.effective())
    from ledger.adapters.keyring import KeyringError

    try:
        built = build_app(settings)
    except KeyringError as exc:  # a missing or wrong master key: nothing can be read nor sealed
        logger.error("the master keys do not fit the store; not starting", error=str(exc))
        raise typer.Exit(2) from None
    except Exception as exc:  # the store cannot even be opened: say so, consume nothing
        logger.error(
            "cannot open the store; not consuming",
            store=settings.redacted_store_url(),
            error=redact_secrets(f"{type(exc).__name__}: {exc}"),
        )
        raise typer.Exit(2) from None
    asyncio.run(
        serve_asgi(
            built.asgi,
            settings.http_host,
            settings.http_port,
            settings.graceful_timeout_s,
            settings.log_level,
            header_timeout_s=settings.http_header_timeout_s,
        )
    )


@app.command()
def publish(
    files: Annotated[
        list[Path], typer.Argument(help="CloudEvents JSON Lines files to publish to ledger.in.*")
    ],
) -> None:
    """Publish files' lines to NATS JetStream (Nats-Msg-Id = envelope id), with progress."""
    import asyncio

    from ledger.adapters.publish import PublishError, publish_files

    settings = settings_or_exit()
    try:
        options = settings.nats_connect_options()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/red] {redact_secrets(str(exc))}")
        raise typer.Exit(2) from None
    try:
        summary = asyncio.run(publish_files(settings.nats_url, files, err, connect_options=options))
    except PublishError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    sys.stdout.write(json.dumps(summary) + "\n")
    if summary["failed"]:
        raise typer.Exit(1)


class ExportFormat(StrEnum):
    cloudevents = "cloudevents"
    beancount = "beancount"
    csv = "csv"
    journal = "journal-csv"


@app.command()
def export(
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="cloudevents (the accepted history), beancount, csv (commission lines) or "
            "journal-csv (every posting, one row per debit or credit).",
        ),
    ],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Only facts dated up to this day.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only facts (beancount: transactions) from this day.")
    ] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="Export a replayed file instead of the store.")
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="The books as a closed month (YYYY-MM) left them: the facts up to its close, as of "
            "its last day (beancount: the balance assertions at its end are its frozen closing).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Export the history (CloudEvents JSON Lines, in log order) or the books (beancount, CSV)."""
    from ledger.adapters.exports import beancount_text, commissions_csv, journal_csv
    from ledger.domain.periods import month_end

    day, start = parse_day(as_of), parse_day(since)
    ledger = source_ledger(events)
    at_position = None
    if period is not None:
        if as_of is not None:
            raise typer.BadParameter("--period and --as-of do not go together")
        closed = ledger.index.closes.get(period)
        if closed is None:
            closed_months = ", ".join(sorted(ledger.index.closes)) or "none"
            err.print(f"[red]error:[/red] {period} is not a closed month (closed: {closed_months})")
            raise typer.Exit(1)
        day, at_position = month_end(period), closed[0]
    sink = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        if fmt is ExportFormat.cloudevents:
            for line in ledger.history(as_of=day, since=start, at_position=at_position):
                sink.write(line.decode("utf-8") + "\n")
        elif fmt is ExportFormat.beancount:
            sink.write(beancount_text(ledger.books(as_of=day, at_position=at_position), since=start))
        elif fmt is ExportFormat.journal:
            sink.write(journal_csv(ledger.books(as_of=day, at_position=at_position), since=start))
        else:
            sink.write(commissions_csv(ledger.books(as_of=day, at_position=at_position), since=start))
    finally:
        if output:
            sink.close()


app.command("statement")(statements.statement)
app.command("void")(corrections.void)
app.command("close")(corrections.close)
app.add_typer(payouts_app)
app.command("forget")(privacy.forget)
app.command("subject-export")(privacy.subject_export)
app.add_typer(privacy.keys_app)

audit_app = typer.Typer(name="audit", help="Verify the stored history.", no_args_is_help=True)
app.add_typer(audit_app)


@audit_app.command("verify")
def audit_verify(
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="A checkpoint obtained earlier: POSITION:HASH, or a JSON file with position and hash.",
        ),
    ] = None,
    published: Annotated[
        bool,
        typer.Option(
            "--published",
            help="Also check against every checkpoint the ledger published on ledger.out.audit.checkpoint "
            "(read from NATS_URL).",
        ),
    ] = False,
    projections: Annotated[bool, typer.Option(help="Also replay the projections and compare them.")] = True,
    statements_from_scratch: Annotated[
        bool,
        typer.Option(
            "--statements-from-scratch",
            help="Recompute every closed month's statement from the log alone (by default the books "
            "are brought forward from close to close, and the last close alone is also recomputed "
            "from the log); slower: grows with closes x facts.",
        ),
    ] = False,
    chain_only: Annotated[
        bool,
        typer.Option(
            "--chain-only",
            help="The log's integrity alone: positions, digests, hash chain, checkpoints, what the "
            "outbox published; split over --workers processes. Not the contract, projections or "
            "statements.",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=16,
            help="Processes walking the chain with --chain-only, as many as given (default: one per "
            "CPU, each part at least 50,000 facts).",
        ),
    ] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help="json or table (text).")] = None,
) -> None:
    """Walk the whole log, recompute the hash chain, replay the projections: exit 0 when all
    holds, 1 with every fault's position and kind otherwise."""
    import time

    from ledger.adapters.eventstore import EventSourcedFactStore
    from ledger.adapters.heap import HeapFreezer
    from ledger.application.audit import verify
    from ledger.application.pipeline import OUTBOX
    from ledger.bootstrap import build_store

    if chain_only and (statements_from_scratch or not projections):
        raise typer.BadParameter(
            "--chain-only checks neither projections nor statements", param_hint="--chain-only"
        )
    settings = settings_or_exit()
    checkpoints = [_checkpoint(text) for text in against or []]
    if published:
        checkpoints += _published_checkpoints(settings)
    store: EventSourcedFactStore = guard_store(settings, lambda: build_store(settings))
    freezer = HeapFreezer(settings.heap_freeze_every_facts)

    def records() -> Any:
        after = 0
        while True:
            page = store.read_raw(after, 5_000)
            if not page:
                return
            yield from page
            after = page[-1][0]

    with Progress(
        TextColumn("verifying"),
        MofNCompleteColumn(),
        TextColumn("facts"),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("verify", total=None)
        walked_before = [0]
        printed = [0]

        def tick(n: int) -> None:
            freezer.note(n - walked_before[0])
            walked_before[0] = n
            progress.update(task, completed=n)
            if not err.is_terminal and n // 100_000 > printed[0] // 100_000:
                err.print(f"verify: {n} facts walked")
            printed[0] = max(printed[0], n)

        if chain_only:
            result = _verify_chain_only(settings, store, checkpoints, workers, tick)
        else:
            result = verify(
                records(),
                published_position=store.published_position(OUTBOX),
                checkpoints=checkpoints,
                projections=projections,
                clock=time.perf_counter,
                progress=tick,
                parsed=freezer.freeze_now,  # the parsed facts stay until the end: out of the collector's way
                stored_statement=store.load_statement,
                statements_from_scratch=statements_from_scratch,
            )
    store.close()
    summary = result.summary()
    if (fmt or (Format.table if sys.stdout.isatty() else Format.json)) is Format.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        state = "[green]OK[/green]" if result.ok else f"[red]{result.fault_count} FAULT(S)[/red]"
        head = result.walk
        Console().print(f"audit: {state}  facts {head.facts}  head {head.head_position}:{head.head_hash}")
        for fault in result.faults:
            Console().print(f"  position {fault.position:>10}  {fault.kind:<20} {fault.detail}")
    if not result.ok:
        raise typer.Exit(1)


def _verify_chain_only(
    settings: Settings, store: Any, checkpoints: list[Any], workers: int | None, tick: Any
) -> Any:
    """``audit verify --chain-only``: the chain walked in parts by forked children (the
    store is closed first: no connection, no pool thread crosses the fork)."""
    import time

    from ledger.adapters.parallel_walk import MIN_PART_FACTS, WalkFailedError, walk_in_parallel
    from ledger.application.audit import verify_chain
    from ledger.application.pipeline import OUTBOX
    from ledger.bootstrap import build_store

    head, published = guard_store(settings, lambda: (store.last_position(), store.published_position(OUTBOX)))
    store.close()
    reader_settings = settings.model_copy(update={"postgres_pool_size": 1})  # one connection each

    def open_reader() -> Any:
        reader = build_store(reader_settings, create=False)
        return reader.read_raw, reader.close

    started = time.perf_counter()
    try:
        walk = walk_in_parallel(
            open_reader,
            head,
            workers=workers or min(8, len(os.sched_getaffinity(0))),
            min_part_facts=1 if workers else MIN_PART_FACTS,  # (as many as asked for)
            watch=[c.position for c in checkpoints],
            progress=tick,
        )
    except WalkFailedError as exc:
        err.print(f"[red]error:[/red] the chain walk did not complete: {redact_secrets(str(exc))}")
        raise typer.Exit(2) from None
    return verify_chain(
        walk, published_position=published, checkpoints=checkpoints, seconds=time.perf_counter() - started
    )


def _published_checkpoints(settings: Settings) -> list[Any]:
    """Every checkpoint on ``ledger.out.audit.checkpoint`` (a clear error when NATS or the
    stream cannot be read)."""
    import asyncio

    from ledger.adapters.outbox import read_published_checkpoints
    from ledger.application.audit import Checkpoint

    try:
        found = asyncio.run(read_published_checkpoints(settings.nats_url, settings.nats_connect_options()))
    except Exception as exc:
        err.print(
            f"[red]error:[/red] cannot read the published checkpoints from {settings.redacted_nats_url()}: "
            f"{redact_secrets(f'{type(exc).__name__}: {exc}')}"
        )
        raise typer.Exit(2) from None
    if not found:
        err.print("[yellow]warning:[/yellow] no checkpoint was ever published on ledger.out.audit.checkpoint")
    return [Checkpoint(p.position, p.hash) for p in found]


def _checkpoint(text: str) -> Any:
    from ledger.application.audit import Checkpoint

    path = Path(text)
    try:
        if path.is_file():
            doc = json.loads(path.read_text())
            return Checkpoint(int(doc["position"]), str(doc["hash"]))
        return Checkpoint.parse(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--against") from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
