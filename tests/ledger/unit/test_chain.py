"""The hash chain's definition (what auditors recompute from the exported log) is exactly
the one documented in application/chain.py, whatever the position, previous hash and fact."""

from __future__ import annotations

import hashlib
import struct

from hypothesis import given
from hypothesis import strategies as st

from ledger.application.chain import GENESIS, chain_hash, fact_digest


def _documented(prev: str, position: int, fact: bytes) -> str:
    """hash(n) = SHA-256(TAG || u64(n) || u32(len(prev)) || prev || u64(len(fact)) || fact)."""
    encoded = prev.encode("ascii")
    return hashlib.sha256(
        b"coop-ledger/chain/v1\x00"
        + struct.pack(">Q", position)
        + struct.pack(">I", len(encoded))
        + encoded
        + struct.pack(">Q", len(fact))
        + fact
    ).hexdigest()


@given(
    prev=st.one_of(st.just(GENESIS), st.binary(min_size=32, max_size=32).map(bytes.hex)),
    position=st.integers(min_value=1, max_value=2**63 - 1),
    fact=st.binary(max_size=3000),
)
def test_chain_hash_is_the_documented_one(prev: str, position: int, fact: bytes) -> None:
    """Any previous hash, position and fact bytes: the implementation equals the formula."""
    assert chain_hash(prev, position, fact) == _documented(prev, position, fact)


def test_known_vector() -> None:
    """A fixed vector (the first link of a log), so that a change of definition shows."""
    fact = b'{"data":{},"id":"x"}'
    assert chain_hash(GENESIS, 1, fact) == "1adb1d228f07611a756d71eb02977956e28877b92008975a8da1fa93fdcfa388"
    assert fact_digest(fact) == hashlib.sha256(fact).hexdigest()
