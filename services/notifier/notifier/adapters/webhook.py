"""Webhook alerts: an HTTPS POST of a signed JSON body (httpx). Success is any 2xx.

Headers: ``Content-Type: application/json``, ``X-Coop-Signature: t=<unix>,v1=<hex>``
(HMAC-SHA256 with the party's key over ``f"{t}." + body``, see
:mod:`notifier.domain.signature`) and ``X-Coop-Alert-Id``. Redirects are not followed;
the response body is never read. At most ``per_host`` requests run at once per host, so
one slow receiver cannot take every sending slot.

No request goes into the internal network: the URL is checked first
(:func:`coop_runtime.netguard.url_problem`: ``https``, plain ``http`` only to loopback or
with ``NOTIFIER_WEBHOOK_ALLOW_HTTP``, no credentials, no internal name or address), then
every address the host resolves to, on the connection itself
(:class:`notifier.adapters.guarded_network.GuardedBackend`). A refusal is permanent
(``url_refused``) and nothing is connected; ``NOTIFIER_WEBHOOK_ALLOW_HOSTS`` permits
targets otherwise refused.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

import httpcore
import httpx

from coop_runtime.netguard import NO_ALLOW, AllowList, url_problem
from notifier.adapters.guarded_network import (
    AddressRefused,
    GuardedBackend,
    Resolver,
    guarded_transport,
    resolve,
)
from notifier.application.payloads import webhook_body
from notifier.application.ports import Accepted, Delivery, SendFailure
from notifier.domain.signature import ALERT_ID_HEADER, SIGNATURE_HEADER, party_secret, signature_header

__all__ = ["HttpWebhookSender"]

MAX_HOSTS = 1024


class HttpWebhookSender:
    """:class:`notifier.application.ports.Sender` for webhooks."""

    def __init__(
        self,
        *,
        master_secret: str,
        timeout_s: float,
        allow_http: bool,
        per_host: int,
        allow: AllowList = NO_ALLOW,
        resolver: Resolver = resolve,
        network: httpcore.AsyncNetworkBackend | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        assert master_secret, "webhooks need a master secret"
        self._master = master_secret
        self._allow_http = allow_http
        self._allow = allow
        self._per_host = per_host
        self._now = now
        backend = GuardedBackend(allow=allow, resolver=resolver, inner=network)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=32)
        self._client = httpx.AsyncClient(
            transport=guarded_transport(backend, limits),
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "coop-notifier/1"},
        )
        self._hosts: OrderedDict[str, asyncio.Semaphore] = OrderedDict()

    def _slot(self, host: str) -> asyncio.Semaphore:
        slot = self._hosts.get(host)
        if slot is None:
            slot = asyncio.Semaphore(self._per_host)
            self._hosts[host] = slot
            if len(self._hosts) > MAX_HOSTS:  # forget the oldest idle host
                for name, old in list(self._hosts.items()):
                    if not old.locked() and name != host:
                        del self._hosts[name]
                        break
        return slot

    def check_url(self, url: str) -> str:
        """The host of an acceptable webhook URL (static check, nothing resolved); raises a
        permanent :class:`SendFailure` ``url_refused``."""
        problem = url_problem(url, allow=self._allow, allow_http=self._allow_http)
        if problem is not None:
            raise SendFailure("url_refused", problem, permanent=True)
        return urlsplit(url).hostname or ""

    async def send(self, delivery: Delivery, accepted: Accepted) -> None:
        party = delivery.party
        url = party.webhook_url
        assert url, party.key
        host = self.check_url(url)
        body = webhook_body(delivery)
        secret = party_secret(self._master, party.kind, party.party_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body, int(self._now())),
            ALERT_ID_HEADER: delivery.key.alert_id,
        }
        status = 0
        async with self._slot(host):
            try:
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        accepted()  # before closing the response: nothing awaited in between
            except AddressRefused as exc:
                raise SendFailure("url_refused", str(exc), permanent=True) from None
            except httpx.TimeoutException as exc:
                if 200 <= status < 300:
                    return  # accepted; only closing the connection timed out
                raise SendFailure("timeout", f"{type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                if 200 <= status < 300:
                    return
                raise SendFailure("connection", f"{type(exc).__name__}: {exc}"[:300]) from None
        if 200 <= status < 300:
            return
        if status >= 500 or status in {408, 425, 429}:
            raise SendFailure("http_5xx" if status >= 500 else "http_429", f"HTTP {status}")
        raise SendFailure("http_4xx" if status >= 400 else "http_3xx", f"HTTP {status}", permanent=True)

    async def close(self) -> None:
        await self._client.aclose()
