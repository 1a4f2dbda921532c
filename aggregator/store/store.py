"""The store: one database URL, and every query the project issues, by concern.

:class:`Store` is a thin facade, as reader's ``Storage`` is: it opens and
closes the engine, and takes its methods from one mixin per concern --

* :mod:`aggregator.store.posts`: the Post <-> row mapping, replayed posts in,
  exportable posts out;
* :mod:`aggregator.store.ingest`: a fetched feed's items in (gather facts ->
  decide -> apply);
* :mod:`aggregator.store.reprocess`: stored entries out, re-derived posts back;
* :mod:`aggregator.store.feeds`: feed rows, leases, what a poll records;
* :mod:`aggregator.store.exports`: the export ledger (``Store.exports``).

Every public method is one transaction: either everything it was asked to
write is committed, or nothing is (ARCHITECTURE invariant 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from aggregator.store.bulk import NewRows
from aggregator.store.engine import check_schema, make_engine, upgrade
from aggregator.store.feeds import FeedsMixin
from aggregator.store.ingest import IngestMixin
from aggregator.store.posts import PostsMixin
from aggregator.store.reprocess import ReprocessMixin

if TYPE_CHECKING:
    from aggregator.store.exports import ExportLedger

__all__ = ["Store"]


class Store(PostsMixin, IngestMixin, ReprocessMixin, FeedsMixin):
    """The database behind one URL.  Thread-safe; one instance per process."""

    def __init__(self, engine: Engine) -> None:
        """New posts and entries are written through :mod:`aggregator.store.bulk`,
        which needs INSERT ... RETURNING (SQLite 3.35 or later)."""
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)
        self._new_rows = NewRows(engine.dialect)

    @classmethod
    def open(cls, url: str, *, schema: Literal["upgrade", "check", "as-is"] = "upgrade") -> Store:
        """Connect; ``schema`` says whether to migrate, to insist on the current schema, or neither.

        Commands that write (fetch, replay, run) upgrade; commands that only
        read (status, export) check, and refuse an empty or older database
        instead of changing it; ``db current`` takes the database as it is.
        """
        engine = make_engine(url)
        try:
            if schema == "upgrade":
                upgrade(engine)
            elif schema == "check":
                check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def exports(self) -> ExportLedger:
        """Which posts' files are in which export directory (aggregator.store.exports)."""
        from aggregator.store.exports import ExportLedger

        return ExportLedger(self)

    def ping(self) -> None:
        """Raise if the database does not answer (used by /healthz)."""
        with self.engine.connect() as conn:
            conn.execute(select(1))
