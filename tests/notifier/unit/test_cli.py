"""The notifier's command line: what scripts/stack.py probes, and the operator helpers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from notifier.domain.signature import introducer_secret, party_secret
from tests.support.servers import VENV_BIN


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "notifier"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def test_serve_help_is_what_the_main_job_detects() -> None:
    """scripts/stack.py starts the notifier when `notifier serve --help` mentions `notifier serve`."""
    result = _cli("serve", "--help")
    assert result.returncode == 0 and "notifier serve" in result.stdout


def test_webhook_secret_prints_the_introducers_key() -> None:
    """The operator hands each introducer the key derived from the master secret."""
    result = _cli("webhook-secret", "int-john", NOTIFIER_WEBHOOK_SECRET="master")
    assert result.returncode == 0
    assert result.stdout.strip() == introducer_secret("master", "int-john")
    assert _cli("webhook-secret", "int-john", NOTIFIER_WEBHOOK_SECRET="").returncode == 2


def test_webhook_secret_of_a_client_or_an_adviser() -> None:
    """`--kind client|adviser` prints that party's key (not the introducer's of the same id)."""
    client = _cli("webhook-secret", "x-1", "--kind", "client", NOTIFIER_WEBHOOK_SECRET="master")
    assert client.returncode == 0 and client.stdout.strip() == party_secret("master", "client", "x-1")
    assert client.stdout.strip() != introducer_secret("master", "x-1")
    assert _cli("webhook-secret", "x-1", "--kind", "supplier", NOTIFIER_WEBHOOK_SECRET="m").returncode == 2


def test_status_reads_the_store_and_bad_config_is_refused(tmp_path: Path) -> None:
    """`notifier status` reports the store's counts; an invalid setting exits 2 with a message."""
    result = _cli("status", NOTIFIER_DATA_DIR=str(tmp_path))
    assert result.returncode == 0 and json.loads(result.stdout) == {
        "advisers": 0,
        "clients": 0,
        "erased_parties": 0,
        "introducers": 0,
        "waiting_events": 0,
    }
    bad = _cli("status", NOTIFIER_MAX_ATTEMPTS="0")
    assert bad.returncode == 2
    assert "max_attempts" in bad.stderr
