"""Who the client is: the address every audit event and every per-address throttle uses (pure).

A request's client address comes from the socket (the TCP peer the ASGI server reports), unless that
peer is one of the trusted proxies the site lists in ``NEURONAV_TRUSTED_PROXIES`` (IP addresses or
CIDR networks, comma-separated; empty by default, so nothing a client sends is believed). Then the
``X-Forwarded-For`` header (all its lines, in order) is read from the right, the end each proxy
appends to: the client is the right-most address that is not itself a trusted proxy.

Anything to the left of that address was written by the client, and is ignored. An entry that is not
an IP address stops the walk: the client is then the trusted hop to its right (a proxy appends the
address it saw, never a name, so a malformed entry means the proxy did not write it). When every
entry is a trusted proxy the left-most one is the client. The ASGI server must not rewrite the client
itself (uvicorn: ``proxy_headers=False``, as ``neuronav serve`` runs it), or the socket's peer is lost.

``Forwarded`` (RFC 7239) and ``X-Real-IP`` are not read: configure the proxy to append to
``X-Forwarded-For`` (nginx ``$proxy_add_x_forwarded_for``, HAProxy ``option forwardfor``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"


@lru_cache(maxsize=16)
def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated list of IP addresses and CIDR networks (``10.0.0.0/8,
    ::1``); ValueError naming the first entry that is neither."""
    networks: list[IPNetwork] = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)") from None
    return tuple(networks)


def parse_address(text: str) -> IPAddress | None:
    """The IP address in ``text`` (``1.2.3.4``, ``1.2.3.4:port``, ``::1``, ``[::1]:port``), IPv4-mapped
    IPv6 addresses as IPv4; None when it is not one."""
    text = text.strip()
    candidates = [text]
    if text.startswith("[") and "]" in text:
        candidates.append(text[1 : text.index("]")])
    elif text.count(":") == 1:
        candidates.append(text.split(":", 1)[0])
    for candidate in candidates:
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    return None


def _trusted(address: IPAddress | None, proxies: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[IPNetwork]) -> str:
    """The client's address: ``peer`` (the socket's), unless it is a trusted proxy; then the right-most
    address of the ``X-Forwarded-For`` lines ``forwarded_for`` that is not a trusted proxy (see the
    module docstring). At most 100 characters; ``unknown`` when the server reports no peer."""
    peer = (peer or "").strip()
    current = parse_address(peer)
    if not _trusted(current, proxies):
        return (str(current) if current is not None else peer or UNKNOWN)[:100]
    assert current is not None
    entries = [entry for line in forwarded_for for entry in line.split(",") if entry.strip()]
    for entry in reversed(entries):
        hop = parse_address(entry)
        if hop is None:  # not written by a proxy: the trusted hop to its right is all we know
            break
        current = hop
        if not _trusted(hop, proxies):
            break
    return str(current)[:100]


__all__ = ["UNKNOWN", "client_address", "parse_address", "parse_networks"]
