"""`notifier serve` SIGKILLed again and again while alerts flow: every alert arrives, none twice.

Real processes and servers: nats-server, the notifier as a child process, an SMTP server
(aiosmtpd) and an HTTP receiver, each recording every delivery with its alert id and the
moment it accepted it. Synthetic ledger events are published to a ``LEDGER_OUT`` stream made
with the ledger's configuration, at a steady pace; the notifier is killed at random moments
(after a random number of further deliveries) and restarted each time.

The suite runs a short version (``NOTIFIER_KILL_KILLS``, default 6, and
``NOTIFIER_KILL_ALERTS``, default 400); ``scripts/soak notifier-kill`` runs 20 kills over 800
alerts. The summary (kills, deliveries, duplicates, and the window between a far end
accepting an alert and the notifier's durable "sent" record) is printed and written to
``kill-summary.json`` next to the test's logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import nats as nats_client
import pytest

from coop_runtime.streams import ensure_stream, stream_config
from tests.notifier.support import HttpReceiver, NotifierProcess, SmtpSink
from tests.support.jetstream import consumer_state
from tests.support.servers import NatsServer, wait_for

KILLS = int(os.environ.get("NOTIFIER_KILL_KILLS", "6"))
ALERTS = int(os.environ.get("NOTIFIER_KILL_ALERTS", "400"))
SEED = int(os.environ.get("NOTIFIER_KILL_SEED", str(random.SystemRandom().randrange(1_000_000))))
INTRODUCERS = 40  # half by e-mail, half by webhook
#: The last alerts are held back until the last kill, so that alerts flow at every kill.
RESERVE = max(10, ALERTS // 10)
#: Alerts per second published: spread so that they keep flowing across every kill.
RATE = max(8.0, (ALERTS - RESERVE) / (KILLS * 4.0))
#: The notifier records "sent" within milliseconds of the far end's answer (tens under heavy
#: load); an alert answered this long before a kill and sent again means it did not.
LATE_S = 0.5
#: Run the notifier from another checkout (its ``services/``), to compare builds.
CODE = os.environ.get("NOTIFIER_KILL_CODE", "")


def _introducer(n: int, receiver: HttpReceiver) -> dict[str, Any]:
    who = f"int-k{n:02d}"
    data: dict[str, Any] = {"introducer_id": who, "display_name": f"K{n}", "language": "en"}
    if n % 2:
        data["webhook_url"] = receiver.url(f"/hooks/{who}")
    else:
        data["email"] = f"{who}@example.org"
    return data


def _envelope(position: int, kind: str, ref: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{position}:{kind}:{ref}",
        "source": "coop-ledger",
        "type": f"coop.ledger.out.{kind}.v1",
        "datacontenttype": "application/json",
        "subject": kind,
        "ledgerposition": position,
        "data": data,
    }


def _commission(position: int, who: str) -> dict[str, Any]:
    amount = f"{position % 900 + 10}.00"
    data = {
        "invoice_id": f"inv-{position}",
        "introduction_id": f"intro-{who}",
        "introducer_id": who,
        "adviser_id": "adv-luc",
        "client_id": f"cli-{who}",
        "beneficiary_id": who,
        "rule": "standard",
        "year": 1,
        "rate": "0.10",
        "window_start": "2025-03-11",
        "window_end": "2026-03-11",
        "invoice_date": "2025-03-11",
        "base": amount,
        "amount": amount,
        "payable": "0.00",
        "currency": "CHF",
        "delta": amount,
        "balance": {"accrued": amount, "payable": "0.00", "paid": "0.00", "outstanding": "0.00"},
    }
    return _envelope(position, "commission.accrued", f"inv-{position}/intro-{who}", data)


class Publisher(threading.Thread):
    """Publishes the registrations, then the commission events at :data:`RATE` per second;
    the last :data:`RESERVE` events only once :attr:`release` is set."""

    def __init__(self, url: str, events: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events = events
        self.published = 0
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:
            self.error = exc

    async def _publish(self) -> None:
        nc = await nats_client.connect(self.url)
        try:
            js = nc.jetstream()
            loop = asyncio.get_running_loop()
            started = loop.time()
            for i, event in enumerate(self.events):
                if i == len(self.events) - RESERVE:
                    await asyncio.to_thread(self.release.wait)
                    started = loop.time() - i / RATE
                due = started + i / RATE
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())  # pacing, not waiting on a condition
                subject = "ledger.out." + event["subject"]
                await js.publish(subject, json.dumps(event).encode(), headers={"Nats-Msg-Id": event["id"]})
                self.published = i + 1
        finally:
            await nc.close()


async def _create_ledger_out(url: str) -> None:
    nc = await nats_client.connect(url)
    try:
        await ensure_stream(nc.jetstream(), stream_config("LEDGER_OUT", ["ledger.out.>"], 3600, 1))
    finally:
        await nc.close()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver().start()
    yield server
    server.stop()


Delivered = tuple[str, str, float, float]


def _deliveries(sink: SmtpSink, receiver: HttpReceiver) -> list[Delivered]:
    """(alert id, channel, accepted at, answer written at) of everything the far ends
    accepted, in any order (for e-mail the 250 goes out right after: written = accepted)."""
    mails = [(m.alert_id, "email", m.at, m.at) for m in sink.received()]
    hooks = [(h.headers["X-Coop-Alert-Id"], "webhook", h.at, h.written_at) for h in receiver.received()]
    return mails + hooks


def _cause(first: Delivered, runs: list[tuple[float, float]]) -> tuple[str, float]:
    """Why an alert arrived twice, from its first acceptance and the killed runs (ready,
    killed): ``("window", held_s)`` when a ready notifier had the far end's answer, written
    ``held_s`` before the kill, and had not recorded it; ``("ambiguous", 0)`` when the kill
    fell while the answer was being written; ``("in_flight", 0)`` when it was accepted
    between a kill and the next run being ready: the answer to a request of the killed
    process, which no sender can record (the copy carries the same alert id)."""
    _, _, at, written = first
    for ready, killed in runs:
        if ready <= at < killed:
            return ("window", killed - written) if written < killed else ("ambiguous", 0.0)
    return "in_flight", 0.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_sigkill_while_alerts_flow_delivers_each_alert_exactly_once(
    tmp_path: Path, nats: NatsServer, sink: SmtpSink, receiver: HttpReceiver
) -> None:
    """Killed at random moments while alerts flow and restarted each time: every alert arrives, no alert twice."""
    rng = random.Random(SEED)
    asyncio.run(_create_ledger_out(nats.url))
    introducers = [_introducer(n, receiver) for n in range(INTRODUCERS)]
    events = [
        _envelope(n + 1, "introducer.registered", str(i["introducer_id"]), i)
        for n, i in enumerate(introducers)
    ]
    events += [
        _commission(INTRODUCERS + n + 1, str(introducers[n % INTRODUCERS]["introducer_id"]))
        for n in range(ALERTS)
    ]
    expected = {e["id"] for e in events if e["subject"] == "commission.accrued"}
    process = NotifierProcess(
        nats.url,
        tmp_path / "notifier-data",
        tmp_path,
        env_extra={
            "NOTIFIER_SMTP_HOST": "127.0.0.1",
            "NOTIFIER_SMTP_PORT": str(sink.port),
            "NOTIFIER_WEBHOOK_SECRET": "kill-master-secret",
            "NOTIFIER_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "NOTIFIER_ACK_WAIT_S": "2",
            "NOTIFIER_BACKOFF_BASE_S": "0.1",
            "NOTIFIER_BACKOFF_MAX_S": "0.4",
            "NOTIFIER_LOG_LEVEL": "warning",
            **({"PYTHONPATH": f"{CODE}/services/notifier:{CODE}/services/runtime"} if CODE else {}),
        },
    )
    publisher = Publisher(nats.url, events)
    publisher.start()
    kills = 0
    runs: list[tuple[float, float]] = []  # (ready, killed) of each run that was killed
    try:
        for _ in range(KILLS):
            process.start()
            ready = time.time()
            target = min(
                len(_deliveries(sink, receiver)) + rng.randint(1, max(2, int(RATE * 3))),
                len(expected) - RESERVE,  # what can arrive before the reserve is released
            )
            wait_for(lambda t=target: len(_deliveries(sink, receiver)) >= t, 60, what="deliveries to resume")
            runs.append((ready, time.time()))
            process.kill()
            kills += 1
        publisher.release.set()
        process.start()
        wait_for(
            lambda: {d[0] for d in _deliveries(sink, receiver)} >= expected,
            180,
            interval_s=0.2,
            what="every alert delivered",
        )
        assert publisher.error is None and publisher.published == len(events)
        wait_for(
            lambda: (
                consumer_state(nats.url, "LEDGER_OUT", "notifier-v1")[0] == 0
                and process.get_json("/status")["alerts"].get("sent") == len(expected)
            ),
            60,
            interval_s=0.2,
            what="every message acked and every alert recorded sent",
        )
        assert process.terminate() == 0
    finally:
        process.kill()
        publisher.release.set()
        publisher.join(5)

    deliveries = _deliveries(sink, receiver)
    counts = Counter((alert_id, channel) for alert_id, channel, _, _ in deliveries)
    first: dict[tuple[str, str], Delivered] = {}
    for d in sorted(deliveries, key=lambda d: d[2]):
        first.setdefault((d[0], d[1]), d)
    causes = {f"{a}#{c}": _cause(first[(a, c)], runs) for (a, c), n in counts.items() if n > 1}
    late = sorted(
        f"{key} answered {held * 1000:.0f} ms before a kill"
        for key, (_, held) in causes.items()
        if held >= LATE_S
    )
    written_at = {(a, c): w for a, c, _, w in sorted(deliveries, key=lambda d: d[2])}  # the last copy
    with sqlite3.connect(tmp_path / "notifier-data" / "notifier.sqlite3") as db:
        rows = db.execute("SELECT alert_id, channel, sent_at FROM alerts WHERE status = 'sent'").fetchall()
    windows_ms = [
        (datetime.fromisoformat(sent_at).timestamp() - written_at[(alert_id, channel)]) * 1000
        for alert_id, channel, sent_at in rows
        if (alert_id, channel) in written_at
    ]
    held_ms = sorted(round(held * 1000, 1) for cause, held in causes.values() if cause == "window")
    in_window = sorted(key for key, (cause, _) in causes.items() if cause == "window")
    summary = {
        "seed": SEED,
        "kills": kills,
        "alerts": len(expected),
        "deliveries": len(deliveries),
        "duplicates": len(causes),
        "duplicates_by_cause": dict(Counter(cause for cause, _ in causes.values())),
        "window_duplicates_held_ms": held_ms,
        "window_duplicates": in_window[:10],
        "window_ms": {
            "p50": round(statistics.median(windows_ms), 1),
            "p99": round(_percentile(windows_ms, 0.99), 1),
            "max": round(max(windows_ms), 1),
        },
    }
    (tmp_path / "kill-summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\nnotifier kill test: {json.dumps(summary)}")
    assert kills == KILLS
    assert {alert_id for alert_id, _, _, _ in deliveries} == expected
    assert late == [], summary
