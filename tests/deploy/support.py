"""Helpers of the deploy/ tests: the repository's NATS configurations on a real nats-server,
throwaway TLS certificates, a YAML loader, tool lookup."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.support.servers import free_port, nats_server_binary, stop_process, wait_for

DEPLOY = ROOT / "deploy"
NATS_DIR = DEPLOY / "nats"

#: the role passwords the tests give the server (NATS_<ROLE>_PASSWORD) and the clients
PASSWORDS = {
    "producer": "producer-pw-7f3a",
    "ledger": "ledger-pw-91c2",
    "notifier": "notifier-pw-4be8",
    "auditor": "auditor-pw-0d5e",
}
CLUSTER_PASSWORD = "route-pw-66aa"


def server_env(**extra: str) -> dict[str, str]:
    """The environment a server started from deploy/nats needs: the role passwords."""
    return {
        **os.environ,
        **{f"NATS_{role.upper()}_PASSWORD": pw for role, pw in PASSWORDS.items()},
        **extra,
    }


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nats-server -t -c PATH``: parse and check a configuration without starting."""
    return subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )


def stage_config(tmp: Path, name: str, store_dir: Path) -> Path:
    """Copy deploy/nats/*.conf to ``tmp`` with only the JetStream store path changed (the
    rest, includes and permissions included, is the repository's text)."""
    tmp.mkdir(parents=True, exist_ok=True)
    for conf in NATS_DIR.glob("*.conf"):
        text = conf.read_text()
        if conf.name in {"nats.conf", "cluster.conf"}:
            assert '"/data/jetstream"' in text, conf
            text = text.replace('"/data/jetstream"', json.dumps(str(store_dir)))
        (tmp / conf.name).write_text(text)
    return tmp / name


@dataclass
class SecuredNats:
    """A real nats-server run from a repository configuration (listen address and
    monitoring port moved to free loopback ports by command-line flags)."""

    workdir: Path
    config_name: str = "nats.conf"
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    cluster_port: int | None = None
    scheme: str = "nats"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SecuredNats:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = stage_config(self.workdir / "conf", self.config_name, self.workdir / "jetstream")
        args = [nats_server_binary(), "-c", str(config), "-a", "127.0.0.1", "-p", str(self.port)]
        args += ["-m", str(self.http_port)]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
        self.process = subprocess.Popen(
            args,
            env=server_env(**self.env_extra),
            stdout=(self.workdir / "nats-server.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.healthy, 20, interval_s=0.1, what=f"nats-server {self.config_name}")
        return self

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"nats-server exited: {self.log()[-2000:]}")
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.http_port}/healthz?js-enabled-only=true", timeout=2
        ) as response:
            return bool(response.status == 200)

    def log(self) -> str:
        return (self.workdir / "nats-server.log").read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


async def attempt(url: str, action: Any, **connect: Any) -> tuple[bool, list[str]]:
    """Connect, run ``await action(nc)``, flush and wait a moment for the server's verdict.
    Returns (no error and no permissions violation, every error seen)."""
    import nats

    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        url, error_cb=on_error, max_reconnect_attempts=0, connect_timeout=3, name="probe", **connect
    )
    try:
        try:
            await action(nc)
            await nc.flush(timeout=2)
            await asyncio.sleep(0.3)
        except Exception as exc:  # a refused request gets no answer: it times out
            errors.append(f"{type(exc).__name__}: {exc}")
            return False, errors
        return not any("permissions violation" in e.lower() for e in errors), errors
    finally:
        await nc.close()


def make_certificates(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client
    certificate, made with the openssl command line. Skips when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make throwaway TLS certificates")
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("ca.crt", "ca.key", "server.crt", "server.key")}
    paths |= {"client.crt": directory / "client.crt", "client.key": directory / "client.key"}

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(paths["ca.key"]),
        "-out",
        str(paths["ca.crt"]),
        "-days",
        "2",
        "-subj",
        "/CN=ledger test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    )
    for who, extensions in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        csr, ext = directory / f"{who}.csr", directory / f"{who}.ext"
        ext.write_text(extensions)
        run("req", "-new", *ec, "-keyout", str(paths[f"{who}.key"]), "-out", str(csr), "-subj", f"/CN={who}")
        run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(paths["ca.crt"]),
            "-CAkey",
            str(paths["ca.key"]),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(paths[f"{who}.crt"]),
        )
    return paths


def tls_env(certs: dict[str, Path]) -> dict[str, str]:
    """The server-side variables of deploy/nats/tls.conf."""
    return {
        "NATS_TLS_CERT_FILE": str(certs["server.crt"]),
        "NATS_TLS_KEY_FILE": str(certs["server.key"]),
        "NATS_TLS_CA_FILE": str(certs["ca.crt"]),
    }


_YAML_TO_JSON = (
    "import json, sys, yaml\njson.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout, default=str)\n"
)


def load_yaml_documents(path: Path) -> list[Any]:
    """Every document of a YAML file, parsed by PyYAML: the project's own when it is
    installed, else the system Python's (Debian python3-yaml) in a child process; skips
    with the reason when neither has it."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        with path.open(encoding="utf-8") as stream:
            return list(yaml.safe_load_all(stream))
    for python in ("/usr/bin/python3", shutil.which("python3")):
        if python is None or not Path(python).exists():
            continue
        proc = subprocess.run(
            [python, "-c", _YAML_TO_JSON],
            input=path.read_bytes(),
            capture_output=True,
            check=False,
            timeout=60,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        if proc.returncode == 0:
            return list(json.loads(proc.stdout))
        if b"No module named 'yaml'" not in proc.stderr:
            raise AssertionError(f"{path}: not valid YAML:\n{proc.stderr.decode(errors='replace')}")
    pytest.skip(
        "no YAML parser: PyYAML is not in requirements.lock and the system python3 has no yaml module"
    )


def load_yaml(path: Path) -> Any:
    documents = load_yaml_documents(path)
    assert len(documents) == 1, f"{path}: expected one YAML document, found {len(documents)}"
    return documents[0]


def tool(name: str, package: str) -> str:
    """The path of a system program, or skip naming the Debian package that brings it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package {package}; scripts/test-deps installs it)")
    return found
