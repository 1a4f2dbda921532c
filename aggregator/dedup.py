"""Pure rules that decide when two items are the same item.

Kept free of I/O so the rules are tested as data (as lemon24/reader does with
its update decider); ``store`` applies them inside its transactions.

Two notions of sameness:

* **Content hash** -- the same story, wherever it came from.  The hash covers
  the title and the *text* of the body after Unicode NFKC normalisation, with
  every run of whitespace collapsed to one space and the ends trimmed.  Markup,
  image URLs, dates and the outlet are left out on purpose: a syndicated story
  re-published by a second outlet, or re-rendered with other attributes, is
  still one post.  Text is taken by dropping tags and decoding entities, which
  is exact enough for identity and ~50x cheaper than an HTML parser.
* **Entry key** -- the same item *of one feed*, across edits: the feed's GUID
  if it has one, else its link, else title plus date.  A new content hash
  under a known entry key is an edit of that post, not a new post.
"""

from __future__ import annotations

import enum
import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Outcome", "content_hash", "decide", "entry_key", "slug_for", "text_of"]

_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)
_SPACE = re.compile(r"\s+")


def text_of(body_html: str) -> str:
    """The visible text of an HTML fragment, normalised for comparison."""
    text = html.unescape(_TAG.sub(" ", body_html))
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def content_hash(title: str, body_html: str) -> str:
    """sha256 hex of the normalised title and body text (see module docs)."""
    norm_title = _SPACE.sub(" ", unicodedata.normalize("NFKC", title)).strip()
    payload = f"{norm_title}\x00{text_of(body_html)}".encode()
    return hashlib.sha256(payload).hexdigest()


def entry_key(guid: str | None, link: str | None, title: str, date: datetime | None) -> str:
    """Identity of an item within its feed: guid, else link, else title + date."""
    if guid and guid.strip():
        return "guid:" + guid.strip()
    if link and link.strip():
        return "link:" + link.strip()
    stamp = date.isoformat() if date is not None else ""
    return "title:" + _SPACE.sub(" ", title).strip() + "|" + stamp


def slug_for(date: datetime | None, digest: str) -> str:
    """A stable, collision-free export file stem: date plus hash prefix.

    Chosen once when the post is first stored and never recomputed, so an
    edited post keeps writing to the same file.
    """
    day = date.strftime("%Y-%m-%d") if date is not None else "undated"
    return f"{day}-{digest[:12]}"


class Outcome(enum.StrEnum):
    """What storing one item did."""

    NEW = "new"
    DUPLICATE = "duplicate"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class Known:
    """What the store already knows that matters for one incoming item."""

    entry_post_id: int | None  # post this feed's entry key points at, if seen before
    entry_post_hash: str | None  # that post's current content hash
    hash_post_id: int | None  # post that already has the incoming content hash


def decide(known: Known, incoming_hash: str) -> Outcome:
    """New, duplicate, updated or unchanged -- the whole dedup policy.

    * entry seen before with the same content           -> unchanged
    * entry seen before, content changed, hash unused   -> updated (a revision)
    * entry seen before, content now equals another post -> duplicate
    * entry unseen, its content already stored           -> duplicate (source recorded)
    * entry unseen, content unseen                       -> new
    """
    if known.entry_post_id is not None:
        if known.entry_post_hash == incoming_hash:
            return Outcome.UNCHANGED
        if known.hash_post_id is None:
            return Outcome.UPDATED
        return Outcome.DUPLICATE
    if known.hash_post_id is not None:
        return Outcome.DUPLICATE
    return Outcome.NEW
