"""The ledger's NATS credential and TLS settings (LEDGER_NATS_*): what they give nats-py and
FastStream, what they refuse, and that the start-up log never shows a secret."""

from __future__ import annotations

import importlib.util
import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from ledger.settings import Settings
from tests.deploy.support import make_certificates


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(os.environ):
        if key.startswith("LEDGER_NATS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_no_credentials_means_no_extra_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without LEDGER_NATS_* credentials or TLS files the connection options are empty (the
    embedded default, a loopback nats-server without authentication, keeps working)."""
    s = settings(monkeypatch)
    assert s.nats_connect_options() == {}
    assert s.nats_broker_options() == {}


def test_user_and_password_reach_nats_py_and_faststream(monkeypatch: pytest.MonkeyPatch) -> None:
    """LEDGER_NATS_USER/PASSWORD become nats.connect's user/password and FastStream's
    NatsUserPassword security."""
    from faststream.nats.security import NatsUserPassword

    s = settings(monkeypatch, LEDGER_NATS_USER="ledger", LEDGER_NATS_PASSWORD="pw-secret-1")
    assert s.nats_connect_options() == {"user": "ledger", "password": "pw-secret-1"}
    security = s.nats_broker_options()["security"]
    assert isinstance(security, NatsUserPassword)
    assert (security.username, security.password) == ("ledger", "pw-secret-1")


def test_effective_configuration_hides_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The configuration logged at start-up shows the user and file paths, never the NATS
    password (nor one in the URL)."""
    ca = tmp_path / "ca.crt"
    ca.write_text("not read here")
    s = settings(
        monkeypatch,
        LEDGER_NATS_USER="ledger",
        LEDGER_NATS_PASSWORD="pw-secret-2",
        LEDGER_NATS_URL="nats://x:url-secret@127.0.0.1:4222",
        LEDGER_NATS_TLS_CA_FILE=str(ca),
    )
    shown = s.effective()
    assert shown["nats_user"] == "ledger"
    assert shown["nats_password"] == "***"
    assert shown["nats_tls_ca_file"] == str(ca)
    assert "pw-secret-2" not in str(shown) and "url-secret" not in str(shown)
    assert "pw-secret-2" not in repr(s)


def test_tls_files_give_a_verifying_context(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A CA file gives an SSLContext that verifies the server (TLS 1.2 or later); with a
    client certificate and key it also presents them (mutual TLS)."""
    certs = make_certificates(tmp_path / "certs")
    s = settings(
        monkeypatch,
        LEDGER_NATS_TLS_CA_FILE=str(certs["ca.crt"]),
        LEDGER_NATS_TLS_CERT_FILE=str(certs["client.crt"]),
        LEDGER_NATS_TLS_KEY_FILE=str(certs["client.key"]),
    )
    context = s.nats_connect_options()["tls"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert s.nats_broker_options()["security"].ssl_context is not None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LEDGER_NATS_USER": "ledger"}, "go together"),
        ({"LEDGER_NATS_PASSWORD": "x"}, "go together"),
        ({"LEDGER_NATS_TLS_CERT_FILE": "{file}"}, "go together"),
        ({"LEDGER_NATS_TLS_CA_FILE": "/nonexistent/ca.crt"}, "no such file"),
        (
            {"LEDGER_NATS_CREDS_FILE": "{file}", "LEDGER_NATS_USER": "a", "LEDGER_NATS_PASSWORD": "b"},
            "choose one",
        ),
    ],
)
def test_inconsistent_settings_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    """Half a credential, a certificate without its key, a missing file or two kinds of
    credentials at once are refused when the settings load (a clear start-up error)."""
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ValidationError, match=message):
        settings(monkeypatch, **{k: v.format(file=file) for k, v in env.items()})


def test_a_creds_file_needs_nkeys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LEDGER_NATS_CREDS_FILE is passed as user_credentials when the nkeys package is
    installed, and refused with the reason when it is not."""
    creds = tmp_path / "ledger.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    if importlib.util.find_spec("nkeys") is None:
        with pytest.raises(ValidationError, match="nkeys"):
            settings(monkeypatch, LEDGER_NATS_CREDS_FILE=str(creds))
    else:
        assert settings(monkeypatch, LEDGER_NATS_CREDS_FILE=str(creds)).nats_connect_options() == {
            "user_credentials": str(creds)
        }
