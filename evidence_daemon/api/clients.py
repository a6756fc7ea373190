"""Who is on the other end of a request: the client's address, seen through trusted proxies.

Behind a reverse proxy (TLS in front of the API, as the example config advises) every request
arrives from the proxy's address, and the client it serves is named in ``X-Forwarded-For``.
That address is what failed sign-ins are counted under and what the audit chain records as
``remote``, so the header must never be believed from just anyone: a client could write any
address there to dodge the failed sign-in limit or to put someone else's address in the chain.
It is read only when the peer is one of ``api.trusted_proxies``, and then the client is the
right-most address in it that is not itself a trusted proxy (each proxy appends the peer it
saw; everything left of that was written by the client and proves nothing).

Pure functions over plain values; the app passes in the peer and the header values.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TrustedProxies = tuple[Network, ...]

UNKNOWN = "unknown"


def trusted_networks(entries: Iterable[str]) -> TrustedProxies:
    """``api.trusted_proxies`` as networks (the config loader has already checked each)."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it: ``10.0.0.5``, ``10.0.0.5:4711``, ``2001:db8::1`` or
    ``[2001:db8::1]:4711``; IPv4-mapped IPv6 is taken as the IPv4 address. None if unreadable."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, trusted: TrustedProxies) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str],
                   trusted: TrustedProxies) -> str:
    """The address a request is counted and recorded under.

    ``peer`` is the TCP peer, ``forwarded_for`` every ``X-Forwarded-For`` header value in
    order. Without a trusted peer the header is ignored. A hop a trusted proxy passed on that
    is not an address at all means that proxy is misconfigured: the request then counts as the
    proxy's own, never as whatever text the header holds.
    """
    if not peer:
        return UNKNOWN
    nearest = parse_address(peer)
    if nearest is None or not _trusted(nearest, trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        nearest = address
        if not _trusted(address, trusted):
            break
    return str(nearest)
