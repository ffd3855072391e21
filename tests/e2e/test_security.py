"""Security of the ledger's edges: methods, body sizes, the query token, no secret in logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import EXAMPLES
from tests.support.jetstream import request
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for

TOKEN = "tok-3f9a1c77e2b04d5e9d1a"


def http(
    service: LedgerProcess,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    req = urllib.request.Request(service.http + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_http_refuses_other_methods_and_big_bodies(tmp_path: Path, nats: NatsServer) -> None:
    """POST/PUT/DELETE get 405, a large body 413 (or 405), a huge query string 414; GET works."""
    service = LedgerProcess(nats.url, f"sqlite:///{tmp_path / 's.db'}", tmp_path).start()
    try:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            assert http(service, "/report", method, b"{}")[0] == 405, method
        assert http(service, "/report", "POST", b"x" * 200_000)[0] in {405, 413}
        assert http(service, "/report", "GET", b"x" * 200_000)[0] == 413
        assert http(service, "/report?as_of=" + "9" * 10_000)[0] == 414
        assert http(service, "/healthz")[0] == 200
        assert http(service, "/nowhere")[0] == 404
    finally:
        service.kill()


def test_query_token_is_required_when_configured_and_never_logged(tmp_path: Path, nats: NatsServer) -> None:
    """With LEDGER_QUERY_TOKEN set, reports need it (HTTP bearer, NATS `token`); metrics and
    health stay open; the token and the store password appear in no log line or metric."""
    service = LedgerProcess(
        nats.url,
        f"sqlite:///{tmp_path / 's.db'}",
        tmp_path,
        env_extra={"LEDGER_QUERY_TOKEN": TOKEN, "LEDGER_LOG_LEVEL": "debug"},
    ).start()
    try:
        run_cli("publish", str(EXAMPLES / "01-standard-introduction.jsonl"), env={"NATS_URL": nats.url})
        wait_for(lambda: service.settled(9), 60, what="settled")
        assert http(service, "/report")[0] == 401
        assert http(service, "/report", headers={"Authorization": "Bearer wrong"})[0] == 401
        status, body = http(service, "/report", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and json.loads(body)["head"]["position"] == 9
        assert request(nats.url, "ledger.query.report", {})["error"]["reason"] == "unauthorized"
        assert (
            request(nats.url, "ledger.query.report", {"token": "nope"})["error"]["reason"] == "unauthorized"
        )
        assert request(nats.url, "ledger.query.report", {"token": TOKEN})["head"]["position"] == 9
        assert http(service, "/metrics")[0] == 200 and http(service, "/readyz")[0] == 200
        _, metrics = http(service, "/metrics")
    finally:
        service.terminate()
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("ledger-*.log"))
    assert b"ledger starting" in logs and b'"query_token": "***"' in logs
    assert TOKEN.encode() not in logs
    assert TOKEN.encode() not in metrics
