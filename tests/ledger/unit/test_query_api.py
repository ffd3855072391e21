"""The query service: bounded admission, one computation for identical queries, answers
that fit a NATS reply."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from ledger.adapters.metrics import LedgerMetrics
from ledger.adapters.query_api import Answer, BusyError, QueryService, nats_answer
from ledger.application.queries import ReportQuery
from ledger.bootstrap import build_ephemeral_ledger
from tests.conftest import EXAMPLES


def _service(max_concurrent: int) -> tuple[QueryService, LedgerMetrics]:
    ledger = build_ephemeral_ledger()
    ledger.ingest((EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines())
    metrics = LedgerMetrics()
    return QueryService(ledger, metrics, workers=1, max_concurrent=max_concurrent, token=None), metrics


def test_queries_past_the_admission_bound_are_turned_away() -> None:
    """With 3 queries admitted and the computation blocked, a 4th is refused as busy
    (HTTP 429) and counted. The first query is computed at once; the two that came while it
    ran share the next computation (fresh for them): two computations for three answers."""
    service, metrics = _service(3)
    gate = threading.Event()
    computed: list[ReportQuery] = []
    original = service._compute

    def slow(query: ReportQuery) -> tuple[int, Answer]:
        computed.append(query)
        gate.wait(10)
        return original(query)

    service._compute = slow  # type: ignore[method-assign]

    async def scenario() -> list[bytes]:
        waiting = [asyncio.create_task(service.json(ReportQuery(), "http")) for _ in range(3)]
        await asyncio.sleep(0.05)
        with pytest.raises(BusyError):
            await service.json(ReportQuery(), "http")
        gate.set()
        return await asyncio.gather(*waiting)

    answers = asyncio.run(scenario())
    assert len(set(answers)) == 1 and len(computed) == 2
    assert metrics.queries_refused.labels("http")._value.get() == 1
    service.close()


def test_a_nats_answer_never_exceeds_the_max_payload() -> None:
    """An answer bigger than the max payload becomes a too_large error that names the limit
    and the HTTP route; a small enough one is the answer itself."""
    service, _ = _service(8)
    small = asyncio.run(nats_answer(service, b"{}", "report", 10 * 1024 * 1024))
    assert "commissions" in json.loads(small)
    refused = asyncio.run(nats_answer(service, b"{}", "report", 5000))
    assert len(refused) <= 5000
    error = json.loads(refused)["error"]
    assert error["reason"] == "too_large" and "GET /report" in error["message"]
    service.close()


def test_a_burst_of_the_same_query_costs_at_most_two_computations() -> None:
    """Fifty identical queries arriving while one is computed are all answered by one more
    computation, not fifty."""
    service, _ = _service(100)
    gate = threading.Event()
    computed: list[ReportQuery] = []
    original = service._compute

    def slow(query: ReportQuery) -> tuple[int, Answer]:
        computed.append(query)
        gate.wait(10)
        return original(query)

    service._compute = slow  # type: ignore[method-assign]

    async def scenario() -> list[bytes]:
        first = asyncio.create_task(service.json(ReportQuery(), "nats"))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(service.json(ReportQuery(), "nats")) for _ in range(50)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario())
    assert len(answers) == 51 and len(set(answers)) == 1 and len(computed) == 2
    service.close()
