"""Configuration: safe SMTP defaults, bounded values, no secret in the start-up log."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from coop_runtime.netguard import AllowList
from notifier.settings import NotifierSettings


def test_defaults_start_without_smtp_or_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured, both channels are disabled and said so."""
    for name in ("NOTIFIER_SMTP_HOST", "NOTIFIER_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = NotifierSettings()
    assert not settings.email_enabled and not settings.webhook_enabled
    shown = settings.effective()
    assert shown["email"] == "disabled (NOTIFIER_SMTP_HOST not set)"
    assert settings.consumer_name == "notifier-v1"


def test_smtp_security_auto_is_plain_only_on_loopback() -> None:
    """auto means no TLS on 127.0.0.1/localhost and STARTTLS anywhere else."""
    assert NotifierSettings(smtp_host="127.0.0.1").resolved_smtp_security() == "none"
    assert NotifierSettings(smtp_host="localhost").resolved_smtp_security() == "none"
    assert NotifierSettings(smtp_host="smtp.example.org").resolved_smtp_security() == "starttls"
    with pytest.raises(ValidationError):
        NotifierSettings(smtp_host="smtp.example.org", smtp_security="none")


def test_effective_config_hides_secrets() -> None:
    """The start-up log shows whether secrets are set, never their values."""
    settings = NotifierSettings(
        smtp_host="smtp.example.org",
        smtp_password=SecretStr("hunter2"),
        webhook_secret=SecretStr("s3cret"),
        nats_url="nats://user:pw@127.0.0.1:4222",
    )
    text = str(settings.effective())
    assert "hunter2" not in text and "s3cret" not in text and ":pw@" not in text
    assert settings.effective()["smtp_password_set"] is True


def test_bounds_are_enforced() -> None:
    """Attempts, back-off and in-flight limits are bounded."""
    with pytest.raises(ValidationError):
        NotifierSettings(max_attempts=0)
    with pytest.raises(ValidationError):
        NotifierSettings(backoff_base_s=10, backoff_max_s=1)
    with pytest.raises(ValidationError):
        NotifierSettings(timezone="Mars/Olympus")


def test_webhook_allow_list_is_parsed_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOTIFIER_WEBHOOK_ALLOW_HOSTS is empty by default, read from the environment, and a bad
    entry is a configuration error naming it."""
    monkeypatch.delenv("NOTIFIER_WEBHOOK_ALLOW_HOSTS", raising=False)
    assert NotifierSettings().webhook_allow_list() == AllowList()
    monkeypatch.setenv("NOTIFIER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1, hooks.partner.example,10.20.0.0/16")
    allow = NotifierSettings().webhook_allow_list()
    assert allow.hosts == {"hooks.partner.example"} and len(allow.networks) == 2
    monkeypatch.setenv("NOTIFIER_WEBHOOK_ALLOW_HOSTS", "127.0.0.1,10.0.0.5/8")
    with pytest.raises(ValidationError, match=r"10\.0\.0\.5/8"):
        NotifierSettings()


def test_the_ledger_base_url_is_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """NOTIFIER_LEDGER_URL defaults to the ledger's listener and must be an http(s) URL with a host, no credentials."""
    monkeypatch.delenv("NOTIFIER_LEDGER_URL", raising=False)
    assert NotifierSettings().ledger_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("NOTIFIER_LEDGER_URL", "https://ledger.coop.example/statements")
    assert NotifierSettings().ledger_url == "https://ledger.coop.example/statements"
    for bad in ("ledger:8080", "https://user:pw@ledger.coop.example", "file:///x"):
        monkeypatch.setenv("NOTIFIER_LEDGER_URL", bad)
        with pytest.raises(ValidationError, match="NOTIFIER_LEDGER_URL"):
            NotifierSettings()


def test_configuration_errors_never_print_credentials() -> None:
    """A bad notifier setting is reported without the SMTP password or NATS credentials."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "NATS_URL": "nats://user:s3cr3t-nats@127.0.0.1:4222",
        "NOTIFIER_SMTP_PASSWORD": "s3cr3t-smtp",
        "NOTIFIER_SMTP_PORT": "not-a-port",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "notifier"), "status"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == 2
    assert b"bad configuration" in proc.stderr
    assert b"s3cr3t" not in proc.stderr + proc.stdout
