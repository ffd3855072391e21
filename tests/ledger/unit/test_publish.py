"""`ledger publish`'s retries: what a server restart throws at a publisher is retried with the
same message id, anything else is not."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from ledger.adapters import publish


class FlakyStream:
    """A JetStream context whose first publishes fail with ``error``."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls: list[tuple[str, bytes, str]] = []

    async def publish(self, subject: str, raw: bytes, headers: dict[str, str], timeout: float) -> object:
        self.calls.append((subject, raw, headers["Nats-Msg-Id"]))
        if len(self.calls) <= self.failures:
            raise self.error
        return "ack"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def instant(delay: float, *args: Any) -> None:
        await real_sleep(0)

    monkeypatch.setattr(publish.asyncio, "sleep", instant)


@pytest.mark.parametrize(
    "error",
    [
        nats.js.errors.NoStreamResponseError(),  # the stream not back yet after a restart
        nats.errors.TimeoutError(),
        nats.errors.ConnectionClosedError(),
    ],
)
def test_a_restart_is_ridden_out_with_the_same_message_id(error: Exception) -> None:
    """Failures a server restart causes are retried, each time with the same Nats-Msg-Id."""
    js = FlakyStream(error, failures=3)
    assert asyncio.run(publish.publish_one(js, "ledger.in.x", b"{}", "id-1")) == "ack"
    assert [call[2] for call in js.calls] == ["id-1"] * 4


def test_a_stream_that_never_answers_fails_after_the_last_attempt() -> None:
    """The retries are bounded: the error comes out after PUBLISH_ATTEMPTS tries."""
    js = FlakyStream(nats.js.errors.NoStreamResponseError(), failures=10**6)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        asyncio.run(publish.publish_one(js, "ledger.in.x", b"{}", "id-1"))
    assert len(js.calls) == publish.PUBLISH_ATTEMPTS


def test_a_refusal_is_not_retried() -> None:
    """Other errors (e.g. a permission refusal) come out at once."""
    js = FlakyStream(nats.errors.Error("permissions violation"), failures=1)
    with pytest.raises(nats.errors.Error):
        asyncio.run(publish.publish_one(js, "ledger.in.x", b"{}", "id-1"))
    assert len(js.calls) == 1
