"""coop_runtime.netguard: which webhook targets are refused, and what the allow-list permits
(table-driven, plus properties over whole refused ranges)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coop_runtime.netguard import (
    NO_ALLOW,
    REFUSED_V4,
    REFUSED_V6,
    AllowList,
    address_problem,
    addresses_problem,
    host_address,
    is_loopback_host,
    parse_allow_list,
    url_problem,
)

HOSTILE = [
    # (url, allow_http, words the reason must contain)
    ("https://10.0.0.5", False, "private"),
    ("https://192.168.1.1", False, "private"),
    ("https://172.16.3.4/hook", False, "private"),
    ("https://169.254.169.254/latest/meta-data/", False, "link-local"),
    ("https://[fd00::1]", False, "unique-local"),
    ("https://100.64.0.1", False, "CGNAT"),
    ("https://100.100.100.200/latest/meta-data/", False, "CGNAT"),
    ("https://metadata.google.internal/", False, "internal name (internal)"),
    ("https://instance-data.ec2.internal/", False, "internal name (internal)"),
    ("https://localhost:6443", False, "internal name (localhost)"),
    ("https://api.localhost/", False, "internal name (localhost)"),
    ("https://printer.local/", False, "internal name (local)"),
    ("https://router.home.arpa/", False, "internal name (home.arpa)"),
    ("https://metadata/computeMetadata/v1/", False, "single-label"),
    ("https://instance-data/latest/", False, "single-label"),
    ("http://169.254.169.254", True, "link-local"),
    ("http://169.254.169.254", False, "plain http"),
    ("http://hooks.example.org/x", False, "plain http"),
    ("https://user:pw@hooks.example.org/", False, "user name or password"),
    ("https://token@hooks.example.org/", False, "user name or password"),
    ("https://127.0.0.1:8443/", False, "loopback"),
    ("https://127.1/", False, "loopback"),
    ("https://2130706433/", False, "loopback"),
    ("https://0x7f.0.0.1/", False, "loopback"),
    ("https://0177.0.0.1/", False, "loopback"),
    ("https://[::1]:8443/", False, "loopback"),
    ("https://[::ffff:10.0.0.5]/", False, "IPv4-mapped 10.0.0.5: private"),
    ("https://[::ffff:a9fe:a9fe]/", False, "IPv4-mapped 169.254.169.254"),
    ("https://[2002:c0a8:0101::1]/", False, "6to4 of 192.168.1.1"),
    ("https://[64:ff9b::a00:5]/", False, "NAT64 of 10.0.0.5"),
    ("https://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/", False, "Teredo client 10.0.0.1"),
    ("https://[fe80::1%25eth0]/", False, "link-local"),
    ("https://0.0.0.0/", False, "unspecified"),
    ("https://[::]/", False, "unspecified"),
    ("https://224.0.0.1/", False, "multicast"),
    ("https://[ff02::1]/", False, "multicast"),
    ("https://255.255.255.255/", False, "reserved"),
    ("https://192.0.2.10/", False, "documentation"),
    ("https://256.1.1.1/", False, "not a valid IP address"),
    ("https://example.123/", False, "not a valid IP address"),
    ("ftp://hooks.example.org/", False, "not an http(s) URL"),
    ("https:///hook", False, "no host"),
    ("https://hooks.example.org:99999/", False, "not a valid URL"),
    ("https://hooks example.org/", False, "spaces or control characters"),
    ("https://hooks.example.org/" + "a" * 3000, False, "longer than"),
]

PUBLIC = [
    ("https://hooks.example.org/coop", False),
    ("https://HOOKS.Example.ORG./coop", False),
    ("https://8.8.8.8/x", False),
    ("https://[2606:4700:4700::1111]/x", False),
    ("https://[::ffff:8.8.8.8]/x", False),
    ("https://bücher.example/x", False),
    ("http://hooks.example.org/x", True),
]


@pytest.mark.parametrize(("url", "allow_http", "reason"), HOSTILE)
def test_hostile_urls_are_refused_with_a_readable_reason(url: str, allow_http: bool, reason: str) -> None:
    """Each internal, credentialed or malformed URL is refused, and the reason says why."""
    problem = url_problem(url, allow=NO_ALLOW, allow_http=allow_http)
    assert problem is not None and reason in problem, problem


@pytest.mark.parametrize(("url", "allow_http"), PUBLIC)
def test_public_urls_pass(url: str, allow_http: bool) -> None:
    """An https URL to a public name or address passes (plain http only with the switch)."""
    assert url_problem(url, allow=NO_ALLOW, allow_http=allow_http) is None


@pytest.mark.parametrize(
    ("url", "allow", "expected"),
    [
        ("http://127.0.0.1:8080/h", "127.0.0.1", None),
        ("https://localhost:6443", "localhost", None),
        ("https://10.0.0.5/h", "10.0.0.0/8", None),
        ("https://[fd00::1]/h", "fd00::/8", None),
        ("https://metadata.google.internal/", "metadata.google.internal", None),
        ("https://metadata/", "metadata", None),
        ("https://[::ffff:127.0.0.1]/", "127.0.0.1", None),
        # an address entry does not lift a name refusal, nor a name entry an address one
        ("https://localhost:6443", "127.0.0.1", "internal name"),
        ("https://127.0.0.1/", "localhost", "loopback"),
        # credentials are refused even to an allow-listed host
        ("https://u:p@127.0.0.1/", "127.0.0.1", "user name or password"),
        # allow-listing does not turn on plain http off loopback
        ("http://10.0.0.5/h", "10.0.0.5", "plain http"),
        ("https://10.0.0.6/h", "10.0.0.5", "private"),
    ],
)
def test_allow_list_permits_exactly_what_it_names(url: str, allow: str, expected: str | None) -> None:
    """Name entries lift name refusals, address/network entries lift address refusals, nothing else."""
    problem = url_problem(url, allow=parse_allow_list(allow), allow_http=False)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("127.0.0.53", "loopback"),
        ("169.254.169.254", "link-local"),
        ("100.127.255.255", "CGNAT"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "unique-local"),
        ("::ffff:192.168.0.1", "IPv4-mapped"),
        ("ff05::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("198.18.0.1", "benchmarking"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
    ],
)
def test_resolved_addresses_are_checked(address: str, reason: str | None) -> None:
    """A resolved address is refused when internal (with its kind in the reason), public ones pass."""
    problem = address_problem(ipaddress.ip_address(address), allow=NO_ALLOW)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem, problem


def test_a_host_is_refused_if_any_of_its_addresses_is() -> None:
    """One private address among public ones refuses the host; no address at all refuses it too."""
    public, private = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5")
    assert addresses_problem([public], allow=NO_ALLOW) is None
    problem = addresses_problem([public, private], allow=NO_ALLOW)
    assert problem is not None and "10.0.0.5" in problem
    assert addresses_problem([], allow=NO_ALLOW) == "resolves to no address"
    assert addresses_problem([public, private], allow=parse_allow_list("10.0.0.5")) is None


def test_parse_allow_list_reads_names_addresses_and_networks() -> None:
    """Commas or spaces, brackets and case are tolerated; each entry lands where it belongs."""
    allow = parse_allow_list(" 127.0.0.1, LocalHost. [::1]  10.20.0.0/16,, hooks.partner.example ")
    assert allow.hosts == {"localhost", "hooks.partner.example"}
    assert allow.networks == {
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.20.0.0/16"),
    }
    assert parse_allow_list("") == AllowList() == NO_ALLOW


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("https://hooks.example.org", "no scheme"),
        ("127.0.0.1:8080", "no port"),
        ("10.0.0.5/8", "host bits set"),
        ("10.0.0.0/33", "not a CIDR network"),
        ("*.example.org", "not a host name"),
        ("127.1", "dotted-quad"),
        ("a" * 300, "not a host name"),
    ],
)
def test_parse_allow_list_names_the_bad_entry(entry: str, message: str) -> None:
    """A bad entry is a ValueError that quotes it and says what is wrong."""
    with pytest.raises(ValueError, match=message) as caught:
        parse_allow_list(f"127.0.0.1,{entry}")
    assert repr(entry)[:40] in str(caught.value)


def test_parse_allow_list_is_bounded() -> None:
    """More than 256 entries is refused."""
    with pytest.raises(ValueError, match="at most 256"):
        parse_allow_list(",".join(f"10.0.{i // 256}.{i % 256}" for i in range(257)))


def test_loopback_hosts() -> None:
    """localhost, 127/8 (in any form) and ::1 are loopback; other hosts are not."""
    assert all(is_loopback_host(h) for h in ("localhost", "LOCALHOST.", "127.0.0.1", "127.1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("10.0.0.1", "example.org", "localhost.example.org"))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), index=st.integers(0, len(REFUSED_V4) - 1))
def test_every_address_of_a_refused_ipv4_range_is_refused_in_every_form(
    data: st.DataObject, index: int
) -> None:
    """Any address of a refused IPv4 range is refused as such, IPv4-mapped, and in a URL
    written as a decimal number; allow-listing its network permits it again."""
    network, _ = REFUSED_V4[index]
    value = data.draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    address = ipaddress.IPv4Address(value)
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert address_problem(address, allow=NO_ALLOW) is not None
    assert address_problem(mapped, allow=NO_ALLOW) is not None
    assert url_problem(f"https://{value}/", allow=NO_ALLOW, allow_http=False) is not None
    allow = AllowList(networks=frozenset({network}))
    assert address_problem(address, allow=allow) is None
    assert address_problem(mapped, allow=allow) is None


@settings(max_examples=300, deadline=None)
@given(data=st.data(), index=st.integers(0, len(REFUSED_V6) - 1))
def test_every_address_of_a_refused_ipv6_range_is_refused(data: st.DataObject, index: int) -> None:
    """Any address of a refused IPv6 range is refused, also written as a URL host."""
    network, _ = REFUSED_V6[index]
    value = data.draw(st.integers(int(network.network_address), int(network.broadcast_address)))
    address = ipaddress.IPv6Address(value)
    assert address_problem(address, allow=NO_ALLOW) is not None
    assert url_problem(f"https://[{address}]/", allow=NO_ALLOW, allow_http=False) is not None


@settings(max_examples=300, deadline=None)
@given(value=st.integers(0, 2**32 - 1))
def test_legacy_ipv4_forms_mean_the_same_address(value: int) -> None:
    """Decimal, hex and dotted forms of one IPv4 address are read as that address."""
    address = ipaddress.IPv4Address(value)
    assert host_address(str(value)) == address
    assert host_address(hex(value)) == address
    assert host_address(str(address)) == address


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300), prefix=st.sampled_from(["", "https://", "http://", "https://["]))
def test_url_check_never_raises(text: str, prefix: str) -> None:
    """Any text gets a reason or None, never an exception."""
    result = url_problem(prefix + text, allow=NO_ALLOW, allow_http=False)
    assert result is None or isinstance(result, str)
