"""Configuration from environment variables (each one is documented in the README)."""

from __future__ import annotations

import base64
import contextlib
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from coop_runtime.nats_security import NatsClientSecurity
from coop_runtime.netguard import AllowList, parse_allow_list
from coop_runtime.redact import redact_secrets
from ledger.domain.money import is_known_currency

__all__ = ["Settings", "parse_minimums"]


def parse_minimums(text: str) -> dict[str, Decimal]:
    """``CHF=20.00,EUR=20.00`` as amounts by currency (a clear error otherwise)."""
    out: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        currency, sep, amount = item.partition("=")
        currency = currency.strip().upper()
        if not sep or not is_known_currency(currency):
            raise ValueError(f"{item!r}: expected CUR=AMOUNT with an ISO 4217 currency (e.g. CHF=20.00)")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            raise ValueError(f"{item!r}: {amount.strip()!r} is not an amount") from None
        if not value.is_finite() or value < 0 or value > Decimal("1000000"):
            raise ValueError(f"{item!r}: a minimum is between 0 and 1000000")
        out[currency] = value
    return out


class Settings(NatsClientSecurity, BaseSettings):
    """``LEDGER_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    #: Where the fact log lives: ``sqlite:///PATH``, ``postgresql://USER:PASS@HOST:PORT/DB``
    #: or ``memory:`` (lost at exit). Default: a SQLite file under ``LEDGER_DATA_DIR``.
    store_url: str | None = None
    data_dir: Path = Path("var")
    #: libpq's usual variables fill what a ``postgresql://`` store URL leaves out
    #: (``LEDGER_STORE_URL=postgresql://`` takes everything from them).
    pg_host: str | None = Field(default=None, validation_alias="PGHOST")
    pg_port: int | None = Field(default=None, ge=1, le=65535, validation_alias="PGPORT")
    pg_user: str | None = Field(default=None, validation_alias="PGUSER")
    pg_password: SecretStr | None = Field(default=None, validation_alias="PGPASSWORD")
    pg_database: str | None = Field(default=None, validation_alias="PGDATABASE")
    postgres_pool_size: int = Field(default=5, ge=1, le=100)
    postgres_connect_timeout_s: int = Field(default=5, ge=1, le=300)
    #: NATS server URL(s), comma-separated. ``NATS_URL`` is read too.
    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias=AliasChoices("LEDGER_NATS_URL", "NATS_URL")
    )
    #: Copies of each stream the ledger creates (LEDGER_IN, LEDGER_OUT, LEDGER_REJECTED) in a
    #: JetStream cluster: 3 in production (deploy/), 1 on a single server.
    stream_replicas: int = Field(default=1, ge=1, le=5)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    consumer_name: str = "ledger-in-v1"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    fetch_timeout_s: float = Field(default=5.0, gt=0, le=60)
    publish_timeout_s: float = Field(default=10.0, gt=0, le=300)
    ack_wait_s: float = Field(default=30.0, ge=1, le=3600)
    duplicate_window_s: float = Field(default=3600, ge=60, le=7 * 24 * 3600)
    retry_delay_s: float = Field(default=2.0, gt=0, le=300)
    graceful_timeout_s: float = Field(default=15.0, gt=0, le=600)
    checkpoint_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    #: A checkpoint also goes out every this many facts, whatever the interval.
    checkpoint_every_facts: int = Field(default=10_000, ge=1, le=10_000_000)
    #: Compare the stored chain with the last published checkpoint at start-up (turn off
    #: only to restore a store deliberately, e.g. from a backup older than the checkpoint).
    verify_checkpoint: bool = True
    #: Processes that compute report queries (never the store's thread, never this
    #: process's interpreter lock); threads with an in-memory store.
    query_workers: int = Field(default=1, ge=1, le=16)
    #: Queries admitted at once (running or waiting); beyond it HTTP answers 429.
    max_concurrent_queries: int = Field(default=16, ge=1, le=10_000)
    #: A client must send its request headers within this time (slow clients are cut off).
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    metrics_poll_s: float = Field(default=2.0, gt=0, le=300)
    ready_timeout_s: float = Field(default=2.0, gt=0, le=60)
    ready_max_pending: int = Field(default=100_000, ge=0)
    #: Every this many stored facts, a snapshot of the in-memory state is written (in a
    #: forked child) so that a restart reads only the log's tail; 0: no snapshots at all.
    snapshot_every_facts: int = Field(default=100_000, ge=0, le=100_000_000)
    #: Where snapshots are kept (default: beside a SQLite store, else in the data folder).
    snapshot_dir: Path | None = None
    #: A snapshot child still writing after this long is killed (no snapshot this time).
    snapshot_timeout_s: float = Field(default=1800.0, gt=0, le=86_400)
    #: Every this many facts taken into memory, collect the young objects and freeze the
    #: survivors out of the garbage collector's full passes (0: off); see adapters/heap.py.
    heap_freeze_every_facts: int = Field(default=20_000, ge=0, le=10_000_000)
    #: Webhook targets otherwise refused at registration (internal network): host names,
    #: addresses or CIDR networks, comma-separated (coop_runtime.netguard).
    webhook_allow_hosts: str = ""
    #: The ledger's public address: the statements' signed links point there.
    public_url: str = "http://127.0.0.1:8080"
    #: How long a statement link stays valid, counted from the month's close.
    statement_link_ttl_days: int = Field(default=90, ge=1, le=3650)
    #: When set, this token (an auditor's) reads every report and every statement page.
    auditor_token: SecretStr | None = None
    #: When set, report queries (HTTP and NATS) need this token; metrics and health do not.
    query_token: SecretStr | None = None
    #: The smallest payout transfer per currency (``CUR=AMOUNT``, comma-separated): less is
    #: carried over to a later run. A currency not listed has the default, 20.00.
    payout_minimums: str = "CHF=20.00,EUR=20.00"
    #: The cooperative's accounts that pay the runs (one per currency) and the name on them.
    payout_debtor_name: str = ""
    payout_debtor_chf_iban: str | None = None
    payout_debtor_chf_bic: str | None = None
    payout_debtor_eur_iban: str | None = None
    payout_debtor_eur_bic: str | None = None
    #: Master keys wrapping the persons' data keys (personal data is sealed with those):
    #: ``id:base64key,...`` (32-byte keys, newest first; older ones until `ledger keys
    #: rotate` has rewrapped everything). Unset: the key in ``LEDGER_MASTER_KEY_FILE``.
    master_keys: SecretStr | None = None
    #: Where the master key is kept when ``LEDGER_MASTER_KEYS`` is unset (created, mode 0600,
    #: the first time). Default: ``master.key`` under ``LEDGER_DATA_DIR``.
    master_key_file: Path | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _allow_list_parses(cls, value: str) -> str:
        parse_allow_list(value)
        return value

    @field_validator("payout_minimums")
    @classmethod
    def _minimums_parse(cls, value: str) -> str:
        parse_minimums(value)
        return value

    @field_validator("payout_debtor_chf_iban", "payout_debtor_eur_iban")
    @classmethod
    def _debtor_iban(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            return str(IBAN(value).compact)
        except SchwiftyException as exc:
            raise ValueError(f"not a valid IBAN: {type(exc).__name__}") from None

    def payout_minimum_amounts(self) -> dict[str, Decimal]:
        return parse_minimums(self.payout_minimums)

    def payout_debtor(self, currency: str) -> tuple[str, str | None] | None:
        """The cooperative's (IBAN, BIC) paying in ``currency``, or None when not set."""
        iban = {"CHF": self.payout_debtor_chf_iban, "EUR": self.payout_debtor_eur_iban}.get(currency)
        bic = {"CHF": self.payout_debtor_chf_bic, "EUR": self.payout_debtor_eur_bic}.get(currency)
        return None if iban is None else (iban, bic or None)

    def webhook_allow_list(self) -> AllowList:
        return parse_allow_list(self.webhook_allow_hosts)

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'ledger.sqlite3').as_posix()}"

    def snapshot_folder(self) -> Path:
        """Where snapshots are kept: ``LEDGER_SNAPSHOT_DIR``, else beside a SQLite store
        (``ledger.sqlite3.snapshots``: one store, one folder), else ``snapshots`` in the data
        folder."""
        if self.snapshot_dir is not None:
            return self.snapshot_dir
        url = self.resolved_store_url()
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite://").removeprefix("/") + ".snapshots")
        return self.data_dir / "snapshots"

    def eventsourcing_env(self) -> dict[str, str]:
        """The ``eventsourcing`` persistence settings for :meth:`resolved_store_url`."""
        url = self.resolved_store_url()
        scheme = url.split(":", 1)[0]
        if scheme == "memory":
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        if scheme == "sqlite":
            path = url.removeprefix("sqlite://").removeprefix("/") if url.startswith("sqlite:///") else ""
            if not path:
                raise ValueError(f"LEDGER_STORE_URL {url!r}: expected sqlite:///PATH")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": path,
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        if scheme in {"postgresql", "postgres"}:
            parts = urlsplit(url)
            host = parts.hostname or self.pg_host
            dbname = parts.path.strip("/") or self.pg_database
            if not host or not dbname:
                raise ValueError(
                    "LEDGER_STORE_URL: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME "
                    "(or the missing parts in PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)"
                )
            password = unquote(parts.password) if parts.password else None
            if password is None and self.pg_password is not None:
                password = self.pg_password.get_secret_value()
            return {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": dbname,
                "POSTGRES_HOST": host,
                "POSTGRES_PORT": str(parts.port or self.pg_port or 5432),
                "POSTGRES_USER": unquote(parts.username or "") or self.pg_user or "",
                "POSTGRES_PASSWORD": password or "",
                "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
                "POSTGRES_CONNECT_TIMEOUT": str(self.postgres_connect_timeout_s),
            }
        raise ValueError(
            f"LEDGER_STORE_URL {self.redacted_store_url()!r}: unsupported scheme {scheme!r} "
            "(sqlite, postgresql, memory)"
        )

    def master_keys_text(self) -> str:
        """``LEDGER_MASTER_KEYS``, or the key file's content (created when missing); an
        in-memory store gets a key of its own, lost with it."""
        if self.master_keys is not None and self.master_keys.get_secret_value().strip():
            return self.master_keys.get_secret_value()
        if self.resolved_store_url().startswith("memory") and self.master_key_file is None:
            return "memory:" + base64.b64encode(os.urandom(32)).decode()
        path = self.master_key_file or self.data_dir / "master.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = f"local:{base64.b64encode(os.urandom(32)).decode()}\n"
            scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                out.write(fresh)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(scratch, path)
            scratch.unlink()
        return path.read_text().strip()

    def effective(self) -> dict[str, object]:
        """The configuration to log at start-up, secrets hidden."""
        shown = self.model_dump(mode="json")
        shown["store_url"] = self.redacted_store_url()
        shown["query_token"] = "***" if self.query_token is not None else None
        shown["auditor_token"] = "***" if self.auditor_token is not None else None
        shown["nats_password"] = "***" if self.nats_password is not None else None
        shown["pg_password"] = "***" if self.pg_password is not None else None
        shown["master_keys"] = "***" if self.master_keys is not None else None
        shown["nats_url"] = self.redacted_nats_url()
        for field in ("payout_debtor_chf_iban", "payout_debtor_eur_iban"):
            value = getattr(self, field)
            shown[field] = None if value is None else "*" * (len(value) - 4) + value[-4:]
        return shown

    def redacted_store_url(self) -> str:
        """The store URL with any password hidden, for logs."""
        return redact_secrets(self.resolved_store_url())
