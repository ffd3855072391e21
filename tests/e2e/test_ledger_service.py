"""`ledger serve` against a real nats-server: the live report, derived events, refusals."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from tests.conftest import EXAMPLE_NAMES, EXAMPLES
from tests.ledger.unit.test_derive import derive_all
from tests.support.figures import FIGURES as SAME_FIGURES
from tests.support.jetstream import delete_consumer, publish_raw, read_stream, request
from tests.support.servers import LedgerProcess, NatsServer, run_cli, wait_for
from tests.support.stores import StoreUnderTest

FIGURES = SAME_FIGURES


def all_examples(tmp_path: Path) -> tuple[Path, list[str]]:
    lines = [line for n in EXAMPLE_NAMES for line in (EXAMPLES / f"{n}.jsonl").read_text().splitlines()]
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, lines


def replay(path: Path) -> dict[str, Any]:
    return json.loads(run_cli("report", "--events", str(path), "--format", "json").stdout)


def publish(nats: NatsServer, *paths: Path) -> dict[str, int]:
    return json.loads(run_cli("publish", *map(str, paths), env={"NATS_URL": nats.url}).stdout)


def test_live_report_equals_offline_replay_and_events_arrive_once(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """Publishing the worked examples over NATS gives the same report as `report --events`,
    over HTTP and request/reply, and every derived event is on ledger.out exactly once."""
    path, lines = all_examples(tmp_path)
    assert publish(nats, path)["published"] == len(lines)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="all facts stored and published")
    live = ledger_service.get_json("/report")
    offline = replay(path)
    for key in FIGURES:
        assert live[key] == offline[key], key
    # the chain covers the stored bytes (personal fields sealed): the auditor's replay of the
    # export reproduces the head; a replay of the plaintext input, its position
    assert live["head"]["position"] == offline["head"]["position"]
    exported = tmp_path / "export.jsonl"
    store_env = {"LEDGER_STORE_URL": ledger_service.store_url}
    exported.write_bytes(run_cli("export", "--format", "cloudevents", env=store_env).stdout)
    assert replay(exported)["head"] == live["head"]
    over_nats = request(nats.url, "ledger.query.report", {})
    assert {k: over_nats[k] for k in FIGURES} == {k: live[k] for k in FIGURES}

    expected_events, _ = derive_all(lines)
    out = [
        (i, body) for i, body in read_stream(nats.url, "LEDGER_OUT") if not str(i).startswith("checkpoint:")
    ]
    ids = [msg_id for msg_id, _ in out]
    assert len(ids) == len(set(ids)), "a derived event was published twice"
    assert sorted(ids) == sorted(e.id for e in expected_events)
    assert all(body["id"] == msg_id and body["type"].startswith("coop.ledger.out.") for msg_id, body in out)
    kinds = Counter(body["type"] for _, body in out)
    assert kinds["coop.ledger.out.commission.accrued.v1"] >= 6
    assert kinds["coop.ledger.out.introducer.registered.v1"] == 3


def test_views_and_as_of_over_http_and_nats(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """Per-introducer and per-client views and as-of reports answer over HTTP and NATS;
    bad parameters get a 400 with a reason, not a crash."""
    path, lines = all_examples(tmp_path)
    publish(nats, path)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="settled")
    marie = ledger_service.get_json("/report/introducer?id=int-marie")
    assert [b["outstanding"] for b in marie["balances"]] == ["40.00"]
    ecole = ledger_service.get_json("/report/client?client_id=cli-ecole")
    assert [(r["owed"], r["outstanding"]) for r in ecole["rebates"]] == [("113.00", "63.00")]
    early = ledger_service.get_json("/report?as_of=2025-06-30")
    assert {c["invoice_id"] for c in early["commissions"]} == {"2025-0311", "d-1", "n-1", "n-2"}
    assert request(nats.url, "ledger.query.client", {"client_id": "cli-ecole"})["rebates"] == ecole["rebates"]
    status, body = ledger_service.get("/report?as_of=yesterday")
    assert status == 400 and b"bad_query" in body
    status, _ = ledger_service.get("/report?colour=blue")
    assert status == 400
    assert request(nats.url, "ledger.query.report", b"not json")["error"]["reason"] == "bad_query"
    assert ledger_service.get("/asyncapi.json")[0] == 200


def test_bad_input_over_nats_goes_to_rejected_and_valid_messages_still_count(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """Not JSON, wrong schema, float money, unknown type and a conflicting duplicate each land
    on ledger.rejected with their reason; the valid messages around them are processed."""
    inv = {
        "invoice_id": "I-1",
        "adviser_id": "adv",
        "client_id": "cli",
        "issue_date": "2025-01-10",
        "currency": "CHF",
        "net_amount": "100.00",
    }

    def env(id_: str, type_: str, data: dict[str, Any]) -> bytes:
        return json.dumps(
            {"specversion": "1.0", "id": id_, "source": "t", "type": type_, "data": data}
        ).encode()

    items = [
        ("ledger.in.x", b"{{not json", "bad-1"),
        ("ledger.in.invoice", env("ok-1", "coop.ledger.invoice.issued.v1", inv), "ok-1"),
        ("ledger.in.invoice", env("bad-2", "coop.ledger.invoice.issued.v1", {"invoice_id": "I-2"}), "bad-2"),
        (
            "ledger.in.invoice",
            env("bad-3", "coop.ledger.invoice.issued.v1", {**inv, "invoice_id": "I-3", "net_amount": 12.5}),
            "bad-3",
        ),
        ("ledger.in.x", env("bad-4", "coop.ledger.invoice.cancelled.v1", {}), "bad-4"),
        (
            "ledger.in.invoice",
            env("bad-5", "coop.ledger.invoice.issued.v1", {**inv, "net_amount": "999.00"}),
            "bad-5",
        ),
        (
            "ledger.in.invoice",
            env("ok-2", "coop.ledger.invoice.issued.v1", {**inv, "invoice_id": "I-6"}),
            "ok-2",
        ),
    ]
    publish_raw(nats.url, items)
    wait_for(lambda: len(read_stream(nats.url, "LEDGER_REJECTED")) == 5, 30, what="5 refusals")
    rejected = {body["id"] or "?": body for _, body in read_stream(nats.url, "LEDGER_REJECTED")}
    reasons = {key: body["reason"] for key, body in rejected.items()}
    assert reasons == {
        "?": "invalid_json",
        "bad-2": "missing_field",
        "bad-3": "money_as_number",
        "bad-4": "unknown_type",
        "bad-5": "conflict",
    }
    assert rejected["?"]["original"] == "{{not json"
    assert all(body["message"] for body in rejected.values())
    wait_for(lambda: ledger_service.settled(2), 30, what="valid facts stored")
    assert ledger_service.metric("ledger_facts_accepted_total") == 2
    assert ledger_service.metric("ledger_facts_rejected_total", {"reason": "conflict"}) == 1
    assert ledger_service.metric("ledger_facts_rejected_total") == 5


def test_duplicates_and_forced_redelivery_change_nothing(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """The same envelopes published again (under new message ids, past JetStream's dedupe) and a
    consumer reset that redelivers the whole stream leave the report and ledger.out unchanged."""
    path, lines = all_examples(tmp_path)
    publish(nats, path)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="settled")
    before = ledger_service.get_json("/report")
    out_before = read_stream(nats.url, "LEDGER_OUT")
    assert publish(nats, path)["duplicates"] == len(lines)  # JetStream's own dedupe window
    publish_raw(nats.url, [("ledger.in.again", line.encode(), f"again-{i}") for i, line in enumerate(lines)])
    wait_for(
        lambda: ledger_service.metric("ledger_facts_duplicate_total") == len(lines), 30, what="duplicates"
    )
    ledger_service.terminate()
    delete_consumer(nats.url, "LEDGER_IN", "ledger-in-v1")
    ledger_service.start()
    wait_for(
        lambda: ledger_service.metric("ledger_facts_duplicate_total") == 2 * len(lines),
        60,
        what="whole stream redelivered as duplicates",
    )
    after = ledger_service.get_json("/report")
    assert {k: after[k] for k in FIGURES} == {k: before[k] for k in FIGURES}
    assert read_stream(nats.url, "LEDGER_OUT") == out_before


def test_metrics_parse_and_move(tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess) -> None:
    """/metrics parses with prometheus_client's parser and its counters move with traffic."""
    assert ledger_service.metric("ledger_facts_accepted_total") == 0
    path, lines = all_examples(tmp_path)
    publish(nats, path)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="settled")
    assert ledger_service.metric("ledger_facts_accepted_total") == len(lines)
    assert ledger_service.metric("ledger_stored_position") == len(lines)
    assert ledger_service.metric("ledger_batch_size_messages_count") >= 1
    commits = ledger_service.metric("ledger_store_commit_duration_seconds_count")
    assert 1 <= commits <= ledger_service.metric("ledger_batch_size_messages_count")
    assert ledger_service.metric("ledger_store_commit_duration_seconds_sum") > 0
    assert ledger_service.metric("ledger_commission_accrued_minor_total", {"currency": "CHF"}) > 0
    assert ledger_service.metric("ledger_derived_events_published_total") > 0
    assert ledger_service.metric("process_resident_memory_bytes") > 10 * 1024 * 1024
    assert ledger_service.metric("python_gc_collections_total") > 0
    _, body = ledger_service.get("/metrics")
    assert b"client" not in body.replace(b"ledger_queries_total", b"")  # no client ids as labels
    assert b"ledger_chain_head_info" not in body  # no series per head hash


def test_sigterm_stops_cleanly_and_restart_resumes(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """SIGTERM finishes the batch in hand and exits 0; a restart resumes from the store."""
    path, lines = all_examples(tmp_path)
    publish(nats, path)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="settled")
    report = ledger_service.get_json("/report")
    assert ledger_service.terminate() == 0
    ledger_service.start()
    assert {k: v for k, v in ledger_service.get_json("/report").items()} == report


def test_the_service_freezes_its_state_out_of_the_collectors_way(
    tmp_path: Path, nats: NatsServer, store: StoreUnderTest
) -> None:
    """`ledger serve` wires LEDGER_HEAP_FREEZE_EVERY_FACTS: with a schedule of 10 facts the
    worked examples freeze the heap (ledger_heap_frozen_objects > 0), and the report is the
    offline replay's."""
    service = LedgerProcess(nats.url, store.url, tmp_path, env_extra={"LEDGER_HEAP_FREEZE_EVERY_FACTS": "10"})
    service.start()
    try:
        assert service.metric("ledger_heap_frozen_objects") == 0
        path, lines = all_examples(tmp_path)
        publish(nats, path)
        wait_for(lambda: service.settled(len(lines)), 60, what="settled")
        assert service.metric("ledger_heap_frozen_objects") > 0
        live = service.get_json("/report")
        offline = replay(path)
        assert {k: live[k] for k in SAME_FIGURES} == {k: offline[k] for k in SAME_FIGURES}
    finally:
        service.terminate()


def test_checkpoints_are_published_and_verify_against_the_store(
    tmp_path: Path, nats: NatsServer, store: StoreUnderTest
) -> None:
    """The chain head is published on ledger.out.audit.checkpoint (and matches the stored
    chain); `ledger audit verify --against` that checkpoint passes on the service's store."""
    store_url = store.url
    service = LedgerProcess(nats.url, store_url, tmp_path, env_extra={"LEDGER_CHECKPOINT_INTERVAL_S": "0.2"})
    service.start()
    try:
        path, lines = all_examples(tmp_path)
        publish(nats, path)
        wait_for(lambda: service.settled(len(lines)), 60, what="settled")
        head = service.get_json("/report")["head"]

        def checkpoint() -> dict[str, Any] | None:
            found = [
                b["data"] for i, b in read_stream(nats.url, "LEDGER_OUT") if str(i).startswith("checkpoint:")
            ]
            return next((c for c in found if c["position"] == head["position"]), None)

        latest = wait_for(checkpoint, 30, what="a checkpoint at the head")
        assert latest["hash"] == head["hash"]
        assert service.metric("ledger_stored_position") == head["position"]
        assert service.metric("ledger_checkpoint_mismatch") == 0
    finally:
        service.terminate()
    proc = run_cli(
        "audit",
        "verify",
        "--format",
        "json",
        "--against",
        f"{latest['position']}:{latest['hash']}",
        env={"LEDGER_STORE_URL": store_url},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["published_position"] == len(lines)


def test_every_log_line_is_json_and_documents_need_no_network(
    tmp_path: Path, nats: NatsServer, ledger_service: LedgerProcess
) -> None:
    """Off a terminal every line the service writes is a JSON object (uvicorn's and
    FastStream's included, no colour codes); /asyncapi and /docs are complete pages that
    load nothing from outside; unknown paths get a JSON 404; derived events carry a time."""
    path, lines = all_examples(tmp_path)
    publish(nats, path)
    wait_for(lambda: ledger_service.settled(len(lines)), 60, what="settled")
    for page, needle in (("/asyncapi", b"ledger.in.invoice.issued"), ("/docs", b"/report/introducer")):
        status, html = ledger_service.get(page)
        assert status == 200 and needle in html, page
        assert b"<script" not in html and b"https://" not in html and b"http://" not in html, page
    spec = ledger_service.get_json("/openapi.json")
    assert spec["openapi"].startswith("3.1") and "/report" in spec["paths"]
    assert ledger_service.get_json("/asyncapi.json")["channels"]
    status, body = ledger_service.get("/nowhere")
    assert status == 404 and json.loads(body)["error"]["reason"] == "not_found"
    times = [
        b["time"] for i, b in read_stream(nats.url, "LEDGER_OUT") if not str(i).startswith("checkpoint:")
    ]
    assert times and all(t.endswith("+00:00") and "T" in t for t in times)
    ledger_service.terminate()
    logs = [p for p in tmp_path.glob(f"ledger-{ledger_service.http_port}-*.log")]
    assert logs
    for log_file in logs:
        text = log_file.read_text()
        assert "\x1b[" not in text, "colour codes in the log"
        lines_ = [line for line in text.splitlines() if line.strip()]
        assert any("Uvicorn running" in line or "Started server process" in line for line in lines_)
        for line in lines_:
            assert isinstance(json.loads(line), dict), line
