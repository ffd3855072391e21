"""Links the ledger publishes (a statement's page and PDF) and the one base the notifier
fetches from: a PDF is fetched only from a URL under ``NOTIFIER_LEDGER_URL`` (same scheme,
host and port, path under the base's path), never from wherever an event points. Pure."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["base_problem", "fetch_url", "link_problem"]

MAX_URL_CHARS = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def base_problem(base: str) -> str | None:
    """Why ``base`` cannot be the ledger's base URL, or None."""
    parts = urlsplit(base)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not hold a user name or password"
    if parts.query or parts.fragment:
        return "must not hold a query or a fragment"
    if _port(parts) is None:
        return "has an invalid port"
    return None


def link_problem(url: str, base: str) -> str | None:
    """Why the notifier must not fetch ``url`` given the ledger's ``base``, or None: another
    scheme, host or port, a path outside the base's, credentials, dot segments, a fragment."""
    if len(url) > MAX_URL_CHARS or any(ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in url):
        return "URL too long, or holding spaces or control characters"
    parts, home = urlsplit(url), urlsplit(base)
    prefix = home.path if home.path.endswith("/") else home.path + "/"
    path = unquote(parts.path)
    checks = (
        (parts.username is not None or parts.password is not None, "URL holds a user name or password"),
        (bool(parts.fragment), "URL holds a fragment"),
        (
            (parts.scheme, parts.hostname, _port(parts)) != (home.scheme, home.hostname, _port(home)),
            f"not on the ledger ({home.scheme}://{home.netloc})",
        ),
        (not parts.path.startswith(prefix), f"path outside {prefix}"),
        (any(s in {".", ".."} for s in path.split("/")) or "\\" in path, "path holds dot segments"),
    )
    return next((problem for failed, problem in checks if failed), None)


def fetch_url(url: str, public_base: str, internal_base: str) -> str:
    """Where to fetch ``url`` (a link under ``public_base``, as parties get it) from inside:
    the same path below ``internal_base``, and the same query (the signature). Call it
    only for a URL :func:`link_problem` accepts for ``public_base``."""
    parts, public, internal = urlsplit(url), urlsplit(public_base), urlsplit(internal_base)
    prefix = public.path if public.path.endswith("/") else public.path + "/"
    assert parts.path.startswith(prefix), (parts.path, prefix)
    target = internal.path.rstrip("/") + "/" + parts.path[len(prefix) :]
    return internal._replace(path=target, query=parts.query, fragment="").geturl()
