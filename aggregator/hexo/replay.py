"""Load seed-format files into the store (or anything that adds posts).

Replay is how an existing archive (or the repo's ``seeds/``) becomes the
starting state of the database.  A broken file never stops the replay: it is
reported with its line and skipped, and the caller learns from the result that
something failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aggregator.hexo import post as fmt
from aggregator.policy.dedup import Outcome

__all__ = ["PostSink", "ReplayResult", "collect_files", "replay"]


class PostSink(Protocol):
    """Where replayed posts go: the store's ``Store`` fits.

    A protocol, so reading archives needs the format and not the store
    (hexo and store are siblings: tests/test_layers.py).
    """

    def add_posts(
        self, posts: Sequence[fmt.Post], *, names: Sequence[str | None] | None = ...
    ) -> Sequence[Outcome]: ...

#: File name endings replay picks up inside directories (files named
#: explicitly are always read).  ``.txt`` is the seeds', ``.md`` is export's.
SUFFIXES = (".txt", ".md")
BATCH = 200


@dataclass(slots=True)
class ReplayResult:
    new: int = 0
    duplicate: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)

    def summary(self) -> str:
        text = f"{self.new} new, {self.duplicate} duplicate"
        return text + (f", {self.failed} failed" if self.errors else "")


def collect_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and post files found under directories (sorted)."""
    for path in paths:
        if path.is_dir():
            found: list[Path] = []
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    Path(root) / name
                    for name in files
                    if name.endswith(SUFFIXES) and not name.startswith(".")
                )
            yield from sorted(found)
        else:
            yield path


def _read(path: Path, timezone: str) -> fmt.Post:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fmt.PostFormatError(
            f"cannot read file: {exc.strerror or exc}", None, str(path)
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise fmt.PostFormatError(
            f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start})", line, str(path)
        ) from None
    return fmt.parse(text, source=str(path), timezone=timezone)


def replay(
    store: PostSink,
    files: Iterable[Path],
    *,
    progress: Callable[[int], None] | None = None,
    timezone: str = "UTC",
) -> ReplayResult:
    """Parse each file and store its post once (dedup by content hash).

    A new post keeps its file's stem as slug, so exporting into the folder it
    was replayed from rewrites the same files instead of adding copies;
    ``timezone`` is the archive's zone, for dates written without one.
    """
    result = ReplayResult()
    batch: list[fmt.Post] = []
    names: list[str | None] = []

    def flush() -> None:
        for outcome in store.add_posts(batch, names=names):
            if outcome is Outcome.NEW:
                result.new += 1
            else:
                result.duplicate += 1
        if progress is not None:
            progress(len(batch))
        batch.clear()
        names.clear()

    for path in files:
        try:
            batch.append(_read(path, timezone))
        except fmt.PostFormatError as exc:
            result.errors.append(str(exc))
            if progress is not None:
                progress(1)
            continue
        names.append(path.stem)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return result
