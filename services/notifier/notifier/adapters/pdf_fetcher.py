"""Fetching a statement's PDF from the ledger (httpx), for the e-mail that carries it.

The URL is one the ledger published (``pdf_url`` of ``statement.issued``, a signed link).
It is accepted only under the ledger's public base (``NOTIFIER_LEDGER_PUBLIC_URL``, by
default ``NOTIFIER_LEDGER_URL``; :func:`notifier.domain.links.link_problem`: same scheme,
host and port, path under the base's) and fetched at the same path and query under
``NOTIFIER_LEDGER_URL`` (:func:`notifier.domain.links.fetch_url`): the ledger is an internal service, so
this is the one place the notifier reaches into the internal network, and only there.
Redirects are not followed, no proxy or certificate settings come from the environment,
at most ``concurrency`` fetches run at once (the ledger renders each PDF), the body is read
up to :data:`MAX_PDF_BYTES` and must be a PDF.

Failures (:class:`SendFailure`, reasons ``pdf_*``): a refused link, a 4xx other than
408/425/429, a 3xx, a body that is not a PDF or too large are permanent; a timeout, a
connection failure, 408/425/429 and 5xx are transient (retried with the back-off).
"""

from __future__ import annotations

import asyncio

import httpx

from notifier.application.ports import SendFailure
from notifier.domain.links import fetch_url, link_problem

__all__ = ["MAX_PDF_BYTES", "LedgerPdfFetcher"]

MAX_PDF_BYTES = 16 * 1024 * 1024
_PDF_MAGIC = b"%PDF-"


class LedgerPdfFetcher:
    """:class:`notifier.application.ports.AttachmentFetcher` for the ledger's statement PDFs."""

    def __init__(
        self,
        *,
        base_url: str,
        public_base_url: str | None = None,
        timeout_s: float,
        concurrency: int,
        max_bytes: int = MAX_PDF_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.public_base_url = public_base_url or base_url
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"User-Agent": "coop-notifier/1", "Accept": "application/pdf"},
        )

    async def fetch(self, url: str) -> bytes:
        problem = link_problem(url, self.public_base_url)
        if problem is not None:
            raise SendFailure("pdf_refused", f"{problem}: {url[:200]}", permanent=True)
        target = fetch_url(url, self.public_base_url, self.base_url)
        async with self._slots:
            try:
                async with self._client.stream("GET", target) as response:
                    status = response.status_code
                    if 200 <= status < 300:
                        return _pdf(await self._read(response))
            except httpx.TimeoutException as exc:
                raise SendFailure("pdf_timeout", type(exc).__name__) from None
            except httpx.HTTPError as exc:
                raise SendFailure("pdf_connection", f"{type(exc).__name__}: {exc}"[:300]) from None
        if status >= 500 or status in {408, 425, 429}:
            reason = "pdf_http_5xx" if status >= 500 else "pdf_http_429"
            raise SendFailure(reason, f"HTTP {status} for the PDF")
        reason = "pdf_http_4xx" if status >= 400 else "pdf_http_3xx"
        raise SendFailure(reason, f"HTTP {status} for the PDF", permanent=True)

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            detail = f"the PDF is {declared} bytes (at most {self._max_bytes})"
            raise SendFailure("pdf_invalid", detail, permanent=True)
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise SendFailure("pdf_invalid", f"the PDF exceeds {self._max_bytes} bytes", permanent=True)
        return bytes(body)

    async def close(self) -> None:
        await self._client.aclose()


def _pdf(body: bytes) -> bytes:
    if not body.startswith(_PDF_MAGIC):
        raise SendFailure("pdf_invalid", f"not a PDF (starts with {body[:16]!r})", permanent=True)
    return body
