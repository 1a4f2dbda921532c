"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL.

PostgreSQL tests run when ``AGGREGATOR_TEST_POSTGRES_URL`` names a server
(``.ci/run`` sets it to the local one); each test gets a database of its own,
created and dropped around it, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from localserver import local_server  # noqa: F401 - the HTTP server fixture, for every module
from paths import SEEDS
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from aggregator.store import Store
from aggregator.store.engine import normalise_url

POSTGRES_ENV = "AGGREGATOR_TEST_POSTGRES_URL"


def _postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: PostgreSQL tests skipped")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test (dropped afterwards)."""
    admin = normalise_url(_postgres_admin_url())
    name = f"aggtest_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aggregator.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.open(database_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def seed_files() -> list[Path]:
    files = sorted(SEEDS.glob("*.txt"))
    assert len(files) == 5, f"expected the five seed files in {SEEDS}"
    return files
