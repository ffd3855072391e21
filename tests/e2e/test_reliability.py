"""Hostile messages and unlucky operations against real processes (a real nats-server and
`ledger serve`): nothing stops ingestion, nothing is counted or rejected twice, nothing
answers silently, a forged history is caught at start-up."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nats
import orjson
from bench.history import generate
from nats.js.api import DiscardPolicy

from ledger.adapters.eventstore import LOG_ID
from ledger.application.chain import GENESIS, chain_hash, fact_digest
from tests.conftest import envelope
from tests.e2e.test_ledger_service import all_examples, publish
from tests.support.figures import offline_report
from tests.support.jetstream import consumer_state, read_stream, request
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for


def _invoice(n: int) -> bytes:
    data = {
        "invoice_id": f"INV-R{n}",
        "adviser_id": "adv-anne",
        "client_id": "cli-bakery",
        "issue_date": "2025-01-10",
        "currency": "CHF",
        "net_amount": "100.00",
    }
    return envelope("invoice.issued", data, id=f"rel-{n}").encode()


async def _publish_raw(url: str, bodies: list[tuple[bytes, str]]) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream()
        for body, msg_id in bodies:
            await js.publish("ledger.in.test", body, headers={"Nats-Msg-Id": msg_id}, timeout=30)
    finally:
        await nc.close()


def publish_bodies(url: str, bodies: list[tuple[bytes, str]]) -> None:
    asyncio.run(_publish_raw(url, bodies))


def rejections(url: str) -> list[tuple[str | None, dict[str, Any]]]:
    return read_stream(url, "LEDGER_REJECTED")


def test_a_message_that_grows_when_quoted_is_rejected_within_the_limit_and_ingestion_goes_on(
    tmp_path: Path, nats: NatsServer
) -> None:
    """400,000 bytes of \\x01 (six-fold when quoted) and 1 MB of 0xFF bytes near the max
    payload are rejected with a cut copy (size and SHA-256 kept), and the facts after them
    are stored: the consumer never stops."""
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    try:
        expanding = (
            b'{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"note":"'
            + b"\x01" * 400_000
            + b'"}}'
        )
        binary = b"\xff" * (1024 * 1024 - 4096)
        publish_bodies(
            nats.url,
            [
                (expanding, "hostile-1"),
                (binary, "hostile-2"),
                *((_invoice(n), f"rel-{n}") for n in range(20)),
            ],
        )
        wait_for(lambda: service.settled(20), 60, what="the facts after the hostile messages stored")
        found = wait_for(lambda: len(got := rejections(nats.url)) == 2 and got, 30, what="two rejections")
        for msg_id, body in found:
            assert msg_id is not None and msg_id.startswith("rejected:")
            assert body["original_truncated"] is True
            assert len(orjson.dumps(body)) <= 96 * 1024
        sizes = {body["original_size"]: body for _, body in found}
        assert sizes[len(expanding)]["original_sha256"] == hashlib.sha256(expanding).hexdigest()
        assert sizes[len(binary)]["reason"] == "too_large"
        assert service.get("/readyz")[0] == 200
    finally:
        service.kill()


async def _set_rejected_stream(url: str, *, full: bool) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = (await js.stream_info("LEDGER_REJECTED")).config
        config.max_msgs = 1 if full else -1
        config.discard = DiscardPolicy.NEW if full else DiscardPolicy.OLD
        await js.update_stream(config)
    finally:
        await nc.close()


def test_a_broken_publish_path_pauses_consuming_then_it_recovers_without_duplicates(
    tmp_path: Path, nats: NatsServer
) -> None:
    """While ledger.rejected refuses writes, batches with rejections are nacked (readiness
    says why, a metric counts it); once it takes writes again everything is stored once and
    each rejection is on LEDGER_REJECTED exactly once, though its batch was redelivered."""
    service = LedgerProcess(
        nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path, env_extra={"LEDGER_ACK_WAIT_S": "2"}
    ).start()
    try:
        publish_bodies(nats.url, [(b"not json 0", "bad-0")])
        wait_for(lambda: len(rejections(nats.url)) == 1, 30, what="first rejection")
        asyncio.run(_set_rejected_stream(nats.url, full=True))
        bad = [(f"not json {n}".encode(), f"bad-{n}") for n in range(1, 6)]
        publish_bodies(nats.url, [*bad, *((_invoice(n), f"rel-{n}") for n in range(20))])
        wait_for(lambda: service.metric("ledger_consume_failures_total") >= 2, 60, what="failures counted")
        status, body = service.get("/readyz")
        assert status == 503 and b"failing" in body, body
        asyncio.run(_set_rejected_stream(nats.url, full=False))
        wait_for(lambda: service.get("/readyz")[0] == 200, 90, what="ready again")
        wait_for(lambda: service.settled(20), 60, what="facts stored")
        found = wait_for(lambda: len(got := rejections(nats.url)) == 6 and got, 60, what="six rejections")
        ids = [msg_id for msg_id, _ in found]
        assert len(set(ids)) == 6, ids
        assert service.metric("ledger_facts_accepted_total") == 20
    finally:
        service.kill()


def test_a_query_answer_over_the_max_payload_gets_an_error_naming_the_limit(tmp_path: Path) -> None:
    """With a 64 KiB max payload, the whole report over NATS is refused with too_large
    (naming the limit and GET /report) instead of a silent timeout; a filtered view works."""
    config = tmp_path / "nats.conf"
    config.write_text(f'max_payload: 65536\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n')
    server = NatsServer(tmp_path / "nats-data", config=config).start()
    service = LedgerProcess(server.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    try:
        path = tmp_path / "history.jsonl"
        path.write_text("\n".join(generate(1500, 4)) + "\n")
        publish(server, path)
        wait_for(lambda: service.settled(1), 60, what="facts stored")
        wait_for(lambda: service.metric("ledger_consumer_pending_messages") == 0, 120, what="all consumed")
        answer = request(server.url, "ledger.query.report", {})
        assert answer["error"]["reason"] == "too_large", answer
        assert "65536" in answer["error"]["message"] and "GET /report" in answer["error"]["message"]
        some = service.get_json("/report")["balances"][0]["beneficiary_id"]
        small = request(server.url, "ledger.query.report", {"introducer_id": some})
        assert small["introducer_id"] == some
    finally:
        service.kill()
        server.stop()


def test_concurrent_reports_neither_block_ingestion_nor_readiness(tmp_path: Path, nats: NatsServer) -> None:
    """200 concurrent GET /report while facts stream in: each is answered (200, or 429 past
    the admission bound), /readyz stays 200 throughout and the facts are all stored."""
    service = LedgerProcess(
        nats.url,
        f"sqlite:///{tmp_path / 's.db'}",
        tmp_path,
        env_extra={"LEDGER_MAX_CONCURRENT_QUERIES": "32"},
    ).start()
    try:
        first = tmp_path / "first.jsonl"
        first.write_text("\n".join(generate(2000, 5)) + "\n")
        publish(nats, first)
        wait_for(
            lambda: service.metric("ledger_consumer_pending_messages") == 0, 120, what="first part stored"
        )
        stored_before = service.metric("ledger_stored_position")
        statuses: list[int] = []
        readiness: list[int] = []
        done = threading.Event()

        def report() -> None:
            try:
                with urllib.request.urlopen(service.http + "/report", timeout=120) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)

        def watch() -> None:
            while not done.is_set():
                readiness.append(service.get("/readyz")[0])
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        second = [_invoice(n) for n in range(300)]
        feeder = threading.Thread(
            target=publish_bodies, args=(nats.url, [(b, f"rel-{n}") for n, b in enumerate(second)])
        )
        threads = [threading.Thread(target=report) for _ in range(200)]
        feeder.start()
        for thread in threads:
            thread.start()
        for thread in [*threads, feeder]:
            thread.join(180)
        wait_for(
            lambda: service.metric("ledger_stored_position") >= stored_before + 300, 120, what="second part"
        )
        done.set()
        watcher.join(10)
        assert len(statuses) == 200 and set(statuses) <= {200, 429}, sorted(set(statuses))
        assert 200 in statuses
        assert readiness and set(readiness) == {200}, sorted(set(readiness))
        assert service.metric("ledger_queries_busy_total") == statuses.count(429)
    finally:
        service.kill()


def test_same_envelope_id_with_other_data_is_a_conflict(tmp_path: Path, nats: NatsServer) -> None:
    """An envelope id reused with other data is rejected as conflict on ledger.rejected (the
    first stands), and listed under rejected by `report --events`."""
    first = _invoice(1)
    other = json.loads(first)
    other["data"]["net_amount"] = "999.00"
    again = json.dumps(other).encode()
    path = tmp_path / "reuse.jsonl"
    path.write_bytes(first + b"\n" + again + b"\n" + first + b"\n")
    offline = offline_report(path)
    assert [(r["line"], r["reason"]) for r in offline["rejected"]] == [(2, "conflict")]
    assert offline["summary"] == {"lines": 3, "accepted": 1, "duplicates": 1, "rejected": 1}
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    try:
        publish_bodies(nats.url, [(first, "m-1"), (again, "m-2"), (first, "m-3")])
        found = wait_for(lambda: (got := rejections(nats.url)) and got, 30, what="the conflict rejected")
        assert [body["reason"] for _, body in found] == ["conflict"]
        wait_for(lambda: service.settled(1), 30, what="first stored")
        assert service.get_json("/report")["commissions"] == offline["commissions"]
    finally:
        service.kill()


def _forge(db: Path) -> None:
    """Change one stored fact's amount and recompute the whole hash chain, as a forger with
    write access to the store would."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT originator_version, state FROM stored_events WHERE originator_id = ? ORDER BY originator_version",
            (LOG_ID.hex,),
        ).fetchall()
        previous = GENESIS
        for position, state in rows:
            document = json.loads(state)
            envelope_json = document["envelope_json"]
            if position == 3:
                envelope_json = envelope_json.replace('"net_amount":"', '"net_amount":"1', 1)
            body = envelope_json.encode()
            document["envelope_json"] = envelope_json
            document["chain_hash"] = previous = chain_hash(previous, position, body)
            document["fact_digest"] = fact_digest(body)
            con.execute(
                "UPDATE stored_events SET state = ? WHERE originator_id = ? AND originator_version = ?",
                (json.dumps(document, separators=(",", ":")).encode(), LOG_ID.hex, position),
            )
        con.commit()
    finally:
        con.close()


def test_a_forged_history_is_caught_against_the_published_checkpoint(
    tmp_path: Path, nats: NatsServer
) -> None:
    """A fact edited and the whole chain recomputed passes a plain `audit verify`, but the
    service compares its chain with the checkpoint it published: not ready, a metric, nothing
    consumed; `audit verify --published` fetches the checkpoints and fails."""
    db = tmp_path / "s.db"
    env = {"LEDGER_CHECKPOINT_INTERVAL_S": "0.2"}
    service = LedgerProcess(nats.url, f"sqlite:///{db}", tmp_path, env_extra=env).start()
    path, lines = all_examples(tmp_path)
    try:
        publish(nats, path)
        wait_for(lambda: service.settled(len(lines)), 60, what="settled")
        wait_for(
            lambda: any(i == f"checkpoint:{len(lines)}" for i, _ in read_stream(nats.url, "LEDGER_OUT")),
            30,
            what="checkpoint at the head",
        )
    finally:
        service.terminate()
    _forge(db)
    store_env = {"LEDGER_STORE_URL": f"sqlite:///{db}", "NATS_URL": nats.url}
    assert run_cli("audit", "verify", "--format", "json", env=store_env, check=False).returncode == 0
    proc = run_cli("audit", "verify", "--published", "--format", "json", env=store_env, check=False)
    assert proc.returncode == 1, proc.stdout
    assert {f["kind"] for f in json.loads(proc.stdout)["faults"]} == {"checkpoint_mismatch"}
    service.start(wait_ready=False)
    try:
        body = wait_for(
            lambda: (r := service.get("/readyz"))[0] == 503 and b"checkpoint" in r[1] and r[1],
            60,
            what="not ready: checkpoint mismatch",
        )
        assert b"audit verify --published" in body
        assert service.metric("ledger_checkpoint_mismatch") == 1
        publish_bodies(nats.url, [(_invoice(n), f"rel-{n}") for n in range(5)])
        _, acked_before = consumer_state(nats.url, "LEDGER_IN", "ledger-in-v1")
        time.sleep(1.5)  # a window to observe that nothing is consumed (no event to wait for)
        pending, acked_after = consumer_state(nats.url, "LEDGER_IN", "ledger-in-v1")
        assert acked_after == acked_before and pending >= 5
        assert service.metric("ledger_facts_accepted_total") == 0
    finally:
        service.kill()


def test_slow_request_headers_are_cut_off(tmp_path: Path, nats: NatsServer) -> None:
    """A client sending its request headers a byte at a time is disconnected after the
    header timeout; a normal request is still served."""
    service = LedgerProcess(
        nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path, env_extra={"LEDGER_HTTP_HEADER_TIMEOUT_S": "1"}
    ).start()
    try:
        with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
            started = time.monotonic()
            closed = False
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            assert closed, "the slow client was never cut off"
            assert time.monotonic() - started < 8
        assert service.get("/healthz")[0] == 200
        status, body = service.get("/no/such/path")
        assert status == 404 and json.loads(body)["error"]["reason"] == "not_found"
    finally:
        service.kill()


def test_the_query_worker_dies_with_a_killed_service(tmp_path: Path, nats: NatsServer) -> None:
    """SIGKILL of `ledger serve` takes its query worker process with it (no orphan keeps the
    store open), and a new service answers queries with a new worker."""
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    assert service.process is not None
    parent = service.process.pid
    service.get_json("/report")  # the worker starts with the first query

    def workers_of(pid: int) -> list[int]:
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in text and "multiprocessing" in (status.parent / "cmdline").read_text():
                found.append(int(status.parent.name))
        return found

    children = wait_for(lambda: workers_of(parent), 30, what="a query worker")
    service.kill()
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), 30, what="the worker gone")
    service.start()
    assert "commissions" in service.get_json("/report")
    service.kill()
