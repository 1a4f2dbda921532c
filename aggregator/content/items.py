"""Entries -> items ready to store: the per-item work between parsing and the store.

For every entry of a fetched feed: its post (cleaned body, date under the
feed's date rules), its identity key, its content hash and canonical link,
the raw copy kept for ``aggregator reprocess``, and the filters' verdict.
All of it is pure and CPU-bound, so a pass over many feeds runs it in
worker processes (``aggregator.service.worker.parse_and_build``, one hop per
feed) while the main process fetches and the store's single writer only
writes.

A worker imports this module, so it stays light: the content and dedup
stages, not the HTTP stack or SQLAlchemy.  A worker that starts in a fifth
of a second instead of most of one is worth more than the convenience of
importing from the pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aggregator.content.clean import entry_to_post
from aggregator.content.rawentry import StoredPage, dump_entry
from aggregator.policy.dates import DateNote, effective_date
from aggregator.policy.dedup import Identity, KeyFacts, entry_key, entry_keys
from aggregator.store.records import LINK_KEY_MAX, IngestItem
from aggregator.types import Entry, ParsedFeed

if TYPE_CHECKING:
    from aggregator.config.spec import FeedSpec

__all__ = [
    "LINK_KEY_MAX",
    "IngestItem",
    "build_item",
    "build_items",
    "post_date",
    "rekey",
]


def post_date(entry: Entry, spec: FeedSpec, *, now: datetime) -> tuple[datetime, DateNote | None]:
    """The date the entry's post gets under the feed's date rules, and a note
    when it was replaced or its zone assumed (see :mod:`aggregator.policy.dates`).

    Published, else updated: an unreadable published text gives way to a
    readable updated one (the note then says so).  ``now`` is also the
    first-seen time: a replaced date only matters for a new post, since an
    unchanged entry is never rewritten.
    """

    def date_of(
        text: str | None, parsed: datetime | None, naive: bool
    ) -> tuple[datetime, DateNote | None]:
        return effective_date(
            text,
            parsed=parsed,
            naive=naive,
            timezone=ZoneInfo(spec.timezone) if spec.timezone else None,
            offset=spec.date_offset,
            first_seen=now,
            now=now,
        )

    has_updated = entry.updated_text is not None or entry.updated is not None
    if entry.published_text is None and entry.published is None:
        return date_of(entry.updated_text, entry.updated, entry.updated_naive)
    date, note = date_of(entry.published_text, entry.published, entry.published_naive)
    if note is None or note.reason != "unparsable" or not has_updated:
        return date, note
    updated, updated_note = date_of(entry.updated_text, entry.updated, entry.updated_naive)
    if updated_note is not None and updated_note.reason in ("unparsable", "future", "too_old"):
        return date, note
    how = f"; {updated_note.detail}" if updated_note is not None else ""
    used = f"unreadable; the updated date {entry.updated_text!r} was used{how}"
    return updated, DateNote("unparsable", note.text, used)


def build_item(
    entry: Entry,
    spec: FeedSpec,
    *,
    first_seen: datetime,
    full_text: str | None = None,
    page: StoredPage | None = None,
) -> IngestItem:
    """One entry -> a post ready to store, its key and its filter verdict (pure).

    Shared by fetching and ``aggregator reprocess``, so a re-run derives
    exactly what a fetch would have.  ``full_text`` is the article body a
    ``full_text`` selector cut from the page, if one was fetched; ``page``
    is that page, kept with the raw entry so a changed selector can be
    re-applied without fetching it again.
    """
    date, date_note = post_date(entry, spec, now=first_seen)
    post = entry_to_post(
        entry,
        group=spec.group,
        outlet=spec.outlet,
        section=spec.section,
        first_seen=first_seen,
        placeholder_image=spec.placeholder_image,
        body_html=full_text,
        date=date,
    )
    return IngestItem(
        key=entry_key(
            entry.guid,
            entry.link,
            entry.title,
            entry.published or entry.updated,
            identity=spec.identity,
        ),
        post=post,
        guid=entry.guid,
        link=entry.link,
        author=entry.author,
        raw=dump_entry(entry, full_text=full_text, page=page),
        blocked=spec.filters.verdict(
            title=post.title, body_html=post.body, link=entry.link, author=entry.author
        ),
        date_note=date_note,
    )


def build_items(
    parsed: ParsedFeed,
    spec: FeedSpec,
    *,
    now: datetime,
    bodies: dict[int, str] | None = None,
    pages: dict[int, StoredPage] | None = None,
    on_skipped: Callable[[Entry, str], None] | None = None,
) -> list[IngestItem]:
    """Entries -> posts ready to store (pure; runs in a worker).

    Each item is keyed among all the items of its document
    (:func:`aggregator.policy.dedup.entry_keys`): a GUID or link that several
    entries share identifies none of them.  With ``on_skipped(entry, reason)``, an
    entry that cannot be built (a bug in clean-up meeting input nobody
    foresaw) is left out and reported there, and the rest of the feed is
    built; without it, the error propagates.
    """
    items: list[IngestItem] = []
    kept: list[Entry] = []
    for index, entry in enumerate(parsed.entries):
        try:
            items.append(
                build_item(
                    entry,
                    spec,
                    first_seen=now,
                    full_text=(bodies or {}).get(index),
                    page=(pages or {}).get(index),
                )
            )
        except Exception as exc:  # whatever it is, it is this item's alone
            if on_skipped is None:
                raise
            on_skipped(entry, f"{type(exc).__name__}: {exc}")
            continue
        kept.append(entry)
    return rekey(items, kept, spec.identity)


def rekey(
    items: list[IngestItem], entries: Sequence[Entry], identity: Identity
) -> list[IngestItem]:
    """The items with their keys as the whole document decides them.

    :func:`build_item` keys an entry by itself, which is right exactly when
    its GUID or link is unique in the document; the few others are rebuilt
    with the key that tells them apart.
    """
    keys = entry_keys(
        [
            KeyFacts(it.guid, it.link, entry.title, entry.published or entry.updated, it.digest)
            for it, entry in zip(items, entries, strict=True)
        ],
        identity=identity,
    )
    return [
        it if it.key == key else dataclasses.replace(it, key=key)
        for it, key in zip(items, keys, strict=True)
    ]
