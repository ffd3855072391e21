"""Erasure of a person from the JetStream streams the ledger owns (GDPR right to erasure).

Every message whose payload or header values contain one of the person's personal data
(name, e-mail, webhook URL, IBAN, account holder: the *needles*) is deleted with
``STREAM.MSG.DELETE``. nats-py's ``delete_msg`` sends ``{"seq": n}`` without ``no_erase``,
so nats-server *erases* the message: its record in the file store is overwritten with random
bytes (``fileStore.EraseMsg``), not only marked deleted. Whole subjects are never purged.

How a needle is found, as bytes:

- as UTF-8, and in every form a JSON encoder may write it: ``"`` and ``\\`` escaped,
  ``\\/`` for ``/`` (PHP), ``\\u0026`` for ``<>&`` (Go), non-ASCII as ``\\uXXXX`` (Python's
  ``ensure_ascii``, lower- or upper-case hex, surrogate pairs above U+FFFF), each in NFC and
  NFD (a composed or a decomposed ``ë``), and each of those escaped once more (a rejection on
  ``LEDGER_REJECTED`` holds the refused message as a JSON string);
- case-sensitively, except a needle containing ``@`` (an e-mail address), matched on
  ASCII-lower-cased bytes (the needle as given, lower- and upper-cased, so ``ZOË@…`` too);
- needles shorter than :data:`MIN_NEEDLE_CHARS` characters are ignored: they would match
  unrelated messages (and delete other people's data); empty ones are a caller's error.

Each stream is read once, from its first sequence to its last as of the start (messages
stored after are newer data, not scanned), by an ephemeral consumer that acks nothing and
changes no other consumer; its pull requests go on the connection itself and the messages are
matched in the subscription's callback (about twice the rate of nats-py's ``fetch``; see
bench/stream_scrub.py). Subjects and header names are not searched (the ledger writes no
personal data there). A stream given with a limit (``LEDGER_IN``: the ack floor of
the ledger's durable consumer, :func:`ack_floor`) keeps its messages above the limit (not
processed yet: deleting them would lose facts); they are counted in ``skipped_unacked``
and are scrubbed by a later run. Running twice deletes nothing the second time.

What is left on disk (nats-server 2.15, file storage; tests/ledger/integration/test_stream_scrub.py):

- one server: nothing. Every file under the store directory was searched for every form of
  the needles after erasing (first, last, middle messages; two 8 MB blocks; after a restart
  too): no copy. The erase writes the whole block anew (temporary file, then rename), so the
  old bytes are only in free space of the file system (and its snapshots, backups).
- a cluster (``stream_replicas`` > 1, as deployed): the stream's blocks are clean on every
  replica (the followers erase a moment after the leader answered), but each replica's raft
  log of the stream (``<store>/jetstream/$SYS/_js_/S-R3F-*/msgs/*.blk``) keeps a copy of
  every message stored since the stream's last raft snapshot (taken every 2 to 3 minutes,
  or per 65,536 entries / 8 MB): idle, the copies were gone about 3 minutes after the scrub.
  Under load (read in nats-server's code, not measured) a 4 MB log block is dropped only once
  all of it is older than a snapshot, or rewritten once over half of it is. A purge
  (even one that keeps everything) does not help; updating the stream to 1 replica and back
  drops the raft logs at once (the stream has no copy elsewhere for that moment).
- encrypted stores (``jetstream { cipher }``) are not overwritten: nats-server turns the
  erase into a plain delete (the ciphertext stays until its block is compacted).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

__all__ = [
    "MAX_NEEDLES",
    "MIN_NEEDLE_CHARS",
    "NeedleMatcher",
    "ScrubIncompleteError",
    "ScrubResult",
    "ack_floor",
    "needle_forms",
    "scrub_streams",
]

#: Most needles in one run (one person has a handful of personal data).
MAX_NEEDLES = 64
#: Needles shorter than this are ignored: too many unrelated messages would match.
MIN_NEEDLE_CHARS = 4
#: Longest needle accepted, in characters (an IBAN is 34, a URL rarely more than 2,000).
MAX_NEEDLE_CHARS = 4096
#: Most messages asked for by one pull request (``batch``).
MAX_BATCH = 4096
#: Pull requests open at once on a scan (each for ``batch`` messages).
IN_FLIGHT_REQUESTS = 2
#: Pull requests a scan may see refused in a row (503, 409: a consumer not known yet on the
#: server, a leader change...) before it gives up; the first retry waits this long, doubling.
MAX_RETRIES = 10
RETRY_DELAY_S = 0.05
#: A progress line is logged every this many messages scanned (per stream).
LOG_EVERY_MSGS = 10_000
#: nats-server's error code for "sequence not found" (JSSequenceNotFoundErrF).
SEQUENCE_NOT_FOUND = 10043
#: The ephemeral consumer disappears this long after its last pull request if the run dies.
CONSUMER_INACTIVE_S = 60.0

log = structlog.get_logger("ledger.stream_scrub")


class ScrubIncompleteError(RuntimeError):
    """A stream could not be read to its end (JetStream stopped answering)."""


@dataclass(frozen=True, slots=True)
class ScrubResult:
    """What one stream's scrub did (counts of messages)."""

    stream: str
    scanned: int
    deleted: int
    skipped_unacked: int  # matches above the stream's limit, left in place


# needles -----------------------------------------------------------------------------

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HTML = frozenset("<>&\u2028\u2029")


def _u_escape(code: int, upper: bool) -> str:
    if code > 0xFFFF:  # a surrogate pair, as JSON encoders write astral characters
        code -= 0x10000
        return _u_escape(0xD800 + (code >> 10), upper) + _u_escape(0xDC00 + (code & 0x3FF), upper)
    text = f"\\u{code:04x}"
    return text.upper().replace("\\U", "\\u") if upper else text


def _json_escaped(text: str, *, ascii_only: bool, upper_hex: bool, slash: bool, html: bool) -> str:
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or (html and char in _HTML) or (ascii_only and code > 0x7F):
            out.append(_u_escape(code, upper_hex))
        elif slash and char == "/":
            out.append("\\/")
        else:
            out.append(char)
    return "".join(out)


def needle_forms(needle: str) -> frozenset[bytes]:
    """Every byte string ``needle`` may be written as in a message (module docstring); for
    an e-mail address (contains ``@``) lower-cased, to be looked for in lower-cased bytes."""
    assert needle, "an empty needle would match every message"
    assert len(needle) <= MAX_NEEDLE_CHARS, len(needle)
    folded = "@" in needle
    texts = {needle, needle.lower(), needle.upper()} if folded else {needle}
    texts = {unicodedata.normalize(form, t) for t in texts for form in ("NFC", "NFD")}
    once = {escaped for text in texts for escaped in _escapes(text)}
    # escaped twice: a JSON text held in a JSON string (LEDGER_REJECTED's "original")
    twice = {escaped for text in once - texts for escaped in _escapes(text)}
    forms = {text.encode() for text in once | twice}
    return frozenset(form.lower() for form in forms) if folded else frozenset(forms)


def _escapes(text: str) -> set[str]:
    """``text`` as is and as each JSON encoder may escape it in a string."""
    return {text} | {
        _json_escaped(text, ascii_only=ascii_only, upper_hex=upper_hex, slash=slash, html=html)
        for ascii_only, upper_hex, slash, html in itertools.product((False, True), repeat=4)
    }


def _alternation(forms: Iterable[bytes]) -> re.Pattern[bytes] | None:
    ordered = sorted(set(forms), key=lambda form: (-len(form), form))
    return re.compile(b"|".join(re.escape(form) for form in ordered)) if ordered else None


class NeedleMatcher:
    """Finds any needle in a message: one regular expression for the exact forms, one for
    the e-mail forms over the lower-cased bytes (fast: each message is searched twice)."""

    def __init__(self, needles: Sequence[str]) -> None:
        assert len(needles) <= MAX_NEEDLES, f"at most {MAX_NEEDLES} needles, got {len(needles)}"
        assert all(needles), "empty needles are refused"
        kept = [needle for needle in needles if len(needle) >= MIN_NEEDLE_CHARS]
        self.ignored = len(needles) - len(kept)
        self.count = len(kept)
        self._exact = _alternation(f for n in kept if "@" not in n for f in needle_forms(n))
        self._folded = _alternation(f for n in kept if "@" in n for f in needle_forms(n))

    def search(self, data: bytes) -> bool:
        if self._exact is not None and self._exact.search(data) is not None:
            return True
        return self._folded is not None and self._folded.search(data.lower()) is not None

    def matches(self, data: bytes | None, headers: Mapping[str, str] | None) -> bool:
        """The payload or a header value holds a needle."""
        if data and self.search(data):
            return True
        if headers:
            # one separator between values: no needle is found across two of them
            return self.search(b"\n".join(value.encode() for value in headers.values()))
        return False


# streams -----------------------------------------------------------------------------


async def ack_floor(js: JetStreamContext, stream: str, durable: str, timeout_s: float = 10.0) -> int:
    """The stream sequence up to which ``durable`` has acked every message (0 when the
    stream or the consumer does not exist: nothing may be deleted)."""
    try:
        info = await js.consumer_info(stream, durable, timeout=timeout_s)
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor is not None else 0


async def scrub_streams(
    js: JetStreamContext,
    streams: Sequence[tuple[str, int | None]],
    needles: Sequence[str],
    *,
    batch: int = 256,
    timeout_s: float = 30.0,
    progress: Callable[[str, int], None] | None = None,
) -> list[ScrubResult]:
    """Delete (erase) every message holding one of ``needles`` from each stream of
    ``streams``: (name, highest sequence that may be deleted, or None for any). A stream
    that does not exist is skipped (a result with nothing scanned). ``timeout_s`` bounds each
    JetStream request; ``progress(stream, scanned)`` is called as the scan advances. Needles
    shorter than :data:`MIN_NEEDLE_CHARS` characters are ignored; at most
    :data:`MAX_NEEDLES`. Raises :class:`ScrubIncompleteError` when a stream cannot be read
    to its end (what was deleted before stays deleted; run again)."""
    assert 1 <= batch <= MAX_BATCH, batch
    assert timeout_s > 0, timeout_s
    matcher = NeedleMatcher(needles)
    if matcher.ignored:
        log.warning("short needles ignored", ignored=matcher.ignored, min_chars=MIN_NEEDLE_CHARS)
    scrubber = _Scrubber(js, matcher, batch=batch, timeout_s=timeout_s, progress=progress)
    results: list[ScrubResult] = []
    for stream, limit in streams:
        assert limit is None or limit >= 0, (stream, limit)
        if matcher.count == 0:
            results.append(ScrubResult(stream, 0, 0, 0))
            continue
        results.append(await scrubber.stream(stream, limit))
    return results


@dataclass(slots=True)
class _Counts:
    scanned: int = 0
    deleted: int = 0
    skipped_unacked: int = 0


@dataclass(frozen=True, slots=True)
class _Scrubber:
    js: JetStreamContext
    matcher: NeedleMatcher
    batch: int
    timeout_s: float
    progress: Callable[[str, int], None] | None

    async def stream(self, stream: str, limit: int | None) -> ScrubResult:
        try:
            info = await asyncio.wait_for(self.js.stream_info(stream), self.timeout_s)
        except NotFoundError:
            log.info("stream not found, skipped", stream=stream)
            return ScrubResult(stream, 0, 0, 0)
        first_seq, last_seq = int(info.state.first_seq), int(info.state.last_seq)
        counts = _Counts()
        if int(info.state.messages) > 0:
            await self._scan(stream, (first_seq, last_seq), limit, counts)
        log.info(
            "stream scrubbed",
            stream=stream,
            scanned=counts.scanned,
            deleted=counts.deleted,
            skipped_unacked=counts.skipped_unacked,
            last_seq=last_seq,
        )
        return ScrubResult(stream, counts.scanned, counts.deleted, counts.skipped_unacked)

    async def _scan(self, stream: str, seqs: tuple[int, int], limit: int | None, counts: _Counts) -> None:
        """Read ``seqs`` (first, last) of ``stream`` with an ephemeral consumer (no acks, in
        memory), deleting the matches while the next batches arrive."""
        first_seq, last_seq = seqs
        name = f"scrub-{secrets.token_hex(8)}"
        config = ConsumerConfig(
            name=name,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first_seq,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=max(CONSUMER_INACTIVE_S, 2 * self.timeout_s),
        )
        await self.js.add_consumer(stream, config, timeout=self.timeout_s)
        nc = self.js._nc  # the connection js was made from: pull requests go on it directly
        reader = _PullReader(stream, name, last_seq, self.matcher, counts)
        inbox = nc.new_inbox()
        # at most IN_FLIGHT_REQUESTS * batch messages (and a status each) are ever queued
        subscription = await nc.subscribe(
            inbox + ".*", cb=reader.on_msg, pending_msgs_limit=4 * MAX_BATCH, pending_bytes_limit=0
        )
        try:
            await self._pull(nc, reader, (inbox, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}"), limit)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.js.delete_consumer(stream, name), self.timeout_s)

    async def _pull(
        self, nc: Client, reader: _PullReader, subjects: tuple[str, str], limit: int | None
    ) -> None:
        """Keep :data:`IN_FLIGHT_REQUESTS` pull requests open (their replies are handled by
        ``reader.on_msg``), erase the matches it finds, until it reached the last sequence."""
        inbox, next_subject = subjects
        request = orjson.dumps({"batch": self.batch, "expires": int(self.timeout_s * 1e9)})
        loop = asyncio.get_running_loop()
        next_log = LOG_EVERY_MSGS
        idle_since = loop.time()
        scanned = 0
        while True:
            reader.wake.clear()
            if reader.error is not None:
                raise ScrubIncompleteError(f"{reader.stream}: {reader.error} after {reader.counts.scanned}")
            if reader.counts.scanned != scanned:
                scanned, idle_since = reader.counts.scanned, loop.time()
                if self.progress is not None:
                    self.progress(reader.stream, scanned)
                if scanned >= next_log:
                    next_log = (scanned // LOG_EVERY_MSGS + 1) * LOG_EVERY_MSGS
                    log.info(
                        "scrubbing", stream=reader.stream, scanned=scanned, deleted=reader.counts.deleted
                    )
            if reader.matches:
                await self._delete_all(reader, limit)
                continue
            if reader.done:
                return
            if reader.nothing_left:
                await self._check_end(reader)
                continue
            if len(reader.open) < IN_FLIGHT_REQUESTS:
                if reader.retries:  # the last request was refused: ask again a little later
                    await asyncio.sleep(min(RETRY_DELAY_S * 2**reader.retries, 2.0))
                reader.request += 1
                reader.open[reader.request] = self.batch
                await nc.publish(next_subject, request, reply=f"{inbox}.{reader.request}")
                continue
            if loop.time() - idle_since > 2 * self.timeout_s:
                raise ScrubIncompleteError(
                    f"{reader.stream}: no message within {2 * self.timeout_s}s after {scanned} scanned"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.wake.wait(), self.timeout_s)

    async def _check_end(self, reader: _PullReader) -> None:
        """A pull request expired unfilled: the end when the consumer has nothing pending
        (the last messages were deleted meanwhile), else JetStream did not deliver in time."""
        reader.nothing_left = False
        info = await self.js.consumer_info(reader.stream, reader.consumer, timeout=self.timeout_s)
        if int(info.num_pending or 0) == 0:
            reader.done = True
            return
        raise ScrubIncompleteError(
            f"{reader.stream}: {info.num_pending} messages not delivered within {self.timeout_s}s"
        )

    async def _delete_all(self, reader: _PullReader, limit: int | None) -> None:
        seqs, reader.matches = reader.matches, []
        for seq in seqs:
            await self._delete(reader.stream, seq, limit, reader.counts)

    async def _delete(self, stream: str, seq: int, limit: int | None, counts: _Counts) -> None:
        if limit is not None and seq > limit:
            counts.skipped_unacked += 1
            return
        try:
            # no ``no_erase``: the server overwrites the stored record (secure erase)
            await asyncio.wait_for(self.js.delete_msg(stream, seq), self.timeout_s)
        except APIError as exc:
            if exc.err_code != SEQUENCE_NOT_FOUND:
                raise
            return  # gone meanwhile (a limit, another run): nothing left to erase
        counts.deleted += 1


class _PullReader:
    """The replies to one scan's pull requests (each asks for its answer on its own subject
    ``<inbox>.<n>``, where a status ends it): messages are matched as they arrive, in the
    subscription's callback (no task per message); gaps (a dropped message) are errors."""

    def __init__(
        self, stream: str, consumer: str, last_seq: int, matcher: NeedleMatcher, counts: _Counts
    ) -> None:
        self.stream = stream
        self.consumer = consumer
        self.last_seq = last_seq
        self.matcher = matcher
        self.counts = counts
        self.open: dict[int, int] = {}  # request -> messages still due
        self.request = 0
        self.matches: list[int] = []
        self.consumer_seq = 0
        self.done = False
        self.nothing_left = False
        self.retries = 0
        self.error: str | None = None
        self.wake = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        self.wake.set()
        if not msg.reply:  # a status, on the subject of the request it ends
            request = int(msg.subject.rsplit(".", 1)[1])
            if self.open.pop(request, None) is not None:
                self._status((msg.headers or {}).get("Status", ""), msg)
            return
        # JetStream serves the waiting requests in order: this message is the oldest one's
        oldest = next(iter(self.open), None)
        if oldest is not None:
            self.open[oldest] -= 1
            if self.open[oldest] <= 0:
                del self.open[oldest]
        if self.done or self.error is not None:
            return
        metadata = msg.metadata
        if metadata.sequence.consumer != self.consumer_seq + 1:
            self.error = f"message {self.consumer_seq + 1} of the scan was lost"
            return
        self.consumer_seq += 1
        self.retries = 0
        seq = int(metadata.sequence.stream)
        if seq > self.last_seq:
            self.done = True  # newer than the scan: not scanned
            return
        self.counts.scanned += 1
        if self.matcher.matches(msg.data, msg.headers):
            self.matches.append(seq)
        if seq >= self.last_seq or metadata.num_pending == 0:
            self.done = True

    def _status(self, status: str, msg: Msg) -> None:
        description = str((msg.headers or {}).get("Description", ""))
        if status in ("404", "408"):  # no message, or none before the request expired
            self.nothing_left = True
        elif self.retries < MAX_RETRIES and (
            # 503: no responders, the new consumer is not known on this server yet (a cluster);
            # 409: a leader change, too many waiting requests
            status == "503" or (status == "409" and "consumer deleted" not in description.lower())
        ):
            self.retries += 1
        else:
            self.error = f"JetStream answered {status or 'no status'} {description}".strip()
