"""Alembic environment: runs the migrations against aggregator's models.

Used two ways: programmatically by ``aggregator db upgrade`` (and on start of
``replay``/``fetch``/``run``), which hands over an open connection, and from
the ``alembic`` command line, which reads the URL from
``AGGREGATOR_DATABASE_URL`` (default: the SQLite file ``aggregator.db``).
"""

from __future__ import annotations

import os

from aggregator.store.engine import DEFAULT_DATABASE_URL, make_engine
from aggregator.store.models import Base, is_search_object
from alembic import context

target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # The title search index is raw DDL, not on the models: leave it be.
        include_name=lambda name, *_: not is_search_object(name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    url = os.environ.get("AGGREGATOR_DATABASE_URL", DEFAULT_DATABASE_URL)
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    engine = make_engine(os.environ.get("AGGREGATOR_DATABASE_URL", DEFAULT_DATABASE_URL))
    with engine.begin() as conn:
        _configure_and_run(conn)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
