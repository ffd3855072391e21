"""The tamper-evident hash chain over the stored facts.

hash(n) = SHA-256( TAG || u64(n) || u32(len(prev)) || prev || u64(len(fact)) || fact )

where ``prev`` is hash(n-1) (the fixed :data:`GENESIS` for the first fact) and ``fact``
is the canonical JSON of the stored envelope (sorted keys, no spaces, UTF-8). Every field
is length-prefixed, so no two different histories can encode to the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import orjson

__all__ = ["GENESIS", "canonical_json", "chain_hash", "fact_digest"]

GENESIS = "0" * 64
_TAG = b"coop-ledger/chain/v1\x00"


def canonical_json(document: Any) -> bytes:
    """Canonical bytes of a JSON document: sorted keys, compact, UTF-8."""
    encoded: bytes = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    return encoded


#: u64(n) || u32(len(prev)) || prev || u64(len(fact)), packed in one call (prev is 64 chars).
_HEAD = struct.Struct(">QI64sQ")
#: SHA-256 having absorbed the tag: each hash starts from a copy (fewer calls per fact).
_TAGGED = hashlib.sha256(_TAG)


def chain_hash(prev_hash: str, position: int, fact_json: bytes) -> str:
    """The chain hash of the fact stored at ``position`` after ``prev_hash``."""
    assert position >= 1, position
    assert len(prev_hash) == 64, prev_hash
    digest = _TAGGED.copy()
    digest.update(_HEAD.pack(position, 64, prev_hash.encode("ascii"), len(fact_json)))
    digest.update(fact_json)
    return digest.hexdigest()


def fact_digest(fact_json: bytes) -> str:
    """SHA-256 of a fact's canonical bytes alone: tells an altered fact from a broken link."""
    return hashlib.sha256(fact_json).hexdigest()
