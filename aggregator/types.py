"""The values one stage hands to the next, kept below every stage.

A stage that consumes a value needs its type, not the stage that made it:
``content`` turns :class:`Entry` into posts without importing the parser,
and the parse workers return :class:`ParsedFeed` without the caller loading
feedparser to know its shape.  Like reader's ``types`` module, this holds
plain frozen records only: no I/O and nothing of the project but the
standard library, so every layer may import it (tests/test_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Entry", "ParsedFeed"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One feed item, whatever dialect it came in.

    ``title`` and ``author`` are plain text; ``content_html``/``summary_html``
    are the feed's HTML as sent (unsanitised, see the module docstring);
    ``base_url`` is what relative URLs in that HTML are relative to.  ``raw``
    keeps the item's fields as parsed, JSON-serialisable, so later stages can
    be re-run from the store without refetching.
    """

    guid: str | None
    link: str | None
    title: str
    published: datetime | None
    updated: datetime | None
    author: str | None
    content_html: str
    summary_html: str
    base_url: str | None
    images: tuple[str, ...]
    raw: dict[str, Any] = field(hash=False)
    # The source date had no UTC offset, so ``published``/``updated`` is its
    # wall time read as UTC; a feed's ``timezone`` setting can re-read it.
    published_naive: bool = False
    updated_naive: bool = False
    # The date texts as the feed sent them: the feed's ``timezone`` decides
    # what a zone-less or ``CST`` time means, so the post's date is read
    # from these (see aggregator.policy.dates.effective_date).
    published_text: str | None = None
    updated_text: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed document: feed-level metadata plus its entries in feed order."""

    version: str
    title: str | None
    link: str | None
    generator: str | None
    ttl_minutes: int | None
    update_period_seconds: float | None
    encoding: str | None
    bozo_reason: str | None
    entries: tuple[Entry, ...]
