"""Which URLs and addresses the authorizer will ever fetch from: plain rules, no I/O."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_http_url(url: str) -> bool:
    """http and https only; ldap, file, ftp and the like are never fetched."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1 (deprecated, still routable here)
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 §2.1 (SIIT)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215; the operator picks the length
# RFC 6052 §2.2: where the IPv4 address sits inside an IPv6 address, per NAT64 prefix length (byte
# slices of the packed address; octet 8, bits 64-71, is the reserved "u" octet and is skipped).
_RFC6052_LAYOUTS = {48: ((6, 8), (9, 11)), 56: ((7, 8), (9, 12)), 64: ((9, 13),), 96: ((12, 16),)}


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries, i.e. where a packet to it may end up.

    Covers IPv4-mapped (RFC 4291), IPv4-compatible, IPv4-translated (RFC 2765), NAT64 (RFC 6052
    well-known prefix, RFC 8215 local-use prefix at every RFC 6052 length), 6to4 (RFC 3056) and
    Teredo (RFC 4380: server and de-obfuscated client).
    """
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPATIBLE or ip in _IPV4_TRANSLATED or ip in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip in _NAT64_LOCAL_USE:
        packed = ip.packed
        for slices in _RFC6052_LAYOUTS.values():
            found.append(ipaddress.IPv4Address(b"".join(packed[a:b] for a, b in slices)))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_blocked_address(address: str | IPAddress, blocked: Iterable[IPNetwork]) -> bool:
    """Whether connecting to `address` could reach a blocked network.

    An IPv6 address is also judged by every IPv4 address embedded in it (see `embedded_ipv4`), so
    ::ffff:127.0.0.1, 64:ff9b::7f00:1 or 2002:7f00:1:: cannot smuggle loopback past a v4 entry.
    Anything that does not parse as an address is blocked (fail closed).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return True
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates.extend(embedded_ipv4(ip))
    networks = tuple(blocked)
    return any(candidate in net for candidate in candidates for net in networks)
