"""Fixtures that start real processes: nats-server and `ledger serve` (on SQLite, then on
PostgreSQL: the `store` fixture runs each test on both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import LedgerProcess, NatsServer
from tests.support.stores import StoreUnderTest


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-data").start()
    yield server
    server.stop()


@pytest.fixture
def ledger_service(tmp_path: Path, nats: NatsServer, store: StoreUnderTest) -> Iterator[LedgerProcess]:
    service = LedgerProcess(nats.url, store.url, tmp_path)
    service.start()
    yield service
    service.kill()
