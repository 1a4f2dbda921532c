"""OPML 2.0 to and from ``feeds.yaml``: moving feed lists between readers and us.

The mapping, both ways (also in the README):

* Export nests feeds two folders deep, **group › section › feed**, in the
  order the groups, sections and feeds first appear in ``feeds.yaml``.  A
  feed outline is ``<outline type="rss" text=OUTLET title=OUTLET
  xmlUrl=URL category="/GROUP/SECTION">`` plus, in our own namespace
  (:data:`NAMESPACE`, prefix ``aggregator:``), the settings other readers
  have no place for: ``rsshub`` (the route), ``interval``, and every other
  feed setting that differs from its built-in default, named in camelCase
  (``enabled``, ``timezone``, ``dateOffset``, ``identity``, ``images``,
  ``allowPrivateNetworks`` ...; lists and mappings such as ``fullText``,
  ``keep``, ``block`` and ``imageReferers`` as JSON).  Readers that ignore
  the namespace still get every feed, filed by folder.
* Import takes a feed's folders from the outlines it is nested in
  (outermost first), or, for a feed at the top level, from the first path of
  its ``category`` attribute (``/新媒体/头条``).  Two or more folders give
  group = the outermost, section = the innermost; one folder (what Miniflux,
  FreshRSS and Feedly export) is the section, the group coming from the
  file's ``defaults.group``; none gives the file's defaults.  What nothing
  gives falls back to :data:`~aggregator.config.edit.FALLBACK_GROUP` and
  :data:`~aggregator.config.edit.FALLBACK_SECTION`.  The outlet is the
  outline's ``text`` (else ``title``, else the feed's host name).
  ``aggregator:`` settings are applied; a feed without them takes the
  file's defaults.

So export → import into an empty file → export gives the same document.

Parsing is defensive: OPML never needs a DTD, so a document that declares a
DOCTYPE or an entity is refused before it is parsed (entity expansion is how
an XML file becomes gigabytes or reads local files), and lxml runs with
entity resolution and network access off as a second line.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from lxml import etree
from ruamel.yaml import YAML

from aggregator.config.edit import (
    FALLBACK_GROUP,
    FALLBACK_SECTION,
    build_entry,
    duplicate_of,
    rsshub_route_of,
)
from aggregator.config.feeds import (
    Config,
    ConfigError,
    FeedSpec,
    feed_settings,
    loads_config,
    parse_duration,
)
from aggregator.errors import ConfigurationError

__all__ = [
    "MAX_OPML_BYTES",
    "NAMESPACE",
    "ImportPlan",
    "OpmlError",
    "OpmlFeed",
    "export_opml",
    "parse_opml",
    "plan_import",
]

#: Our attributes' namespace: a URN, so it names no host and never resolves.
NAMESPACE: Final = "urn:x-aggregator:opml:1"
#: A reader's export of ten thousand feeds is about 3 MB.
MAX_OPML_BYTES: Final = 16 * 1024 * 1024

_DECLARATION: Final = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class OpmlError(ConfigurationError, ValueError):
    """The file is not OPML we can read; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One feed outline as read, before it is mapped onto ``feeds.yaml``.

    ``folders`` are the names of the outlines it is nested in, outermost
    first; ``settings`` are our namespace's attributes as feed keys;
    ``problem`` is set when an attribute of ours could not be read (the feed
    is then skipped, with this reason).
    """

    url: str
    title: str | None
    folders: tuple[str, ...] = ()
    category: str | None = None
    html_url: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What an import will do: entries to append, and feeds left out with the reason."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    added: list[OpmlFeed] = field(default_factory=list)
    duplicates: list[tuple[OpmlFeed, str]] = field(default_factory=list)
    skipped: list[tuple[OpmlFeed, str]] = field(default_factory=list)


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def export_opml(config: Config, *, title: str = "aggregator feeds") -> bytes:
    """``config``'s feeds (disabled ones too) as an OPML 2.0 document, UTF-8.

    The output depends only on the config (no timestamp in ``<head>``), so
    exports of one file are byte-identical and can be diffed or committed.
    """
    root = etree.Element("opml", version="2.0", nsmap={"aggregator": NAMESPACE})
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    folders: dict[tuple[str, ...], etree._Element] = {}
    for feed in config.feeds:
        group = folders.get((feed.group,))
        if group is None:
            group = folders[(feed.group,)] = _folder(body, feed.group)
        section = folders.get((feed.group, feed.section))
        if section is None:
            section = folders[(feed.group, feed.section)] = _folder(group, feed.section)
        _feed_outline(section, feed)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _folder(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, "outline", text=name, title=name)


def _feed_outline(parent: etree._Element, feed: FeedSpec) -> None:
    outline = etree.SubElement(parent, "outline")
    outline.set("type", "rss")
    outline.set("text", feed.outlet)
    outline.set("title", feed.outlet)
    outline.set("xmlUrl", feed.url)
    outline.set("category", f"/{feed.group}/{feed.section}")
    if feed.rsshub_route is not None:
        outline.set(_ns("rsshub"), feed.rsshub_route)
    # Every setting that differs from the built-in default, so an export
    # imported into another file (whose defaults may differ) loses nothing.
    for key, value in feed_settings(feed, always=("interval",)).items():
        outline.set(_ns(_attribute(key)), _encode(value))


def _attribute(key: str) -> str:
    """``placeholder_image`` -> ``placeholderImage``: OPML attributes are camelCase."""
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _key(attribute: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), attribute)


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _ns(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


# --------------------------------------------------------------------------
# Import: reading
# --------------------------------------------------------------------------


def parse_opml(data: bytes, *, source: str = "OPML") -> list[OpmlFeed]:
    """Every feed outline (one with an ``xmlUrl``) in document order.

    Raises :class:`OpmlError` for a file that is too big, declares a DOCTYPE
    or entities, is not well-formed, or is not OPML.
    """
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"{source}: {len(data)} bytes is more than any OPML export needs")
    if _DECLARATION.search(data):
        raise OpmlError(
            f"{source}: declares a DOCTYPE or entities, which OPML never needs; refused "
            "(entities can expand to gigabytes or read local files)"
        )
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"{source}:{exc.lineno}: not well-formed XML: {exc.msg}") from None
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype:  # e.g. hidden from the byte check by UTF-16
        raise OpmlError(f"{source}: declares a DOCTYPE, which OPML never needs; refused")
    if _local(root.tag) != "opml":
        raise OpmlError(f"{source}: the root element is <{_local(root.tag)}>, not <opml>")
    body = next((child for child in root if _local(child.tag) == "body"), None)
    if body is None:
        raise OpmlError(f"{source}: has no <body>, so no feeds")
    feeds: list[OpmlFeed] = []
    _walk(body, (), feeds)
    return feeds


def _walk(node: etree._Element, folders: tuple[str, ...], out: list[OpmlFeed]) -> None:
    for child in node:
        if not isinstance(child.tag, str) or _local(child.tag) != "outline":
            continue
        attrs = {
            _text(k).lower(): _text(v)
            for k, v in child.attrib.items()
            if not _text(k).startswith("{")
        }
        name = _one_line(attrs.get("text") or attrs.get("title") or "")
        url = (attrs.get("xmlurl") or "").strip()
        if url:
            out.append(_feed(child, attrs, url, folders))
        else:
            _walk(child, (*folders, name) if name else folders, out)


def _feed(
    outline: etree._Element, attrs: Mapping[str, str], url: str, folders: tuple[str, ...]
) -> OpmlFeed:
    settings: dict[str, Any] = {}
    problem = None
    ours = {
        etree.QName(k).localname: _text(v)
        for k, v in outline.attrib.items()
        if _text(k).startswith(f"{{{NAMESPACE}}}")
    }
    try:
        for attribute, text in ours.items():
            key = _key(attribute)
            settings[key] = _decode(key, text)
    except ValueError as exc:
        problem = f"aggregator: attribute: {exc}"
    title = _one_line(attrs.get("text") or attrs.get("title") or "") or None
    return OpmlFeed(
        url=url,
        title=title,
        folders=folders,
        category=attrs.get("category"),
        html_url=attrs.get("htmlurl"),
        settings=settings,
        line=outline.sourceline if isinstance(outline.sourceline, int) else None,
        problem=problem,
    )


#: How each ``aggregator:`` attribute's text is read; the loader then
#: validates the value exactly as if it had been written in feeds.yaml.
_TEXT_SETTINGS: Final = frozenset(
    {
        "rsshub",
        "interval",
        "placeholder_image",
        "timezone",
        "date_offset",
        "disable_after",
        "identity",
        "images",
    }
)
_FLAG_SETTINGS: Final = frozenset({"enabled", "allow_private_networks"})
_NUMBER_SETTINGS: Final = frozenset({"max_image_bytes"})
_JSON_SETTINGS: Final = frozenset({"full_text", "keep", "block", "image_referers"})


def _decode(key: str, text: str) -> Any:
    if key in _TEXT_SETTINGS:
        if key == "interval":
            parse_duration(text)
        return text
    if key in _FLAG_SETTINGS:
        if text not in ("true", "false"):
            raise ValueError(f"{_attribute(key)} must be true or false, not {text!r}")
        return text == "true"
    if key in _NUMBER_SETTINGS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{_attribute(key)} must be a whole number, not {text!r}") from None
    if key in _JSON_SETTINGS:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_attribute(key)} is not JSON ({exc.msg})") from None
        if key == "full_text" and (
            not isinstance(value, dict)
            or not isinstance(value.get("selector"), str)
            or not all(isinstance(item, str) for item in value.get("remove", []))
        ):
            raise ValueError('fullText must be {"selector": "...", "remove": ["..."]}')
        if key == "full_text":
            return {"selector": value["selector"], "remove": list(value.get("remove", []))}
        return value
    raise ValueError(
        f"{_attribute(key)} is not a setting this version knows; "
        "it was written by a newer aggregator"
    )


def _text(value: str | bytes) -> str:
    """lxml hands back str for the text it parsed; its stubs also allow bytes."""
    return value if isinstance(value, str) else value.decode("utf-8")


def _local(tag: Any) -> str:
    return etree.QName(tag).localname.lower() if isinstance(tag, str) else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Import: mapping onto feeds.yaml
# --------------------------------------------------------------------------


def categories_of(feed: OpmlFeed, defaults: Mapping[str, Any]) -> tuple[str, str]:
    """The (group, section) an imported feed files under; see the module docstring."""
    folders = feed.folders or _category_path(feed.category)
    group = defaults.get("group") or FALLBACK_GROUP
    section = defaults.get("section") or FALLBACK_SECTION
    if len(folders) >= 2:
        return folders[0], folders[-1]
    if len(folders) == 1:
        return group, folders[0]
    return group, section


def _category_path(category: str | None) -> tuple[str, ...]:
    """The first slash-delimited path of an OPML ``category`` (``/a/b, /c`` -> a, b)."""
    if not category:
        return ()
    first = category.split(",", 1)[0]
    return tuple(part for part in (_one_line(p) for p in first.split("/")) if part)


def plan_import(
    feeds: Sequence[OpmlFeed], config: Config, defaults: Mapping[str, Any]
) -> ImportPlan:
    """Decide, feed by feed, what an import adds to ``config`` (whose ``defaults`` are given).

    A feed already in the file, or earlier in the same OPML (readers list a
    feed once per folder it is in), is a duplicate; a feed whose entry would
    not load (a ``feed://`` URL, an empty name...) is skipped with the
    loader's own message.  Pure: nothing is fetched or written.
    """
    plan = ImportPlan()
    planned: list[FeedSpec] = []
    for feed in feeds:
        if feed.problem:
            plan.skipped.append((feed, feed.problem))
            continue
        base = defaults.get("rsshub_base")
        route = feed.settings.get("rsshub") or rsshub_route_of(
            feed.url, base if isinstance(base, str) else None
        )
        existing = duplicate_of(config, feed.url, route)
        if existing is not None:
            where = f"{config.source}:{existing.line}" if config.source else f"line {existing.line}"
            plan.duplicates.append((feed, f"already in {where} as {existing.outlet}"))
            continue
        earlier = duplicate_of(Config(feeds=tuple(planned)), feed.url, route)
        if earlier is not None:
            plan.duplicates.append((feed, f"listed earlier in this file as {earlier.outlet}"))
            continue
        group, section = categories_of(feed, defaults)
        outlet = feed.title or urlsplit(feed.url).hostname or feed.url
        try:
            entry = build_entry(
                url=feed.url,
                outlet=outlet,
                section=section,
                group=group,
                defaults=defaults,
                settings=feed.settings,
            )
            spec = _load_alone(entry, defaults)
        except (ConfigError, ValueError) as exc:
            plan.skipped.append((feed, _reason(exc)))
            continue
        planned.append(spec)
        plan.entries.append(entry)
        plan.added.append(feed)
    return plan


def _load_alone(entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> FeedSpec:
    """``entry`` validated by the real loader, under the file's defaults."""
    out = io.StringIO()
    YAML(typ="rt").dump({"defaults": dict(defaults), "feeds": [dict(entry)]}, out)
    (spec,) = loads_config(out.getvalue(), source="entry").feeds
    return spec


def _reason(exc: Exception) -> str:
    if isinstance(exc, ConfigError) and exc.issues:
        return "; ".join(f"{i.key.partition('.')[2] or i.key}: {i.message}" for i in exc.issues)
    return str(exc)
