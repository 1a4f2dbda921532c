"""The light paths of `status` and `fetch` against the full ones (aggregator.store.lite).

`status` on a SQLite file and a `fetch` with nothing to poll read the
database through the standard library instead of SQLAlchemy, and the
latter skips loading feeds.yaml; both must give exactly what the full path
gives.  Here the light reader and the store read the same busy database
(feeds failing, disabled, removed from the file, leased; posts, blocked
entries; publishers and a webhook queue) and their answers are compared,
value for value and as printed; and `fetch` is run as a real process to
see the light path taken only when the full one would poll nothing and
change nothing.
"""

from __future__ import annotations

import io
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedbuild import EtagFeed, feeds_yaml, outlet_feeds, seed_posts
from localserver import LocalServer
from rich.console import Console
from sqlalchemy import insert, text
from support_proc import aggregator
from test_startup import _all_modules_after, _loaded, _run_cli

from aggregator.config.feeds import loads_config
from aggregator.service.status import (
    StoreSource,
    light_status,
    publisher_table,
    read_status,
    status_document,
    status_rows,
    status_table,
)
from aggregator.store import FeedUpdate, Store
from aggregator.store import models as m
from aggregator.store import publish as ledger
from aggregator.store.lite import (
    SCHEMA_REVISION,
    LiteReader,
    LiteUnavailable,
    nothing_to_poll,
    sqlite_file,
)

HOUR = timedelta(hours=1)
HEAVY = ("sqlalchemy", "pydantic", "ruamel", "alembic", "aggregator.service.runner")


def _set_revision(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (revision,))


@pytest.fixture
def busy_db(tmp_path: Path, local_server: LocalServer) -> tuple[str, datetime]:
    """A SQLite database with one of everything `status` shows; its URL and a time in it."""
    posts = seed_posts()
    urls = {}
    for n, (key, document) in enumerate(outlet_feeds(posts).items()):
        local_server.route(f"/feed{n}.xml", EtagFeed(document))
        urls[key] = local_server.url(f"/feed{n}.xml")
    local_server.route("/gone.xml", status=500, body="boom")
    urls[("新媒体", "Broken", "新闻")] = local_server.url("/gone.xml")
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(urls), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    aggregator("fetch", "--config", str(config), db=url, cwd=tmp_path, check=False)

    now = datetime.now(UTC).replace(microsecond=0)  # six zero decimals, as stored
    store = Store.open(url)
    try:
        extra = loads_config(
            "defaults: {group: 新媒体}\nfeeds:\n"
            "  - {url: 'https://example.com/off.xml', outlet: Off, section: 新闻, enabled: false}\n"
            "  - {url: 'https://example.com/left.xml', outlet: Left, section: 新闻}\n"
        )
        specs = tuple(loads_config(config.read_text(encoding="utf-8")).feeds) + extra.feeds
        store.sync_feeds(specs, now=now)
        ids = store.sync_feeds(specs[:-1], now=now)  # the last one leaves the file
        first, second, *_ = sorted(ids.values())
        store.update_feeds(
            [
                (first, FeedUpdate(lease_owner="host-a:1", lease_until=now + HOUR)),
                (second, FeedUpdate(lease_owner="host-b:2", lease_until=now - timedelta(1))),
                (ids["https://example.com/off.xml"], FeedUpdate(disabled_reason="gone for good")),
            ]
        )
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE entries SET blocked = 'rule' WHERE id % 2 = 0"))
            deliveries = m.WebhookDelivery.__table__
            conn.execute(insert(deliveries).values(webhook="webhook:hook", key="k1", body="{}"))
            conn.execute(
                insert(deliveries).values(
                    webhook="webhook:hook", key="k2", body="{}", delivered_at=now
                )
            )
        ledger.record_run(store.engine, "git", now=now)
        ledger.record_run(store.engine, "webhook:hook", now=now, error="boom", pending=3)
        ledger.record_run(store.engine, "command", now=now + timedelta(microseconds=7))
    finally:
        store.close()
    return url, now


def _printed(*tables: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=140, color_system=None)
    for table in tables:
        console.print(table)
    return out.getvalue()


def test_the_light_reader_reads_what_the_store_reads(busy_db: tuple[str, datetime]) -> None:
    url, now = busy_db
    store = Store.open(url, schema="check")
    try:
        with LiteReader.open(url) as reader:
            assert repr(reader.feeds()) == repr(store.feeds())
            assert repr(reader.publisher_rows()) == repr(ledger.publisher_rows(store.engine))
            # lease_until == now is still held: times compare as SQLAlchemy binds them
            for moment in (now - timedelta(2), now + HOUR, now + HOUR + timedelta(microseconds=1)):
                assert reader.lease_owners(now=moment) == store.lease_owners(now=moment)
            assert reader.lease_owners(now=now + HOUR) == {"host-a:1"}
            light = read_status(reader, now=now)
        full = read_status(StoreSource(store), now=now)
    finally:
        store.close()
    assert repr(light) == repr(full)
    feeds = {f.url.rsplit("/", 1)[-1]: f for f in light.feeds}
    assert feeds["off.xml"].disabled_reason and not feeds["left.xml"].in_config
    assert feeds["gone.xml"].error_class == "transient" and any(f.blocked for f in light.feeds)
    assert [p.queue for p in light.publishers] == [0, 0, 1]
    document = status_document(light.feeds, daemons=light.daemons, now=now)
    assert document == status_document(full.feeds, daemons=full.daemons, now=now)
    assert status_rows(light.publishers) == status_rows(full.publishers)
    assert _printed(
        status_table(light.feeds, now=now), publisher_table(light.publishers, now=now)
    ) == _printed(status_table(full.feeds, now=now), publisher_table(full.publishers, now=now))


def test_status_takes_the_light_path_and_prints_what_the_full_one_prints(
    busy_db: tuple[str, datetime], tmp_path: Path
) -> None:
    url, _ = busy_db
    # SQLAlchemy reads `?timeout=30` as a driver option; the light reader
    # leaves any URL with options to it: the same database, the full path.
    full_url = url + "?timeout=30"
    assert sqlite_file(full_url) is None and sqlite_file(url) is not None
    light = json.loads(aggregator("status", "--json", db=url, cwd=tmp_path).stdout)
    full = json.loads(aggregator("status", "--json", db=full_url, cwd=tmp_path).stdout)
    assert light.pop("generated_at") and full.pop("generated_at")
    assert light == full
    text_light = aggregator("status", db=url, cwd=tmp_path).stdout
    assert "transient" in text_light and "removed from config" in text_light
    assert "polling now: host-a:1" in text_light
    modules = _all_modules_after(
        _run_cli("status"), cwd=tmp_path, env={"AGGREGATOR_DATABASE_URL": url}
    )
    assert _loaded(modules, HEAVY) == []


@pytest.mark.parametrize("revision", ["0001", "9999"])
def test_another_schema_is_left_to_the_full_path(
    busy_db: tuple[str, datetime], tmp_path: Path, revision: str
) -> None:
    url, now = busy_db
    _set_revision(Path(url.removeprefix("sqlite:///")), revision)
    with pytest.raises(LiteUnavailable):
        LiteReader.open(url)
    assert light_status(url, now=now) is None
    proc = aggregator("status", db=url, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and f"schema {revision}" in proc.stderr


def test_urls_the_light_reader_leaves_to_sqlalchemy(tmp_path: Path) -> None:
    assert sqlite_file("sqlite:///a.db") == Path("a.db")
    assert sqlite_file("sqlite:////abs/a.db") == Path("/abs/a.db")
    for url in (
        "postgresql://u@127.0.0.1/db",
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:a.db?mode=ro&uri=true",
        "sqlite:///a.db?timeout=5",
        "sqlite:///~/a.db",
        "sqlite:///a%20b.db",
    ):
        assert sqlite_file(url) is None, url
    with pytest.raises(LiteUnavailable):
        LiteReader.open(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()  # never created
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(LiteUnavailable):
        LiteReader.open(f"sqlite:///{tmp_path / 'junk.db'}")


# -- fetch with nothing to poll -------------------------------------------------------


def _marker(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _fetch_modules(cwd: Path, url: str, *argv: str) -> set[str]:
    return _all_modules_after(
        _run_cli("fetch", *argv), cwd=cwd, env={"AGGREGATOR_DATABASE_URL": url}
    )


def test_fetch_with_nothing_to_poll_is_light_until_the_file_or_the_rows_change(
    tmp_path: Path, local_server: LocalServer
) -> None:
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "defaults: {group: 新媒体}\nfeeds:\n"
        "  - {url: 'https://example.com/off.xml', outlet: Off, section: 新闻, "
        "enabled: false}\n",
        encoding="utf-8",
    )
    first = aggregator("fetch", db=url, cwd=tmp_path)  # full: creates, syncs, records
    assert first.stdout == "0 new, 0 duplicate, 0 updated, 0 failed (0 feeds)\n"
    assert _marker(db) != 0 and nothing_to_poll(url, config)
    before = db.read_bytes()
    second = aggregator("fetch", db=url, cwd=tmp_path)
    assert (second.stdout, second.stderr) == (first.stdout, first.stderr)
    assert _loaded(_fetch_modules(tmp_path, url), HEAVY) == []  # the light path
    assert db.read_bytes() == before

    # Another process syncs another file into the same database: the rows
    # differ, so the light path is not taken and the full one syncs back.
    store = Store.open(url)
    try:
        store.sync_feeds(
            loads_config(feeds_yaml({("g", "O", "s"): "https://e.com/x"})).feeds,
            now=datetime.now(UTC),
        )
    finally:
        store.close()
    assert not nothing_to_poll(url, config)
    assert _loaded(_fetch_modules(tmp_path, url), ("sqlalchemy",)) == ["sqlalchemy"]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT url, in_config FROM feeds ORDER BY url").fetchall()
    assert rows == [("https://e.com/x", 0), ("https://example.com/off.xml", 1)]
    assert nothing_to_poll(url, config)

    # A new feed in the file is polled, although the rows did not change.
    posts = seed_posts()
    (key, document), *_ = outlet_feeds(posts).items()
    local_server.route("/new.xml", EtagFeed(document))
    config.write_text(feeds_yaml({key: local_server.url("/new.xml")}), encoding="utf-8")
    assert not nothing_to_poll(url, config)
    third = aggregator("fetch", db=url, cwd=tmp_path)
    assert third.stdout.endswith("(1 feeds)\n") and "200" in third.stdout
    assert len(local_server.requests) == 1
    # ... and every pass polls it again, due or not: nothing is recorded.
    assert not nothing_to_poll(url, config)
    fourth = aggregator("fetch", db=url, cwd=tmp_path)
    assert "304" in fourth.stdout and len(local_server.requests) == 2


def test_fetch_light_path_is_not_taken_where_the_full_path_has_work(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    url = f"sqlite:///{db}"
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    aggregator("replay", str(Path(__file__).parent.parent / "seeds"), db=url, cwd=tmp_path)
    aggregator("fetch", db=url, cwd=tmp_path)
    assert nothing_to_poll(url, config)

    # --export: the pass ends by writing what the directory lacks.
    out = tmp_path / "posts"
    proc = aggregator("fetch", "--export", str(out), db=url, cwd=tmp_path)
    assert len(list(out.iterdir())) == 5 and "5 file(s) written" in proc.stdout

    # A schema older or newer than the code: the full path (which migrates
    # an older one, and refuses a newer one).
    for revision in ("0001", "9999"):
        _set_revision(db, revision)
        assert not nothing_to_poll(url, config)
    proc = aggregator("fetch", db=url, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "0 new" not in proc.stdout
    assert "is at schema 9999, newer than this version's" in proc.stderr
    assert "Traceback" not in proc.stderr
    _set_revision(db, SCHEMA_REVISION)

    # output_dir in the file, or a warning to repeat: never recorded.
    for text_ in (f"output_dir: {out}\nfeeds: []\n", "defaults: {interval: 30s}\nfeeds: []\n"):
        config.write_text(text_, encoding="utf-8")
        proc = aggregator("fetch", db=url, cwd=tmp_path)
        assert not nothing_to_poll(url, config), text_
    assert "30s" in proc.stderr  # the warning, every time

    # An invalid file is an error every time, marker or not.
    config.write_text("feeds: []\n", encoding="utf-8")
    aggregator("fetch", db=url, cwd=tmp_path)
    assert nothing_to_poll(url, config)
    config.write_text("feeds: [\n", encoding="utf-8")
    proc = aggregator("fetch", db=url, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "not valid" in proc.stderr
