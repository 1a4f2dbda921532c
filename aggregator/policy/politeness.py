"""Politeness per host: how many requests at once, and how far apart they start.

Pure policy, no I/O: the fetcher enforces it (aggregator.fetch.fetcher), feeds.yaml
``hosts:`` overrides it (aggregator.config.feeds), and both import it from here so
that reading the configuration never has to load the HTTP stack.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Final

__all__ = [
    "LOCAL_HOST_POLICY",
    "PUBLIC_HOST_POLICY",
    "HostPolicy",
    "default_host_policy",
    "is_local_host",
]


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """How hard one host may be asked: concurrent requests, and the least time
    (seconds) between the *starts* of two requests to it.

    Spacing is static politeness, never adaptive back-off: a failing feed or
    RSSHub route only ever delays itself (its own row's schedule), so one bad
    route cannot freeze the other routes of the same server.
    """

    max_concurrency: int
    min_spacing: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.max_concurrency, bool) or self.max_concurrency < 1:
            raise ValueError(
                f"HostPolicy.max_concurrency must be a whole number >= 1, "
                f"got {self.max_concurrency!r}"
            )
        if not (math.isfinite(self.min_spacing) and self.min_spacing >= 0):
            raise ValueError(
                f"HostPolicy.min_spacing must be >= 0 seconds, got {self.min_spacing!r}"
            )


#: A host on this machine or a private network: in practice our own RSSHub
#: (``127.0.0.1:1200``, or ``rsshub:1200`` in Docker Compose).  It serves only
#: us, and one poll pass may ask it for dozens of routes, so it gets many
#: parallel requests and no spacing.
LOCAL_HOST_POLICY: Final = HostPolicy(max_concurrency=8, min_spacing=0.0)
#: Anyone else's server.  Two at a time and one request start per second keeps
#: us under 60 requests a minute per host -- the usual crawler etiquette, and
#: below what throttling hosts such as openrss.org or Reddit tolerate for an
#: unauthenticated client -- while a pass over a news site's 30 section feeds
#: still takes only half a minute.  Hosts that want more (or less) are set in
#: feeds.yaml ``hosts:``.
PUBLIC_HOST_POLICY: Final = HostPolicy(max_concurrency=2, min_spacing=1.0)
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine or a private network, decided without DNS.

    Loopback, private and link-local IP literals, ``localhost``, mDNS/LAN
    suffixes, and single-label names (a Docker Compose service such as
    ``rsshub``) count as local; everything else is public.
    """
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or "." not in name or name.endswith(_LOCAL_SUFFIXES)
    return address.is_loopback or address.is_private or address.is_link_local


def default_host_policy(host: str) -> HostPolicy:
    """The policy of a host that feeds.yaml does not name (see the two constants)."""
    return LOCAL_HOST_POLICY if is_local_host(host) else PUBLIC_HOST_POLICY
