"""The database: migrations, dedup on replay and on ingest, one transaction per feed."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text

from aggregator.hexo.post import Layout, Post, parse, render
from aggregator.policy.dedup import (
    KeyFacts,
    Outcome,
    canonical_link,
    content_hash,
    entry_key,
    entry_keys,
)
from aggregator.store import FeedUpdate, IngestItem, IngestJob, Store
from aggregator.store import models as m
from aggregator.store.engine import current_revision, make_engine, upgrade

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _post(title: str = "标题", body: str = "<p>正文</p>", **kw: object) -> Post:
    fields: dict[str, object] = dict(
        title=title,
        group="新媒体",
        outlet="观察者网",
        section="头条",
        body=body,
        date=datetime(2022, 3, 1, 8, 20, 30, tzinfo=UTC),
        author="观察者网",
    )
    fields.update(kw)
    return Post(**fields)  # type: ignore[arg-type]


def _feed(store: Store, url: str = "https://example.org/feed") -> int:
    with store.engine.begin() as conn:
        conn.execute(
            m.Feed.__table__.insert().values(
                url=url,
                outlet="观察者网",
                section="头条",
                group_name="新媒体",
                enabled=True,
                in_config=True,
                interval_seconds=900,
                error_streak=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return store.feed_ids([url])[url]


def _item(
    post: Post, guid: str | None = "g1", link: str | None = "https://example.org/1"
) -> IngestItem:
    return IngestItem(
        key=entry_key(guid, link, post.title, post.date),
        post=post,
        guid=guid,
        link=link,
        raw={"title": post.title},
    )


def test_item_carries_its_hash_and_link_key_from_where_it_was_built() -> None:
    # Built in a parse worker and pickled to the writer: the writer uses
    # these instead of computing them again, so they must be what it would
    # have computed, and survive the trip.
    post = _post(title="标题（一）", body="<p>正文，ＡＢＣ</p>")
    item = _item(post, link="HTTPS://Example.org:443/a/?utm_source=x&id=1#top")
    assert item.digest == content_hash(post.title, post.body)
    assert item.canonical == canonical_link(item.link) == "//example.org/a?id=1"
    assert item.link_key == item.canonical
    assert pickle.loads(pickle.dumps(item)) == item
    edited = dataclasses.replace(item, post=_post(title="标题（二）", body=post.body))
    assert edited.digest == content_hash("标题（二）", post.body) != item.digest
    too_long = _item(post, link="https://example.org/" + "a" * 3000)
    assert too_long.canonical is not None and too_long.link_key is None
    assert _item(post, link=None).link_key is None


def test_item_carries_its_raw_entry_as_the_column_stores_it(store: Store) -> None:
    """The raw entry crosses from the parse worker as JSON text, stored as it is on SQLite."""
    from aggregator.store.engine import _json_text

    raw = {"format": 1, "title": '标题 \u2028 "引号"', "images": ["https://x/1.jpg"], "n": 1.5}
    item = dataclasses.replace(_item(_post()), raw=raw)
    assert item.raw_text == _json_text(raw)  # the engine's own serialiser, byte for byte
    moved = pickle.loads(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
    assert moved.raw_text == item.raw_text
    assert moved.raw == raw and moved == item  # raw is decoded when asked for
    assert pickle.loads(pickle.dumps(dataclasses.replace(item, raw=None))).raw is None
    unencodable = IngestItem(key="k", post=_post(), raw={"x": object()})
    assert unencodable.raw_text is None and pickle.loads(pickle.dumps(unencodable)).raw_text is None
    fresh = pickle.loads(pickle.dumps(item))
    store.ingest(_feed(store), [fresh], now=NOW)
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT raw FROM entries")).scalar_one()
    if store.engine.dialect.name == "sqlite":  # PostgreSQL's JSON keeps no text
        assert stored == _json_text(raw)
    else:
        assert stored == raw


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    # Naming the revision (not "head") makes it replay the migrations; a new
    # database opened normally is built from the models (see the next test).
    from aggregator.store.engine import SCHEMA_REVISION

    engine = make_engine(database_url)
    upgrade(engine, SCHEMA_REVISION)
    with engine.connect() as conn:
        # The title search index is raw DDL, not on the models (see models.py).
        only_models = {"include_name": lambda name, *_: not m.is_search_object(name)}
        diff = compare_metadata(MigrationContext.configure(conn, opts=only_models), m.Base.metadata)
    assert diff == []
    assert current_revision(engine) == SCHEMA_REVISION
    assert {"feeds", "posts", "entries", "post_revisions"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def _schema(engine: Any) -> dict[str, Any]:
    """Everything about the tables a migration could get wrong, column order aside."""
    found = inspect(engine)
    tables: dict[str, Any] = {}
    for table in found.get_table_names():
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in found.get_columns(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in found.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], str(f.get("options")))
                for f in found.get_foreign_keys(table)
            ),
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "checks": sorted(str(c["sqltext"]) for c in found.get_check_constraints(table)),
        }
    return tables


def test_a_new_database_is_built_as_the_migrations_would(database_url: str) -> None:
    """A new database gets the models' schema in one go and Alembic's version
    row ("create_all, then stamp"); it must equal what replaying every
    migration builds, and later migrations must start from there."""
    from aggregator.store.engine import SCHEMA_REVISION

    engine = make_engine(database_url)
    upgrade(engine, SCHEMA_REVISION)  # the long way
    migrated = _schema(engine)
    m.Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert inspect(engine).get_table_names() == []
    upgrade(engine)  # "head" on an empty database: the short way
    assert _schema(engine) == migrated
    assert current_revision(engine) == SCHEMA_REVISION
    upgrade(engine, SCHEMA_REVISION)  # Alembic agrees there is nothing to do
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_schema_revision_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    from aggregator.store.engine import SCHEMA_REVISION, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_opening_a_current_database_does_not_load_alembic(tmp_path: Path) -> None:
    """The fast path: one query, no migration machinery, for every command."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    Store.open(url).close()  # creates the schema (Alembic runs here)
    probe = (
        "import sys; from aggregator.store import Store; Store.open(sys.argv[1]).close(); "
        "print('alembic' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, url], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_a_database_behind_the_code_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(url)
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    store = Store.open(url)  # must not take the fast path
    from aggregator.store.engine import SCHEMA_REVISION

    assert current_revision(store.engine) == SCHEMA_REVISION
    store.close()
    engine.dispose()


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    Store.open(database_url).close()
    store = Store.open(database_url)
    assert current_revision(store.engine) is not None


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_sqlite_in_a_missing_directory_is_a_clear_error(tmp_path) -> None:
    from aggregator.store import DatabaseURLError

    with pytest.raises(DatabaseURLError, match="does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'nope' / 'a.db'}")


def test_seeds_stored_once(store: Store, seed_files) -> None:
    posts = [parse(p.read_text(encoding="utf-8")) for p in seed_files]
    assert store.add_posts(posts) == [Outcome.NEW] * 5
    assert store.add_posts(posts) == [Outcome.DUPLICATE] * 5
    assert [s.post for s in store.iter_posts()] == posts
    assert store.count_posts() == 5


def test_replayed_posts_take_their_file_stem_as_slug_when_safe_and_free(store: Store) -> None:
    names = ["cnbeta_1", "../escape", "cnbeta_1", "x" * 65, ".hidden", None, "快科技_2"]
    posts = [_post(title=f"t{i}") for i in range(len(names))]
    assert store.add_posts(posts, names=names) == [Outcome.NEW] * len(names)
    slugs = [s.slug for s in store.iter_posts()]
    assert slugs[0] == "cnbeta_1" and slugs[-1] == "快科技_2"
    generated = [content_hash(p.title, p.body)[:12] for p in posts[1:-1]]
    assert [s[-12:] for s in slugs[1:-1]] == generated  # unsafe or taken: date-hash slug
    store.add_posts([_post(title="later")], names=["cnbeta_1"])  # taken in the database
    assert list(store.iter_posts())[-1].slug.endswith(content_hash("later", _post().body)[:12])


def test_a_replayed_layout_is_stored_and_comes_back(store: Store) -> None:
    older = parse(
        "\n---\ntitle: plain title\ncategories: \n    - 编程\n    - 例子\nauthor: 例子\n"
        "comments: false\ndate: 2021-11-09 08:09:39\nthumbnail: \n---\n\n<div>   \n"
        "<p>x</p>   \n</div>\n            ",
        timezone="Asia/Shanghai",
    )
    assert older.layout is not None
    store.add_posts([older, _post()])
    replayed, fetched = store.iter_posts()
    assert replayed.post.layout == older.layout
    assert render(replayed.post) == render(older)
    assert fetched.post.layout is None


def test_same_content_twice_in_one_batch_is_one_post(store: Store) -> None:
    assert store.add_posts([_post(), _post(date=None)]) == [Outcome.NEW, Outcome.DUPLICATE]


def test_dates_come_back_aware_utc_and_invalid_dates_as_none(store: Store) -> None:
    store.add_posts([_post(), _post(title="无日期", date=None)])
    dated, undated = store.iter_posts()
    assert dated.post.date == datetime(2022, 3, 1, 8, 20, 30, tzinfo=UTC)
    assert undated.post.date is None
    assert undated.slug.startswith("undated-")


def test_filters_by_outlet_and_since(store: Store) -> None:
    store.add_posts(
        [
            _post(title="a"),
            _post(title="b", outlet="Aljazeera 半岛网", date=datetime(2022, 1, 1, tzinfo=UTC)),
        ]
    )
    assert [s.post.title for s in store.iter_posts(outlet="Aljazeera 半岛网")] == ["b"]
    assert [s.post.title for s in store.iter_posts(since=datetime(2022, 2, 1, tzinfo=UTC))] == ["a"]
    assert store.count_posts(outlet="观察者网") == 1


def test_iter_posts_pages_through_large_tables(store: Store) -> None:
    store.add_posts([_post(title=f"t{i}") for i in range(23)])
    assert [s.post.title for s in store.iter_posts(batch=5)] == [f"t{i}" for i in range(23)]


def test_ingest_new_then_unchanged(store: Store) -> None:
    feed = _feed(store)
    first = store.ingest(feed, [_item(_post())], now=NOW)
    again = store.ingest(feed, [_item(_post())], now=NOW + timedelta(minutes=5))
    assert (first.new, first.duplicate, first.updated) == (1, 0, 0)
    assert len(first.changed_posts) == 1
    assert (again.new, again.unchanged, again.changed_posts) == (0, 1, [])


def test_raw_entries_are_stored_as_utf8_json_and_read_back_equal(store: Store) -> None:
    feed = _feed(store)
    raw = {"title": "标题（一）", "item": {"tags": ["新闻"], "n": 1, "ctl": "a\x00b"}}
    item = dataclasses.replace(_item(_post()), raw=raw)
    store.ingest(feed, [item], now=NOW)
    with store.engine.connect() as conn:
        stored_text = conn.execute(text("SELECT CAST(raw AS TEXT) FROM entries")).scalar_one()
    assert "标题（一）" in stored_text and "\\u6807" not in stored_text
    [[entry]] = list(store.iter_entries(feed))
    assert entry.raw == raw


def test_edited_entry_updates_its_post_and_keeps_the_old_content(store: Store) -> None:
    feed = _feed(store)
    store.ingest(feed, [_item(_post(body="<p>v1</p>"))], now=NOW)
    result = store.ingest(feed, [_item(_post(body="<p>v2</p>"))], now=NOW)
    assert result.updated == 1
    (stored,) = store.iter_posts()
    assert stored.post.body == "<p>v2</p>"
    assert stored.revision == 1
    with store.engine.connect() as conn:
        old = conn.execute(select(m.PostRevision.body)).scalars().all()
    assert old == ["<p>v1</p>"]


def test_same_story_from_two_feeds_is_one_post_with_two_sources(store: Store) -> None:
    a, b = _feed(store, "https://a.example/feed"), _feed(store, "https://b.example/feed")
    store.ingest(a, [_item(_post(), guid="a-1")], now=NOW)
    result = store.ingest(
        b, [_item(_post(outlet="Other"), guid="b-9", link="https://b.example/9")], now=NOW
    )
    assert (result.new, result.duplicate) == (0, 1)
    assert store.count_posts() == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Entry)).scalar() == 2


def test_an_item_listed_twice_in_one_feed_is_stored_once(store: Store) -> None:
    feed = _feed(store)
    result = store.ingest(feed, [_item(_post()), _item(_post())], now=NOW)
    assert result.new == 1
    assert store.count_posts() == 1


def test_a_failing_ingest_writes_nothing(store: Store) -> None:
    feed = _feed(store)
    bad = IngestItem(
        key="k", post=_post(title="second"), raw={"x": object()}
    )  # not JSON-serialisable
    with pytest.raises(Exception):  # noqa: B017 - any driver error will do
        store.ingest(feed, [_item(_post(title="first")), bad], now=NOW)
    assert store.count_posts() == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Entry)).scalar() == 0


# --- several feeds in one transaction ---------------------------------------------


def _three_feeds(store: Store) -> list[IngestJob]:
    a, b, c = (_feed(store, f"https://example.org/{name}") for name in "abc")
    shared = _post(title="同一条新闻", body="<p>两家媒体都转载了</p>")
    return [
        IngestJob(
            a, [_item(_post(title="甲"), "a1"), _item(shared, "a2")], NOW, FeedUpdate(etag="A")
        ),
        IngestJob(b, [_item(shared, "b1", "https://example.org/b1")], NOW, FeedUpdate(etag="B")),
        IngestJob(c, [_item(_post(title="丙"), "c1", "https://example.org/c1")], NOW),
    ]


def test_ingest_many_is_ingest_one_after_another(store: Store) -> None:
    results = store.ingest_many(_three_feeds(store))
    assert [(r.new, r.duplicate) for r in results] == [(2, 0), (0, 1), (1, 0)]
    # The story the second feed shares with the first is stored once, with two sources.
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(m.Post)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(m.Entry)).scalar() == 4
    # Each feed's own row got its own values, in the same transaction as its posts.
    states = {f.url.rsplit("/", 1)[1]: f for f in store.feeds()}
    assert (states["a"].etag, states["b"].etag, states["c"].etag) == ("A", "B", None)


def test_a_conflict_in_a_batch_stores_every_feed_on_its_own(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What another daemon storing the same entry first looks like: the batch
    is rolled back whole, then each feed is stored with ingest's retries."""
    from sqlalchemy.exc import IntegrityError

    jobs = _three_feeds(store)
    real = Store._ingest_into
    calls = 0

    def conflict_on_the_third(self: Store, *args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise IntegrityError("INSERT INTO entries", {}, Exception("UNIQUE constraint failed"))
        return real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "_ingest_into", conflict_on_the_third)
    results = store.ingest_many(jobs)
    assert [(r.new, r.duplicate) for r in results] == [(2, 0), (0, 1), (1, 0)]
    with store.engine.connect() as conn:  # nothing from the failed batch was left behind
        assert conn.execute(select(func.count()).select_from(m.Post)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(m.Entry)).scalar() == 4


# --- the bulk INSERTs of new posts and entries ---------------------------------------


def _varied_items() -> list[IngestItem]:
    """New items with every kind of value a post and an entry column can hold,
    more of them than one multi-row INSERT of posts takes on SQLite (52)."""
    shanghai = timezone(timedelta(hours=8))
    items = []
    for i in range(70):
        post = _post(
            title=f"标题 {i}",
            body=f"<p>正文 {i}</p>",
            date=None if i % 7 == 3 else datetime(2022, 3, 1, 8, 20, i % 60, i, tzinfo=shanghai),
            updated=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC) if i % 5 == 1 else None,
            comments=i % 2 == 0,
            headimg="" if i % 3 else f"https://img.example.org/{i}.jpg",
        )
        items.append(
            IngestItem(
                key=entry_key(f"g{i}", f"https://example.org/{i}", post.title, post.date),
                post=post,
                guid=None if i % 4 == 2 else f"g{i}",
                link=None if i % 6 == 5 else f"https://example.org/{i}?utm_source=x",
                author=None if i % 2 else "作者",
                raw=None if i % 9 == 4 else {"title": post.title, "n": i, "页": ["ü", None]},
                blocked="rule: ads" if i % 8 == 7 else None,
            )
        )
    # The same story twice: the second is a duplicate of a post still pending.
    items.append(dataclasses.replace(items[0], key="again", guid="again"))
    return items


def _stored_rows(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every column of posts and entries as the database holds it (JSON as its
    text, SQLite datetimes as their strings); ids as the content they point at."""
    post_columns = [f"p.{c.name}" for c in m.Post.__table__.c if c.name != "id"]
    entry_columns = [
        "p.content_hash"
        if c.name == "post_id"
        else "CAST(e.raw AS TEXT)"
        if c.name == "raw"
        else f"e.{c.name}"
        for c in m.Entry.__table__.c
        if c.name != "id"
    ]
    with store.engine.connect() as conn:
        posts = conn.exec_driver_sql(
            f"SELECT {', '.join(post_columns)} FROM posts p ORDER BY p.content_hash"
        ).all()
        entries = conn.exec_driver_sql(
            f"SELECT {', '.join(entry_columns)}"
            " FROM entries e JOIN posts p ON p.id = e.post_id ORDER BY e.key"
        ).all()
    return [tuple(r) for r in posts], [tuple(r) for r in entries]


def test_new_rows_name_every_column_but_the_id() -> None:
    from aggregator.store.bulk import ENTRY_COLUMNS, POST_COLUMNS
    from aggregator.store.ingest import entry_values
    from aggregator.store.posts import new_post_values

    item = _item(_post())
    assert set(new_post_values(item.post, item.digest, feed_id=1, link=None)) == set(POST_COLUMNS)
    assert set(entry_values(1, item, 1, NOW)) == set(ENTRY_COLUMNS)
    assert set(POST_COLUMNS) == set(m.Post.__table__.c.keys()) - {"id"}
    assert set(ENTRY_COLUMNS) == set(m.Entry.__table__.c.keys()) - {"id"}


def test_the_post_mapping_reads_back_what_it_wrote() -> None:
    """post_values and post_of are one mapping, both ways (layout included)."""
    from aggregator.store.posts import new_post_values, post_of

    for post in (
        _post(updated=datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC), comments=True, headimg="h"),
        _post(layout=Layout(indent="    ", items=2, timezone="Asia/Shanghai")),
    ):
        row = m.Post(**new_post_values(post, "d" * 64, feed_id=None, link=None))
        back = post_of(row)
        assert back == post and back.layout == post.layout
        assert render(back) == render(post)


def _core_rows(engine: Any, feed: int, items: list[IngestItem]) -> None:
    """What ingest writes for new items -- each content once, an entry per item --
    built from the same mapping but written through plain SQLAlchemy Core."""
    from sqlalchemy import insert

    from aggregator.store.ingest import entry_values
    from aggregator.store.posts import new_post_values

    posts, entries = m.Post.__table__, m.Entry.__table__
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for item in items:
            if item.digest not in ids:
                values = new_post_values(
                    item.post, item.digest, feed_id=feed, link=item.link, blocked=item.blocked
                )
                ids[item.digest] = conn.execute(
                    insert(posts).returning(posts.c.id), values
                ).scalar_one()
        conn.execute(
            insert(entries), [entry_values(feed, item, ids[item.digest], NOW) for item in items]
        )


def test_bulk_inserts_write_exactly_the_rows_core_writes(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same items through SQLAlchemy Core and through ingest (store.bulk), one
    after the other in the same database: every stored column is the same."""
    stamp = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    monkeypatch.setattr(m, "utcnow", lambda: stamp)
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    feed = _feed(store, "https://example.org/bulk")
    _core_rows(engine, feed, _varied_items())
    core = _stored_rows(store)
    with engine.begin() as conn:  # start again, with the same feed
        conn.execute(m.Entry.__table__.delete())
        conn.execute(m.Post.__table__.delete())
    result = store.ingest(feed, _varied_items(), now=NOW, feed_update=FeedUpdate(etag="E"))
    bulk = _stored_rows(store)
    engine.dispose()
    assert (result.new, result.duplicate, result.blocked) == (62, 1, 8)
    assert len(result.changed_posts) == 62
    assert bulk == core
    assert len(core[0]) == 70 and len(core[1]) == 71


def test_bulk_datetimes_are_stored_as_sqlalchemy_stores_them_in_sqlite() -> None:
    """Rows written before (through UTCDateTime) and after sort and compare alike."""
    from sqlalchemy.dialects import sqlite

    from aggregator.store.bulk import sqlite_utc

    dialect = sqlite.dialect()
    process = m.UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    for value in (
        None,
        datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=UTC),
        datetime(2024, 1, 1, 3, 0, 0, 999999, tzinfo=timezone(timedelta(hours=8))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        # The same wall time twice in a DST fold: equal, yet two instants
        # (sqlite_utc remembers recent answers; it must not mix these up).
        datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York")),
        datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    ):
        # Twice: the first answer may be remembered, the second then read back.
        assert sqlite_utc(value) == process(value)
        assert sqlite_utc(value) == process(value)
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc(datetime(2024, 5, 1))
    sqlite_utc(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):  # not answered from memory
        sqlite_utc(datetime(2024, 5, 1, 12, 0))


# --- issue 13: identity never merges two stories --------------------------------------


def _document(*entries: tuple[Post, str | None, str | None]) -> list[IngestItem]:
    """Items keyed as one feed document keys them (dedup.entry_keys)."""
    items = [_item(post, guid, link) for post, guid, link in entries]
    keys = entry_keys(
        [KeyFacts(it.guid, it.link, it.post.title, it.post.date, it.digest) for it in items]
    )
    return [dataclasses.replace(it, key=key) for it, key in zip(items, keys, strict=True)]


def _bodies(store: Store) -> list[tuple[str, str]]:
    return sorted((s.post.title, s.post.body) for s in store.iter_posts())


def _revisions(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(m.PostRevision)).scalar_one())


HOME = "https://news.example.org/"
_SHARED = {
    "one link, no guid": lambda i: (None, HOME),
    "one guid": lambda i: ("same-guid", f"{HOME}{i}" if i % 2 else HOME),
    "links differing by an anchor": lambda i: (None, f"{HOME}page#item-{i}"),
}


@pytest.mark.parametrize("shared", list(_SHARED))
def test_items_sharing_an_identifier_are_each_a_post_and_never_overwritten(
    store: Store, shared: str
) -> None:
    where = _SHARED[shared]
    feed = _feed(store)
    stories = [_post(title=f"第{i}条", body=f"<p>正文 {i}</p>") for i in range(4)]
    first = store.ingest(feed, _document(*((p, *where(i)) for i, p in enumerate(stories))), now=NOW)
    assert (first.new, first.duplicate, first.updated) == (4, 0, 0)
    # The next poll: a new story on the shared key, the oldest one gone.
    later = [*stories[1:], _post(title="第9条", body="<p>正文 9</p>")]
    ids = [1, 2, 3, 9]
    second = store.ingest(
        feed, _document(*((p, *where(i)) for i, p in zip(ids, later, strict=True))), now=NOW
    )
    assert (second.new, second.updated) == (1, 0)
    assert _bodies(store) == sorted((p.title, p.body) for p in [*stories, later[-1]])
    assert _revisions(store) == 0
    # ... and the new story alone on the shared key overwrites nothing either.
    alone = _post(title="第10条", body="<p>正文 10</p>")
    third = store.ingest(feed, _document((alone, *where(10))), now=NOW)
    assert (third.new, third.updated) == (1, 0)
    assert store.count_posts() == 6 and _revisions(store) == 0


def test_pictures_under_one_headline_and_link_are_each_a_post(store: Store) -> None:
    feed = _feed(store)
    pictures = [
        _post(title="今日图片", body=f'<p><img src="https://img.x/{i}.jpg"></p>') for i in range(3)
    ]
    result = store.ingest(feed, _document(*((p, None, HOME) for p in pictures)), now=NOW)
    assert result.new == 3
    again = store.ingest(feed, _document(*((p, None, HOME) for p in pictures)), now=NOW)
    assert (again.new, again.unchanged, again.updated) == (0, 3, 0)


def test_route_fragments_are_pages_of_their_own(store: Store) -> None:
    feed = _feed(store)
    routed = [
        (_post(title="同名", body=f"<p>{i}</p>"), None, f"https://spa.x/#/post/{i}")
        for i in range(3)
    ]
    assert store.ingest(feed, _document(*routed), now=NOW).new == 3
    # One of them edited: an edit of that page only.
    edited = [routed[0], (_post(title="同名", body="<p>1 改</p>"), None, routed[1][2]), routed[2]]
    result = store.ingest(feed, _document(*edited), now=NOW)
    assert (result.new, result.updated, result.unchanged) == (0, 1, 2)


def test_an_edit_is_still_an_edit_when_its_guid_changes(store: Store) -> None:
    feed = _feed(store)
    store.ingest(feed, _document((_post(body="<p>v1</p>"), "g-1", "https://x.org/1")), now=NOW)
    result = store.ingest(
        feed, _document((_post(body="<p>v2</p>"), "g-2", "https://x.org/1")), now=NOW
    )
    assert (result.new, result.updated) == (0, 1)


def test_a_second_feed_carrying_the_first_version_is_a_duplicate_not_a_crash(
    store: Store,
) -> None:
    """Feed A stores a story and edits it; feed B then carries the first version.
    That was ``UNIQUE constraint failed: posts.slug`` on every pass."""
    a, b = _feed(store, "https://a.example/feed"), _feed(store, "https://b.example/feed")
    v1, v2 = _post(body="<p>初稿</p>"), _post(body="<p>改稿</p>")
    store.ingest(a, [_item(v1, "a-1")], now=NOW)
    assert store.ingest(a, [_item(v2, "a-1")], now=NOW).updated == 1
    first_b = store.ingest(b, [_item(v1, "b-1", "https://b.example/1")], now=NOW)
    assert (first_b.new, first_b.duplicate) == (0, 1)
    # No flip-flopping: each feed polls again with what it carries.
    for _ in range(2):
        again_b = store.ingest(b, [_item(v1, "b-1", "https://b.example/1")], now=NOW)
        again_a = store.ingest(a, [_item(v2, "a-1")], now=NOW)
        assert (again_b.unchanged, again_b.updated, again_a.unchanged, again_a.updated) == (
            1,
            0,
            1,
            0,
        )
    assert _bodies(store) == [(v2.title, v2.body)]
    assert _revisions(store) == 1
    # B edits its copy too: that is an edit, and A's older copy does not revert it.
    v3 = _post(body="<p>三稿</p>")
    assert store.ingest(b, [_item(v3, "b-1", "https://b.example/1")], now=NOW).updated == 1
    assert store.ingest(a, [_item(v2, "a-1")], now=NOW).unchanged == 1
    assert _bodies(store) == [(v3.title, v3.body)]


def test_a_taken_slug_gives_the_new_post_the_next_one(store: Store) -> None:
    feed = _feed(store)
    item = _item(_post(title="新"))
    store.add_posts([_post(title="旧")])
    slug = next(iter(store.iter_posts())).slug
    wanted = dataclasses.replace(item)  # the slug it would get, given to another post
    with store.engine.begin() as conn:
        conn.execute(
            m.Post.__table__.update().values(
                slug=f"{wanted.post.date:%Y-%m-%d}-{wanted.digest[:12]}"
            )
        )
    assert slug != f"{wanted.post.date:%Y-%m-%d}-{wanted.digest[:12]}"
    result = store.ingest(feed, [item, _item(_post(title="另"), "g2", "https://x.org/2")], now=NOW)
    assert result.new == 2
    slugs = sorted(s.slug for s in store.iter_posts())
    assert f"{wanted.post.date:%Y-%m-%d}-{wanted.digest[:12]}-2" in slugs
    assert len(set(slugs)) == 3


def test_a_failing_feed_in_a_batch_fails_alone(store: Store) -> None:
    jobs = _three_feeds(store)
    bad = IngestItem(key="k", post=_post(title="坏"), raw={"x": object()})  # not JSON
    jobs[1] = dataclasses.replace(jobs[1], items=[*jobs[1].items, bad])
    results = store.ingest_many(jobs)
    assert isinstance(results[1], Exception)
    assert [(r.new, r.duplicate) for r in (results[0], results[2])] == [(2, 0), (1, 0)]  # type: ignore[union-attr]
    assert store.count_posts() == 3
    states = {f.url.rsplit("/", 1)[1]: f for f in store.feeds()}
    assert (states["a"].etag, states["b"].etag) == ("A", None)  # b's state not recorded


def test_a_stored_text_less_post_keeps_its_post_under_the_new_hash(store: Store) -> None:
    """Posts stored before media counted in the hash are not edited by it."""
    feed = _feed(store)
    picture = _post(title="图", body='<p><img src="https://img.x/1.jpg"></p>')
    item = _item(picture)
    store.ingest(feed, [item], now=NOW)
    with store.engine.begin() as conn:  # as the old rule hashed it: the title alone
        conn.execute(m.Post.__table__.update().values(content_hash=content_hash("图", "")))
    again = store.ingest(feed, [item], now=NOW)
    assert (again.unchanged, again.updated) == (1, 0)
    assert _revisions(store) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(m.Post.content_hash)).scalar_one() == item.digest


def test_a_story_alone_on_a_key_other_stories_shared_is_no_edit_of_them(store: Store) -> None:
    feed = _feed(store)
    a, b, c = (_post(title=t, body=f"<p>{t}</p>") for t in ("甲", "乙", "丙"))
    assert store.ingest(feed, _document((a, None, HOME)), now=NOW).new == 1  # key link:HOME
    second = store.ingest(feed, _document((b, None, HOME), (a, None, HOME)), now=NOW)
    assert (second.new, second.duplicate, second.updated) == (1, 1, 0)
    # Alone again on the homepage link: the key is a's, but the link is shared.
    third = store.ingest(feed, _document((c, None, HOME)), now=NOW)
    assert (third.new, third.updated) == (1, 0)
    assert _bodies(store) == sorted((p.title, p.body) for p in (a, b, c)) and not _revisions(store)
    fourth = store.ingest(feed, _document((c, None, HOME)), now=NOW)
    assert (fourth.new, fourth.unchanged) == (0, 1)
    # Where the key is the item's alone, changed content is an edit as before.
    other = _feed(store, "https://other.example/feed")
    store.ingest(other, _document((a, None, "https://x.org/1")), now=NOW)
    edited = _post(title="甲", body="<p>甲 改</p>")
    assert store.ingest(other, _document((edited, None, "https://x.org/1")), now=NOW).updated == 1


def test_migration_0004_gives_stored_route_links_their_own_link_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = make_engine(url)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            m.Feed.__table__.insert().values(
                id=1,
                url="https://spa.x/feed",
                outlet="o",
                section="s",
                group_name="g",
                enabled=True,
                in_config=True,
                interval_seconds=900,
                error_streak=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        conn.execute(
            text(
                "INSERT INTO posts (id, slug, content_hash, title, group_name, outlet, section,"
                " headimg, thumbnail, author, comments, body, revision, created_at, updated_at)"
                " VALUES (1, 's', 'h', 't', 'g', 'o', 's', '', '', 'o', 0, 'b', 0,"
                " '2024-05-01 12:00:00', '2024-05-01 12:00:00')"
            )
        )
        for entry_id, link in [(1, "https://spa.x/#/post/1"), (2, "https://spa.x/a#comments")]:
            conn.execute(
                text(
                    "INSERT INTO entries (id, feed_id, key, link, link_key, post_id,"
                    " first_seen_at, last_seen_at) VALUES (:id, 1, :key, :link, :old, 1,"
                    " '2024-05-01 12:00:00', '2024-05-01 12:00:00')"
                ),
                {"id": entry_id, "key": f"k{entry_id}", "link": link, "old": "//spa.x"},
            )
    upgrade(engine, "0004")
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, link_key FROM entries")).all())
        indexes = {i["name"] for i in inspect(conn).get_indexes("post_revisions")}
    assert keys == {1: "//spa.x#/post/1", 2: "//spa.x"}  # anchors are left alone
    assert "ix_post_revisions_content_hash" in indexes
    engine.dispose()


def test_reprocess_takes_the_new_hash_of_a_text_less_post_without_a_revision(
    store: Store,
) -> None:
    from aggregator.store import Reprocessed

    feed = _feed(store)
    picture = _post(title="图", body='<p><img src="https://img.x/1.jpg"></p>')
    store.ingest(feed, [_item(picture)], now=NOW)
    with store.engine.begin() as conn:  # as the old rule hashed it: the title alone
        conn.execute(m.Post.__table__.update().values(content_hash=content_hash("图", "")))
    [[entry]] = list(store.iter_entries(feed))
    result = store.reprocess([Reprocessed(entry.id, picture)], now=NOW)
    assert (result.updated, result.unchanged, result.conflicts) == (0, 1, [])
    assert _revisions(store) == 0
    with store.engine.connect() as conn:
        stored = conn.execute(select(m.Post.content_hash)).scalar_one()
    assert stored == content_hash(picture.title, picture.body)


def test_a_feed_update_writes_only_the_columns_it_names(store: Store) -> None:
    """KEEP leaves a column as it is; None clears it; later updates to one row win."""
    feed = _feed(store)
    store.update_feed(feed, FeedUpdate(etag="e1", last_error="boom", error_streak=2))
    later = [(feed, FeedUpdate(last_error=None)), (feed, FeedUpdate(error_streak=3))]
    store.update_feeds([*later, (feed, FeedUpdate())])
    state = store.feed_state(feed)
    assert (state.etag, state.last_error, state.error_streak) == ("e1", None, 3)
    assert FeedUpdate().values() == {}
    assert FeedUpdate(etag=None).values() == {"etag": None}
