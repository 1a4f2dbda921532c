"""``entries.raw``: a stored entry that can be turned back into an :class:`Entry`.

ARCHITECTURE invariant 7 asks that every later stage (clean-up, filters,
images) can be re-run over stored items without refetching.  The parser's
own item dict is not enough for that (its dates are already flattened to
text, its HTML is split across feedparser's detail records), so the stored
form is the :class:`~aggregator.parse.parser.Entry` fields themselves -- the HTML as
the feed sent it, before any clean-up -- plus:

* ``full_text``: the article body cut from the page by a ``full_text``
  selector, when one was fetched, so a re-run keeps the full text instead of
  falling back to the teaser;
* ``page``: the article page itself (its final URL, the base for its links,
  and its HTML, zlib-compressed and base64-encoded: pages run to hundreds of
  kilobytes of very repetitive markup), so a changed ``full_text`` selector
  or ``remove`` list can be re-applied offline (:func:`load_page`);
* ``item``: the parser's item dict minus the content it duplicates (tags,
  enclosures and such, for rules not written yet).

Rows written before this format (no ``format`` key) cannot be rebuilt;
:func:`load_entry` says so with :class:`RawEntryError`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aggregator.errors import AggregatorError
from aggregator.types import Entry

__all__ = [
    "MAX_STORED_PAGE",
    "RAW_FORMAT",
    "RawEntryError",
    "StoredPage",
    "dump_entry",
    "load_entry",
    "load_page",
]

#: Version of the stored shape; bump it when fields change meaning.
RAW_FORMAT: Final = 1

# Already stored as content_html / summary_html.
_DUPLICATED_ITEM_KEYS: Final = frozenset(
    {"content", "summary", "summary_detail", "content_html", "content_text"}
)


#: Compressed pages larger than this (bytes, before base64) are not kept: the
#: entry then behaves as one stored before pages were (``reprocess --refetch``).
MAX_STORED_PAGE: Final = 512 * 1024


class RawEntryError(AggregatorError, ValueError):
    """A stored raw entry cannot be turned back into an Entry."""


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A fetched article page: where it ended up (after redirects) and its HTML."""

    url: str
    html: str


def _dump_page(page: StoredPage) -> dict[str, str] | None:
    packed = zlib.compress(page.html.encode("utf-8"), 6)
    if len(packed) > MAX_STORED_PAGE:
        return None
    return {"url": page.url, "html_zlib": base64.b64encode(packed).decode("ascii")}


def _stamp(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _date(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise RawEntryError(f"raw entry field {name!r} is not an ISO date: {value!r}") from None
    if parsed.tzinfo is None:
        raise RawEntryError(f"raw entry field {name!r} has no time zone: {value!r}")
    return parsed


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def dump_entry(
    entry: Entry, *, full_text: str | None = None, page: StoredPage | None = None
) -> dict[str, Any]:
    """The entry as JSON-ready data; :func:`load_entry` gives it back equal."""
    item = {k: v for k, v in entry.raw.items() if k not in _DUPLICATED_ITEM_KEYS}
    data: dict[str, Any] = {
        "format": RAW_FORMAT,
        "guid": entry.guid,
        "link": entry.link,
        "title": entry.title,
        "published": _stamp(entry.published),
        "updated": _stamp(entry.updated),
        # Whether the feed's date text named no zone (the `timezone` rule needs it).
        "published_naive": entry.published_naive,
        "updated_naive": entry.updated_naive,
        # The texts themselves: a re-run re-reads them under today's date rules.
        "published_text": entry.published_text,
        "updated_text": entry.updated_text,
        "author": entry.author,
        "content_html": entry.content_html,
        "summary_html": entry.summary_html,
        "base_url": entry.base_url,
        "images": list(entry.images),
        "item": item,
    }
    if full_text is not None:
        data["full_text"] = full_text
    stored_page = _dump_page(page) if page is not None else None
    if stored_page is not None:
        data["page"] = stored_page
    return data


def load_entry(raw: Mapping[str, Any] | None) -> tuple[Entry, str | None]:
    """The stored entry and its full-text body (``None`` if none was fetched)."""
    if not raw:
        raise RawEntryError("no raw entry stored (a replayed post, not a fetched one)")
    version = raw.get("format")
    if version != RAW_FORMAT:
        raise RawEntryError(
            f"raw entry format {version!r} is not {RAW_FORMAT} (stored by an older version); "
            "it is rebuilt the next time the feed lists the item"
        )
    try:
        entry = Entry(
            guid=raw["guid"],
            link=raw["link"],
            title=raw["title"],
            published=_date(raw["published"], "published"),
            updated=_date(raw["updated"], "updated"),
            published_naive=bool(raw.get("published_naive", False)),
            updated_naive=bool(raw.get("updated_naive", False)),
            published_text=_text(raw.get("published_text")),
            updated_text=_text(raw.get("updated_text")),
            author=raw["author"],
            content_html=raw["content_html"],
            summary_html=raw["summary_html"],
            base_url=raw["base_url"],
            images=tuple(raw["images"]),
            raw=dict(raw.get("item") or {}),
        )
    except KeyError as exc:
        raise RawEntryError(f"raw entry lacks the field {exc.args[0]!r}") from None
    full_text = raw.get("full_text")
    return entry, full_text if isinstance(full_text, str) else None


def load_page(raw: Mapping[str, Any] | None) -> StoredPage | None:
    """The article page stored with the entry, or ``None`` (never fetched, or unreadable)."""
    stored = (raw or {}).get("page")
    if not isinstance(stored, Mapping):
        return None
    url, packed = stored.get("url"), stored.get("html_zlib")
    if not isinstance(url, str) or not isinstance(packed, str):
        return None
    try:
        html = zlib.decompress(base64.b64decode(packed, validate=True)).decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError):
        return None
    return StoredPage(url, html)
