"""What a parse worker runs: parse and build one feed in a single hop.

The pipeline sends each fetched feed's bytes to a worker process (see
``ParseProcesses`` in :mod:`aggregator.service.pipeline`) and gets back
plain picklable values.  This is where parse and content meet, so it lives
in ``service`` (the only package where stages meet), in a module of its own
that imports nothing but those two stages: the forkserver preloads it
(``WORKER_MODULES`` in :mod:`aggregator.service.runner`), and a worker that
starts in a fifth of a second beats one that loads the HTTP stack and
SQLAlchemy it never uses (tests/test_worker.py guards this).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.content.items import IngestItem, build_items
from aggregator.parse.parser import parse_feed
from aggregator.types import Entry, ParsedFeed

if TYPE_CHECKING:
    from aggregator.config.spec import FeedSpec

__all__ = ["parse_and_build"]


def parse_and_build(
    content: bytes,
    url: str,
    content_type: str | None,
    charset: str | None,
    spec: FeedSpec,
    now: datetime,
) -> tuple[ParsedFeed, list[IngestItem], list[tuple[Entry, str]]]:
    """Parse and build in one hop to a worker (a process, if so configured).

    Everything in and out is plain picklable data: the feed-level metadata
    (without its entries, which only the items need), the items, whose date
    notes the caller logs, and the entries that could not be built (see
    :func:`build_items`), each with the reason, for the caller to log.
    """
    parsed = parse_feed(content, url=url, content_type=content_type, charset=charset)
    skipped: list[tuple[Entry, str]] = []
    items = build_items(
        parsed, spec, now=now, on_skipped=lambda entry, why: skipped.append((entry, why))
    )
    return dataclasses.replace(parsed, entries=()), items, skipped
