"""A fleet's rolling restarts, with real daemons on PostgreSQL (issue 17).

Real processes and signals, a local feed server on 127.0.0.1; skipped with
the reason printed when AGGREGATOR_TEST_POSTGRES_URL is not set.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import pytest
from aiohttp import web
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from sqlalchemy import create_engine, text
from support_proc import AggregatorProcess, wait_for

from aggregator.store.engine import _MIGRATION_LOCK_ID, SCHEMA_REVISION, make_engine, upgrade

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _feed(path: str) -> str:
    post = seed_posts()[1]
    return rss_document(seed_item(post, link=f"https://news.example.com{path}", guid=path))


def _config(path: Path, server: LocalServer, feeds: list[str], interval: str = "1h") -> None:
    path.write_text(
        feeds_yaml(
            {("新媒体", f"Outlet {f}", "头条"): server.url(f) for f in feeds}, interval=interval
        ),
        encoding="utf-8",
    )


def _scalar(url: str, sql: str) -> object:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def _rows(url: str, sql: str) -> list[object]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def test_sigterm_hands_the_feeds_to_the_other_daemon_at_once(
    postgres_url: str, tmp_path: Path, local_server: LocalServer
) -> None:
    """Rolling restart: the stopped daemon's feeds are polled by the other in
    seconds, not after the 15-minute lease (nor the 45 s heartbeat)."""
    hits: collections.Counter[str] = collections.Counter()
    feeds = [f"/slow{i}.xml" for i in range(3)]

    def slow_first(path: str) -> object:
        async def handler(request: web.Request) -> web.StreamResponse:
            hits[path] += 1
            if hits[path] == 1:
                await asyncio.sleep(30)  # the first daemon's poll outlives its grace period
            return web.Response(text=_feed(path), content_type="application/rss+xml")

        return handler

    for f in feeds:
        local_server.route(f, slow_first(f))  # type: ignore[arg-type]
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, feeds)
    from aggregator.store import Store

    Store.open(postgres_url).close()
    with AggregatorProcess("run", "--config", str(config), db=postgres_url, cwd=tmp_path) as one:
        wait_for(lambda: all(hits[f] == 1 for f in feeds), 60, "the first daemon polls all")
        with AggregatorProcess(
            "run", "--config", str(config), db=postgres_url, cwd=tmp_path
        ) as two:
            wait_for(
                lambda: _scalar(postgres_url, "select count(*) from daemons") == 2,
                30,
                "the second daemon's heartbeat",
            )
            assert all(hits[f] == 1 for f in feeds)  # leased by the first: not polled twice
            code, _took = one.stop(timeout=30)
            assert code == 0, one.log
            stopped = time.monotonic()
            wait_for(lambda: all(hits[f] == 2 for f in feeds), 15, "the second daemon polls them")
            handover = time.monotonic() - stopped
            assert _scalar(postgres_url, "select count(*) from daemons") == 1
            assert two.stop(timeout=30)[0] == 0
        assert _scalar(postgres_url, "select count(*) from daemons") == 0
        assert (
            _scalar(postgres_url, "select count(*) from feeds where lease_owner is not null") == 0
        )
    assert handover < 15
    assert "gave back 3 lease(s)" in one.log


def test_a_daemon_started_during_a_migration_waits_for_it(
    postgres_url: str, tmp_path: Path, local_server: LocalServer
) -> None:
    """`aggregator run` against an older schema while another process holds the
    migration lock: it waits (polls nothing), then runs on the new schema."""
    local_server.route("/f.xml", EtagFeed(_feed("/f.xml")))
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/f.xml"])
    engine = make_engine(postgres_url)
    upgrade(engine, "0005")  # the schema of the release before
    migrating = engine.connect()
    transaction = migrating.begin()
    migrating.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    try:
        with AggregatorProcess(
            "run", "--config", str(config), db=postgres_url, cwd=tmp_path
        ) as daemon:
            time.sleep(4)
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log
            assert _scalar(postgres_url, "select version_num from alembic_version") == "0005"
            assert _scalar(postgres_url, "select to_regclass('daemons') is null")
            assert not local_server.requests_to("/f.xml"), "it polled on the old schema"
            transaction.rollback()  # the other migration is done (here: gave up)
            migrating.close()
            try:
                wait_for(lambda: local_server.requests_to("/f.xml"), 60, "the first poll")
            except AssertionError:
                activity = _rows(
                    postgres_url,
                    "select state, wait_event_type, wait_event, left(query, 80)"
                    " from pg_stat_activity where datname = current_database()",
                )
                raise AssertionError(f"{daemon.log}\n{activity}") from None
            assert (
                _scalar(postgres_url, "select version_num from alembic_version") == SCHEMA_REVISION
            )
            assert _scalar(postgres_url, "select count(*) from daemons") == 1
            assert daemon.stop(timeout=30)[0] == 0
    finally:
        if not migrating.closed:
            transaction.rollback()
            migrating.close()
        engine.dispose()
