"""Personal data sealed at rest and erased by key destruction (SQLite and PostgreSQL), through
the CLI: figures, the audit and replays unchanged; nothing of the person left in the files."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import envelope
from tests.support.stores import StoreUnderTest

NAME = "Zoë Kowalczyk-Ferrand"
EMAIL = "zoe.kowalczyk@example.org"
IBAN = "CH9300762011623852957"
CLIENT = "Boulangerie Ferrand SA"
CLIENT_EMAIL = "compta@ferrand-boulangerie.example"
REASON = "Zoë's brother ran the client's books until 2023"


def _key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


KEY_A = f"ka:{_key(1)}"
KEY_B = f"kb:{_key(2)}"


def facts() -> list[str]:
    return [
        envelope(
            "introducer.registered",
            {"introducer_id": "int-zoe", "display_name": NAME, "email": EMAIL, "iban": IBAN},
            id="e-1",
        ),
        envelope(
            "client.registered",
            {"client_id": "cli-fer", "display_name": CLIENT, "email": CLIENT_EMAIL},
            id="e-2",
        ),
        envelope(
            "introduction.recorded",
            {
                "introduction_id": "intro-1",
                "introducer_id": "int-zoe",
                "client_id": "cli-fer",
                "adviser_id": "adv-1",
                "date": "2025-01-10",
                "terms": [{"rate": "0.05", "months": 12}],
                "terms_reason": REASON,
            },
            id="e-3",
        ),
        envelope(
            "invoice.issued",
            {
                "invoice_id": "INV-1",
                "adviser_id": "adv-1",
                "client_id": "cli-fer",
                "issue_date": "2025-02-01",
                "currency": "CHF",
                "net_amount": "1000.00",
            },
            id="e-4",
        ),
    ]


def ledger(
    *args: str, store: StoreUnderTest, keys: str | None = KEY_A, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    environ = {**os.environ, "LEDGER_STORE_URL": store.url}
    environ.pop("LEDGER_MASTER_KEYS", None)
    if keys is not None:
        environ["LEDGER_MASTER_KEYS"] = keys
    return subprocess.run(
        [sys.executable, "-m", "ledger.entrypoints.cli", *args],
        capture_output=True,
        check=check,
        env=environ,
        timeout=120,
    )


def _ingest(tmp_path: Path, store: StoreUnderTest, lines: list[str], keys: str = KEY_A) -> None:
    path = tmp_path / f"facts-{len(lines)}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ledger("ingest", str(path), store=store, keys=keys)


def _json(proc: subprocess.CompletedProcess[bytes]) -> Any:
    return json.loads(proc.stdout)


def _store_bytes(store: StoreUnderTest) -> bytes:
    """Every byte the store keeps on disk (the SQLite file and its journals, or the whole
    PostgreSQL data directory, write-ahead log included)."""
    if store.kind == "sqlite":
        assert store.sqlite_path is not None
        files = [p for p in store.sqlite_path.parent.iterdir() if p.name.startswith(store.sqlite_path.name)]
    else:
        assert store.pg is not None
        files = [p for p in store.pg.root.rglob("*") if p.is_file()]
    return b"".join(p.read_bytes() for p in files if p.exists())


def _secrets() -> list[bytes]:
    plain = [NAME, EMAIL, IBAN, CLIENT, CLIENT_EMAIL, REASON]
    return [s.encode() for s in plain] + [json.dumps(s)[1:-1].encode() for s in plain]


def test_personal_data_is_sealed_at_rest_and_opened_with_the_key(
    tmp_path: Path, store: StoreUnderTest
) -> None:
    """No name, e-mail, IBAN or reason is stored in plaintext; with the master key the reports
    and the subject export show them."""
    _ingest(tmp_path, store, facts())
    on_disk = _store_bytes(store)
    assert not [s for s in _secrets() if s in on_disk]
    export = _json(ledger("subject-export", "--party", "introducer", "--id", "int-zoe", store=store))
    assert export["erased"] is False
    assert export["personal_data"]["coop.ledger.introducer.registered.v1"]["email"] == EMAIL
    assert {f["type"] for f in export["facts"]} == {
        "coop.ledger.introducer.registered.v1",
        "coop.ledger.introduction.recorded.v1",
    }
    shown = _json(ledger("statement", "--introducer", "int-zoe", "--format", "json", store=store))
    assert shown["introducer_name"] == NAME and REASON in json.dumps(shown, ensure_ascii=False)


def test_forget_keeps_every_figure_and_the_audit_and_leaves_nothing(
    tmp_path: Path, store: StoreUnderTest
) -> None:
    """After `ledger forget` the figures, `audit verify` and a replay of the export are
    unchanged, the person reads as erased everywhere, nothing of them is in the store's files;
    forgetting again is a no-op; one person alone cannot forget."""
    _ingest(tmp_path, store, facts())
    before = _json(ledger("report", "--format", "json", store=store))
    alone = ledger(
        "forget",
        "--party",
        "introducer",
        "--id",
        "int-zoe",
        "--requested-by",
        "dpo-ana",
        "--approved-by",
        "dpo-ana",
        "--ingest",
        store=store,
        check=False,
    )
    assert alone.returncode == 1 and b"approval_required" in alone.stderr
    for party, party_id in (("introducer", "int-zoe"), ("client", "cli-fer")):
        done = _json(
            ledger(
                "forget",
                "--party",
                party,
                "--id",
                party_id,
                "--requested-by",
                "dpo-ana",
                "--approved-by",
                "tre-luc",
                "--ingest",
                store=store,
            )
        )
        assert done["status"] == "erased" and done["key_destroyed"] is True, done
    again = _json(
        ledger(
            "forget",
            "--party",
            "client",
            "--id",
            "cli-fer",
            "--requested-by",
            "dpo-bob",
            "--approved-by",
            "tre-luc",
            "--ingest",
            store=store,
        )
    )
    assert again["status"] == "already_erased" and again["key_destroyed"] is False, again
    after = _json(ledger("report", "--format", "json", store=store))
    assert after["commissions"] == before["commissions"] and after["commissions"]
    assert after.get("balances") == before.get("balances")
    shown = _json(ledger("statement", "--introducer", "int-zoe", "--format", "json", store=store))
    assert shown["introducer_name"] == "[erased]" and REASON not in json.dumps(shown, ensure_ascii=False)
    assert ledger("audit", "verify", "--format", "json", store=store).returncode == 0
    # everyone is erased, yet a wrong master key is still caught (the check key)
    assert _json(ledger("keys", "check", store=store)) == {"data_keys": 0, "by_master_key": {}}
    wrong = ledger("report", store=store, keys=f"ka:{_key(9)}", check=False)
    assert wrong.returncode == 2 and b"is not the key they were wrapped with" in wrong.stderr, wrong.stderr
    on_disk = _store_bytes(store)
    assert not [s for s in _secrets() if s in on_disk]
    export = _json(ledger("subject-export", "--party", "introducer", "--id", "int-zoe", store=store))
    assert export["erased"] is True and export["erased_at_position"] == 5
    assert export["personal_data"]["coop.ledger.introducer.registered.v1"]["display_name"] == "[erased]"
    history = ledger("export", "--format", "cloudevents", store=store).stdout
    assert not [s for s in _secrets() if s in history] and b"pd1:introducer:int-zoe:" in history
    replay_file = tmp_path / "history.jsonl"
    replay_file.write_bytes(history)
    replay = _json(ledger("report", "--events", str(replay_file), "--format", "json", store=store))
    assert replay["commissions"] == before["commissions"]
    assert replay["summary"]["rejected"] == 0, replay["rejected"]
    # a registration redelivered after the erasure is a duplicate, not a conflict nor new data
    _ingest(tmp_path, store, facts()[:1])
    assert not [s for s in _secrets() if s in _store_bytes(store)]


def test_rotation_keeps_everything_readable_and_a_wrong_key_fails_clearly(
    tmp_path: Path, store: StoreUnderTest
) -> None:
    """Rewrapping with a new master key keeps every name readable, after which the old key
    can go; a store opened with a missing or wrong master key fails at start with a clear error."""
    _ingest(tmp_path, store, facts())
    rotated = _json(ledger("keys", "rotate", store=store, keys=f"{KEY_B},{KEY_A}"))
    assert rotated == {"rewrapped": 2, "data_keys": 2}
    assert _json(ledger("keys", "check", store=store, keys=KEY_B)) == {
        "data_keys": 2,
        "by_master_key": {"kb": 2},
    }
    export = _json(ledger("subject-export", "--party", "client", "--id", "cli-fer", store=store, keys=KEY_B))
    assert export["personal_data"]["coop.ledger.client.registered.v1"]["email"] == CLIENT_EMAIL
    missing = ledger("report", store=store, keys=KEY_A, check=False)
    assert missing.returncode == 2 and b"master key 'kb'" in missing.stderr, missing.stderr
    wrong = ledger("report", store=store, keys=f"kb:{_key(9)}", check=False)
    assert wrong.returncode == 2 and b"is not the key they were wrapped with" in wrong.stderr, wrong.stderr
    served = ledger("serve", store=store, keys=f"kb:{_key(9)}", check=False)
    assert served.returncode == 2 and b"master keys do not fit the store" in served.stderr + served.stdout
    malformed = ledger("report", store=store, keys="kb:notbase64!", check=False)
    assert malformed.returncode == 2 and b"not base64" in malformed.stderr
