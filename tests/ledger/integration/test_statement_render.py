"""The HTML statements render in headless Chromium and show the worked examples' figures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (scripts/test-deps installs it)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def statement(tmp_path: Path, example: str, *args: str) -> Path:
    out = tmp_path / "statement.html"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger.entrypoints.cli",
            "statement",
            *args,
            "--events",
            str(EXAMPLES / f"{example}.jsonl"),
            "--output",
            str(out),
        ],
        check=True,
        timeout=120,
    )
    return out


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def test_client_statement_renders_with_figures(tmp_path: Path) -> None:
    """Chromium renders the client statement; its DOM shows the rebates owed and passed through,
    and a screenshot is produced."""
    page = statement(tmp_path, "03-donation-and-rebates", "--client", "cli-ecole")
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "cli-ecole" in dom
    for figure in ("113.00", "50.00", "63.00", "2150.00", "2100.00"):
        assert figure in dom, figure
    shot = tmp_path / "client.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1100", page.as_uri())
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_client_statement_discloses_the_commission_and_donation(tmp_path: Path) -> None:
    """The client sees the introducer, rate and beneficiary of each commission (here a donation)."""
    page = statement(tmp_path, "03-donation-and-rebates", "--client", "cli-asso")
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    for text in ("d-1", "intro-300", "Int-Ines", "0.10", "75.00", "donated by Int-Ines", "126.00"):
        assert text in dom, text


def test_introducer_statement_renders_with_figures(tmp_path: Path) -> None:
    """The introducer statement shows commissions per year, the balance and what is outstanding."""
    page = statement(tmp_path, "01-standard-introduction", "--introducer", "int-marie")
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    for figure in ("240.00", "150.00", "50.00", "440.00", "200.00", "40.00"):
        assert figure in dom, figure
