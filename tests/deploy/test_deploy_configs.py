"""Every configuration file in deploy/ is checked with the real tool where it runs here
(promtool, docker-compose, kubectl kustomize, nats-server) and parsed and cross-checked
otherwise (YAML, JSON, the Dockerfile and its health check)."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.deploy.support import (
    DEPLOY,
    NATS_DIR,
    check_config,
    load_yaml,
    load_yaml_documents,
    server_env,
    tool,
)
from tests.support.servers import free_port

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b((?:ledger|notifier)_[a-z_]+)\b")


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, check=False, timeout=120, env=env
    )


def exported_metrics() -> set[str]:
    """Metric names the services export, from their metrics modules (histograms and info
    metrics with the suffixes Prometheus sees)."""
    names: set[str] = set()
    for module in ROOT.glob("services/*/*/adapters/metrics.py"):
        names |= set(re.findall(r"\"((?:ledger|notifier)_[a-z_]+)\"", module.read_text()))
    assert "ledger_facts_accepted_total" in names and "notifier_alerts_sent_total" in names
    return names | {f"{n}{suffix}" for n in names for suffix in ("_info", "_bucket", "_sum", "_count")}


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every provisioned dashboard."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                out.append((panel["title"], target["expr"]))
    return out


# Prometheus ------------------------------------------------------------------------------------


def test_prometheus_config_passes_promtool() -> None:
    """`promtool check config` accepts deploy/prometheus/prometheus.yml and the rule files
    it names."""
    proc = run(tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts deploy/prometheus/alerts.yml."""
    proc = run(tool("promtool", "prometheus"), "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """`promtool test rules` runs alerts_test.yml: each alert fires on the series meant to
    raise it, with its labels and texts, and stays quiet otherwise."""
    proc = run(tool("promtool", "prometheus"), "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_alerts_cover_what_the_issue_asks() -> None:
    """The alert rules cover refusals rising, publish lag, consumer pending, notifier
    failures, a month's statements not all delivered within a day, a service down and the
    audit checkpoint not advancing."""
    rules = {
        rule["alert"]: rule["expr"]
        for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"]
        for rule in group["rules"]
    }
    needed = {
        "LedgerRejectionsRising": "ledger_facts_rejected_total",
        "LedgerPublishLagHigh": "ledger_publish_lag_facts",
        "LedgerConsumerPendingHigh": "ledger_consumer_pending_messages",
        "NotifierAlertsFailing": "notifier_alerts_failed_total",
        "NotifierStatementsUndelivered": "notifier_statements_pending_age_seconds",
        "ServiceDown": "up",
        "LedgerAuditCheckpointStalled": "ledger_audit_checkpoints_published_total",
    }
    for alert, metric in needed.items():
        assert metric in rules[alert], alert
    tested = (PROMETHEUS / "alerts_test.yml").read_text()
    assert all(f"alertname: {alert}" in tested for alert in rules), "an alert without a unit test"


def test_rules_and_dashboards_use_only_exported_metrics() -> None:
    """Every ledger_*/notifier_* name in the alert rules and the dashboards is one the
    services export (a renamed metric cannot leave a silent alert or an empty panel)."""
    known = exported_metrics()
    texts = {"alerts.yml": (PROMETHEUS / "alerts.yml").read_text()}
    texts |= {p.name: p.read_text() for p in DASHBOARDS}
    for name, text in texts.items():
        unknown = set(METRIC.findall(text)) - known
        assert not unknown, f"{name}: {sorted(unknown)}"


# Grafana ----------------------------------------------------------------------------------------


def test_grafana_provisioning_and_dashboard_fit_together() -> None:
    """The datasource and dashboard provisioning files parse, the datasource points at the
    compose Prometheus, and every dashboard query uses that datasource's uid."""
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert len(datasources) == 1
    source = datasources[0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == source["uid"], panel["title"]
                assert target["expr"].strip(), panel["title"]


def test_dashboard_shows_what_the_issue_asks() -> None:
    """The dashboard has facts in and refused, batch latency, publish lag, consumer
    pending, alerts sent and failed, monthly statements sent, failed and undelivered, and
    commissions accrued per currency."""
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for metric in (
        "ledger_facts_accepted_total",
        "ledger_facts_rejected_total",
        "ledger_batch_duration_seconds_bucket",
        "ledger_publish_lag_facts",
        "ledger_consumer_pending_messages",
        "notifier_consumer_pending_messages",
        "notifier_alerts_sent_total",
        "notifier_alerts_failed_total",
        "notifier_retries_total",
        "notifier_send_duration_seconds_bucket",
        "notifier_statements_sent_total",
        "notifier_statements_failed_total",
        "notifier_statements_pending",
        "notifier_statements_pending_age_seconds",
    ):
        assert metric in exprs, metric
    assert "sum by (currency) (increase(ledger_commission_accrued_minor_total" in exprs


# compose -----------------------------------------------------------------------------------------


def compose_env() -> dict[str, str]:
    """The test's environment without any variable compose.yaml could pick up."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "POSTGRES_", "GRAFANA_", "LEDGER_"))
    }


def test_compose_file_describes_the_stack() -> None:
    """compose.yaml parses and has the 3-node NATS cluster on cluster.conf, PostgreSQL, 2
    ledger replicas on PostgreSQL with NATS credentials, the notifier, Prometheus and
    Grafana with the repository's files mounted; every variable it needs is in .env.example."""
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert {"nats-1", "nats-2", "nats-3", "postgres", "ledger", "notifier", "prometheus", "grafana"} <= set(
        services
    )
    for node in ("nats-1", "nats-2", "nats-3"):
        assert services[node]["environment"]["NATS_SERVER_NAME"] == node
        assert "/etc/nats/cluster.conf" in services[node]["command"]
    ledger = services["ledger"]
    assert ledger["deploy"]["replicas"] == 2
    assert ledger["environment"]["LEDGER_STORE_URL"].startswith("postgresql://")
    assert ledger["environment"]["LEDGER_NATS_USER"] == "ledger"
    assert ledger["environment"]["LEDGER_STREAM_REPLICAS"] == "3"
    assert services["notifier"]["environment"]["NOTIFIER_NATS_USER"] == "notifier"
    assert services["notifier"]["environment"]["NOTIFIER_STREAM_REPLICAS"] == "3"
    assert ledger["command"] == ["ledger", "serve"] and services["notifier"]["command"] == [
        "notifier",
        "serve",
    ]
    assert (COMPOSE.parent / ledger["build"]["context"] / ledger["build"]["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (COMPOSE.parent / ".env.example").read_text(), re.M))
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    """`docker-compose config` (the Compose tool's own schema check and interpolation)
    accepts compose.yaml with .env.example, and refuses it when a secret is missing."""
    binary = tool("docker-compose", "docker-compose")
    proc = run(
        binary,
        "-f",
        str(COMPOSE),
        "--env-file",
        str(COMPOSE.parent / ".env.example"),
        "config",
        env=compose_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resolved = proc.stdout
    assert "postgresql://ledger:change-me-postgres@postgres:5432/ledger" in resolved
    assert "replicas: 2" in resolved
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = run(binary, "-f", str(COMPOSE), "--env-file", str(empty), "config", "-q", env=compose_env())
    assert proc.returncode != 0
    assert "set NATS_CLUSTER_PASSWORD in .env" in proc.stdout + proc.stderr


def refused_master_key(text: str) -> str:
    """The ledger's refusal of a master key placeholder (what `ledger serve` logs before
    exiting 2); fails the test when the placeholder would be accepted as a key."""
    from ledger.adapters.keyring import KeyringError, MasterKeys

    with pytest.raises(KeyringError) as refused:
        MasterKeys.parse(text)
    return str(refused.value)


def test_compose_gives_the_ledger_its_master_key_from_env(tmp_path: Path) -> None:
    """Both ledger replicas take LEDGER_MASTER_KEYS from .env (one key for both; the default
    key file would be per container), compose refuses to start without it, the notifier does
    not get it, and .env.example's placeholder is refused by the ledger itself (nobody runs
    on a published key)."""
    services = load_yaml(COMPOSE)["services"]
    assert services["ledger"]["environment"]["LEDGER_MASTER_KEYS"].startswith("${LEDGER_MASTER_KEYS:?")
    assert not any("MASTER" in name for name in services["notifier"]["environment"])
    example = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (COMPOSE.parent / ".env.example").read_text(), re.M))
    assert "ledger keys generate" in refused_master_key(example["LEDGER_MASTER_KEYS"])
    binary = tool("docker-compose", "docker-compose")
    without = tmp_path / "without-key.env"
    without.write_text(
        "".join(f"{name}={value}\n" for name, value in example.items() if name != "LEDGER_MASTER_KEYS")
    )
    proc = run(binary, "-f", str(COMPOSE), "--env-file", str(without), "config", "-q", env=compose_env())
    assert proc.returncode != 0
    assert "set LEDGER_MASTER_KEYS in .env" in proc.stdout + proc.stderr
    proc = run(
        binary,
        "-f",
        str(COMPOSE),
        "--env-file",
        str(COMPOSE.parent / ".env.example"),
        "config",
        env=compose_env(),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"LEDGER_MASTER_KEYS: {example['LEDGER_MASTER_KEYS']}" in proc.stdout


def deployed_variables() -> dict[str, set[str]]:
    """Every LEDGER_*/NOTIFIER_* variable that compose.yaml and the Kubernetes manifests set,
    by file."""
    found: dict[str, set[str]] = {}
    for path in [COMPOSE, *sorted(K8S.glob("*.yaml"))]:
        names = re.findall(r"^\s*(?:- name: )?((?:LEDGER|NOTIFIER)_[A-Z0-9_]+)\b", path.read_text(), re.M)
        found[path.name] = set(names)
    return found


def test_deployed_variables_are_settings_the_services_read() -> None:
    """Every LEDGER_*/NOTIFIER_* variable the deployment files set is a setting of the
    ledger or the notifier (a typo would otherwise be ignored silently and leave a default)."""
    from ledger.settings import Settings
    from notifier.settings import NotifierSettings

    known = {f"LEDGER_{name.upper()}" for name in Settings.model_fields}
    known |= {f"NOTIFIER_{name.upper()}" for name in NotifierSettings.model_fields}
    found = deployed_variables()
    assert found["compose.yaml"] and found["ledger.yaml"] and found["notifier.yaml"]
    for name, variables in found.items():
        assert variables <= known, f"{name}: {sorted(variables - known)}"


# Kubernetes --------------------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in load_yaml_documents(path) if d]
    return docs


def test_k8s_manifests_render_with_kustomize() -> None:
    """`kubectl kustomize deploy/k8s` renders every manifest (YAML and kustomization valid)."""
    proc = run(tool("kubectl", "kubectl"), "kustomize", str(K8S))
    assert proc.returncode == 0, proc.stderr
    kinds = re.findall(r"^kind: (\w+)$", proc.stdout, re.M)
    assert sorted(kinds).count("StatefulSet") == 2 and "Deployment" in kinds
    assert "namespace: coop-ledger" in proc.stdout


def test_k8s_manifests_are_consistent() -> None:
    """Each manifest parses; the ledger and notifier have liveness on /healthz and readiness
    on /readyz on their named port; selectors match their pods; containers run as non-root;
    every Secret key referred to exists in the example Secret."""
    docs = k8s_documents()
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], doc
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    secret_keys = set(by_kind["Secret"]["coop-secrets"]["stringData"])
    workloads = {**by_kind["Deployment"], **by_kind["StatefulSet"]}
    assert workloads["ledger"]["spec"]["replicas"] == 2
    assert workloads["notifier"]["spec"]["replicas"] == 1
    assert workloads["nats"]["spec"]["replicas"] == 3
    for name, workload in workloads.items():
        spec = workload["spec"]
        template = spec["template"]
        assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items(), name
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for container in template["spec"]["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (name, probe)
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "coop-secrets" and ref["key"] in secret_keys, (name, ref)
            if name in {"ledger", "notifier"}:
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
                assert container["args"] == [name, "serve"]
    for service in by_kind["Service"].values():
        selector = service["spec"]["selector"]
        assert any(
            selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            for w in workloads.values()
        ), service["metadata"]["name"]


def test_k8s_ledger_gets_its_master_key_from_the_secret() -> None:
    """Every ledger pod takes LEDGER_MASTER_KEYS from the coop-secrets Secret (one key for
    every replica; the default key file would be per pod on an emptyDir), never from a
    ConfigMap; the notifier does not get it; the example Secret's placeholder is refused by
    the ledger itself."""
    docs = k8s_documents()
    workloads = {d["metadata"]["name"]: d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}}
    [container] = workloads["ledger"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["LEDGER_MASTER_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "coop-secrets",
        "key": "LEDGER_MASTER_KEYS",
    }
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not any("MASTER" in key for key in doc["data"]), doc["metadata"]["name"]
    [notifier] = workloads["notifier"]["spec"]["template"]["spec"]["containers"]
    assert not any("MASTER" in item["name"] for item in notifier.get("env", []))
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "coop-secrets")
    assert "ledger keys generate" in refused_master_key(secret["stringData"]["LEDGER_MASTER_KEYS"])


def test_k8s_nats_config_is_the_repository_config_and_valid(tmp_path: Path) -> None:
    """The NATS ConfigMap holds deploy/nats/cluster.conf and permissions.conf verbatim, and
    that text passes `nats-server -t`."""
    config_map = next(
        d for d in k8s_documents() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "nats-config"
    )
    for name, text in config_map["data"].items():
        assert text == (NATS_DIR / name).read_text(), (
            f"{name} in deploy/k8s/nats.yaml differs from deploy/nats"
        )
        (tmp_path / name).write_text(text)
    env = server_env(
        NATS_SERVER_NAME="nats-0",
        NATS_CLUSTER_PASSWORD="x",
        **{f"NATS_ROUTE_{i}": f"nats-route://route:x@nats-{i - 1}.nats:6222" for i in (1, 2, 3)},
    )
    proc = check_config(tmp_path / "cluster.conf", env)
    assert proc.returncode == 0, proc.stderr + proc.stdout


# the image ---------------------------------------------------------------------------------------


def test_dockerfile_builds_one_non_root_image_from_the_lock() -> None:
    """The Dockerfile installs the locked versions (requirements.lock as constraints), runs
    as a numeric non-root user, has a HEALTHCHECK on /healthz and defaults to `ledger
    serve`; what it copies exists and is let through by its .dockerignore."""
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert instructions.count("FROM") == 2
    assert "--constraint requirements.lock" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0].isdigit() and not user[-1].startswith("0")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"/usr/local/bin/healthcheck\"\]", text, re.M)
    assert re.search(r'^CMD \["ledger", "serve"\]$', text, re.M)
    allowed = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), item
            assert f"!{item}" in allowed, f"{item} is excluded by Dockerfile.dockerignore"


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def healthz_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_image_health_check_script(healthz_server: int) -> None:
    """deploy/healthcheck.py exits 0 when /healthz answers on the ledger's or the notifier's
    port, 1 when nothing answers."""
    script = str(DEPLOY / "healthcheck.py")
    base = {"PATH": os.environ.get("PATH", "")}
    dead = str(free_port())
    ok = subprocess.run(
        [sys.executable, script],
        env={**base, "LEDGER_HTTP_PORT": str(healthz_server), "NOTIFIER_HTTP_PORT": dead},
        check=False,
        timeout=30,
    )
    assert ok.returncode == 0
    ok = subprocess.run(
        [sys.executable, script],
        env={**base, "LEDGER_HTTP_PORT": dead, "NOTIFIER_HTTP_PORT": str(healthz_server)},
        check=False,
        timeout=30,
    )
    assert ok.returncode == 0
    down = subprocess.run(
        [sys.executable, script],
        env={**base, "LEDGER_HTTP_PORT": dead, "NOTIFIER_HTTP_PORT": dead},
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert down.returncode == 1
    assert b"unhealthy" in down.stderr
