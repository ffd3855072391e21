"""Configuration from ``NOTIFIER_*`` environment variables (each one is documented in the
README's Notifier section). Validated at start-up; secrets never appear in logs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coop_runtime.nats_security import NatsClientSecurity
from coop_runtime.netguard import AllowList, is_loopback_host, parse_allow_list
from notifier.domain.links import base_problem

__all__ = ["NotifierSettings"]


class NotifierSettings(NatsClientSecurity, BaseSettings):
    """``NOTIFIER_*`` environment variables (``NATS_URL`` is shared with the ledger; NATS
    credentials and TLS are ``NOTIFIER_NATS_USER``/``_PASSWORD``/``_CREDS_FILE``/``_TLS_*``)."""

    model_config = SettingsConfigDict(env_prefix="NOTIFIER_", extra="ignore")

    nats_url: str = Field(
        default="nats://127.0.0.1:4222", validation_alias=AliasChoices("NOTIFIER_NATS_URL", "NATS_URL")
    )
    #: Where the SQLite store (what was sent, the directory, the digest queue) lives.
    data_dir: Path = Path("var")
    store_path: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8081, ge=0, le=65535)

    # consuming LEDGER_OUT ------------------------------------------------------------
    consumer_name: str = Field(default="notifier-v1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    batch_size: int = Field(default=100, ge=1, le=1000)
    fetch_timeout_s: float = Field(default=5.0, gt=0, le=60)
    ack_wait_s: float = Field(default=60.0, ge=1, le=3600)
    max_in_flight: int = Field(default=256, ge=1, le=10_000)
    stream_wait_s: float = Field(default=2.0, gt=0, le=300)
    retry_delay_s: float = Field(default=2.0, gt=0, le=300)
    duplicate_window_s: float = Field(default=3600, ge=60, le=7 * 24 * 3600)
    #: Copies of NOTIFIER_FAILED in a JetStream cluster (3 in production, 1 on one server).
    stream_replicas: int = Field(default=1, ge=1, le=5)

    # e-mail ----------------------------------------------------------------------------
    #: Empty: e-mail is disabled (logged at start-up); alerts go by webhook only.
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    #: ``auto``: none on a loopback host, STARTTLS otherwise. ``none`` is refused off loopback.
    smtp_security: Literal["auto", "starttls", "tls", "none"] = "auto"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = Field(default="Commissions coopérative <commissions@localhost>", min_length=3)
    smtp_timeout_s: float = Field(default=15.0, gt=0, le=300)
    smtp_validate_certs: bool = True

    # webhooks --------------------------------------------------------------------------
    #: Master secret; each introducer's signing key is derived from it. Empty: webhooks disabled.
    webhook_secret: SecretStr = SecretStr("")
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Plain http:// webhooks are allowed to loopback only, unless this is true.
    webhook_allow_http: bool = False
    #: Comma-separated host names, IP addresses and CIDR networks webhooks may reach although
    #: they are internal (loopback, private, link-local, ...): see coop_runtime.netguard.
    webhook_allow_hosts: str = Field(default="", max_length=16_384)
    webhook_per_host: int = Field(default=4, ge=1, le=100)

    # the ledger's statement links ------------------------------------------------------
    #: Base URL of the ledger's statement links: a statement's PDF is fetched (for its e-mail)
    #: only from a ``pdf_url`` under it (same scheme, host and port, path under its path).
    ledger_url: str = Field(default="http://127.0.0.1:8080", max_length=2048)
    #: The base the ledger's links carry (its ``LEDGER_PUBLIC_URL``) when parties reach it at
    #: another address than the notifier does: a ``pdf_url`` must then be under this base,
    #: and is fetched at the same path under ``NOTIFIER_LEDGER_URL``. Empty: the same base.
    ledger_public_url: str = Field(default="", max_length=2048)
    #: Per PDF fetch (one attempt); how many fetches at once (the ledger renders each PDF).
    ledger_timeout_s: float = Field(default=30.0, gt=0, le=300)
    ledger_fetch_concurrency: int = Field(default=4, ge=1, le=64)

    # sending and retries -------------------------------------------------------------
    send_concurrency: int = Field(default=16, ge=1, le=1000)
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_base_s: float = Field(default=1.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=60.0, gt=0, le=3600)
    backoff_jitter: float = Field(default=0.5, ge=0, le=1)

    # daily digest ------------------------------------------------------------------------
    digest_mode: Literal["off", "daily"] = "off"
    #: Comma-separated introducer ids that get a daily digest even when the mode is ``off``.
    digest_introducers: str = ""
    digest_hour: int = Field(default=7, ge=0, le=23)
    timezone: str = "Europe/Zurich"
    digest_check_s: float = Field(default=60.0, gt=0, le=3600)

    # operations --------------------------------------------------------------------------
    ready_max_pending: int = Field(default=10_000, ge=0)
    metrics_poll_s: float = Field(default=5.0, gt=0, le=300)
    graceful_timeout_s: float = Field(default=15.0, gt=0, le=600)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Fault injection for tests only: wait this long between settling a message and acking it.
    ack_delay_s: float = Field(default=0.0, ge=0, le=120)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        parse_allow_list(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("ledger_url")
    @classmethod
    def _ledger_base(cls, value: str) -> str:
        problem = base_problem(value)
        if problem is not None:
            raise ValueError(f"NOTIFIER_LEDGER_URL {problem}")
        return value

    @field_validator("ledger_public_url")
    @classmethod
    def _ledger_public_base(cls, value: str) -> str:
        problem = base_problem(value) if value else None
        if problem is not None:
            raise ValueError(f"NOTIFIER_LEDGER_PUBLIC_URL {problem}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NotifierSettings:
        if self.smtp_host and self.smtp_security == "none" and not is_loopback_host(self.smtp_host):
            raise ValueError("NOTIFIER_SMTP_SECURITY=none is only allowed for a loopback SMTP host")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("NOTIFIER_BACKOFF_MAX_S must be at least NOTIFIER_BACKOFF_BASE_S")
        return self

    # derived values ------------------------------------------------------------------------

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_secret.get_secret_value())

    def resolved_store_path(self) -> Path:
        return self.store_path or self.data_dir / "notifier.sqlite3"

    def resolved_smtp_security(self) -> Literal["starttls", "tls", "none"]:
        if self.smtp_security != "auto":
            return self.smtp_security
        return "none" if is_loopback_host(self.smtp_host) else "starttls"

    def webhook_allow_list(self) -> AllowList:
        return parse_allow_list(self.webhook_allow_hosts)

    def digest_introducer_ids(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.digest_introducers.split(",") if part.strip())

    def effective(self) -> dict[str, object]:
        """The configuration to log at start-up: secrets reduced to whether they are set."""
        shown = self.model_dump(mode="json", exclude={"smtp_password", "webhook_secret", "nats_password"})
        shown["store_path"] = str(self.resolved_store_path())
        shown["nats_url"] = self.redacted_nats_url()
        shown["nats_password_set"] = self.nats_password is not None
        shown["smtp_password_set"] = bool(self.smtp_password.get_secret_value())
        shown["webhook_secret_set"] = self.webhook_enabled
        shown["email"] = (
            f"{self.resolved_smtp_security()}://{self.smtp_host}:{self.smtp_port}"
            if self.email_enabled
            else "disabled (NOTIFIER_SMTP_HOST not set)"
        )
        shown["webhook"] = "enabled" if self.webhook_enabled else "disabled (NOTIFIER_WEBHOOK_SECRET not set)"
        return shown
