"""`aggregator opml export|import`: feed lists to and from other readers, losslessly for ours."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from lxml import etree
from paths import REPO

from aggregator import cli
from aggregator.config.feeds import FeedSpec, load_config
from aggregator.config.opml import NAMESPACE, OpmlError, parse_opml

DATA = Path(__file__).parent / "data"

#: Every feed setting OPML has no place for, so the round trip has to carry it.
RICH_CONFIG = """\
# a commented config
defaults:
  group: 新媒体
  interval: 15m
  rsshub_base: http://127.0.0.1:1200
feeds:
  - url: https://chinese.aljazeera.net/feed
    outlet: Aljazeera 半岛网
    section: 新闻
    interval: 30m
    full_text:
      selector: .article-content
      remove: [.ad, .related]
  - rsshub: /guancha/headline
    outlet: 观察者网
    section: 头条
  - rsshub: /zaobao/realtime/world
    rsshub_base: https://rsshub.example.com/
    outlet: 联合早报
    section: 国际
    group: 海外
    enabled: false
    placeholder_image: https://example.com/placeholder.jpg
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


@pytest.fixture
def rich_config(tmp_path: Path) -> Path:
    path = tmp_path / "rich.yaml"
    path.write_text(RICH_CONFIG, encoding="utf-8")
    return path


def test_export_import_export_is_lossless(rich_config: Path, tmp_path: Path) -> None:
    first = run("opml", "export", "--config", str(rich_config))
    assert first.exit_code == 0, first.output
    opml_file = tmp_path / "feeds.opml"
    opml_file.write_bytes(first.stdout_bytes)
    empty = tmp_path / "empty.yaml"
    empty.write_text("feeds: []\n", encoding="utf-8")

    imported = run("opml", "import", str(opml_file), "--config", str(empty))
    again = run("opml", "export", "--config", str(empty))

    assert imported.exit_code == 0, imported.output
    assert imported.stdout.endswith("3 added, 0 already there, 0 skipped\n")
    assert again.stdout_bytes == first.stdout_bytes
    # Not just the same OPML: the same feeds, every setting included.
    assert load_config(empty).feeds == load_config(rich_config).feeds


#: One feed with every setting away from its built-in default, under
#: defaults that carry rules and referers of their own (which add up and
#: merge with the feed's, so they must not be written twice on import).
EVERY_SETTING = """\
defaults:
  group: 新媒体
  block:
    - title: 广告
  image_referers:
    img.example.com: origin
feeds:
  - url: https://example.com/feed.xml
    outlet: Example
    section: 新闻
    interval: 45m
    enabled: false
    full_text:
      selector: article
      remove: [.ad]
    placeholder_image: https://example.com/p.jpg
    timezone: Asia/Shanghai
    date_offset: -8h
    disable_after: 3d
    identity: link
    keep:
      - title: 科技
    block:
      - link: /sponsored/
        author: 小编
    allow_private_networks: true
    images: archive
    max_image_bytes: 1048576
    image_referers:
      cdn.example.com: https://example.com/
"""


def test_every_feed_setting_survives_export_and_import(tmp_path: Path) -> None:
    source = tmp_path / "every.yaml"
    source.write_text(EVERY_SETTING, encoding="utf-8")
    (feed,) = load_config(source).feeds
    # The fixture must really exercise every setting FeedSpec has: a new
    # setting fails here until it is added above (and so carried by OPML).
    untouched = [
        f.name
        for f in dataclasses.fields(FeedSpec)
        if f.name not in {"url", "outlet", "section", "group", "rsshub_route", "line"}
        and getattr(feed, f.name) == getattr(FeedSpec(feed.url, "-", "-", "-"), f.name)
    ]
    assert untouched == []

    exported = run("opml", "export", "--config", str(source))
    opml_file = tmp_path / "feeds.opml"
    opml_file.write_bytes(exported.stdout_bytes)
    for defaults in ("", "defaults:\n  interval: 2h\n  identity: title\n"):
        target = tmp_path / "target.yaml"
        target.write_text(f"{defaults}feeds: []\n", encoding="utf-8")
        imported = run("opml", "import", str(opml_file), "--config", str(target))
        assert imported.exit_code == 0 and "1 added" in imported.stdout, imported.output
        (copy,) = load_config(target).feeds
        assert copy == feed, defaults
    # Into a file with the same defaults: the inherited rule is not repeated.
    target.write_text(EVERY_SETTING.split("feeds:")[0] + "feeds: []\n", encoding="utf-8")
    run("opml", "import", str(opml_file), "--config", str(target))
    (copy,) = load_config(target).feeds
    assert copy == feed
    assert target.read_text(encoding="utf-8").count("广告") == 1


def test_an_unknown_setting_skips_the_feed_with_the_reason(tmp_path: Path) -> None:
    opml = (
        f'<opml version="2.0" xmlns:aggregator="{NAMESPACE}"><body>'
        '<outline text="X" xmlUrl="https://example.com/x.xml" aggregator:fromTheFuture="1"/>'
        "</body></opml>"
    )
    (feed,) = parse_opml(opml.encode())
    assert feed.problem is not None and "fromTheFuture" in feed.problem


def test_export_nests_group_then_section_and_names_the_category(rich_config: Path) -> None:
    root = etree.fromstring(run("opml", "export", "--config", str(rich_config)).stdout_bytes)
    assert root.get("version") == "2.0"
    (headline,) = root.xpath("//outline[@xmlUrl='http://127.0.0.1:1200/guancha/headline']")
    folders = [o.get("text") for o in headline.iterancestors("outline")]
    assert folders == ["头条", "新媒体"]
    assert headline.get("type") == "rss"
    assert headline.get("text") == headline.get("title") == "观察者网"
    assert headline.get("category") == "/新媒体/头条"
    assert headline.get(f"{{{NAMESPACE}}}rsshub") == "/guancha/headline"
    # Groups, then sections, in the order they first appear in the file.
    top = [o.get("text") for o in root.find("body")]
    assert top == ["新媒体", "海外"]


def test_a_miniflux_export_is_imported_into_the_folder_as_section(
    tmp_path: Path,
) -> None:
    config = tmp_path / "feeds.yaml"
    original = (REPO / "feeds.yaml").read_bytes()
    config.write_bytes(original)

    result = run("opml", "import", str(DATA / "miniflux.opml"), "--config", str(config))

    assert result.exit_code == 0, result.output
    now = config.read_bytes()
    assert now.startswith(original)
    assert now[len(original) :].decode() == (
        "  - url: https://www.zaobao.com.sg/rss/realtime/world\n"
        "    outlet: 联合早报 - 国际\n"
        "    section: 国际\n"
        "  - url: https://feeds.bbci.co.uk/zhongwen/simp/rss.xml\n"
        "    outlet: BBC News 中文\n"
        "    section: 国际\n"
    )
    assert load_config(config).feeds[-1].categories == ("新媒体", "BBC News 中文", "国际")
    assert "already there: Aljazeera 半岛网 (https://chinese.aljazeera.net/feed)" in result.stdout
    assert f"already in {config.resolve()}:23 as Aljazeera 半岛网" in result.stdout
    assert result.stdout.endswith("2 added, 1 already there, 0 skipped\n")


def test_importing_twice_adds_nothing_the_second_time(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("defaults: {group: 新媒体}\nfeeds: []\n", encoding="utf-8")
    run("opml", "import", str(DATA / "miniflux.opml"), "--config", str(config))
    after_first = config.read_bytes()

    second = run("opml", "import", str(DATA / "miniflux.opml"), "--config", str(config))

    assert second.stdout.endswith("0 added, 3 already there, 0 skipped\n")
    assert config.read_bytes() == after_first


def test_other_readers_layouts_and_bad_entries(tmp_path: Path) -> None:
    opml = tmp_path / "reader.opml"
    opml.write_text(
        """<?xml version="1.0"?>
<opml version="1.0"><head/><body>
  <outline type="rss" text="顶层" xmlUrl="https://a.example/rss" category="/科技/数码, /其他"/>
  <outline type="rss" title="只有标题" xmlUrl="https://b.example/rss"/>
  <outline text="Folder"><outline text="Sub">
    <outline type="rss" text="深层" xmlUrl="https://c.example/rss"/>
  </outline></outline>
  <outline text="Again"><outline type="rss" text="重复" xmlUrl="https://A.example:443/rss"/></outline>
  <outline type="rss" text="坏的" xmlUrl="feed://d.example/rss"/>
</body></opml>""",
        encoding="utf-8",
    )
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")

    result = run("opml", "import", str(opml), "--config", str(config))

    assert result.exit_code == 1  # one feed could not be imported; the others were
    assert f"skipped {opml}:9: feed://d.example/rss: url: must be an http(s) URL" in result.stderr
    assert "listed earlier in this file as 顶层" in result.stdout
    feeds = {f.url: f.categories for f in load_config(config).feeds}
    assert feeds == {
        "https://a.example/rss": ("科技", "顶层", "数码"),  # category attribute
        "https://b.example/rss": ("新媒体", "只有标题", "新闻"),  # no folder: fallbacks
        "https://c.example/rss": ("Folder", "深层", "Sub"),  # outermost, innermost
    }


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">]>'
            b'<opml version="2.0"><body><outline text="&a;" xmlUrl="https://a.example/"/>'
            b"</body></opml>",
            "declares a DOCTYPE or entities",
        ),
        (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE opml SYSTEM "file:///etc/passwd">'
            '<opml version="2.0"><body/></opml>'.encode("utf-16"),
            "declares a DOCTYPE",
        ),
        (b"<opml><body><outline></body></opml>", "not well-formed XML"),
        (b"<rss version='2.0'><channel/></rss>", "the root element is <rss>, not <opml>"),
    ],
)
def test_hostile_or_broken_opml_is_refused_and_nothing_written(
    document: bytes, message: str, tmp_path: Path
) -> None:
    with pytest.raises(OpmlError, match=message):
        parse_opml(document, source="x.opml")
    opml = tmp_path / "x.opml"
    opml.write_bytes(document)
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")

    result = run("opml", "import", str(opml), "--config", str(config))

    assert result.exit_code == 1 and message in result.stderr
    assert config.read_text(encoding="utf-8") == "feeds: []\n"
