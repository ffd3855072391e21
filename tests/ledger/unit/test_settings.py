"""The ledger's store settings: which event store each LEDGER_STORE_URL selects, libpq's
usual PG* variables filling what a PostgreSQL URL leaves out, clear errors, no secret shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from ledger.settings import Settings
from tests.support.servers import run_cli

PG_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("LEDGER_") or key in PG_VARIABLES:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_default_store_is_a_sqlite_file_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without LEDGER_STORE_URL the store is ledger.sqlite3 in LEDGER_DATA_DIR (created)."""
    env = settings(monkeypatch, LEDGER_DATA_DIR=str(tmp_path / "data")).eventsourcing_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(tmp_path / "data" / "ledger.sqlite3")
    assert (tmp_path / "data").is_dir()


def test_postgresql_url_gives_every_connection_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full postgresql:// URL sets host, port, database, user, (unquoted) password, pool
    size and connect timeout; PG* variables do not override what the URL says."""
    env = settings(
        monkeypatch,
        LEDGER_STORE_URL="postgresql://led%40ger:p%2Fss@db.internal:6543/books",
        LEDGER_POSTGRES_POOL_SIZE="7",
        LEDGER_POSTGRES_CONNECT_TIMEOUT_S="9",
        PGHOST="ignored",
        PGPASSWORD="ignored",
    ).eventsourcing_env()
    assert env == {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "books",
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_USER": "led@ger",
        "POSTGRES_PASSWORD": "p/ss",
        "POSTGRES_POOL_SIZE": "7",
        "POSTGRES_CONNECT_TIMEOUT": "9",
    }


def test_pg_variables_fill_what_the_url_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """LEDGER_STORE_URL=postgresql:// takes host, port, user, password and database from
    libpq's usual variables (how operators often pass a database's coordinates)."""
    env = settings(
        monkeypatch,
        LEDGER_STORE_URL="postgresql://",
        PGHOST="pg.example",
        PGPORT="5433",
        PGUSER="ledger",
        PGPASSWORD="from-env",
        PGDATABASE="ledger_prod",
    ).eventsourcing_env()
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == (
        "pg.example",
        "5433",
        "ledger_prod",
    )
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]) == ("ledger", "from-env")


def test_incomplete_postgresql_settings_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL URL without host or database, and no PG* variable to fill it, is refused
    with a message naming both ways to configure it."""
    with pytest.raises(ValueError, match="PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE"):
        settings(monkeypatch, LEDGER_STORE_URL="postgresql://db.internal").eventsourcing_env()


def test_unknown_scheme_and_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported store scheme names the supported ones; an out-of-range pool size is
    refused at start-up."""
    with pytest.raises(ValueError, match="unsupported scheme 'mysql'"):
        settings(monkeypatch, LEDGER_STORE_URL="mysql://x/y").eventsourcing_env()
    with pytest.raises(ValidationError, match="postgres_pool_size"):
        settings(monkeypatch, LEDGER_POSTGRES_POOL_SIZE="0")


def test_effective_configuration_hides_every_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start-up configuration shows the store URL and PG variables without passwords."""
    shown = settings(
        monkeypatch,
        LEDGER_STORE_URL="postgresql://ledger:url-secret@db:5432/ledger",
        PGPASSWORD="env-secret",
        LEDGER_QUERY_TOKEN="token-secret",
    ).effective()
    text = repr(shown)
    assert "url-secret" not in text and "env-secret" not in text and "token-secret" not in text
    assert shown["store_url"] == "postgresql://ledger:***@db:5432/ledger"
    assert shown["pg_password"] == "***"


@pytest.mark.parametrize(
    "store_url",
    [
        "postgresql+psycopg://user:s3cr3t-pw@db.internal/ledger",
        "mysql://user:s3cr3t-pw@db.internal/ledger",
        "sqlite://user:s3cr3t-pw@/nowhere",
    ],
)
def test_configuration_errors_never_print_credentials(store_url: str) -> None:
    """A mistyped store URL is a clear configuration error that does not show its password,
    whichever command reads it."""
    for command in (["report"], ["ingest", "/dev/null"], ["audit", "verify"]):
        proc = run_cli(*command, env={"LEDGER_STORE_URL": store_url}, check=False)
        assert proc.returncode == 2, proc.stderr
        assert b"configuration error" in proc.stderr or b"cannot use the store" in proc.stderr, proc.stderr
        assert b"s3cr3t" not in proc.stderr + proc.stdout


def test_redaction_hides_passwords_tokens_and_key_values() -> None:
    """Credentials in URLs (password or token) and in key=value strings are hidden."""
    from coop_runtime.redact import redact_secrets

    text = redact_secrets(
        "postgresql://u:pw1@h/db nats://tok2@n:4222 dsn host=h password=pw3 user=u token: tok4"
    )
    for secret in ("pw1", "tok2", "pw3", "tok4"):
        assert secret not in text
    assert "postgresql://u:***@h/db" in text and "host=h" in text
