"""Where a service may send requests it is told to send (webhooks): the public internet, not
the internal network. Pure functions; nothing here resolves or connects.

Three checks, each returning a readable reason or None:

- :func:`url_problem`, a static check of a URL, usable at registration: ``https`` (plain
  ``http`` only to loopback, or anywhere when the caller allows http), no user name or
  password, a host that is neither an IP literal in a refused range nor an internal name.
- :func:`address_problem`, the check of one resolved address (the caller resolves once,
  checks every address, and connects to an address it checked).
- :func:`parse_allow_list` builds the :class:`AllowList` an operator sets to permit
  targets otherwise refused.

Refused names: single-label names (``metadata``, ``instance-data``, ``intranet``: resolved
through the local search domains), ``localhost`` and ``*.localhost`` (RFC 6761), and the
suffixes in :data:`INTERNAL_SUFFIXES` (``.internal`` is reserved for private use and holds
``metadata.google.internal``; ``.local`` is multicast DNS; ``.home.arpa`` home networks;
``.localdomain``). Refused addresses: :data:`REFUSED_V4` and :data:`REFUSED_V6` (loopback,
RFC 1918, link-local with the cloud metadata address 169.254.169.254, CGNAT 100.64.0.0/10,
unique-local fc00::/7, multicast, unspecified, reserved, documentation, benchmarking), the
same addresses written as IPv4-mapped IPv6, embedded in 6to4, Teredo or NAT64, and anything
else the standard library does not call global. An IPv4 host written in a legacy form
(``127.1``, ``0x7f.0.0.1``, ``2130706433``) is read as the address it means.

The allow-list is explicit on both levels: a host name entry lets that *name* pass the name
check; an address or CIDR network entry lets those *addresses* pass the address check. A
URL to ``http://localhost:8080`` with the receiver on 127.0.0.1 therefore needs
``localhost`` and ``127.0.0.1`` (and ``::1`` if ``localhost`` also resolves to it); a URL to
``http://127.0.0.1:8080`` needs ``127.0.0.1`` only. A user name or password in a URL is
refused even for an allow-listed host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "INTERNAL_SUFFIXES",
    "MAX_ALLOW_ENTRIES",
    "MAX_URL_CHARS",
    "NO_ALLOW",
    "REFUSED_V4",
    "REFUSED_V6",
    "AllowList",
    "IPAddress",
    "IPNetwork",
    "address_problem",
    "addresses_problem",
    "host_address",
    "is_loopback_host",
    "normalize_host",
    "parse_allow_list",
    "url_problem",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_CHARS = 2048
MAX_ALLOW_ENTRIES = 256
MAX_HOST_CHARS = 253

#: Name suffixes that never name a public host.
INTERNAL_SUFFIXES = ("localhost", "internal", "local", "localdomain", "home.arpa")

REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified (this network)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved (and broadcast)"),
    )
)

REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NUMBER = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_SEPARATORS = re.compile(r"[,\s]+")


@dataclass(frozen=True, slots=True)
class AllowList:
    """Targets permitted although the checks would refuse them: host names (exact, lower
    case, no trailing dot) and networks (a single address is a /32 or /128)."""

    hosts: frozenset[str] = frozenset()
    networks: frozenset[IPNetwork] = frozenset()

    def permits_host(self, host: str) -> bool:
        return normalize_host(host) in self.hosts

    def permits_address(self, address: IPAddress) -> bool:
        plain = _without_scope(address)
        candidates = [plain]
        if isinstance(plain, ipaddress.IPv6Address) and plain.ipv4_mapped is not None:
            candidates.append(plain.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if net.version == a.version)

    def __str__(self) -> str:
        return ",".join(sorted(self.hosts) + sorted(str(n) for n in self.networks))


NO_ALLOW = AllowList()


def normalize_host(host: str) -> str:
    """Lower case, without IPv6 brackets and without a trailing dot."""
    return host.strip().strip("[]").lower().rstrip(".")


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (traffic that never leaves the host)."""
    bare = normalize_host(host)
    if bare == "localhost":
        return True
    address = host_address(bare)
    return address is not None and _without_scope(address).is_loopback


def host_address(host: str) -> IPAddress | None:
    """The address a URL host stands for when it is an IP literal, else None. An IPv4 host
    in a legacy form (``127.1``, ``0x7f.1``, ``2130706433``, octal parts) is read the way
    browsers and ``inet_aton`` read it (WHATWG URL standard)."""
    bare = normalize_host(host)
    if ":" in bare:
        try:
            return ipaddress.IPv6Address(bare)
        except ValueError:
            return None
    if not _ends_in_number(bare):
        return None
    return _legacy_ipv4(bare)


def address_problem(address: IPAddress, *, allow: AllowList) -> str | None:
    """Why ``address`` may not be connected to, or None (public, or allow-listed)."""
    if allow.permits_address(address):
        return None
    return _refused(_without_scope(address))


def addresses_problem(addresses: Iterable[IPAddress], *, allow: AllowList) -> str | None:
    """Why a host resolving to ``addresses`` may not be connected to: the first refused
    address, or none at all; None when every address passes."""
    seen = False
    for address in addresses:
        seen = True
        problem = address_problem(address, allow=allow)
        if problem is not None:
            return f"resolves to {problem}"
    return None if seen else "resolves to no address"


def url_problem(url: str, *, allow: AllowList, allow_http: bool) -> str | None:
    """Why a request must not be sent to ``url``, or None. Static: no name is resolved (a
    name that passes must still have its addresses checked with :func:`address_problem`
    when connecting). ``allow_http`` permits plain ``http`` to any host; without it plain
    ``http`` is only for loopback (which itself must be allow-listed)."""
    parts, problem = _split(url)
    if problem is not None:
        return problem
    assert parts is not None
    host = parts.hostname or ""
    if parts.scheme.lower() == "http" and not (allow_http or is_loopback_host(host)):
        return "plain http is only allowed to loopback"
    address = host_address(host)
    if address is not None:
        return address_problem(address, allow=allow)
    if ":" in host or _ends_in_number(normalize_host(host)):
        return "host is not a valid IP address"
    return _name_problem(normalize_host(host), allow)


def _split(url: str) -> tuple[SplitResult | None, str | None]:
    """The URL's parts, or why it is not a usable http(s) URL with a host and no credentials."""
    problem = None
    parts = None
    if len(url) > MAX_URL_CHARS:
        problem = f"longer than {MAX_URL_CHARS} characters"
    elif any(c <= " " or c == "\x7f" for c in url):
        problem = "contains spaces or control characters"
    else:
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError as exc:
            return None, f"not a valid URL ({exc})"
        if parts.scheme.lower() not in {"https", "http"}:
            problem = "not an http(s) URL"
        elif "@" in parts.netloc:
            problem = "user name or password in the URL"
        elif not parts.hostname:
            problem = "no host"
    return (None, problem) if problem is not None else (parts, None)


def parse_allow_list(text: str) -> AllowList:
    """An allow-list from comma- (or space-) separated entries: host names, IP addresses and
    CIDR networks (``hooks.partner.example``, ``127.0.0.1``, ``::1``, ``10.20.0.0/16``).
    Raises ValueError naming the first bad entry."""
    entries = [e for e in _SEPARATORS.split(text.strip()) if e]
    if len(entries) > MAX_ALLOW_ENTRIES:
        raise ValueError(f"allow-list has {len(entries)} entries, at most {MAX_ALLOW_ENTRIES}")
    hosts: set[str] = set()
    networks: set[IPNetwork] = set()
    for entry in entries:
        bare = normalize_host(entry)
        if "://" in bare:
            raise ValueError(f"allow-list entry {entry!r}: a bare host, address or network (no scheme)")
        if "/" in bare:
            try:
                networks.add(ipaddress.ip_network(bare, strict=True))
            except ValueError as exc:
                raise ValueError(f"allow-list entry {entry!r}: not a CIDR network ({exc})") from None
            continue
        try:
            networks.add(ipaddress.ip_network(bare))
            continue
        except ValueError:
            pass
        if ":" in bare:
            raise ValueError(f"allow-list entry {entry!r}: a bare host, address or network (no port)")
        if _ends_in_number(bare):
            raise ValueError(f"allow-list entry {entry!r}: not an IP address in dotted-quad form")
        if len(bare) > MAX_HOST_CHARS or not _HOST_NAME.match(bare):
            raise ValueError(f"allow-list entry {entry!r}: not a host name, IP address or CIDR network")
        hosts.add(bare)
    return AllowList(frozenset(hosts), frozenset(networks))


# internals -------------------------------------------------------------------------------


def _name_problem(name: str, allow: AllowList) -> str | None:
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return "host is not a valid name"
    if len(ascii_name) > MAX_HOST_CHARS or not _HOST_NAME.match(ascii_name):
        return "host is not a valid name"
    if allow.permits_host(ascii_name) or allow.permits_host(name):
        return None
    for suffix in INTERNAL_SUFFIXES:
        if ascii_name == suffix or ascii_name.endswith("." + suffix):
            return f"host is an internal name ({suffix})"
    if "." not in ascii_name:
        return "host is a single-label name (resolved through local search domains)"
    return None


def _refused(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv4Address):
        for net4, why in REFUSED_V4:
            if address in net4:
                return f"{address}: {why}"
        return None if address.is_global else f"{address}: not a public address"
    embedded = _embedded_v4(address)
    for v4, how in embedded:
        problem = _refused(v4)
        if problem is not None:
            return f"{address}: {how} {problem}"
    for net6, why in REFUSED_V6:
        if address in net6:
            return f"{address}: {why}"
    if address.ipv4_mapped is not None or address in _NAT64:
        return None  # the embedded IPv4 address is public
    return None if address.is_global else f"{address}: not a public address"


def _embedded_v4(address: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    """IPv4 addresses an IPv6 address leads to: mapped, 6to4, Teredo (server and client), NAT64."""
    out: list[tuple[ipaddress.IPv4Address, str]] = []
    if address.ipv4_mapped is not None:
        out.append((address.ipv4_mapped, "IPv4-mapped"))
    if address.sixtofour is not None:
        out.append((address.sixtofour, "6to4 of"))
    if address.teredo is not None:
        server, client = address.teredo
        out += [(server, "Teredo server"), (client, "Teredo client")]
    if address in _NAT64:
        out.append((ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64 of"))
    return out


def _without_scope(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address


def _ends_in_number(host: str) -> bool:
    """WHATWG: a host whose last label is a number is an IPv4 address (or invalid)."""
    labels = host.split(".")
    if labels and labels[-1] == "" and len(labels) > 1:
        labels.pop()
    return bool(labels) and bool(_NUMBER.match(labels[-1]))


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser: 1 to 4 parts, each decimal, ``0x`` hex or ``0`` octal; the
    last part fills the remaining bytes. None when it is not a valid address."""
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                numbers.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part, 8))
            else:
                numbers.append(int(part, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)
