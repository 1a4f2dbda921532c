"""``aggregator reprocess``: run the content stage again over stored entries.

Rules change after items are stored: a new block rule, a fixed clean-up, a
placeholder image.  Readers that only apply rules to new items leave the
archive inconsistent (Miniflux #2688); here every stored entry keeps its raw
fields (:mod:`aggregator.rawentry`), so the same :func:`~aggregator.pipeline.
build_item` that a fetch uses re-derives its post and filter verdict, the
store applies what changed, and the export directory follows: changed posts
are rewritten under the same file name, newly blocked ones are removed,
unblocked ones come back.

No network is used: a ``full_text`` body that was fetched is re-cleaned from
what was stored, but a changed ``full_text`` selector needs the article page
and only takes effect for items fetched from then on.  Entry keys are not
recomputed either (the next fetch re-keys them, see
:func:`aggregator.dedup.fallback_match`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from aggregator import images as image_archive
from aggregator.export import prepare_directory, remove_post, write_post
from aggregator.feeds import FeedSpec
from aggregator.pipeline import build_item
from aggregator.rawentry import RawEntryError, load_entry
from aggregator.store import Reprocessed, Store

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
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.entries} entries: {self.updated} updated, {self.blocked} blocked, "
            f"{self.unblocked} unblocked, {self.unchanged} unchanged"
        )
        if self.skipped:
            text += f", {self.skipped} skipped"
        return text + f"; {self.written} files written, {self.removed} removed"


def reprocess(
    store: Store,
    specs: Sequence[FeedSpec],
    *,
    since: datetime | None = None,
    export_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> ReprocessReport:
    """Re-derive the posts of ``specs``' stored entries with today's settings.

    Each batch of entries is one transaction, so an interrupted run leaves
    every post either as it was or fully reprocessed; running it again is
    harmless (unchanged entries change nothing).
    """
    now = now or datetime.now(UTC)
    report = ReprocessReport()
    if export_dir is not None:
        prepare_directory(export_dir)
    ids = store.feed_ids(spec.url for spec in specs)
    skipped_reasons: dict[str, int] = {}
    images_dir = export_dir.parent / "images" if export_dir is not None else None
    if images_dir is None and any(spec.images == "archive" for spec in specs):
        report.notes.append(
            "images: archive needs the export directory to find the archived images; "
            "reprocessed posts point at the remote images"
        )
    for spec in specs:
        feed_id = ids.get(spec.url)
        if feed_id is None:
            continue  # never fetched: nothing stored
        for batch in store.iter_entries(feed_id, since=since):
            updates: list[Reprocessed] = []
            for stored in batch:
                try:
                    entry, full_text = load_entry(stored.raw)
                except RawEntryError as exc:
                    report.skipped += 1
                    skipped_reasons[str(exc)] = skipped_reasons.get(str(exc), 0) + 1
                    continue
                item = build_item(entry, spec, first_seen=stored.first_seen_at, full_text=full_text)
                if spec.images == "archive" and images_dir is not None:
                    # Point at the images a fetch archived (no network here).
                    mapping = image_archive.archived_mapping(
                        image_archive.post_image_urls(item.post), images_dir
                    )
                    item = replace(item, post=image_archive.rewrite_post(item.post, mapping))
                updates.append(Reprocessed(stored.id, item.post, item.blocked))
            result = store.reprocess(updates, now=now)
            report.entries += len(batch)
            report.updated += result.updated
            report.unchanged += result.unchanged
            report.blocked += result.blocked
            report.unblocked += result.unblocked
            report.notes.extend(result.conflicts)
            if export_dir is not None:
                report.written += sum(write_post(export_dir, p) for p in result.changed_posts)
                report.removed += sum(remove_post(export_dir, s) for s in result.removed_slugs)
            if progress is not None:
                progress(len(batch))
    report.notes.extend(f"{n} skipped: {reason}" for reason, n in skipped_reasons.items())
    return report
