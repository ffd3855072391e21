"""The report worker process opens its ledger from the service's newest snapshot and the log
after it (a real SQLite store), answering exactly as from the whole log; a snapshot it
cannot use (damaged) makes it read the whole log instead."""

from __future__ import annotations

from pathlib import Path

from bench.history import generate
from bench.periods import with_closes

from ledger.adapters.answers import compute_answer
from ledger.adapters.keyring import MasterKeys, generate_master_key
from ledger.adapters.query_worker import MASTER_KEYS_ENTRY, SNAPSHOT_DIR_ENTRY, open_ledger
from ledger.adapters.snapshot_files import SnapshotFiles, code_fingerprint
from ledger.application.pipeline import Pipeline
from ledger.application.queries import ReportQuery
from ledger.application.snapshots import dump
from ledger.bootstrap import build_ledger, build_store
from ledger.settings import Settings


def _drain(pipeline: Pipeline) -> None:
    while (chunk := pipeline.outbox_chunk()) is not None:
        pipeline.outbox_done(chunk)


def test_the_worker_reads_the_snapshot_and_the_tail(tmp_path: Path) -> None:
    """With a snapshot at 2,000 facts and 1,000 more stored after it, the worker loads the
    snapshot (position 2,000) and answers the report, an introducer's view and a month's
    statement byte for byte as a worker that read the whole log; with the snapshot
    damaged it loads none and still answers the same."""
    keys = f"t1:{generate_master_key()}"
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", master_keys=keys)
    store = build_store(settings)
    pipeline = Pipeline(build_ledger(settings, store), store)
    lines = list(with_closes(generate(3000, 12)))
    for start in range(0, 2000, 500):
        pipeline.ingest(lines[start : start + 500])
        _drain(pipeline)
    folder = tmp_path / "snapshots"
    files = SnapshotFiles(folder, MasterKeys.parse(keys).derived_key("snapshots"), code_fingerprint())
    path = files.write(*dump(pipeline))
    pipeline.ingest(lines[2000:])
    store.close()
    env = {**settings.eventsourcing_env(), MASTER_KEYS_ENTRY: keys}
    from_log, none = open_ledger(env)
    from_snapshot, loaded = open_ledger({**env, SNAPSHOT_DIR_ENTRY: str(folder)})
    assert none == 0 and loaded == 2000
    assert from_snapshot.index.head == from_log.index.head and from_log.head_position == len(lines)
    introducer = next(iter(from_log.index.names))
    period = sorted(from_log.index.closes)[-1]
    queries = [
        ReportQuery(),
        ReportQuery(view="introducer", party_id=introducer),
        ReportQuery(view="period", period=period),
    ]
    for query in queries:
        assert compute_answer(from_snapshot, query).body == compute_answer(from_log, query).body, query
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    damaged, loaded = open_ledger({**env, SNAPSHOT_DIR_ENTRY: str(folder)})
    assert loaded == 0 and damaged.index.head == from_log.index.head
    assert compute_answer(damaged, queries[0]).body == compute_answer(from_log, queries[0]).body
