"""Every party is told its month (the ledger's side), against real processes: registrations
of clients and advisers, vendor commissions disclosed, one `statement.issued` per party with
any figure when a month closes, and the statement pages behind their signed links."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pypdf

from ledger.application.links import sign_link
from tests.conftest import EXAMPLES, envelope
from tests.e2e.test_ledger_service import publish
from tests.ledger.unit.test_periods import close
from tests.support.jetstream import read_stream
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

AUDITOR = "auditor-secret-token"


def contacts() -> list[str]:
    client = {
        "client_id": "cli-cabinet-dupont",
        "display_name": "Cabinet Dupont",
        "email": "compta@dupont.example",
        "language": "fr",
    }
    adviser = {
        "adviser_id": "adv-luc",
        "display_name": "Luc Martin",
        "email": "luc@coop.example",
        "language": "en",
    }
    vendor = {
        "vendor_commission_id": "vc-1",
        "adviser_id": "adv-luc",
        "client_id": "cli-cabinet-dupont",
        "supplier_id": "sup-soft",
        "date": "2025-03-15",
        "currency": "CHF",
        "amount": "35.00",
        "description": "Reseller commission on the accounting software licence",
    }
    return [
        envelope("client.registered", client),
        envelope("adviser.registered", adviser),
        envelope("vendor_commission.received", vendor),
    ]


def history() -> list[str]:
    lines = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
    return [*lines, *contacts(), close("2025-03", "2025-04-02")]


def get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def issued(nats: NatsServer) -> dict[str, dict[str, Any]]:
    return {
        f"{b['data']['party_kind']}/{b['data']['party_id']}": b["data"]
        for i, b in read_stream(nats.url, "LEDGER_OUT")
        if "statement.issued" in str(i)
    }


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    from urllib.parse import urlencode

    return parts._replace(query=urlencode(query)).geturl()


def test_closing_a_month_issues_one_statement_per_party_and_the_links_open_only_their_page(
    tmp_path: Path, nats: NatsServer
) -> None:
    """One statement.issued per introducer, client and adviser with a figure in the month
    (their view equals `ledger statement --period` for them); the client's view discloses
    the vendor commission; each signed link opens its own page (HTML and PDF) and nothing
    else: expired, altered, another party's id, another month: 403 with no figure; the
    auditor's token opens every page and report."""
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(history()) + "\n")
    db = tmp_path / "s.db"
    service = LedgerProcess(
        nats.url,
        f"sqlite:///{db}",
        tmp_path,
        env_extra={"LEDGER_AUDITOR_TOKEN": AUDITOR, "LEDGER_QUERY_TOKEN": "machines-token"},
    )
    service.env_extra["LEDGER_PUBLIC_URL"] = service.http
    service.start()
    try:
        publish(nats, path)
        wait_for(lambda: service.settled(len(history())), 60, what="settled")
        found = wait_for(
            lambda: (got := issued(nats)) and len(got) >= 3 and got, 30, what="statements issued"
        )
        assert set(found) == {"introducer/int-marie", "client/cli-cabinet-dupont", "adviser/adv-luc"}
        for key, data in found.items():
            kind, party = key.split("/")
            expected = json.loads(
                run_cli(
                    "statement",
                    "--events",
                    str(path),
                    "--period",
                    "2025-03",
                    f"--{kind}",
                    party,
                    "--format",
                    "json",
                ).stdout
            )
            got = {k: v for k, v in data["statement"].items() if k != "truncated"}
            # (the chain covers sealed personal fields: a plaintext replay has the same position)
            assert got.pop("head")["position"] == expected.pop("head")["position"], key
            assert got == expected, key
        client = found["client/cli-cabinet-dupont"]
        assert [d["vendor_commission_id"] for d in client["statement"]["disclosures"]] == ["vc-1"]
        assert client["statement"]["party_name"] == "Cabinet Dupont"

        status, page, media = get(client["html_url"])
        assert status == 200 and media.startswith("text/html")
        assert b"Cabinet Dupont" in page and b"240.00" in page and b"35.00" in page
        status, pdf, media = get(client["pdf_url"])
        assert status == 200 and media == "application/pdf"
        (tmp_path / "client.pdf").write_bytes(pdf)
        text = " ".join(p.extract_text() for p in pypdf.PdfReader(tmp_path / "client.pdf").pages)
        assert "2025-0311" in text and "CHF 240.00" in text

        introducer_url = found["introducer/int-marie"]["html_url"]
        forged = [
            client["html_url"].replace("cli-cabinet-dupont", "cli-other"),  # another party's id
            _with(client["html_url"], period="2025-04"),  # another month
            _with(client["html_url"], sig="0" * 64),  # altered signature
            _with(client["html_url"], expires="2099-01-01T00:00:00Z"),  # altered expiry
            introducer_url.replace("/introducer/", "/client/"),  # another kind
            client["html_url"].split("?")[0] + "?period=2025-03",  # no signature
        ]
        key = _link_key(db)
        past = datetime.now(UTC) - timedelta(days=1)
        forged.append(sign_link(key, "client", "cli-cabinet-dupont", "2025-03", past).path(service.http))
        for url in forged:
            status, body, _ = get(url)
            assert status == 403, (url, status, body[:200])
            assert b"240.00" not in body and json.loads(body)["error"]["reason"] == "forbidden"
        expired = json.loads(get(forged[-1])[1])["error"]["message"]
        assert "expired" in expired

        bare = client["html_url"].split("?")[0] + "?period=2025-03"
        assert get(bare, AUDITOR)[0] == 200  # the auditor reads any party's page
        assert get(f"{service.http}/report", AUDITOR)[0] == 200  # and every report
        assert get(f"{service.http}/report")[0] == 401  # nobody else without a token
        assert get(f"{service.http}/report", "machines-token")[0] == 200
        assert get(bare, "machines-token")[0] == 403  # the machines' token opens no party page
    finally:
        service.kill()


def _link_key(db: Path) -> bytes:
    con = sqlite3.connect(db)
    try:
        for (state,) in con.execute("SELECT state FROM stored_events").fetchall():
            document = json.loads(state)
            if document.get("name") == "statement-links":
                return bytes.fromhex(document["key_hex"])
    finally:
        con.close()
    raise AssertionError("no link key in the store")


def test_a_party_with_nothing_in_the_month_gets_no_statement(tmp_path: Path, nats: NatsServer) -> None:
    """A registered client with no figure in the closed month is issued no statement."""
    idle = envelope(
        "client.registered", {"client_id": "cli-idle", "display_name": "Idle", "email": "idle@example.org"}
    )
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join([*history()[:-1], idle, history()[-1]]) + "\n")
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    try:
        publish(nats, path)
        wait_for(lambda: service.settled(len(history()) + 1), 60, what="settled")
        found = wait_for(
            lambda: (got := issued(nats)) and len(got) >= 3 and got, 30, what="statements issued"
        )
        assert "client/cli-idle" not in found
        out = [i for i, _ in read_stream(nats.url, "LEDGER_OUT")]
        assert any("client.registered:cli-idle" in str(i) for i in out)
    finally:
        service.kill()
