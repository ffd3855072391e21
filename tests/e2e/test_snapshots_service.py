"""`ledger serve` with snapshots, on a real nats-server and a real store: it writes them as
the log grows, a restart (even after SIGKILL) loads the newest and reads only the tail,
the figures and the derived events stay those of a full replay, and a damaged snapshot is
refused (a warning, a metric) for a full replay."""

from __future__ import annotations

import json
from pathlib import Path

from bench.history import generate

from tests.support.figures import assert_same_figures
from tests.support.jetstream import read_stream
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for
from tests.support.stores import StoreUnderTest


def _publish(service: LedgerProcess, path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")
    out = json.loads(run_cli("publish", str(path), env=service.env()).stdout)
    assert out["published"] == len(lines)


def _log_lines(workdir: Path, start: int) -> list[dict[str, object]]:
    out = []
    for log in sorted(workdir.glob(f"ledger-*-{start}.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def test_restart_from_a_snapshot_reads_the_tail_and_keeps_the_figures(
    tmp_path: Path, nats: NatsServer, store: StoreUnderTest
) -> None:
    """Snapshots every 1,000 facts: after SIGKILL the restart loads one (position > 0, no
    refusal), reports what an offline replay reports, takes new facts and publishes each
    derived event once; with every snapshot damaged, the next start refuses them
    (``corrupt``, logged) and replays the whole log to the same figures."""
    snaps = tmp_path / "snapshots"
    lines = list(generate(5000, seed=21))
    first, second = lines[:4000], lines[4000:]
    service = LedgerProcess(
        nats.url,
        store.url,
        tmp_path,
        env_extra={"LEDGER_SNAPSHOT_EVERY_FACTS": "1000", "LEDGER_SNAPSHOT_DIR": str(snaps)},
    )
    service.start()
    try:
        _publish(service, tmp_path / "first.jsonl", first)
        wait_for(
            lambda: service.settled(len(first)), 300, interval_s=0.3, what="first part stored and published"
        )
        wait_for(
            lambda: service.metric("ledger_snapshots_total", {"outcome": "written"}) >= 2,
            120,
            interval_s=0.3,
            what="two snapshots written",
        )
        assert service.metric("ledger_snapshots_total", {"outcome": "failed"}) == 0
        assert service.metric("ledger_snapshots_total", {"outcome": "personal_data"}) == 0
        written = sorted(snaps.glob("snapshot-*.bin"))
        assert 1 <= len(written) <= 2
        service.kill()  # a crash: no graceful stop
        service.start()
        loaded_at = service.metric("ledger_snapshot_position")
        assert 1000 <= loaded_at <= len(first)
        assert service.metric("ledger_snapshot_load_seconds") > 0
        assert service.metric("ledger_snapshots_refused_total") == 0
        recovered = [e for e in _log_lines(tmp_path, service.starts) if e.get("event") == "store recovered"]
        assert recovered and recovered[0]["from_snapshot"] == loaded_at
        assert recovered[0]["facts"] == len(first) - loaded_at  # only the tail was read
        _publish(service, tmp_path / "second.jsonl", second)
        wait_for(
            lambda: service.settled(len(lines)), 300, interval_s=0.3, what="second part stored and published"
        )
        live = service.get_json("/report")
        for snapshot in snaps.glob("snapshot-*.bin"):
            data = bytearray(snapshot.read_bytes())
            data[len(data) // 2] ^= 0xFF
            snapshot.write_bytes(bytes(data))
        damaged = len(list(snaps.glob("snapshot-*.bin")))
        service.terminate()
        service.start()
        assert service.metric("ledger_snapshots_refused_total", {"reason": "corrupt"}) == damaged
        assert service.metric("ledger_snapshot_load_seconds") == 0
        warnings = [
            e
            for e in _log_lines(tmp_path, service.starts)
            if e.get("event") == "snapshot refused: reading the log instead"
        ]
        assert len(warnings) == damaged and all(w["reason"] == "corrupt" for w in warnings)
        replayed = service.get_json("/report")
    finally:
        service.kill()
    history = tmp_path / "all.jsonl"
    history.write_text("\n".join(lines) + "\n")
    offline = json.loads(run_cli("report", "--events", str(history), "--format", "json").stdout)
    assert_same_figures(live, offline)
    assert_same_figures(replayed, offline)
    assert live["head"] == replayed["head"] and live["head"]["position"] == len(lines)
    ids = [msg_id for msg_id, _ in read_stream(nats.url, "LEDGER_OUT")]
    assert ids and len(ids) == len(set(ids))
