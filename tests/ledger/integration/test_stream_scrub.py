"""The GDPR stream scrub against a real nats-server: what matches is erased, to the bytes on disk."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import orjson
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from coop_runtime.streams import stream_config
from ledger.adapters.consumer import rejection_body
from ledger.adapters.jetstream import PipelinedPublisher
from ledger.adapters.stream_scrub import (
    MAX_NEEDLES,
    NeedleMatcher,
    ScrubResult,
    ack_floor,
    needle_forms,
    scrub_streams,
)
from ledger.application.ledger import Outcome
from tests.support.servers import NatsServer, free_port, wait_for

NAME = "Zoë Dupont-Müller"
EMAIL = "zoe.dupont@example.org"
WEBHOOK = "https://hooks.example.org/zoe/1?a=1&b=2"
IBAN = "CH9300762011623852957"
HOLDER = 'Zoë "Zozo" Dupont'
PERSON = [NAME, EMAIL, WEBHOOK, IBAN, HOLDER]
STREAMS = (
    ("LEDGER_IN", "ledger.in.>"),
    ("LEDGER_OUT", "ledger.out.>"),
    ("LEDGER_REJECTED", "ledger.rejected"),
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-data").start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    js = client.jetstream()
    for name, subject in STREAMS:  # as `ledger serve` creates them: file storage, one replica
        await js.add_stream(stream_config(name, [subject], 120.0, 1))
    yield client
    await client.close()


def event(i: int, data: dict[str, str], *, ensure_ascii: bool = False) -> bytes:
    doc = {"specversion": "1.0", "id": f"t-{i}", "source": "tests", "type": "coop.ledger.x.v1", "data": data}
    return json.dumps(doc, ensure_ascii=ensure_ascii).encode() if ensure_ascii else orjson.dumps(doc)


async def publish(
    nc: Client, subject: str, bodies: list[bytes], headers: list[dict[str, str]] | None = None
) -> None:
    items = [
        (
            subject,
            body,
            {"Nats-Msg-Id": f"{subject}-{i}-{len(body)}", **((headers or [])[i] if headers else {})},
        )
        for i, body in enumerate(bodies)
    ]
    await PipelinedPublisher(nc).publish(items, timeout_s=30)


async def sequences(js: JetStreamContext, stream: str) -> list[int]:
    info = await js.stream_info(stream)
    kept = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        kept.append(seq)
    return kept


def holding(store_dir: Path, needles: list[str]) -> list[str]:
    """Files under ``store_dir`` holding any form of a needle (like ``grep -a``, every file)."""
    found = []
    for path in sorted(store_dir.rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for needle in needles:
            haystack = data.lower() if "@" in needle else data
            if any(form in haystack for form in needle_forms(needle)):
                found.append(f"{path.relative_to(store_dir)}: {needle[:3]}…")
    return found


def test_needle_forms_cover_json_encoders() -> None:
    """A needle is looked for as UTF-8, JSON-escaped, \\u-escaped (either hex case), with \\/ and in NFD."""
    forms = needle_forms(HOLDER)
    assert HOLDER.encode() in forms
    assert orjson.dumps(HOLDER)[1:-1] in forms
    assert json.dumps(HOLDER)[1:-1].encode() in forms
    assert json.dumps(HOLDER)[1:-1].replace("\\u00eb", "\\u00EB").encode() in forms
    assert json.dumps(WEBHOOK)[1:-1].replace("/", "\\/").encode() in needle_forms(WEBHOOK)
    assert "Zoe\u0308 Dupont".encode() in needle_forms("Zoë Dupont")  # decomposed ë
    assert all(form == form.lower() for form in needle_forms("Zoe.Dupont@Example.ORG"))


def test_short_needles_are_ignored_and_bad_ones_refused() -> None:
    """Needles under 4 characters match nothing; empty needles and more than 64 are refused."""
    short = NeedleMatcher(["Zoë", "ab"])
    assert (short.count, short.ignored) == (0, 2)
    assert not short.matches(b'{"name": "Zo\xc3\xab"}', None)
    with pytest.raises(AssertionError):
        NeedleMatcher([NAME, ""])
    with pytest.raises(AssertionError):
        NeedleMatcher([f"needle-{i}" for i in range(MAX_NEEDLES + 1)])


@pytest.mark.asyncio
async def test_every_form_is_erased_and_nothing_else(nc: Client) -> None:
    """Each JSON form (escaped once or twice, \\u, \\/, upper-case e-mail, header) goes; the rest stays."""
    js = nc.jetstream()
    bodies = [
        event(0, {"display_name": NAME}),  # 1 plain UTF-8
        event(1, {"display_name": "Zoe Dupont-Muller", "email": "zoe.dupont@example.com"}),  # 2 kept
        event(2, {"account_holder": HOLDER}),  # 3 orjson: Zoë \"Zozo\" Dupont
        event(3, {"account_holder": HOLDER}, ensure_ascii=True),  # 4 Zo\u00eb \"Zozo\"
        event(4, {"email": EMAIL.upper()}),  # 5 upper-case e-mail
        event(5, {"display_name": "Zoë"}),  # 6 kept: only a short part of the name
        json.dumps({"webhook_url": WEBHOOK}).replace("/", "\\/").encode(),  # 7 PHP-style \/
        event(7, {"iban": "CH93 0076 2011 6238 5295 7"}),  # 8 kept: the IBAN grouped differently
        event(8, {"note": "nothing personal"}),  # 9 matches by a header value
        event(9, {"iban": IBAN, "email": "someone@example.net"}),  # 10 plain IBAN
    ]
    headers = [{} for _ in bodies]
    headers[8] = {"X-Account-Holder": HOLDER}
    await publish(nc, "ledger.out.party", bodies, headers)
    refused = Outcome(status="rejected", envelope_id="t-22", reason="invalid_fact", message="bad amount")
    rejected = [
        event(20, {"note": "kept"}),  # 1 kept
        event(21, {"email": EMAIL}),  # 2
        rejection_body(event(22, {"account_holder": HOLDER}, ensure_ascii=True), refused),  # 3 escaped twice
        rejection_body(event(23, {"display_name": "Party 23"}), refused),  # 4 kept
    ]
    await publish(nc, "ledger.rejected", rejected)
    seen: list[tuple[str, int]] = []

    results = await scrub_streams(
        js,
        [("LEDGER_OUT", None), ("LEDGER_REJECTED", None)],
        PERSON,
        batch=3,
        progress=lambda stream, scanned: seen.append((stream, scanned)),
    )

    assert results == [ScrubResult("LEDGER_OUT", 10, 7, 0), ScrubResult("LEDGER_REJECTED", 4, 2, 0)]
    assert await sequences(js, "LEDGER_OUT") == [2, 6, 8]
    assert await sequences(js, "LEDGER_REJECTED") == [1, 4]
    assert seen[-1] == ("LEDGER_REJECTED", 4) and ("LEDGER_OUT", 10) in seen
    again = await scrub_streams(js, [("LEDGER_OUT", None), ("LEDGER_REJECTED", None)], PERSON)
    assert again == [ScrubResult("LEDGER_OUT", 3, 0, 0), ScrubResult("LEDGER_REJECTED", 2, 0, 0)]


@pytest.mark.asyncio
async def test_ack_floor_limits_what_is_deleted(nc: Client) -> None:
    """On LEDGER_IN only messages at or below the durable consumer's ack floor are deleted."""
    js = nc.jetstream()
    assert await ack_floor(js, "LEDGER_IN", "ledger-in-v1") == 0  # no consumer yet
    assert await ack_floor(js, "NO_SUCH_STREAM", "ledger-in-v1") == 0
    matching = {1, 3, 4, 6, 7}
    bodies = [event(i, {"email": EMAIL if i in matching else f"p{i}@example.net"}) for i in range(1, 9)]
    await publish(nc, "ledger.in.party", bodies)
    sub = await js.pull_subscribe(
        "ledger.in.>",
        durable="ledger-in-v1",
        stream="LEDGER_IN",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
    )
    for msg in await sub.fetch(4, timeout=5):  # the ledger has processed 1..4
        await msg.ack_sync()
    floor = await ack_floor(js, "LEDGER_IN", "ledger-in-v1")
    assert floor == 4

    [result] = await scrub_streams(js, [("LEDGER_IN", floor)], [EMAIL])

    assert result == ScrubResult("LEDGER_IN", 8, 3, 2)
    assert await sequences(js, "LEDGER_IN") == [2, 5, 6, 7, 8]
    for msg in await sub.fetch(4, timeout=5):  # the rest is still delivered to the ledger
        await msg.ack_sync()
    [later] = await scrub_streams(
        js, [("LEDGER_IN", await ack_floor(js, "LEDGER_IN", "ledger-in-v1"))], [EMAIL]
    )
    assert later == ScrubResult("LEDGER_IN", 5, 2, 0)
    assert await sequences(js, "LEDGER_IN") == [2, 5, 8]


@pytest.mark.asyncio
async def test_missing_stream_is_skipped(nc: Client) -> None:
    """A stream that does not exist gives a result with nothing scanned; the others are scrubbed."""
    js = nc.jetstream()
    await publish(nc, "ledger.rejected", [event(1, {"iban": IBAN})])

    results = await scrub_streams(js, [("LEDGER_GONE", None), ("LEDGER_REJECTED", None)], PERSON)

    assert results == [ScrubResult("LEDGER_GONE", 0, 0, 0), ScrubResult("LEDGER_REJECTED", 1, 1, 0)]
    assert [c.name async for c in _consumers(js, "LEDGER_REJECTED")] == []  # the scan's consumer is gone


async def _consumers(js: JetStreamContext, stream: str) -> AsyncIterator[ConsumerConfig]:
    for info in await js.consumers_info(stream):
        yield info.config


@pytest.mark.asyncio
async def test_erased_bytes_are_gone_from_the_store_dir(nc: Client, nats_server: NatsServer) -> None:
    """After the scrub of 20k messages (two 8 MB blocks) no file of the store holds the person's data."""
    js = nc.jetstream()
    total, every = 20_000, 1_000
    erased = total // every + 2
    bodies = [
        event(
            i, {"display_name": NAME, "email": EMAIL.upper(), "webhook_url": WEBHOOK}, ensure_ascii=i % 2 == 0
        )
        if i % every == 7 or i in (0, total - 1)  # the first and last messages too
        else event(i, {"display_name": f"Party {i}", "note": "x" * (400 + i % 300)})
        for i in range(total)
    ]
    await publish(nc, "ledger.out.party", bodies)
    await publish(nc, "ledger.in.party", [event(1, {"iban": IBAN, "account_holder": HOLDER})])
    store = nats_server.store_dir
    assert len(list(store.rglob("*.blk"))) >= 3  # LEDGER_OUT spans two blocks, LEDGER_IN has one
    assert holding(store, PERSON), "the search must find the data before the scrub"

    started = time.perf_counter()
    results = await scrub_streams(js, [("LEDGER_OUT", None), ("LEDGER_IN", None)], PERSON, batch=256)
    elapsed_s = time.perf_counter() - started
    print(
        f"\nscrubbed {total + 1} messages ({erased} erased) in {elapsed_s:.2f}s: "
        f"{(total + 1) / elapsed_s:,.0f} msgs/s"
    )

    assert results == [ScrubResult("LEDGER_OUT", total, erased, 0), ScrubResult("LEDGER_IN", 1, 1, 0)]
    assert holding(store, PERSON) == []
    await nc.close()
    nats_server.restart()  # the server rebuilds its state from the blocks: still nothing, the rest intact
    client = await nats.connect(nats_server.url)
    try:
        js = client.jetstream()
        assert holding(store, PERSON) == []
        info = await js.stream_info("LEDGER_OUT")
        assert info.state.messages == total - erased
        assert (await js.get_msg("LEDGER_OUT", 9)).data == bodies[8]
        started = time.perf_counter()
        again = await scrub_streams(js, [("LEDGER_OUT", None), ("LEDGER_IN", None)], PERSON)
        elapsed_s = time.perf_counter() - started
        print(
            f"scanned {again[0].scanned} messages (none erased) in {elapsed_s:.2f}s: "
            f"{again[0].scanned / elapsed_s:,.0f} msgs/s"
        )
        assert [r.deleted for r in again] == [0, 0]
    finally:
        await client.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three nats-servers in one JetStream cluster, as deployed (LEDGER_STREAM_REPLICAS=3)."""
    routes = [free_port() for _ in range(3)]
    servers = []
    for i, route in enumerate(routes):
        store = tmp_path / f"n{i}" / "nats-data"
        store.mkdir(parents=True)
        config = tmp_path / f"n{i}" / "nats.conf"
        config.write_text(
            f'server_name: n{i}\njetstream {{ store_dir: "{store}" }}\n'
            f"cluster {{ name: scrub, listen: 127.0.0.1:{route}, "
            f"routes: [{', '.join(f'nats://127.0.0.1:{r}' for r in routes)}] }}\n"
        )
        servers.append(NatsServer(store, config=config))
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
@pytest.mark.asyncio
async def test_replicated_streams_keep_copies_in_their_raft_log(cluster: list[NatsServer]) -> None:
    """On R3 streams each replica's raft log keeps erased messages; scaling to R1 and back drops them."""
    client = await nats.connect([server.url for server in cluster])
    try:
        js = client.jetstream()
        deadline = time.monotonic() + 30
        while True:  # until the cluster has elected its meta leader
            try:
                await js.add_stream(stream_config("LEDGER_OUT", ["ledger.out.>"], 120.0, 3))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        bodies = [event(i, {"email": EMAIL if i % 10 == 3 else f"p{i}@example.net"}) for i in range(100)]
        await publish(client, "ledger.out.party", bodies)
        stores = [server.store_dir for server in cluster]

        [result] = await scrub_streams(js, [("LEDGER_OUT", None)], [EMAIL])

        assert result == ScrubResult("LEDGER_OUT", 100, 10, 0)

        def only_in_raft_logs() -> list[list[str]] | None:
            left = [holding(store, [EMAIL]) for store in stores]
            return left if all("/_js_/" in hit for hits in left for hit in hits) else None

        # the followers erase a moment after the leader answered; then the stream's own blocks are
        # clean, but every replica keeps copies in the stream's raft log ($SYS/_js_/S-R3F-…/msgs)
        left = await asyncio.to_thread(wait_for, only_in_raft_logs, 10, 0.1, "followers to erase")
        assert all(left), left
        for replicas in (1, 3):  # the R1 stream drops its raft group; back to R3 starts a new one
            await js.update_stream(stream_config("LEDGER_OUT", ["ledger.out.>"], 120.0, replicas))
            await asyncio.sleep(1)

        def gone() -> bool:
            return not any(holding(store, [EMAIL]) for store in stores)

        await asyncio.to_thread(wait_for, gone, 20, 0.2, "the raft logs to be dropped")
        info = await js.stream_info("LEDGER_OUT")
        assert (info.state.messages, info.config.num_replicas) == (90, 3)
    finally:
        await client.close()
