"""Webhook alerts: an HTTPS POST of a signed JSON body (httpx). Success is any 2xx.

Headers: ``Content-Type: application/json``, ``X-Coop-Signature: t=<unix>,v1=<hex>``
(HMAC-SHA256 with the introducer's key over ``f"{t}." + body``, see
:mod:`notifier.domain.signature`) and ``X-Coop-Alert-Id``. Redirects are not followed;
the response body is never read. Plain ``http://`` is refused except to loopback (or when
``NOTIFIER_WEBHOOK_ALLOW_HTTP`` is true). At most ``per_host`` requests run at once per
host, so one slow receiver cannot take every sending slot.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from notifier.application.payloads import webhook_body
from notifier.application.ports import Delivery, SendFailure
from notifier.domain.hosts import is_loopback_host
from notifier.domain.signature import ALERT_ID_HEADER, SIGNATURE_HEADER, introducer_secret, signature_header

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
        now: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        assert master_secret, "webhooks need a master secret"
        self._master = master_secret
        self._allow_http = allow_http
        self._per_host = per_host
        self._now = now
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
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
        """The host of an acceptable webhook URL; raises a permanent :class:`SendFailure`."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in {"https", "http"} or not host:
            raise SendFailure("url_refused", f"not an http(s) URL: {url[:200]}", permanent=True)
        if parts.scheme == "http" and not (self._allow_http or is_loopback_host(host)):
            raise SendFailure("url_refused", "plain http is only allowed to loopback", permanent=True)
        return host

    async def send(self, delivery: Delivery) -> None:
        url = delivery.introducer.webhook_url
        assert url, delivery.introducer.introducer_id
        host = self.check_url(url)
        body = webhook_body(delivery)
        secret = introducer_secret(self._master, delivery.introducer.introducer_id)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body, int(self._now())),
            ALERT_ID_HEADER: delivery.key.alert_id,
        }
        async with self._slot(host):
            try:
                async with self._client.stream("POST", url, content=body, headers=headers) as response:
                    status = response.status_code
            except httpx.TimeoutException as exc:
                raise SendFailure("timeout", f"{type(exc).__name__}") from None
            except httpx.HTTPError as exc:
                raise SendFailure("connection", f"{type(exc).__name__}: {exc}"[:300]) from None
        if 200 <= status < 300:
            return
        if status >= 500 or status in {408, 425, 429}:
            raise SendFailure("http_5xx" if status >= 500 else "http_429", f"HTTP {status}")
        raise SendFailure("http_4xx" if status >= 400 else "http_3xx", f"HTTP {status}", permanent=True)

    async def close(self) -> None:
        await self._client.aclose()
