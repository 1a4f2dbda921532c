"""The export ledger: which version of which post has its file in which directory.

Posts are committed before their files are written, so a crash between the
two, a full disk or a read-only directory used to leave stored posts that no
later pass wrote ("0 new": nothing to do).  The ``exports`` table closes that
gap: a row is added (or moved to the new revision) only after a file's rename
succeeded, so whatever the table does not vouch for is still to do, and every
pass can ask for it.

The decision itself -- given a post and its ledger row, write, remove or
leave alone -- is :func:`plan_exports`, a pure function; the queries here only
narrow the posts down to the candidates (a full pass over a large archive
would otherwise cost a render per post) and apply what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aggregator.store import models as m
from aggregator.store.posts import stored_post

if TYPE_CHECKING:
    from aggregator.store.posts import StoredPost
    from aggregator.store.store import Store

__all__ = [
    "ExportLedger",
    "ExportPlan",
    "LedgerRow",
    "PostVersion",
    "Written",
    "directory_key",
    "plan_exports",
]

_POSTS = cast(Table, m.Post.__table__)
_EXPORTS = cast(Table, m.ExportedFile.__table__)

#: Posts read at once when the pending files are written.
LOAD_BATCH = 200


def directory_key(directory: Path) -> str:
    """How a directory is named in the ledger: absolute and resolved.

    ``--export site/_posts`` from two working directories, or through a
    symlink, is one directory on disk and must be one set of rows.
    """
    return str(directory.resolve())


@dataclass(frozen=True, slots=True)
class PostVersion:
    """What the ledger compares of a post: its identity and version."""

    id: int
    slug: str
    revision: int
    updated_at: datetime
    blocked: bool = False


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """A file as the ledger knows it (``post_id`` None: the post is gone)."""

    id: int
    post_id: int | None
    file_name: str
    revision: int
    post_updated_at: datetime


@dataclass(frozen=True, slots=True)
class Written:
    """A post's file that is now on disk with these bytes (written or found identical)."""

    post_id: int
    file_name: str
    revision: int
    post_updated_at: datetime


@dataclass(slots=True)
class ExportPlan:
    """What a directory lacks: posts to write, files to remove, rows to drop."""

    write: list[int] = field(default_factory=list)
    remove: list[LedgerRow] = field(default_factory=list)
    #: Rows of removed or blocked posts whose file name a live post now has:
    #: the row goes, the file (the live post's) stays.
    forget: list[LedgerRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.write) + len(self.remove)


def plan_exports(
    pairs: Iterable[tuple[PostVersion | None, LedgerRow | None]],
    *,
    file_name: Callable[[str], str],
    live_names: Iterable[str] = (),
) -> ExportPlan:
    """Decide, for each post and its ledger row in one directory, what the file needs.

    * an exportable post without a row, or whose row holds another revision
      (or an older ``updated_at``: reprocess changes content in place), is
      written;
    * a row whose post is blocked or gone has its file removed -- unless a
      live post's file has that name (``live_names``, or a post written in
      this plan), which must not be deleted;
    * everything else is up to date.
    """
    plan = ExportPlan()
    stale: list[LedgerRow] = []
    claimed = set(live_names)
    for post, row in pairs:
        if post is not None and not post.blocked:
            if (
                row is None
                or row.revision != post.revision
                or row.post_updated_at != post.updated_at
            ):
                plan.write.append(post.id)
            claimed.add(row.file_name if row is not None else file_name(post.slug))
        elif row is not None:
            stale.append(row)
    for row in stale:
        (plan.forget if row.file_name in claimed else plan.remove).append(row)
    return plan


class ExportLedger:
    """The ``exports`` table of one store; every method is one transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def plan(self, directory: Path, *, file_name: Callable[[str], str]) -> ExportPlan:
        """What ``directory`` lacks, from the database alone (no file is read)."""
        key = directory_key(directory)
        posts, rows = _POSTS, _EXPORTS
        version = (posts.c.id, posts.c.slug, posts.c.revision, posts.c.updated_at)
        ledger = (
            rows.c.id,
            rows.c.post_id,
            rows.c.file_name,
            rows.c.revision,
            rows.c.post_updated_at,
        )
        to_write = (
            select(*version, *ledger)
            .select_from(
                posts.outerjoin(rows, and_(rows.c.post_id == posts.c.id, rows.c.directory == key))
            )
            .where(
                posts.c.blocked.is_(None),
                or_(
                    rows.c.id.is_(None),
                    rows.c.revision != posts.c.revision,
                    rows.c.post_updated_at != posts.c.updated_at,
                ),
            )
            .order_by(posts.c.id)
        )
        to_remove = (
            select(*ledger, *version, posts.c.blocked)
            .select_from(rows.outerjoin(posts, posts.c.id == rows.c.post_id))
            .where(
                rows.c.directory == key, or_(rows.c.post_id.is_(None), posts.c.blocked.is_not(None))
            )
            .order_by(rows.c.id)
        )
        pairs: list[tuple[PostVersion | None, LedgerRow | None]] = []
        with self._store.engine.connect() as conn:
            for r in conn.execute(to_write):
                pairs.append((PostVersion(*r[:4]), LedgerRow(*r[4:]) if r[4] is not None else None))
            for gone in conn.execute(to_remove):
                post = PostVersion(*gone[5:9], blocked=True) if gone[5] is not None else None
                pairs.append((post, LedgerRow(*gone[:5])))
            names = {row.file_name for _, row in pairs if row is not None}
            live = (
                set(
                    conn.scalars(
                        select(rows.c.file_name)
                        .join(posts, posts.c.id == rows.c.post_id)
                        .where(
                            rows.c.directory == key,
                            posts.c.blocked.is_(None),
                            rows.c.file_name.in_(names),
                        )
                    )
                )
                if names
                else set()
            )
        return plan_exports(pairs, file_name=file_name, live_names=live)

    def load(
        self, post_ids: Sequence[int], *, batch: int = LOAD_BATCH
    ) -> Iterator[list[StoredPost]]:
        """The posts to write, a batch at a time (blocked ones since planned are left out)."""
        for start in range(0, len(post_ids), batch):
            ids = post_ids[start : start + batch]
            with Session(self._store.engine) as session:
                rows = session.scalars(
                    select(m.Post).where(m.Post.id.in_(ids), m.Post.blocked.is_(None))
                )
                found = {row.id: stored_post(row) for row in rows}
            yield [found[i] for i in ids if i in found]

    def record(self, directory: Path, written: Sequence[Written], *, now: datetime) -> None:
        """Note files that are on disk now (call only after their rename succeeded)."""
        if not written:
            return
        key = directory_key(directory)
        table = _EXPORTS
        values: list[dict[str, Any]] = [
            {
                "post_id": w.post_id,
                "directory": key,
                "file_name": w.file_name,
                "revision": w.revision,
                "post_updated_at": w.post_updated_at,
                "written_at": now,
            }
            for w in {w.post_id: w for w in written}.values()  # the last write of a post wins
        ]
        # Upsert: another process (or thread) may have recorded the post
        # since; the file on disk is the one renamed last, which is ours.
        insert: Any = (
            postgresql.insert if self._store.engine.dialect.name == "postgresql" else sqlite.insert
        )
        statement = insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.directory, table.c.post_id],
            set_={
                "file_name": statement.excluded.file_name,
                "revision": statement.excluded.revision,
                "post_updated_at": statement.excluded.post_updated_at,
                "written_at": statement.excluded.written_at,
            },
        )
        with self._store.engine.begin() as conn:
            conn.execute(statement, values)

    def forget(
        self, directory: Path, *, file_names: Iterable[str] = (), row_ids: Iterable[int] = ()
    ) -> None:
        """Drop the rows of files that were removed (or are no longer this row's)."""
        names, ids = list(file_names), list(row_ids)
        if not names and not ids:
            return
        table = _EXPORTS
        condition = or_(
            and_(table.c.directory == directory_key(directory), table.c.file_name.in_(names)),
            table.c.id.in_(ids),
        )
        with self._store.engine.begin() as conn:
            conn.execute(delete(table).where(condition))

    def files(self, directory: Path) -> dict[str, int]:
        """Every file the ledger vouches for in ``directory``, with its revision."""
        table = _EXPORTS
        with self._store.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.file_name, table.c.revision).where(
                    table.c.directory == directory_key(directory)
                )
            )
            return {str(name): int(revision) for name, revision in rows}
