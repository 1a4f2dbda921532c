"""Which network addresses links found *inside* feeds may make us connect to.

Feed URLs in feeds.yaml are the operator's own and may well point at a local
RSSHub.  The links *inside* a feed are not: anyone who can publish an item
can make the daemon fetch any URL for its full-text or image step.  Without a
guard, an item linking to ``http://169.254.169.254/latest/meta-data/`` (the
cloud metadata service), ``http://127.0.0.1:8080/metrics`` or an intranet
host turns the archive into a proxy into the network it runs in (SSRF), and
the page it fetched ends up published as a post.

:class:`AddressGuard` refuses every address that is not on the public
internet, and it decides on addresses *after* DNS resolution: the host name is
untrusted too (``localhost``, ``127.0.0.1.nip.io``, ``0x7f.1``, a name whose
DNS record points at 10.0.0.1 all reach the same places as the literals).

The check alone would leave a window: a name checked against one answer could
be re-resolved by the HTTP client to another (DNS rebinding, a record with a
zero TTL flipping between a public address and 127.0.0.1).  So the guard is
also the resolver of the connection pool that guarded requests use
(:class:`aggregator.fetch.transport.GuardedResolver`): it resolves the name
itself, checks every answer, and the socket is opened to a checked IP
literal -- the address connected to is the address that was checked.  TLS is
unaffected: the client still sends the host name for SNI and checks the
certificate against it.

This module does no HTTP, imports no HTTP library and knows nothing of
feeds; :mod:`aggregator.fetch.fetcher` applies it per fetch (before every
hop) and :mod:`aggregator.fetch.transport` at connect time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

from aggregator.errors import AggregatorError

__all__ = [
    "PRIVATE_NETWORKS_HINT",
    "AddressGuard",
    "AddressRefused",
    "IPAddress",
    "Resolver",
    "refusal_reason",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``(host, port) -> IP address strings``; the default is the system resolver.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: What a person can do about a refusal when the address really is meant.
PRIVATE_NETWORKS_HINT = "set allow_private_networks: true for this feed to allow it"

_CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
_RFC1918 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_METADATA = ipaddress.IPv4Address("169.254.169.254")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, and the form it takes.

    ``::ffff:127.0.0.1`` connects to 127.0.0.1 on a dual-stack socket, and a
    NAT64 or 6to4 gateway forwards to the embedded IPv4 address, so each must
    be judged as that IPv4 address.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "an IPv4-mapped form of"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64 form of"
    if address.sixtofour is not None:
        return address.sixtofour, "a 6to4 form of"
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are judged as IPv6
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "an IPv4-compatible form of"
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` must not be fetched from, or ``None`` for a public address.

    The reason completes "resolves to 10.0.0.1, ..." (e.g. ``"a private
    address"``).  It is an allow-list at heart -- anything Python's
    ``ipaddress`` does not call global is refused -- with multicast added
    (Python 3.11 counts 224.0.0.0/4 as global) and the categories named so
    the message says what the address is.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner, form = embedded
            reason = refusal_reason(inner)
            return None if reason is None else f"{form} {inner}, {reason}"
        address = address.__class__(int(address))  # drop a %scope: it changes nothing here
    if address.is_unspecified:
        return "an unspecified address (it means this machine)"
    if address.is_loopback:
        return "a loopback address (this machine)"
    if address == _METADATA:
        return "a link-local address (the cloud metadata service)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CARRIER_GRADE_NAT:
        return "a carrier-grade NAT address (100.64.0.0/10, not on the public internet)"
    if address in _UNIQUE_LOCAL or any(address in net for net in _RFC1918):
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address (not on the public internet)"
    return None


class AddressRefused(AggregatorError):
    """A host name or literal that leads to an address the guard refuses.

    Raised inside the HTTP client's connect step as well as by
    :meth:`AddressGuard.check`; :mod:`aggregator.fetch.fetcher` turns it into a
    ``ForbiddenAddress`` fetch error naming the URL.
    """

    def __init__(self, host: str, address: str, reason: str, hint: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        self.hint = hint
        super().__init__(self.explanation())

    def explanation(self) -> str:
        """``resolves to 127.0.0.1, a loopback address ...; <hint>``."""
        literal = _strip_brackets(self.host) == self.address
        verb = "is" if literal else "resolves to"
        return f"{verb} {self.address}, {self.reason}; {self.hint}"


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its order.

    Runs ``getaddrinfo`` in the loop's executor (it blocks); a failure raises
    ``socket.gaierror`` like any connect would.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class AddressGuard:
    """Refuse connections to anything but public internet addresses.

    ``resolver`` and ``policy`` exist so tests (and unusual deployments) can
    swap them: a resolver stub makes ``outlet.test`` resolve where a test
    wants, and a policy may exempt an address or a network the operator
    trusts.  The defaults are :func:`system_resolver` and
    :func:`refusal_reason`.  ``hint`` is appended to every refusal.

    A guard holds no state between calls, so one instance may serve any
    number of concurrent fetches.
    """

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        policy: Callable[[IPAddress], str | None] = refusal_reason,
        hint: str = PRIVATE_NETWORKS_HINT,
    ) -> None:
        self._resolver: Resolver = resolver or system_resolver
        self._policy = policy
        self.hint = hint

    async def check(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` may be connected to at ``port``.

        Every address it resolves to must pass: a name with one public and one
        private answer is refused, since a client might pick either.  Raises
        :class:`AddressRefused`, or ``socket.gaierror`` when it does not
        resolve (the same error a connect would give).
        """
        bare = _strip_brackets(host)
        try:
            literal: IPAddress | None = ipaddress.ip_address(bare)
        except ValueError:
            literal = None
        answers = [str(literal)] if literal is not None else list(await self._resolver(bare, port))
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"no addresses for {bare!r}")
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                raise AddressRefused(
                    host, answer, "not an IP address (the resolver returned it)", self.hint
                ) from None
            reason = self._policy(address)
            if reason is not None:
                raise AddressRefused(host, answer, reason, self.hint)
        return answers
