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
  title plus date -- each only where no other item of the same document has
  it (:func:`entry_keys`: items sharing a GUID or link are told apart by
  headline, then content).  A feed's ``identity`` setting reorders that
  (``link`` for feeds whose GUIDs change with the headline, ``title`` for
  feeds whose GUIDs and links both churn).  A new content hash under a known
  entry key is an edit of that post, not a new post -- unless other stories
  of the feed share the key's GUID or link (:class:`Known`).

Keys are not forever: a publisher re-issues a GUID when it edits a headline,
or this module learns a new tracking parameter.  So an item whose key is
unknown is matched against the feed's stored entries by GUID and by canonical
link before it is called new (:func:`fallback_match`), when the match is
unambiguous; the store then moves the stored entry to the new key.  Every
rule here errs towards a new post: a wrong match overwrites another story.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "IDENTITIES",
    "TRACKING_PARAMETERS",
    "TRACKING_PREFIXES",
    "Identity",
    "KeyFacts",
    "Known",
    "Outcome",
    "StoredIdentity",
    "canonical_link",
    "content_hash",
    "decide",
    "entry_key",
    "entry_keys",
    "fallback_match",
    "free_slug",
    "media_of",
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
#: Longest entry key the indexed ``entries.key`` column holds.
KEY_MAX: Final = 2048

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
#: One of those characters, captured: ``split`` puts each at an odd index.
_COMPAT_SPLIT: Final = re.compile("([" + "".join(re.escape(c) for c in _COMPAT) + "])")
_compat_form: Final = _COMPAT.__getitem__


def _compat_forms(text: str) -> str:
    """Each of :data:`_COMPAT`'s characters in ``text`` replaced by its NFKD form.

    What ``_COMPAT_CHAR.sub(lambda m: _COMPAT[m.group()], text)`` does, a
    third faster: a Chinese body has dozens of such characters, and a
    Python call per match was most of the cost; here the regex splits in C
    and the mapping runs as ``map`` over the matches.  tests/test_dedup.py
    compares the two over the corpus.
    """
    parts = _COMPAT_SPLIT.split(text)
    if len(parts) == 1:
        return text
    parts[1::2] = map(_compat_form, parts[1::2])
    return "".join(parts)


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
    text = _compat_forms(text)
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


# ``src`` of the elements that carry a picture, a video or a sound.
_MEDIA_SRC = re.compile(
    r"""<(?:img|video|audio|source|embed)\b[^>]*?\ssrc\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""",
    re.I,
)


def media_of(body_html: str) -> list[str]:
    """The media URLs of an HTML fragment, in order (entities decoded, ends trimmed)."""
    found: list[str] = []
    for match in _MEDIA_SRC.finditer(body_html):
        url = html.unescape(match.group(1) or match.group(2) or match.group(3) or "").strip()
        if url:
            found.append(url)
    return found


def content_hash(title: str, body_html: str) -> str:
    """sha256 hex of the normalised title and body text (see module docs).

    A body with no text at all (a picture, a video) is told apart by its
    media URLs, else every picture post under one headline would be one
    story.  Only such bodies hash their media: the hash of every body with
    text is what it always was, so stored hashes stay valid.
    """
    text = text_of(body_html)
    if not text:
        media = media_of(body_html)
        if media:
            text = "\x00media:" + "\x00".join(media)
    payload = f"{_title_text(title)}\x00{text}".encode()
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
    default port dropped, a trailing ``/`` on the path is dropped, and so is
    the fragment unless it is a route (``#/post/12``, ``#!/post/12``: see
    :func:`_route`).  Path and remaining query keep their case: servers may treat
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
    return f"//{host}{path}{query}{_route(parts.fragment)}"


def _route(fragment: str) -> str:
    """The fragment as part of a canonical link: only when it routes a page.

    ``#/post/12`` (a hash router) and ``#!/post/12`` or ``#!post-12`` (a
    hashbang) name the page a single-page site shows, so two items that
    differ only there are two pages.  Any other fragment (``#comments``,
    ``#top``, ``#section-2``) points into the same page and is dropped, as
    is a route to nowhere (``#/``, ``#!``).
    """
    if fragment[:1] in ("/", "!") and fragment.strip("/!"):
        return "#" + fragment
    return ""


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
    return _dated_title_key(title, date)


def _dated_title_key(title: str, date: datetime | None) -> str:
    stamp = date.isoformat() if date is not None else ""
    return "title:" + _squeeze(title) + "|" + stamp


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What an item of a feed document offers to identify it by."""

    guid: str | None
    link: str | None
    title: str
    date: datetime | None
    digest: str  # its content hash


def entry_keys(items: Sequence[KeyFacts], *, identity: Identity = "guid") -> list[str]:
    """The identity key of every item of one feed document, in order.

    An identifier identifies an item only where the document gives it to no
    other item: a GUID or a link shared by several items (every item linking
    the homepage, a GUID generator stuck on one value) names none of them.
    So each item takes the first of its identifiers (in ``identity``'s order,
    as :func:`entry_key` gives them) that is unique in the document; an item
    with a unique identifier gets exactly the key :func:`entry_key` gives,
    so keys stored before this rule stay valid.  An item whose identifiers
    are all shared is keyed by what tells it apart: its first identifier
    plus its headline (``link://x|title:...``), and where that is shared too,
    plus its content hash (``...|sha256:...``: pictures under one headline).
    Items that still share a key have the same headline and the same content
    under the same identifier: they are one story listed twice.  A built key
    longer than :data:`KEY_MAX` is replaced by its own sha256.

    Pure; ``items`` are all the items of the document.
    """
    if identity not in IDENTITIES:
        raise ValueError(f"unknown identity {identity!r}; use one of {', '.join(IDENTITIES)}")
    ids = [
        _identifiers(item, identity) or [_dated_title_key(item.title, item.date)] for item in items
    ]
    seen: dict[str, int] = {}
    for found in ids:
        for ident in found:
            seen[ident] = seen.get(ident, 0) + 1
    keys: list[str] = []
    told_apart: list[bool] = []
    for item, found in zip(items, ids, strict=True):
        unique = next((ident for ident in found if seen[ident] == 1), None)
        told_apart.append(unique is None)
        if unique is not None:
            keys.append(unique)
        elif found[0].startswith("title:"):  # the headline is in it already
            keys.append(found[0])
        else:
            keys.append(f"{found[0]}|title:{_title_text(item.title)}")
    shared: dict[str, int] = {}
    for key, flagged in zip(keys, told_apart, strict=True):
        if flagged:
            shared[key] = shared.get(key, 0) + 1
    result: list[str] = []
    for item, key, flagged in zip(items, keys, told_apart, strict=True):
        if flagged:
            if shared[key] > 1:
                key = f"{key}|sha256:{item.digest[:32]}"
            key = _fit(key)
        result.append(key)
    return result


def _fit(key: str) -> str:
    """A built key short enough for the indexed column, still telling items apart."""
    if len(key) <= KEY_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _identifiers(item: KeyFacts, identity: Identity) -> list[str]:
    """The item's identifier keys in ``identity``'s order (those it has)."""
    guid_key = "guid:" + item.guid.strip() if item.guid and item.guid.strip() else None
    canon = canonical_link(item.link)
    link_key = "link:" + canon if canon else None
    if identity == "title":
        title_text = _title_text(item.title)
        order = ["title:" + title_text if title_text else None, guid_key, link_key]
    elif identity == "link":
        order = [link_key, guid_key]
    else:
        order = [guid_key, link_key]
    return [key for key in order if key]


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
    batch_guid_counts: Mapping[str, int] | None = None,
) -> StoredIdentity | None:
    """The stored entry an item with an unknown key is an edit of, if any.

    ``candidates`` are the feed's stored entries sharing the item's guid,
    canonical link or (``identity: title``) title, most recently seen first;
    ``batch_keys`` are the keys of everything in this fetch, and
    ``batch_link_counts`` / ``batch_guid_counts`` how many of its items carry
    each canonical link / stripped GUID.  A match must be unambiguous, since
    a wrong one would overwrite another story's post:

    * the same GUID is the same item (its key changed only because the key
      rules or the identity setting did) -- when no other item of this
      fetch has that GUID, exactly one stored entry has it, and that entry
      is not itself still in the feed under its own key;
    * the same canonical link, under the same three conditions.  This is
      what turns "a new GUID for an edited headline" into an update, while
      feeds that give every item the same link (a homepage) get one post
      per item;
    * with ``identity: title``, the same headline, likewise.

    Pure; the store gathers the candidates in one query.
    """
    if guid and guid.strip():
        stripped = guid.strip()
        if (batch_guid_counts or {}).get(stripped, 1) <= 1:
            found = _only(c for c in candidates if (c.guid or "").strip() == stripped)
            if found is not None:
                return found if found.key not in batch_keys else None
    canon = canonical_link(link)
    if canon is not None and batch_link_counts.get(canon, 0) <= 1:
        found = _only(c for c in candidates if c.link_key == canon)
        if found is not None and found.key not in batch_keys:
            return found
    if identity == "title":
        wanted = _title_text(title)
        if wanted:
            found = _only(c for c in candidates if _title_text(c.title) == wanted)
            if found is not None and found.key not in batch_keys:
                return found
    return None


def _only(matches: Iterable[StoredIdentity]) -> StoredIdentity | None:
    """The one match, or None when there are none or several (ambiguous)."""
    found: StoredIdentity | None = None
    for match in matches:
        if found is not None and match.entry_id != found.entry_id:
            return None
        found = match
    return found


def slug_for(date: datetime | None, digest: str) -> str:
    """A stable, collision-free export file stem: date plus hash prefix.

    Chosen once when the post is first stored and never recomputed, so an
    edited post keeps writing to the same file.
    """
    day = date.strftime("%Y-%m-%d") if date is not None else "undated"
    return f"{day}-{digest[:12]}"


def free_slug(slug: str, taken: Collection[str]) -> str:
    """``slug``, or the first of ``slug-2``, ``slug-3``, ... that is not taken."""
    if slug not in taken:
        return slug
    number = 2
    while f"{slug}-{number}" in taken:
        number += 1
    return f"{slug}-{number}"


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
    #: Posts an *earlier* version of which had the incoming hash (post_revisions).
    former_post_ids: frozenset[int] = frozenset()
    #: The entry's post has exactly the incoming title and body, under another
    #: hash: the hash rules changed (text-less bodies), not the story.
    same_content: bool = False
    #: The entry's key is a GUID or link that other stories of the feed carry
    #: too: changed content under it is another story, not an edit.
    shared_key: bool = False


def decide(known: Known, incoming_hash: str) -> Outcome:
    """New, duplicate, updated or unchanged -- the whole dedup policy.

    * entry seen before with the same content (or an older version of its
      own post: a second feed still carrying what the first has since
      edited -- never revert a post to it)                 -> unchanged
    * entry seen before, content changed, hash unused      -> updated (a revision),
      unless the key is shared with other stories of the feed -> new
    * entry seen before, content now is (or was) another post -> duplicate
    * entry unseen, its content is or was a stored post    -> duplicate (source recorded)
    * entry unseen, content unseen                         -> new

    An item is told apart from an edit by its key alone (see
    :func:`entry_keys` and :func:`fallback_match`); this only weighs content.
    """
    if known.entry_post_id is not None:
        if known.entry_post_hash == incoming_hash or known.same_content:
            return Outcome.UNCHANGED
        if known.entry_post_id in known.former_post_ids:
            return Outcome.UNCHANGED
        if known.hash_post_id is not None or known.former_post_ids:
            return Outcome.DUPLICATE
        return Outcome.NEW if known.shared_key else Outcome.UPDATED
    if known.hash_post_id is not None or known.former_post_ids:
        return Outcome.DUPLICATE
    return Outcome.NEW
