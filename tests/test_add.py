"""`aggregator add URL`: find the feed behind a page, check it, append it to feeds.yaml.

Every test serves real HTTP from 127.0.0.1 and edits a real copy of the
shipped, commented feeds.yaml; "the file is untouched" is checked byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from feedbuild import rss_document
from localserver import LocalServer
from paths import REPO
from support_proc import aggregator

from aggregator import cli
from aggregator.config.feeds import load_config
from aggregator.service.discover import COMMON_PATHS, find_feed_links

RSS = {"Content-Type": "application/rss+xml; charset=utf-8"}
HTML = {"Content-Type": "text/html; charset=utf-8"}


def rss(title: str) -> str:
    return rss_document(
        "<item><title>一条新闻</title><link>https://news.example.com/1</link></item>"
    ).replace("<title>Test channel</title>", f"<title>{title}</title>", 1)


ATOM = (
    '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
    "<title>示例网 评论</title><id>urn:x</id><updated>2024-01-01T00:00:00Z</updated>"
    "<entry><title>评论一</title><id>urn:x:1</id><updated>2024-01-01T00:00:00Z</updated>"
    "</entry></feed>"
)


def page(*links: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>示例网</title>"
        + "".join(links)
        + "</head><body><p>首页</p></body></html>"
    )


@pytest.fixture
def feeds_yaml(tmp_path: Path) -> Path:
    """A copy of the shipped feeds.yaml: comments, alignment, two feeds."""
    path = tmp_path / "feeds.yaml"
    path.write_bytes((REPO / "feeds.yaml").read_bytes())
    return path


def add(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, ["add", *args], input=stdin, catch_exceptions=False)


def appended(path: Path, original: bytes) -> str:
    """The text added to ``path``; fails if any original byte changed."""
    now = path.read_bytes()
    assert now.startswith(original), "the existing file was changed, not appended to"
    return now[len(original) :].decode("utf-8")


# --------------------------------------------------------------------------
# Finding feeds in a page (pure)


def test_alternate_links_are_found_resolved_and_deduplicated() -> None:
    html = page(
        '<link rel="alternate" type="application/rss+xml" title="  全部\n新闻 " href="feed.xml">',
        '<LINK REL="Alternate Feed" TYPE="application/atom+xml; charset=utf-8" href="/atom">',
        '<link rel="alternate" type="application/rss+xml" href="/news/feed.xml#top">',  # dup
        '<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/1">',
        '<link rel="alternate" hreflang="en" href="/en/">',
        '<link rel="stylesheet" type="application/rss+xml" href="/not-a-feed">',
        '<link rel="alternate" type="application/feed+json" href="javascript:alert(1)">',
        '<link rel="alternate" type="application/feed+json" href="https://cdn.example.net/f.json">',
    )
    found = find_feed_links(html.encode(), "https://news.example.com/news/index.html")
    assert [(c.url, c.title, c.media_type) for c in found] == [
        ("https://news.example.com/news/feed.xml", "全部 新闻", "application/rss+xml"),
        ("https://news.example.com/atom", None, "application/atom+xml"),
        ("https://cdn.example.net/f.json", None, "application/feed+json"),
    ]


def test_a_base_element_anchors_relative_links() -> None:
    html = (
        '<html><head><base href="https://cdn.example.com/site/">'
        "<link rel=alternate type=application/rss+xml href=rss></head></html>"
    )
    (found,) = find_feed_links(html, "https://news.example.com/")
    assert found.url == "https://cdn.example.com/site/rss"


# --------------------------------------------------------------------------
# The command


def test_a_page_with_two_feeds_adds_the_one_picked(
    local_server: LocalServer, feeds_yaml: Path
) -> None:
    local_server.route(
        "/",
        body=page(
            '<link rel="alternate" type="application/rss+xml" title="全部" href="/feed.xml">',
            '<link rel="alternate" type="application/atom+xml" title="评论" href="/comments.atom">',
        ),
        headers=HTML,
    )
    local_server.route("/feed.xml", body=rss("示例网"), headers=RSS)
    local_server.route(
        "/comments.atom", body=ATOM, headers={"Content-Type": "application/atom+xml"}
    )
    original = feeds_yaml.read_bytes()

    result = add(local_server.url("/"), "--pick", "2", "--config", str(feeds_yaml))

    assert result.exit_code == 0, result.output
    assert appended(feeds_yaml, original) == (
        f"  - url: {local_server.url('/comments.atom')}\n"
        "    outlet: 示例网 评论\n"  # the feed's own title
        "    section: 新闻\n"  # no defaults.section: the fallback; group comes from defaults
    )
    feed = load_config(feeds_yaml).feeds[-1]
    assert feed.categories == ("新媒体", "示例网 评论", "新闻")
    assert "added 新媒体 / 示例网 评论 / 新闻" in result.stdout
    assert [r.path for r in local_server.requests] == ["/", "/comments.atom"]


def test_several_feeds_in_a_pipe_are_listed_and_nothing_is_added(
    local_server: LocalServer, feeds_yaml: Path
) -> None:
    local_server.route(
        "/",
        body=page(
            '<link rel="alternate" type="application/rss+xml" title="全部" href="/feed.xml">',
            '<link rel="alternate" type="application/atom+xml" title="评论" href="/c.atom">',
        ),
        headers=HTML,
    )
    original = feeds_yaml.read_bytes()

    result = add(local_server.url("/"), "--config", str(feeds_yaml))

    assert result.exit_code == 2
    assert "offers 2 feeds; choose one with --pick N" in result.stderr
    assert f"1. 全部  {local_server.url('/feed.xml')}" in result.stderr
    assert f"2. 评论  {local_server.url('/c.atom')}" in result.stderr
    assert feeds_yaml.read_bytes() == original
    assert [r.path for r in local_server.requests] == ["/"]


def test_on_a_terminal_the_user_is_asked_which_feed(
    local_server: LocalServer, feeds_yaml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_interactive", lambda: True)
    local_server.route(
        "/",
        body=page(
            '<link rel="alternate" type="application/rss+xml" title="全部" href="/feed.xml">',
            '<link rel="alternate" type="application/atom+xml" title="评论" href="/c.atom">',
        ),
        headers=HTML,
    )
    local_server.route("/feed.xml", body=rss("示例网"), headers=RSS)

    result = add(local_server.url("/"), "--config", str(feeds_yaml), stdin="1\n")

    assert result.exit_code == 0, result.output
    assert "1. 全部" in result.stdout and "add which one" in result.stdout
    assert load_config(feeds_yaml).feeds[-1].url == local_server.url("/feed.xml")


def test_a_direct_feed_url_is_added_by_a_real_process(
    local_server: LocalServer, feeds_yaml: Path, tmp_path: Path
) -> None:
    local_server.route("/rss", body=rss("观察者网 - 国际"), headers=RSS)
    original = feeds_yaml.read_bytes()

    aggregator(
        "add",
        local_server.url("/rss"),
        "--outlet",
        "观察者网",
        "--section",
        "国际",
        "--group",
        "时政",
        "--config",
        str(feeds_yaml),
        db="sqlite://",
        cwd=tmp_path,
    )

    assert appended(feeds_yaml, original) == (
        f"  - url: {local_server.url('/rss')}\n"
        "    outlet: 观察者网\n    section: 国际\n    group: 时政\n"
    )
    assert len(local_server.requests) == 1  # discovery's fetch is the check


def test_a_page_without_links_is_probed_at_the_common_paths(
    local_server: LocalServer, feeds_yaml: Path
) -> None:
    local_server.route("/blog/", body=page(), headers=HTML)
    local_server.route("/rss.xml", body=rss("小站"), headers=RSS)
    local_server.route("/feed.xml", body=rss("小站"), headers=RSS)  # the same feed again

    result = add(local_server.url("/blog/"), "--config", str(feeds_yaml))

    assert result.exit_code == 0, result.output
    assert load_config(feeds_yaml).feeds[-1].url == local_server.url("/rss.xml")
    assert {r.path for r in local_server.requests} == {"/blog/", *COMMON_PATHS}


def test_a_guessed_feed_that_is_already_there_says_where_it_came_from(
    local_server: LocalServer, tmp_path: Path
) -> None:
    config = tmp_path / "feeds.yaml"
    local_server.route("/page.html", body=page(), headers=HTML)
    local_server.route("/atom.xml", body=ATOM, headers={"Content-Type": "application/atom+xml"})
    feed = local_server.url("/atom.xml")
    config.write_text(
        f"feeds:\n  - {{url: '{feed}', outlet: A, section: S, group: G}}\n", encoding="utf-8"
    )
    before = config.read_bytes()

    result = add(local_server.url("/page.html"), "--config", str(config))

    assert result.exit_code == 1
    assert f"its feed is {local_server.url('/atom.xml')} (from its common feed path)" in (
        result.output
    )
    assert "is already in" in result.output
    assert config.read_bytes() == before


def test_an_rsshub_url_is_written_as_a_route(local_server: LocalServer, tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"defaults:\n  group: 新媒体\n  rsshub_base: {local_server.url('')}\nfeeds: []\n",
        encoding="utf-8",
    )
    local_server.route("/guancha/world", body=rss("观察者网 - 国际"), headers=RSS)

    result = add(local_server.url("/guancha/world"), "--config", str(config))

    assert result.exit_code == 0, result.output
    assert config.read_text(encoding="utf-8").endswith(
        "feeds:\n- rsshub: /guancha/world\n  outlet: 观察者网 - 国际\n  section: 新闻\n"
    )


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://Chinese.Aljazeera.NET:443/feed#latest",  # same normalised URL
        "http://127.0.0.1:1200/guancha/headline",  # same RSSHub route
    ],
)
def test_a_feed_already_configured_is_refused_without_fetching(
    url: str, local_server: LocalServer, feeds_yaml: Path
) -> None:
    original = feeds_yaml.read_bytes()

    result = add(url, "--config", str(feeds_yaml))

    assert result.exit_code == 1
    assert "is already in" in result.stderr and "nothing was added" in result.stderr
    assert feeds_yaml.read_bytes() == original


def test_a_discovered_feed_already_configured_is_refused(
    local_server: LocalServer, tmp_path: Path
) -> None:
    config = tmp_path / "feeds.yaml"
    feed_url = local_server.url("/feed.xml")
    config.write_text(
        f"feeds:\n  - url: {feed_url}\n    outlet: A\n    section: s\n    group: g\n",
        encoding="utf-8",
    )
    original = config.read_bytes()
    local_server.route(
        "/",
        body=page('<link rel="alternate" type="application/rss+xml" href="/feed.xml">'),
        headers=HTML,
    )

    result = add(local_server.url("/"), "--config", str(config))

    assert result.exit_code == 1
    assert f"{feed_url} is already in {config}:2 (A / s" in result.stderr
    assert config.read_bytes() == original


@pytest.mark.parametrize(
    ("route", "body", "headers", "message"),
    [
        ("/page", page(), HTML, "no feed found for"),
        ("/api", '{"status": "ok"}', {"Content-Type": "application/json"}, "is not a feed"),
        ("/missing", "gone", {}, "HTTP 404"),
    ],
)
def test_something_that_is_not_a_feed_is_refused_and_nothing_written(
    route: str,
    body: str,
    headers: dict[str, str],
    message: str,
    local_server: LocalServer,
    feeds_yaml: Path,
) -> None:
    if route != "/missing":
        local_server.route(route, body=body, headers=headers)
    original = feeds_yaml.read_bytes()

    result = add(local_server.url(route), "--config", str(feeds_yaml))

    assert result.exit_code == 1
    assert message in result.stderr and "nothing was added" in result.stderr
    assert feeds_yaml.read_bytes() == original


def test_a_page_announcing_a_broken_feed_is_refused(
    local_server: LocalServer, feeds_yaml: Path
) -> None:
    local_server.route(
        "/",
        body=page('<link rel="alternate" type="application/rss+xml" href="/feed">'),
        headers=HTML,
    )
    local_server.route("/feed", body=page(), headers=HTML)  # a "feed" that is a web page
    original = feeds_yaml.read_bytes()

    result = add(local_server.url("/"), "--config", str(feeds_yaml))

    assert result.exit_code == 1
    assert f"{local_server.url('/feed')} is not a feed: not a feed: an HTML page" in result.stderr
    assert feeds_yaml.read_bytes() == original


def test_an_outlet_that_would_not_load_is_refused_and_nothing_written(
    local_server: LocalServer, feeds_yaml: Path
) -> None:
    local_server.route("/rss", body=rss("x"), headers=RSS)
    original = feeds_yaml.read_bytes()

    result = add(local_server.url("/rss"), "--outlet", "bad\x07name", "--config", str(feeds_yaml))

    assert result.exit_code == 1
    assert "control character" in result.stderr and "is unchanged" in result.stderr
    assert feeds_yaml.read_bytes() == original
    assert not [p for p in feeds_yaml.parent.iterdir() if p.name.endswith(".tmp")]
