"""``party.erased`` through ``notifier serve`` as a real process on a real nats-server, with a
real SMTP server, a real HTTP receiver and a real HTTP server standing in for the ledger's
statement PDFs (the events published on ``LEDGER_OUT`` as the ledger publishes them)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats as nats_client
import pytest

from notifier.adapters.sent_journal import journal_directory
from notifier.domain.erasure import ERASED
from tests.notifier.support import (
    MONTH_LANGUAGES,
    HttpReceiver,
    LedgerPdfServer,
    NotifierProcess,
    SmtpSink,
    create_ledger_out,
    derived_envelopes,
    expiry_in,
    ledger_event,
    month_close,
    month_directory,
    month_lines,
    publish_events,
    running,
)
from tests.support.servers import NatsServer, wait_for

MASTER = "erasure-service-master-secret"


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-data").start()
    yield server
    server.stop()


async def _consumer(url: str) -> tuple[int, int, int, int]:
    nc = await nats_client.connect(url)
    try:
        js = nc.jetstream()
        info = await js.consumer_info("LEDGER_OUT", "notifier-v1")
        stream = await js.stream_info("LEDGER_OUT")
        return info.ack_floor.stream_seq, stream.state.last_seq, info.num_ack_pending, info.num_pending
    finally:
        await nc.close()


def settled(url: str) -> bool:
    """Every message of LEDGER_OUT delivered to the notifier and acked."""
    floor, last, unacked, undelivered = asyncio.run(_consumer(url))
    return floor == last and unacked == undelivered == 0


def traces(store: Path, needles: list[bytes]) -> dict[str, list[bytes]]:
    """``grep -a`` of the store, its -wal and -shm, and its sent journals for each needle."""
    files = [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    files += sorted(journal_directory(store).glob("*"))
    found: dict[str, list[bytes]] = {}
    for f in files:
        if f.is_file():
            data = f.read_bytes()
            if hits := [n for n in needles if n in data]:
                found[f.name] = hits
    return found


def test_an_erased_party_hears_nothing_more_and_leaves_no_trace_in_the_store(
    tmp_path: Path, nats: NatsServer
) -> None:
    """Through nats-server and `notifier serve`: after party.erased no byte of her in the store, nothing sent to her, others served."""
    sink, receiver, ledger = SmtpSink().start(), HttpReceiver().start(), LedgerPdfServer().start()
    with running(sink, receiver, ledger):
        close = month_close(base_url=ledger.base_url, expires=expiry_in(30))
        ledger.serve(close, MONTH_LANGUAGES)
        directory = month_directory(receiver)
        dupont = next(e for e in directory if e.data.get("client_id") == "cli-dupont")
        marie = next(e for e in directory if e.data.get("introducer_id") == "int-marie")
        marie_commission = next(
            e for e in derived_envelopes(month_lines()) if e.data.get("beneficiary_id") == "int-marie"
        )
        later = ledger_event(
            marie_commission.kind,
            "120:commission.accrued:2025-090/intro-m",
            {**marie_commission.data, "invoice_id": "2025-090"},
            120,
        )
        erasure = ledger_event(
            "party.erased",
            "100:party.erased:introducer/int-marie",
            {"party_type": "introducer", "party_id": "int-marie", "position": 100},
            100,
        )
        needles = [b"Marie Dupont", b"marie@example.org", receiver.url("/hooks/marie").encode()]
        create_ledger_out(nats.url)
        data_dir = tmp_path / "notifier-data"
        service = NotifierProcess(
            nats.url,
            data_dir,
            tmp_path,
            env_extra={
                "NOTIFIER_SMTP_HOST": "127.0.0.1",
                "NOTIFIER_SMTP_PORT": str(sink.port),
                "NOTIFIER_WEBHOOK_SECRET": MASTER,
                "NOTIFIER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                "NOTIFIER_LEDGER_URL": ledger.base_url,
                "NOTIFIER_BACKOFF_BASE_S": "0.1",
                "NOTIFIER_BACKOFF_MAX_S": "0.4",
            },
        )
        store = data_dir / "notifier.sqlite3"
        try:
            service.start()
            # the month: everyone but cli-dupont is registered; its statement (naming her) waits
            publish_events(nats.url, [e for e in directory if e is not dupont])
            publish_events(nats.url, close.envelopes)
            wait_for(
                lambda: len(sink.received()) == 3 and len(receiver.received()) == 2, 60, what="the statements"
            )
            wait_for(lambda: settled(nats.url), 60, what="the month acked")
            assert traces(store, needles), "the test sees her before the erasure"

            publish_events(nats.url, [erasure])
            wait_for(lambda: settled(nats.url), 60, what="the erasure acked")
            assert traces(store, needles) == {}

            # later: cli-dupont registers (its statement goes out), she is registered again and
            # earns a commission, the close is published again, and so is the erasure
            publish_events(nats.url, [dupont, later])
            publish_events(nats.url, [marie, *close.envelopes, erasure], msg_suffix="#again")
            wait_for(lambda: len(sink.received()) == 4, 60, what="cli-dupont's statement")
            wait_for(lambda: settled(nats.url), 60, what="everything acked")
            time.sleep(0.5)  # anything extra would show up now

            to = Counter(rcpt for m in sink.received() for rcpt in m.rcpt_tos)
            assert to["marie@example.org"] == 1  # her statement, before the erasure; nothing after
            assert Counter(h.path for h in receiver.received())["/hooks/marie"] == 1
            (statement,) = [m for m in sink.received() if m.alert_id == close.of("client", "cli-dupont").id]
            assert statement.rcpt_tos == ["compta@dupont.example"]
            assert ERASED in statement.text and "Marie Dupont" not in statement.text
            assert "Carl Berger" in statement.text
            assert service.metric("notifier_events_total", {"kind": "party.erased", "state": "erasure"}) == 1
            assert (
                service.metric("notifier_events_total", {"state": "erased"}) >= 2
            )  # her registration, commission
            assert service.get_json("/status")["alerts"]["erased_parties"] == 1
            assert traces(store, needles) == {}
            assert service.terminate() == 0
        finally:
            service.kill()
        assert traces(store, needles) == {}
