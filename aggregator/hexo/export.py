"""Write posts as seed-format files, ready for a Hexo ``source/_posts``.

Files are named by the post's slug (date plus content-hash prefix, fixed when
the post was first stored; a replayed file's own stem), so a re-export or an
edited post rewrites the same file and two posts never collide.  A replayed
seed named ``<slug>.txt`` that is still in the directory is rewritten under
that name, so exporting into the folder replayed from adds no file.  Each file
is written to a temporary name in the same directory and renamed over the old
one, so a reader (Hexo's watcher, rsync) never sees half a file, and a crash
or a full disk leaves the old file in place.  Files whose bytes would not
change are not touched at all, which keeps mtimes meaningful for static-site
generators.

This module knows files and the format only; keeping a directory in step
with the database through the export ledger is the service's
(:class:`aggregator.service.export.Exporter`), so the post files' rules need
no database to be read or tested.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aggregator.errors import AggregatorError
from aggregator.hexo.post import Post, render

__all__ = [
    "SUFFIX",
    "ExportError",
    "ExportResult",
    "PostFile",
    "export_posts",
    "file_name",
    "post_path",
    "prepare_directory",
    "remove_file",
    "remove_post",
    "write_post",
]

log = logging.getLogger(__name__)

SUFFIX = ".md"
#: Other endings replay reads; a file ``<slug><ending>`` already in the export
#: directory is the post's original and is written in place of ``<slug>.md``.
KEPT_SUFFIXES = (".txt",)

#: Temporary files older than this are leftovers of a killed writer.
STALE_TEMPORARY_SECONDS = 15 * 60
TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
#: Errors after which no other file of the batch can be written either.
_DIRECTORY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class PostFile(Protocol):
    """What a file is written from: the store's ``StoredPost`` fits.

    A protocol, so writing files needs the format and not the store
    (hexo and store are siblings: tests/test_layers.py).
    """

    @property
    def slug(self) -> str: ...
    @property
    def post(self) -> Post: ...


class ExportError(AggregatorError, OSError):
    """A file could not be written or removed; the database is untouched.

    ``whole_directory`` says the directory itself refuses (read-only, full,
    missing): trying the other files of the batch is pointless.  Otherwise
    only this file failed (a directory in its place, an immutable file).
    """

    whole_directory: bool = False
    path: Path | None = None


def _error(exc: OSError, path: Path, *, whole_directory: bool) -> ExportError:
    err = ExportError(exc.errno, _explain(exc, path))
    err.whole_directory = whole_directory or exc.errno in _DIRECTORY_ERRNOS
    err.path = path
    return err


def file_name(slug: str) -> str:
    """A post's file name in the export directory."""
    return f"{slug}{SUFFIX}"


@dataclass(slots=True)
class ExportResult:
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    #: Files that failed, and files of the batch not tried after the
    #: directory refused (both are still missing; the next pass retries).
    failures: list[ExportError] = field(default_factory=list)
    skipped: int = 0

    @property
    def missing(self) -> int:
        return len(self.failures) + self.skipped

    def summary(self) -> str:
        text = f"{self.written} written, {self.unchanged} unchanged"
        if self.removed:
            text += f", {self.removed} removed"
        if self.missing:
            text += f", {self.missing} failed"
        return text

    def add(self, other: ExportResult) -> None:
        self.written += other.written
        self.unchanged += other.unchanged
        self.removed += other.removed
        self.failures.extend(other.failures)
        self.skipped += other.skipped

    def problem(self, directory: Path) -> str | None:
        """What went wrong, what to do about it, and what happens then; None if nothing."""
        if not self.failures:
            return None
        first = next((f for f in self.failures if f.whole_directory), self.failures[0])
        n = self.missing
        files = f"{n} missing file{'s' if n != 1 else ''}"
        if first.errno in (errno.ENOSPC, errno.EDQUOT):
            return (
                f"no space left on the device holding {directory}: free some space, "
                f"the next pass writes the {files}"
            )
        if first.whole_directory and first.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            detail = "" if "not writable" in (first.strerror or "") else f" ({first.strerror})"
            return (
                f"export directory {directory} is not writable: fix permissions, "
                f"the next pass writes the {files}{detail}"
            )
        if first.whole_directory:
            return f"{first.strerror}: fix that, the next pass writes the {files}"
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return (
            f"{first.strerror}{more}: fix that, the next pass writes the {files} "
            "(the other files were written)"
        )


def _explain(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path.parent}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write in {path.parent}: {exc.strerror}"
    return f"cannot write {path}: {exc.strerror or exc}"


def post_path(directory: Path, slug: str) -> Path:
    """Where a post's file is: ``<slug>.md``, or its replayed original's name."""
    path = directory / f"{slug}{SUFFIX}"
    if not path.exists():
        for suffix in KEPT_SUFFIXES:
            original = directory / f"{slug}{suffix}"
            if original.is_file():
                return original
    return path


def write_post(directory: Path, stored: PostFile) -> bool:
    """Write one post atomically; False when the file already had these bytes."""
    path = post_path(directory, stored.slug)
    data = render(stored.post).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except IsADirectoryError as exc:
        raise _error(exc, path, whole_directory=False) from exc
    except OSError as exc:
        raise _error(exc, path, whole_directory=exc.errno == errno.ENOTDIR) from exc
    tmp: Path | None = None
    try:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{stored.slug}.", suffix=".tmp", dir=directory)
        except OSError as exc:  # nothing can be created in this directory
            raise _error(exc, path, whole_directory=True) from exc
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        try:
            tmp.replace(path)
        except OSError as exc:  # this file's name is taken (a directory, an immutable file)
            raise _error(exc, path, whole_directory=False) from exc
        tmp = None
    except ExportError:
        raise
    except OSError as exc:
        raise _error(exc, path, whole_directory=False) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return True


def remove_post(directory: Path, slug: str) -> bool:
    """Delete a post's file (a filter now blocks it); False when it was not there."""
    return remove_file(directory, post_path(directory, slug).name)


def remove_file(directory: Path, name: str) -> bool:
    path = directory / name
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _error(exc, path, whole_directory=exc.errno in (errno.EROFS, errno.ENOTDIR)) from exc
    return True


def prepare_directory(directory: Path) -> None:
    """Create the export directory, or say plainly why it cannot be used."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        err = ExportError(exc.errno, f"cannot create export directory {directory}: {exc.strerror}")
        err.whole_directory, err.path = True, directory
        raise err from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        err = ExportError(errno.EACCES, f"export directory {directory} is not writable")
        err.whole_directory, err.path = True, directory
        raise err


def export_posts(
    directory: Path,
    posts: Iterable[PostFile],
    *,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write every post under ``directory``; stops at the first write error."""
    prepare_directory(directory)
    result = ExportResult()
    for stored in posts:
        if write_post(directory, stored):
            result.written += 1
        else:
            result.unchanged += 1
        if progress is not None:
            progress(1)
    return result
