"""Fault injection against real processes: the NATS server restarted with its JetStream data
kept, and the SQLite store's disk full then read-only. Each ends with the same figures as a
clean replay, and nothing is acked that was not stored."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.history import generate

from tests.support.figures import assert_same_figures, offline_report
from tests.support.servers import VENV_BIN, LedgerProcess, NatsServer, run_cli, wait_for


def history(tmp_path: Path, count: int, seed: int) -> Path:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(generate(count, seed)) + "\n")
    return path


def test_nats_restart_mid_stream_loses_nothing(tmp_path: Path, nats: NatsServer) -> None:
    """nats-server restarted (JetStream data kept) while facts stream in: the ledger reconnects,
    the publisher retries, and the final figures equal a clean replay."""
    path = history(tmp_path, 3000, 21)
    service = LedgerProcess(
        nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path, env_extra={"LEDGER_BATCH_SIZE": "50"}
    ).start()
    publisher = subprocess.Popen(
        [str(VENV_BIN / "ledger"), "publish", str(path)],
        env=service.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # restart once facts flow (the publisher connected and checked the stream)
        stored_before = wait_for(
            lambda: service.metric("ledger_stored_position"), 120, what="first facts stored"
        )
        nats.restart()
        _, err = publisher.communicate(timeout=300)
        assert publisher.returncode == 0, err[-2000:]
        wait_for(lambda: service.settled(3000), 180, interval_s=0.5, what="settled after the NATS restart")
        live = service.get_json("/report")
    finally:
        service.kill()
        if publisher.poll() is None:
            publisher.kill()
    assert stored_before < 3000, "the restart did not happen mid-stream"
    assert_same_figures(live, offline_report(path))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs for the SQLite store (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def remount(mount: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount)], check=True)


def test_disk_full_stops_consuming_and_loses_nothing(
    tmp_path: Path, nats: NatsServer, small_disk: Path
) -> None:
    """The store's disk fills up: a clear error, /readyz fails, consuming pauses and nothing is
    acked unstored; once space is back every fact is stored once."""
    path = history(tmp_path, 8000, 5)
    service = LedgerProcess(
        nats.url,
        f"sqlite:///{small_disk / 'ledger.sqlite3'}",
        tmp_path,
        env_extra={"LEDGER_BATCH_SIZE": "200", "LEDGER_RETRY_DELAY_S": "0.3"},
    ).start()
    try:
        published = json.loads(run_cli("publish", str(path), env={"NATS_URL": nats.url}).stdout)
        assert published["published"] == 8000
        wait_for(lambda: service.metric("ledger_store_errors_total") >= 1, 120, what="the disk to fill up")
        status, body = service.get("/readyz")
        assert status == 503 and b"store writes failing" in body
        stuck = service.metric("ledger_stored_position")
        assert stuck < 8000
        time.sleep(1.5)
        assert service.metric("ledger_stored_position") == stuck  # nothing more is taken in
        remount(small_disk, "size=64m")  # room again
        wait_for(lambda: service.settled(8000), 240, interval_s=0.5, what="everything stored after recovery")
        assert service.get("/readyz")[0] == 200
        live = service.get_json("/report")
    finally:
        service.kill()
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("ledger-*.log"))
    assert b"consuming paused" in logs and b"full" in logs
    assert_same_figures(live, offline_report(path))


def test_read_only_store_is_a_clear_error_and_nothing_is_acked(
    tmp_path: Path, nats: NatsServer, small_disk: Path
) -> None:
    """A store on a read-only disk: `ledger serve` refuses to start with a clear message, and
    the facts already waiting in LEDGER_IN stay there (nothing consumed, nothing acked)."""
    first = LedgerProcess(nats.url, f"sqlite:///{small_disk / 'ledger.sqlite3'}", tmp_path).start()
    first.terminate()  # creates the store and the streams, then stops cleanly
    path = history(tmp_path, 200, 9)
    assert json.loads(run_cli("publish", str(path), env={"NATS_URL": nats.url}).stdout)["published"] == 200
    remount(small_disk, "ro")
    second = LedgerProcess(nats.url, f"sqlite:///{small_disk / 'ledger.sqlite3'}", tmp_path)
    second.start(wait_ready=False)
    assert second.process is not None
    code = second.process.wait(60)
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("ledger-*.log"))
    assert code != 0
    assert b"cannot open the store; not consuming" in logs and b"unable to open database file" in logs
    from tests.support.jetstream import consumer_state

    pending, ack_floor = consumer_state(nats.url, "LEDGER_IN", "ledger-in-v1")
    assert pending == 200 and ack_floor == 0
