"""Fuzzing every input surface with hypothesis: NATS envelopes and payloads, lines of
`--events` files, HTTP query parameters and request/reply queries. Each bad input gets a
specific refusal, nothing crashes or hangs, memory stays bounded, and valid traffic
interleaved with the garbage is processed correctly.

`FUZZ_EXAMPLES` sets the number of generated inputs per surface (300 in the test suite;
`scripts/soak fuzz` runs 10,000 per surface)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.adapters.consumer import REJECTION_MAX_BYTES, rejection_body
from ledger.adapters.metrics import LedgerMetrics
from ledger.adapters.query_api import QueryService, nats_answer, query_params
from ledger.application.contract import REASON_CODES, parse_envelope
from ledger.application.fields import has_control_characters
from ledger.application.ledger import Ledger
from ledger.application.queries import QueryError, ReportQuery
from ledger.application.replay import ingest_lines
from ledger.bootstrap import build_ephemeral_ledger, build_store, utc_now
from ledger.settings import Settings
from tests.conftest import EXAMPLES

EXAMPLES_PER_SURFACE = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES_PER_SURFACE,
    deadline=2000,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VALID = (EXAMPLES / "01-standard-introduction.jsonl").read_text().splitlines()
VALID_DOCS = [json.loads(line) for line in VALID]
VALID_BYTES = {line.encode() for line in VALID}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    """A valid envelope with one or more fields dropped, replaced or added."""
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID_DOCS))))
    doc["id"] = f"fuzz-{draw(st.integers(0, 1 << 40))}"
    for _ in range(draw(st.integers(1, 3))):
        inner = doc.get("data")
        target = inner if isinstance(inner, dict) and draw(st.booleans()) else doc
        key = (
            draw(st.sampled_from(sorted(target)) | st.text(max_size=10))
            if target
            else draw(st.text(max_size=10))
        )
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return json.dumps(doc).encode()


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """The inputs that once got through or broke things: values with a trailing newline,
    duplicate keys, almost-RFC-3339 times, control characters, payloads that grow when
    quoted, oversized messages."""
    doc = json.loads(json.dumps(draw(st.sampled_from(VALID_DOCS))))
    doc["id"] = f"fuzz-{draw(st.integers(0, 1 << 40))}"
    data = doc["data"]
    kind = draw(st.sampled_from(["newline", "dupkey", "time", "control", "expanding", "oversized"]))
    if kind == "newline":
        key = draw(st.sampled_from(sorted(data)))
        if isinstance(data[key], str):
            data[key] += draw(st.sampled_from(["\n", "\r\n", "\r"]))
        return json.dumps(doc).encode()
    if kind == "dupkey":
        key = draw(st.sampled_from(sorted(data)))
        text = json.dumps(doc)
        marker = json.dumps(key) + ":"
        return text.replace(marker, f"{marker} {json.dumps(draw(json_values))}, {marker}", 1).encode()
    if kind == "time":
        doc["time"] = draw(
            st.sampled_from(
                ["2025-W10-1T00:00Z", "2025-01-10T09:00:00", "2025-01-10 09:00:00Z", "2025-13-01T00:00:00Z"]
            )
        )
        return json.dumps(doc).encode()
    if kind == "control":
        doc[draw(st.sampled_from(["source", "subject", "traceparent"]))] = (
            "a" + chr(draw(st.integers(0, 31))) + "b"
        )
        return json.dumps(doc).encode()
    if kind == "expanding":
        size = draw(st.integers(1_000, 60_000))
        data["note"] = draw(st.sampled_from(["\x01", "\u2028", '"', "\\"])) * size
        return json.dumps(doc).encode()
    return b'{"pad": "' + b"x" * draw(st.integers(64 * 1024, 200 * 1024)) + b'"}'


garbage = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | mutated_envelopes()
    | st.text(max_size=200).map(str.encode)
    | hostile()
)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def check_outcomes(raws: list[bytes], outcomes: list[Any]) -> None:
    assert len(outcomes) == len(raws)
    for raw, outcome in zip(raws, outcomes, strict=True):
        if outcome.status == "rejected":
            assert outcome.reason in REASON_CODES, outcome
            assert outcome.message
            # the rejection published for it always fits, whatever it held
            assert len(rejection_body(raw, outcome)) <= REJECTION_MAX_BYTES
        else:
            assert outcome.status in {"accepted", "duplicate"}
            # nothing accepted carries a control character in a value
            assert not any(has_control_characters(v) for v in _strings(json.loads(raw))), raw[:200]


@FUZZ
@given(batch=st.lists(garbage, min_size=1, max_size=8), where=st.integers(0, 8))
def test_nats_envelopes_get_specific_refusals_and_valid_traffic_still_counts(
    batch: list[bytes], where: int
) -> None:
    """Whatever a batch holds, each message is accepted, a duplicate, or refused with a known
    reason code; the valid facts sent in the same batches are all stored."""
    ledger = build_ephemeral_ledger()
    raws = list(batch)
    raws[min(where, len(raws)) : min(where, len(raws))] = [line.encode() for line in VALID]
    outcomes = ledger.ingest(raws)
    check_outcomes(raws, outcomes)
    # a valid fact is stored, unless fuzzed garbage that happened to be a valid fact with the
    # same business key was accepted before it (then: duplicate, or conflict if it differs)
    taken = {
        parse_envelope(raw).fact.key
        for raw, o in zip(raws, outcomes, strict=True)
        if o.status == "accepted" and raw not in VALID_BYTES
    }
    for raw, outcome in zip(raws, outcomes, strict=True):
        if raw in VALID_BYTES and outcome.status != "accepted":
            assert outcome.status == "duplicate" or outcome.reason == "conflict", outcome
            assert parse_envelope(raw).fact.key in taken
    if not taken:
        report = ledger.books()
        assert any(c.invoice_id == "2025-0311" and c.amount == 240 for c in report.commissions)


@FUZZ
@given(lines=st.lists(st.binary(max_size=400) | garbage, min_size=1, max_size=20))
def test_events_file_lines_are_each_accounted_for(lines: list[bytes]) -> None:
    """Every line of a fuzzed `--events` file is accepted, a duplicate or listed as refused
    with its number and a known reason; blank lines are skipped; nothing else happens."""
    numbered = [
        (n, None if len(raw) > 70_000 else raw) for n, raw in enumerate(lines, start=1) if raw.strip()
    ]
    result = ingest_lines(build_ephemeral_ledger(), numbered)
    assert result.lines == len(numbered)
    assert result.accepted + result.duplicates + len(result.rejected) == len(numbered)
    assert all(r.reason in REASON_CODES | {"too_large"} and r.message for r in result.rejected)
    assert [r.line for r in result.rejected] == sorted(r.line for r in result.rejected)


def _service(token: str | None = None) -> QueryService:
    settings_ = Settings(store_url="memory:", query_token=token)
    store = build_store(settings_)
    ledger = Ledger(store, utc_now)
    ledger.ingest([line.encode() for line in VALID])
    return QueryService(
        ledger,
        LedgerMetrics(),
        workers=1,
        max_concurrent=settings_.max_concurrent_queries,
        token=settings_.query_token,
    )


SERVICE = _service()
SECURED = _service(token="fuzz-token")
query_strings = st.text(alphabet=st.characters(codec="ascii"), max_size=200).map(str.encode) | st.binary(
    max_size=200
)


@FUZZ
@given(raw=query_strings)
def test_http_query_parameters_are_answered_or_refused(raw: bytes) -> None:
    """Any query string either gives a report view or a QueryError (a 400), never a crash."""
    scope = {"type": "http", "query_string": raw, "headers": []}
    try:
        params = query_params(scope)
        result = json.loads(asyncio.run(SERVICE.json(ReportQuery.from_params("report", params), "http")))
    except QueryError as exc:
        assert str(exc)
    else:
        assert "head" in result


@FUZZ
@given(
    body=garbage | json_values.map(lambda v: json.dumps({"as_of": v}).encode()),
    view=st.sampled_from(["report", "introducer", "client"]),
    secured=st.booleans(),
)
def test_request_reply_queries_are_answered_or_refused(body: bytes, view: str, secured: bool) -> None:
    """Any request body gets either a view or an error with reason bad_query/unauthorized."""
    reply = asyncio.run(nats_answer(SECURED if secured else SERVICE, body, view, 1024 * 1024))  # type: ignore[arg-type]
    assert len(reply) <= 1024 * 1024
    result = json.loads(reply)
    if "error" in result:
        assert result["error"]["reason"] in {"bad_query", "unauthorized"}
        assert result["error"]["message"]
    else:
        assert not secured
        assert "head" in result


def test_memory_stays_bounded_under_garbage() -> None:
    """Refused messages leave no growing state behind: a second round of thousands of them
    retains no more memory than the first (warm caches aside)."""
    ledger = build_ephemeral_ledger()

    def junk(round_: int) -> list[bytes]:
        return [
            b'{"specversion":"1.0","id":"j%d-%d","source":"s","type":"nope","data":{}}' % (round_, i)
            for i in range(3000)
        ]

    def feed(messages: list[bytes]) -> None:
        for start in range(0, len(messages), 200):
            ledger.ingest(messages[start : start + 200])

    feed(junk(0))
    tracemalloc.start()
    feed(junk(1))
    gc.collect()
    first, _ = tracemalloc.get_traced_memory()
    feed(junk(2))
    gc.collect()
    second, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert second - first < 256 * 1024, (first, second)
    assert peak < 32 * 1024 * 1024
    assert ledger.head_position == 0
