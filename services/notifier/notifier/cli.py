"""``notifier``: command line of the notifier service."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer
from pydantic import ValidationError

from coop_runtime.redact import redact_secrets
from notifier.settings import NotifierSettings

__all__ = ["app", "main"]

app = typer.Typer(
    name="notifier",
    help="Tells introducers what they earn, and every party its monthly statement.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> NotifierSettings:
    try:
        return NotifierSettings()
    except ValidationError as exc:
        typer.echo(f"notifier: bad configuration: {redact_secrets(str(exc))}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve() -> None:
    """Run the notifier: consume ledger.out, send alerts by e-mail and webhook, serve
    /metrics, /healthz, /readyz and /status over HTTP."""
    import asyncio

    import structlog

    from coop_runtime.asgi_server import serve_asgi
    from coop_runtime.logs import configure_logging
    from notifier.bootstrap import build_app

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    asgi, _service = build_app(settings)
    logger = structlog.get_logger("notifier")
    logger.info("notifier starting", config=settings.effective())
    if not settings.email_enabled:
        logger.warning("e-mail disabled: set NOTIFIER_SMTP_HOST to send alerts by e-mail")
    if not settings.webhook_enabled:
        logger.warning("webhooks disabled: set NOTIFIER_WEBHOOK_SECRET to send signed webhooks")
    asyncio.run(
        serve_asgi(
            asgi, settings.http_host, settings.http_port, settings.graceful_timeout_s, settings.log_level
        )
    )


@app.command("resend-failed")
def resend_failed(
    alert_id: Annotated[
        str | None, typer.Option(help="Only this alert (ledger event id or digest id).")
    ] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel: email or webhook.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many alerts.")] = 1000,
) -> None:
    """Send failed alerts again (a fresh round of attempts each); prints a JSON summary.
    Alerts that fail again are published to notifier.failed again."""
    import asyncio

    from coop_runtime.logs import configure_logging

    settings = _settings()
    if channel not in (None, "email", "webhook"):
        typer.echo("notifier: --channel is email or webhook", err=True)
        raise typer.Exit(2)
    configure_logging(settings.log_format, settings.log_level)
    summary = asyncio.run(_resend(settings, alert_id, channel, limit))  # type: ignore[arg-type]
    sys.stdout.write(json.dumps(summary) + "\n")
    if summary["failed"]:
        raise typer.Exit(1)


async def _resend(
    settings: NotifierSettings, alert_id: str | None, channel: Literal["email", "webhook"] | None, limit: int
) -> dict[str, int]:
    import nats

    from notifier.adapters.jetstream import NatsFailurePublisher, ensure_failed_stream
    from notifier.bootstrap import build_core

    try:
        nc = await nats.connect(
            settings.nats_url.split(","),
            connect_timeout=5,
            max_reconnect_attempts=3,
            **settings.nats_connect_options(),
        )
    except Exception as exc:
        typer.echo(f"notifier: NATS unreachable at {settings.redacted_nats_url()}: {exc}", err=True)
        raise typer.Exit(2) from None
    js = nc.jetstream()
    core = build_core(settings, NatsFailurePublisher(lambda: js))
    try:
        await ensure_failed_stream(js, settings.duplicate_window_s, settings.stream_replicas)
        return await core.resender.resend_failed(alert_id=alert_id, channel=channel, limit=limit)
    finally:
        await core.close()
        await nc.close()


@app.command()
def status() -> None:
    """Print how many alerts are in each state in the local store (JSON)."""
    from notifier.adapters.store import SqliteAlertStore

    settings = _settings()
    store = SqliteAlertStore(settings.resolved_store_path())
    try:
        sys.stdout.write(json.dumps(store.counts(), sort_keys=True) + "\n")
    finally:
        store.close()


@app.command("webhook-secret")
def webhook_secret(
    party_id: Annotated[str, typer.Argument(help="The party's id (an introducer's by default).")],
    kind: Annotated[
        str, typer.Option(help="The party's kind: introducer, client or adviser.")
    ] = "introducer",
) -> None:
    """Print the key a party uses to verify the notifier's webhook signatures (derived from
    NOTIFIER_WEBHOOK_SECRET; give it to that party only)."""
    from notifier.domain.signature import party_secret

    settings = _settings()
    if kind not in ("introducer", "client", "adviser"):
        typer.echo("notifier: --kind is introducer, client or adviser", err=True)
        raise typer.Exit(2)
    if not settings.webhook_enabled:
        typer.echo("notifier: NOTIFIER_WEBHOOK_SECRET is not set", err=True)
        raise typer.Exit(2)
    typer.echo(party_secret(settings.webhook_secret.get_secret_value(), kind, party_id))


@app.command()
def version() -> None:
    """Print the notifier's version."""
    typer.echo("notifier 0.1.0")


def main() -> None:
    app()
