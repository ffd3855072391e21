"""NATS client credentials and TLS, shared by the ledger's and the notifier's settings.

Each service reads them under its own prefix (``LEDGER_NATS_USER``, ``NOTIFIER_NATS_USER``,
...): user and password, or a ``.creds`` file (JWT + NKey seed), and TLS files. deploy/nats/
gives every role its own user. They are checked at start-up, so a mistake is a configuration
error and not a connection that keeps failing.
"""

from __future__ import annotations

import importlib.util
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr, model_validator

__all__ = ["NatsClientSecurity", "redact_url"]


class NatsClientSecurity(BaseModel):
    """Mixin of a ``BaseSettings``: the NATS credential and TLS fields and what they give
    nats-py and FastStream."""

    #: User and password, or a ``.creds`` file (needs the ``nkeys`` package), never both.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    nats_creds_file: Path | None = None
    #: TLS towards NATS: a CA bundle to verify the server, and a client certificate and key
    #: for mutual TLS. Any of them turns TLS on (use ``tls://`` URLs).
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None

    nats_url: str

    def redacted_nats_url(self) -> str:
        """``nats_url`` for logs: a password (or a token in the user part) hidden."""
        return ",".join(redact_url(url) for url in self.nats_url.split(","))

    def _env_name(self, field: str) -> str:
        prefix = str(self.model_config.get("env_prefix", ""))
        return f"{prefix}{field}".upper()

    @model_validator(mode="after")
    def _check_nats_security(self) -> NatsClientSecurity:
        name = self._env_name
        if self.nats_creds_file is not None:
            if self.nats_user is not None or self.nats_password is not None:
                raise ValueError(f"{name('nats_creds_file')} and {name('nats_user')}/PASSWORD: choose one")
            if importlib.util.find_spec("nkeys") is None:
                raise ValueError(f"{name('nats_creds_file')} needs the nkeys package (nats-py[nkeys])")
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError(f"{name('nats_user')} and {name('nats_password')} go together")
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError(f"{name('nats_tls_cert_file')} and {name('nats_tls_key_file')} go together")
        for field, path in (
            ("nats_creds_file", self.nats_creds_file),
            ("nats_tls_ca_file", self.nats_tls_ca_file),
            ("nats_tls_cert_file", self.nats_tls_cert_file),
            ("nats_tls_key_file", self.nats_tls_key_file),
        ):
            if path is not None and not path.is_file():
                raise ValueError(f"{name(field)} {path}: no such file")
        return self

    def nats_connect_options(self) -> dict[str, Any]:
        """Credentials and TLS as keyword arguments of nats-py's ``nats.connect``
        (``user``, ``password``, ``user_credentials``, ``tls``); empty when none are set."""
        options: dict[str, Any] = {}
        if self.nats_creds_file is not None:
            options["user_credentials"] = str(self.nats_creds_file)
        elif self.nats_user is not None and self.nats_password is not None:
            options["user"] = self.nats_user
            options["password"] = self.nats_password.get_secret_value()
        context = self.nats_tls_context()
        if context is not None:
            options["tls"] = context
        return options

    def nats_broker_options(self) -> dict[str, Any]:
        """The same for FastStream's ``NatsBroker``, which takes credentials and TLS as one
        ``security`` object (it has no ``user``/``password``/``tls`` arguments)."""
        options = self.nats_connect_options()
        if not options:
            return {}
        from faststream.nats.security import NatsCredentials, NatsSecurity, NatsUserPassword

        tls: ssl.SSLContext | None = options.get("tls")
        security: NatsSecurity
        if "user_credentials" in options:
            security = NatsCredentials.from_file(options["user_credentials"], ssl_context=tls)
        elif "user" in options:
            security = NatsUserPassword(options["user"], options["password"], ssl_context=tls)
        else:
            security = NatsSecurity(ssl_context=tls)
        return {"security": security}

    def nats_tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context (server certificate verified, TLS 1.2 or later) when any TLS
        file is set: the CA bundle, and the client certificate and key for mutual TLS."""
        if not (self.nats_tls_ca_file or self.nats_tls_cert_file):
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(self.nats_tls_ca_file) if self.nats_tls_ca_file else None,
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.nats_tls_cert_file is not None and self.nats_tls_key_file is not None:
            context.load_cert_chain(str(self.nats_tls_cert_file), str(self.nats_tls_key_file))
        return context


def redact_url(url: str) -> str:
    """``url`` for logs and messages: a password (or a token in the user part) hidden."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    if parts.username:  # a token in the user part
        return url.replace(f"{parts.username}@", "***@")
    return url
