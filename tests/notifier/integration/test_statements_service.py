"""Monthly statements through ``notifier serve`` as a real process on a real nats-server,
with a real SMTP server, a real HTTP receiver and a real HTTP server standing in for the
ledger's statement PDFs (the events are published on ``LEDGER_OUT`` as the ledger publishes
them; the full run with ``ledger serve`` closing a month is the ledger side's end-to-end
test): one statement per party with the figures of ``ledger report --period``; a SIGKILL
between the sends and the acks, then the close published again, send nothing twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import nats as nats_client
import pytest

from notifier.application.formatting import format_money
from tests.notifier.support import (
    MONTH_LANGUAGES,
    HttpReceiver,
    LedgerPdfServer,
    NotifierProcess,
    SmtpSink,
    create_ledger_out,
    expiry_in,
    month_close,
    month_directory,
    month_lines,
    publish_events,
    report_rows,
    running,
)
from tests.support.servers import NatsServer, run_cli, wait_for

MASTER = "statements-service-master-secret"


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


def consumer(url: str) -> tuple[int, int, int, int]:
    """(ack floor, last sequence of LEDGER_OUT, delivered not acked, not delivered)."""
    return asyncio.run(_consumer(url))


def settled(url: str) -> bool:
    floor, last, unacked, undelivered = consumer(url)
    return floor == last and unacked == undelivered == 0


def test_a_close_sends_one_statement_per_party_through_a_sigkill_and_a_republished_close(
    tmp_path: Path, nats: NatsServer
) -> None:
    """Through nats-server and `notifier serve`: one statement per party with report figures, despite SIGKILL and republication."""
    sink, receiver, ledger = SmtpSink().start(), HttpReceiver().start(), LedgerPdfServer().start()
    with running(sink, receiver, ledger):
        close = month_close(base_url=ledger.base_url, expires=expiry_in(30))
        ledger.serve(close, MONTH_LANGUAGES)
        events = [*month_directory(receiver), *close.envelopes]
        create_ledger_out(nats.url)
        service = NotifierProcess(
            nats.url,
            tmp_path / "notifier-data",
            tmp_path,
            env_extra={
                "NOTIFIER_SMTP_HOST": "127.0.0.1",
                "NOTIFIER_SMTP_PORT": str(sink.port),
                "NOTIFIER_WEBHOOK_SECRET": MASTER,
                "NOTIFIER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                "NOTIFIER_LEDGER_URL": ledger.base_url,
                "NOTIFIER_BACKOFF_BASE_S": "0.1",
                "NOTIFIER_BACKOFF_MAX_S": "0.4",
                "NOTIFIER_ACK_WAIT_S": "2",
            },
        )
        try:
            service.start(NOTIFIER_ACK_DELAY_S="60")  # sends, then holds its acks
            assert publish_events(nats.url, events) == [False] * len(events)
            wait_for(
                lambda: len(sink.received()) == 4 and len(receiver.received()) == 3, 60, what="the statements"
            )
            wait_for(lambda: consumer(nats.url)[2] > 0 and consumer(nats.url)[0] == 0, 10, what="acks held")
            service.kill()
            service.start()
            wait_for(lambda: settled(nats.url), 60, what="every message acked after the restart")
            assert service.metric("notifier_statements_sent_total") == 0  # the new process sent nothing

            assert publish_events(nats.url, close.envelopes, msg_suffix="#again") == [False] * len(
                close.envelopes
            )
            wait_for(lambda: settled(nats.url), 60, what="the republished close acked")
            time.sleep(0.5)  # anything extra would show up now
            assert Counter(m.alert_id for m in sink.received()) == {
                close.of(kind, party).id: 1
                for kind, party in [
                    ("client", "cli-dupont"),
                    ("introducer", "int-marie"),
                    ("adviser", "adv-luc"),
                    ("adviser", "adv-eva"),
                ]
            }
            assert Counter(h.path for h in receiver.received()) == {
                "/hooks/marie": 1,
                "/hooks/carl": 1,
                "/hooks/dupont": 1,
            }
            status = service.get_json("/status")
            assert status["statements"] == {"pending": {}, "oldest_pending": None, "waiting": {}}
            wait_for(
                lambda: (
                    service.metric("notifier_statements_pending_age_seconds") == 0
                    and service.metric("notifier_statements_pending") == 0
                ),
                10,
                what="the statement gauges",
            )
            assert service.terminate() == 0
        finally:
            service.kill()

        # the figures are those of `ledger report --period` for each party
        history = tmp_path / "history.jsonl"
        history.write_text("\n".join(month_lines()) + "\n")
        report = json.loads(
            run_cli("report", "--events", str(history), "--period", "2025-03", "--format", "json").stdout
        )
        hooks = {h.path: h.json["data"] for h in receiver.received()}
        for path, kind, party in [
            ("/hooks/marie", "introducer", "int-marie"),
            ("/hooks/dupont", "client", "cli-dupont"),
        ]:
            rows = hooks[path]["about"]["data"]["statement"]["rows"]
            assert rows == report_rows(report, kind, party) and rows
        mails = {m.alert_id: m for m in sink.received()}
        for kind, party in close.views:
            if (kind, party) == ("introducer", "int-carl"):
                continue  # webhook only
            mail = mails[close.of(kind, party).id]
            ((name, content_type, pdf),) = mail.attachments
            assert (name, content_type) == (f"statement-{kind}-{party}-2025-03.pdf", "application/pdf")
            assert pdf == ledger.pdfs[ledger.pdf_path(kind, party)]
            language = MONTH_LANGUAGES.get((kind, party), "fr")
            for row in report_rows(report, kind, party):
                for value in row["closing"].values():
                    assert format_money(Decimal(value), row["currency"], language) in mail.text  # type: ignore[arg-type]
