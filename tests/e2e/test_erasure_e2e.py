"""Erasure end to end: a real nats-server, `ledger serve`, `notifier serve` and an SMTP server.
After `ledger forget` of an introducer who was told her statement, nothing of her name or
e-mail remains in any stream message, in the nats-server's files, in the ledger's or the
notifier's store, or in any log line; every figure and the audit are unchanged."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.conftest import envelope
from tests.e2e.test_notifier_e2e import consumer, notifier, sink  # noqa: F401  (fixture)
from tests.e2e.test_statements_e2e import TOLD, contacts, publish_file, statements_of
from tests.notifier.support import SmtpSink, month_lines
from tests.support.jetstream import read_stream
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

NAME = b"Marie Dupont"
EMAIL = b"marie@example.org"
KEYS = f"e2e:{base64.b64encode(bytes(range(32))).decode()}"


def _files_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def _stream_bytes(url: str) -> bytes:
    return b"".join(
        json.dumps(body, ensure_ascii=False).encode()
        for stream in ("LEDGER_IN", "LEDGER_OUT", "LEDGER_REJECTED")
        for _, body in read_stream(url, stream)
    )


def _acked(url: str) -> bool:
    floor, last, unacked, undelivered = consumer(url)
    return floor == last and unacked == undelivered == 0


def test_forget_leaves_no_trace_in_streams_stores_or_logs(
    tmp_path: Path,
    nats: NatsServer,
    sink: SmtpSink,  # noqa: F811
) -> None:
    """Before: her e-mail is in LEDGER_OUT (her contact) and LEDGER_REJECTED (a refused message
    quoting it). After `ledger forget`: in no stream, no nats-server file, no store file, no
    log; the figures, `audit verify` and the notifier's other statements unchanged."""
    db = tmp_path / "ledger.db"
    env = {"LEDGER_MASTER_KEYS": KEYS, "LEDGER_STORE_URL": f"sqlite:///{db}", "NATS_URL": nats.url}
    ledger = LedgerProcess(nats.url, f"sqlite:///{db}", tmp_path)
    ledger.env_extra = {
        "LEDGER_PUBLIC_URL": ledger.http,
        "LEDGER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        "LEDGER_MASTER_KEYS": KEYS,
    }
    ledger.start()
    service = notifier(tmp_path, nats, sink.port, NOTIFIER_LEDGER_URL=ledger.http).start()
    refused = envelope(
        "introducer.registered",
        {
            "introducer_id": "int-marie-2",
            "display_name": "Marie Dupont",
            "email": "marie@example.org",
            "iban": "X",
        },
        id="reg-refused",
    )
    try:
        lines = [*contacts(), *month_lines(), refused]
        publish_file(nats, tmp_path / "month.jsonl", lines)
        wait_for(lambda: len(statements_of(sink.received())) >= len(TOLD), 120, what="every statement")
        wait_for(lambda: ledger.settled(len(lines) - 1), 60, what="ledger settled")
        wait_for(lambda: _acked(nats.url), 60, what="notifier acked everything")
        assert EMAIL in _stream_bytes(nats.url)  # the premise: the streams held her data
        before = json.loads(run_cli("report", "--format", "json", env=env).stdout)

        forget = ["forget", "--party", "introducer", "--id", "int-marie", "--wait-s", "120"]
        who = ["--requested-by", "dpo-ana", "--approved-by", "tre-luc"]
        done = json.loads(run_cli(*forget, *who, env=env).stdout)
        assert done["status"] == "erased" and done["streams_scrubbed"] is True, done
        wait_for(lambda: _acked(nats.url), 60, what="notifier took the erasure")
        streams = _stream_bytes(nats.url)
        assert EMAIL not in streams and NAME not in streams
        assert b"party.erased" in streams
        after = json.loads(run_cli("report", "--format", "json", env=env).stdout)
        assert after["commissions"] == before["commissions"] and after["balances"] == before["balances"]
        assert run_cli("audit", "verify", "--format", "json", env=env).returncode == 0
        shown = json.loads(
            run_cli("statement", "--introducer", "int-marie", "--format", "json", env=env).stdout
        )
        assert shown["introducer_name"] == "[erased]"
    finally:
        service.kill()
        ledger.kill()
    for place in (nats.store_dir, tmp_path / "notifier-data"):
        found = _files_bytes(place)
        assert EMAIL not in found and NAME not in found, place
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("ledger.db*"))
    assert stored and EMAIL not in stored and NAME not in stored
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("*.log"))
    assert logs and EMAIL not in logs and NAME not in logs
