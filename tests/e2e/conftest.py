"""Fixtures that start real processes: nats-server and `ledger serve`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import LedgerProcess, NatsServer


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-data").start()
    yield server
    server.stop()


@pytest.fixture
def ledger_service(tmp_path: Path, nats: NatsServer) -> Iterator[LedgerProcess]:
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 'store' / 'ledger.sqlite3'}", tmp_path)
    service.start()
    yield service
    service.kill()
