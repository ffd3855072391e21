"""Shared fixtures: paths to the spec and its worked examples."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer, unavailable_reason
from tests.support.stores import StoreUnderTest

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "spec"
EXAMPLES = SPEC / "examples"
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.jsonl"))


def envelope(type_suffix: str, data: dict[str, Any], id: str | None = None, **extra: Any) -> str:
    """One CloudEvents line of the contract."""
    doc = {
        "specversion": "1.0",
        "id": id
        or f"t-{type_suffix}-{hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]}",
        "source": "tests",
        "type": f"coop.ledger.{type_suffix}.v1",
        "time": "2025-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    doc.update(extra)
    return json.dumps(doc)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (each test gets its own database)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    """The same suite on each event store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        return StoreUnderTest("sqlite", f"sqlite:///{path}", sqlite_path=path)
    pg = request.getfixturevalue("pg_server")
    return StoreUnderTest("postgres", pg.new_database(), pg=pg)


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    if not EXAMPLES.is_dir():
        pytest.fail(f"the worked examples are missing: {EXAMPLES}")
    return EXAMPLES
