"""nats-server SIGKILLed again and again while valid facts and rejected messages flow into a
real `ledger serve`: at the end every valid fact is stored once (same figures as a clean
replay), every rejected message is on LEDGER_REJECTED exactly once, and the consumer is
alive and ready.

The suite kills the server 3 times; `scripts/soak nats-kills [KILLS]` runs the same with 20
(or KILLS) kills and prints the figures:

    .venv/bin/python -m tests.e2e.test_nats_kills --kills 20 --facts 6000
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.history import generate

from tests.support.figures import assert_same_figures, offline_report
from tests.support.jetstream import read_stream
from tests.support.servers import VENV_BIN, LedgerProcess, NatsServer, wait_for


@dataclass
class KillRun:
    kills: int
    facts: int
    bad: int
    stored: int
    rejections: int
    unique_rejections: int
    seconds: float


def bad_lines(count: int) -> list[str]:
    """Messages the ledger must reject, each different (so each has its own Nats-Msg-Id)."""
    kinds = [
        lambda n: f"not json {n}",
        lambda n: json.dumps(
            {"specversion": "1.0", "id": f"bad-{n}", "source": "s", "type": "nope", "data": {}}
        ),
        lambda n: json.dumps(
            {
                "specversion": "1.0",
                "id": f"bad-nl-{n}",
                "source": "s",
                "type": "coop.ledger.payment.received.v1",
                "data": {"payment_id": f"P-{n}\n", "invoice_id": "I", "date": "2025-01-01", "amount": "1.00"},
            }
        ),
    ]
    return [kinds[n % len(kinds)](n) for n in range(count)]


def run_nats_kills(tmp: Path, *, kills: int, facts: int, seed: int = 7) -> KillRun:
    rng = random.Random(seed)
    valid = list(generate(facts, seed))
    bad = bad_lines(max(1, facts // 10))
    lines: list[str] = []
    for n, line in enumerate(valid):
        lines.append(line)
        if n % 10 == 5 and n // 10 < len(bad):
            lines.append(bad[n // 10])
    lines += bad[len(lines) - len(valid) :]
    path = tmp / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    clean = tmp / "valid.jsonl"
    clean.write_text("\n".join(valid) + "\n")
    nats = NatsServer(tmp / "nats-data").start()
    service = LedgerProcess(
        nats.url, f"sqlite:///{tmp / 'ledger.db'}", tmp, env_extra={"LEDGER_BATCH_SIZE": "50"}
    ).start()
    started = time.monotonic()
    publisher = subprocess.Popen(
        [str(VENV_BIN / "ledger"), "publish", str(path)],
        env=service.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for kill in range(kills):
            # kill while facts flow: after some progress, at a random moment
            target = (kill + 1) * facts // (kills + 2)
            wait_for(
                lambda t=target: (
                    service.metric("ledger_stored_position") >= t or publisher.poll() is not None
                ),
                300,
                interval_s=0.1,
                what=f"progress before kill {kill + 1}",
            )
            time.sleep(rng.uniform(0, 0.3))
            assert nats.process is not None
            nats.process.kill()
            nats.process.wait(10)
            nats.start()
        _, err = publisher.communicate(timeout=600)
        assert publisher.returncode == 0, err[-2000:]
        wait_for(lambda: service.settled(facts), 600, interval_s=0.5, what="every valid fact stored")
        wait_for(lambda: service.get("/readyz")[0] == 200, 120, what="ready after the kills")
        found = wait_for(
            lambda: len(got := read_stream(nats.url, "LEDGER_REJECTED")) >= len(bad) and got,
            120,
            interval_s=0.5,
            what="every rejection published",
        )
        live = service.get_json("/report")
        seconds = time.monotonic() - started
    finally:
        service.kill()
        if publisher.poll() is None:
            publisher.kill()
        nats.stop()
    assert_same_figures(live, offline_report(clean))
    ids = [msg_id for msg_id, _ in found]
    return KillRun(kills, facts, len(bad), live["head"]["position"], len(ids), len(set(ids)), seconds)


def test_nats_server_killed_while_rejections_flow_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """3 SIGKILLs of nats-server mid-stream: all valid facts stored once, every rejection
    published exactly once, the consumer ready at the end."""
    run = run_nats_kills(tmp_path, kills=3, facts=2000)
    assert run.stored == run.facts
    assert run.rejections == run.unique_rejections == run.bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--facts", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nats-kills-") as tmp:
        run = run_nats_kills(Path(tmp), kills=args.kills, facts=args.facts, seed=args.seed)
    print(json.dumps(run.__dict__))
    assert run.stored == run.facts and run.rejections == run.unique_rejections == run.bad


if __name__ == "__main__":
    main()
