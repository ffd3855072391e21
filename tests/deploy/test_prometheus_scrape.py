"""A real Prometheus (the Debian `prometheus` binary) scrapes a real `ledger serve` and
`notifier serve` with the repository's scrape configuration (targets moved to loopback),
loads and evaluates the repository's alert rules, and answers every dashboard query."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.deploy.support import DEPLOY, load_yaml, tool
from tests.notifier.support import NotifierProcess
from tests.support.servers import LedgerProcess, NatsServer, free_port, run_cli, wait_for

PROMETHEUS_DIR = DEPLOY / "prometheus"


@dataclass
class Prometheus:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.api("query", query=expr)
        assert body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def loopback_config(targets: dict[str, int], prometheus_port: int, tmp: Path) -> Path:
    """deploy/prometheus/prometheus.yml with a 1 s scrape and evaluation interval, the
    alert rules by absolute path, and each job's service discovery replaced by its loopback
    target. Written as JSON (which is YAML), then checked by promtool like the original."""
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    jobs = []
    for original in config["scrape_configs"]:
        name = original["job_name"]
        port = prometheus_port if name == "prometheus" else targets.get(name)
        if port is None:
            continue
        job = {k: v for k, v in original.items() if not k.endswith("_sd_configs") and k != "static_configs"}
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        jobs.append(job)
    assert {j["job_name"] for j in jobs} >= set(targets), "a service has no job in prometheus.yml"
    config["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(json.dumps(config, indent=2))
    proc = subprocess.run(
        [tool("promtool", "prometheus"), "check", "config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


@dataclass
class Scraped:
    prometheus: Prometheus
    ledger: LedgerProcess
    notifier: NotifierProcess
    facts_before: float | None
    facts_published: int


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    binary = tool("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("scrape")
    nats = NatsServer(tmp / "nats-data").start()
    # a checkpoint every second, so the checkpoint alert sees them within the test
    ledger = LedgerProcess(
        nats.url, f"sqlite:///{tmp / 'ledger.sqlite3'}", tmp, env_extra={"LEDGER_CHECKPOINT_INTERVAL_S": "1"}
    )
    notifier: NotifierProcess | None = None
    prometheus: Prometheus | None = None
    try:
        ledger.start()
        notifier = NotifierProcess(nats.url, tmp / "notifier-data", tmp).start()
        port = free_port()
        targets = {"ledger": ledger.http_port, "notifier": notifier.http_port}
        config = loopback_config(targets, port, tmp)
        log = tmp / "prometheus.log"
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        prometheus = Prometheus(port, process, log)
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200,
            60,
            interval_s=0.2,
            what="prometheus /-/ready",
        )
        ready = prometheus
        wait_for(
            lambda: ready.value('up{job="ledger"}') == 1,
            30,
            interval_s=0.2,
            what="a first scrape of the ledger",
        )
        before = prometheus.value("sum(ledger_facts_accepted_total)")
        files = [str(EXAMPLES / f"{name}.jsonl") for name in EXAMPLE_NAMES]
        published = json.loads(run_cli("publish", *files, env={"NATS_URL": nats.url}).stdout)["published"]
        wait_for(lambda: ledger.settled(published), 60, what="the worked examples stored")
        yield Scraped(prometheus, ledger, notifier, before, published)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if notifier is not None:
            notifier.kill()
        ledger.kill()
        nats.stop()


def test_prometheus_scrapes_the_ledger_and_a_counter_moves(scraped: Scraped) -> None:
    """`up == 1` for the ledger, and `ledger_facts_accepted_total` as Prometheus scraped it
    went from nothing (or 0) to every fact accepted from the worked examples."""
    prometheus = scraped.prometheus
    assert prometheus.value('up{job="ledger"}') == 1
    accepted = scraped.ledger.metric("ledger_facts_accepted_total")
    assert accepted > 0
    assert (scraped.facts_before or 0) == 0
    wait_for(
        lambda: prometheus.value("sum(ledger_facts_accepted_total)") == accepted,
        20,
        interval_s=0.2,
        what="the new counter value scraped",
    )
    series = prometheus.query("ledger_facts_accepted_total")
    assert {s["metric"]["job"] for s in series} == {"ledger"}
    assert len(series) > 1, "one series per fact type"


def test_prometheus_scrapes_the_notifier(scraped: Scraped) -> None:
    """`up == 1` for the notifier job, scraped from a real `notifier serve`."""
    prometheus = scraped.prometheus
    wait_for(lambda: prometheus.value('up{job="notifier"}') == 1, 20, interval_s=0.2, what="notifier scraped")
    assert prometheus.query("notifier_consumer_pending_messages")


def test_prometheus_loads_and_evaluates_every_alert_rule(scraped: Scraped) -> None:
    """The real Prometheus loads deploy/prometheus/alerts.yml and evaluates every rule
    without error; none of them fires on this healthy stack except for missing replicas, and
    the checkpoint rule, pending at most while the first checkpoint after the facts is due,
    settles to inactive once checkpoints are scraped."""
    prometheus = scraped.prometheus

    def evaluated() -> list[dict[str, Any]] | None:
        groups = prometheus.api("rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = rules and all(
            rule.get("health") == "ok" and rule.get("lastEvaluation", "").startswith("2") for rule in rules
        )
        return rules if done else None

    rules = wait_for(evaluated, 30, interval_s=0.3, what="every rule evaluated")
    expected = {r["alert"] for g in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for r in g["rules"]}
    assert {rule["name"] for rule in rules} == expected
    firing = {rule["name"] for rule in rules if rule["state"] == "firing"}
    # one ledger replica here (2 expected in production)
    assert firing <= {"LedgerReplicaMissing"}, firing

    def state(name: str) -> str:
        groups = prometheus.api("rules")["data"]["groups"]
        return next(r["state"] for g in groups for r in g["rules"] if r["name"] == name)

    wait_for(
        lambda: state("LedgerAuditCheckpointStalled") == "inactive",
        30,
        interval_s=0.3,
        what="checkpoints seen",
    )
    assert prometheus.value("sum(ledger_audit_checkpoints_published_total)") >= 1

    def settled() -> set[str] | None:
        # a scrape that times out on a busy host makes an absent() rule pending for one
        # evaluation; it must go back to inactive on its own
        stalled = {rule["name"] for rule in evaluated() or [] if rule["state"] != "inactive"}
        return stalled if stalled <= {"LedgerReplicaMissing"} else None

    wait_for(settled, 30, interval_s=0.3, what="every rule but LedgerReplicaMissing inactive")


def test_every_dashboard_query_is_valid_promql(scraped: Scraped) -> None:
    """Every query of the Grafana dashboard is accepted by the real Prometheus (Grafana's
    $__rate_interval and $__range replaced), and the facts panel shows data."""
    prometheus = scraped.prometheus
    exprs = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
    assert exprs
    for title, expr in exprs:
        concrete = (
            expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$__interval", "15s")
        )
        body = prometheus.api("query", query=concrete)
        assert body["status"] == "success", (title, expr, body)
    time.sleep(2.5)  # two more scrapes after the facts, for rate()
    assert prometheus.query("sum by (type) (rate(ledger_facts_accepted_total[1m]))")


def test_image_health_check_passes_against_the_real_services(scraped: Scraped) -> None:
    """deploy/healthcheck.py (the image's HEALTHCHECK) exits 0 against the running ledger
    and against the running notifier."""
    script = str(DEPLOY / "healthcheck.py")
    ports = [
        ("LEDGER_HTTP_PORT", scraped.ledger.http_port),
        ("NOTIFIER_HTTP_PORT", scraped.notifier.http_port),
    ]
    for variable, port in ports:
        other = "NOTIFIER_HTTP_PORT" if variable == "LEDGER_HTTP_PORT" else "LEDGER_HTTP_PORT"
        proc = subprocess.run(
            [sys.executable, script],
            env={variable: str(port), other: str(free_port())},
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert proc.returncode == 0, (variable, proc.stderr)
