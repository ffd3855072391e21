"""Payout runs through the real service (nats-server, `ledger serve`): the operator's
commands publish the run, its approval and the booked payouts; the service stores them,
publishes `ledger.out.payout.recorded` with the run and bank reference, and nothing is
outstanding afterwards. No IBAN appears in the service's logs or metrics, nor in the CLI's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.test_ledger_service import publish
from tests.ledger.integration.test_payouts_cli import (
    DEBTOR_CHF,
    DEBTOR_EUR,
    HISTORY,
    IBAN_A,
    IBAN_E,
    IBAN_S,
    booked,
    notification,
)
from tests.support.jetstream import read_stream
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

IBANS = (IBAN_A, IBAN_E, IBAN_S)


def operator(env: dict[str, str], *args: str) -> Any:
    proc = run_cli(*args, env=env, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for iban in IBANS:
        assert iban.encode() not in proc.stdout + proc.stderr, args
    text = proc.stdout.decode().strip()
    return json.loads(text) if text.startswith(("{", "[")) else text


def test_a_run_through_the_service_pays_and_tells_without_leaking_an_iban(
    tmp_path: Path, nats: NatsServer
) -> None:
    """propose → approve → file → camt.054 → reconcile, each published over NATS and stored
    by the service; payout.recorded events carry run, end-to-end id and bank reference; the
    balances are settled; the IBANs never reach a log line or a metric."""
    db = tmp_path / "s.db"
    service = LedgerProcess(nats.url, f"sqlite:///{db}", tmp_path).start()
    env = {
        "NATS_URL": nats.url,
        "LEDGER_STORE_URL": f"sqlite:///{db}",
        "LEDGER_LOG_FORMAT": "json",
        "LEDGER_PAYOUT_DEBTOR_NAME": "Cooperative",
        "LEDGER_PAYOUT_DEBTOR_CHF_IBAN": DEBTOR_CHF,
        "LEDGER_PAYOUT_DEBTOR_CHF_BIC": "UBSWCHZH80A",
        "LEDGER_PAYOUT_DEBTOR_EUR_IBAN": DEBTOR_EUR,
        "LEDGER_PAYOUT_DEBTOR_EUR_BIC": "COBADEFFXXX",
    }
    try:
        history = tmp_path / "history.jsonl"
        history.write_text("\n".join(HISTORY) + "\n")
        publish(nats, history)
        stored = len(HISTORY)
        wait_for(lambda: service.settled(stored), 60, what="history stored")
        run = operator(
            env,
            *(
                "payouts",
                "propose",
                "--period",
                "2025-01",
                "--proposed-by",
                "tre-ana",
                "--date",
                "2025-02-03",
            ),
            "--format",
            "json",
        )
        assert run["status"] == "published" and len(run["lines"]) == 2
        stored += 1
        wait_for(lambda: service.settled(stored), 60, what="run stored")
        operator(env, "payouts", "approve", run["run_id"], "--approved-by", "tre-luc", "--date", "2025-02-04")
        stored += 1
        wait_for(lambda: service.settled(stored), 60, what="approval stored")
        out = tmp_path / "run.xml"
        operator(env, "payouts", "file", run["run_id"], "--out", str(out))
        bank = notification(tmp_path / "camt.xml", booked(out.read_bytes(), "BK"))
        summary = operator(env, "payouts", "reconcile", str(bank), "--format", "json")
        assert summary["counts"] == {"recorded": 2}
        stored += 2
        wait_for(lambda: service.settled(stored), 60, what="payouts stored")
        balances = {(b["beneficiary_id"], b["currency"]): b for b in service.get_json("/report")["balances"]}
        assert balances[("int-a", "CHF")]["outstanding"] == "0.00"
        assert balances[("int-e", "EUR")]["outstanding"] == "0.00"
        told = [
            body["data"]
            for _, body in read_stream(nats.url, "LEDGER_OUT")
            if body["type"] == "coop.ledger.out.payout.recorded.v1" and body["data"]["run_id"]
        ]
        assert sorted((d["beneficiary_id"], d["amount"], d["bank_reference"]) for d in told) == [
            ("int-a", "60.00", "BK-1"),
            ("int-e", "200.00", "BK-2"),
        ]
        assert all(d["balance"]["outstanding"] in {"0.00"} for d in told)
        _, metrics = service.get("/metrics")
    finally:
        service.terminate()
    logs = b"".join(path.read_bytes() for path in tmp_path.glob("ledger-*.log"))
    assert logs, "the service logged nothing"
    for iban in IBANS:
        assert iban.encode() not in logs and iban.encode() not in metrics
        assert iban[-8:].encode() not in logs  # not even a long tail of it
