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
  if it has one, else its *canonical* link (see :func:`canonical_link`), else
  title plus date.  A feed's ``identity`` setting reorders that (``link`` for
  feeds whose GUIDs change with the headline, ``title`` for feeds whose GUIDs
  and links both churn).  A new content hash under a known entry key is an
  edit of that post, not a new post.

Keys are not forever: a publisher re-issues a GUID when it edits a headline,
or this module learns a new tracking parameter.  So an item whose key is
unknown is matched against the feed's stored entries by GUID and by canonical
link before it is called new (:func:`fallback_match`); the store then moves
the stored entry to the new key.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "IDENTITIES",
    "TRACKING_PARAMETERS",
    "TRACKING_PREFIXES",
    "Identity",
    "Outcome",
    "StoredIdentity",
    "canonical_link",
    "content_hash",
    "decide",
    "entry_key",
    "fallback_match",
    "slug_for",
    "text_of",
]

#: Which field identifies an item of a feed first (see :func:`entry_key`).
Identity = Literal["guid", "link", "title"]
IDENTITIES: Final[tuple[str, ...]] = get_args(Identity)

#: Query parameters that say who shared or clicked a link, never which page
#: it is.  Matched case-insensitively.  This is the one list: add names here.
TRACKING_PARAMETERS: Final = frozenset(
    {
        "spm",  # Alibaba / Taobao / Youku click tracking
        "from",  # WeChat, Weibo, Toutiao: where the reader came from
        "isappinstalled",  # WeChat share links
        "scene",  # WeChat share links
        "share_token",  # Toutiao, Douyin
        "share_source",  # Bilibili
        "share_medium",  # Bilibili
        "share_plat",  # Bilibili
        "share_session_id",  # Bilibili
        "share_tag",  # Bilibili
        "timestamp",  # Bilibili / Toutiao share links
        "fbclid",  # Facebook
        "gclid",  # Google Ads
        "dclid",  # Google display ads
        "msclkid",  # Microsoft Ads
        "yclid",  # Yandex
        "igshid",  # Instagram
        "mc_cid",  # Mailchimp
        "mc_eid",  # Mailchimp
        "_hsenc",  # HubSpot
        "_hsmi",  # HubSpot
        "mkt_tok",  # Marketo
        "ref_src",  # Twitter
        "ref_url",  # Twitter
    }
)
#: Parameter name prefixes that are tracking whatever follows (``utm_source``).
TRACKING_PREFIXES: Final = ("utm_",)

_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}

_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)
_PLAIN_TAG = re.compile(r"<[^>]*>")
# html.unescape's own pattern, for the rare body it cannot decode (see _unescape).
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def _compatibility_forms() -> dict[str, str]:
    """Characters of the blocks Chinese (and other) news text uses that NFKC
    changes -- fullwidth ASCII ``，：（）``, the ideographic space, ``…``, no-break
    spaces -- each mapped to its NFKD form (see :func:`_nfkc`)."""
    blocks = [(0xA0, 0x100), (0x2000, 0x2070), (0x3000, 0x3400), (0xFE30, 0xFE70), (0xFF00, 0xFFF0)]
    table: dict[str, str] = {}
    for start, stop in blocks:
        for code in range(start, stop):
            char = chr(code)
            if unicodedata.normalize("NFKC", char) != char:
                table[char] = unicodedata.normalize("NFKD", char)
    return table


_COMPAT: Final = _compatibility_forms()
_COMPAT_CHAR: Final = re.compile("[" + "".join(re.escape(c) for c in _COMPAT) + "]")


def _compat_form(match: re.Match[str]) -> str:
    return _COMPAT[match.group()]


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, without its cost in the usual case.

    NFKC of a whole string is slow (decompose, reorder, compose every
    character) and Chinese text is never already in NFKC: its fullwidth
    punctuation ``，（）：`` is what NFKC rewrites.  Replacing a character by its
    own NFKD form leaves a string's NFKD -- hence its NFKC -- unchanged (the
    decomposition it would have had is spliced in), so those characters are
    replaced with a regex first; what remains is then almost always already
    normalised, which :func:`unicodedata.is_normalized` checks quickly.  Any
    other text takes the full normalisation, so the result is exactly NFKC.
    """
    if unicodedata.is_normalized("NFKC", text):
        return text
    text = _COMPAT_CHAR.sub(_compat_form, text)
    if unicodedata.is_normalized("NFKC", text):
        return text
    return unicodedata.normalize("NFKC", text)


def _squeeze(text: str) -> str:
    """Runs of whitespace to one space, ends trimmed.

    The same as ``re.sub(r"\\s+", " ", text).strip()`` (``str.split`` and
    ``\\s`` agree on what whitespace is), and cheaper.
    """
    return " ".join(text.split())


def text_of(body_html: str) -> str:
    """The visible text of an HTML fragment, normalised for comparison."""
    return _squeeze(_nfkc(_unescape(_drop_tags(body_html))))


def _drop_tags(body: str) -> str:
    """``_TAG.sub(" ", body)``, in time linear in ``body`` whatever it holds.

    The regex alone is quadratic on hostile input: at every ``<`` with no
    ``>`` after it (``"a < b " * 200000``), and at every ``<!--`` with no
    ``-->`` after it, it scans to the end of the body before giving up, so
    a 1.2 MB body took over a minute.  Every match ends at a ``>``, so
    nothing after the last ``>`` can be in one and is copied as it is; and
    no comment can end after the last ``-->``, so between the two only the
    tag alternative can match.  Split there, each regex only ever meets a
    ``<`` that has its end in its part, and every scan is consumed by the
    match it finds.  The matches, hence the result, are those of the one
    regex over the whole body.
    """
    last_gt = body.rfind(">")
    if last_gt < 0:
        return body
    last_close = body.rfind("-->", 0, last_gt + 1)
    comments_end = last_close + 3 if last_close >= 0 else 0
    if comments_end == 0 and last_gt == len(body) - 1:
        return _PLAIN_TAG.sub(" ", body)  # the usual body: no comment, ends with a tag
    return (
        _TAG.sub(" ", body[:comments_end])
        + _PLAIN_TAG.sub(" ", body[comments_end : last_gt + 1])
        + body[last_gt + 1 :]
    )


def _unescape(text: str) -> str:
    """``html.unescape(text)``, also for decimal references too long to convert.

    ``html.unescape`` calls ``int()`` on the digits, which refuses more than
    4,300 of them (``sys.get_int_max_str_digits``) with a ValueError: one
    ``&#111...;`` in a body would fail the whole feed.  Such a number is far
    beyond U+10FFFF, which ``html.unescape`` turns into U+FFFD; so does this.
    Only bodies that raise pay for the second pass.
    """
    try:
        return html.unescape(text)
    except ValueError:
        return _CHARREF.sub(_unescape_reference, text)


def _unescape_reference(match: re.Match[str]) -> str:
    reference = match.group()
    if reference[1] == "#" and reference[2] not in "xX":
        digits = reference[2:].rstrip(";").lstrip("0")
        if len(digits) > 7:  # >= 10**7 > 0x10FFFF
            return "\ufffd"
        reference = "&#" + (digits or "0") + (";" if reference.endswith(";") else "")
    return html.unescape(reference)


def content_hash(title: str, body_html: str) -> str:
    """sha256 hex of the normalised title and body text (see module docs)."""
    payload = f"{_title_text(title)}\x00{text_of(body_html)}".encode()
    return hashlib.sha256(payload).hexdigest()


def _is_tracking(name: str) -> bool:
    folded = name.lower()
    return folded in TRACKING_PARAMETERS or folded.startswith(TRACKING_PREFIXES)


# Cached: the worker asks once for the entry key and once for the item's
# link key, and a feed lists mostly the same links poll after poll.
@functools.lru_cache(maxsize=4096)
def canonical_link(link: str | None) -> str | None:
    """The part of a link that says which page it is, for comparing links.

    Tracking parameters (:data:`TRACKING_PARAMETERS`, :data:`TRACKING_PREFIXES`)
    are removed, the other parameters keep their order; ``http``/``https``
    are folded (the result starts ``//host``), the host is lowercased and its
    default port dropped, a trailing ``/`` on the path and the fragment are
    dropped.  Path and remaining query keep their case: servers may treat
    them case-sensitively.  Not a URL to fetch -- only to compare.  Text that
    is not an absolute http(s) URL comes back stripped (``None`` if empty).
    """
    if link is None or not link.strip():
        return None
    text = link.strip()
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return text
    if ":" in host:
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    kept = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_tracking(name)
    ]
    query = "?" + urlencode(kept, safe="/:@!$'()*,;") if kept else ""
    return f"//{host}{path}{query}"


def _title_text(title: str) -> str:
    return _squeeze(_nfkc(title))


def entry_key(
    guid: str | None,
    link: str | None,
    title: str,
    date: datetime | None,
    *,
    identity: Identity = "guid",
) -> str:
    """Identity of an item within its feed.

    ``identity`` says which field comes first; the others follow as fallbacks
    for items that lack it:

    * ``guid`` (default): guid, else canonical link, else title + date;
    * ``link``: canonical link, else guid, else title + date -- for feeds
      whose GUIDs change when the headline is edited;
    * ``title``: the normalised title alone (no date: such feeds often re-date
      items too), else guid, else link -- for feeds whose GUIDs *and* links
      churn.  Two items with one headline become one post, so use it only
      where headlines are unique.
    """
    guid_key = "guid:" + guid.strip() if guid and guid.strip() else None
    canon = canonical_link(link)
    link_key = "link:" + canon if canon else None
    title_text = _title_text(title)
    if identity == "title":
        order = ["title:" + title_text if title_text else None, guid_key, link_key]
    elif identity == "link":
        order = [link_key, guid_key]
    elif identity == "guid":
        order = [guid_key, link_key]
    else:
        raise ValueError(f"unknown identity {identity!r}; use one of {', '.join(IDENTITIES)}")
    for key in order:
        if key:
            return key
    stamp = date.isoformat() if date is not None else ""
    return "title:" + _squeeze(title) + "|" + stamp


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """What the store knows about one stored entry of a feed, for matching."""

    entry_id: int
    key: str
    guid: str | None
    link_key: str | None  # canonical link
    title: str  # the title of its post


def fallback_match(
    *,
    guid: str | None,
    link: str | None,
    title: str,
    identity: Identity,
    candidates: Sequence[StoredIdentity],
    batch_keys: Collection[str],
    batch_link_counts: Mapping[str, int],
) -> StoredIdentity | None:
    """The stored entry an item with an unknown key is an edit of, if any.

    ``candidates`` are the feed's stored entries sharing the item's guid,
    canonical link or (``identity: title``) title, most recently seen first;
    ``batch_keys`` are the keys of everything in this fetch.  The rules:

    * the same GUID in the same feed is the same item (its key changed only
      because the key rules or the identity setting did);
    * the same canonical link is the same item only when that is not
      ambiguous: the link appears once in this fetch, and the stored entry is
      not itself still in the feed under its own key.  This is what turns "a
      new GUID for an edited headline" into an update, while feeds that give
      every item the same link (a homepage) still get one post per item;
    * with ``identity: title``, the same headline under the same rule.

    Pure; the store gathers the candidates in one query.
    """
    free = [c for c in candidates if c.key not in batch_keys]
    if guid and guid.strip():
        stripped = guid.strip()
        for candidate in candidates:
            if candidate.guid is not None and candidate.guid.strip() == stripped:
                return candidate if candidate.key not in batch_keys else None
    canon = canonical_link(link)
    if canon is not None and batch_link_counts.get(canon, 0) <= 1:
        for candidate in free:
            if candidate.link_key == canon:
                return candidate
    if identity == "title":
        wanted = _title_text(title)
        if wanted:
            for candidate in free:
                if _title_text(candidate.title) == wanted:
                    return candidate
    return None


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
