"""``notifier``: command line of the notifier service."""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="notifier", help="Alerts introducers of what they earn.", no_args_is_help=True, add_completion=False
)


@app.command()
def version() -> None:
    """Print the notifier's version."""
    typer.echo("notifier 0.1.0")


def main() -> None:
    app()
