"""One feed, end to end: fetch -> parse -> content -> store -> export.

``Pipeline.run_feed`` is what both ``aggregator fetch`` and the daemon call
for each due feed.  It never raises for a problem with the feed itself: every
outcome -- new posts, 304, a timeout, an HTML page instead of a feed -- ends as
a :class:`FeedReport` and as state on the feed's row, so one broken feed
cannot stop the others.  Problems with the database do propagate: the caller
decides whether to wait for it (the daemon) or give up (``fetch``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bs4 import UnicodeDammit

from aggregator.content import ContentError, entry_to_post, extract_full_text
from aggregator.dedup import entry_key
from aggregator.export import ExportError, prepare_directory, write_post
from aggregator.feeds import FeedSpec, FullText
from aggregator.fetch import Fetcher, FetchError, FetchResult, Validators, redact_url
from aggregator.netguard import AddressGuard
from aggregator.parse import Entry, FeedParseError, ParsedFeed, parse_feed
from aggregator.schedule import (
    ErrorClass,
    Hints,
    classify_status,
    next_after_error,
    next_after_success,
)
from aggregator.store import FeedState, IngestItem, Store

__all__ = ["FeedReport", "Pipeline", "build_items"]

log = logging.getLogger(__name__)

#: Full-text pages fetched at once for one feed (the fetcher's per-host
#: limit still applies on top).
FULL_TEXT_CONCURRENCY = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FeedReport:
    """What one poll of one feed did; one log line and one summary row."""

    url: str
    outlet: str
    section: str
    status: int | None = None
    new: int = 0
    duplicate: int = 0
    updated: int = 0
    unchanged: int = 0
    wire_bytes: int = 0
    elapsed_ms: int = 0
    error: str | None = None
    error_class: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def log_fields(self) -> dict[str, Any]:
        return {
            "feed": self.url,
            "status": self.status if self.status is not None else "-",
            "new": self.new,
            "duplicate": self.duplicate,
            "updated": self.updated,
            "bytes": self.wire_bytes,
            "ms": self.elapsed_ms,
        }


def build_items(
    parsed: ParsedFeed,
    spec: FeedSpec,
    *,
    now: datetime,
    bodies: dict[int, str] | None = None,
) -> list[IngestItem]:
    """Entries -> posts ready to store (pure; runs in a worker)."""
    items = []
    for index, entry in enumerate(parsed.entries):
        post = entry_to_post(
            entry,
            group=spec.group,
            outlet=spec.outlet,
            section=spec.section,
            first_seen=now,
            placeholder_image=spec.placeholder_image,
            body_html=(bodies or {}).get(index),
        )
        items.append(
            IngestItem(
                key=entry_key(
                    entry.guid, entry.link, entry.title, entry.published or entry.updated
                ),
                post=post,
                guid=entry.guid,
                link=entry.link,
                author=entry.author,
                raw=entry.raw,
            )
        )
    return items


def _parse(result: FetchResult) -> ParsedFeed:
    return parse_feed(
        result.content,
        url=result.final_url,
        content_type=result.content_type,
        charset=result.charset,
    )


class Pipeline:
    """Runs feeds through the stages with shared fetcher, store and workers."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        export_dir: Path | None = None,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = utcnow,
        guard: AddressGuard | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.export_dir = export_dir
        self.executor = executor
        self.clock = clock
        # Links inside feeds are untrusted: fetch them only from public addresses.
        self.guard = guard or AddressGuard()
        # SQLite has one writer at a time; queueing here is cheaper than
        # making threads wait on the busy timeout.
        self._write_lock = asyncio.Lock() if store.engine.dialect.name == "sqlite" else None
        if export_dir is not None:
            prepare_directory(export_dir)

    async def _in_worker(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._write_lock is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        async with self._write_lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def run_feed(self, spec: FeedSpec, feed_id: int) -> FeedReport:
        """Poll one feed and record the outcome; see the module docstring."""
        started = time.monotonic()
        # The report is for people (logs, tables, metric labels): never the password.
        report = FeedReport(url=redact_url(spec.url), outlet=spec.outlet, section=spec.section)
        try:
            await self._run(spec, feed_id, report)
        finally:
            report.elapsed_ms = round((time.monotonic() - started) * 1000)
            level = logging.WARNING if report.failed else logging.INFO
            message = f"poll failed: {report.error}" if report.failed else "poll ok"
            log.log(level, message, extra=report.log_fields())
        return report

    async def _run(self, spec: FeedSpec, feed_id: int, report: FeedReport) -> None:
        state = await asyncio.to_thread(self.store.feed_state, feed_id)
        interval = timedelta(seconds=state.interval_seconds)
        validators = Validators(etag=state.etag, last_modified=state.last_modified)
        try:
            result = await self.fetcher.fetch(spec.url, validators)
        except FetchError as exc:
            await self._failed(
                feed_id,
                state,
                report,
                status=exc.status,
                reason=exc.reason,
                retry_after=exc.retry_after,
            )
            return
        report.status, report.wire_bytes = result.status, result.wire_bytes
        now = self.clock()
        success: dict[str, Any] = {
            "etag": result.validators.etag,
            "last_modified": result.validators.last_modified,
            "last_status": result.status,
            "last_checked_at": now,
            "last_success_at": now,
            "last_error": None,
            "error_class": None,
            "error_streak": 0,
            "first_error_at": None,
            "lease_until": None,
            "lease_owner": None,
        }
        if result.not_modified:
            success["next_check_at"] = next_after_success(
                now, interval, Hints(max_age=result.max_age, retry_after=result.retry_after)
            )
            await self._write(self.store.update_feed, feed_id, **success)
            return
        try:
            parsed: ParsedFeed = await self._in_worker(_parse, result)
        except FeedParseError as exc:
            await self._failed(
                feed_id,
                state,
                report,
                status=result.status,
                reason=f"not a feed: {exc}",
                error_class=ErrorClass.PERMANENT,
            )
            return
        if parsed.bozo_reason:
            report.notes.append(f"ill-formed feed, entries recovered: {parsed.bozo_reason}")
        bodies = (
            await self._full_texts(spec, spec.full_text, parsed.entries, report)
            if spec.full_text
            else None
        )
        items = await self._in_worker(build_items, parsed, spec, now=now, bodies=bodies)
        success["next_check_at"] = next_after_success(
            now,
            interval,
            Hints(
                ttl=parsed.ttl_minutes * 60 if parsed.ttl_minutes else None,
                update_period=parsed.update_period_seconds,
                max_age=result.max_age,
                retry_after=result.retry_after,
            ),
        )
        ingested = await self._write(
            self.store.ingest, feed_id, items, now=now, feed_values=success
        )
        report.new, report.duplicate = ingested.new, ingested.duplicate
        report.updated, report.unchanged = ingested.updated, ingested.unchanged
        if self.export_dir is not None and ingested.changed_posts:
            try:
                await asyncio.to_thread(self._export, ingested.changed_posts)
            except ExportError as exc:
                # The posts are safely stored; `aggregator export` can write them later.
                report.error = f"export failed (posts are stored): {exc.strerror}"
                report.error_class = "export"

    def _export(self, posts: Sequence[Any]) -> None:
        assert self.export_dir is not None
        for stored in posts:
            write_post(self.export_dir, stored)

    async def _failed(
        self,
        feed_id: int,
        state: FeedState,
        report: FeedReport,
        *,
        status: int | None,
        reason: str,
        retry_after: float | None = None,
        error_class: ErrorClass | None = None,
    ) -> None:
        now = self.clock()
        kind = error_class or classify_status(status, retry_after=retry_after)
        # Throttling is the server asking us to wait, not the feed failing.
        streak = state.error_streak
        new_streak = streak if kind is ErrorClass.THROTTLED else streak + 1
        values: dict[str, Any] = {
            "last_status": status,
            "last_checked_at": now,
            "last_error": reason,
            "error_class": kind.value,
            "error_streak": new_streak,
            "first_error_at": state.first_error_at or now,
            "lease_until": None,
            "lease_owner": None,
            "next_check_at": next_after_error(
                now,
                timedelta(seconds=state.interval_seconds),
                max(new_streak, 1),
                kind,
                retry_after=retry_after,
            ),
        }
        if kind is ErrorClass.GONE:
            values["disabled_reason"] = (
                f"410 Gone at {now:%Y-%m-%d %H:%M} UTC: the publisher removed this feed"
            )
            log.warning("disabling %s: %s", report.url, values["disabled_reason"])
        await self._write(self.store.update_feed, feed_id, **values)
        report.status, report.error, report.error_class = status, reason, kind.value

    async def _full_texts(
        self, spec: FeedSpec, rule: FullText, entries: Sequence[Entry], report: FeedReport
    ) -> dict[int, str]:
        """Article bodies for the entries whose page could be fetched and cut.

        Item links are chosen by whoever writes the feed, so they are fetched
        through the address guard unless the feed opts out.
        """
        guard = None if spec.allow_private_networks else self.guard
        gate = asyncio.Semaphore(FULL_TEXT_CONCURRENCY)
        bodies: dict[int, str] = {}

        async def one(index: int, entry: Entry) -> None:
            if not entry.link:
                return
            async with gate:
                try:
                    page = await self.fetcher.fetch(
                        entry.link, accept="text/html,application/xhtml+xml", guard=guard
                    )
                    html = UnicodeDammit(
                        page.content, [page.charset] if page.charset else []
                    ).unicode_markup
                    bodies[index] = await self._in_worker(
                        extract_full_text,
                        html or "",
                        selector=rule.selector,
                        remove=rule.remove,
                        base_url=page.final_url,
                    )
                except (FetchError, ContentError) as exc:
                    report.notes.append(f"full text of {entry.link} kept the feed's body: {exc}")

        await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))
        return bodies
