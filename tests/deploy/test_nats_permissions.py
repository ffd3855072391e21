"""deploy/nats on a real nats-server: every configuration passes `nats-server -t`; each role
(producer, ledger, notifier, auditor) can do what it must, with the real `ledger serve`,
`ledger publish`, `ledger forget` and `notifier serve` (the ledger's erasure scrub of its
streams included), and is refused what it must not; TLS works; the cluster configuration
forms a 3-node JetStream cluster."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from ledger.adapters.stream_scrub import ack_floor, scrub_streams
from notifier.settings import NotifierSettings
from tests.conftest import EXAMPLES, envelope
from tests.deploy.support import (
    CLUSTER_PASSWORD,
    NATS_DIR,
    PASSWORDS,
    SecuredNats,
    attempt,
    check_config,
    make_certificates,
    server_env,
    tls_env,
)
from tests.notifier.support import NotifierProcess
from tests.support.servers import LedgerProcess, free_port, run_cli, wait_for

EXAMPLE = EXAMPLES / "01-standard-introduction.jsonl"
EXAMPLE_FACTS = sum(1 for line in EXAMPLE.read_text().splitlines() if line.strip())


#: the master key the tests' `ledger serve` gets by environment, as deployed (without it the
#: ledger would make a key file under the working directory's var/)
MASTER_KEYS = f"deploy-test:{base64.b64encode(bytes(range(32))).decode()}"


def ledger_env(role: str = "ledger") -> dict[str, str]:
    """Credentials by environment, as deployed (LEDGER_NATS_USER / LEDGER_NATS_PASSWORD)."""
    return {"LEDGER_NATS_USER": role, "LEDGER_NATS_PASSWORD": PASSWORDS[role]}


def ledger_service_env() -> dict[str, str]:
    """What `ledger serve` gets, as deployed: the ledger role's credentials and the master key."""
    return {**ledger_env(), "LEDGER_MASTER_KEYS": MASTER_KEYS}


def notifier_env() -> dict[str, str]:
    """The notifier's credentials by environment (NOTIFIER_NATS_USER / NOTIFIER_NATS_PASSWORD)."""
    return {"NOTIFIER_NATS_USER": "notifier", "NOTIFIER_NATS_PASSWORD": PASSWORDS["notifier"]}


def cluster_env(name: str, route_ports: list[int]) -> dict[str, str]:
    routes = {
        f"NATS_ROUTE_{i}": f"nats-route://route:{CLUSTER_PASSWORD}@127.0.0.1:{port}"
        for i, port in enumerate(route_ports, start=1)
    }
    return {"NATS_SERVER_NAME": name, "NATS_CLUSTER_PASSWORD": CLUSTER_PASSWORD, **routes}


# configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", sorted(p.name for p in NATS_DIR.glob("*.conf") if p.name != "permissions.conf")
)
def test_nats_configuration_is_valid(name: str, tmp_path: Path) -> None:
    """`nats-server -t` accepts each server configuration in deploy/nats (with the variables
    it documents set: passwords, TLS files, node name and routes)."""
    env = server_env(**cluster_env("nats-1", [6222, 6223, 6224]))
    if "tls" in name:
        env |= tls_env(make_certificates(tmp_path / "certs"))
    proc = check_config(NATS_DIR / name, env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "is valid" in proc.stderr + proc.stdout


def test_a_missing_password_variable_is_refused_by_the_server(tmp_path: Path) -> None:
    """Without NATS_LEDGER_PASSWORD the configuration does not load: no role ever gets an
    empty or default password."""
    env = server_env()
    del env["NATS_LEDGER_PASSWORD"]
    proc = check_config(NATS_DIR / "nats.conf", env)
    assert proc.returncode != 0
    assert "NATS_LEDGER_PASSWORD" in proc.stderr + proc.stdout


# one secured server, a real ledger and notifier on it ------------------------------------------


@dataclass
class Stack:
    nats: SecuredNats
    ledger: LedgerProcess
    notifier: NotifierProcess
    workdir: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("secured")
    server = SecuredNats(workdir).start()
    ledger = LedgerProcess(
        server.url, f"sqlite:///{workdir / 'ledger.sqlite3'}", workdir, env_extra=ledger_service_env()
    )
    notifier: NotifierProcess | None = None
    try:
        ledger.start()
        published = json.loads(
            run_cli("publish", str(EXAMPLE), env={"NATS_URL": server.url, **ledger_env("producer")}).stdout
        )
        assert published["published"] == EXAMPLE_FACTS, published
        wait_for(lambda: ledger.settled(EXAMPLE_FACTS), 60, what="facts stored and derived events published")
        notifier = NotifierProcess(
            server.url, workdir / "notifier-data", workdir, env_extra=notifier_env()
        ).start()
        yield Stack(server, ledger, notifier, workdir)
    finally:
        if notifier is not None:
            notifier.kill()
        ledger.kill()
        server.stop()


def test_ledger_role_runs_the_real_service_end_to_end(stack: Stack) -> None:
    """`ledger serve` with the ledger's credentials (LEDGER_NATS_USER/PASSWORD) creates its
    streams and consumer, stores a producer's `ledger publish` of the worked example and
    publishes the report's figures, with no permissions violation on the way."""
    report = stack.ledger.get_json("/report")
    offline = json.loads(run_cli("report", "--events", str(EXAMPLE), "--format", "json").stdout)
    for key in ("introductions", "commissions", "balances", "donations", "trial_balance"):
        assert report[key] == offline[key], key
    # (the chain covers the stored bytes, whose personal fields are sealed: a replay of the
    # export reproduces the head, a replay of the plaintext input its position only)
    assert report["head"]["position"] == offline["head"]["position"] == EXAMPLE_FACTS
    assert len(report["commissions"]) >= 1
    assert stack.ledger.metric("ledger_derived_events_published_total") > 0
    assert not service_violations(stack.nats.log())


def test_ledger_logs_never_show_the_password(stack: Stack) -> None:
    """The ledger's start-up log shows its configuration with the NATS password hidden."""
    logs = "".join(p.read_text(errors="replace") for p in stack.workdir.glob("ledger-*.log"))
    assert '"nats_password": "***"' in logs
    assert PASSWORDS["ledger"] not in logs


def test_notifier_logs_never_show_the_password(stack: Stack) -> None:
    """The notifier's start-up log says a NATS password is set, and never shows it."""
    logs = "".join(p.read_text(errors="replace") for p in stack.workdir.glob("notifier-*.log"))
    assert '"nats_password_set": true' in logs
    assert PASSWORDS["notifier"] not in logs


def test_auditor_role_can_query_the_ledger(stack: Stack) -> None:
    """An auditor's request on ledger.query.report and ledger.query.introducer is answered."""
    answers: dict[str, Any] = {}

    async def query(nc: Any) -> None:
        reply = await nc.request("ledger.query.report", b"{}", timeout=10)
        answers["report"] = json.loads(reply.data)
        reply = await nc.request("ledger.query.introducer", b'{"introducer_id": "int-marie"}', timeout=10)
        answers["introducer"] = json.loads(reply.data)

    worked, errors = asyncio.run(attempt(stack.nats.url, query, **credentials("auditor")))
    assert worked, errors
    assert answers["report"]["head"]["position"] == EXAMPLE_FACTS
    assert "error" not in answers["introducer"]


def test_notifier_role_consumes_ledger_out_and_publishes_notifier_subjects(stack: Stack) -> None:
    """The real `notifier serve` (notifier credentials) consumes all of LEDGER_OUT with its
    durable consumer notifier-v1 and creates NOTIFIER_FAILED; the notifier role can read
    its consumer and publish a notice on notifier.failed (a PubAck comes back)."""
    seen: dict[str, Any] = {}

    async def consume_and_publish(nc: Any) -> None:
        js = nc.jetstream(timeout=5)
        await wait_async(lambda: consumer_drained(js), 30)
        seen["consumer"] = await js.consumer_info("LEDGER_OUT", "notifier-v1")
        seen["ack"] = await js.publish(
            "notifier.failed", b'{"test": true}', stream="NOTIFIER_FAILED", headers={"Nats-Msg-Id": "t-1"}
        )
        await nc.publish("notifier.heartbeat", b"{}")

    worked, errors = asyncio.run(attempt(stack.nats.url, consume_and_publish, **credentials("notifier")))
    assert worked, errors
    assert seen["ack"].stream == "NOTIFIER_FAILED"
    assert seen["consumer"].num_pending == 0 and seen["consumer"].num_ack_pending == 0
    assert stack.notifier.get_json("/readyz")["ready"] is True
    assert not service_violations(stack.nats.log())


def service_violations(log: str) -> list[str]:
    """Permission violations the server logged for other connections than the tests'
    probes (named "probe"): the real ledger, notifier and `ledger publish`."""
    return [line for line in log.splitlines() if "Violation" in line and ':probe"' not in line]


async def consumer_drained(js: Any) -> bool:
    info = await js.consumer_info("LEDGER_OUT", "notifier-v1")
    return bool(info.delivered.stream_seq > 0 and info.num_pending == 0 and info.num_ack_pending == 0)


async def wait_async(predicate: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            if await predicate():
                return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.2)


def credentials(role: str) -> dict[str, str]:
    return {"user": role, "password": PASSWORDS[role]}


def _publish(subject: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        await nc.publish(subject, b"{}")

    action.__name__ = f"publish {subject}"
    return action


def _subscribe(subject: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        await nc.subscribe(subject)

    action.__name__ = f"subscribe {subject}"
    return action


def _request(subject: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        await nc.request(subject, b"{}", timeout=1.5)

    action.__name__ = f"request {subject}"
    return action


def _delete_stream(name: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        await nc.jetstream(timeout=1.5).delete_stream(name)

    action.__name__ = f"delete stream {name}"
    return action


def _stream_info(name: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        await nc.jetstream(timeout=1.5).stream_info(name)

    action.__name__ = f"stream info {name}"
    return action


def _fetch(stream: str, consumer: str) -> Callable[[Any], Awaitable[None]]:
    async def action(nc: Any) -> None:
        sub = await nc.jetstream(timeout=1.5).pull_subscribe_bind(consumer, stream)
        await sub.fetch(1, timeout=1.5)

    action.__name__ = f"fetch {stream}/{consumer}"
    return action


REFUSED = [
    ("producer", _publish("ledger.out.commission.accrued")),
    ("producer", _publish("ledger.rejected")),
    ("producer", _publish("notifier.failed")),
    ("producer", _subscribe("ledger.in.>")),
    ("producer", _subscribe("ledger.out.>")),
    ("producer", _request("ledger.query.report")),
    ("producer", _delete_stream("LEDGER_IN")),
    ("producer", _fetch("LEDGER_IN", "ledger-in-v1")),
    ("ledger", _publish("ledger.in.invoice")),
    ("ledger", _publish("notifier.failed")),
    ("ledger", _publish("_INBOX.someone-else")),
    ("ledger", _subscribe("ledger.in.>")),
    ("ledger", _delete_stream("LEDGER_OUT")),
    ("ledger", _fetch("LEDGER_OUT", "notifier-v1")),
    ("notifier", _publish("ledger.in.x")),
    ("notifier", _publish("ledger.out.commission.accrued")),
    ("notifier", _publish("ledger.rejected")),
    ("notifier", _subscribe("ledger.query.>")),
    ("notifier", _request("ledger.query.report")),
    ("notifier", _delete_stream("LEDGER_OUT")),
    ("notifier", _fetch("LEDGER_IN", "ledger-in-v1")),
    ("auditor", _subscribe("ledger.out.>")),
    ("auditor", _subscribe("ledger.query.>")),
    ("auditor", _publish("ledger.in.invoice")),
    ("auditor", _publish("ledger.out.audit.checkpoint")),
    ("auditor", _stream_info("LEDGER_IN")),
    ("auditor", _fetch("LEDGER_OUT", "notifier-v1")),
]


@pytest.mark.parametrize(("role", "action"), REFUSED, ids=[f"{r}: {a.__name__}" for r, a in REFUSED])
def test_role_is_refused(stack: Stack, role: str, action: Callable[[Any], Awaitable[None]]) -> None:
    """The server refuses this role this action: a permissions violation, or (for a
    JetStream API request it may not send) no answer."""
    worked, errors = asyncio.run(attempt(stack.nats.url, action, **credentials(role)))
    assert not worked, (role, action.__name__, errors)
    assert errors


# erasure: the ledger scrubs its streams -------------------------------------------------------

LEDGER_STREAMS = ("LEDGER_IN", "LEDGER_OUT", "LEDGER_REJECTED")


async def _connect(url: str, role: str, name: str) -> Any:
    return await nats.connect(
        url, max_reconnect_attempts=0, connect_timeout=3, name=name, **credentials(role)
    )


def test_ledger_role_scrubs_its_three_streams(stack: Stack) -> None:
    """With the ledger's credentials, `scrub_streams` (what `ledger serve` runs when it
    erases a person) reads LEDGER_IN up to its durable consumer's ack floor, LEDGER_OUT and
    LEDGER_REJECTED through consumers of its own (created, read, deleted) and erases the one
    message planted in each that holds the needle; a second run finds nothing. Nothing the
    scrub does is a permissions violation (its consumer deletion would fail silently)."""
    needle = f"needle-{secrets.token_hex(6)}"
    # LEDGER_IN: a producer's registration the ledger refuses (a bad IBAN), so it is acked
    # on LEDGER_IN and quoted on LEDGER_REJECTED
    refused = envelope(
        "introducer.registered",
        {"introducer_id": "int-scrub", "display_name": needle, "iban": "X"},
        id=f"scrub-{needle}",
    )
    # LEDGER_OUT: a message the notifier skips (not a ledger event)
    planted_out = {"note": f"planted by the deploy test: {needle}"}
    rejected_before = stack.ledger.metric("ledger_facts_rejected_total")

    async def plant() -> int:
        producer = await _connect(stack.nats.url, "producer", "scrub-test-producer")
        ledger = await _connect(stack.nats.url, "ledger", "scrub-test-ledger")
        try:
            ack = await producer.jetstream(timeout=5).publish(
                "ledger.in.introducer.registered",
                refused.encode(),
                headers={"Nats-Msg-Id": f"scrub-{needle}"},
            )
            await ledger.jetstream(timeout=5).publish(
                "ledger.out.test.scrub", json.dumps(planted_out).encode(), headers={"Nats-Msg-Id": needle}
            )
            return int(ack.seq)
        finally:
            await producer.close()
            await ledger.close()

    planted_seq = asyncio.run(plant())
    wait_for(
        lambda: stack.ledger.metric("ledger_facts_rejected_total") > rejected_before,
        30,
        what="the planted fact refused",
    )
    results: dict[str, list[Any]] = {}

    async def scrub() -> None:
        nc = await _connect(stack.nats.url, "ledger", "scrub-test")
        try:
            js = nc.jetstream(timeout=10)
            await wait_async(lambda: _acked_past(js, planted_seq), 30)
            floor = await ack_floor(js, "LEDGER_IN", "ledger-in-v1")
            streams = [("LEDGER_IN", floor), ("LEDGER_OUT", None), ("LEDGER_REJECTED", None)]
            results["first"] = await scrub_streams(js, streams, [needle], timeout_s=10)
            results["second"] = await scrub_streams(js, streams, [needle], timeout_s=10)
            # what only a scan whose last pull request expires does: read its consumer's info
            for stream in LEDGER_STREAMS:
                name = f"scrub-{secrets.token_hex(8)}"
                config = ConsumerConfig(name=name, ack_policy=AckPolicy.NONE, mem_storage=True)
                await js.add_consumer(stream, config)
                assert (await js.consumer_info(stream, name)).name == name
                assert await js.delete_consumer(stream, name)
        finally:
            await nc.close()

    asyncio.run(scrub())
    first = {result.stream: result for result in results["first"]}
    for stream in LEDGER_STREAMS:
        assert first[stream].scanned >= 1 and first[stream].deleted == 1, first[stream]
        assert first[stream].skipped_unacked == 0, first[stream]
    assert [result.deleted for result in results["second"]] == [0, 0, 0], results["second"]
    assert not service_violations(stack.nats.log())


async def _acked_past(js: Any, seq: int) -> bool:
    return await ack_floor(js, "LEDGER_IN", "ledger-in-v1") >= seq


def _api(subject: str, body: dict[str, Any] | None = None) -> Callable[[Any], Awaitable[None]]:
    """A raw JetStream API request: any answer, even an API error, means it was let through."""

    async def action(nc: Any) -> None:
        await nc.request(subject, json.dumps(body or {}).encode(), timeout=1.5)

    action.__name__ = subject
    return action


#: the notifier's durable consumer, which the ledger's scrub wildcard must not reach; the
#: notifier's default name (a new version needs the ledger's deny-list updated)
NOTIFIER_CONSUMER = NotifierSettings.model_fields["consumer_name"].default
#: action "create" never changes an existing consumer: harmless even were it let through
CREATE_NOTIFIER = {
    "stream_name": "LEDGER_OUT",
    "action": "create",
    "config": {"name": NOTIFIER_CONSUMER, "durable_name": NOTIFIER_CONSUMER, "ack_policy": "explicit"},
}
LEDGER_KEPT_AWAY = [
    _fetch("LEDGER_OUT", NOTIFIER_CONSUMER),
    _api(f"$JS.API.CONSUMER.CREATE.LEDGER_OUT.{NOTIFIER_CONSUMER}", CREATE_NOTIFIER),
    _api(
        f"$JS.API.CONSUMER.CREATE.LEDGER_OUT.{NOTIFIER_CONSUMER}.ledger.out.>",
        {**CREATE_NOTIFIER, "config": {**CREATE_NOTIFIER["config"], "filter_subject": "ledger.out.>"}},
    ),
    _api(f"$JS.API.CONSUMER.INFO.LEDGER_OUT.{NOTIFIER_CONSUMER}"),
    _api(f"$JS.API.CONSUMER.DELETE.LEDGER_OUT.{NOTIFIER_CONSUMER}"),
    _api("$JS.API.CONSUMER.DELETE.LEDGER_IN.ledger-in-v1"),
    _api("$JS.API.STREAM.PURGE.LEDGER_OUT"),
    _api("$JS.API.STREAM.DELETE.LEDGER_REJECTED"),
]


@pytest.mark.parametrize("action", LEDGER_KEPT_AWAY, ids=[a.__name__ for a in LEDGER_KEPT_AWAY])
def test_ledger_scrub_wildcards_keep_it_off_other_consumers(
    stack: Stack, action: Callable[[Any], Awaitable[None]]
) -> None:
    """The consumer wildcards the scrub needs on the ledger's streams do not reach the
    notifier's durable consumer on LEDGER_OUT (fetch, create, info, delete) nor let the
    ledger delete its own durable consumer; erasing messages does not extend to purging or
    deleting a stream. Each is refused by the server (a permissions violation), not by
    JetStream."""
    assert NOTIFIER_CONSUMER == "notifier-v1", "a new notifier consumer: update the LEDGER deny-list"
    worked, errors = asyncio.run(attempt(stack.nats.url, action, **credentials("ledger")))
    assert not worked, (action.__name__, errors)
    assert any("permissions violation" in error.lower() for error in errors), errors


def test_forget_with_the_producer_role_is_published_and_completed_by_the_ledger(tmp_path: Path) -> None:
    """`ledger forget` as an operator runs it, with the producer's credentials: published,
    not confirmed (the producer may not read LEDGER_OUT), exit 0; the real `ledger serve`
    (ledger role) then completes the erasure: scrubs LEDGER_IN and LEDGER_OUT of the
    introducer's name and e-mail and counts it in ledger_erasures_completed_total, with no
    permissions violation of its own."""
    server = SecuredNats(tmp_path).start()
    ledger = LedgerProcess(
        server.url, f"sqlite:///{tmp_path / 'ledger.sqlite3'}", tmp_path, env_extra=ledger_service_env()
    )
    try:
        ledger.start()
        producer = {"NATS_URL": server.url, **ledger_env("producer")}
        run_cli("publish", str(EXAMPLE), env=producer)
        wait_for(lambda: ledger.settled(EXAMPLE_FACTS), 60, what="the example stored and published")
        forget = ["forget", "--party", "introducer", "--id", "int-marie", "--wait-s", "30"]
        proc = run_cli(
            *forget, "--requested-by", "dpo-ana", "--approved-by", "tre-luc", env=producer, timeout_s=120
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {
            "party": "introducer/int-marie",
            "status": "published",
            "confirmed": False,
        }
        assert b"published, not confirmed" in proc.stderr
        wait_for(
            lambda: ledger.metric("ledger_erasures_completed_total") == 1, 60, what="the erasure completed"
        )
        for stream in ("LEDGER_IN", "LEDGER_OUT"):  # her registration, and its derived event
            assert ledger.metric("ledger_scrubbed_messages_total", {"stream": stream}) >= 1, stream
        violations = service_violations(server.log())
        assert violations and all(':ledger-cli"' in line for line in violations), violations
    finally:
        ledger.kill()
        server.stop()


def test_no_credentials_or_a_wrong_password_cannot_connect(stack: Stack) -> None:
    """Anonymous connections and wrong passwords are refused at connect time."""

    async def connect(**options: Any) -> None:
        nc = await nats.connect(
            stack.nats.url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=3, **options
        )
        await nc.close()

    for options in (
        {},
        {"user": "ledger", "password": "not-the-password"},
        {"user": "nobody", "password": "x"},
    ):
        with pytest.raises(Exception, match=r"(?i)authorization"):
            asyncio.run(connect(**options))


def test_the_producer_cannot_publish_with_a_bad_configuration(stack: Stack) -> None:
    """`ledger publish` with a user but no password is a configuration error (exit 2), and
    with the auditor's credentials it is refused: the auditor cannot even see LEDGER_IN."""
    proc = run_cli(
        "publish", str(EXAMPLE), env={"NATS_URL": stack.nats.url, "LEDGER_NATS_USER": "producer"}, check=False
    )
    assert proc.returncode == 2
    assert b"LEDGER_NATS_PASSWORD" in proc.stderr
    proc = run_cli(
        "publish",
        str(EXAMPLE),
        env={"NATS_URL": stack.nats.url, **ledger_env("auditor")},
        check=False,
        timeout_s=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert b"LEDGER_IN is not available" in proc.stderr


# TLS -----------------------------------------------------------------------------------------


def test_tls_configuration_serves_the_ledger_over_tls(tmp_path: Path) -> None:
    """With nats-tls.conf (throwaway CA and certificates), `ledger serve` and `ledger publish`
    connect over tls:// verifying the server with LEDGER_NATS_TLS_CA_FILE (and presenting a
    client certificate); a client that does not trust the CA is refused."""
    certs = make_certificates(tmp_path / "certs")
    server = SecuredNats(tmp_path, "nats-tls.conf", env_extra=tls_env(certs), scheme="tls").start()
    tls_client = {
        "LEDGER_NATS_TLS_CA_FILE": str(certs["ca.crt"]),
        "LEDGER_NATS_TLS_CERT_FILE": str(certs["client.crt"]),
        "LEDGER_NATS_TLS_KEY_FILE": str(certs["client.key"]),
    }
    ledger = LedgerProcess(
        server.url, f"sqlite:///{tmp_path / 'l.sqlite3'}", tmp_path, env_extra={**ledger_env(), **tls_client}
    )
    try:
        ledger.start()
        env = {
            "NATS_URL": server.url,
            **ledger_env("producer"),
            "LEDGER_NATS_TLS_CA_FILE": str(certs["ca.crt"]),
        }
        assert json.loads(run_cli("publish", str(EXAMPLE), env=env).stdout)["published"] == EXAMPLE_FACTS
        wait_for(lambda: ledger.settled(EXAMPLE_FACTS), 60, what="facts stored over TLS")

        async def untrusted() -> None:
            nc = await nats.connect(
                server.url,
                tls=ssl.create_default_context(),
                max_reconnect_attempts=0,
                allow_reconnect=False,
                connect_timeout=3,
                **credentials("auditor"),
            )
            await nc.close()

        with pytest.raises(Exception, match=r"(?i)certificate"):
            asyncio.run(untrusted())
    finally:
        ledger.kill()
        server.stop()


# the cluster ------------------------------------------------------------------------------------


def cluster_servers(tmp_path: Path) -> list[SecuredNats]:
    """Three nodes of cluster.conf on free loopback ports (not started)."""
    route_ports = [free_port() for _ in range(3)]
    return [
        SecuredNats(
            tmp_path / f"n{i}",
            "cluster.conf",
            env_extra=cluster_env(f"nats-{i}", route_ports),
            cluster_port=route_ports[i - 1],
        )
        for i in (1, 2, 3)
    ]


def test_services_wait_for_jetstream_and_start_once_the_cluster_forms(tmp_path: Path) -> None:
    """With one node of three up, JetStream has no quorum: `ledger serve` and `notifier
    serve` stay up, answer /healthz, report on /readyz why they wait (the stream they cannot
    open), and become ready by themselves once the other nodes join; facts then flow."""
    servers = cluster_servers(tmp_path)
    urls = ",".join(s.url for s in servers)
    ledger = LedgerProcess(
        urls,
        f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
        tmp_path,
        env_extra={**ledger_env(), "LEDGER_STREAM_REPLICAS": "3"},
    )
    notifier = NotifierProcess(
        urls,
        tmp_path / "notifier",
        tmp_path,
        env_extra={**notifier_env(), "NOTIFIER_STREAM_REPLICAS": "3"},
    )
    try:
        servers[0].start()
        ledger.start(wait_ready=False)
        notifier.start(wait_ready=False)

        def ledger_waits() -> bool:
            status, body = ledger.get("/readyz")
            return status == 503 and "cannot open stream" in json.loads(body)["reason"]

        wait_for(ledger_waits, 60, what="the ledger to report the stream it cannot open")
        wait_for(
            lambda: "cannot open stream NOTIFIER_FAILED" in notifier.get_json("/readyz")["reason"],
            60,
            what="the notifier to report the stream it cannot open",
        )
        assert ledger.get("/healthz")[0] == 200
        for server in servers[1:]:
            server.start()
        wait_for(lambda: ledger.get("/readyz")[0] == 200, 90, what="ledger ready once the cluster formed")
        wait_for(lambda: notifier.get_json("/readyz")["ready"], 90, what="notifier ready")
        published = json.loads(
            run_cli("publish", str(EXAMPLE), env={"NATS_URL": urls, **ledger_env("producer")}).stdout
        )["published"]
        wait_for(lambda: ledger.settled(published), 60, what="facts stored on the cluster")
        assert ledger.get_json("/report")["head"]["position"] == published
    finally:
        ledger.kill()
        notifier.kill()
        for server in servers:
            server.stop()


def test_cluster_configuration_runs_the_ledger_on_replicated_streams(tmp_path: Path) -> None:
    """Three servers from cluster.conf (route credentials, routes from the environment) form
    one JetStream cluster; the real `ledger serve` (LEDGER_STREAM_REPLICAS=3, every node in
    NATS_URL) creates LEDGER_IN, LEDGER_OUT and LEDGER_REJECTED with 3 replicas, and a
    restart (which updates existing streams) keeps them at 3 while facts flow."""
    servers = cluster_servers(tmp_path)
    urls = ",".join(s.url for s in servers)
    env = {**ledger_env(), "LEDGER_STREAM_REPLICAS": "3"}
    ledger = LedgerProcess(urls, f"sqlite:///{tmp_path / 'ledger.sqlite3'}", tmp_path, env_extra=env)
    try:
        for server in servers:
            server.start()
        ledger.start()
        published = json.loads(
            run_cli("publish", str(EXAMPLE), env={"NATS_URL": urls, **ledger_env("producer")}).stdout
        )["published"]
        wait_for(lambda: ledger.settled(published), 60, what="facts stored on the cluster")
        ledger.kill()
        ledger.start()  # streams exist now: start-up updates them

        async def replicas() -> dict[str, int]:
            nc = await nats.connect(
                urls.split(","), max_reconnect_attempts=3, connect_timeout=3, **credentials("ledger")
            )
            try:
                js = nc.jetstream(timeout=5)
                found = {}
                for name in ("LEDGER_IN", "LEDGER_OUT", "LEDGER_REJECTED"):
                    info = await js.stream_info(name)
                    assert info.cluster is not None, name
                    found[name] = 1 + len(info.cluster.replicas or [])
                    assert info.config.num_replicas == 3, name
                return found
            finally:
                await nc.close()

        assert asyncio.run(replicas()) == {"LEDGER_IN": 3, "LEDGER_OUT": 3, "LEDGER_REJECTED": 3}
        assert ledger.get_json("/report")["head"]["position"] == published
    finally:
        ledger.kill()
        for server in servers:
            server.stop()
