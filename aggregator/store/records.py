"""What the store is handed: plain typed records, made by the stages above it.

``content`` builds an :class:`IngestItem` per fetched entry and ``service``
hands a feed's items to :meth:`aggregator.store.store.Store.ingest`; the
store needs the record's type, not the stage that made it, so the type lives
here, below both (tests/test_layers.py ranks this module with ``config``:
it imports only the pure rules of ``policy`` and the post format).  Nothing
here talks to the database, so a parse worker importing it stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from aggregator.hexo.post import Post
from aggregator.policy.dates import DateNote
from aggregator.policy.dedup import canonical_link, content_hash
from aggregator.policy.repair import fit_key

__all__ = ["KEY_MAX", "LINK_KEY_MAX", "IngestItem"]

#: Longest canonical link kept for matching (the indexed column's size).
LINK_KEY_MAX: Final = 2048
#: Longest identity key (``entries.key``); longer keys are shortened with a hash.
KEY_MAX: Final = 2048


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One fetched entry, ready to store."""

    key: str
    post: Post
    guid: str | None = None
    link: str | None = None
    author: str | None = None
    raw: dict[str, Any] | None = None
    #: Why a filter rule blocks it (stored, never exported), or None.
    blocked: str | None = None
    #: Why the post's date is not the entry's own as written (replaced, or
    #: its zone assumed), or None.  The pipeline logs and counts it once the
    #: store says the post is new.
    date_note: DateNote | None = None
    #: ``content_hash(post.title, post.body)``.  Derived when the item is
    #: built -- in a parse worker -- and pickled along, so the store's single
    #: writer does not spend its time on it.
    digest: str = field(init=False)
    #: ``canonical_link(link)`` (for matching by link), derived the same way.
    canonical: str | None = field(init=False)

    def __post_init__(self) -> None:
        # Here, not where keys are made, so every way of making one is covered.
        object.__setattr__(self, "key", fit_key(self.key, KEY_MAX))
        object.__setattr__(self, "digest", content_hash(self.post.title, self.post.body))
        object.__setattr__(self, "canonical", canonical_link(self.link))

    @property
    def link_key(self) -> str | None:
        """The canonical link as the indexed column keeps it (None if too long)."""
        key = self.canonical
        return key if key is not None and fit_key(key, LINK_KEY_MAX) == key else None
