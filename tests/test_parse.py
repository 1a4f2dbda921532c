"""aggregator.parse.parser: real feeds read as feedparser reads them; hostile ones stay harmless."""

from __future__ import annotations

import codecs
import html
import io
import json
import pyexpat
import re
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import feedparser
import pytest
from feedbuild import CORPUS, corpus_rows, require_corpus, rss_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.parse.parser import Entry, FeedParseError, ParsedFeed, parse_feed

FEED_URL = "https://feeds.example.org/dir/feed.xml"

#: Files where we deliberately read more than plain feedparser does.
BETTER_THAN_FEEDPARSER = {
    # UTF-16BE with neither BOM nor declaration: we sniff the 00 3C byte
    # pattern; feedparser only knows "<?xm" and reads it as UTF-8.
    "simplepie__feed-utf16be.xml": 1,
}
#: Files whose dates we read where feedparser misreads or drops them
#: (aggregator.policy.dates; the values are checked in test_dates.py).
DATES_BETTER_THAN_FEEDPARSER = {
    "nnw__kc0011.rss": "2020/1/10 14:33:00: feedparser says 1 December 2020",
    "feedjira__InvalidDateFormat.xml": "1518478934 (Unix time): feedparser says 3 July 2015",
    "chardet-gb2312__acnnewswire.net.xml": "+0900 glued to the time: feedparser gives none",
    "rssparser__uolNoticias.rss": "Portuguese month names: feedparser gives none",
    "feedrs__rss_2.0_ilmessaggero.xml": "Italian month names: feedparser gives none",
    "rssparserkt__feed-test-hindi-channel-image.xml": "'Friday, January 29, 2021 04:42 PM'",
}
#: Files that are not feeds at all, with the reason.
NOT_FEEDS = {"nnw__ScriptingNews.json": "RSS serialised as JSON, not a JSON Feed"}

ROWS = corpus_rows()
CORPUS_PARAMS = [pytest.param(row, id=row["file"]) for row in ROWS] or [
    pytest.param(None, id="corpus-missing")
]
XML_PARAMS = [
    p for p in CORPUS_PARAMS if p.values[0] is None or not p.values[0]["file"].endswith(".json")
]


@cache
def ours(name: str) -> ParsedFeed | FeedParseError:
    try:
        return parse_feed((CORPUS / name).read_bytes(), url=f"https://corpus.example/{name}")
    except FeedParseError as exc:
        return exc


@cache
def reference(name: str) -> Any:
    """Plain feedparser, as MANIFEST.tsv was made: default options, no headers."""
    return feedparser.parse((CORPUS / name).read_bytes())


#: What a post header may not contain (aggregator.hexo.post's rule).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")
#: The same, minus the whitespace that collapsing turns into spaces.
_NON_SPACE_CONTROL = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]"
)


def reference_text(value: Any, content_type: str) -> str:
    """feedparser's text construct as one plain line, computed independently of our code."""
    if not isinstance(value, str):
        return ""
    if "html" in content_type:
        value = re.sub(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", "", value, flags=re.S | re.I)
        value = html.unescape(re.sub(r"<[A-Za-z/!?][^<>]*>", "", value))
    return " ".join(_NON_SPACE_CONTROL.sub("", value).split())


def utc(struct: Any) -> datetime | None:
    return datetime(*struct[:6], tzinfo=UTC) if struct else None


def assert_well_formed_entry(entry: Entry) -> None:
    assert entry.title == " ".join(entry.title.split())
    assert not _CONTROL.search(entry.title)
    for stamp in (entry.published, entry.updated):
        assert stamp is None or stamp.utcoffset() == UTC.utcoffset(None)
    assert entry.link is None or entry.link.startswith(("http://", "https://"))
    assert all(url.startswith(("http://", "https://")) for url in entry.images)
    assert entry.base_url and "://" in entry.base_url
    json.dumps(entry.raw)  # storable as is


# --------------------------------------------------------------------------
# The corpus


@pytest.mark.parametrize("row", CORPUS_PARAMS)
def test_corpus_file_parses_or_is_rejected_as_not_a_feed(row: dict[str, str] | None) -> None:
    require_corpus()
    assert row is not None
    name = row["file"]
    result = ours(name)
    if name in NOT_FEEDS:
        assert isinstance(result, FeedParseError), NOT_FEEDS[name]
        assert "not a JSON Feed" in str(result)
        return
    assert isinstance(result, ParsedFeed), f"{name}: {result}"
    if name.endswith(".json"):
        items = json.loads((CORPUS / name).read_bytes())["items"]
        assert f"JSON items={len(items)}" in row["notes"]
        assert len(result.entries) == len(items)
        assert result.version in ("json10", "json11")
    else:
        expected = BETTER_THAN_FEEDPARSER.get(name, int(row["entries"]))
        assert len(result.entries) == expected
    for entry in result.entries:
        assert_well_formed_entry(entry)


@pytest.mark.parametrize("row", XML_PARAMS)
def test_corpus_titles_and_dates_agree_with_feedparser(row: dict[str, str] | None) -> None:
    require_corpus()
    assert row is not None
    name = row["file"]
    if name in BETTER_THAN_FEEDPARSER:
        pytest.skip("we read this file where feedparser cannot (see BETTER_THAN_FEEDPARSER)")
    result = ours(name)
    expected = reference(name)
    assert isinstance(result, ParsedFeed)
    assert result.version == expected.version
    assert result.encoding == expected.encoding == row["fp_encoding"]
    assert (result.bozo_reason is not None) == bool(expected.bozo)
    feed_title = reference_text(
        expected.feed.get("title"), expected.feed.get("title_detail", {}).get("type", "")
    )
    assert (result.title or "") == feed_title
    for mine, theirs in zip(result.entries, expected.entries, strict=True):
        title_type = theirs.get("title_detail", {}).get("type", "text/plain")
        assert mine.title == reference_text(theirs.get("title"), title_type)
        if name not in DATES_BETTER_THAN_FEEDPARSER:
            assert mine.published == utc(theirs.get("published_parsed"))
            assert mine.updated == utc(dict.get(theirs, "updated_parsed"))
        assert mine.guid == ((theirs.get("id") or "").strip() or None)


CHINESE_DECLARED = [
    pytest.param(row["file"], id=row["file"])
    for row in ROWS
    if row["encoding"].lower() in ("gb2312", "big5") and int(row["entries"]) > 0
] + [
    pytest.param(name, id=name)
    for name in ("feeder__rss_geekpark.xml", "rss2email__bbc-chinese_feed.atom")
]
_CJK = re.compile("[\u3400-\u9fff]")
_MOJIBAKE = re.compile("[\u0080-\u00ff\ufffd]")


@pytest.mark.parametrize("name", CHINESE_DECLARED or [pytest.param("", id="corpus-missing")])
def test_chinese_feeds_decode_to_readable_text(name: str) -> None:
    require_corpus()
    result = ours(name)
    assert isinstance(result, ParsedFeed)
    titles = [result.title or "", *(e.title for e in result.entries)]
    assert not any(_MOJIBAKE.search(t) for t in titles), titles
    text = " ".join(titles + [e.summary_html + e.content_html for e in result.entries])
    assert _CJK.search(text)
    if "gb2312" in name:
        assert result.encoding == "gb18030"  # the superset, as feedparser does


@pytest.mark.parametrize(
    ("name", "charset", "title"),
    [
        ("feedparser__chardet_gb2312.xml", "gb2312", "不归移民漫画系列：专业工作"),
        ("feedparser__chardet_big5.xml", "big5", None),
    ],
)
def test_http_charset_rescues_undeclared_chinese(
    name: str, charset: str, title: str | None
) -> None:
    """Without a declaration feedparser guesses windows-1252; the HTTP charset fixes it."""
    require_corpus()
    raw = (CORPUS / name).read_bytes()
    guessed = parse_feed(raw, url=FEED_URL)
    assert guessed.encoding == "windows-1252"
    header = f'text/xml; charset="{charset.upper()}"'
    for headers in ({"charset": charset}, {"content_type": header}):
        fixed = parse_feed(raw, url=FEED_URL, **headers)
        texts = [fixed.title or "", *(e.title for e in fixed.entries)]
        assert _CJK.search(" ".join(texts)) and not any(_MOJIBAKE.search(t) for t in texts)
        if title:
            assert fixed.entries[0].title == title


def test_http_charset_beats_the_xml_declaration() -> None:
    document = rss_document("<item><title>中文标题</title></item>", encoding="iso-8859-1")
    raw = document.encode("gb2312")
    assert parse_feed(raw, url=FEED_URL).entries[0].title != "中文标题"
    parsed = parse_feed(raw, url=FEED_URL, content_type="application/rss+xml; charset=gb2312")
    assert parsed.entries[0].title == "中文标题"
    assert parsed.encoding == "gb18030"


def test_bom_beats_the_xml_declaration() -> None:
    document = rss_document("<item><title>Grüße</title></item>", encoding="iso-8859-1")
    raw = codecs.BOM_UTF16_LE + document.encode("utf-16-le")
    parsed = parse_feed(raw, url=FEED_URL)
    assert parsed.entries[0].title == "Grüße"
    assert parsed.encoding == "utf-16le"


@pytest.mark.parametrize(
    "name",
    [
        "lemon24__relative.atom",
        "lemon24__relative.rss",
        "feedrs__atom_xml_base.xml",
        "feedrs__rss_2.0_relurl_1.xml",
        "kdesyndication__atom_tbray.org_nested_xmlbase.xml",
        "nodefeedparser__rss-with-relative-urls.xml",
        "rssparser__gulp-atom.atom",
    ],
)
def test_relative_links_and_xml_base_become_absolute(name: str) -> None:
    require_corpus()
    result = parse_feed((CORPUS / name).read_bytes(), url=FEED_URL)
    assert result.entries
    for entry in result.entries:
        assert entry.link and entry.link.startswith(("http://", "https://")), entry.link
        assert entry.base_url and entry.base_url.startswith(("http://", "https://"))


def test_xml_base_and_feed_url_are_the_bases_they_should_be() -> None:
    require_corpus()
    numist = parse_feed((CORPUS / "feedrs__atom_xml_base.xml").read_bytes(), url=FEED_URL)
    assert numist.entries[0].base_url == "https://numi.st/post/2022/travel-uke/"
    assert '<img src="IMG_1232.jpeg"' in numist.entries[0].content_html  # as sent
    relative = parse_feed((CORPUS / "lemon24__relative.rss").read_bytes(), url=FEED_URL)
    assert relative.entries[0].link == "https://feeds.example.org/dir/blog/post/1"
    inherited = parse_feed(
        (CORPUS / "feedparser__entry_content_xml_base_inherit_3.xml").read_bytes(), url=FEED_URL
    )
    assert inherited.entries[0].base_url == "http://example.com/test/"


# --------------------------------------------------------------------------
# Hostile documents: entity bombs, external entities, filenames


@contextmanager
def bounded(seconds: float = 2.0, megabytes: float = 16.0) -> Iterator[None]:
    """Fail unless the block finishes in time and within memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    assert peak < megabytes * 1e6, f"peaked at {peak / 1e6:.1f} MB"


_LOLS = ['<!ENTITY lol0 "lol">'] + [
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
]
_DECLARATION = '<?xml version="1.0"?>'
BILLION_LAUGHS = {
    "one-per-line": _DECLARATION + "\n<!DOCTYPE rss [\n" + "\n".join(_LOLS) + "\n]>\n",
    # feedparser's own DOCTYPE clean-up only sees a DOCTYPE and declarations
    # at line starts, so this one reaches expat untouched (expat's
    # amplification limit stops it, after ~2 s and ~50 MB)
    "same-line-as-xml-declaration": _DECLARATION + "<!DOCTYPE rss [" + "".join(_LOLS) + "]>",
    "indented": _DECLARATION
    + "\n<!DOCTYPE rss [\n"
    + "\n".join("  " + d for d in _LOLS)
    + "\n]>\n",
}


def _bomb_feed(prolog: str, body: str, *, broken: bool = False) -> bytes:
    tail = "<broken" if broken else ""  # forces feedparser's lenient fallback parser
    return (
        f'{prolog}<rss version="2.0"><channel><title>c</title>'
        f"<item><title>{body}</title><description>{body}</description>{tail}</item>"
        "</channel></rss>"
    ).encode()


def _doctype(*declarations: str) -> str:
    return _DECLARATION + "\n<!DOCTYPE rss [\n" + "\n".join(declarations) + "\n]>\n"


def test_we_rely_on_an_expat_with_amplification_limits() -> None:
    """libexpat >= 2.4.0 caps entity amplification: our second line of defence."""
    assert pyexpat.version_info >= (2, 4, 0), pyexpat.EXPAT_VERSION


@pytest.mark.parametrize("broken", [False, True], ids=["strict-parser", "lenient-parser"])
@pytest.mark.parametrize("variant", list(BILLION_LAUGHS))
def test_billion_laughs_is_not_expanded(variant: str, broken: bool) -> None:
    document = _bomb_feed(BILLION_LAUGHS[variant], "&lol9;", broken=broken)
    with bounded():
        parsed = parse_feed(document, url=FEED_URL)
    assert "lollol" not in repr(parsed)


def test_plain_feedparser_expands_a_quadratic_entity_bomb() -> None:
    """Why we strip declarations: feedparser's lenient parser expands its "safe" entities."""
    document = _bomb_feed(_doctype('<!ENTITY a "' + "x" * 1000 + '">'), "&a;" * 1000, broken=True)
    result = feedparser.parse(io.BytesIO(document), sanitize_html=False)
    assert len(result.entries[0].title) > 100 * len(document)


@pytest.mark.parametrize("broken", [False, True], ids=["strict-parser", "lenient-parser"])
def test_quadratic_entity_bomb_is_not_expanded(broken: bool) -> None:
    doctype = _doctype('<!ENTITY a "' + "x" * 10_000 + '">')
    document = _bomb_feed(doctype, "&a;" * 5_000, broken=broken)
    with bounded():
        parsed = parse_feed(document, url=FEED_URL)
    assert "x" * 100 not in repr(parsed)


def test_single_character_entities_still_work() -> None:
    doctype = _doctype('<!ENTITY nbsp "&#160;">', '<!ENTITY mdash "&#x2014;">')
    parsed = parse_feed(_bomb_feed(doctype, "a&nbsp;b&mdash;c"), url=FEED_URL)
    assert parsed.entries[0].title == "a b—c"
    assert parsed.bozo_reason is None


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-XXE-MARKER", encoding="utf-8")
    return secret


def _xxe_documents(secret: Path) -> dict[str, bytes]:
    uri = secret.as_uri()
    general = f'<!ENTITY xxe SYSTEM "{uri}">'
    return {
        "general-entity": _bomb_feed(_doctype(general), "a&xxe;b"),
        "general-entity-one-line": _bomb_feed(
            f"{_DECLARATION}<!DOCTYPE rss [{general}]>", "a&xxe;b"
        ),
        "general-entity-lenient": _bomb_feed(_doctype(general), "a&xxe;b", broken=True),
        "parameter-entity": _bomb_feed(_doctype(f'<!ENTITY % p SYSTEM "{uri}">', "%p;"), "x"),
        "external-dtd": _bomb_feed(f'{_DECLARATION}\n<!DOCTYPE rss SYSTEM "{uri}">\n', "x"),
        "public-dtd": _bomb_feed(f'{_DECLARATION}\n<!DOCTYPE rss PUBLIC "-//X//Y" "{uri}">\n', "x"),
    }


def test_external_entities_are_never_resolved(secret_file: Path) -> None:
    for name, document in _xxe_documents(secret_file).items():
        try:
            parsed: object = parse_feed(document, url=FEED_URL)
        except FeedParseError as exc:
            parsed = exc
        assert "TOPSECRET" not in repr(parsed), name
        if isinstance(parsed, ParsedFeed):
            assert all("TOPSECRET" not in json.dumps(e.raw) for e in parsed.entries), name


def test_a_body_that_names_a_local_file_is_not_read(tmp_path: Path) -> None:
    """feedparser.parse(bytes) open()s a path; we hand it the bytes themselves."""
    local = tmp_path / "local-feed.xml"
    local.write_text(rss_document("<item><title>LOCAL-ONLY</title></item>"), encoding="utf-8")
    assert feedparser.parse(str(local).encode()).entries[0].title == "LOCAL-ONLY"  # the hazard
    with pytest.raises(FeedParseError, match="neither XML nor JSON"):
        parse_feed(str(local).encode(), url=FEED_URL)


# --------------------------------------------------------------------------
# Not feeds


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b" \r\n\t ", "empty"),
        (b"\xef\xbb\xbf  ", "empty"),
        (b"<!DOCTYPE html><html><head><title>Hi</title></head><body>x</body></html>", "HTML page"),
        (b"<html><body><p>hello</p></body></html>", "HTML page"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
        (b"just some words", "neither XML nor JSON"),
        (b"<?xml version='1.0'?><!-- c --><config><item/></config>", "root element is <config>"),
        (b"<items><item><title>t</title></item></items>", "root element is <items>"),
        (b"[1, 2, 3]", "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "title": "t"}', "not a JSON Feed"),
        (b'{"rss": {"channel": {}}}', "not a JSON Feed"),
        (b'{"items": [', "does not parse"),
        (b"{" * 100_000, "does not parse"),
    ],
)
def test_non_feeds_raise_feed_parse_error_saying_what_they_were(body: bytes, says: str) -> None:
    with pytest.raises(FeedParseError, match=re.escape(says)):
        parse_feed(body, url=FEED_URL)


@pytest.mark.parametrize(
    "body",
    [
        # found by fuzzing: plain feedparser raises on both
        b'<?xml version="1.0" encoding="ut\xe9f-8"?><rss version="2.0"><channel/></rss>',
        b'<?xml version="1.0" encoding="utf\x00-8"?><rss version="2.0"><channel/></rss>',
    ],
)
def test_feedparser_crashes_become_feed_parse_errors(body: bytes) -> None:
    with pytest.raises(FeedParseError, match="not a readable feed"):
        parse_feed(body, url=FEED_URL)


def test_json_content_type_with_xml_body_is_read_as_xml() -> None:
    document = rss_document("<item><title>t</title></item>").encode()
    assert parse_feed(document, url=FEED_URL, content_type="application/json").version == "rss20"


# --------------------------------------------------------------------------
# RSS and Atom details


def test_rss_item_fields() -> None:
    item = """<item>
      <title>  &lt;b&gt;Bold&lt;/b&gt; &amp;amp;\tmore  </title>
      <link>/posts/1</link><guid isPermaLink="false">  id-1  </guid>
      <author>reporter@example.com (A Reporter)</author>
      <pubDate>Tue, 01 Mar 2022 21:31:34 +0800</pubDate>
      <description>plain &amp; simple</description>
      <content:encoded><![CDATA[<p>Full <img src="/i.jpg"></p>]]></content:encoded>
      <enclosure url="/e.jpg" type="image/jpeg" length="1"/>
      <enclosure url="/e.mp3" type="audio/mpeg" length="1"/>
      <media:content url="/v.mp4" type="video/mp4"/>
      <media:content url="/m.png" medium="image"/>
      <media:thumbnail url="thumb.jpg"/>
    </item>"""
    (entry,) = parse_feed(rss_document(item).encode(), url=FEED_URL).entries
    assert entry.title == "Bold & more"
    assert entry.link == "https://feeds.example.org/posts/1"
    assert entry.guid == "id-1"
    assert entry.author == "reporter@example.com (A Reporter)"
    assert entry.published == datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)
    assert entry.updated is None  # not feedparser's published-for-updated fallback
    assert entry.content_html == '<p>Full <img src="/i.jpg"></p>'  # as sent
    assert entry.summary_html == "plain & simple"  # RSS description is HTML
    assert entry.base_url == "https://feeds.example.org/posts/1"
    assert entry.images == (
        "https://feeds.example.org/dir/thumb.jpg",
        "https://feeds.example.org/m.png",
        "https://feeds.example.org/e.jpg",
    )
    assert entry.raw["published"] == "Tue, 01 Mar 2022 21:31:34 +0800"
    assert entry.raw["published_parsed"] == "2022-03-01T13:31:34Z"


def test_control_characters_never_reach_a_title() -> None:
    """Only the lenient parser lets them through (they are not XML); they must not survive."""
    document = rss_document("<item><title>a\x01b\x7fc\u2028d\ufeffe\x0bf</title></item>")
    (entry,) = parse_feed(document.encode(), url=FEED_URL).entries
    assert entry.title == "abc de f"


def test_plain_text_summaries_are_escaped_into_html() -> None:
    document = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>f</title><entry><title>t</title>'
        '<summary type="text">Tom &amp; Jerry &lt;3\n\nsecond</summary></entry></feed>'
    )
    (entry,) = parse_feed(document.encode(), url=FEED_URL).entries
    assert entry.summary_html == "<p>Tom &amp; Jerry &lt;3</p>\n<p>second</p>"


def test_atom_entry_with_xml_base_and_xhtml_content() -> None:
    document = b"""<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example/base/">
      <title type="html">Blog &amp;lt;3</title><link href="/"/><id>urn:x</id>
      <generator>Hugo</generator><updated>2024-01-02T03:04:05Z</updated>
      <entry><title type="text">A &lt; B</title><id>urn:e1</id><link href="p/1.html"/>
        <published>2024-01-01T00:00:00+02:00</published><updated>2024-01-02T00:00:00Z</updated>
        <content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div></content>
      </entry></feed>"""
    parsed = parse_feed(document, url=FEED_URL)
    assert parsed.version == "atom10"
    assert parsed.title == "Blog <3"
    assert parsed.link == "https://blog.example/"
    assert parsed.generator == "Hugo"
    (entry,) = parsed.entries
    assert entry.title == "A < B"
    assert entry.link == "https://blog.example/base/p/1.html"
    assert entry.base_url == "https://blog.example/base/"
    assert entry.published == datetime(2023, 12, 31, 22, 0, tzinfo=UTC)
    assert entry.updated == datetime(2024, 1, 2, tzinfo=UTC)
    assert entry.content_html == "<p>x</p>"


def test_unparseable_dates_are_none() -> None:
    document = rss_document("<item><title>t</title><pubDate>sometime soon</pubDate></item>")
    (entry,) = parse_feed(document.encode(), url=FEED_URL).entries
    assert entry.published is None and entry.updated is None


@pytest.mark.parametrize(
    ("channel", "ttl", "period"),
    [
        ("<ttl>20</ttl>", 20, None),
        ("<ttl>soon</ttl>", None, None),
        (
            "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>",
            None,
            1800.0,
        ),
        ("<sy:updatePeriod>weekly</sy:updatePeriod>", None, 604800.0),
        ("<sy:updateFrequency>4</sy:updateFrequency>", None, 21600.0),
        ("<sy:updatePeriod>fortnightly</sy:updatePeriod>", None, None),
    ],
)
def test_feed_schedule_hints(channel: str, ttl: int | None, period: float | None) -> None:
    document = rss_document("", channel_extra=channel).replace(
        "<rss ", '<rss xmlns:sy="http://purl.org/rss/1.0/modules/syndication/" '
    )
    parsed = parse_feed(document.encode(), url=FEED_URL)
    assert (parsed.ttl_minutes, parsed.update_period_seconds) == (ttl, period)


def test_ill_formed_feed_reports_bozo_but_keeps_entries() -> None:
    document = rss_document(
        "<item><title>a & b</title><link>https://x.example/?a=1&b=2</link></item>"
    )
    parsed = parse_feed(document.encode(), url=FEED_URL)
    assert parsed.bozo_reason and "SAXParseException" in parsed.bozo_reason
    assert parsed.entries[0].title == "a & b"


def test_channel_without_items_is_an_empty_feed() -> None:
    parsed = parse_feed(rss_document("").encode(), url=FEED_URL)
    assert parsed.version == "rss20" and parsed.entries == ()
    assert parsed.title == "Test channel" and parsed.link == "https://news.example.com/"


# --------------------------------------------------------------------------
# JSON Feed


def test_json_feed_items() -> None:
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "  JSON\nfeed ",
        "home_page_url": "https://j.example/",
        "authors": [{"name": "Feed Author"}],
        "items": [
            {
                "id": 42,
                "url": "/p/42",
                "title": "<b>not html</b>",
                "content_text": "one & two\n\nthree",
                "summary": "short",
                "image": "img/a.png",
                "banner_image": "https://cdn.j.example/b.png",
                "attachments": [
                    {"url": "/c.jpg", "mime_type": "image/jpeg"},
                    {"url": "/d.mp3", "mime_type": "audio/mpeg"},
                ],
                "date_published": "2024-01-01T12:00:00+02:00",
                "date_modified": "2024-01-02T12:00:00",
            },
            {"id": " s ", "content_html": " <p>h</p> ", "authors": [{"name": "Item Author"}]},
            "not an item",
        ],
    }
    parsed = parse_feed(json.dumps(document).encode(), url="https://j.example/feed.json")
    assert parsed.version == "json11"
    assert parsed.title == "JSON feed"
    assert parsed.link == "https://j.example/"
    first, second = parsed.entries
    assert first.guid == "42"
    assert first.link == "https://j.example/p/42"
    # Plain text by the spec, but a title never keeps tags: it lands in Hexo
    # front matter, which themes may print unescaped (tests/test_hostile.py).
    assert first.title == "not html"
    assert first.content_html == "<p>one &amp; two</p>\n<p>three</p>"
    assert first.summary_html == "short"
    assert first.images == (
        "https://j.example/p/img/a.png",
        "https://cdn.j.example/b.png",
        "https://j.example/c.jpg",
    )
    assert first.published == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert first.updated == datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
    assert first.author == "Feed Author"
    assert first.raw == document["items"][0]
    assert second.guid == "s"
    assert second.content_html == "<p>h</p>"
    assert second.author == "Item Author"
    assert second.title == "" and second.published is None and second.link is None


def test_json_feed_version_1_and_content_type_sniffing() -> None:
    document = b'  {"version": "https://jsonfeed.org/version/1", "title": "t", "items": []}'
    assert parse_feed(document, url=FEED_URL).version == "json10"
    assert parse_feed(document, url=FEED_URL, content_type="application/feed+json").entries == ()


# --------------------------------------------------------------------------
# Never anything but ParsedFeed or FeedParseError

_SMALL_FILES = [row["file"] for row in ROWS if (CORPUS / row["file"]).stat().st_size < 6000]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(_SMALL_FILES or ["-"]),
    cut=st.floats(min_value=0, max_value=1),
    junk=st.binary(max_size=8),
    content_type=st.sampled_from([None, "text/xml", "application/json", "text/html; charset=big5"]),
)
def test_mangled_feeds_never_raise_anything_else(
    name: str, cut: float, junk: bytes, content_type: str | None
) -> None:
    if not _SMALL_FILES:
        pytest.skip(f"corpus not found at {CORPUS}")
    raw = (CORPUS / name).read_bytes()
    at = int(len(raw) * cut)
    for mangled in (raw[:at], raw[:at] + junk + raw[at + len(junk) :]):
        with suppress(FeedParseError):
            parse_feed(mangled, url=FEED_URL, content_type=content_type)


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=64),
    charset=st.sampled_from([None, "utf-8", "utf-16", "rot13", "x-bogus"]),
)
def test_random_bytes_never_raise_anything_else(body: bytes, charset: str | None) -> None:
    with suppress(FeedParseError):
        parse_feed(body, url=FEED_URL, charset=charset)


def test_plain_http_urls_skip_urljoin_with_urllibs_answer() -> None:
    """``_http_url``'s fast path for plain absolute URLs gives what urljoin would."""
    import random
    from urllib.parse import urljoin, urlsplit

    from aggregator.parse import parser

    def by_urllib(base: str, reference: str) -> str | None:
        try:
            absolute = urljoin(base, reference.strip())
        except ValueError:
            return None
        if not absolute or parser._UNPRINTABLE.search(absolute) or absolute.split() != [absolute]:
            return None
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None

    bases = ["http://example.org/feed.xml", "https://example.org/a/b/", "https://h:8443/p?q#f"]
    references = [
        "http://a.com",
        "https://a.com/b/c.jpg",
        "http://a.com:80/x?y=1&z=%E4",
        "https://a.com/~u/(1)*!$',=:@/",
        "http://a.com/x?",  # urllib drops an empty query, fragment or parameters
        "http://a.com/x#",
        "http://a.com/x;p",
        "HTTP://a.com/x",  # and lower-cases the scheme
        "http:///x",  # no host: resolved against the base
        "http://a.com/x/../y",
        "http://a.com/x y",
        " http://a.com/x ",
        "http://a.com/\tx",
        "http://[::1]/x",
        "//a.com/x",
        "/relative",
    ]
    rng = random.Random(15)
    alphabet = "ab/.?#;:%@-_~&=+ \t9"
    for _ in range(5000):
        head = rng.choice(["http://", "https://", "http://a.com", "https://a.b:8"])
        references.append(head + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
    fast = 0
    for base in bases:
        for reference in references:
            fast += bool(parser._PLAIN_HTTP_URL.fullmatch(reference))
            assert parser._http_url(base, reference) == by_urllib(base, reference), reference
    assert fast > len(bases) * 100  # the fast path was taken, and agreed
