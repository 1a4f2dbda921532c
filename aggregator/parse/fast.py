"""A fast reading of plain RSS 2.0 and Atom 1.0, or "not sure" (None).

feedparser costs about half a millisecond per item, most of it in its SAX
callbacks, and dominated cold ingest.  This module reads the common,
well-formed documents with :mod:`lxml` instead and hands back the same
*feedparser-shaped* dicts (``version``, the feed dict, one dict per entry)
that :mod:`aggregator.parse.parser` turns into :class:`~aggregator.parse.parser.Entry`
values, so both paths share every line of that second step.

Equality with feedparser is the whole point, so the rule is: mimic exactly
what feedparser 6 does for each element it understands, using feedparser's
own pieces where they exist (``_parse_date``, ``_urljoin``, ``_cp1252``,
``looks_like_html``, ``_enforce_href``, ``map_content_type``), and answer
None -- "use feedparser" -- for anything else.  In particular None for:

* anything but ``<rss version="2.x">`` with one ``<channel>``, or an Atom 1.0
  ``<feed>`` (so RSS 0.9x/1.0, RDF, Atom 0.3, CDF, unknown roots);
* a DOCTYPE, an entity declaration anywhere, an ``xml:base`` (or bare
  ``base``) attribute anywhere, any lxml error (not well-formed);
* a document prefix that is one of feedparser's standard prefixes bound to
  another namespace (feedparser maps elements by prefix name, not by URI, in
  that case), or an unknown namespace that is the default one or declared
  under more than one prefix (feedparser names its elements by a prefix);
* inside feed and entry: an element feedparser has a handler for that is not
  handled (or known to be harmless) here; an element without a handler whose
  name (or a descendant's) could land on a key the entry is built from
  (feedparser's ``FeedParserDict`` renames ``date`` to ``updated``, for
  instance); markup or comments inside a text element; a second title,
  author, date or id; Atom text constructs other than ``text``/``html``;
  ``content src=``; namespaced attributes other than ``xml:lang``; the few
  orderings where feedparser's depth bookkeeping would keep one element's
  value with another's detail.

What is modelled, not declined, because real feeds do it: feedparser reads a
second summary-like element (description, summary, itunes:summary,
media:description) before any content as *content*, keeps every content
element in order, lets media:title stand in for a missing title, and lets a
permalink guid (or Atom id) be the link until a <link> says otherwise.

The dicts hold what :func:`aggregator.parse.parser._xml_entry` reads plus what a
later rule might want; an entry dict holds at most ``id``, ``guidislink``,
``link``, ``links`` [{rel, type, href, ...}], ``title``/``title_detail``
{type}, ``summary``/``summary_detail`` {type, value}, ``content`` [{type,
value}, ...], ``published``/``published_parsed``, ``updated``/
``updated_parsed``, ``author``, ``tags`` [{term, scheme, label}],
``enclosures`` [{href, type, length, ...}], ``media_thumbnail`` and
``media_content`` [attribute dicts] and ``image`` {href}.  That is smaller
than feedparser's dict (no ``*_detail`` language/base, no unknown elements),
which is the one intended difference: ``Entry.raw``.

Equality is proven by tests/test_parse_fast.py: the benchmark farm's feeds,
seed feeds in both dialects, every corpus file (the fast path declines or
agrees) and hand-written and generated edge cases, all compared field by
field against the feedparser path.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin
from feedparser.util import FeedParserDict
from lxml import etree

__all__ = ["Shaped", "raw_entry", "shape_feed"]


@dataclass(frozen=True, slots=True)
class Shaped:
    """A document read the way feedparser would have read it."""

    version: str
    feed: dict[str, Any]
    entries: list[dict[str, Any]]


class _Decline(Exception):
    """Raised anywhere below: this document is not one we are sure about."""


_ATOM_NS = "http://www.w3.org/2005/Atom"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
# RSS 2.0 under a default namespace (feedparser maps these to no prefix).
_RSS_ROOTS = frozenset(
    {
        "{http://backend.userland.com/rss2}rss",
        "{http://backend.userland.com/rss}rss",
        "{http://blogs.law.harvard.edu/tech/rss}rss",
    }
)

# feedparser's namespace table, keyed as its strict parser looks URIs up.
_STANDARD_PREFIX: dict[str, str] = {k.lower(): v for k, v in _FeedParserMixin.namespaces.items()}
_STANDARD_PREFIX_NAMES = frozenset(v for v in _STANDARD_PREFIX.values() if v)
# Declaring these changes feedparser's idea of the version (RSS 1.0 / 0.90).
_VERSION_NAMESPACES = frozenset(
    {"http://purl.org/rss/1.0/", "http://my.netscape.com/rdf/simple/0.9/"}
)

# Element names feedparser has a handler for (``_start_x`` / ``_end_x``).
_SPECIAL = frozenset(
    name.partition("_")[2].partition("_")[2]
    for name in dir(_FeedParserMixin)
    if name.startswith(("_start_", "_end_"))
)
_CAN_BE_RELATIVE = frozenset(_FeedParserMixin.can_be_relative_uri)
_HTML_TYPES = frozenset(_FeedParserMixin.html_types)
_looks_like_html: Callable[[str], bool] = _FeedParserMixin.looks_like_html
_map_content_type: Callable[[str], str] = _FeedParserMixin.map_content_type
_enforce_href: Callable[[dict[str, str]], dict[str, str]] = _FeedParserMixin._enforce_href

# Keys an unhandled element must not land on: what the entry/feed is built
# from, and what FeedParserDict renames (``<date>`` is stored as ``updated``).
_KEYMAP_NAMES = frozenset(FeedParserDict.keymap) | frozenset(
    v
    for value in FeedParserDict.keymap.values()
    for v in (value if isinstance(value, list) else [value])
)
_READ_KEYS = _KEYMAP_NAMES | {
    "author",
    "category",
    "content",
    "enclosures",
    "generator",
    "generator_detail",
    "guidislink",
    "id",
    "image",
    "link",
    "links",
    "media_content",
    "media_thumbnail",
    "published",
    "published_parsed",
    "summary",
    "summary_detail",
    "tags",
    "title",
    "title_detail",
    "ttl",
    "sy_updatefrequency",
    "sy_updateperiod",
    "updated",
    "updated_parsed",
}

# Elements with a feedparser handler whose effect never reaches anything the
# feed or entry is built from (tags, rights, language, ...): skipped when
# they are plain leaves without attributes beyond the ones listed.
_HARMLESS_SPECIAL = frozenset(
    {
        "copyright",
        "rights",
        "dc_rights",
        "language",
        "dc_language",
        "webmaster",
        "dc_publisher",
        "cloud",
        "itunes_explicit",
        "itunes_block",
        "itunes_subtitle",
        "media_rating",
        "media_credit",
        "media_license",
        "media_restriction",
    }
)
# What media:group may hold: handled as if directly in the entry (feedparser
# ignores the group element itself), plus harmless ones.
_IN_MEDIA_GROUP = frozenset(
    {
        "media_content",
        "media_thumbnail",
        "media_description",
    }
)
_ITUNES = "http://www.itunes.com/"
_CATEGORY = frozenset({"category", "dc_subject", "media_category", "keywords"})
_PUBLISHED = frozenset({"published", "pubdate", "issued", "dcterms_issued"})
_UPDATED = frozenset({"updated", "modified", "lastbuilddate", "dc_date", "dcterms_modified"})
_RSS_AUTHOR = frozenset({"author", "dc_creator", "dc_author", "itunes_author"})

# Attributes feedparser reads as xml:base (any prefix: it also looks at the
# bare local name) and namespace declarations, found on the bytes.
_BASE_ATTRIBUTE = re.compile(rb"[\s:]base\s*=")
_NAMESPACE_DECLARATION = re.compile(rb"""xmlns(?::([^\s=]+))?\s*=\s*(["'])(.*?)\2""", re.DOTALL)

_C1_CONTROL = re.compile("[\x80-\x9f]")
if not set(_cp1252) <= set(range(0x80, 0xA0)):  # what _finish relies on
    raise ImportError("feedparser's cp1252 table maps characters outside U+0080..U+009F")

_local = threading.local()


def _parser() -> etree.XMLParser:
    """One hardened parser per thread (lxml parsers are not thread-safe)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=False,
            remove_pis=False,
        )
        _local.parser = parser
    return parser


def shape_feed(data: bytes) -> Shaped | None:
    """The feedparser-shaped reading of UTF-8 ``data``, or None when not sure.

    ``data`` must be what :func:`aggregator.parse.parser._transcode` produced (UTF-8
    with a UTF-8 declaration), so both paths see the same characters.
    """
    if b"<!ENTITY" in data or b"<!DOCTYPE" in data[:4096]:
        return None
    if b"base" in data and _BASE_ATTRIBUTE.search(data):
        return None
    unknown = _declarations_are_plain(data)
    if unknown is None:
        return None
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError):
        return None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.system_url:
        return None
    token = _UNKNOWN_PREFIXES.set(unknown)
    try:
        if root.tag == "rss" or root.tag in _RSS_ROOTS:
            return _rss(root)
        if root.tag == f"{{{_ATOM_NS}}}feed":
            return _atom(root)
    except _Decline:
        return None
    finally:
        _UNKNOWN_PREFIXES.reset(token)
    return None


def _declarations_are_plain(data: bytes) -> dict[str, str] | None:
    """The prefix of each unknown namespace, or None if feedparser could read names otherwise.

    feedparser renames an element by its document prefix (``namespacemap``),
    so ``xmlns:dc="...content/"`` would turn real ``dc:`` elements declared
    under another prefix into ``content_*``; an element in a namespace it
    does not know is named by (the first) prefix declared for it; and
    declaring the RSS 1.0 or RSS 0.90 namespace changes the version it
    reports.  So: no standard prefix name bound to anything but its own
    namespace, and an unknown namespace only under one prefix that is bound
    to nothing else.  Errs on the side of "not plain": a declaration quoted
    in CDATA counts too.
    """
    unknown: dict[str, set[str | None]] = {}
    bound: dict[str, set[str]] = {}
    for match in _NAMESPACE_DECLARATION.finditer(data):
        raw_uri = match.group(3)
        if b"&" in raw_uri or b"<" in raw_uri:
            return None
        uri = raw_uri.decode("utf-8", "replace")
        if uri.lower() in _VERSION_NAMESPACES:
            return None
        prefix = match.group(1).decode("utf-8", "replace") if match.group(1) else None
        standard = _standard_prefix(uri)
        if prefix is not None:
            if prefix.lower() in _STANDARD_PREFIX_NAMES and prefix != standard:
                return None
            bound.setdefault(prefix.lower(), set()).add(uri)
        if standard is None and uri:
            unknown.setdefault(uri, set()).add(prefix)
    prefixes: dict[str, str] = {}
    for uri, declared in unknown.items():
        (prefix, *others) = declared
        if not others and prefix is not None and bound[prefix.lower()] == {uri}:
            prefixes[uri] = prefix.lower()
    return prefixes


def _standard_prefix(uri: str) -> str | None:
    lowered = uri.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    if lowered in _VERSION_NAMESPACES:
        return None
    return _STANDARD_PREFIX.get(lowered)


_NAME_CACHE: dict[str, str] = {}
#: This document's unknown namespaces and the one prefix each is declared with.
_UNKNOWN_PREFIXES: ContextVar[Mapping[str, str]] = ContextVar(
    "_UNKNOWN_PREFIXES", default=MappingProxyType({})
)


def _name(tag: str) -> str:
    """feedparser's name for an element: ``{dc uri}creator`` -> ``dc_creator``."""
    cached = _NAME_CACHE.get(tag)
    if cached is not None:
        return cached
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        prefix = _standard_prefix(uri)
        if prefix is None:
            # Named by its document prefix, as feedparser does; not cached.
            unknown = _UNKNOWN_PREFIXES.get().get(uri)
            if unknown is None:
                raise _Decline
            return f"{unknown}_{local.lower()}"
    else:
        prefix, local = "", tag
    name = f"{prefix}_{local.lower()}" if prefix else local.lower()
    if len(_NAME_CACHE) < 4096:
        _NAME_CACHE[tag] = name
    return name


def _children(element: etree._Element) -> list[tuple[str, etree._Element]]:
    """(feedparser name, element) of the element children; comments and PIs skipped."""
    out = []
    for child in element:
        tag = child.tag
        if isinstance(tag, str):
            out.append((_name(tag), child))
    return out


def _attributes(element: etree._Element) -> dict[str, str]:
    """Attributes as feedparser's strict parser hands them over.

    Names lowercased, ``rel``/``type`` values lowercased; ``xml:lang`` is
    dropped (it only feeds language fields); any other namespaced attribute
    declines (feedparser stores it under its bare local name too, where it
    can shadow a plain one).
    """
    attrib = element.attrib
    if not attrib:
        return {}
    out: dict[str, str] = {}
    for raw_key, raw_value in attrib.items():
        # lxml gives str for parsed text; its stubs also allow bytes.
        key = raw_key if isinstance(raw_key, str) else raw_key.decode("utf-8")
        value = raw_value if isinstance(raw_value, str) else raw_value.decode("utf-8")
        if key.startswith("{"):
            if key == f"{{{_XML_NS}}}lang":
                continue
            raise _Decline
        name = key.lower()
        if name in out or name in ("lang", "base"):
            raise _Decline
        out[name] = value.lower() if name in ("rel", "type") else value
    return out


def _text(element: etree._Element) -> str:
    """The text of a leaf element; markup or comments inside decline."""
    if len(element):
        raise _Decline
    return element.text or ""


def _pop(raw: str, name: str, *, resolve: bool = True) -> str:
    """feedparser's ``pop`` for a text element, up to the HTML guess."""
    output = raw.strip()
    if resolve and name in _CAN_BE_RELATIVE and output:
        output = _urljoin("", output)
    return output


def _finish(output: str) -> str:
    """The rest of ``pop``: the UTF-8-read-as-Latin-1 repair and cp1252 mapping.

    Both are no-ops on ASCII, and the mapping only touches U+0080..U+009F;
    checking first saves most of the fast path's time on long bodies.
    """
    if output.isascii():
        return output
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        output = output.encode("iso-8859-1").decode("utf-8")
    if _C1_CONTROL.search(output) is None:
        return output
    return output.translate(_cp1252)


def _plain_leaf(element: etree._Element) -> str:
    """A leaf without attributes (xml:lang aside): its raw text."""
    if _attributes(element):
        raise _Decline
    return _text(element)


def _text_construct(
    element: etree._Element, name: str, *, default_type: str, atom: bool
) -> tuple[str, str]:
    """(value, mapped type) of a title/summary/content-like element."""
    attrs = _attributes(element)
    if atom:
        if set(attrs) - {"type"}:
            raise _Decline
        content_type = _map_content_type(attrs.get("type", default_type))
        if content_type not in ("text/plain", "text/html"):
            raise _Decline
    else:
        if attrs:
            raise _Decline
        content_type = _map_content_type(default_type)
    output = _pop(_text(element), name)
    if not atom and content_type == "text/plain" and _looks_like_html(output):
        content_type = "text/html"
    return _finish(output), content_type


def _start_link(context: dict[str, Any], element: etree._Element, *, in_entry: bool) -> None:
    """feedparser's ``_start_link``/``_end_link`` for <link> and atom:link."""
    attrs = _attributes(element)
    attrs.setdefault("rel", "alternate")
    if attrs["rel"] == "self":
        attrs.setdefault("type", "application/atom+xml")
    else:
        attrs.setdefault("type", "text/html")
    attrs = _enforce_href(attrs)
    if "href" in attrs:
        attrs["href"] = _urljoin("", attrs["href"])
    links: list[dict[str, str]] = context.setdefault("links", [])
    links.append(attrs)
    if "href" in attrs:
        if len(element):
            raise _Decline
        if attrs.get("rel") == "alternate" and _map_content_type(attrs["type"]) in _HTML_TYPES:
            context["link"] = attrs["href"]
        return
    output = _finish(_pop(_text(element), "link"))
    if in_entry:
        output = output.replace("&amp;", "&")
    output = re.sub("&([A-Za-z0-9_]+);", r"&\g<1>", output)
    context["link"] = output
    if output:
        links[-1]["href"] = output


class _Context:
    """What feedparser keeps per feed or entry while reading its children."""

    def __init__(self, *, atom: bool, entry: bool) -> None:
        self.atom = atom
        self.entry = entry
        self.data: dict[str, Any] = {}
        self.seen: set[str] = set()
        # feedparser's hasContent, and how deep the stored summary came from
        # (it keeps a summary from a shallower element over a deeper one).
        self.has_content = False
        self.summary_depth: int | None = None
        # feedparser's title_depth: a title was stored and not reset since.
        self.title_holds = False

    def once(self, kind: str) -> None:
        if kind in self.seen:
            raise _Decline
        self.seen.add(kind)

    def child(self, name: str, element: etree._Element) -> None:
        data = self.data
        if name == "title":
            self.once("title")
            value, content_type = _text_construct(
                element, name, default_type="text/plain", atom=self.atom
            )
            data["title"] = value
            data["title_detail"] = {"type": content_type}
            self.title_holds = bool(value)
        elif name == "link":
            _start_link(data, element, in_entry=self.entry)
        elif name in ("guid", "id"):
            self._guid(element)
        elif name in _PUBLISHED:
            self.once("published")
            value = _finish(_pop(_plain_leaf(element), "published"))
            data["published"] = value
            data["published_parsed"] = _parse_date(value)
        elif name in _UPDATED:
            self.once("updated")
            value = _finish(_pop(_plain_leaf(element), "updated"))
            data["updated"] = value
            data["updated_parsed"] = _parse_date(value)
        elif name in _CATEGORY:
            self._category(name, element)
        elif name == "generator":
            self.once("generator")
            attrs = _attributes(element)
            value = _finish(_pop(_text(element), "generator"))
            data["generator"] = value
            data["generator_detail"] = {**_enforce_href(attrs), "name": value}
        elif name in _HARMLESS_SPECIAL:
            _text(element)
        elif name in ("author", "dc_creator", "dc_author", "itunes_author") and self.atom:
            self._atom_author(element)
        elif name in _RSS_AUTHOR:
            self.once("author")
            data["author"] = _finish(_pop(_plain_leaf(element), "author"))
        elif name == "contributor" and self.atom:
            for child_name, child in _children(element):
                if child_name not in ("name", "email", "uri"):
                    raise _Decline
                _plain_leaf(child)
        elif self.entry:
            self._entry_child(name, element)
        else:
            self._feed_child(name, element)

    def _guid(self, element: etree._Element) -> None:
        self.once("id")
        attrs = _attributes(element)
        if set(attrs) - {"ispermalink"}:
            raise _Decline
        is_link = attrs.get("ispermalink", "true") == "true"
        value = _finish(_pop(_text(element), "id", resolve=is_link))
        data = self.data
        data["id"] = value
        data.setdefault("guidislink", is_link and "link" not in data)
        if is_link:
            data.setdefault("link", value)

    def _category(self, name: str, element: etree._Element) -> None:
        attrs = _attributes(element)
        if name == "media_category":
            attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
        tags: list[dict[str, Any]] = self.data.setdefault("tags", [])
        term = attrs.get("term")
        scheme = attrs.get("scheme", attrs.get("domain"))
        label = attrs.get("label")
        if term or scheme or label:
            _add_tag(tags, {"term": term, "scheme": scheme, "label": label})
        value = _finish(_pop(_text(element), name))
        if value:
            if tags and not tags[-1]["term"]:
                tags[-1]["term"] = value
            else:
                _add_tag(tags, {"term": value, "scheme": None, "label": None})

    def _atom_author(self, element: etree._Element) -> None:
        """Atom <author>: name/email children (or plain text, as in RSS)."""
        self.once("author")
        if _attributes(element):
            raise _Decline
        if not len(element):
            self.data["author"] = _finish(_pop(element.text or "", "author"))
            return
        if (element.text or "").strip():
            raise _Decline
        parts: dict[str, str] = {}
        for child in element:
            if (child.tail or "").strip():
                raise _Decline
            if not isinstance(child.tag, str):
                continue
            child_name = _name(child.tag)
            if child_name not in ("name", "email", "uri") or child_name in parts:
                raise _Decline
            # name and email are popped without feedparser's text repairs.
            parts[child_name] = _plain_leaf(child).strip()
        name, email = parts.get("name"), parts.get("email")
        if name and email:
            author = f"{name} ({email})"
        elif name:
            author = name
        elif email:
            author = email
        else:
            author = ""
        self.data["author"] = author

    def _entry_child(self, name: str, element: etree._Element, depth: int = 0) -> None:  # noqa: C901 - a dispatch on element names, as feedparser's handlers
        data = self.data
        if name in ("description", "summary", "itunes_summary", "media_description"):
            if "summary" in data and not self.has_content:
                # feedparser's _start_summary/_start_description: a second
                # summary before any content is read as content (text/plain).
                self._content(element, name, default_type="text/plain")
                return
            if self.summary_depth is not None and depth > self.summary_depth:
                raise _Decline  # feedparser would update summary_detail only
            default_type = "text/plain" if name in ("summary", "itunes_summary") else "text/html"
            value, content_type = _text_construct(
                element, name, default_type=default_type, atom=self.atom
            )
            data["summary"] = value
            data["summary_detail"] = {"type": content_type, "value": value}
            self.summary_depth = depth
        elif name == "media_group" and depth == 0:
            if _attributes(element):
                raise _Decline
            for child_name, child in _children(element):
                if child_name == "media_title":
                    self._media_title(child)
                elif child_name in _HARMLESS_SPECIAL:
                    _text(child)
                elif child_name in _IN_MEDIA_GROUP:
                    self._entry_child(child_name, child, depth=1)
                else:
                    _unhandled(child_name, child)
        elif name == "source" and not self.atom:
            _text(element)
            self.title_holds = False  # feedparser's _start_source resets title_depth
        elif name == "itunes_keywords":
            # (with attributes feedparser skips the terms: its handler fails quietly)
            tags: list[dict[str, Any]] = data.setdefault("tags", [])
            for term in _finish(_pop(_plain_leaf(element), name)).split(","):
                if term.strip():
                    _add_tag(tags, {"term": term.strip(), "scheme": _ITUNES, "label": None})
        elif name == "content":
            self._content(element, name, default_type="text/plain")
        elif name == "content_encoded":
            self._content(element, name, default_type="text/html")
        elif name == "enclosure":
            attrs = _enforce_href(_attributes(element))
            _text(element)
            attrs["rel"] = "enclosure"
            data.setdefault("links", []).append(attrs)
        elif name == "media_content":
            attrs = _attributes(element)
            _text(element)
            data.setdefault("media_content", []).append(attrs)
        elif name == "media_thumbnail":
            attrs = _attributes(element)
            url = _finish(_pop(_text(element), "url"))
            if url.strip() and "url" not in attrs:
                attrs["url"] = url
            data.setdefault("media_thumbnail", []).append(attrs)
        elif name == "itunes_image":
            attrs = _attributes(element)
            _text(element)
            if attrs.get("href"):
                data["image"] = {"href": attrs["href"]}
            elif attrs.get("url"):
                data["image"] = {"href": attrs["url"]}
        else:
            _unhandled(name, element)

    def _media_title(self, element: etree._Element) -> None:
        """media:title in media:group: the entry's title only until a real one holds."""
        if self.title_holds:
            _text_construct(element, "title", default_type="text/plain", atom=self.atom)
            return
        if "title" in self.seen:
            raise _Decline  # feedparser would replace title_detail but not title
        value, content_type = _text_construct(
            element, "title", default_type="text/plain", atom=self.atom
        )
        self.data["title"] = value
        self.data["title_detail"] = {"type": content_type}

    def _content(self, element: etree._Element, name: str, *, default_type: str) -> None:
        """feedparser's _start_content / _start_content_encoded and _end_content."""
        if "src" in _attributes(element):
            raise _Decline
        value, content_type = _text_construct(
            element, name, default_type=default_type, atom=self.atom
        )
        self.has_content = True
        self.data.setdefault("content", []).append({"type": content_type, "value": value})
        self.data.setdefault("summary", value)  # every type allowed here is copied

    def _feed_child(self, name: str, element: etree._Element) -> None:  # noqa: C901 - a dispatch on element names, as feedparser's handlers
        data = self.data
        if name in ("ttl", "sy_updateperiod", "sy_updatefrequency"):
            self.once(name)
            data[name] = _finish(_pop(_plain_leaf(element), name))
        elif name in ("description", "summary", "itunes_summary"):
            # Harmless once; after a feed-level summary feedparser would read
            # it as content and carry hasContent into the first entry.
            if "feed summary" in self.seen:
                raise _Decline
            if name != "description":
                self.seen.add("feed summary")
            _text_construct(element, name, default_type="text/plain", atom=self.atom)
        elif name in ("subtitle", "tagline", "info"):
            _text_construct(element, name, default_type="text/plain", atom=self.atom)
        elif name == "itunes_category":
            _itunes_category(element)
        elif name == "itunes_owner":
            if _attributes(element):
                raise _Decline
            for child_name, child in _children(element):
                if child_name not in ("itunes_name", "itunes_email"):
                    raise _Decline
                _plain_leaf(child)
        elif name == "itunes_keywords":
            _plain_leaf(element)  # with attributes its handler fails (quietly)
        elif name == "image" and not self.atom:
            for child_name, child in _children(element):
                if child_name not in ("title", "url", "link", "width", "height", "description"):
                    raise _Decline
                _plain_leaf(child)
        elif name in ("itunes_image", "itunes_link"):
            _text(element)
        elif name in ("skiphours", "skipdays"):
            if _attributes(element):
                raise _Decline
            for child_name, child in _children(element):
                if child_name not in ("hour", "day"):
                    raise _Decline
                _plain_leaf(child)
        elif name == "managingeditor":  # the feed's author: nothing we read
            self.once("managingeditor")
            _plain_leaf(element)
        elif name in ("icon", "logo") and self.atom:
            _plain_leaf(element)
        else:
            _unhandled(name, element)


def _add_tag(tags: list[dict[str, Any]], tag: dict[str, Any]) -> None:
    if tag not in tags:  # feedparser's _add_tag keeps one of each
        tags.append(tag)


def _itunes_category(element: etree._Element) -> None:
    """Nested itunes:category elements only add tags."""
    for child_name, child in _children(element):
        if child_name != "itunes_category":
            raise _Decline
        _itunes_category(child)


def _unhandled(name: str, element: etree._Element) -> None:
    """An element we do not read: fine only if feedparser would not either.

    That is: no handler, a name that lands on no key we read, and the same
    for everything inside it.
    """
    if name in _SPECIAL or name in _READ_KEYS:
        raise _Decline
    if len(element):
        for child_name, child in _children(element):
            _unhandled(child_name, child)


def _finish_entry(context: _Context) -> dict[str, Any]:
    data = context.data
    links = data.get("links", [])
    data["enclosures"] = [
        {k: v for k, v in link.items() if k != "rel"}
        for link in links
        if link["rel"] == "enclosure"
    ]
    return data


def _rss(root: etree._Element) -> Shaped:
    version_attr = root.get("version", "")
    if not version_attr.startswith("2."):
        raise _Decline
    if set(_attributes(root)) - {"version"}:
        raise _Decline
    children = _children(root)
    if len(children) != 1 or children[0][0] != "channel":
        raise _Decline
    return _shaped("rss20", children[0][1], "item", atom=False)


def _atom(root: etree._Element) -> Shaped:
    return _shaped("atom10", root, "entry", atom=True)


def _shaped(version: str, container: etree._Element, item: str, *, atom: bool) -> Shaped:
    """The feed's own elements and its entries, from the element that holds both."""
    if _attributes(container):
        raise _Decline
    feed = _Context(atom=atom, entry=False)
    entries: list[dict[str, Any]] = []
    for name, element in _children(container):
        if name == item:
            entries.append(_entry(element, atom=atom))
        else:
            feed.child(name, element)
    return Shaped(version, feed.data, entries)


def _entry(element: etree._Element, *, atom: bool) -> dict[str, Any]:
    if _attributes(element):
        raise _Decline
    context = _Context(atom=atom, entry=True)
    for name, child in _children(element):
        context.child(name, child)
    return _finish_entry(context)


def raw_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry dict as JSON: everything is str/list/dict already but the dates.

    ``*_parsed`` rendered exactly as :func:`aggregator.parse.parser._jsonable` does
    (``YYYY-MM-DDTHH:MM:SSZ``, None when not a valid date), without walking
    the rest.
    """
    raw = dict(entry)
    for key in ("published_parsed", "updated_parsed"):
        value = raw.get(key)
        if value is not None:
            try:
                year, month, day, hour, minute, second = value[:6]
                raw[key] = datetime(year, month, day, hour, minute, second, tzinfo=UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
            except (TypeError, ValueError, OverflowError):
                raw[key] = None
    return raw
