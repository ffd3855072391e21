"""Per-person data keys, wrapped by a master key from configuration (AES-256-GCM, from
``cryptography``).

Each person (``introducer/int-1``) gets a random 256-bit data key the first time a fact
with their personal data is stored. The store keeps it wrapped (encrypted) by the current
master key, tagged with that key's id; the master keys themselves are only in the
configuration (``LEDGER_MASTER_KEYS``, newest first). Erasing a person deletes their
wrapped key: their sealed fields can never be opened again, by anyone, from the store or
any backup of it (once the master keys of the time are retired, not even a backup's copy of
the wrapped key opens). Rotation rewraps every data key with the newest master key; the
old one can then be dropped from the configuration.
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.application.ports import FactStore
from ledger.application.sealing import TOKEN_PREFIX, token_owner
from ledger.domain.personal import PartyRef

__all__ = ["CHECK_OWNER", "AesGcmKeyring", "KeyringError", "MasterKeys", "generate_master_key"]

NONCE_BYTES = 12
KEY_BYTES = 32
#: Most master keys configured at once (the current one and those being retired).
MAX_MASTER_KEYS = 8
#: Most data keys kept opened in memory (a person's key is opened once, then reused).
MAX_CACHED_KEYS = 100_000
_MASTER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
#: The owner of a data key that belongs to nobody: made with the first person's key and
#: never erased, it lets a wrong master key be caught even once every person is erased.
#: (A person's owner is ``kind/id``; this name has no slash, so it cannot be one.)
CHECK_OWNER = "~master-check"


class KeyringError(Exception):
    """The master keys do not fit this store (missing or wrong key), or are malformed."""


def generate_master_key() -> str:
    """A fresh master key, as ``LEDGER_MASTER_KEYS`` takes it (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


@dataclass(frozen=True)
class MasterKeys:
    """The configured master keys, newest first: ``id:base64key,id:base64key``."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def parse(cls, text: str) -> MasterKeys:
        """Parse ``LEDGER_MASTER_KEYS``; the error names the entry, never shows a key."""
        entries = [entry.strip() for entry in text.split(",") if entry.strip()]
        if not entries:
            raise KeyringError("LEDGER_MASTER_KEYS is empty: give id:base64key (32 bytes), newest first")
        if len(entries) > MAX_MASTER_KEYS:
            raise KeyringError(f"LEDGER_MASTER_KEYS has {len(entries)} keys, at most {MAX_MASTER_KEYS}")
        keys: list[tuple[str, bytes]] = []
        for number, entry in enumerate(entries, start=1):
            master_id, sep, encoded = entry.partition(":")
            if not sep or _MASTER_ID.fullmatch(master_id) is None:
                raise KeyringError(
                    f"LEDGER_MASTER_KEYS entry {number} must be id:base64key "
                    "with an id of letters, digits, . _ -"
                )
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                raise KeyringError(f"LEDGER_MASTER_KEYS key {master_id!r} is not base64") from None
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"LEDGER_MASTER_KEYS key {master_id!r} is {len(key)} bytes, not {KEY_BYTES} "
                    "(make one with `ledger keys generate`)"
                )
            if any(known == master_id for known, _ in keys):
                raise KeyringError(f"LEDGER_MASTER_KEYS names key {master_id!r} twice")
            keys.append((master_id, key))
        return cls(tuple(keys))

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def key(self, master_id: str) -> bytes | None:
        return next((key for known, key in self.keys if known == master_id), None)

    def derived_key(self, purpose: str) -> bytes:
        """A key for ``purpose`` (e.g. the snapshots' MAC) derived from the newest master key
        (HKDF-SHA256): held by no store, changed by a rotation."""
        assert purpose and purpose.isascii(), purpose
        info = f"coop-ledger/{purpose}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(self.keys[0][1])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AesGcmKeyring:
    """:class:`~ledger.application.sealing.Keyring` with data keys in the store."""

    def __init__(self, store: FactStore, masters: MasterKeys) -> None:
        self._store = store
        self._masters = masters
        self._opened: dict[PartyRef, bytes] = {}
        self._lock = threading.Lock()
        self._has_check_key = False

    # -- master keys ---------------------------------------------------------------------

    def check(self) -> int:
        """Fail clearly (:class:`KeyringError`) when a data key in the store is wrapped by a
        master key that is not configured, or that does not open it (a wrong key). Returns
        how many people's data keys the store holds (the check key not counted)."""
        owners = self._store.data_key_owners()
        tried: set[str] = set()
        for owner, master_id in owners:
            if master_id in tried:
                continue
            if self._masters.key(master_id) is None:
                held = ", ".join(repr(i) for i, _ in self._masters.keys)
                raise KeyringError(
                    f"the store's data keys are wrapped by master key {master_id!r}, which "
                    f"LEDGER_MASTER_KEYS does not hold (it holds {held})"
                )
            self._unwrap(owner, master_id)
            tried.add(master_id)
        return sum(1 for owner, _ in owners if owner != CHECK_OWNER)

    def people_keys(self) -> list[tuple[str, str]]:
        """``(owner, master key id)`` of every person's data key (the check key left out)."""
        return [
            (owner, master_id) for owner, master_id in self._store.data_key_owners() if owner != CHECK_OWNER
        ]

    def rotate(self) -> int:
        """Rewrap every data key not wrapped by the current master key; how many people's
        were (the check key is rewrapped too, not counted)."""
        current = self._masters.current_id
        count = 0
        for owner, master_id in self._store.data_key_owners():
            if master_id == current:
                continue
            key = self._unwrap(owner, master_id)
            rewrapped = self._store.rewrap_data_key(owner, master_id, current, self._wrap(owner, key))
            if rewrapped and owner != CHECK_OWNER:
                count += 1
        return count

    def _wrap(self, owner: str, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        master = self._masters.keys[0][1]
        return nonce + AESGCM(master).encrypt(nonce, key, owner.encode())

    def _unwrap(self, owner: str, master_id: str, wrapped: bytes | None = None) -> bytes:
        master = self._masters.key(master_id)
        if master is None:
            raise KeyringError(f"master key {master_id!r} (wrapping {owner}'s data key) is not configured")
        if wrapped is None:
            stored = self._store.data_key(owner)
            if stored is None:
                raise KeyringError(f"{owner}'s data key disappeared while being read")
            wrapped = stored[1]
        try:
            return AESGCM(master).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], owner.encode())
        except InvalidTag:
            raise KeyringError(
                f"LEDGER_MASTER_KEYS key {master_id!r} does not open this store's data keys: "
                "it is not the key they were wrapped with"
            ) from None

    # -- data keys -----------------------------------------------------------------------

    def _data_key(self, owner: PartyRef, create: bool) -> bytes | None:
        with self._lock:
            opened = self._opened.get(owner)
        if opened is not None:
            return opened
        name = str(owner)
        stored = self._store.data_key(name)
        if stored is None:
            if not create:
                return None
            self._ensure_check_key()
            fresh = os.urandom(KEY_BYTES)
            stored = self._store.add_data_key(name, self._masters.current_id, self._wrap(name, fresh))
        key = self._unwrap(name, stored[0], stored[1])
        with self._lock:
            if len(self._opened) >= MAX_CACHED_KEYS:
                self._opened.clear()
            self._opened[owner] = key
        return key

    def _ensure_check_key(self) -> None:
        """Make the check key (:data:`CHECK_OWNER`) if the store has none; read once."""
        if not self._has_check_key:
            if self._store.data_key(CHECK_OWNER) is None:
                check = os.urandom(KEY_BYTES)
                self._store.add_data_key(
                    CHECK_OWNER, self._masters.current_id, self._wrap(CHECK_OWNER, check)
                )
            self._has_check_key = True

    def preload(self, owners: Iterable[PartyRef]) -> None:
        wanted = {str(owner): owner for owner in owners}
        if not wanted:
            return
        opened: dict[PartyRef, bytes] = {}
        for name, master_id, wrapped in self._store.data_keys():
            owner = wanted.get(name)
            if owner is not None:
                opened[owner] = self._unwrap(name, master_id, wrapped)
        with self._lock:
            if len(self._opened) + len(opened) > MAX_CACHED_KEYS:
                self._opened.clear()
            self._opened.update(list(opened.items())[:MAX_CACHED_KEYS])

    def derived_key(self, purpose: str) -> bytes:
        """:meth:`MasterKeys.derived_key` of the configured master keys."""
        return self._masters.derived_key(purpose)

    def has_key(self, owner: PartyRef) -> bool:
        return self._data_key(owner, create=False) is not None

    def seal(self, owner: PartyRef, field: str, plaintext: str) -> str:
        key = self._data_key(owner, create=True)
        assert key is not None, owner
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), f"{owner}|{field}".encode())
        return f"{TOKEN_PREFIX}{owner.kind}:{owner.party_id}:{_b64(nonce + sealed)}"

    def open(self, token: str, field: str) -> str | None:
        owner = token_owner(token)
        if owner is None:
            return None
        key = self._data_key(owner, create=False)
        if key is None:
            return None
        blob = _unb64(token.rpartition(":")[2])
        try:
            return (
                AESGCM(key)
                .decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], f"{owner}|{field}".encode())
                .decode()
            )
        except InvalidTag:
            raise KeyringError(
                f"a sealed {field} of {owner} does not open with their data key (altered?)"
            ) from None

    def forget(self, owner: PartyRef) -> bool:
        with self._lock:
            self._opened.pop(owner, None)
        return self._store.delete_data_key(str(owner))
