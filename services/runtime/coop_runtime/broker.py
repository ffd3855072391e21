"""The FastStream NATS broker, built the same way for both services."""

from __future__ import annotations

from faststream.nats import NatsBroker

from coop_runtime.nats_security import NatsClientSecurity

__all__ = ["build_broker", "nats_servers"]


def nats_servers(nats_url: str) -> list[str]:
    """The comma-separated ``NATS_URL`` as a list of server URLs."""
    servers = [url.strip() for url in nats_url.split(",") if url.strip()]
    assert servers, "NATS_URL names no server"
    return servers


def build_broker(settings: NatsClientSecurity, *, name: str, graceful_timeout_s: float) -> NatsBroker:
    """A broker that reconnects forever, with the settings' credentials and TLS; FastStream's
    own logger off (the services log through structlog)."""
    return NatsBroker(
        nats_servers(settings.nats_url),
        max_reconnect_attempts=-1,
        graceful_timeout=graceful_timeout_s,
        name=name,
        logger=None,
        **settings.nats_broker_options(),
    )
