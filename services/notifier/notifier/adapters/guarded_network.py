"""Outgoing webhook connections that cannot reach the internal network.

:class:`GuardedBackend` is an httpcore network backend: for each new connection it resolves
the host once, checks every address with :func:`coop_runtime.netguard.addresses_problem`
(refusing the host if *any* address is refused and not allow-listed), and connects to an
address it checked. Nothing resolves the name again, so a DNS answer that changes between
the check and the connection (DNS rebinding) changes nothing. TLS still uses the URL's host
name: httpcore passes it as SNI and for certificate verification after ``connect_tcp``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from coop_runtime.netguard import AllowList, IPAddress, addresses_problem, host_address

__all__ = ["MAX_ADDRESSES", "AddressRefused", "GuardedBackend", "Resolver", "guarded_transport", "resolve"]

MAX_ADDRESSES = 16

#: ``(host, port) -> addresses``; the default is :func:`resolve` (getaddrinfo off the loop).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class AddressRefused(Exception):
    """The host resolves to an address the guard refuses; nothing was connected."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (an IP literal is itself), from getaddrinfo on the loop's
    executor, in the resolver's order without repeats, at most :data:`MAX_ADDRESSES`."""
    literal = host_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = host_address(str(sockaddr[0]))
        if address is not None and address not in out:
            out.append(address)
    return out[:MAX_ADDRESSES]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve once, check every address, connect to a checked address (module docstring)."""

    def __init__(
        self,
        *,
        allow: AllowList,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow = allow
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host.strip("[]"), port)
        except TimeoutError:
            raise httpcore.ConnectTimeout("name resolution timed out") from None
        except OSError as exc:  # socket.gaierror: no such name, resolver down (transient)
            raise httpcore.ConnectError(f"cannot resolve the host: {exc}") from None
        problem = addresses_problem(addresses, allow=self._allow)
        if problem is not None:
            raise AddressRefused(problem)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(backend: GuardedBackend, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections all go through ``backend``: certificates
    verified, no proxy or certificate settings taken from the environment. (httpx does not
    take a network backend, so its connection pool is replaced by one that has it; the
    tests that deliver through the guard would fail if a new httpx ignored it.)"""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport
