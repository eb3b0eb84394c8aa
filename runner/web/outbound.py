"""The one outbound policy: every URL Taskdeck fetches on a user's behalf goes through `fetch`.

A user who names a URL must not reach what only the worker can reach: its own loopback, the private
network it sits in, the cloud's metadata service. So the host is resolved here, every address it
resolves to must be public (or allowed by an admin, TASKDECK_FETCH_ALLOW), and the request goes to the
very address that was checked, with the URL's host in the Host header and as TLS's server name: a DNS
answer that changes between the check and the connection (rebinding) gains nothing. Redirects are
followed here, each hop checked again.

Refusals and failures name the host at most: a worker that said why a connection failed (refused, reset,
timed out) would map the open ports of every machine it can reach.
"""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urljoin, urlsplit

import httpx

from ..errors import Fatal

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 20.0
MAX_BYTES = 5_000_000
USER_AGENT = "Taskdeck/0.1 (context fetcher)"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
NOT_HTTP = "refused: only http and https URLs with a host name are fetched"
NAT64 = IPv6Network("64:ff9b::/96")
IETF_ASSIGNMENTS = IPv4Network("192.0.0.0/24")  # not global; ipaddress knows it only from Python 3.12.4


class Refused(Fatal):
    """The policy refuses the URL: another attempt would be refused too."""


class Unreachable(Exception):
    """The URL could not be fetched (no such host, no answer, a reset, a timeout); a later try may work."""


@dataclass(frozen=True)
class Fetched:
    status: int
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy: the addresses it may be fetched from, and what to ask there."""

    scheme: str
    host: str  # IDNA-encoded: the Host header and TLS's server name
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def pinned(self, address: str) -> str:
        """The URL with `address` for its host, so that the connection goes where the check looked."""
        host = f"[{address}]" if ":" in address else address
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def embedded(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, NAT64, 6to4), which is where packets end up."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def public(ip: IPAddress) -> bool:
    """Whether `ip` is an ordinary address on the internet (not loopback, private, link-local, CGNAT,
    unique-local, multicast, unspecified, reserved, documentation or benchmark)."""
    inner = embedded(ip) if isinstance(ip, IPv6Address) else None
    if inner is not None:
        return public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip in IETF_ASSIGNMENTS)


@dataclass(frozen=True)
class Policy:
    """Public addresses, plus what the admin's allow-list names: host names, and networks in CIDR."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, entries: Iterable[str]) -> Policy:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            try:
                networks.append(ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def permits(self, ip: IPAddress) -> bool:
        inner = embedded(ip) if isinstance(ip, IPv6Address) else None
        spellings = [a for a in (ip, inner) if a is not None]
        return public(ip) or any(a in net for a in spellings for net in self.networks)

    async def check(self, url: str) -> Target:
        """Where `url` may be fetched from; Refused when the policy forbids it, OSError when its host does
        not resolve."""
        target = parse(url)
        addresses = await resolve(target.host, target.port)
        if target.host.rstrip(".") not in self.names and not all(self.permits(ip_address(a)) for a in addresses):
            raise Refused(f"refused: private address {target.host}")
        return replace(target, addresses=addresses)


def parse(url: str) -> Target:
    """`url`'s parts, not yet resolved; Refused unless it is an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
        if scheme not in DEFAULT_PORTS or not host:
            raise ValueError(scheme)
        ascii_host = host if ":" in host else host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise Refused(NOT_HTTP) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, ascii_host, port or DEFAULT_PORTS[scheme], path, ())


async def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to, in the resolver's order (the order connections are tried);
    OSError when there is none."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "no address")
    return tuple(dict.fromkeys(str(info[4][0]) for info in found))


async def fetch(url: str, allow: Iterable[str] = (), headers: Mapping[str, str] | None = None, *,
                max_bytes: int = MAX_BYTES, timeout_s: float = FETCH_TIMEOUT_S) -> Fetched:
    """GET `url` under the policy (`allow`: TASKDECK_FETCH_ALLOW's entries), following at most
    MAX_REDIRECTS redirects, within `timeout_s` in all and `max_bytes` of body. Whatever the status,
    the last answer is returned. Refused (a Fatal) when the policy forbids a hop, Fatal when the body is
    too large, Unreachable when no answer came."""
    policy = Policy.allowing(allow)
    try:
        async with asyncio.timeout(timeout_s), httpx.AsyncClient(
                trust_env=False, timeout=timeout_s, headers={"User-Agent": USER_AGENT}) as http:
            return await follow(http, policy, url, dict(headers or {}), max_bytes)
    except httpx.InvalidURL:
        raise Refused(NOT_HTTP) from None
    except (httpx.HTTPError, OSError, TimeoutError):
        raise Unreachable(f"could not fetch {url}") from None


async def follow(http: httpx.AsyncClient, policy: Policy, url: str, headers: dict[str, str],
                 max_bytes: int) -> Fetched:
    for _ in range(MAX_REDIRECTS + 1):
        target = await policy.check(url)
        response = await send(http, target, headers)
        try:
            location = response.headers.get("location") if response.status_code in REDIRECTS else None
            if location is None:
                body = await read(response, url, max_bytes)
                return Fetched(response.status_code, url, dict(response.headers), body)
        finally:
            await response.aclose()
        url = urljoin(url, location)
    raise Refused(f"refused: more than {MAX_REDIRECTS} redirects")


async def send(http: httpx.AsyncClient, target: Target, headers: dict[str, str], method: str = "GET",
               content: bytes | None = None) -> httpx.Response:
    """The answer from the first of the target's addresses that takes the connection."""
    for address in target.addresses[:-1]:
        with suppress(httpx.ConnectError):
            return await http.send(request(http, target, address, headers, method, content), stream=True)
    return await http.send(request(http, target, target.addresses[-1], headers, method, content), stream=True)


def request(http: httpx.AsyncClient, target: Target, address: str, headers: dict[str, str], method: str = "GET",
            content: bytes | None = None) -> httpx.Request:
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return http.build_request(method, target.pinned(address), headers={**headers, "Host": target.host_header},
                              content=content, extensions=extensions)


async def post(url: str, body: bytes, headers: Mapping[str, str], allow: Iterable[str] = (), *,
               timeout_s: float = FETCH_TIMEOUT_S) -> int:
    """POST `body` to `url` under the policy (`allow`: TASKDECK_FETCH_ALLOW's entries), within `timeout_s`:
    the answer's status. A redirect is not followed (a webhook's receiver answers where it was named).
    Refused when the policy forbids the URL, Unreachable when no answer came."""
    policy = Policy.allowing(allow)
    try:
        async with asyncio.timeout(timeout_s), httpx.AsyncClient(
                trust_env=False, timeout=timeout_s, headers={"User-Agent": USER_AGENT}) as http:
            response = await send(http, await policy.check(url), dict(headers), "POST", body)
            await response.aclose()
            return response.status_code
    except httpx.InvalidURL:
        raise Refused(NOT_HTTP) from None
    except (httpx.HTTPError, OSError, TimeoutError):
        raise Unreachable(f"could not post to {url}") from None


async def read(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(url, max_bytes)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(url, max_bytes)
    return bytes(body)


def too_large(url: str, max_bytes: int) -> Fatal:
    return Fatal(f"{url} is larger than {max_bytes:,} bytes")
