"""The operator's page over a real store and a real HTTP server on 127.0.0.1.

What a browser sees is in tests/test_web_browser.py; here: hostile feed text
comes out escaped, title search uses the database's index on both backends,
the actions need the token (header for scripts, session + CSRF field +
Origin for forms), the JSON mirrors the pages, and the poll history is
recorded by the pipeline and pruned.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import html5lib
import httpx
import pytest
from sqlalchemy import func, insert, select, text

from aggregator.service.metrics import Metrics
from aggregator.service.server import HttpServer
from aggregator.service.web.site import OperatorSite, display_url, safe_href
from aggregator.store import Store
from aggregator.store import models as m
from aggregator.store.polls import PollRecord, prune_polls, record_polls
from aggregator.store.views import feed_page, newest_posts, totals

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("t")</script><img src=x onerror=alert(1)>"\'&'
EVIL_LINK = "javascript:alert(document.cookie)"


async def _healthy() -> tuple[bool, str]:
    return True, ""


def _add_feed(store: Store, url: str, **values: object) -> int:
    row = {
        "url": url,
        "outlet": "Outlet",
        "section": "新闻",
        "group_name": "新媒体",
        "enabled": True,
        "in_config": True,
        "interval_seconds": 900,
        "error_streak": 0,
        "created_at": NOW,
        "updated_at": NOW,
        **values,
    }
    with store.engine.begin() as c:
        return int(c.execute(insert(m.Feed).returning(m.Feed.id), row).scalar_one())


def _add_post(store: Store, feed_id: int, title: str, *, link: str, n: int, file: bool) -> int:
    with store.engine.begin() as c:
        post_id = int(
            c.execute(
                insert(m.Post).returning(m.Post.id),
                {
                    "slug": f"slug{feed_id}x{n}",
                    "content_hash": f"{feed_id:032d}{n:032d}",
                    "title": title,
                    "group_name": "新媒体",
                    "outlet": "Outlet",
                    "section": "新闻",
                    "headimg": "",
                    "thumbnail": "",
                    "author": "",
                    "comments": False,
                    "date": NOW - timedelta(hours=n),
                    "body": "<p>body</p>",
                    "link": link,
                    "feed_id": feed_id,
                    "revision": 0,
                    "created_at": NOW - timedelta(days=n % 5, hours=1),
                    "updated_at": NOW,
                },
            ).scalar_one()
        )
        c.execute(
            insert(m.Entry),
            {
                "feed_id": feed_id,
                "key": f"k{n}",
                "post_id": post_id,
                "first_seen_at": NOW,
                "last_seen_at": NOW,
            },
        )
        if file:
            c.execute(
                insert(m.ExportedFile),
                {
                    "post_id": post_id,
                    "directory": "/srv/site/source/_posts",
                    "file_name": f"{n:03d}_slug{feed_id}x{n}.txt",
                    "revision": 0,
                    "post_updated_at": NOW,
                    "written_at": NOW,
                },
            )
    return post_id


@dataclass
class Fixture:
    store: Store
    ok: int
    failing: int
    disabled: int


def _populate(store: Store) -> Fixture:
    ok = _add_feed(
        store,
        "https://user:hunter2@news.example.com/rss?token=s3cret&lang=zh",
        outlet=HOSTILE,
        last_status=200,
        last_checked_at=NOW - timedelta(minutes=3),
        next_check_at=NOW + timedelta(minutes=12),
    )
    failing = _add_feed(
        store,
        "https://broken.example.com/feed",
        outlet="Broken",
        last_status=500,
        last_error=f"HTTP 500 {HOSTILE}",
        error_class="transient",
        error_streak=3,
        last_checked_at=NOW - timedelta(minutes=1),
    )
    disabled = _add_feed(
        store,
        "https://gone.example.com/feed",
        outlet="Gone",
        last_status=410,
        error_class="gone",
        disabled_reason="410 Gone: the publisher removed this feed",
    )
    _add_feed(store, "https://slow.example.com/feed", outlet="Slow", error_class="throttled")
    _add_feed(store, "http://rsshub.local/x/y", outlet="Hub", error_class="warming")
    _add_post(
        store, ok, HOSTILE + " 莫斯科强调其拒绝欧洲存在美国核武器", link=EVIL_LINK, n=1, file=True
    )
    for n in range(2, 8):
        _add_post(
            store,
            ok,
            f"Plain story number {n} 乌克兰总统",
            link=f"https://news.example.com/{n}",
            n=n,
            file=n % 2 == 0,
        )
    record_polls(
        store.engine,
        [
            PollRecord(
                failing,
                NOW - timedelta(hours=h),
                500,
                40,
                120,
                0,
                0,
                "transient",
                f"HTTP 500 {HOSTILE}",
                "transient back-off, error streak 3",
                NOW,
            )
            for h in range(3)
        ]
        + [
            PollRecord(
                ok,
                NOW - timedelta(hours=h, minutes=5),
                200,
                25,
                4096,
                2,
                1,
                None,
                None,
                "max-age 3600 s (longer than the interval)",
                NOW + timedelta(hours=1),
            )
            for h in range(5)
        ],
    )
    return Fixture(store, ok, failing, disabled)


@pytest.fixture
def populated(store: Store) -> Fixture:
    return _populate(store)


@pytest.fixture
async def page(populated: Fixture) -> AsyncIterator[tuple[str, Fixture]]:
    site = OperatorSite(lambda: populated.store, token="tok-123", clock=lambda: NOW)
    async with HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_healthy, site=site) as server:
        yield f"http://127.0.0.1:{server.port}", populated


def _text_nodes_and_scripts(markup: str) -> tuple[str, list[object]]:
    """The document as a browser parses it: its text, and any script or handler found."""
    doc = html5lib.parse(markup, namespaceHTMLElements=False)
    bad: list[object] = [e for e in doc.iter() if e.tag in ("script", "iframe", "object")]
    for element in doc.iter():
        for name, value in element.attrib.items():
            if name.lower().startswith("on") or (
                name.lower() in ("href", "src", "action")
                and value.strip().lower().startswith("javascript:")
            ):
                bad.append((element.tag, name, value))
    return "".join(doc.itertext()), bad


async def test_hostile_feed_text_reaches_every_page_escaped(page: tuple[str, Fixture]) -> None:
    base, fx = page
    async with httpx.AsyncClient(base_url=base) as client:
        for path in ("/", f"/feeds/{fx.ok}", f"/feeds/{fx.failing}", "/posts", "/posts?q=Plain"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert "script-src" not in response.headers["content-security-policy"]
            assert "default-src 'none'" in response.headers["content-security-policy"]
            text, bad = _text_nodes_and_scripts(response.text)
            assert bad == [], (path, bad)
            if path in ("/", f"/feeds/{fx.ok}", "/posts"):
                # shown to the reader as the characters it is made of
                assert '<script>alert("t")</script>' in text, path
        index = (await client.get("/")).text
        assert "hunter2" not in index and "s3cret" not in index
        assert "news.example.com/rss?token=***&amp;lang=zh" in index
        posts = (await client.get("/posts")).text
        assert EVIL_LINK not in posts  # not as a link, not at all
        assert 'href="https://news.example.com/2"' in posts


def test_display_url_and_safe_href() -> None:
    assert (
        display_url("https://a:b@x.example/f?api_key=1&page=2")
        == "https://x.example/f?api_key=***&page=2"
    )
    assert display_url("https://x.example/f?page=2") == "https://x.example/f?page=2"
    assert safe_href(" javascript:alert(1)") is None
    assert safe_href("data:text/html,<b>") is None
    assert safe_href("HTTPS://x.example/a") == "HTTPS://x.example/a"


async def test_feed_table_filters_sorts_and_pages(page: tuple[str, Fixture]) -> None:
    base, fx = page
    async with httpx.AsyncClient(base_url=base) as client:
        failing = (await client.get("/", params={"state": "failing"})).text
        assert "Broken" in failing and "Gone" not in failing and "Slow" not in failing
        assert "HTTP 500" in failing
        for state, outlet in (("disabled", "Gone"), ("throttled", "Slow"), ("warming", "Hub")):
            listed = (await client.get("/api/feeds", params={"state": state})).json()
            assert [f["outlet"] for f in listed["feeds"]] == [outlet], state
        everything = (await client.get("/api/feeds", params={"sort": "url", "desc": "1"})).json()
        # sorted by the stored URL (https://user:... first), shown redacted
        outlets = [f["outlet"] for f in everything["feeds"]]
        assert outlets == [HOSTILE, "Slow", "Gone", "Broken", "Hub"] and everything["total"] == 5
        paged = (await client.get("/api/feeds", params={"per_page": 2, "page": 3})).json()
        assert paged["pages"] == 3 and len(paged["feeds"]) == 1
        assert (await client.get("/", params={"state": "nonsense"})).status_code == 400
        ok = next(f for f in everything["feeds"] if f["id"] == fx.ok)
        assert ok["posts"] == 7 and sum(ok["spark"]) == 7 and len(ok["spark"]) == 30
        assert "hunter2" not in ok["url"]
        summary = (await client.get("/api/summary")).json()
        assert summary["totals"]["by_state"] == {
            "ok": 1,
            "failing": 1,
            "throttled": 1,
            "warming": 1,
            "disabled": 1,
            "removed": 0,
        }
        assert summary["totals"]["polls_24h"] == 8 and summary["totals"]["failed_24h"] == 3
        assert sum(h["new"] for h in summary["hours"]) == 10 and len(summary["hours"]) == 24
        index = (await client.get("/")).text
        assert 'data-polls="8"' in index and 'data-failed="3"' in index


async def test_feed_page_shows_history_errors_and_reasons(page: tuple[str, Fixture]) -> None:
    base, fx = page
    async with httpx.AsyncClient(base_url=base) as client:
        failing = (await client.get(f"/feeds/{fx.failing}")).text
        assert "transient back-off, error streak 3" in failing
        assert failing.count("HTTP 500 &lt;script&gt;") >= 3
        ok = (await client.get(f"/feeds/{fx.ok}")).text
        assert "max-age 3600 s" in ok and "4096" in ok
        assert "002_slug" in ok  # the exported file name from the ledger
        detail = (await client.get(f"/api/feeds/{fx.ok}")).json()
        assert len(detail["polls"]) == 5 and detail["errors"] == []
        assert next(p["title"] for p in detail["posts"]).startswith("Plain story number 7")
        assert (await client.get("/feeds/99999")).status_code == 404


def test_title_search_uses_the_full_text_index(populated: Fixture) -> None:
    engine = populated.store.engine
    found = newest_posts(engine, query="乌克兰总统")
    assert len(found.rows) == 6
    assert [p.title for p in newest_posts(engine, query="美国核武器").rows] == [
        HOSTILE + " 莫斯科强调其拒绝欧洲存在美国核武器"
    ]
    assert len(newest_posts(engine, query="story").rows) == 6
    assert len(newest_posts(engine, query="number 3").rows) == 1
    assert newest_posts(engine, query='"; DROP TABLE posts; --').rows == []
    assert newest_posts(engine, query="NEAR(a b) OR *").rows == []  # no FTS syntax gets through
    assert newest_posts(engine, query="no such words").rows == []
    paged = newest_posts(engine, per_page=4, page=2)
    assert len(paged.rows) == 3 and not paged.has_next
    with engine.connect() as c:
        if engine.dialect.name == "sqlite":
            # the trigram index is there and is what answers
            plan = " ".join(
                str(r)
                for r in c.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT rowid FROM posts_fts "
                        "WHERE posts_fts MATCH '\"story\"'"
                    )
                )
            )
            assert "VIRTUAL TABLE INDEX" in plan
        else:
            names = (
                c.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'posts'"))
                .scalars()
                .all()
            )
            assert "ix_posts_title_tsv" in names


def test_search_index_follows_edits_and_deletes(populated: Fixture) -> None:
    engine = populated.store.engine
    with engine.begin() as c:
        c.execute(
            m.Post.__table__.update()
            .where(m.Post.title.like("Plain story number 2%"))
            .values(title="Renamed headline")
        )
        c.execute(m.Post.__table__.delete().where(m.Post.title.like("Plain story number 3%")))
    assert [p.title for p in newest_posts(engine, query="headline").rows] == ["Renamed headline"]
    assert newest_posts(engine, query="number 2").rows == []
    assert newest_posts(engine, query="number 3").rows == []


async def test_actions_need_the_token(page: tuple[str, Fixture]) -> None:
    base, fx = page
    engine = fx.store.engine

    def due_at(feed_id: int) -> datetime | None:
        with engine.connect() as c:
            return c.execute(select(m.Feed.next_check_at).where(m.Feed.id == feed_id)).scalar_one()

    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as client:
        url = f"/api/feeds/{fx.ok}/poll"
        assert (await client.post(url)).status_code == 401
        assert (await client.post(url, headers={"Authorization": "Bearer nope"})).status_code == 401
        assert due_at(fx.ok) == NOW + timedelta(minutes=12)
        answer = await client.post(url, headers={"Authorization": "Bearer tok-123"})
        assert answer.status_code == 200 and answer.json()["done"] is True
        assert due_at(fx.ok) == NOW
        enable = await client.post(
            f"/api/feeds/{fx.disabled}/enable", headers={"X-Aggregator-Token": "tok-123"}
        )
        assert enable.json()["done"] is True
        with engine.connect() as c:
            assert (
                c.execute(
                    select(m.Feed.disabled_reason).where(m.Feed.id == fx.disabled)
                ).scalar_one()
                is None
            )

        # Forms: no session -> refused; the page shows no action forms
        form_url = f"/feeds/{fx.failing}/poll"
        assert (await client.post(form_url, data={"csrf": "x"})).status_code == 403
        assert (
            f'action="/feeds/{fx.failing}/poll"'
            not in (await client.get(f"/feeds/{fx.failing}")).text
        )
        assert (await client.post("/login", data={"token": "wrong"})).status_code == 403
        login = await client.post("/login", data={"token": "tok-123", "next": "//evil.example/"})
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        feed_page_html = (await client.get(f"/feeds/{fx.failing}")).text
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', feed_page_html)
        assert csrf is not None
        # the session alone is not enough, nor a field from another session, nor another origin
        assert (await client.post(form_url, data={})).status_code == 403
        assert (await client.post(form_url, data={"csrf": "0" * 64})).status_code == 403
        cross = await client.post(
            form_url, data={"csrf": csrf.group(1)}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        fetch_meta = await client.post(
            form_url, data={"csrf": csrf.group(1)}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert fetch_meta.status_code == 403
        done = await client.post(form_url, data={"csrf": csrf.group(1)}, headers={"Origin": base})
        assert done.status_code == 303 and done.headers["location"] == f"/feeds/{fx.failing}"
        assert due_at(fx.failing) == NOW


async def test_read_only_without_a_token(populated: Fixture) -> None:
    site = OperatorSite(lambda: populated.store, clock=lambda: NOW)
    server = HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_healthy, site=site)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = await client.post(
            f"/api/feeds/{populated.ok}/poll", headers={"Authorization": "Bearer anything"}
        )
        assert r.status_code == 403 and "read-only" in r.json()["error"]
        assert (await client.post("/login", data={"token": "x"})).status_code == 403
        assert "read-only" in (await client.get("/")).text
        assert (await client.get("/healthz")).status_code == 200  # still there


async def test_pages_wait_for_the_database() -> None:
    site = OperatorSite(lambda: None)
    server = HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_healthy, site=site)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        r = await client.get("/")
        assert r.status_code == 503 and "waiting for the database" in r.text


def test_prune_keeps_two_days_and_the_last_polls_of_each_feed(store: Store) -> None:
    feed = _add_feed(store, "https://a.example/feed")
    other = _add_feed(store, "https://b.example/feed")
    rows = [
        PollRecord(fid, NOW - timedelta(hours=h), 200, 1, 1, 0, 0, None, None, None, None)
        for fid in (feed, other)
        for h in range(0, 24 * 40, 6)  # every 6 h for 40 days
    ]
    record_polls(store.engine, rows)
    removed = prune_polls(store.engine, now=NOW, keep_per_feed=10)
    with store.engine.connect() as c:
        kept = dict(c.execute(select(m.Poll.feed_id, func.count()).group_by(m.Poll.feed_id)).all())
        oldest = c.execute(select(func.min(m.Poll.started_at))).scalar_one()
    # the last 48 h at one poll per 6 h = 9 (0..48 h), then the 10 before, per feed
    assert kept == {feed: 19, other: 19}
    assert removed == len(rows) - 38
    assert oldest == NOW - timedelta(hours=6 * 18)
    assert prune_polls(store.engine, now=NOW, keep_per_feed=10) == 0


def test_views_are_fast_shaped(populated: Fixture) -> None:
    """Sanity of the query helpers beyond the HTTP layer (filters combine)."""
    engine = populated.store.engine
    assert feed_page(engine, now=NOW, query="broken").total == 1
    assert feed_page(engine, now=NOW, query="100%").total == 0  # LIKE wildcards are literal
    assert totals(engine, now=NOW).posts == 7


def test_each_poll_is_recorded_with_its_schedule_reason(tmp_path: Path, local_server: Any) -> None:
    """A real fetch pass (the pipeline the daemon runs) writes one polls row per poll."""
    from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
    from support_proc import aggregator

    post = seed_posts()[0]
    local_server.route(
        "/good.xml",
        EtagFeed(rss_document(seed_item(post), channel_extra="<ttl>600</ttl>")),
    )
    local_server.route("/busy.xml", status=429, headers={"Retry-After": "7200"}, body="slow down")
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feeds_yaml(
            {
                ("新媒体", "Good", "头条"): local_server.url("/good.xml"),
                ("新媒体", "Busy", "头条"): local_server.url("/busy.xml"),
            },
            interval="1h",
        ),
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'a.db'}"
    aggregator("fetch", "--config", str(config), db=db, cwd=tmp_path, check=False)
    aggregator("fetch", "--config", str(config), db=db, cwd=tmp_path, check=False)
    store = Store.open(db)
    try:
        with store.engine.connect() as c:
            rows = c.execute(
                select(
                    m.Feed.outlet,
                    m.Poll.status,
                    m.Poll.new,
                    m.Poll.bytes,
                    m.Poll.error_class,
                    m.Poll.schedule,
                    m.Poll.message,
                )
                .join(m.Feed, m.Feed.id == m.Poll.feed_id)
                .order_by(m.Poll.id)
            ).all()
    finally:
        store.close()
    good = [r for r in rows if r.outlet == "Good"]
    busy = [r for r in rows if r.outlet == "Busy"]
    assert [(r.status, r.new) for r in good] == [(200, 1), (304, 0)]
    # <ttl> is in minutes: 600 min is longer than the 1 h interval, so it decides
    assert good[0].bytes > 0 and good[0].schedule == "ttl 36000 s (longer than the interval)"
    assert [r.status for r in busy] == [429, 429]
    assert busy[0].error_class == "throttled" and "429" in (busy[0].message or "")
    assert busy[0].schedule == "throttled back-off, error streak 0, Retry-After 7200 s"


async def test_publishers_show_on_the_page_and_in_the_api(populated: Fixture) -> None:
    """Each publisher's last success, last error and queue (issue 16), escaped like feed text."""
    from aggregator.store import publish as publish_ledger

    engine = populated.store.engine
    publish_ledger.record_run(engine, "git", now=NOW - timedelta(minutes=5), pending=2)
    publish_ledger.record_run(
        engine, "webhook:<b>hook</b>", now=NOW - timedelta(minutes=1), error="HTTP 500 <oops>"
    )
    site = OperatorSite(lambda: populated.store, clock=lambda: NOW)
    server = HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_healthy, site=site)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        index = (await client.get("/")).text
        text, bad = _text_nodes_and_scripts(index)
        assert bad == []
        assert "webhook:<b>hook</b>" in text and "HTTP 500 <oops>" in text
        assert "<b>hook</b>" not in index  # as characters, not markup
        assert 'data-publisher="git"' in index
        summary = (await client.get("/api/summary")).json()
        by_name = {p["name"]: p for p in summary["publishers"]}
        assert by_name["git"]["queue"] == 2 and by_name["git"]["last_error"] is None
        assert by_name["git"]["last_success_at"] is not None
        assert by_name["webhook:<b>hook</b>"]["last_error"] == "HTTP 500 <oops>"
