"""Database connections and schema migrations.

SQLite is the embedded default: one file, WAL so readers (``status``,
``export``) never block the fetcher, a busy timeout so two processes wait for
each other instead of failing, and foreign keys switched on (SQLite leaves them
off).  PostgreSQL is reached through psycopg 3.

The schema is changed only by Alembic.  ``upgrade`` runs the migrations
programmatically, under an advisory lock on PostgreSQL so that several daemons
starting together do not race each other through the same migration.
"""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Engine, MetaData, String, Table, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from aggregator.config.settings import DEFAULT_DATABASE_URL
from aggregator.errors import AggregatorError, ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DatabaseURLError",
    "SchemaNotReady",
    "alembic_config",
    "check_schema",
    "make_engine",
    "normalise_url",
    "redacted_url",
    "upgrade",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x6167_6772  # "aggr": arbitrary, constant across releases
#: The newest migration in alembic/versions, which this code is written for
#: (tests/test_store.py checks it against Alembic's own idea of the head).
SCHEMA_REVISION = "0009"


class DatabaseURLError(ConfigurationError, ValueError):
    """The database URL cannot be used; the message says how to write one."""


class SchemaNotReady(AggregatorError, RuntimeError):
    """A command that only reads found no schema, or another revision; nothing was changed."""


def redacted_url(url: str) -> str:
    """The database URL with its password masked, for messages and logs.

    A URL that cannot be read is shown as it is: the message it goes into
    says what is wrong with it, and there is no password to find in it.
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def normalise_url(url: str | URL) -> URL:
    """Parse a URL and pick the drivers we ship (psycopg 3 for PostgreSQL)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseURLError(
            f"cannot read database URL {str(url)!r}: {exc}. Examples: "
            "sqlite:///aggregator.db, postgresql://user@127.0.0.1:5432/aggregator"
        ) from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseURLError(
            f"unsupported database {parsed.get_backend_name()!r}: use SQLite or PostgreSQL"
        )
    if parsed.get_backend_name() == "sqlite" and (parsed.host or parsed.port):
        # sqlite://a.db reads "a.db" as a host name; SQLAlchemy then fails
        # deep inside create_engine with a traceback.
        name = parsed.host or ""
        raise DatabaseURLError(
            f"{parsed.render_as_string(hide_password=True)!r} names a host, but SQLite is a "
            f"file: write sqlite:///{name or 'aggregator.db'} (three slashes) for a file in "
            f"the working directory, or sqlite:////absolute/path/{name or 'aggregator.db'}"
        )
    return parsed


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _json_text(value: object) -> str:
    """JSON columns as UTF-8 text, not ``\\uXXXX`` escapes.

    ``entries.raw`` is mostly Chinese: escaped, each character takes six
    bytes instead of three, which the database writes (and SQLite's single
    writer commits) for every stored item.  Reading it back gives the same
    values either way, so rows written before are read as they were.
    """
    return json.dumps(value, ensure_ascii=False)


def make_engine(url: str | URL, *, pool_size: int = 5) -> Engine:
    """An engine with the connection settings this project relies on."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseURLError(
                    f"the directory for the SQLite database {database!r} does not exist: {parent}"
                )
            # SQLite creates the file and its -wal/-shm companions next to it;
            # without this check the driver only says "unable to open database file".
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DatabaseURLError(
                    f"the directory for the SQLite database {database!r} is not writable: "
                    f"{parent} (SQLite keeps its -wal and -shm files there)"
                )
        # SQLAlchemy's default pool for a SQLite file (QueuePool; a
        # SingletonThreadPool for :memory:) keeps connections open, so the
        # PRAGMAs below run once per connection rather than once per session.
        engine = create_engine(parsed, json_serializer=_json_text)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        parsed,
        json_serializer=_json_text,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


def _script_location() -> str:
    """Where the migration scripts are: inside the wheel, or the source tree."""
    packaged = resources.files("aggregator") / "_alembic"
    if packaged.is_dir():
        return str(packaged)
    source = Path(__file__).resolve().parents[2] / "alembic"
    if source.is_dir():
        return str(source)
    raise FileNotFoundError(
        "the Alembic migrations are missing: expected aggregator/_alembic in the "
        f"installed package or {source}"
    )


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """An Alembic Config that uses our migrations (and ``connection`` if given)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _script_location())
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call from several processes.

    Every command opens the store, and nearly always the schema is already
    current: one query says so, without loading Alembic and the migration
    scripts (a tenth of a second and ~12 MB of memory for every
    ``aggregator fetch``).
    """
    if revision == "head":
        stored = _stored_revision(engine)
        if stored == SCHEMA_REVISION or (stored is None and _create_fresh(engine)):
            return
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        command.upgrade(alembic_config(connection), revision)
    if revision == "head":
        # The migrations found must be this code's: a daemon never runs on
        # a schema older than it expects (issue 17, rolling restarts).
        stored = _stored_revision(engine)
        if stored != SCHEMA_REVISION:
            raise SchemaNotReady(
                f"the database is at revision {stored} after upgrading, but this aggregator "
                f"needs {SCHEMA_REVISION}: its migration scripts ({_script_location()}) are "
                "not the ones it was built with; reinstall it"
            )


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaNotReady` unless the schema is the one this code is written for.

    For commands that only read (``status``, ``export``): they must never
    create tables in whatever database they were pointed at -- a typo in a
    PostgreSQL URL that names another existing database would otherwise
    leave our five tables in it -- and never migrate under a running daemon.
    """
    where = engine.url.render_as_string(hide_password=True)
    database = engine.url.database
    if (
        engine.url.get_backend_name() == "sqlite"
        and database
        and database != ":memory:"
        and not database.startswith("file:")
        and not Path(database).expanduser().exists()
    ):
        # Connecting would create the file: a read-only command must not.
        raise SchemaNotReady(
            f"there is no database file {Path(database).expanduser().resolve()} "
            f"(from {where}): check the path, or fetch or replay something first"
        )
    stored = _stored_revision(engine)
    if stored == SCHEMA_REVISION:
        return
    if stored is None:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
        if not tables:
            raise SchemaNotReady(
                f"the database at {where} is empty: no feed has been fetched into it yet. "
                "`aggregator fetch`, `replay` or `run` create the tables (so does "
                "`aggregator db upgrade`); is this the database you meant?"
            )
        raise SchemaNotReady(
            f"the database at {where} has tables ({', '.join(sorted(tables)[:5])}) but none "
            "of aggregator's: is this the database you meant? Nothing was changed"
        )
    if stored < SCHEMA_REVISION:
        raise SchemaNotReady(
            f"the database at {where} is at schema {stored}, older than this version's "
            f"{SCHEMA_REVISION}: run `aggregator db upgrade` (a running daemon of this "
            "version does it at start)"
        )
    raise SchemaNotReady(
        f"the database at {where} is at schema {stored}, newer than this version's "
        f"{SCHEMA_REVISION}: it was upgraded by a newer aggregator; use that one"
    )


def _create_fresh(engine: Engine) -> bool:
    """Create the whole schema in an empty database at once; False if it is not empty.

    Alembic's own advice for a new database ("create_all, then stamp"):
    the models are the schema the migrations build (tests compare the two
    on both backends), so an empty database needs no replay of history,
    and the first start of a daemon does not carry Alembic in memory for
    the rest of its life.  The version row is what ``alembic stamp`` writes.
    """
    from aggregator.store import models as m

    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            if inspect(connection).get_table_names():
                return False  # someone else's tables, or a half-made schema: Alembic decides
            m.Base.metadata.create_all(connection)
            version = Table(
                "alembic_version",
                MetaData(),
                Column("version_num", String(32), primary_key=True),
            )
            version.create(connection)
            connection.execute(version.insert().values(version_num=SCHEMA_REVISION))
    except SQLAlchemyError:
        # Typically a second process creating the same new SQLite file at the
        # same moment; Alembic's path sorts out what is there now.
        log.debug("creating a fresh schema failed; handing over to Alembic", exc_info=True)
        return False
    return True


def _stored_revision(engine: Engine) -> str | None:
    """``alembic_version`` as stored, or None (no table yet, or not one row)."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:  # a new database has no such table
        return None
    return rows[0][0] if len(rows) == 1 else None


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
