"""Identity across edits, keep/block filters and reprocessing (issue 9).

Feeds are served by a local server and fetched in-process through the real
pipeline (`fetch_once`), into a real database and a real export directory.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pytest
from feedbuild import EtagFeed, rss_document
from localserver import LocalServer
from sqlalchemy import select, update
from support_proc import aggregator

from aggregator.config.feeds import Config, ConfigError, loads_config
from aggregator.content.rawentry import RawEntryError, StoredPage, dump_entry, load_entry, load_page
from aggregator.hexo.export import export_posts
from aggregator.hexo.post import format_date, parse
from aggregator.parse.parser import parse_feed
from aggregator.policy.filters import Filters, Rule
from aggregator.service.pipeline import FeedReport
from aggregator.service.reprocess import reprocess
from aggregator.service.runner import fetch_once
from aggregator.store import Store
from aggregator.store import models as m

DAY = datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)


def item(
    title: str,
    body: str,
    *,
    guid: str | None = None,
    link: str = "https://news.example.com/a/1",
    author: str | None = None,
) -> str:
    guid_xml = f'<guid isPermaLink="false">{escape(guid)}</guid>' if guid else ""
    author_xml = f"<author>{escape(author)}</author>" if author else ""
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>{guid_xml}"
        f"{author_xml}<pubDate>{format_date(DAY)}</pubDate>"
        f"<description><![CDATA[{body}]]></description></item>"
    )


def config_for(url: str, extra: str = "", defaults: str = "") -> Config:
    return loads_config(
        f"defaults:\n  group: 新媒体\n{defaults}feeds:\n"
        f"  - url: {url}\n    outlet: 测试网\n    section: 新闻\n{extra}"
    )


def fetch(store: Store, config: Config, out: Path) -> FeedReport:
    (report,) = asyncio.run(fetch_once(store, config, config.feeds, export_dir=out))
    assert not report.failed, report.error
    return report


def files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.glob("*.md"))}


def titles(out: Path) -> list[str]:
    return sorted(parse(text).title for text in files(out).values())


@pytest.fixture
def feed(local_server: LocalServer) -> EtagFeed:
    handler = EtagFeed(rss_document(""))
    local_server.route("/feed.xml", handler)
    return handler


def publish(feed: EtagFeed, *items: str) -> None:
    feed.body = rss_document("".join(items)).encode()


# -- identity -----------------------------------------------------------------


def test_headline_edited_with_a_new_guid_and_a_tracking_param_updates_one_post(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    out, config = tmp_path / "out", config_for(local_server.url("/feed.xml"))
    publish(feed, item("原标题", "<p>正文</p>", guid="g-1"))
    assert fetch(store, config, out).new == 1
    ((name, before),) = files(out).items()
    assert "updated:" not in before

    edited_link = "http://news.example.com/a/1/?utm_source=rss&utm_medium=feed"
    publish(feed, item("新标题", "<p>正文</p>", guid="g-2", link=edited_link))
    report = fetch(store, config, out)

    assert (report.new, report.updated) == (0, 1)
    ((same_name, after),) = files(out).items()
    assert same_name == name
    post = parse(after)
    assert post.title == "新标题"
    assert post.updated is not None
    assert f"date: {format_date(DAY)}\nupdated: {format_date(post.updated)}\n" in after
    (stored,) = store.iter_posts()
    assert stored.revision == 1
    with store.engine.connect() as conn:
        assert conn.scalars(select(m.PostRevision.title)).all() == ["原标题"]
        assert conn.scalars(select(m.Entry.key)).all() == ["guid:g-2"]


def test_identity_title_follows_feeds_whose_guids_and_links_churn(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    url = local_server.url("/feed.xml")
    config = config_for(url, "    identity: title\n")
    out = tmp_path / "out"
    publish(feed, item("每日要闻", "<p>一</p>", guid="r-1", link="https://n.example/x?s=1"))
    fetch(store, config, out)
    publish(feed, item("每日要闻", "<p>一，二</p>", guid="r-2", link="https://n.example/x?s=2"))
    report = fetch(store, config, out)
    assert (report.new, report.updated) == (0, 1)
    assert len(files(out)) == 1
    assert "一，二" in next(iter(files(out).values()))


def test_without_identity_title_churning_guids_and_links_are_new_items(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    config, out = config_for(local_server.url("/feed.xml")), tmp_path / "out"
    publish(feed, item("每日要闻", "<p>一</p>", guid="r-1", link="https://n.example/x?s=1"))
    fetch(store, config, out)
    publish(feed, item("每日要闻", "<p>一，二</p>", guid="r-2", link="https://n.example/x?s=2"))
    assert fetch(store, config, out).new == 1


def test_items_that_all_link_to_the_homepage_stay_separate(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    config, out = config_for(local_server.url("/feed.xml")), tmp_path / "out"
    home = "https://news.example.com/"
    publish(feed, item("甲", "<p>甲文</p>", guid="1", link=home))
    fetch(store, config, out)
    publish(
        feed,
        item("乙", "<p>乙文</p>", guid="2", link=home),
        item("甲", "<p>甲文</p>", guid="1", link=home),
    )
    assert fetch(store, config, out).new == 1
    assert titles(out) == ["乙", "甲"]


def test_entries_keyed_before_links_were_canonical_are_not_stored_again(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    """Upgrading changes link keys; the stored entry is found and re-keyed."""
    config, out = config_for(local_server.url("/feed.xml")), tmp_path / "out"
    publish(feed, item("标题", "<p>旧文</p>", link="https://n.example/a?spm=1.2"))
    fetch(store, config, out)
    with store.engine.begin() as conn:  # the key an older version wrote
        conn.execute(update(m.Entry).values(key="link:https://n.example/a?spm=1.2"))
    publish(feed, item("标题", "<p>新文</p>", link="https://n.example/a?spm=9.9"))
    report = fetch(store, config, out)
    assert (report.new, report.updated) == (0, 1)
    with store.engine.connect() as conn:
        assert conn.scalars(select(m.Entry.key)).all() == ["link://n.example/a"]


# -- filters ------------------------------------------------------------------


def test_blocked_items_are_stored_counted_and_never_exported(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    config = config_for(
        local_server.url("/feed.xml"),
        '    block:\n      - link: "/sponsored/"\n',
        defaults='  block:\n    - title: "广告|推广"\n',
    )
    out = tmp_path / "out"
    publish(
        feed,
        item("新闻一", "<p>一</p>", guid="1"),
        item("【推广】好物", "<p>买</p>", guid="2", link="https://n.example/2"),
        item("赞助", "<p>钱</p>", guid="3", link="https://n.example/sponsored/3"),
    )
    report = fetch(store, config, out)
    assert (report.new, report.blocked) == (1, 2)
    assert titles(out) == ["新闻一"]
    (state,) = store.feeds()
    assert (state.posts, state.blocked) == (3, 2)

    # Next poll: the blocked items are known, not judged as new again.
    publish(
        feed,
        item("新闻二", "<p>二</p>", guid="4", link="https://n.example/4"),
        item("【推广】好物", "<p>买</p>", guid="2", link="https://n.example/2"),
    )
    report = fetch(store, config, out)
    assert (report.new, report.blocked, report.unchanged) == (1, 0, 1)
    assert titles(out) == ["新闻一", "新闻二"]
    export_dir = tmp_path / "export"
    export_posts(export_dir, store.iter_posts())  # what `aggregator export` writes
    assert titles(export_dir) == ["新闻一", "新闻二"]


def test_keep_rules_keep_only_matching_items(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    config = config_for(
        local_server.url("/feed.xml"), '    keep:\n      - {body: "乌克兰", author: "^记者"}\n'
    )
    out = tmp_path / "out"
    publish(
        feed,
        item("一", "<p>关于<b>乌克兰</b></p>", guid="1", author="记者甲"),
        item("二", "<p>关于乌克兰</p>", guid="2", author="编辑乙"),
        item("三", "<p>天气</p>", guid="3", author="记者丙"),
    )
    report = fetch(store, config, out)
    assert (report.new, report.blocked) == (1, 2)
    assert titles(out) == ["一"]


def test_an_edit_that_now_matches_a_block_rule_removes_the_file(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    config = config_for(local_server.url("/feed.xml"), '    block:\n      - title: "广告"\n')
    out = tmp_path / "out"
    publish(feed, item("好物", "<p>x</p>", guid="1"))
    fetch(store, config, out)
    assert titles(out) == ["好物"]
    publish(feed, item("好物（广告）", "<p>x</p>", guid="1"))
    assert fetch(store, config, out).updated == 1
    assert files(out) == {}


@pytest.mark.parametrize(
    ("yaml_rules", "message"),
    [
        ('      - title: "(广告"', "feeds.yaml:8: feeds[0].block[0].title: bad regular expression"),
        ("      - titel: x", "feeds.yaml:8: feeds[0].block[0].titel: unknown key (did you mean"),
        ("      - {}", "feeds.yaml:7: feeds[0].block: rule 0 is empty"),
        ("      - title:", "feeds.yaml:8: feeds[0].block[0].title: has no value"),
    ],
)
def test_bad_rules_are_config_errors_naming_the_line(yaml_rules: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_for("https://n.example/feed", f"    block:\n{yaml_rules}\n")
    assert any(error.startswith(message) for error in caught.value.errors), caught.value.errors


def test_bad_identity_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"feeds\[0\].identity: must be one of guid, link, title"):
        config_for("https://n.example/feed", "    identity: url\n")


@pytest.mark.parametrize(
    ("filters", "verdict"),
    [
        (Filters(), None),
        (Filters(block=(Rule.of({"title": "广告"}),)), "block rule {title: '广告'}"),
        (Filters(block=(Rule.of({"title": "广告", "link": "ads"}),)), None),
        (Filters(block=(Rule.of({"body": "SALE"}),)), "block rule {body: 'SALE'}"),
        (Filters(keep=(Rule.of({"author": "小明"}),)), "no keep rule matched"),
        (Filters(keep=(Rule.of({"link": r"/a/\d+$"}),)), None),
        (
            Filters(keep=(Rule.of({"title": "新品"}),), block=(Rule.of({"title": "广告"}),)),
            "block rule {title: '广告'}",
        ),
    ],
)
def test_filter_verdicts(filters: Filters, verdict: str | None) -> None:
    got = filters.verdict(
        title="新品广告",
        body_html="<p>big <i>sale</i></p>",
        link="https://n.example/a/7",
        author=None,
    )
    assert got == verdict


# -- raw entries and reprocess ---------------------------------------------------


def test_raw_entries_rebuild_the_entry_exactly() -> None:
    document = rss_document(
        item("标题", '<p><img src="/i.jpg">正文</p>', guid="g", author="记者")
        + item("无 guid", "<p>x</p>", link="https://n.example/2")
    )
    parsed = parse_feed(document.encode(), url="https://n.example/feed")
    for entry in parsed.entries:
        raw = dump_entry(entry, full_text="<p>全文</p>")
        rebuilt, full_text = load_entry(raw)
        assert full_text == "<p>全文</p>"
        assert replace(rebuilt, raw={}) == replace(entry, raw={})
        assert "summary_detail" not in rebuilt.raw
    with pytest.raises(RawEntryError, match="older version"):
        load_entry({"title": "feedparser's item, as stored before"})


def test_reprocess_applies_a_new_block_rule_and_removing_it_brings_the_post_back(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    publish(feed, item("新闻", "<p>一</p>", guid="1"), item("推广", "<p>二</p>", guid="2"))
    fetch(store, config_for(url), out)
    before = files(out)
    assert titles(out) == ["推广", "新闻"]

    strict = config_for(url, '    block:\n      - title: "推广"\n')
    report = reprocess(store, strict.feeds, export_dir=out)
    assert (report.entries, report.blocked, report.removed) == (2, 1, 1)
    assert titles(out) == ["新闻"]
    assert [p.post.title for p in store.iter_posts()] == ["新闻"]
    assert store.feeds()[0].blocked == 1

    report = reprocess(store, config_for(url).feeds, export_dir=out)
    assert (report.unblocked, report.written) == (1, 1)
    assert files(out) == before  # the same file, byte for byte

    assert reprocess(store, config_for(url).feeds, export_dir=out).unchanged == 2


def test_reprocess_reruns_clean_up_over_the_stored_raw_entry(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    """A changed clean-up is simulated by changing what it starts from."""
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    publish(feed, item("新闻", "<p>一</p>", guid="1"))
    fetch(store, config_for(url), out)
    ((name, _),) = files(out).items()
    with store.engine.begin() as conn:
        entry_id, raw = conn.execute(select(m.Entry.id, m.Entry.raw)).one()
        raw = {**raw, "summary_html": '<p onclick="x()">一，修订</p><script>bad()</script>'}
        conn.execute(update(m.Entry).where(m.Entry.id == entry_id).values(raw=raw))

    report = reprocess(store, config_for(url).feeds, export_dir=out)

    assert (report.updated, report.written) == (1, 1)
    ((same_name, text),) = files(out).items()
    assert same_name == name
    post = parse(text)
    assert post.body == "<p>一，修订</p>"
    assert post.updated is None  # our clean-up changed, not the story
    (stored,) = store.iter_posts()
    assert stored.revision == 1


def test_reprocess_skips_entries_stored_by_an_older_version_and_says_so(
    store: Store, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    publish(feed, item("新闻", "<p>一</p>", guid="1"))
    fetch(store, config_for(url), out)
    with store.engine.begin() as conn:
        conn.execute(update(m.Entry).values(raw={"title": "新闻"}))
    report = reprocess(store, config_for(url).feeds, export_dir=out)
    assert (report.entries, report.skipped) == (1, 1)
    assert any("older version" in note for note in report.notes)


def test_reprocess_command(
    database_url: str, feed: EtagFeed, local_server: LocalServer, tmp_path: Path
) -> None:
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    publish(feed, item("新闻", "<p>一</p>", guid="1"), item("推广", "<p>二</p>", guid="2"))
    store = Store.open(database_url)
    try:
        fetch(store, config_for(url), out)
    finally:
        store.close()
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "defaults:\n  group: 新媒体\n"
        f"feeds:\n  - url: {url}\n    outlet: 测试网\n    section: 新闻\n"
        '    block: [{title: "推广"}]\n',
        encoding="utf-8",
    )
    result = aggregator(
        "reprocess",
        "--config",
        str(config),
        "--feed",
        "测试网",
        "--since",
        "2022-03-01",
        "--export",
        str(out),
        db=database_url,
        cwd=tmp_path,
    )
    assert result.stdout == (
        "2 entries: 0 updated, 1 blocked, 0 unblocked, 1 unchanged; 0 files written, 1 removed\n"
    )
    assert titles(out) == ["新闻"]


# -- full text re-cut from the stored page -------------------------------------

ARTICLE = (
    "<html><head><title>页面</title></head><body>"
    '<div class="a"><p>甲的正文</p></div>'
    '<div class="b"><p>乙的正文</p><aside class="ad">广告</aside>'
    '<p><a href="/more">更多</a></p></div>'
    "</body></html>"
)


def full_text_yaml(url: str, selector: str, remove: str = "[]") -> str:
    return (
        "defaults:\n  group: 新媒体\n"
        f"feeds:\n  - url: {url}\n    outlet: 测试网\n    section: 新闻\n"
        "    allow_private_networks: true\n"
        f'    full_text: {{selector: "{selector}", remove: {remove}}}\n'
    )


@pytest.fixture
def article(feed: EtagFeed, local_server: LocalServer) -> str:
    local_server.route(
        "/a/1", body=ARTICLE.encode(), headers={"Content-Type": "text/html; charset=utf-8"}
    )
    link = local_server.url("/a/1")
    publish(feed, item("新闻", "<p>摘要</p>", guid="1", link=link))
    return link


def test_reprocess_cuts_the_stored_page_with_a_changed_selector_offline(
    database_url: str, article: str, local_server: LocalServer, tmp_path: Path
) -> None:
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    store = Store.open(database_url)
    try:
        fetch(store, loads_config(full_text_yaml(url, ".a")), out)
        ((name, text),) = files(out).items()
        assert parse(text).body == "<p>甲的正文</p>"
        (raw,) = store.engine.connect().execute(select(m.Entry.raw)).scalars()
        assert raw["page"]["url"] == article
    finally:
        store.close()
    assert len(local_server.requests_to("/a/1")) == 1

    config = tmp_path / "feeds.yaml"
    config.write_text(full_text_yaml(url, ".b", '[".ad"]'), encoding="utf-8")
    result = aggregator(
        "reprocess", "--config", str(config), "--export", str(out), db=database_url, cwd=tmp_path
    )
    assert result.stdout == (
        "1 entries: 1 updated, 0 blocked, 0 unblocked, 0 unchanged; 1 files written, 0 removed\n"
    )
    ((same_name, text),) = files(out).items()
    assert same_name == name
    body = parse(text).body
    assert "乙的正文" in body and "甲的正文" not in body and "广告" not in body
    assert local_server.url("/more") in body  # links resolved against the page's URL
    assert len(local_server.requests_to("/a/1")) == 1  # no request for the page

    # Reprocessing again changes nothing.
    store = Store.open(database_url)
    try:
        spec = loads_config(full_text_yaml(url, ".b", '[".ad"]')).feeds
        assert reprocess(store, spec, export_dir=out).unchanged == 1
    finally:
        store.close()


def test_a_selector_that_matches_nothing_falls_back_to_the_feed_body(
    store: Store, article: str, local_server: LocalServer, tmp_path: Path
) -> None:
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    fetch(store, loads_config(full_text_yaml(url, ".a")), out)
    report = reprocess(store, loads_config(full_text_yaml(url, ".none")).feeds, export_dir=out)
    assert report.updated == 1
    assert [parse(t).body for t in files(out).values()] == ["<p>摘要</p>"]
    assert any("matched nothing" in note for note in report.notes)
    # The page is still stored: a fixed selector brings the full text back.
    reprocess(store, loads_config(full_text_yaml(url, ".a")).feeds, export_dir=out)
    assert [parse(t).body for t in files(out).values()] == ["<p>甲的正文</p>"]
    assert len(local_server.requests_to("/a/1")) == 1


def test_reprocess_refetch_fetches_pages_that_were_never_stored(
    database_url: str, article: str, local_server: LocalServer, tmp_path: Path
) -> None:
    """Stored before pages were kept: full text re-cleaned offline, re-cut with --refetch."""
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    store = Store.open(database_url)
    try:
        fetch(store, loads_config(full_text_yaml(url, ".a")), out)
        with store.engine.begin() as conn:
            entry_id, raw = conn.execute(select(m.Entry.id, m.Entry.raw)).one()
            raw = {k: v for k, v in raw.items() if k != "page"}
            conn.execute(update(m.Entry).where(m.Entry.id == entry_id).values(raw=raw))
        changed = loads_config(full_text_yaml(url, ".b", '[".ad"]')).feeds
        report = reprocess(store, changed, export_dir=out)
        assert (report.unchanged, report.refetched) == (1, 0)
        assert any("--refetch" in note for note in report.notes)
        assert len(local_server.requests_to("/a/1")) == 1
    finally:
        store.close()
    ((name, _),) = files(out).items()

    config = tmp_path / "feeds.yaml"
    config.write_text(full_text_yaml(url, ".b", '[".ad"]'), encoding="utf-8")
    result = aggregator(
        "reprocess",
        "--config",
        str(config),
        "--export",
        str(out),
        "--refetch",
        db=database_url,
        cwd=tmp_path,
    )
    assert result.stdout == (
        "1 entries: 1 updated, 0 blocked, 0 unblocked, 0 unchanged; 1 files written, "
        "0 removed; 1 pages refetched\n"
    )
    assert len(local_server.requests_to("/a/1")) == 2
    ((same_name, text),) = files(out).items()
    assert same_name == name
    assert "乙的正文" in parse(text).body

    # The refetched page is now stored: the next run needs no network.
    store = Store.open(database_url)
    try:
        report = reprocess(store, loads_config(full_text_yaml(url, ".a")).feeds, export_dir=out)
        assert (report.updated, report.refetched) == (1, 0)
    finally:
        store.close()
    assert [parse(t).body for t in files(out).values()] == ["<p>甲的正文</p>"]
    assert len(local_server.requests_to("/a/1")) == 2


def test_refetch_keeps_to_the_address_guard(
    store: Store, article: str, local_server: LocalServer, tmp_path: Path
) -> None:
    """Without allow_private_networks a refetch of a loopback link is refused."""
    url, out = local_server.url("/feed.xml"), tmp_path / "out"
    fetch(store, loads_config(full_text_yaml(url, ".a")), out)
    with store.engine.begin() as conn:
        entry_id, raw = conn.execute(select(m.Entry.id, m.Entry.raw)).one()
        raw = {k: v for k, v in raw.items() if k != "page"}
        conn.execute(update(m.Entry).where(m.Entry.id == entry_id).values(raw=raw))
    guarded = loads_config(
        full_text_yaml(url, ".b").replace("    allow_private_networks: true\n", "")
    )
    report = reprocess(store, guarded.feeds, export_dir=out, refetch=True)
    assert report.refetched == 0
    assert any("refetch failed" in note for note in report.notes)
    assert len(local_server.requests_to("/a/1")) == 1


def test_raw_entries_keep_the_page_compressed() -> None:
    parsed = parse_feed(rss_document(item("新闻", "<p>一</p>")).encode(), url="https://x.example/")
    (entry,) = parsed.entries
    page = StoredPage("https://x.example/a", ARTICLE * 50)
    raw = dump_entry(entry, full_text="<p>甲</p>", page=page)
    assert len(raw["page"]["html_zlib"]) < len(page.html) // 10
    assert load_page(raw) == page
    assert load_page(dump_entry(entry)) is None
    assert load_page({**raw, "page": {"url": "x", "html_zlib": "not base64!"}}) is None
