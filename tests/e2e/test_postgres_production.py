"""Production on PostgreSQL: two replicas behave as one, a database restart loses nothing."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.history import generate

from tests.support.figures import assert_same_figures, offline_report
from tests.support.jetstream import read_stream
from tests.support.postgres import PostgresServer
from tests.support.servers import VENV_BIN, LedgerProcess, NatsServer, run_cli, wait_for
from tests.support.stores import StoreUnderTest


@pytest.fixture
def pg_store(pg_server: PostgresServer) -> StoreUnderTest:
    return StoreUnderTest("postgres", pg_server.new_database(), pg=pg_server)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "history.jsonl"
    lines = list(generate(4000, seed=11))
    path.write_text("\n".join(lines) + "\n")
    yield path, len(lines)


def test_two_replicas_give_the_same_results_as_one(
    tmp_path: Path, nats: NatsServer, pg_store: StoreUnderTest, history: tuple[Path, int]
) -> None:
    """Two `ledger serve` replicas on one PostgreSQL store and one durable consumer: every fact is
    stored once, the figures equal a clean replay, and ledger.out carries each event id once."""
    path, count = history
    replicas = [
        LedgerProcess(nats.url, pg_store.url, tmp_path, env_extra={"LEDGER_BATCH_SIZE": "40"})
        for _ in range(2)
    ]
    for replica in replicas:
        replica.start()
    try:
        assert (
            json.loads(run_cli("publish", str(path), env={"NATS_URL": nats.url}).stdout)["published"] == count
        )
        for replica in replicas:
            wait_for(lambda r=replica: r.settled(count), 180, interval_s=0.5, what="replica settled")
        reports = [replica.get_json("/report") for replica in replicas]
        # both replicas took part in the work
        assert all(replica.metric("ledger_facts_accepted_total") > 0 for replica in replicas)
    finally:
        for replica in replicas:
            replica.kill()
    expected = offline_report(path)
    for report in reports:
        assert_same_figures(report, expected)
    assert pg_store.count() == count
    ids = [i for i, _ in read_stream(nats.url, "LEDGER_OUT") if not str(i).startswith("checkpoint:")]
    assert len(ids) == len(set(ids))


def test_postgres_restart_mid_stream_loses_nothing(
    tmp_path: Path, nats: NatsServer, pg_store: StoreUnderTest, history: tuple[Path, int]
) -> None:
    """PostgreSQL restarted while facts stream in: the ledger waits, then stores everything once."""
    path, count = history
    assert pg_store.pg is not None
    service = LedgerProcess(
        nats.url, pg_store.url, tmp_path, env_extra={"LEDGER_BATCH_SIZE": "40", "LEDGER_RETRY_DELAY_S": "0.5"}
    )
    service.start()
    publisher = subprocess.Popen(
        [str(VENV_BIN / "ledger"), "publish", str(path)],
        env=service.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stored_before_stop = wait_for(
            lambda: service.metric("ledger_stored_position"), 120, what="first facts stored"
        )
        pg_store.pg.stop()
        ready_while_down = wait_for(
            lambda: service.get("/readyz")[0] == 503 and 503, 60, what="not ready while PostgreSQL is down"
        )
        pg_store.pg.start()
        _, err = publisher.communicate(timeout=300)
        assert publisher.returncode == 0, err
        wait_for(lambda: service.settled(count), 240, interval_s=0.5, what="settled after the restart")
        live = service.get_json("/report")
    finally:
        service.kill()
        if publisher.poll() is None:
            publisher.kill()
    assert_same_figures(live, offline_report(path))
    assert pg_store.count() == count
    assert stored_before_stop < count, "the restart did not happen mid-stream"
    assert ready_while_down == 503  # not ready while the database is away
