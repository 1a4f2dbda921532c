"""Bulk inserts of new posts and their entries, below SQLAlchemy's per-row work.

On a cold start nearly every fetched item is new, and SQLite has one writer:
every microsecond spent building the INSERTs of new posts and entries holds
up every other feed's ingest.  Through SQLAlchemy Core most of that time goes
to per-row machinery (parameter construction, a type-decorator call for each
datetime value, insertmanyvalues batching), not to SQLite.  This module
builds the same rows once: each column's bind processor is looked up once
per dialect, the SQL is written once per dialect (and per row count, for the
multi-row INSERT ... RETURNING of posts), and the rows go to the driver
through :meth:`Connection.exec_driver_sql`, which still translates driver
errors into SQLAlchemy's (``Store.ingest`` retries on ``IntegrityError``).
It is the one way new posts and entries of a fetched feed are written, so
it needs INSERT ... RETURNING (SQLite 3.35 or later, any PostgreSQL).

The rows are exactly those Core would write (tests/test_store.py compares
every column on both backends): the values go through the dialect's own
bind processors, except UTC datetimes on SQLite, which are formatted here in
the SQLite dialect's storage format (``YYYY-MM-DD HH:MM:SS.ffffff``, naive
UTC, as :class:`~aggregator.store.models.UTCDateTime` stores them), so rows
written before and after sort and compare alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import JSON, Column, Table
from sqlalchemy.engine import Connection, Dialect

from aggregator.store import models as m

__all__ = ["ENTRY_COLUMNS", "POST_COLUMNS", "JSONText", "NewRows", "sqlite_utc"]


def _columns(table: Any) -> tuple[str, ...]:
    return tuple(column.name for column in table.c if not column.primary_key)


#: Every column of a post but its id, in the table's order: the rows handed
#: to :meth:`NewRows.insert_posts` are :func:`aggregator.store.posts.new_post_values`.
POST_COLUMNS: Final = _columns(m.Post.__table__)
#: Every column of an entry but its id: :func:`aggregator.store.ingest.entry_values`.
ENTRY_COLUMNS: Final = _columns(m.Entry.__table__)

# SQLite before 3.32 allows 999 parameters per statement; PostgreSQL 65535.
_MAX_PARAMS: Final = {"sqlite": 999, "postgresql": 30_000}

_Processor = Callable[[Any], Any]


class JSONText(str):
    """A JSON column's value already serialised as the column would (on SQLite).

    ``IngestItem.raw_text``: the parse worker encodes each raw entry once,
    and the single writer passes the text on instead of encoding the dict
    again.  Only where :attr:`NewRows.takes_json_text`: other drivers
    (psycopg) adapt JSON values themselves.
    """

    __slots__ = ()


def _json_column(encode: _Processor | None) -> _Processor:
    """A SQLite JSON column's processor that lets :class:`JSONText` through as it is."""

    def process(value: Any) -> Any:
        if type(value) is JSONText:
            return str(value)
        return encode(value) if encode is not None else value

    return process


def sqlite_utc(value: datetime | None) -> str | None:
    """An aware datetime as SQLAlchemy's SQLite dialect stores a ``UTCDateTime``.

    The same checks as ``UTCDateTime.process_bind_param`` (naive values are
    refused), then the dialect's storage format; ``isoformat`` with
    microseconds always writes four year digits and six fraction digits,
    which is that format.
    """
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    text = _UTC_TEXT.get(value)
    if text is None:
        text = value.replace(tzinfo=None).isoformat(" ", "microseconds")
        if len(_UTC_TEXT) >= 1024:
            _UTC_TEXT.clear()
        _UTC_TEXT[value] = text
    return text


#: Recent :func:`sqlite_utc` texts of UTC datetimes.  A feed's entries all
#: carry the one ``now`` of its poll twice (first and last seen), so most
#: values repeat.  Only ``tzinfo is UTC`` is kept: two such datetimes are
#: equal exactly when they are the same instant (in a zone with a DST fold,
#: equal wall times of one tzinfo may be two instants), and UTC needs no
#: ``astimezone``.
_UTC_TEXT: dict[datetime, str] = {}


def _processors(table: Table, names: Sequence[str], dialect: Dialect) -> list[_Processor | None]:
    """Each column's bind processor for ``dialect`` (None where values pass as they are)."""
    found: list[_Processor | None] = []
    for name in names:
        column: Column[Any] = table.c[name]
        if isinstance(column.type, m.UTCDateTime) and dialect.name == "sqlite":
            found.append(sqlite_utc)
        elif isinstance(column.type, JSON) and dialect.name == "sqlite":
            found.append(_json_column(column.type.dialect_impl(dialect).bind_processor(dialect)))
        else:
            found.append(column.type.dialect_impl(dialect).bind_processor(dialect))
    return found


def _active(processors: Sequence[_Processor | None]) -> list[tuple[int, _Processor]]:
    """The positions that have a processor: the others are copied, not called."""
    return [(index, proc) for index, proc in enumerate(processors) if proc is not None]


def _params(
    row: Mapping[str, Any], names: Sequence[str], procs: Sequence[tuple[int, _Processor]]
) -> list[Any]:
    """One row's parameters in column order, through the columns' processors."""
    values = [row[name] for name in names]
    for index, proc in procs:
        values[index] = proc(values[index])
    return values


class NewRows:
    """The INSERTs of new posts and entries for one dialect, built once."""

    def __init__(self, dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        #: Whether rows may carry a JSON column's value as :class:`JSONText`.
        self.takes_json_text = dialect.name == "sqlite"
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        posts, entries = m.Post.__table__, m.Entry.__table__
        assert isinstance(posts, Table) and isinstance(entries, Table)
        self._post_procs = _active(_processors(posts, POST_COLUMNS, dialect))
        self._entry_procs = _active(_processors(entries, ENTRY_COLUMNS, dialect))
        self._post_head = (
            f"INSERT INTO {quote(posts.name)} ({', '.join(quote(c) for c in POST_COLUMNS)}) VALUES "
        )
        self._post_tail = f" RETURNING {quote('id')}, {quote('content_hash')}"
        self._post_group = "(" + ", ".join([self._mark] * len(POST_COLUMNS)) + ")"
        self._post_sql: dict[int, str] = {}
        self._chunk = max(1, _MAX_PARAMS.get(dialect.name, 999) // len(POST_COLUMNS))
        marks = ", ".join([self._mark] * len(ENTRY_COLUMNS))
        self._entry_sql = (
            f"INSERT INTO {quote(entries.name)} "
            f"({', '.join(quote(c) for c in ENTRY_COLUMNS)}) VALUES ({marks})"
        )

    def _posts_sql(self, count: int) -> str:
        """A multi-row INSERT ... RETURNING for ``count`` posts (kept per count)."""
        sql = self._post_sql.get(count)
        if sql is None:
            sql = self._post_head + ", ".join([self._post_group] * count) + self._post_tail
            self._post_sql[count] = sql
        return sql

    def insert_posts(
        self, connection: Connection, rows: Sequence[Mapping[str, Any]]
    ) -> list[tuple[int, str]]:
        """Insert new posts; their ``(id, content_hash)`` pairs, in no particular order.

        One multi-row INSERT ... RETURNING per chunk: SQLite's executemany
        returns no rows, and ids taken from ``lastrowid`` would cost a
        statement per row.  RETURNING's order is not promised, hence the
        hash with each id (hashes are unique).
        """
        procs = self._post_procs
        returned: list[tuple[int, str]] = []
        for start in range(0, len(rows), self._chunk):
            chunk = rows[start : start + self._chunk]
            params: list[Any] = []
            for row in chunk:
                params += _params(row, POST_COLUMNS, procs)
            result = connection.exec_driver_sql(self._posts_sql(len(chunk)), tuple(params))
            returned.extend((int(post_id), digest) for post_id, digest in result)
        return returned

    def insert_entries(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert new entries with one executemany."""
        procs = self._entry_procs
        params = [tuple(_params(row, ENTRY_COLUMNS, procs)) for row in rows]
        if params:
            connection.exec_driver_sql(self._entry_sql, params)
