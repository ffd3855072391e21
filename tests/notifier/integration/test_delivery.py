"""Sending: retries with bounded back-off, failures to notifier.failed, resending, no
blocking by a dead channel, in-process de-duplication, and daily digests on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from notifier.application.ports import SendFailure
from notifier.domain.events import AlertKey
from tests.conftest import EXAMPLES
from tests.notifier.support import derived_envelopes, introducer_line, introduction_lines, make_rig

EXAMPLE_01 = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()


def _two_introducers() -> list[str]:
    return [
        introducer_line("int-dead", webhook_url="https://dead.example/hook", email_addr="dead@example.org"),
        introducer_line("int-ok", webhook_url="https://ok.example/hook"),
        *introduction_lines("int-dead", "cli-d", "CHF", "1000.00"),
        *introduction_lines("int-ok", "cli-o", "EUR", "500.00"),
    ]


@pytest.mark.asyncio
async def test_transient_failures_are_retried_with_bounded_backoff(tmp_path: Path) -> None:
    """Two refused attempts then success: sent once, 3 attempts recorded, waits within bounds."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=5)
    rig.email.fail["int-marie"] = (2, SendFailure("smtp_connect", "refused"))
    await rig.feed(derived_envelopes(EXAMPLE_01)[:2])
    assert [d.key.alert_id for d in rig.email.sent] == ["3:commission.accrued:2025-0311/intro-100"]
    record = rig.store.alert(AlertKey("3:commission.accrued:2025-0311/intro-100", "email"))
    assert record.status == "sent" and record.attempts == 3
    assert rig.observer.counts["retried:email"] == 2
    assert len(rig.sleeps) == 2
    assert 0.005 <= rig.sleeps[0] <= 0.01 and 0.01 <= rig.sleeps[1] <= 0.02
    assert rig.publisher.notices == []


@pytest.mark.asyncio
async def test_last_attempt_publishes_to_notifier_failed(tmp_path: Path) -> None:
    """After max_attempts failures the alert is recorded failed and one notice is published."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=3)
    rig.webhook.fail["int-dead"] = (-1, SendFailure("http_5xx", "HTTP 503"))
    envs = derived_envelopes(_two_introducers())
    await rig.feed(envs)
    assert rig.webhook.attempts["int-dead"] == 3
    assert [n.introducer_id for _, n in rig.publisher.notices] == ["int-dead"]
    msg_id, notice = rig.publisher.notices[0]
    assert (notice.channel, notice.reason, notice.attempts, notice.failures) == ("webhook", "http_5xx", 3, 1)
    assert msg_id == f"{notice.event_id}#webhook#failed-1"
    # the other channel of the same introducer and the other introducer are unaffected
    assert [d.party.party_id for d in rig.email.sent] == ["int-dead"]
    assert [d.party.party_id for d in rig.webhook.sent] == ["int-ok"]
    # a redelivery of the failed event neither resends nor republishes
    await rig.feed(envs)
    assert rig.webhook.attempts["int-dead"] == 3 and len(rig.publisher.notices) == 1


@pytest.mark.asyncio
async def test_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    """A permanent refusal (e.g. 5xx mailbox unknown) fails at once, without back-off."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=5)
    rig.email.fail["int-marie"] = (-1, SendFailure("smtp_rejected", "550", permanent=True))
    await rig.feed(derived_envelopes(EXAMPLE_01)[:2])
    assert rig.email.attempts["int-marie"] == 1 and rig.sleeps == []
    assert rig.publisher.notices[0][1].reason == "smtp_rejected"


@pytest.mark.asyncio
async def test_unpublished_failure_keeps_the_message_unsettled(tmp_path: Path) -> None:
    """notifier.failed unreachable: the message stays unsettled; its redelivery publishes without resending."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=2)
    rig.email.fail["int-marie"] = (-1, SendFailure("smtp_connect", "refused"))
    envs = derived_envelopes(EXAMPLE_01)[:2]
    await rig.feed(envs[:1])
    rig.publisher.broken = True
    with pytest.raises(ConnectionError):
        await rig.feed(envs[1:])
    assert rig.email.attempts["int-marie"] == 2
    rig.publisher.broken = False
    await rig.feed(envs[1:])  # the redelivery
    assert rig.email.attempts["int-marie"] == 2
    assert len(rig.publisher.notices) == 1


@pytest.mark.asyncio
async def test_resend_failed_sends_once_the_channel_is_back(tmp_path: Path) -> None:
    """resend-failed gives failed alerts a fresh round; sent ones are not touched."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=2)
    rig.webhook.fail["int-dead"] = (-1, SendFailure("connection", "refused"))
    await rig.feed(derived_envelopes(_two_introducers()))
    assert rig.store.counts()["failed"] == 1
    summary = await rig.resender.resend_failed()
    assert summary == {"claimed": 1, "sent": 0, "failed": 1}
    assert rig.publisher.notices[-1][1].failures == 2
    del rig.webhook.fail["int-dead"]
    assert await rig.resender.resend_failed() == {"claimed": 1, "sent": 1, "failed": 0}
    assert await rig.resender.resend_failed() == {"claimed": 0, "sent": 0, "failed": 0}
    assert sorted(d.party.party_id for d in rig.webhook.sent) == ["int-dead", "int-ok"]


@pytest.mark.asyncio
async def test_dead_webhook_does_not_block_others(tmp_path: Path) -> None:
    """While one introducer's webhook is retried with real waits, others are delivered at once."""
    rig = make_rig(tmp_path / "n.sqlite3", max_attempts=4, real_sleep=True)
    rig.webhook.fail["int-dead"] = (-1, SendFailure("timeout", "slow"))
    rig.webhook.delay_s = 0.05
    envs = derived_envelopes(_two_introducers())
    for env in envs:  # ingest everything first, then settle concurrently like the consumer
        await rig.ingestor.ingest(env)
    keys = rig.store.open_alerts_of_recipient("int-dead") + rig.store.open_alerts_of_recipient("int-ok")
    dead = asyncio.ensure_future(rig.deliverer.deliver_all([k for k in keys if k.channel == "webhook"]))
    await asyncio.sleep(0.15)
    assert [d.party.party_id for d in rig.webhook.sent] == ["int-ok"]
    assert not dead.done()
    await dead
    assert rig.webhook.attempts["int-dead"] == 4


@pytest.mark.asyncio
async def test_concurrent_deliveries_of_one_alert_send_once(tmp_path: Path) -> None:
    """Two tasks asking for the same alert at once (a redelivery racing) send it once."""
    rig = make_rig(tmp_path / "n.sqlite3")
    rig.email.delay_s = 0.05
    envs = derived_envelopes(EXAMPLE_01)[:2]
    await rig.ingestor.ingest(envs[0])
    (key,) = await rig.ingestor.ingest(envs[1])
    await asyncio.gather(rig.deliverer.deliver(key), rig.deliverer.deliver(key), rig.deliverer.deliver(key))
    assert len(rig.email.sent) == 1


@pytest.mark.asyncio
async def test_daily_digest_sends_one_message_per_introducer_per_day(tmp_path: Path) -> None:
    """Queued events make one digest per introducer and channel, sent once the next day at 07:00 Zurich."""
    rig = make_rig(tmp_path / "n.sqlite3", digest_mode="daily")
    rig.clock.now = datetime(2025, 3, 11, 9, 0, tzinfo=UTC)  # 10:00 in Zurich
    envs = derived_envelopes(EXAMPLE_01 + _two_introducers())
    await rig.feed(envs)
    assert rig.email.sent == rig.webhook.sent == []
    assert rig.store.counts()["queued"] == 6 + 3  # marie 6 e-mails; int-dead e-mail + webhook, int-ok webhook
    assert await rig.digester.run_digests(datetime(2025, 3, 11, 22, 0, tzinfo=UTC)) == 0
    assert await rig.digester.run_digests(datetime(2025, 3, 12, 5, 59, tzinfo=UTC)) == 0  # 06:59 local
    assert await rig.digester.run_digests(datetime(2025, 3, 12, 6, 0, tzinfo=UTC)) == 4
    by_who = {(d.party.party_id, d.key.channel): d for d in rig.email.sent + rig.webhook.sent}
    assert sorted(by_who) == [
        ("int-dead", "email"),
        ("int-dead", "webhook"),
        ("int-marie", "email"),
        ("int-ok", "webhook"),
    ]
    marie = by_who[("int-marie", "email")]
    assert marie.key.alert_id == "digest:2025-03-11:int-marie"
    assert marie.rendered.subject == "Votre récapitulatif du 11 mars 2025 : 6 mouvements"
    assert next(e["id"] for e in marie.about["events"]) == "3:commission.accrued:2025-0311/intro-100"
    assert "CHF : acquis CHF\u00a0440.00" in marie.rendered.text
    # her payout is a line of the digest, and the closing balance is the one after it
    assert "6. Versement enregistré : CHF\u00a0200.00 le 30 avril 2025" in marie.rendered.text
    assert "déjà versé CHF\u00a0200.00, reste à verser CHF\u00a040.00" in marie.rendered.text
    assert await rig.digester.run_digests(datetime(2025, 3, 12, 9, 0, tzinfo=UTC)) == 0
    assert len(rig.email.sent) == 2
    assert rig.store.counts()["sent"] == 4 + 9  # the digests and their items
    # an event on the 12th waits for the digest of the 12th, sent on the 13th
    rig.clock.now = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)
    late = derived_envelopes(
        [
            introducer_line("int-late", email_addr="late@example.org"),
            *introduction_lines("int-late", "cli-l", "JPY", "10000"),
        ]
    )
    await rig.feed(late)
    assert await rig.digester.run_digests(datetime(2025, 3, 12, 23, 0, tzinfo=UTC)) == 0
    assert await rig.digester.run_digests(datetime(2025, 3, 13, 7, 0, tzinfo=UTC)) == 1
    assert rig.email.sent[-1].key.alert_id == "digest:2025-03-12:int-late"


@pytest.mark.asyncio
async def test_digest_can_be_chosen_per_introducer(tmp_path: Path) -> None:
    """With the digest listed for one introducer only, the others get one alert per event."""
    rig = make_rig(tmp_path / "n.sqlite3", digest_introducers=frozenset({"int-marie"}))
    await rig.feed(derived_envelopes(EXAMPLE_01 + _two_introducers()))
    assert sorted({d.party.party_id for d in rig.email.sent + rig.webhook.sent}) == [
        "int-dead",
        "int-ok",
    ]
    assert rig.store.counts()["queued"] == 6
    await rig.digester.run_digests(datetime(2025, 3, 13, 7, 0, tzinfo=UTC))
    assert [d.key.alert_id for d in rig.email.sent if d.party.party_id == "int-marie"] == [
        "digest:2025-03-11:int-marie"
    ]


@pytest.mark.asyncio
async def test_failed_digest_goes_to_notifier_failed_and_can_be_resent(tmp_path: Path) -> None:
    """A digest that fails is settled like any alert: notice, then resend-failed."""
    rig = make_rig(tmp_path / "n.sqlite3", digest_mode="daily", max_attempts=2)
    await rig.feed(derived_envelopes(EXAMPLE_01))
    rig.email.fail["int-marie"] = (-1, SendFailure("smtp_connect", "refused"))
    await rig.digester.run_digests(datetime(2025, 3, 12, 7, 0, tzinfo=UTC))
    assert rig.publisher.notices[0][1].event_id == "digest:2025-03-11:int-marie"
    del rig.email.fail["int-marie"]
    assert (await rig.resender.resend_failed())["sent"] == 1
    assert rig.store.counts()["sent"] == 7
