"""Issue 13 through the real CLI: `aggregator fetch` against a local feed server.

Stories that share one link or one GUID each become a post with a file of its
own, and a later story on the shared key overwrites none of them; a feed
whose story collides with another feed's edited post is a duplicate, and the
other feeds of the pass are stored all the same.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import pytest
from feedbuild import EtagFeed, feeds_yaml, rss_document
from localserver import LocalServer
from support_proc import aggregator

from aggregator.hexo.post import parse

HOME = "https://news.example.com/"
DATE = "Tue, 01 Mar 2022 13:31:34 GMT"


def _item(title: str, body: str, *, link: str | None, guid: str | None = None) -> str:
    parts = [f"<title>{escape(title)}</title>", f"<description>{escape(body)}</description>"]
    if link is not None:
        parts.append(f"<link>{escape(link)}</link>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{escape(guid)}</guid>')
    parts.append(f"<pubDate>{DATE}</pubDate>")
    return "<item>" + "".join(parts) + "</item>"


def _summary(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def _files(out: Path) -> dict[str, str]:
    """Exported posts: title -> body."""
    found = {}
    for path in out.iterdir():
        post = parse(path.read_text(encoding="utf-8"))
        assert post.updated is None, f"{path.name} was overwritten: {post.title}"
        assert post.title not in found, f"two files for {post.title}"
        found[post.title] = post.body
    return found


@pytest.mark.parametrize(
    "shared",
    [
        pytest.param({"link": HOME}, id="one-link-no-guid"),
        pytest.param({"link": None, "guid": "urn:same"}, id="one-guid-no-link"),
    ],
)
def test_stories_on_one_shared_key_are_each_a_post_and_file(
    tmp_path: Path, local_server: LocalServer, shared: dict[str, str | None]
) -> None:
    stories = [(f"第{i}条新闻", f"<p>正文 {i}</p>") for i in range(3)]
    feed = EtagFeed(rss_document("".join(_item(t, b, **shared) for t, b in stories)))
    local_server.route("/feed.xml", feed)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feeds_yaml({("新媒体", "例子网", "新闻"): local_server.url("/feed.xml")}), encoding="utf-8"
    )
    db, out = f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "posts"

    def fetch() -> str:
        args = ("fetch", "--config", str(config), "--export", str(out))
        return _summary(aggregator(*args, db=db, cwd=tmp_path).stdout)

    assert fetch() == "3 new, 0 duplicate, 0 updated, 0 failed (1 feeds)"
    # The publisher adds a story on the same key, as the top item.
    stories.insert(0, ("新的一条", "<p>新正文</p>"))
    feed.body = rss_document("".join(_item(t, b, **shared) for t, b in stories)).encode()
    assert fetch() == "1 new, 0 duplicate, 0 updated, 0 failed (1 feeds)"
    # ... and then lists only its newest story, on the same key again.
    stories.insert(0, ("最新的一条", "<p>最新正文</p>"))
    feed.body = rss_document(_item(*stories[0], **shared)).encode()
    assert fetch() == "1 new, 0 duplicate, 0 updated, 0 failed (1 feeds)"
    files = _files(out)
    assert sorted(files) == sorted(t for t, _ in stories)
    for title, body in stories:
        assert body in files[title]


def test_a_collision_with_an_edited_post_fails_no_feed_of_the_pass(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """Feed A stores a story and edits it; feed B then carries the first
    version, in the same pass as feed C's new story.  On main that was
    ``UNIQUE constraint failed: posts.slug`` for B (on every pass)."""
    story = ("莫斯科强调其立场", "<p>初稿</p>")
    a = EtagFeed(rss_document(_item(*story, link=f"{HOME}a/1", guid="a-1")))
    local_server.route("/a.xml", a)
    local_server.route(
        "/b.xml", EtagFeed(rss_document(_item(*story, link=f"{HOME}b/1", guid="b-1")))
    )
    local_server.route(
        "/c.xml", EtagFeed(rss_document(_item("别的新闻", "<p>别的正文</p>", link=f"{HOME}c/1")))
    )
    config = tmp_path / "feeds.yaml"
    db, out = f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "posts"

    def fetch(*names: str) -> str:
        urls = {("新媒体", f"媒体{n}", "新闻"): local_server.url(f"/{n}.xml") for n in names}
        config.write_text(feeds_yaml(urls), encoding="utf-8")
        args = ("fetch", "--config", str(config), "--export", str(out))
        return _summary(aggregator(*args, db=db, cwd=tmp_path).stdout)

    assert fetch("a") == "1 new, 0 duplicate, 0 updated, 0 failed (1 feeds)"
    a.body = rss_document(_item(story[0], "<p>改稿</p>", link=f"{HOME}a/1", guid="a-1")).encode()
    assert fetch("a") == "0 new, 0 duplicate, 1 updated, 0 failed (1 feeds)"
    for _ in range(2):  # and again: B's stale copy never reverts A's edit
        assert fetch("a", "b", "c").endswith(" 0 updated, 0 failed (3 feeds)")
    posts = {p.name: parse(p.read_text(encoding="utf-8")) for p in out.iterdir()}
    assert sorted((p.title, p.body) for p in posts.values()) == [
        ("别的新闻", "<p>别的正文</p>"),
        (story[0], "<p>改稿</p>"),
    ]
