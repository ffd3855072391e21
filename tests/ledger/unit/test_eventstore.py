"""The fact log's write path: rows encoded once with orjson read back as eventsourcing's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.adapters.eventstore import LOG_ID, EventSourcedFactStore, FactRecorded
from ledger.application.ports import PositionConflictError, StoredFact

ODD = '{"a":"é \\" \\\\ \\u2028 \u2028 \x7f 😀","n":1}'


def _facts(start: int, count: int) -> list[StoredFact]:
    return [
        StoredFact(
            position,
            ODD.replace("1", str(position)).encode("utf-8"),
            f"2026-12-0{1 + position % 9}T10:00:00.{position:06d}+00:00",
            f"{position:064x}",
            f"{position * 7:064x}",
        )
        for position in range(start, start + count)
    ]


@pytest.mark.parametrize("module", ["eventsourcing.sqlite", "eventsourcing.popo"])
def test_appended_rows_read_back_through_eventsourcings_mapper_unchanged(tmp_path: Path, module: str) -> None:
    """Each appended fact decodes, through eventsourcing's own mapper, to the same fields; and
    through the store's read path to the same StoredFact."""
    env = {"PERSISTENCE_MODULE": module, "SQLITE_DBNAME": str(tmp_path / "log.db")}
    store = EventSourcedFactStore(env)
    facts = _facts(1, 50)
    store.append(facts[:20])
    store.append(facts[20:])
    assert list(store.read(0, 100)) == facts
    for record, fact in zip(store.app.recorder.select_events(LOG_ID, gt=0), facts, strict=True):
        event = store.app.mapper.to_domain_event(record)
        assert isinstance(event, FactRecorded)
        assert event.originator_version == fact.position
        assert event.timestamp.isoformat() == fact.recorded_at
        assert event.envelope_json.encode("utf-8") == fact.envelope_json
        assert (event.chain_hash, event.fact_digest) == (fact.chain_hash, fact.fact_digest)
    store.close()


def test_a_taken_position_is_a_conflict_and_nothing_of_the_batch_is_written(tmp_path: Path) -> None:
    """Appending at a taken position fails as a whole (one transaction)."""
    store = EventSourcedFactStore(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "l.db")}
    )
    store.append(_facts(1, 5))
    with pytest.raises(PositionConflictError):
        store.append(_facts(6, 3) + _facts(5, 1))
    assert [fact.position for fact in store.read(0, 100)] == [1, 2, 3, 4, 5]
    store.close()
