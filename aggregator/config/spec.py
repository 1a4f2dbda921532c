"""A feed as the rest of the program sees it: FeedSpec, its defaults, the feed URL's identity.

Apart from :mod:`aggregator.config.feeds` (the loader: ruamel and pydantic)
so that what only needs the result type -- the parse worker, which is
handed a ``FeedSpec`` pickled -- does not import the loader's libraries:
a worker process that imports pydantic and ruamel holds ~10 MB more for
nothing (tests/test_worker.py).  :mod:`aggregator.config.feeds` re-exports
every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

from aggregator.policy.dedup import Identity
from aggregator.policy.filters import Filters

__all__ = [
    "DEFAULT_DISABLE_AFTER",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_IMAGE_BYTES",
    "FeedSpec",
    "FullText",
    "normalise_url",
]

#: Poll interval of a feed that sets none (and has none in ``defaults``).
DEFAULT_INTERVAL: Final = timedelta(minutes=15)

#: A feed failing permanently (404, not a feed) for this long is disabled:
#: long enough to ride out a publisher's botched redesign or a holiday week.
DEFAULT_DISABLE_AFTER: Final = timedelta(days=7)

#: ``max_image_bytes`` when feeds.yaml does not set it (``images: archive``).
DEFAULT_MAX_IMAGE_BYTES: Final = 16 * 1024 * 1024

_DEFAULT_PORTS: Final = MappingProxyType({"http": 80, "https": 443})


def normalise_url(url: str) -> str:
    """The identity of a feed URL: scheme and host lowercased, default port and
    fragment dropped, an empty path written ``/``.

    Path and query keep their case because servers may treat them
    case-sensitively; two URLs that differ there may really be two feeds.
    Text that does not parse as a URL is returned stripped, unchanged.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


@dataclass(frozen=True, slots=True)
class FullText:
    """Replace a feed item's body with part of the article's web page.

    Many feeds carry only a teaser; ``selector`` (CSS) picks the article body
    out of the fetched page, and each ``remove`` selector strips clutter such
    as ads or "related stories" from inside it.
    """

    selector: str
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed to poll, with every default already applied.

    ``interval`` is a :class:`~datetime.timedelta` (use ``.total_seconds()``
    for schedulers that want a number).  ``rsshub_route`` is the route as
    configured (always with a leading ``/``) when the feed comes from RSSHub,
    because state is kept per route even if the RSSHub server moves.
    ``line`` is where the feed's entry starts in the file, for messages; it
    is excluded from equality so a reload that only moves lines is a no-op.
    ``allow_private_networks`` lets links *inside* this feed (full-text
    pages) reach loopback, private and link-local addresses, which are
    refused by default because anyone who writes an item chooses its link.
    """

    url: str
    outlet: str
    section: str
    group: str
    interval: timedelta = DEFAULT_INTERVAL
    enabled: bool = True
    full_text: FullText | None = None
    placeholder_image: str = ""
    rsshub_route: str | None = None
    timezone: str | None = None
    date_offset: timedelta = timedelta(0)
    disable_after: timedelta = DEFAULT_DISABLE_AFTER
    #: Which field identifies an item across edits (see dedup.entry_key).
    identity: Identity = "guid"
    #: keep/block rules, the defaults' first (see aggregator.policy.filters).
    filters: Filters = field(default_factory=Filters)
    allow_private_networks: bool = False
    #: ``remote`` (posts link the outlet's images) or ``archive`` (see aggregator.content.images).
    images: Literal["remote", "archive"] = "remote"
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    #: Referer rules for image hosts, ``(host, none|origin|URL)``, sorted; the
    #: defaults' merged with the feed's own (the feed's win per host).
    image_referers: tuple[tuple[str, str], ...] = ()
    line: int = field(default=0, compare=False)

    @property
    def key(self) -> str:
        """The normalised URL that identifies this feed (see :func:`normalise_url`)."""
        return normalise_url(self.url)

    @property
    def categories(self) -> tuple[str, str, str]:
        """The post categories this feed files under: group, outlet, section."""
        return (self.group, self.outlet, self.section)
