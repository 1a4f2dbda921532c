"""Write stored posts as seed-format files, ready for a Hexo ``source/_posts``.

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
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aggregator.post import render
from aggregator.store import StoredPost

__all__ = [
    "SUFFIX",
    "ExportError",
    "ExportResult",
    "export_posts",
    "post_path",
    "remove_post",
    "write_post",
]

SUFFIX = ".md"
#: Other endings replay reads; a file ``<slug><ending>`` already in the export
#: directory is the post's original and is written in place of ``<slug>.md``.
KEPT_SUFFIXES = (".txt",)


class ExportError(OSError):
    """The export directory cannot take the files; the database is untouched."""


@dataclass(slots=True)
class ExportResult:
    written: int = 0
    unchanged: int = 0

    def summary(self) -> str:
        return f"{self.written} written, {self.unchanged} unchanged"


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


def write_post(directory: Path, stored: StoredPost) -> bool:
    """Write one post atomically; False when the file already had these bytes."""
    path = post_path(directory, stored.slug)
    data = render(stored.post).encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ExportError(exc.errno, _explain(exc, path)) from exc
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{stored.slug}.", suffix=".tmp", dir=directory)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
        tmp = None
    except OSError as exc:
        raise ExportError(exc.errno, _explain(exc, path)) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return True


def remove_post(directory: Path, slug: str) -> bool:
    """Delete a post's file (a filter now blocks it); False when it was not there."""
    path = post_path(directory, slug)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ExportError(exc.errno, _explain(exc, path)) from exc
    return True


def prepare_directory(directory: Path) -> None:
    """Create the export directory, or say plainly why it cannot be used."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            exc.errno, f"cannot create export directory {directory}: {exc.strerror}"
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ExportError(errno.EACCES, f"export directory {directory} is not writable")


def export_posts(
    directory: Path,
    posts: Iterable[StoredPost],
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
