"""The SSRF guard for webhook targets: resolve once, check every address, connect to the one checked.

A target's host is resolved when a message is sent (DNS may change after start-up); every address it
resolves to must be public unless the target is marked `internal`, and the connection goes to that
address (the URL's host is kept for the Host header and for TLS: SNI and certificate checks), so a
second, different answer from DNS between check and connect cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from apps.kit import ServerError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Blocks Python 3.11's flags miss: not reachable from the internet, or tunnels into somewhere that is not.
SPECIAL_BLOCKS: tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...] = (
    ("shared (carrier-grade NAT)", ipaddress.ip_network("100.64.0.0/10")),
    ("IETF protocol assignment", ipaddress.ip_network("192.0.0.0/24")),
    ("6to4 relay anycast", ipaddress.ip_network("192.88.99.0/24")),
    ("site-local", ipaddress.ip_network("fec0::/10")),
    ("local-use NAT64", ipaddress.ip_network("64:ff9b:1::/48")),
    ("Teredo tunnel", ipaddress.ip_network("2001::/32")),
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DeliveryFailed(ServerError):
    """The target did not take the message (unresolvable, unreachable, timed out, or an error answer)."""


class DeliveryRefused(ServerError):
    """The target's address is not one this server may reach: a configuration or DNS problem for the
    operator (it fails the delivery and counts against the SLO), never something the caller can fix."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries to (mapped, 6to4 or NAT64), whose class is what it reaches."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden(address: IpAddress) -> str | None:
    """Why an address may not be reached from outside a private network, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)) is not None:
        return forbidden(inner)
    for reason, block in SPECIAL_BLOCKS:
        if address.version == block.version and address in block:
            return reason
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    return None


@dataclass(frozen=True)
class Pinned:
    """Where to connect: the checked address, and the URL's host for Host and TLS."""

    scheme: str
    host: str
    address: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}{self.path}"


async def pin(url: str, internal: bool, resolve_seconds: float) -> Pinned:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DeliveryRefused("the target's URL is not http(s)")  # settings are checked at start; defence only
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM), resolve_seconds
        )
    except (TimeoutError, OSError):
        raise DeliveryFailed(f"the target's host {parts.hostname} did not resolve") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not internal:
        for address in addresses:
            if reason := forbidden(address):
                raise DeliveryRefused(
                    f"the target's host resolves to a {reason} address ({address}); refused "
                    "(mark the target internal in the server's configuration if that is intended)"
                )
    return Pinned(parts.scheme, parts.hostname, str(addresses[0]), port, path)
