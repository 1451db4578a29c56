"""Where the server may connect (webhooks): public addresses only, unless a site
allow-lists a network (site option `webhook_networks`). Checked on the address actually
connected to (segserver.http.webhooks resolves and checks at connect time, so a name
that resolves to 127.0.0.1 later — DNS rebinding — is refused too), and early on IP
literals when a subscription is saved."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Shared address space (carrier-grade NAT), not "private" to Python's ipaddress.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def networks(given: Iterable[str]) -> tuple[Network, ...]:
    """Parsed allow-list entries (validated when the site was saved; bad ones skipped)."""
    out = []
    for net in given:
        try:
            out.append(ipaddress.ip_network(net, strict=False))
        except (TypeError, ValueError):
            continue
    return tuple(out)


def is_internal(addr: Address) -> bool:
    """Loopback, private, link-local (169.254/16: cloud metadata), multicast, reserved,
    unspecified or shared address space; an IPv4-mapped IPv6 address as its IPv4."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
            or addr.is_reserved or addr.is_unspecified or addr in _SHARED
            or (isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local))  # fmt: skip


def permitted(addr: Address, allowed: Sequence[Network]) -> bool:
    return not is_internal(addr) or any(addr in net for net in allowed)


def literal_address(host: str) -> Address | None:
    """The address a host names literally, in any form a resolver takes: dotted quad,
    IPv6, and the numeric forms inet_aton reads (`0x7f000001`, `2130706433`, `127.1`)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # not an address (ValueError: a NUL in it)
        return None


def refused_host(host: str, allowed: Sequence[Network]) -> str | None:
    """Why a URL's host is refused before any lookup, or None (names are checked when
    resolved)."""
    name = host.lower().rstrip(".")
    if literal_address(host) is None and not _HOSTNAME.fullmatch(name):
        return f"{host!r} is not a host name"
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return f"{host} is this machine"
    addr = literal_address(host)
    if addr is not None and not permitted(addr, allowed):
        return f"{host} is an internal address ({addr})"
    return None
