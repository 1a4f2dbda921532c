"""``aggregator reprocess``: run the content stage again over stored entries.

Rules change after items are stored: a new block rule, a fixed clean-up, a
placeholder image.  Readers that only apply rules to new items leave the
archive inconsistent (Miniflux #2688); here every stored entry keeps its raw
fields (:mod:`aggregator.content.rawentry`), so the same :func:`~aggregator.service.pipeline.
build_item` that a fetch uses re-derives its post and filter verdict, the
store applies what changed, and the export directory follows: changed posts
are rewritten under the same file name, newly blocked ones are removed,
unblocked ones come back.

No network is used by default.  An article page fetched for ``full_text``
is stored with the entry, so the feed's *current* selector and ``remove``
list are applied to it again here, offline.  Entries whose page was never
stored (fetched before pages were kept, or before ``full_text`` was switched
on) keep their stored full-text body, re-cleaned; ``refetch=True``
(``--refetch``) fetches their pages once -- through the address guard unless
the feed has ``allow_private_networks`` -- and stores them for next time.
Entry keys are not recomputed (the next fetch re-keys them, see
:func:`aggregator.policy.dedup.fallback_match`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from aggregator.config.feeds import FeedSpec, FullText
from aggregator.content import images as image_archive
from aggregator.content.clean import ContentError, extract_full_text
from aggregator.content.items import build_item
from aggregator.content.rawentry import RawEntryError, StoredPage, load_entry, load_page
from aggregator.fetch.fetcher import Fetcher, FetchError, FetchLimits
from aggregator.fetch.netguard import AddressGuard
from aggregator.hexo.export import ExportError, ExportResult, prepare_directory
from aggregator.parse.parser import Entry
from aggregator.service.export import Exporter
from aggregator.service.pipeline import FULL_TEXT_CONCURRENCY, fetch_page
from aggregator.store import Reprocessed, Store, StoredEntry

__all__ = ["ReprocessReport", "reprocess"]


@dataclass(slots=True)
class ReprocessReport:
    """Totals over every entry looked at; ``notes`` are for the person running it."""

    entries: int = 0
    updated: int = 0
    unchanged: int = 0
    blocked: int = 0
    unblocked: int = 0
    skipped: int = 0
    written: int = 0
    removed: int = 0
    #: Pages fetched again (``refetch``).
    refetched: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.entries} entries: {self.updated} updated, {self.blocked} blocked, "
            f"{self.unblocked} unblocked, {self.unchanged} unchanged"
        )
        if self.skipped:
            text += f", {self.skipped} skipped"
        text += f"; {self.written} files written, {self.removed} removed"
        if self.refetched:
            text += f"; {self.refetched} pages refetched"
        return text


def reprocess(
    store: Store,
    specs: Sequence[FeedSpec],
    *,
    since: datetime | None = None,
    export_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    refetch: bool = False,
    fetcher: Callable[[], Fetcher] | None = None,
    guard: AddressGuard | None = None,
) -> ReprocessReport:
    """Re-derive the posts of ``specs``' stored entries with today's settings.

    Each batch of entries is one transaction, so an interrupted run leaves
    every post either as it was or fully reprocessed; running it again is
    harmless (unchanged entries change nothing).  With ``refetch``, the
    article pages of ``full_text`` feeds' entries that have none stored are
    fetched with ``fetcher()`` (default: a plain :class:`Fetcher`).
    """
    now = now or datetime.now(UTC)
    run = _Run(
        images_dir=export_dir.parent / "images" if export_dir is not None else None,
        refetch=refetch,
        fetcher=fetcher,
    )
    report = run.report
    exporter: Exporter | None = None
    exported = ExportResult()
    if export_dir is not None:
        prepare_directory(export_dir)
        exporter = Exporter(store, export_dir)
    ids = store.feed_ids(spec.url for spec in specs)
    if run.images_dir is None and any(spec.images == "archive" for spec in specs):
        report.notes.append(
            "images: archive needs the export directory to find the archived images; "
            "reprocessed posts point at the remote images"
        )
    for spec in specs:
        feed_id = ids.get(spec.url)
        if feed_id is None:
            continue  # never fetched: nothing stored
        page_guard = None if spec.allow_private_networks else (guard or AddressGuard())
        for batch in store.iter_entries(feed_id, since=since):
            result = store.reprocess(run.updates(spec, batch, page_guard), now=now)
            report.entries += len(batch)
            report.updated += result.updated
            report.unchanged += result.unchanged
            report.blocked += result.blocked
            report.unblocked += result.unblocked
            report.notes.extend(result.conflicts)
            if exporter is not None:
                # Through the ledger: a file that fails here is written by the next pass.
                done = exporter.write(result.changed_posts, result.removed_slugs)
                report.written += done.written
                report.removed += done.removed
                exported.add(done)
            if progress is not None:
                progress(len(batch))
    problem = exported.problem(export_dir) if export_dir is not None else None
    if problem is not None:
        first = exported.failures[0]
        raise ExportError(first.errno, problem)
    run.finish_notes()
    return report


@dataclass(slots=True)
class _Run:
    """One reprocess run's settings and the tallies its notes are written from."""

    images_dir: Path | None
    refetch: bool
    fetcher: Callable[[], Fetcher] | None
    report: ReprocessReport = field(default_factory=ReprocessReport)
    #: Why stored entries could not be read back, and how many each.
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    #: Why a full-text feed's stored or refetched page gave no body, and how many each.
    page_notes: dict[str, int] = field(default_factory=dict)
    #: Entries of full-text feeds with no stored page (their full text re-cleaned).
    no_page: int = 0

    def updates(
        self, spec: FeedSpec, batch: Sequence[StoredEntry], page_guard: AddressGuard | None
    ) -> list[Reprocessed]:
        """One batch's entries re-derived: the post, verdict and raw form of each."""
        loaded: list[tuple[StoredEntry, Entry, str | None, StoredPage | None]] = []
        for stored in batch:
            try:
                entry, full_text = load_entry(stored.raw)
            except RawEntryError as exc:
                self.report.skipped += 1
                _count(self.skipped_reasons, str(exc))
                continue
            loaded.append((stored, entry, full_text, load_page(stored.raw)))
        fetched: dict[str, StoredPage | FetchError] = {}
        if self.refetch and spec.full_text is not None:
            links = sorted({e.link for _, e, _, p in loaded if p is None and e.link})
            if links:
                fetched = _refetch(links, self.fetcher, page_guard)
        updates: list[Reprocessed] = []
        for stored, entry, full_text, page in loaded:
            if spec.full_text is not None:
                full_text, page = self._full_text(spec.full_text, entry, full_text, page, fetched)
            item = build_item(
                entry, spec, first_seen=stored.first_seen_at, full_text=full_text, page=page
            )
            if spec.images == "archive" and self.images_dir is not None:
                # Point at the images a fetch archived (no network here).
                mapping = image_archive.archived_mapping(
                    image_archive.post_image_urls(item.post), self.images_dir
                )
                item = replace(item, post=image_archive.rewrite_post(item.post, mapping))
            raw = item.raw if item.raw != stored.raw else None
            updates.append(Reprocessed(stored.id, item.post, item.blocked, raw))
        return updates

    def _full_text(
        self,
        rule: FullText,
        entry: Entry,
        full_text: str | None,
        page: StoredPage | None,
        fetched: dict[str, StoredPage | FetchError],
    ) -> tuple[str | None, StoredPage | None]:
        """A full-text feed's body for one entry: cut from its page, stored or refetched."""
        if page is None and entry.link in fetched:
            got = fetched[entry.link]
            if isinstance(got, FetchError):
                _count(self.page_notes, f"page refetch failed ({got.reason})")
            else:
                page = got
                self.report.refetched += 1
        if page is not None:
            full_text = _cut(page, rule, self.page_notes)
        else:
            self.no_page += 1
        return full_text, page

    def finish_notes(self) -> None:
        """The run's tallies as notes for the person running it, after the batches' own."""
        notes = self.report.notes
        notes.extend(f"{n} skipped: {reason}" for reason, n in self.skipped_reasons.items())
        notes.extend(
            f"{n} entries: {reason}, the feed's body was used"
            for reason, n in self.page_notes.items()
        )
        if self.no_page:
            notes.append(
                f"{self.no_page} entries of full_text feeds have no stored article page: their "
                "stored full text was re-cleaned, not cut again with the current selector "
                "(pass --refetch to fetch their pages)"
            )


def _count(counter: dict[str, int], reason: str) -> None:
    counter[reason] = counter.get(reason, 0) + 1


def _cut(page: StoredPage, rule: FullText, notes: dict[str, int]) -> str | None:
    """The body ``rule`` cuts from ``page``; ``None`` (the feed's body) as a fetch would."""
    try:
        return extract_full_text(
            page.html, selector=rule.selector, remove=rule.remove, base_url=page.url
        )
    except ContentError as exc:
        _count(notes, str(exc))
        return None


def _refetch(
    links: Sequence[str],
    fetcher: Callable[[], Fetcher] | None,
    guard: AddressGuard | None,
) -> dict[str, StoredPage | FetchError]:
    """Fetch ``links``' pages (a few at a time) in a fresh event loop."""

    async def run() -> dict[str, StoredPage | FetchError]:
        gate = asyncio.Semaphore(FULL_TEXT_CONCURRENCY)
        pages: dict[str, StoredPage | FetchError] = {}
        async with fetcher() if fetcher is not None else Fetcher(FetchLimits()) as client:

            async def one(link: str) -> None:
                async with gate:
                    try:
                        pages[link] = await fetch_page(client, link, guard=guard)
                    except FetchError as exc:
                        pages[link] = exc

            await asyncio.gather(*(one(link) for link in links))
        return pages

    return asyncio.run(run())
