"""Period closes through the real service (nats-server, `ledger serve`): the statements it
freezes equal the offline replay's, `ledger.out.period.closed` announces each close once,
late facts become the next month's adjustments, the audit recomputes every frozen
statement, and a SIGKILL in the middle changes nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.e2e.test_ledger_service import publish
from tests.ledger.unit.test_periods import (
    BASE,
    close,
    credit_note,
    invoice,
    payout,
    void,
)
from tests.support.jetstream import read_stream, request
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

HISTORY = [
    *BASE,
    invoice("INV-2", "2025-01-20", "500.00", "EUR"),
    close("2025-01", "2025-02-01"),
    payout("PO-1", "2025-02-10", "60.00"),
    invoice("INV-3", "2025-02-12", "800.00"),
    close("2025-02", "2025-03-01"),
    credit_note("CN-1", "INV-1", "2025-01-25", "300.00"),  # late, dated in a closed month
    void("payout", "PO-1"),  # a void after the close of its month
    invoice("INV-4", "2025-03-03", "100.00"),
]


def offline(path: Path, period: str) -> dict[str, Any]:
    proc = run_cli("report", "--events", str(path), "--period", period, "--format", "json")
    return dict(json.loads(proc.stdout))


def test_closes_through_the_service_equal_the_offline_replay(tmp_path: Path, nats: NatsServer) -> None:
    """Closed and provisional statements over HTTP and NATS equal `report --events --period`;
    each close is announced once on ledger.out.period.closed with its totals; `audit verify`
    recomputes the frozen statements; the store's statement altered is a fault."""
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(HISTORY) + "\n")
    db = tmp_path / "s.db"
    service = LedgerProcess(nats.url, f"sqlite:///{db}", tmp_path).start()
    try:
        publish(nats, path)
        wait_for(lambda: service.settled(len(HISTORY)), 60, what="settled")
        for period in ("2025-01", "2025-02", "2025-03"):
            live = service.get_json(f"/report/period?period={period}")
            expected = offline(path, period)
            assert {k: v for k, v in live.items() if k != "head"} == {
                k: v for k, v in expected.items() if k != "head"
            }, period
        over_nats = request(nats.url, "ledger.query.period", {"period": "2025-02"})
        assert over_nats["status"] == "closed" and over_nats["close"]["period"] == "2025-02"
        march = service.get_json("/report/period?period=2025-03")
        assert march["status"] == "provisional"
        accrued = next(
            r for r in march["balances"] if r["beneficiary_id"] == "int-bob" and r["currency"] == "CHF"
        )
        assert accrued["adjustments"]["accrued"] == "-30.00"  # the late credit note of January
        assert accrued["adjustments"]["paid"] == "-60.00"  # the voided February payout
        status, body = service.get("/report/period?period=2025-07")
        assert status == 404 and json.loads(body)["error"]["reason"] == "not_available"
        announced = [b for i, b in read_stream(nats.url, "LEDGER_OUT") if "period.closed" in str(i)]
        assert [b["data"]["period"] for b in announced] == ["2025-01", "2025-02"]
        assert {t["currency"] for t in announced[0]["data"]["totals"]} == {"CHF", "EUR"}
        report = service.get_json("/report")
        assert [p["period"] for p in report["periods"]] == ["2025-01", "2025-02"]
    finally:
        service.terminate()
    store = {"LEDGER_STORE_URL": f"sqlite:///{db}"}
    assert run_cli("audit", "verify", "--format", "json", env=store, check=False).returncode == 0
    _alter_statement(db, "2025-01")
    proc = run_cli("audit", "verify", "--format", "json", env=store, check=False)
    assert proc.returncode == 1
    assert {f["kind"] for f in json.loads(proc.stdout)["faults"]} == {"statement_mismatch"}


def _alter_statement(db: Path, period: str) -> None:
    con = sqlite3.connect(db)
    try:
        for _version, state in con.execute("SELECT originator_version, state FROM stored_events").fetchall():
            document = json.loads(state)
            if document.get("period") == period and "statement_json" in document:
                document["statement_json"] = (
                    document["statement_json"].replace('"240.00"', '"241.00"').replace('"100.00"', '"101.00"')
                )
                con.execute(
                    "UPDATE stored_events SET state = ? WHERE state = ?",
                    (json.dumps(document).encode(), state),
                )
        con.commit()
    finally:
        con.close()


def test_a_sigkill_between_close_and_statement_changes_nothing(tmp_path: Path, nats: NatsServer) -> None:
    """Killed right after the facts are in: after a restart every closed statement is
    stored once, equal to the offline replay's, and announced once."""
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(HISTORY) + "\n")
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    publish(nats, path)
    wait_for(lambda: service.metric("ledger_stored_position") >= 4, 60, what="the first close stored")
    service.kill()
    service.start()
    try:
        wait_for(lambda: service.settled(len(HISTORY)), 60, what="settled after the kill")
        for period in ("2025-01", "2025-02"):
            live = service.get_json(f"/report/period?period={period}")
            assert {k: v for k, v in live.items() if k != "head"} == {
                k: v for k, v in offline(path, period).items() if k != "head"
            }
        ids = [i for i, _ in read_stream(nats.url, "LEDGER_OUT") if "period.closed" in str(i)]
        assert len(ids) == len(set(ids)) == 2
    finally:
        service.kill()
