"""Configuration from environment variables (each one is documented in the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """``LEDGER_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    #: Where the fact log lives: ``sqlite:///PATH``, ``postgresql://USER:PASS@HOST:PORT/DB``
    #: or ``memory:`` (lost at exit). Default: a SQLite file under ``LEDGER_DATA_DIR``.
    store_url: str | None = None
    data_dir: Path = Path("var")
    postgres_pool_size: int = Field(default=5, ge=1, le=100)
    postgres_connect_timeout_s: int = Field(default=5, ge=1, le=300)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'ledger.sqlite3').as_posix()}"

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
            if not parts.hostname or not parts.path.strip("/"):
                raise ValueError("LEDGER_STORE_URL: expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
            return {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": parts.path.strip("/"),
                "POSTGRES_HOST": parts.hostname,
                "POSTGRES_PORT": str(parts.port or 5432),
                "POSTGRES_USER": unquote(parts.username or ""),
                "POSTGRES_PASSWORD": unquote(parts.password or ""),
                "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
                "POSTGRES_CONNECT_TIMEOUT": str(self.postgres_connect_timeout_s),
            }
        raise ValueError(
            f"LEDGER_STORE_URL {url!r}: unsupported scheme {scheme!r} (sqlite, postgresql, memory)"
        )

    def redacted_store_url(self) -> str:
        """The store URL with any password hidden, for logs."""
        url = self.resolved_store_url()
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@")
        return url
