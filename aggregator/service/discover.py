"""Finding the feed behind a web page, for ``aggregator add URL``.

People paste what is in their browser's address bar: an outlet's home page
more often than its feed.  :func:`discover` turns either into a list of
candidate feeds:

* a URL that already serves a feed is its own (single) candidate;
* a web page's ``<link rel="alternate" type="application/rss+xml">`` (also
  Atom, RDF and JSON Feed) elements are its candidates, in page order, with
  relative hrefs resolved against the page (or its ``<base href>``);
* a page that lists none is probed at the paths feeds conventionally live at
  (:data:`COMMON_PATHS`); those that answer with a feed are the candidates.

:func:`find_feed_links` is the pure half (HTML in, candidates out), tested as
data; the network goes through :class:`aggregator.fetch.fetcher.Fetcher` like every
other request, so discovery obeys the same limits, timeouts and User-Agent.
:func:`check_feed` fetches the chosen candidate once and parses it, so a
page that merely *claims* a feed is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup
from bs4.filter import SoupStrainer

from aggregator.config.feeds import normalise_url
from aggregator.errors import AggregatorError
from aggregator.fetch.fetcher import Fetcher, FetchError, FetchResult
from aggregator.parse.parser import FeedParseError, ParsedFeed, parse_fetched

__all__ = [
    "COMMON_PATHS",
    "FEED_TYPES",
    "DiscoveryError",
    "FeedCandidate",
    "NoFeedFound",
    "NotAFeedError",
    "check_feed",
    "discover",
    "find_feed_links",
]

#: ``<link type>`` values that announce a feed.  ``application/json`` is left
#: out on purpose: WordPress announces its REST API with it on every page.
FEED_TYPES: Final = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
    }
)

#: Where feeds usually are when a page does not say (WordPress, Hugo, Jekyll,
#: Ghost and most static site generators use one of these), from the site root.
COMMON_PATHS: Final = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")


class DiscoveryError(AggregatorError):
    """No usable feed at a URL; the message names the URL and what was found there."""


class NotAFeedError(DiscoveryError):
    """The URL answered with something that is neither a feed nor a web page listing one."""


class NoFeedFound(DiscoveryError):
    """A web page that links no feed, and none of the common feed paths answer with one."""


@dataclass(frozen=True, slots=True)
class FeedCandidate:
    """One feed a URL may mean.

    ``title`` is the ``<link title>`` or the feed's own title (``None`` if
    neither says); ``found`` says how it was found, for the list shown to
    the user.  ``feed`` is the parsed document when discovery already had to
    fetch it (the URL itself, or a probed path), so it is not fetched twice.
    """

    url: str
    title: str | None
    media_type: str | None
    found: str
    feed: ParsedFeed | None = field(default=None, compare=False, repr=False)


def find_feed_links(
    html: bytes | str, page_url: str, *, charset: str | None = None
) -> list[FeedCandidate]:
    """The feeds a web page announces with ``<link rel="alternate" type=...>``.

    Pure.  ``rel`` is matched as a token list and ``type`` without its
    parameters, both case-insensitively; hrefs are resolved against
    ``<base href>`` if the page has one, else against ``page_url`` (the URL
    the page was *served* from, after redirects).  Only http(s) results are
    kept, each once (by normalised URL), in page order.
    """
    strainer = SoupStrainer(["link", "base"])
    if isinstance(html, bytes):
        soup = BeautifulSoup(html, "lxml", parse_only=strainer, from_encoding=charset)
    else:
        soup = BeautifulSoup(html, "lxml", parse_only=strainer)
    base = page_url
    base_tag = soup.find("base", href=True)
    if base_tag is not None:
        base = urljoin(page_url, str(base_tag["href"]).strip())
    found: dict[str, FeedCandidate] = {}
    for link in soup.find_all("link"):
        rel: Any = link.get("rel") or []
        rels = rel if isinstance(rel, list) else str(rel).split()
        media_type = str(link.get("type") or "").split(";", 1)[0].strip().lower()
        href = str(link.get("href") or "").strip()
        if "alternate" not in {r.lower() for r in rels} or media_type not in FEED_TYPES or not href:
            continue
        url = _http_url(urljoin(base, href))
        if url is None or normalise_url(url) in found:
            continue
        title = _one_line(str(link.get("title") or "")) or None
        found[normalise_url(url)] = FeedCandidate(url, title, media_type, "<link rel=alternate>")
    return list(found.values())


async def discover(url: str, fetcher: Fetcher) -> list[FeedCandidate]:
    """The feeds ``url`` may mean: itself, the feeds its page links, or probed ones.

    Raises :class:`~aggregator.fetch.fetcher.FetchError` if ``url`` cannot be fetched,
    :class:`NotAFeedError` if it is neither a feed nor a web page, and
    :class:`NoFeedFound` for a page with no feed anywhere we looked.
    """
    result = await fetcher.fetch(url)
    try:
        feed = parse_fetched(result)
    except FeedParseError as exc:
        if not _is_html(result):
            raise NotAFeedError(
                f"{url} is not a feed ({exc}) nor a web page that links to one"
            ) from None
    else:
        title = _one_line(feed.title or "") or None
        return [FeedCandidate(url, title, result.content_type, "the URL itself", feed)]
    links = find_feed_links(result.content, result.final_url, charset=result.charset)
    if links:
        return links
    probed = await _probe(result.final_url, fetcher)
    if probed:
        return probed
    raise NoFeedFound(
        f'no feed found for {url}: the page has no <link rel="alternate"> to a feed and '
        f"none of {', '.join(COMMON_PATHS)} on its site answers with one; "
        "give the feed's own URL instead"
    )


async def check_feed(candidate: FeedCandidate, fetcher: Fetcher) -> ParsedFeed:
    """Fetch ``candidate`` once (unless discovery already did) and parse it.

    Raises :class:`NotAFeedError` when what is served there does not parse
    as a feed (a page announcing a feed that is really an error page, say),
    and :class:`~aggregator.fetch.fetcher.FetchError` when it cannot be fetched.
    """
    if candidate.feed is not None:
        return candidate.feed
    result = await fetcher.fetch(candidate.url)
    try:
        return parse_fetched(result)
    except FeedParseError as exc:
        raise NotAFeedError(f"{candidate.url} is not a feed: {exc}") from None


async def _probe(page_url: str, fetcher: Fetcher) -> list[FeedCandidate]:
    """The common paths of the page's site that serve a feed, in COMMON_PATHS order.

    Several paths often serve one feed (``/feed`` redirecting to
    ``/rss.xml``, or the same file under two names); each feed is listed
    once, under the first path that gave it.
    """
    urls = [urljoin(page_url, path) for path in COMMON_PATHS]
    outcomes = await asyncio.gather(*(_try_feed(u, fetcher) for u in urls))
    seen: set[object] = set()
    found = []
    for url, outcome in zip(urls, outcomes, strict=True):
        if outcome is None:
            continue
        result, feed = outcome
        same = {normalise_url(result.final_url), result.content}
        if same & seen:
            continue
        seen |= same
        title = _one_line(feed.title or "") or None
        found.append(FeedCandidate(url, title, result.content_type, "common feed path", feed))
    return found


async def _try_feed(url: str, fetcher: Fetcher) -> tuple[FetchResult, ParsedFeed] | None:
    """A probed path's feed, or ``None`` for anything else: a miss is the expected case."""
    try:
        result = await fetcher.fetch(url)
        return result, parse_fetched(result)
    except (FetchError, FeedParseError):
        return None


_HTML_START: Final = re.compile(rb"^\s*(?:<!doctype\s+html|<html[\s>])|<(?:head|body)[\s>]", re.I)


def _is_html(result: FetchResult) -> bool:
    if result.content_type in ("text/html", "application/xhtml+xml"):
        return True
    return _HTML_START.search(result.content[:4096].lstrip(b"\xef\xbb\xbf")) is not None


def _http_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return urlunsplit(parts._replace(fragment=""))


def _one_line(text: str) -> str:
    """Titles become outlet names: one line, single spaces."""
    return " ".join(text.split())
