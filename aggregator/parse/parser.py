"""Feed bytes -> normalised entries.  Pure: no network, no files, no clock.

RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and RDF go through feedparser; JSON Feed 1.0
and 1.1, which feedparser 6 cannot read, are parsed here with :mod:`json`.
Everything comes out as :class:`Entry` values in one shape, so the content
stage never needs to know which dialect an item came from.

Decisions worth knowing before changing anything:

* feedparser is called with ``sanitize_html=False`` and
  ``resolve_relative_uris=False``.  Its sanitiser re-serialises every body
  (``&resize`` becomes ``&amp;resize``, unknown attributes such as
  ``referrerpolicy`` vanish), which would make clean bodies come out changed;
  :mod:`aggregator.content.clean` sanitises and resolves URLs itself and leaves
  clean HTML byte for byte alone.  So ``content_html`` and ``summary_html``
  are the feed's markup as sent: untrusted, to be cleaned before display.
* feedparser gets the body wrapped in :class:`io.BytesIO`, never as bytes:
  given ``bytes`` it first tries ``open()`` on them, so a hostile server that
  answers ``/dev/zero`` or ``/etc/passwd`` would make it read a local file.
* Entity declarations are deleted before feedparser sees a document (see
  :func:`_defuse_entities`; only those whose value is one character
  reference survive, as they cannot amplify).  feedparser's own DOCTYPE
  clean-up misses declarations that do not start a line, and its lenient
  fallback parser expands the "safe" ones it keeps without any limit: a
  16 kB document whose entity is 10 kB of text, referenced 2,000 times,
  yields a 20 MB title.  libexpat >= 2.4 (we run 2.5) caps amplification in
  the strict parser, but only after 8 MiB of output and not in the fallback,
  so we remove the problem instead of relying on the cap.  External entities
  and DTDs are never fetched: feedparser turns ``feature_external_ges`` off
  and ``xml.sax`` leaves external parameter entities off.
* feedparser crashes on some mangled documents (fuzzing found uncaught
  AttributeError, TypeError, UnicodeDecodeError and ValueError); those
  become :class:`FeedParseError`, so callers handle exactly one exception.
* Charset: an HTTP ``charset`` wins, then a BOM (or the byte pattern of
  UTF-16/32 without one), then the XML declaration.  Transcoding is
  feedparser's own (``convert_to_utf8``), so gb2312 is read as gb18030 and the
  results match plain feedparser wherever the charset is not in dispute.

parse_fast
----------

feedparser costs about 0.4-0.5 ms per item (its SAX callbacks and per-element
bookkeeping), which made parsing the bulk of a cold ingest.  So XML is first
offered to :mod:`aggregator.parse.fast`, which reads the common documents with
lxml (hardened: no entities resolved, no network, no DTD, no huge trees) in
about a fifth of the time, and falls back to feedparser whenever it answers
None ("not sure").  Two paths, one result:

* The fast path does not build Entry values itself: it builds the same
  feedparser-shaped feed and entry dicts (``title_detail``, ``content``,
  ``published_parsed`` ...) by mimicking feedparser element by element, with
  feedparser's own date parser, URL joiner, HTML guess and text repairs, and
  :func:`_xml_parsed_feed` / :func:`_xml_entry` turn either path's dicts
  into a ParsedFeed.  Only ``Entry.raw`` differs: the fast path's dict is
  smaller (see the parse_fast docstring for what it holds).
* It accepts RSS 2.0 (also under the userland default namespace) and Atom
  1.0, well-formed, UTF-8 after :func:`_transcode` (so both paths see the
  same characters), with no DOCTYPE, entity declaration or xml:base, and only
  elements whose feedparser handling it reproduces or knows to be inert:
  title, link/atom:link, guid/id, description/summary/itunes:summary,
  content:encoded/atom content (text and html, not xhtml or src), dates
  (pubDate, dc:date, published, updated), author/dc:creator, categories,
  enclosures, media:thumbnail/content/group, itunes:image, ttl,
  sy:updatePeriod/Frequency, generator, and leaf elements without a
  feedparser handler.  Anything else -- RSS 0.9x/1.0/RDF, Atom 0.3, markup
  inside a text element, a namespace prefix feedparser would map oddly --
  goes to feedparser.
* Equality is proven by tests/test_parse_fast.py against ``fast=False``
  (always feedparser): the benchmark farm's feeds, seed feeds in both
  dialects, every corpus file (declined, or equal field for field),
  hand-written edge cases and generated RSS items and Atom entries.
"""

from __future__ import annotations

import codecs
import dataclasses
import html
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import feedparser
from feedparser.encodings import convert_to_utf8

from aggregator.errors import AggregatorError
from aggregator.parse.fast import raw_entry, shape_feed
from aggregator.policy.dates import read_entry_date
from aggregator.policy.repair import repair_references, repair_text, repair_tree
from aggregator.types import Entry, ParsedFeed

__all__ = ["Entry", "FeedParseError", "Fetched", "ParsedFeed", "parse_feed", "parse_fetched"]


class Fetched(Protocol):
    """What :func:`parse_fetched` reads of a fetch: fetch's ``FetchResult`` fits.

    A protocol rather than the class, so parsing needs no part of the HTTP
    stack (parse and fetch are siblings: tests/test_layers.py).
    """

    @property
    def content(self) -> bytes: ...
    @property
    def final_url(self) -> str: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def charset(self) -> str | None: ...


class FeedParseError(AggregatorError, ValueError):
    """The bytes are not a feed at all; the message says what they looked like.

    Every message starts "not a feed" or "not a readable feed", so it can be
    recorded on the feed row as it is.
    """


def parse_feed(
    content: bytes,
    *,
    url: str,
    content_type: str | None = None,
    charset: str | None = None,
    fast: bool = True,
) -> ParsedFeed:
    """Parse one fetched document.

    ``url`` is where it was fetched from (the base for relative links);
    ``content_type`` and ``charset`` are the HTTP header's, when known; an
    explicit ``charset`` wins over one inside ``content_type``.  ``fast=False``
    skips the lxml fast path and always runs feedparser (for comparisons: the
    results are the same, see "parse_fast" in the module docstring).  Raises
    :class:`FeedParseError` (and nothing else) for bytes that are not a feed.
    """
    media_type, header_charset = _split_content_type(content_type)
    charset = _clean_charset(charset) or header_charset
    lead = _significant_start(content)
    if not lead:
        raise FeedParseError("not a feed: the body is empty")
    if lead[:1] in (b"{", b"[") or (_is_json_media_type(media_type) and lead[:1] != b"<"):
        return _parse_json_feed(content, url=url, charset=charset)
    return _parse_xml_feed(content, url=url, charset=charset, fast=fast)


# --------------------------------------------------------------------------
# Sniffing


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32le"),
    (codecs.BOM_UTF32_BE, "utf-32be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16le"),
    (codecs.BOM_UTF16_BE, "utf-16be"),
)


def _split_content_type(content_type: str | None) -> tuple[str, str | None]:
    """``'application/rss+xml; charset="GB2312"'`` -> (media type, charset)."""
    if not content_type:
        return "", None
    media_type, _, params = content_type.partition(";")
    found = re.search(r"charset\s*=\s*([^;]+)", params, re.IGNORECASE)
    return media_type.strip().lower(), _clean_charset(found.group(1) if found else None)


def _clean_charset(charset: str | None) -> str | None:
    if not charset:
        return None
    cleaned = charset.strip().strip("\"'").strip().lower()
    return cleaned or None


def _is_json_media_type(media_type: str) -> bool:
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def _significant_start(content: bytes) -> bytes:
    """The first bytes after any UTF-8 BOM and ASCII whitespace (for sniffing)."""
    head = content[:4096]
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    return head.lstrip(b" \t\r\n\f\x00")


def _sniff_charset(content: bytes) -> str | None:
    """BOM, else the zero-byte pattern of UTF-16/32 around a leading ``<``.

    feedparser only recognises BOM-less UTF-16/32 when the document starts
    with ``<?xm``; a bare ``<rss`` in UTF-16BE would otherwise be read as
    UTF-8 and lose every entry.
    """
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name
    head = content[:4]
    if len(head) == 4:
        if head[:3] == b"\x00\x00\x00" and head[3:] == b"<":
            return "utf-32be"
        if head[:1] == b"<" and head[1:] == b"\x00\x00\x00":
            return "utf-32le"
        if head[0] == 0 and head[2] == 0 and head[1] == ord("<") and head[3] != 0:
            return "utf-16be"
        if head[1] == 0 and head[3] == 0 and head[0] == ord("<") and head[2] != 0:
            return "utf-16le"
    return None


def _describe_non_feed(content: bytes) -> str:
    """A short human description of bytes that turned out not to be a feed."""
    lead = _significant_start(content)
    if not lead:
        return "an empty body"
    sample = lead[:1024]
    lowered = sample.lower()
    if lowered.startswith(b"<!doctype html") or re.search(rb"<(html|head|body)[\s>]", lowered):
        return "an HTML page"
    if sample.count(b"\x00") > len(sample) // 8 or re.search(rb"[\x00-\x08\x0e-\x1a]", sample[:64]):
        return f"binary data (starts with {lead[:8]!r})"
    if sample.startswith(b"<"):
        root = _root_element_name(lead)
        if root:
            return f"an XML document whose root element is <{root}>, not an RSS, RDF or Atom feed"
        return "markup without a root element"
    return f"neither XML nor JSON (starts with {lead[:24]!r})"


# What may precede the root element: whitespace, BOM, XML declaration, PIs,
# comments, a DOCTYPE.  Every alternative either matches or runs to the end,
# so skipping them is linear even on hostile input.
_PROLOG_ITEM = re.compile(
    rb"""[\s\x00]+|\xef\xbb\xbf|<\?.*?(?:\?>|\Z)|<!--.*?(?:-->|\Z)"""
    rb"""|<!DOCTYPE(?:[^\[>]|\[[^\]]*(?:\]|\Z))*(?:>|\Z)""",
    re.DOTALL,
)
_ROOT = re.compile(rb"<([A-Za-z_][\w:.-]*)")


def _root_element_name(data: bytes) -> str | None:
    """The first element's name after the prolog, or None if something else comes first."""
    sample = data[:65536]
    pos = 0
    while (item := _PROLOG_ITEM.match(sample, pos)) is not None and item.end() > pos:
        pos = item.end()
    found = _ROOT.match(sample, pos)
    return found.group(1).decode("ascii", "replace") if found else None


# --------------------------------------------------------------------------
# XML (RSS, Atom, RDF) via feedparser

# A declaration whose value is exactly one character reference cannot
# amplify (one character out per reference in), so those are kept; anything
# else -- literal text, nested references, external or parameter entities --
# goes.  The pattern skips over quoted strings, so a '>' inside one does not
# end a declaration early, and it always matches (an unterminated quote or
# declaration runs to the end of the document), so one left-to-right pass
# handles any input in linear time.
_ENTITY_DECLARATION = re.compile(rb"""<!ENTITY(?:"[^"]*(?:"|\Z)|'[^']*(?:'|\Z)|[^"'>])*(?:>|\Z)""")
_SAFE_ENTITY_DECLARATION = re.compile(
    rb"""<!ENTITY\s+[A-Za-z_][\w.-]*\s+(["'])&#(?:[0-9]{1,7}|x[0-9A-Fa-f]{1,6});\1\s*>"""
)


def _defuse_entities(data: bytes) -> bytes:
    """Remove every entity declaration that could expand or fetch anything.

    Works on the whole document, not only the prolog: where a prolog ends is
    exactly what a hostile document makes ambiguous, and a declaration quoted
    in CDATA text is the only (rare, harmless) casualty.  An unterminated
    declaration is cut with everything after it; expat would reject such a
    document anyway.
    """
    if b"<!ENTITY" not in data:
        return data

    def keep_if_safe(match: re.Match[bytes]) -> bytes:
        return match.group() if _SAFE_ENTITY_DECLARATION.fullmatch(match.group()) else b""

    return _ENTITY_DECLARATION.sub(keep_if_safe, data)


def _transcode(content: bytes, charset: str | None) -> tuple[bytes, str | None, Exception | None]:
    """UTF-8 bytes, the encoding used and any encoding complaint (feedparser's rules)."""
    headers = {"content-type": f"application/xml; charset={charset}"} if charset else {}
    info: dict[str, Any] = {}
    try:
        data = convert_to_utf8(headers, content, info)
    except Exception as exc:  # e.g. a non-UTF-8 byte or NUL in the declared encoding name
        raise FeedParseError(
            f"not a readable feed: its character encoding cannot be determined "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    encoding = info.get("encoding") or None
    return data, encoding, info.get("bozo_exception")


def _parse_xml_feed(content: bytes, *, url: str, charset: str | None, fast: bool) -> ParsedFeed:
    charset = charset or _sniff_charset(content)
    utf8, encoding, encoding_problem = _transcode(content, charset)
    # Both parsers decode a reference at a time, so a surrogate pair written
    # as two references kills either one; fixed in the bytes, before them.
    utf8 = repair_references(utf8)
    if fast and encoding:
        shaped = shape_feed(utf8)
        if shaped is not None:
            problem: Any = encoding_problem
            return _xml_parsed_feed(
                shaped.version,
                shaped.feed,
                shaped.entries,
                url=url,
                encoding=encoding,
                bozo_reason=f"{type(problem).__name__}: {problem}" if problem else None,
                raw=raw_entry,
            )
    source = utf8 if encoding else repair_references(content)
    if encoding:
        headers = {"content-type": "application/xml; charset=utf-8"}
    else:  # undecodable: let feedparser's lenient parser do what it can
        headers = {"content-type": f"application/xml; charset={charset}"} if charset else {}
    data = _defuse_entities(source)
    result = _run_feedparser(data, headers)
    version = result.get("version") or ""
    if not version and not (result.entries and _has_feed_root(source)):
        raise FeedParseError(f"not a feed: {_describe_non_feed(content)}")
    problem = result.get("bozo_exception") if result.get("bozo") else None
    problem = problem or encoding_problem
    bozo_reason = f"{type(problem).__name__}: {problem}" if problem else None
    if bozo_reason and len(data) != len(source):
        # Otherwise "undefined entity" reads like the publisher's typo.
        bozo_reason += " (unsafe entity declarations were removed before parsing)"
    return _xml_parsed_feed(
        version, result.feed, result.entries, url=url, encoding=encoding, bozo_reason=bozo_reason
    )


def _xml_parsed_feed(
    version: str,
    feed: Mapping[str, Any],
    entries: Iterable[dict[str, Any]],
    *,
    url: str,
    encoding: str | None,
    bozo_reason: str | None,
    raw: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> ParsedFeed:
    """Feed and entry dicts (feedparser's, or the fast path's look-alikes) as a ParsedFeed.

    ``raw`` makes an entry dict JSON-ready (default: :func:`_jsonable`, which
    walks feedparser's arbitrary nesting; the fast path knows its own shape).
    """
    feed_base = _absolute(url, _xml_base(feed, ("title_detail", "subtitle_detail"))) or url
    return ParsedFeed(
        version=version,
        title=_detail_text(feed, "title"),
        link=_http_url(feed_base, feed.get("link")),
        generator=_single_line(
            feed.get("generator") or _mapping(feed.get("generator_detail")).get("name")
        ),
        ttl_minutes=_positive_int(feed.get("ttl")),
        update_period_seconds=_update_period(
            feed.get("sy_updateperiod"), feed.get("sy_updatefrequency")
        ),
        encoding=encoding,
        bozo_reason=bozo_reason,
        # lxml (the fast path, ``raw`` given) refuses every document holding a
        # character _repaired would change; feedparser's lenient parser does not.
        entries=tuple(
            _xml_entry(e, url, raw=raw(e)) if raw else _repaired(_xml_entry(e, url))
            for e in entries
        ),
    )


def _run_feedparser(data: bytes, headers: dict[str, str]) -> Any:
    """feedparser on the bytes (never a path, see the module docstring).

    feedparser has crash bugs on mangled input (fuzzing found an
    AttributeError for unknown namespaced end tags in its lenient parser and
    a TypeError in its element stack); a document it cannot get through is
    not a feed we can read, so that is what we say.
    """
    try:
        return feedparser.parse(
            io.BytesIO(data),
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # third-party parser: any failure means "unreadable"
        raise FeedParseError(
            f"not a readable feed: feedparser failed ({type(exc).__name__}: {exc})"
        ) from exc


#: Roots of the dialects feedparser reads; a document without a recognised
#: version must have one of these to count (CDF's <CHANNEL> has no version).
_FEED_ROOTS = frozenset({"rss", "rdf", "feed", "channel"})


def _has_feed_root(data: bytes) -> bool:
    """feedparser makes an entry of any <item>; <config><item/></config> is still no feed."""
    root = _root_element_name(data)
    return root is not None and root.rpartition(":")[2].lower() in _FEED_ROOTS


def _xml_entry(item: dict[str, Any], url: str, *, raw: dict[str, Any] | None = None) -> Entry:
    content_html = _first_html_content(item.get("content"))
    summary_html = _detail_html(item, "summary")
    xml_base = _xml_base(item, ("content", "summary_detail", "title_detail"))
    doc_base = _absolute(url, xml_base) or url
    link = _http_url(url, item.get("link"))
    # Our own reading of the text first: feedparser's misses some forms and
    # misreads others (see aggregator.policy.dates).  dict.get, not
    # FeedParserDict.get: the latter quietly answers "updated_parsed" with
    # published_parsed when there is no update date.
    published_text = _nonempty(dict.get(item, "published"))
    updated_text = _nonempty(dict.get(item, "updated"))
    published, published_naive = read_entry_date(
        published_text, _struct_to_datetime(item.get("published_parsed"))
    )
    updated, updated_naive = read_entry_date(
        updated_text, _struct_to_datetime(dict.get(item, "updated_parsed"))
    )
    return Entry(
        guid=_nonempty(item.get("id")),
        link=link,
        title=_detail_text(item, "title") or "",
        published=published,
        updated=updated,
        author=_single_line(item.get("author")),
        content_html=content_html,
        summary_html=summary_html,
        # An explicit xml:base says what the markup is relative to.  Without
        # one, the item's own page is a better base than the feed URL, which
        # for proxies such as FeedBurner or RSSHub is a different host.
        base_url=_absolute(url, xml_base) if xml_base else (link or url),
        images=_xml_images(item, doc_base),
        raw=_jsonable(item) if raw is None else raw,
        published_naive=published_naive,
        updated_naive=updated_naive,
        published_text=published_text,
        updated_text=updated_text,
    )


def _repaired(entry: Entry) -> Entry:
    """The entry with every text field as both databases and every encoder take it.

    The last of the repairs (see :mod:`aggregator.policy.repair`) made where values
    enter, whichever parser read them: lenient parsing lets NUL and other
    controls through, and anything a later stage writes -- the post, the
    entry row, the raw JSON -- comes from these fields.  GUIDs, links and
    image URLs are single-line values; bodies keep their line breaks.
    """
    changes: dict[str, Any] = {}
    for name in ("title", "content_html", "summary_html"):
        value = getattr(entry, name)
        if (fixed := repair_text(value)) is not value:
            changes[name] = fixed
    for name in ("guid", "link", "author", "base_url"):
        value = getattr(entry, name)
        if value is not None and (fixed := repair_text(value, multiline=False)) is not value:
            changes[name] = fixed or None
    images = tuple(repair_text(url, multiline=False) for url in entry.images)
    if any(a is not b for a, b in zip(images, entry.images, strict=True)):
        changes["images"] = tuple(url for url in images if url)
    if (raw := repair_tree(entry.raw)) is not entry.raw:
        changes["raw"] = raw
    return dataclasses.replace(entry, **changes) if changes else entry


def _xml_base(node: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    """The xml:base feedparser recorded on the node's text constructs, if any.

    We never pass feedparser a document URL, so a non-empty ``base`` can only
    come from xml:base inside the document.
    """
    for key in keys:
        value = node.get(key)
        details = value if isinstance(value, list) else [value]
        for detail in details:
            base = _mapping(detail).get("base")
            if isinstance(base, str) and base.strip():
                return base.strip()
    return None


def _first_html_content(contents: Any) -> str:
    if not isinstance(contents, list):
        return ""
    for detail in contents:
        value = _as_html(_mapping(detail))
        if value:
            return value
    return ""


def _detail_html(node: Mapping[str, Any], key: str) -> str:
    detail = dict(_mapping(node.get(f"{key}_detail")))
    if "value" not in detail:
        detail = {"type": "text/html", "value": node.get(key)}
    return _as_html(detail)


def _as_html(detail: Mapping[str, Any]) -> str:
    """A text construct as HTML: markup as is, plain text escaped."""
    value = detail.get("value")
    if not isinstance(value, str) or not value.strip():
        return ""
    value = value.strip()
    if _is_html_type(detail.get("type")):
        return value
    return _text_to_html(value)


def _is_html_type(content_type: Any) -> bool:
    return not isinstance(content_type, str) or "html" in content_type or content_type == ""


def _text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, blank-line paragraphs, line breaks kept."""
    if "\n" not in text:
        return html.escape(text, quote=False)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "\n".join(
        "<p>" + "<br>\n".join(html.escape(line, quote=False) for line in p.split("\n")) + "</p>"
        for p in paragraphs
    )


def _detail_text(node: Mapping[str, Any], key: str) -> str | None:
    """A feedparser text construct (title, ...) as one line of plain text, tag-free."""
    value = node.get(key)
    if not isinstance(value, str):
        return None
    content_type = _mapping(node.get(f"{key}_detail")).get("type", "text/plain")
    text = _html_to_text(value) if _is_html_type(content_type) else value
    return _single_line(_without_markup(text))


# Every pattern here either matches or fails within one run of non-'<'
# characters, or runs to the end: so many unclosed openers in a hostile
# title cost linear time, not quadratic.
_DROPPED_WITH_TEXT = re.compile(
    r"<(script|style)\b[^<>]*>.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)", re.IGNORECASE | re.DOTALL
)
# A tag-shaped run in a title: name, the rest up to '>', or cut off by the next
# '<' or the end.  Whether it is markup is decided by _title_tag below.
_TITLE_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)([^<>]*)(>|(?=<)|\Z)")
# Elements that publishers put into titles as markup (and the dangerous ones
# that attacks use).  Deliberately not every HTML element: "Array<Object>",
# "Optional<Label>" and "Vec<U>" are words, not tags.
_TITLE_ELEMENTS = frozenset(
    {
        "a", "abbr", "audio", "b", "big", "blink", "blockquote", "br", "center", "cite",
        "code", "del", "dfn", "div", "em", "embed", "font", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "iframe", "img", "ins", "kbd", "mark", "marquee", "math", "nobr",
        "noscript", "p", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup",
        "svg", "textarea", "title", "tt", "u", "var", "video", "wbr", "xmp",
    }
)  # fmt: skip
_TITLE_VOID = frozenset({"br", "wbr", "hr", "img"})


def _strip_title_markup(text: str) -> str:
    """Markup out of a title, every other character kept.

    Markup is: script and style with their text, comments, any tag with an
    attribute value (``<img src=x onerror=...>``, even cut off), and the
    formatting tags publishers use (``<b>...</b>``, ``<br>``; a start tag
    only when its end tag follows, so "Vec<U>" stays).  What is left,
    ``vector<int>``, ``map<string,int>``, ``a<b``, is text: the post stage
    (:func:`aggregator.content.clean.inert_title`) makes it inert for templates.
    """
    text = _DROPPED_WITH_TEXT.sub("", text)
    if "<" not in text:
        return text
    lowered = text.lower()
    return _TITLE_TAG.sub(lambda m: _title_tag(m, lowered), text)


def _title_tag(match: re.Match[str], lowered: str) -> str:
    closing, name, rest, end = match.groups()
    name = name.lower()
    if "=" in rest and rest[:1] in ("", " ", "\t", "\n", "\r", "\f", "/"):
        return ""
    if end != ">" or rest.strip(" \t\n\r\f/") or name not in _TITLE_ELEMENTS:
        return match.group()
    if closing or name in _TITLE_VOID or f"</{name}" in lowered:
        return ""
    return match.group()


def _html_to_text(markup: str) -> str:
    """Markup out (script/style with their text, like feedparser), entities decoded."""
    return html.unescape(_strip_title_markup(markup))


def _without_markup(text: str) -> str:
    """Plain text without the markup a title may carry, every word kept.

    Titles end up in Hexo front matter, and themes differ in whether they
    escape ``page.title`` (EJS ``<%- %>`` and Nunjucks without autoescape do
    not).  Tag stripping on the HTML path is not enough: feedparser calls a
    title plain text exactly when it holds tags outside its safe list
    (``<script>``, ``<iframe>``), decoded entities can spell new tags
    (``&lt;script&gt;``), and JSON Feed and Atom ``type="text"`` titles are
    plain text by definition.  So markup goes from every title
    (:func:`_strip_title_markup`), after entity decoding too; a ``<`` that
    is text (``vector<int>``, ``a<b``) stays, and is made inert when the
    post is built.  One linear pass each, whatever the input.
    """
    return _strip_title_markup(text)


# Characters a post header cannot carry (mirrors aggregator.hexo.post's rule):
# C0/C1 controls, DEL, lone surrogates, BOM, U+FFFE/U+FFFF.  Whitespace
# controls are left for the collapsing step, which turns them into spaces.
_UNPRINTABLE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")


def _single_line(value: Any) -> str | None:
    """Controls removed, every run of whitespace one space, ends trimmed."""
    if not isinstance(value, str):
        return None
    text = " ".join(_UNPRINTABLE.sub("", value).split())
    return text or None


def _xml_images(item: Mapping[str, Any], base: str) -> tuple[str, ...]:
    """Image URLs in preference order: thumbnails, image media, image enclosures, itunes."""
    thumbnails = [_mapping(t) for t in _list(item.get("media_thumbnail"))]
    media = [_mapping(m) for m in _list(item.get("media_content"))]
    enclosures = [_mapping(e) for e in _list(item.get("enclosures"))]
    candidates: list[Any] = [t.get("url") for t in thumbnails]
    candidates += [m.get("url") for m in media if _is_image_media(m)]
    candidates += [e.get("href") for e in enclosures if _is_image_media(e)]
    candidates.append(_mapping(item.get("image")).get("href"))
    return _unique_http_urls(base, candidates)


_IMAGE_EXTENSION = re.compile(r"\.(?:jpe?g|png|gif|webp|avif|bmp)$", re.IGNORECASE)


def _is_image_media(media: Mapping[str, Any]) -> bool:
    """Declared as an image (type or medium); with neither, judged by extension."""
    media_type = media.get("type")
    medium = media.get("medium")
    if isinstance(media_type, str) and media_type.strip():
        return media_type.strip().lower().startswith("image/")
    if isinstance(medium, str) and medium.strip():
        return medium.strip().lower() == "image"
    target = media.get("url") or media.get("href")
    return isinstance(target, str) and bool(_IMAGE_EXTENSION.search(urlsplit(target.strip()).path))


def _unique_http_urls(base: str, candidates: Iterable[Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for candidate in candidates:
        absolute = _http_url(base, candidate)
        if absolute:
            seen.setdefault(absolute, None)
    return tuple(seen)


# --------------------------------------------------------------------------
# JSON Feed


def _parse_json_feed(content: bytes, *, url: str, charset: str | None) -> ParsedFeed:
    # json.loads gives lone surrogates ("\ud83d") and NULs back as they are.
    document = repair_tree(_load_json(content, charset))
    if not _is_json_feed(document):
        if isinstance(document, dict):
            shape = "an object with keys " + ", ".join(sorted(document)[:8])
        else:
            shape = f"a {type(document).__name__}"
        raise FeedParseError(f"not a feed: JSON, but not a JSON Feed (top level is {shape})")
    version_text = str(document.get("version") or "")
    home = _http_url(url, document.get("home_page_url"))
    feed_author = _json_author(document)
    items = [item for item in document["items"] if isinstance(item, dict)]
    return ParsedFeed(
        version="json11" if version_text.endswith("1.1") else "json10",
        title=_plain_title(document.get("title")),
        link=home,
        generator=None,
        ttl_minutes=None,
        update_period_seconds=None,
        encoding=charset or json.detect_encoding(content),
        bozo_reason=None,
        entries=tuple(_repaired(_json_entry(item, url, feed_author)) for item in items),
    )


def _load_json(content: bytes, charset: str | None) -> Any:
    """json.loads with its own UTF-8/16/32 detection, or the HTTP charset when given."""
    try:
        if charset and charset.replace("_", "-") not in ("utf-8", "utf8"):
            try:
                return json.loads(content.decode(charset))
            except (LookupError, UnicodeDecodeError):
                pass
        return json.loads(content)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise FeedParseError(f"not a feed: looks like JSON but does not parse ({exc})") from None
    except RecursionError:
        raise FeedParseError("not a feed: JSON nested too deeply to read") from None


def _is_json_feed(document: Any) -> bool:
    """A JSON object with an ``items`` list and a version or title.

    Lenient about the version string: real feeds write ``"1.0"`` as well as
    ``https://jsonfeed.org/version/1``.
    """
    return (
        isinstance(document, dict)
        and isinstance(document.get("items"), list)
        and (isinstance(document.get("version"), str) or isinstance(document.get("title"), str))
    )


def _json_entry(item: dict[str, Any], url: str, feed_author: str | None) -> Entry:
    link = _http_url(url, item.get("url")) or _http_url(url, item.get("external_url"))
    content_html = _json_html(item.get("content_html")) or _json_text(item.get("content_text"))
    attachments = [
        a.get("url")
        for a in _list(item.get("attachments"))
        if isinstance(a, dict) and str(a.get("mime_type", "")).lower().startswith("image/")
    ]
    published_text = _nonempty(item.get("date_published"))
    updated_text = _nonempty(item.get("date_modified"))
    published, published_naive = read_entry_date(published_text, None, whole_seconds=False)
    updated, updated_naive = read_entry_date(updated_text, None, whole_seconds=False)
    return Entry(
        guid=_json_id(item.get("id")),
        link=link,
        title=_plain_title(item.get("title")) or "",
        published=published,
        updated=updated,
        author=_json_author(item) or feed_author,
        content_html=content_html,
        summary_html=_json_text(item.get("summary")),
        base_url=link or url,
        images=_unique_http_urls(
            link or url, [item.get("image"), item.get("banner_image"), *attachments]
        ),
        raw=item,
        published_naive=published_naive,
        updated_naive=updated_naive,
        published_text=published_text,
        updated_text=updated_text,
    )


def _plain_title(value: Any) -> str | None:
    """A JSON Feed title: plain text by the spec, but kept tag-free all the same."""
    return _single_line(_without_markup(value)) if isinstance(value, str) else None


def _json_id(value: Any) -> str | None:
    """JSON Feed ids are strings, but 1.0 feeds in the wild also use numbers."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _nonempty(value)


def _json_html(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _json_text(value: Any) -> str:
    return _text_to_html(value.strip()) if isinstance(value, str) and value.strip() else ""


def _json_author(node: Mapping[str, Any]) -> str | None:
    """JSON Feed 1.1 ``authors`` (first named), else 1.0 ``author``."""
    for author in [*_list(node.get("authors")), node.get("author")]:
        name = _single_line(_mapping(author).get("name"))
        if name:
            return name
    return None


# --------------------------------------------------------------------------
# Small value helpers


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _nonempty(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _absolute(base: str, reference: str | None) -> str | None:
    if not reference:
        return None
    try:
        return urljoin(base, reference.strip())
    except ValueError:  # e.g. a malformed IPv6 host
        return None


#: An absolute http(s) URL that ``urljoin`` gives back as it is, whatever the
#: base: a plain host (and port), a path of URL characters, a non-empty query,
#: and none of what urllib rewrites or drops -- ``;`` parameters, a fragment,
#: an empty ``?``, whitespace and controls (stripped), an upper-case scheme.
#: Most links and image URLs in feeds are of this form; they skip urljoin's
#: parse-and-rebuild of both URLs, a sixth of the parse workers' CPU on a
#: pass of ordinary feeds.  tests/test_parse.py checks the fast answer is
#: urllib's for URLs of every shape.
_PLAIN_HTTP_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?"
    r"(?:/[A-Za-z0-9\-._~%!$&'()*+,=:@/]*)?"
    r"(?:\?[A-Za-z0-9\-._~%!$&'()*+,=:@/?]+)?"
)


def _http_url(base: str, reference: Any) -> str | None:
    """``reference`` resolved against ``base``, if that gives an http(s) URL.

    Other schemes (javascript:, data:, mailto:) and strings with controls or
    spaces are not links a post can use, so they count as absent.
    """
    if not isinstance(reference, str):
        return None
    if _PLAIN_HTTP_URL.fullmatch(reference):
        return reference
    absolute = _absolute(base, reference)
    # split() != [absolute]: some character is whitespace (str.isspace), found in C.
    if not absolute or _UNPRINTABLE.search(absolute) or absolute.split() != [absolute]:
        return None
    return absolute if urlsplit(absolute).scheme in ("http", "https") else None


def _struct_to_datetime(value: Any) -> datetime | None:
    """feedparser's UTC struct_time as an aware datetime (None when unusable)."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _positive_int(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


_PERIOD_SECONDS = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 604800.0,
    "monthly": 2592000.0,
    "yearly": 31536000.0,
}


def _update_period(period: Any, frequency: Any) -> float | None:
    """sy:updatePeriod / sy:updateFrequency as seconds between updates.

    The module's defaults apply to a missing half: period ``daily``,
    frequency ``1``.  Neither present, or nonsense, gives None.
    """
    if period is None and frequency is None:
        return None
    seconds = _PERIOD_SECONDS.get(str(period or "daily").strip().lower())
    times = _positive_int(frequency) if frequency is not None else 1
    if seconds is None or times is None:
        return None
    return seconds / times


def _jsonable(value: Any) -> Any:
    """feedparser's dicts, lists and struct_times as plain JSON values."""
    if isinstance(value, time.struct_time):
        stamp = _struct_to_datetime(value)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def parse_fetched(result: Fetched) -> ParsedFeed:
    """:func:`parse_feed` on a fetch result, with its final URL and charset hint."""
    return parse_feed(
        result.content,
        url=result.final_url,
        content_type=result.content_type,
        charset=result.charset,
    )
