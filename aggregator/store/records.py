"""What the store is handed: plain typed records, made by the stages above it.

``content`` builds an :class:`IngestItem` per fetched entry and ``service``
hands a feed's items to :meth:`aggregator.store.store.Store.ingest`; the
store needs the record's type, not the stage that made it, so the type lives
here, below both (tests/test_layers.py ranks this module with ``config``:
it imports only the pure rules of ``policy`` and the post format).  Nothing
here talks to the database, so a parse worker importing it stays light.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Final

from aggregator.hexo.post import Post
from aggregator.policy.dates import DateNote
from aggregator.policy.dedup import canonical_link, content_hash
from aggregator.policy.repair import fit_key

__all__ = ["KEY_MAX", "LINK_KEY_MAX", "IngestItem", "raw_json"]

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
    #: ``raw`` as the ``entries.raw`` column stores it (:func:`raw_json`), or
    #: None (no raw form, or one that is not JSON: the store's own encoder
    #: then says why).  Derived in the parse worker for the same reason as
    #: ``digest``; a pickled item carries this text instead of ``raw`` (one
    #: string crosses to the store's process faster than a nested dict),
    #: and ``raw`` is decoded from it only if something asks for it.
    raw_text: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Here, not where keys are made, so every way of making one is covered.
        object.__setattr__(self, "key", fit_key(self.key, KEY_MAX))
        object.__setattr__(self, "digest", content_hash(self.post.title, self.post.body))
        object.__setattr__(self, "canonical", canonical_link(self.link))
        text = None
        if self.raw is not None:
            # Not JSON: left to the store, whose encoder fails the feed's ingest.
            with contextlib.suppress(TypeError, ValueError):
                text = raw_json(self.raw)
        object.__setattr__(self, "raw_text", text)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a slot left empty: ``raw`` of an unpickled item.
        if name != "raw":
            raise AttributeError(name)
        raw = json.loads(self.raw_text) if self.raw_text is not None else None
        object.__setattr__(self, "raw", raw)
        return raw

    def __reduce__(self) -> tuple[Any, ...]:
        state = [
            None if name == "raw" and self.raw_text is not None else getattr(self, name)
            for name in _ITEM_FIELDS
        ]
        return _unpickle_item, (state,)

    @property
    def link_key(self) -> str | None:
        """The canonical link as the indexed column keeps it (None if too long)."""
        key = self.canonical
        return key if key is not None and fit_key(key, LINK_KEY_MAX) == key else None


_ITEM_FIELDS: Final = tuple(f.name for f in fields(IngestItem))
_RAW_TEXT: Final = _ITEM_FIELDS.index("raw_text")


def _unpickle_item(state: list[Any]) -> IngestItem:
    """An :class:`IngestItem` from its pickled state; ``raw`` stays to be decoded."""
    item = object.__new__(IngestItem)
    for name, value in zip(_ITEM_FIELDS, state, strict=True):
        if name == "raw" and value is None and state[_RAW_TEXT] is not None:
            continue  # carried as raw_text (IngestItem.__getattr__ decodes it)
        object.__setattr__(item, name, value)
    return item


def raw_json(raw: dict[str, Any]) -> str:
    """A raw entry as JSON text, exactly as the store's JSON columns write it.

    ``aggregator.store.engine`` serialises JSON with the same call (UTF-8
    text, not ``\\uXXXX`` escapes); tests/test_store.py checks the two agree.
    """
    return json.dumps(raw, ensure_ascii=False)
