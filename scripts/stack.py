"""The main job: nats-server (JetStream, loopback), `ledger serve` on SQLite and, when it
exists, `notifier serve`, supervised together. Ctrl-C (or SIGTERM) stops them in order.

Ports and folders come from the environment (see the README); data lives under ./var.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VAR = Path(os.environ.get("LEDGER_DATA_DIR", ROOT / "var"))
NATS_PORT = int(os.environ.get("NATS_PORT", "4222"))
LEDGER_HTTP_PORT = int(os.environ.get("LEDGER_HTTP_PORT", "8080"))
NOTIFIER_HTTP_PORT = int(os.environ.get("NOTIFIER_HTTP_PORT", "8081"))


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait(check: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: S110
            pass  # still starting
        time.sleep(0.2)
    raise SystemExit(f"stack: {what} did not come up within {timeout_s:.0f}s; see the logs in {VAR / 'logs'}")


def http_ok(port: int, path: str) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


def main() -> int:
    logs = VAR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for port, name in ((NATS_PORT, "NATS_PORT"), (LEDGER_HTTP_PORT, "LEDGER_HTTP_PORT")):
        if port_open(port):
            raise SystemExit(f"stack: port {port} is already in use; set {name} to another port")
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (logs / f"{name}.log").open("ab")
        children.append(
            (
                name,
                subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
                ),
            )
        )

    def stop(*_: object) -> None:
        for name, child in reversed(children):
            if child.poll() is None:
                print(f"stack: stopping {name}", flush=True)
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    nats_bin = str(BIN / "nats-server") if (BIN / "nats-server").exists() else shutil.which("nats-server")
    if not nats_bin:
        raise SystemExit("stack: nats-server not found; run scripts/setup")
    start("nats", [nats_bin, "-js", "-a", "127.0.0.1", "-p", str(NATS_PORT), "-sd", str(VAR / "nats")])
    wait(lambda: port_open(NATS_PORT), "nats-server")
    nats_url = f"nats://127.0.0.1:{NATS_PORT}"
    common = {"NATS_URL": nats_url, "LEDGER_DATA_DIR": str(VAR)}
    start("ledger", [str(BIN / "ledger"), "serve"], {**common, "LEDGER_HTTP_PORT": str(LEDGER_HTTP_PORT)})
    wait(lambda: http_ok(LEDGER_HTTP_PORT, "/readyz"), "ledger serve")
    notifier = BIN / "notifier"
    probe = subprocess.run([str(notifier), "serve", "--help"], capture_output=True, check=False)
    has_notifier = probe.returncode == 0 and b"notifier serve" in probe.stdout
    if has_notifier:
        start(
            "notifier",
            [str(notifier), "serve"],
            {**common, "NOTIFIER_HTTP_PORT": str(NOTIFIER_HTTP_PORT), "NOTIFIER_DATA_DIR": str(VAR)},
        )
        wait(lambda: http_ok(NOTIFIER_HTTP_PORT, "/healthz"), "notifier serve")
    base = f"http://127.0.0.1:{LEDGER_HTTP_PORT}"
    notifier_line = f"\n  notifier        http://127.0.0.1:{NOTIFIER_HTTP_PORT}/metrics  /healthz  /readyz"
    print(
        f"""
stack: running (data in {VAR}, logs in {logs}); Ctrl-C stops everything.
  NATS            {nats_url}   (JetStream streams LEDGER_IN, LEDGER_OUT, LEDGER_REJECTED)
  ledger report   {base}/report   ({base}/report/introducer?id=..., {base}/report/client?id=...)
  ledger metrics  {base}/metrics   health {base}/healthz   ready {base}/readyz
  AsyncAPI        {base}/asyncapi"""
        + (notifier_line if has_notifier else "")
        + f"""

Try, in another terminal:
  NATS_URL={nats_url} .venv/bin/ledger publish ../shared/spec/examples/01-standard-introduction.jsonl
  curl -s {base}/report
""",
        flush=True,
    )
    while True:
        for name, child in children:
            if child.poll() is not None:
                log_file = logs / f"{name}.log"
                print(f"stack: {name} exited with {child.returncode}; see {log_file}", flush=True)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
