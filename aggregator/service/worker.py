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
import os
import select
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.content.items import IngestItem, build_items
from aggregator.parse.parser import parse_feed
from aggregator.types import Entry, ParsedFeed

if TYPE_CHECKING:
    from aggregator.config.spec import FeedSpec

__all__ = ["die_with", "parse_and_build"]


def die_with(pid: int) -> None:
    """Start the worker's watch on process ``pid`` (the daemon): when that
    process ends -- ``kill -9`` included, which runs no clean-up -- the
    worker ends too.

    Without it a killed daemon left its parse worker running, and with it
    the fork server and multiprocessing's resource tracker (each holds a
    pipe the worker keeps open).  ``PR_SET_PDEATHSIG`` cannot do this: the
    worker's parent is the fork server, which outlives the daemon for as
    long as the worker does.  So the worker watches the daemon itself: a
    pidfd (Linux 5.3+) becomes readable the moment the process ends; where
    there is none, it looks once a second.
    """

    def watch() -> None:
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(0)  # already gone
        except (AttributeError, OSError):
            while True:
                time.sleep(1.0)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        else:
            select.select([handle], [], [])
        os._exit(0)  # no clean-up to run: the worker holds nothing of its own

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


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
