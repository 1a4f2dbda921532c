"""Keep an export directory in step with the database, through the export ledger.

The files' rules (names, atomic writes, what a failure means) are
:mod:`aggregator.hexo.export`'s; the ledger is the store's
(:mod:`aggregator.store.exports`).  This is where the two meet: every file
is recorded once its rename succeeded, so whatever a crash, a full disk or
a read-only directory kept from being written is found and written by the
next pass.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from aggregator.hexo.export import (
    STALE_TEMPORARY_SECONDS,
    TEMPORARY,
    ExportError,
    ExportResult,
    post_path,
    prepare_directory,
    remove_file,
    write_post,
)
from aggregator.store import Store, StoredPost
from aggregator.store.exports import Written

__all__ = ["Exporter"]

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Exporter:
    """Keeps one export directory in step with the database, through the ledger.

    Thread-safe: one file is never written by two threads at once, so the
    order of the writes is the order of the ledger updates, and the ledger
    never vouches for a revision older or newer than the file on disk.
    """

    def __init__(
        self, store: Store, directory: Path, *, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.store = store
        self.directory = directory
        self.clock = clock
        self._lock = threading.Lock()

    def write(self, posts: Sequence[StoredPost], removed_slugs: Sequence[str] = ()) -> ExportResult:
        """Write these posts and remove these files now, and record what was done."""
        with self._lock:
            result = ExportResult()
            written = self._write_files(posts, result)
            removed = self._remove_files(
                [post_path(self.directory, s).name for s in removed_slugs], result
            )
            self._note(written, file_names=removed)
            return result

    def export_all(
        self, posts: Iterable[StoredPost], *, progress: Callable[[int], None] | None = None
    ) -> ExportResult:
        """Write every given post (``aggregator export``), recording them as it goes."""
        result = ExportResult()
        batch: list[StoredPost] = []
        for stored in posts:
            batch.append(stored)
            if len(batch) >= 200:
                result.add(self.write(batch))
                if progress is not None:
                    progress(len(batch))
                batch = []
        if batch:
            result.add(self.write(batch))
            if progress is not None:
                progress(len(batch))
        return result

    def catch_up(self, *, sweep: bool = False) -> ExportResult:
        """Write every file the ledger does not vouch for, remove what must go.

        ``sweep`` also deletes temporary files that a killed writer left
        behind (only old ones: another process may be writing right now).
        """
        with self._lock:
            result = ExportResult()
            if sweep:
                self._sweep_temporaries()
            plan = self.store.exports.plan(self.directory, file_name=self._file_name)
            self._note([], row_ids=[r.id for r in plan.forget])
            if not len(plan):
                return result
            try:
                self._ensure_directory()
            except ExportError as exc:
                result.failures.append(exc)
                result.skipped = len(plan) - 1
                return result
            gone = set(self._remove_files([row.file_name for row in plan.remove], result))
            self._note([], row_ids=[r.id for r in plan.remove if r.file_name in gone])
            done = 0
            for batch in self.store.exports.load(plan.write):
                written = self._write_files(batch, result)
                self._note(written)
                done += len(batch)
                if any(f.whole_directory for f in result.failures):
                    result.skipped += len(plan.write) - done
                    break
            return result

    # -- files ------------------------------------------------------------

    def _file_name(self, slug: str) -> str:
        """``<slug>.md``, or the replayed original's own name (see :func:`post_path`)."""
        return post_path(self.directory, slug).name

    def _ensure_directory(self) -> None:
        """Make the directory at first use (and again if it was removed).

        An existing one is not probed: the first write says precisely why
        it refuses (read-only file system, permission, full).
        """
        if not self.directory.is_dir():
            prepare_directory(self.directory)

    def _write_files(self, posts: Sequence[StoredPost], result: ExportResult) -> list[Written]:
        written: list[Written] = []
        if not posts:
            return written
        try:
            self._ensure_directory()
        except ExportError as exc:
            result.failures.append(exc)
            result.skipped += len(posts) - 1
            return written
        for index, stored in enumerate(posts):
            try:
                changed = write_post(self.directory, stored)
            except ExportError as exc:
                if exc.errno == errno.ENOENT and not self.directory.is_dir():
                    exc.whole_directory = True  # the directory itself went away
                result.failures.append(exc)
                if exc.whole_directory:
                    result.skipped += len(posts) - index - 1
                    break
                continue
            if changed:
                result.written += 1
            else:
                result.unchanged += 1
            written.append(
                Written(stored.id, self._file_name(stored.slug), stored.revision, stored.updated_at)
            )
        return written

    def _remove_files(self, names: Sequence[str], result: ExportResult) -> list[str]:
        """Remove files; returns the names that are gone now (removed or never there)."""
        gone: list[str] = []
        for name in names:
            try:
                if remove_file(self.directory, name):
                    result.removed += 1
            except ExportError as exc:
                result.failures.append(exc)
                continue
            gone.append(name)
        return gone

    def _sweep_temporaries(self) -> None:
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return
        for entry in entries:
            if not TEMPORARY.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    Path(entry.path).unlink()
                    log.info("removed %s, left behind by an interrupted export", entry.path)

    # -- ledger -----------------------------------------------------------

    def _note(
        self,
        written: Sequence[Written],
        *,
        file_names: Sequence[str] = (),
        row_ids: Sequence[int] = (),
    ) -> None:
        """Record what is on disk now; a database error only postpones it.

        The files are in place either way: unrecorded ones are compared
        byte for byte by the next pass (and not rewritten), so the ledger
        catches up without anything being written twice.
        """
        ledger = self.store.exports
        try:
            ledger.forget(self.directory, file_names=file_names, row_ids=row_ids)
            ledger.record(self.directory, written, now=self.clock())
        except SQLAlchemyError as exc:
            log.warning(
                "export ledger not updated for %d file(s) in %s (database: %s); "
                "the next pass checks them again",
                len(written) + len(file_names),
                self.directory,
                str(exc).splitlines()[0],
            )
