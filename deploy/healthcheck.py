#!/usr/bin/env python3
"""Container health check of the one image: exit 0 when the service running in this
container answers ``GET /healthz`` with 200, else 1.

The image runs either ``ledger serve`` (HTTP on LEDGER_HTTP_PORT, 8080) or ``notifier
serve`` (NOTIFIER_HTTP_PORT, 8081): both ports are tried, on loopback. Standard library
only; no output unless unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request

TIMEOUT_S = 3.0


def healthy(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{int(port)}/healthz", timeout=TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def main() -> int:
    ports = [os.environ.get("LEDGER_HTTP_PORT", "8080"), os.environ.get("NOTIFIER_HTTP_PORT", "8081")]
    if any(healthy(port) for port in ports):
        return 0
    sys.stderr.write(f"unhealthy: no /healthz answered on 127.0.0.1 ports {', '.join(ports)}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
