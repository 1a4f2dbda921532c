"""aggregator.parse.fast: where it answers, it answers exactly as feedparser does.

Every test here compares the two paths of :func:`aggregator.parse.parser.parse_feed`
(``fast=True``, the default, and ``fast=False``, always feedparser) field by
field -- every ParsedFeed field and every Entry field except ``raw``, which
is intentionally smaller on the fast path -- and checks whether the fast
path took the document or declined it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from html import escape
from pathlib import Path
from typing import Any

import pytest
from feedbuild import CORPUS, corpus_rows, require_corpus, rss_document, seed_item, seed_posts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.hexo.post import format_date
from aggregator.parse.fast import shape_feed
from aggregator.parse.parser import (
    FeedParseError,
    ParsedFeed,
    _sniff_charset,
    _transcode,
    parse_feed,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import farm

URL = "https://feeds.example.org/dir/feed.xml"


def comparable(parsed: ParsedFeed) -> dict[str, Any]:
    """Every field, entries without ``raw``."""
    fields = dataclasses.asdict(parsed)
    fields["entries"] = [
        {k: v for k, v in entry.items() if k != "raw"} for entry in fields["entries"]
    ]
    return fields


def takes(document: bytes) -> bool:
    """Whether the fast path reads this document (rather than declining)."""
    utf8, encoding, _ = _transcode(document, _sniff_charset(document))
    return bool(encoding) and shape_feed(utf8) is not None


def both(document: bytes, url: str = URL) -> tuple[Any, Any]:
    """(fast path result, feedparser result); a FeedParseError stands in for a result."""
    results = []
    for fast in (True, False):
        try:
            results.append(comparable(parse_feed(document, url=url, fast=fast)))
        except FeedParseError as exc:
            results.append(("FeedParseError", str(exc)))
    return results[0], results[1]


#: Keys the fast path's ``raw`` shares with feedparser's, value for value.
SHARED_RAW_KEYS = (
    "id",
    "link",
    "title",
    "published",
    "published_parsed",
    "updated",
    "updated_parsed",
    "author",
    "tags",
    "media_thumbnail",
    "media_content",
    "image",
)


def assert_same(document: bytes, *, taken: bool | None = True, url: str = URL) -> None:
    """Both paths agree; ``taken`` says whether the fast path must read it (None: either)."""
    if taken is not None:
        assert takes(document) is taken
    fast, slow = both(document, url)
    assert fast == slow
    if taken and isinstance(fast, dict):
        fast_entries = parse_feed(document, url=url).entries
        slow_entries = parse_feed(document, url=url, fast=False).entries
        for fast_entry, slow_entry in zip(fast_entries, slow_entries, strict=True):
            json.dumps(fast_entry.raw)
            for key in SHARED_RAW_KEYS:
                if key in slow_entry.raw:
                    assert fast_entry.raw.get(key) == slow_entry.raw[key], key


# --------------------------------------------------------------------------
# 1. The benchmark farm's feeds


@pytest.fixture(scope="module")
def material() -> farm.Material:
    return farm.Material.of(farm.load_seeds())


@pytest.mark.parametrize("index", [*range(0, 300, 10)])
def test_farm_feeds_take_the_fast_path_and_match(material: farm.Material, index: int) -> None:
    document = farm.render_feed(material, "http://127.0.0.1:8080", index, 20)
    assert_same(document, url=f"http://127.0.0.1:8080/feeds/{index:05d}.xml")


# --------------------------------------------------------------------------
# 2. Feeds built from the seed posts, RSS 2.0 and Atom 1.0


def atom_document(entries: str, *, feed_extra: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:media="http://search.yahoo.com/mrss/">'
        "<title>Test feed</title><id>urn:test:feed</id>"
        '<link href="https://news.example.com/"/>'
        '<link rel="self" href="https://news.example.com/atom.xml"/>'
        f"<updated>2022-03-01T13:31:34Z</updated>{feed_extra}{entries}</feed>"
    )


def atom_seed_entry(post: Any, index: int, *, content_type: str = "html") -> str:
    return (
        f"<entry><title>{escape(post.title, quote=False)}</title>"
        f'<link rel="alternate" type="text/html" href="https://news.example.com/{index}"/>'
        f"<id>tag:news.example.com,2022:{index}</id>"
        f"<published>{post.date.isoformat()}</published>"
        f"<updated>{post.date.isoformat()}</updated>"
        f"<author><name>{escape(post.outlet)}</name></author>"
        f'<summary type="text">{escape(post.title)}</summary>'
        f'<content type="{content_type}">{escape(post.body, quote=False)}</content>'
        + (f'<media:thumbnail url="{escape(post.headimg)}"/>' if post.headimg else "")
        + "</entry>"
    )


@pytest.fixture(scope="module")
def posts() -> list[Any]:
    found = seed_posts()
    if not found:
        pytest.skip("no seed posts")
    return found


@pytest.mark.parametrize("body_in", ["content", "description", "description-cdata"])
def test_seed_rss_feeds_match(posts: list[Any], body_in: str) -> None:
    items = "".join(
        seed_item(p, body_in=body_in, link=f"https://news.example.com/{i}")
        for i, p in enumerate(posts)
    )
    assert_same(rss_document(items).encode())


@pytest.mark.parametrize("content_type", ["html", "text"])
def test_seed_atom_feeds_match(posts: list[Any], content_type: str) -> None:
    entries = "".join(atom_seed_entry(p, i, content_type=content_type) for i, p in enumerate(posts))
    assert_same(atom_document(entries).encode())


# --------------------------------------------------------------------------
# 3. The shared corpus: declined, or the same answer

ROWS = [r for r in corpus_rows() if not r["file"].endswith(".json")]
CORPUS_PARAMS = [pytest.param(row["file"], id=row["file"]) for row in ROWS] or [
    pytest.param(None, id="corpus-missing")
]


@pytest.mark.parametrize("name", CORPUS_PARAMS)
def test_corpus_file_is_declined_or_matches(name: str | None) -> None:
    require_corpus()
    assert name is not None
    document = (CORPUS / name).read_bytes()
    assert_same(document, taken=None, url=f"https://corpus.example/{name}")


def test_corpus_coverage_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """Not a requirement, a number: how much of the corpus the fast path reads."""
    require_corpus()
    taken = [r["file"] for r in ROWS if takes((CORPUS / r["file"]).read_bytes())]
    with capsys.disabled():
        print(f"\nfast path takes {len(taken)} of {len(ROWS)} XML corpus files")
    assert taken  # plain RSS 2.0 and Atom 1.0 are in there


# --------------------------------------------------------------------------
# 4. Hand-written edge cases

RSS_HEAD = (
    '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" '
    'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:media="http://search.yahoo.com/mrss/" '
    'xmlns:atom="http://www.w3.org/2005/Atom" '
    'xmlns:sy="http://purl.org/rss/1.0/modules/syndication/" '
    'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
)


def rss(items: str, channel: str = "<title>T</title><link>https://example.com/</link>") -> bytes:
    return f"{RSS_HEAD}<channel>{channel}{items}</channel></rss>".encode()


def atom(entries: str, head: str = '<title>T</title><link href="https://example.com/"/>') -> bytes:
    return f'<feed xmlns="http://www.w3.org/2005/Atom">{head}{entries}</feed>'.encode()


TAKEN_RSS_ITEMS = {
    "cdata-title": "<item><title><![CDATA[A <b>bold</b> move]]></title></item>",
    "entities-in-title": "<item><title>Fish &amp; chips &lt;3 &#169; &#x4e2d;</title></item>",
    "escaped-html-title": "<item><title>&lt;b&gt;Bold&lt;/b&gt; &amp;amp; more</title></item>",
    "unknown-tag-title": "<item><title>&lt;script&gt;x&lt;/script&gt; &lt;foo&gt;</title></item>",
    "entity-only-title": "<item><title>a &amp;nbsp; b &amp;bogus; c</title></item>",
    "lt-title": "<item><title>a &lt; b and c &gt; d</title></item>",
    "whitespace-title": "<item><title>\n   spaced\t out \n</title></item>",
    "empty-title": "<item><title></title><link>https://example.com/a</link></item>",
    "mojibake-title": "<item><title>cafÃ© Ã¼ber</title></item>",
    "cp1252-controls": "<item><title>quote \x93x\x94 \x85</title></item>",
    "empty-guid": "<item><title>x</title><guid></guid></item>",
    "guid-permalink-false": '<item><guid isPermaLink="false">abc-123</guid></item>',
    "guid-permalink-true": '<item><guid isPermaLink="true">https://example.com/p</guid></item>',
    "guid-permalink-odd": '<item><guid isPermaLink="False">https://example.com/p</guid></item>',
    "guid-as-link": "<item><guid>https://example.com/g</guid></item>",
    "guid-relative": "<item><guid>/relative/g</guid></item>",
    "guid-after-link": (
        "<item><link>https://example.com/l</link><guid>https://example.com/g</guid></item>"
    ),
    "guid-before-link": (
        "<item><guid>https://example.com/g</guid><link>https://example.com/l</link></item>"
    ),
    "missing-pubdate": "<item><title>no date</title></item>",
    "pubdate-naive": "<item><pubDate>2022-03-01 13:31:34</pubDate></item>",
    "pubdate-gmt": "<item><pubDate>Tue, 01 Mar 2022 13:31:34 GMT</pubDate></item>",
    "pubdate-garbage": "<item><pubDate>yesterday-ish</pubDate></item>",
    "pubdate-empty": "<item><pubDate>  </pubDate></item>",
    "dc-date": "<item><dc:date>2022-03-01T13:31:34+08:00</dc:date></item>",
    "pubdate-and-dc-date": (
        "<item><pubDate>Tue, 01 Mar 2022 13:31:34 +0800</pubDate>"
        "<dc:date>2022-03-02T00:00:00Z</dc:date></item>"
    ),
    "relative-link": "<item><link>/a/b?x=1&amp;y=2</link></item>",
    "link-amp-amp": "<item><link>https://example.com/?a=1&amp;amp;b=2&amp;c;</link></item>",
    "link-triple-slash": "<item><link>http:///example.com/x</link></item>",
    "link-javascript": "<item><link>javascript:alert(1)</link></item>",
    "link-spaces": "<item><link>  https://example.com/ spaced  </link></item>",
    "atom-link-alternate": (
        '<item><atom:link rel="alternate" href="https://example.com/alt"/><title>x</title></item>'
    ),
    "atom-link-other-rel": (
        '<item><atom:link rel="related" href="https://example.com/rel"/>'
        "<link>https://example.com/l</link></item>"
    ),
    "atom-link-then-link": (
        '<item><atom:link href="https://example.com/alt"/><link>https://example.com/l</link></item>'
    ),
    "description-cdata": "<item><description><![CDATA[<p>Hi &amp; bye</p>]]></description></item>",
    "description-escaped": "<item><description>&lt;p&gt;Hi&lt;/p&gt;</description></item>",
    "description-plain-lines": "<item><description>line one\nline two\n\npara</description></item>",
    "content-before-description": (
        "<item><content:encoded><![CDATA[<p>full</p>]]></content:encoded>"
        "<description>teaser</description></item>"
    ),
    "content-only": "<item><content:encoded><![CDATA[<p>full</p>]]></content:encoded></item>",
    "content-empty": (
        "<item><description>d</description><content:encoded></content:encoded></item>"
    ),
    "dc-creator": "<item><dc:creator> Jane  Doe </dc:creator></item>",
    "author-email": "<item><author>jane@example.com (Jane Doe)</author></item>",
    "media": (
        '<item><media:thumbnail url="/t.jpg" width="10"/>'
        '<media:content url="https://example.com/v.mp4" type="video/mp4"/>'
        '<media:content url="https://example.com/i" medium="image"/>'
        '<enclosure url="https://example.com/e.PNG" length="1"/>'
        '<enclosure url="https://example.com/a.mp3" type="audio/mpeg" length="1"/>'
        '<enclosure url="https://example.com/p" type="IMAGE/JPEG" length="1"/></item>'
    ),
    "thumbnail-text-url": "<item><media:thumbnail>https://example.com/t.png</media:thumbnail></item>",
    "categories": (
        '<item><category domain="d">a</category><category>b</category><category/></item>'
    ),
    "comments-and-unknown": (
        "<item><title>x</title><comments>/c</comments><foo>bar</foo><!-- note --></item>"
    ),
    "itunes-summary-after-description": (
        "<item><description>d</description><itunes:summary>i &amp;amp; s</itunes:summary></item>"
    ),
    "itunes-summary-then-content": (
        "<item><itunes:summary>i</itunes:summary><description>&lt;p&gt;d&lt;/p&gt;</description>"
        "<content:encoded>c</content:encoded></item>"
    ),
    "content-then-two-summaries": (
        "<item><content:encoded>c</content:encoded><description>d</description>"
        "<itunes:summary>i</itunes:summary></item>"
    ),
    "two-contents": (
        "<item><content:encoded></content:encoded><content:encoded>second</content:encoded></item>"
    ),
    "two-descriptions": "<item><description>a</description><description>b</description></item>",
    "source": '<item><title>t</title><source url="https://s.example/">Src</source></item>',
    "itunes-keywords": "<item><itunes:keywords>a, b</itunes:keywords></item>",
    "itunes-image": '<item><itunes:image href="/cover.jpg"/></item>',
    "unknown-namespace": (
        '<item xmlns:x="urn:example:x"><x:thing>1</x:thing><x:nested a="1"><x:leaf/></x:nested>'
        "<title>t</title></item>"
    ),
    "media-group": (
        "<item><title>real</title><media:group><media:title>m</media:title>"
        '<media:content url="https://example.com/v.jpg" medium="image"/>'
        '<media:thumbnail url="https://example.com/t.jpg"/>'
        "<media:description>md</media:description></media:group></item>"
    ),
    "media-group-title-first": (
        "<item><media:group><media:title>m &amp;amp; n</media:title></media:group>"
        "<description>d</description></item>"
    ),
    "huge-attribute": '<item><enclosure url="https://example.com/'
    + "a" * 100_000
    + '.png"/></item>',
}

TAKEN_CHANNELS = {
    "ttl-and-sy": (
        "<title>T</title><link>/home</link><ttl>30</ttl>"
        "<sy:updatePeriod>hourly</sy:updatePeriod><sy:updateFrequency>2</sy:updateFrequency>"
        "<generator>WordPress 6.4</generator>"
    ),
    "image-then-title": (
        "<image><title>Logo</title><url>https://example.com/l.png</url>"
        "<link>https://example.com/</link></image><title>Real title</title>"
    ),
    "html-title": "<title>&lt;b&gt;Bold&lt;/b&gt; channel</title>",
    "atom-self-link": (
        '<atom:link rel="self" href="https://example.com/feed" type="application/rss+xml"/>'
        "<title>T</title><link>https://example.com/</link>"
    ),
    "no-title": "<link>https://example.com/</link>",
    "podcast-channel": (
        "<title>P</title><description>d</description><itunes:summary>s</itunes:summary>"
        '<itunes:category text="A"><itunes:category text="B"/></itunes:category>'
        "<itunes:owner><itunes:name>N</itunes:name><itunes:email>e@x</itunes:email></itunes:owner>"
        "<managingEditor>ed@example.com</managingEditor><language>en</language>"
    ),
}


@pytest.mark.parametrize("item", TAKEN_RSS_ITEMS.values(), ids=TAKEN_RSS_ITEMS.keys())
def test_rss_items_are_taken_and_match(item: str) -> None:
    assert_same(rss(item))


@pytest.mark.parametrize("channel", TAKEN_CHANNELS.values(), ids=TAKEN_CHANNELS.keys())
def test_rss_channels_are_taken_and_match(channel: str) -> None:
    assert_same(rss("<item><title>x</title></item>", channel))


def test_other_prefixes_for_known_namespaces_are_taken() -> None:
    document = (
        b'<rss version="2.0" xmlns:c="http://purl.org/rss/1.0/modules/content/" '
        b'xmlns:d="http://purl.org/dc/elements/1.1/"><channel><title>T</title>'
        b"<item><c:encoded>&lt;p&gt;x&lt;/p&gt;</c:encoded><d:creator>Me</d:creator>"
        b"<d:date>2022-03-01T00:00:00Z</d:date></item></channel></rss>"
    )
    assert_same(document)


def test_default_namespace_rss_is_taken() -> None:
    document = (
        b'<rss version="2.0" xmlns="http://backend.userland.com/rss2"><channel><title>T</title>'
        b"<item><title>x</title><link>https://example.com/x</link></item></channel></rss>"
    )
    assert_same(document)


TAKEN_ATOM_ENTRIES = {
    "html-content-text-summary": (
        '<entry><title type="html">&lt;i&gt;Hi&lt;/i&gt; &amp;amp;</title><id>urn:x</id>'
        '<content type="html">&lt;p&gt;body&lt;/p&gt;</content>'
        '<summary type="text">a &lt;b&gt; tag</summary></entry>'
    ),
    "text-title-with-markup": "<entry><title>&lt;b&gt;not bold&lt;/b&gt;</title></entry>",
    "text-content": '<entry><content type="text">line\n\nnext &lt;x&gt;</content></entry>',
    "default-types": "<entry><summary>plain &amp; simple</summary><content>c</content></entry>",
    "summary-after-content": (
        '<entry><content type="html">&lt;p&gt;c&lt;/p&gt;</content><summary>s</summary></entry>'
    ),
    "links": (
        '<entry><link rel="enclosure" href="/i.jpg" type="image/jpeg"/>'
        '<link rel="related" href="https://example.com/r"/>'
        '<link rel="alternate" type="text/plain" href="https://example.com/txt"/>'
        '<link href="/relative"/><id>https://example.com/id</id></entry>'
    ),
    "id-as-link": "<entry><id>https://example.com/by-id</id></entry>",
    "author-name-email": (
        "<entry><author><name> Jane </name><email>j@example.com</email>"
        "<uri>https://example.com/j</uri></author></entry>"
    ),
    "author-email-only": "<entry><author><email>j@example.com</email></author></entry>",
    "author-uri-only": "<entry><author><uri>https://example.com/j</uri></author></entry>",
    "author-text": "<entry><author>Plain Name</author></entry>",
    "dates": (
        "<entry><published>2022-03-01T13:31:34+08:00</published>"
        "<updated>2022-03-01T13:31:34</updated></entry>"
    ),
    "youtube-style": (
        '<entry><title>Video</title><link rel="alternate" href="https://example.com/w"/>'
        '<media:group xmlns:media="http://search.yahoo.com/mrss/"><media:title>Video</media:title>'
        '<media:content url="https://example.com/v" type="application/x-shockwave-flash"/>'
        '<media:thumbnail url="https://example.com/hq.jpg" width="480" height="360"/>'
        "<media:description>Line one\nline two</media:description></media:group></entry>"
    ),
    "category-and-contributor": (
        '<entry><category term="t" label="L"/><contributor><name>C</name></contributor></entry>'
    ),
}


@pytest.mark.parametrize("entry", TAKEN_ATOM_ENTRIES.values(), ids=TAKEN_ATOM_ENTRIES.keys())
def test_atom_entries_are_taken_and_match(entry: str) -> None:
    assert_same(atom(entry))


def test_deeper_summary_after_a_shallower_one_is_declined() -> None:
    """feedparser would keep the summary but take the deeper one's detail."""
    entry = (
        "<entry><content>c</content><summary>s</summary>"
        '<media:group xmlns:media="http://search.yahoo.com/mrss/">'
        "<media:description>md</media:description></media:group></entry>"
    )
    assert_same(atom(entry), taken=False)


def test_atom_feed_id_before_link_and_generator() -> None:
    head = (
        '<id>https://example.com/feed-id</id><title type="html">A &amp;amp; B</title>'
        '<generator uri="https://gen.example" version="1">Gen</generator>'
        '<link rel="self" href="https://example.com/atom"/>'
    )
    assert_same(atom("<entry><title>x</title></entry>", head))


BARE = '<rss version="2.0"><channel>{}</channel></rss>'
DECLINED = {
    "doctype": (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY e "&#233;">]>'
        '<rss version="2.0"><channel><title>&e;</title></channel></rss>'
    ),
    "plain-doctype": (
        '<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN" '
        '"http://my.netscape.com/publish/formats/rss-0.91.dtd">'
        '<rss version="2.0"><channel><title>t</title></channel></rss>'
    ),
    "not-well-formed": '<rss version="2.0"><channel><title>a & b</title></channel></rss>',
    "unclosed": '<rss version="2.0"><channel><title>a</title>',
    "html-entity": '<rss version="2.0"><channel><title>a&nbsp;b</title></channel></rss>',
    "rss091": '<rss version="0.91"><channel><title>t</title></channel></rss>',
    "rss10": (
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/"><channel><title>t</title></channel></rdf:RDF>'
    ),
    "atom03": '<feed version="0.3" xmlns="http://purl.org/atom/ns#"><title>t</title></feed>',
    "unknown-root": "<config><item><title>t</title></item></config>",
    "xml-base": (
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://example.com/b/">'
        '<entry><link href="x"/></entry></feed>'
    ),
    "xhtml-title": (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><title type="xhtml">'
        '<div xmlns="http://www.w3.org/1999/xhtml"><b>x</b></div></title></entry></feed>'
    ),
    "content-src": (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry>'
        '<content src="https://example.com/c"/></entry></feed>'
    ),
    "feed-summary-then-description": (
        '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel>'
        "<itunes:summary>s</itunes:summary><description>d</description></channel></rss>"
    ),
    "markup-in-title": BARE.format("<item><title>a <b>b</b></title></item>"),
    "comment-in-title": BARE.format("<item><title>a<!--x-->b</title></item>"),
    "unknown-namespace-prefix-clash": (
        '<rss version="2.0" xmlns:content="http://purl.org/dc/elements/1.1/" '
        'xmlns:x="http://purl.org/rss/1.0/modules/content/"><channel><item>'
        "<x:encoded>a</x:encoded></item></channel></rss>"
    ),
    "date-element": BARE.format("<item><date>2022-01-01</date></item>"),
    "itunes-keywords-with-attribute": (
        '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">'
        '<channel><item><itunes:keywords a="1">k</itunes:keywords></item></channel></rss>'
    ),
    "default-unknown-namespace": BARE.format('<item><x xmlns="urn:x"><title>t</title></x></item>'),
    "unknown-namespace-two-prefixes": (
        '<rss version="2.0" xmlns:a="urn:x" xmlns:b="urn:x"><channel><item>'
        "<a:thing>1</a:thing></item></channel></rss>"
    ),
    "unknown-namespace-standard-prefix": (
        '<rss version="2.0" xmlns:media="urn:x"><channel><item>'
        "<media:content>1</media:content></item></channel></rss>"
    ),
    "media-title": (
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><item>'
        "<media:title>m</media:title><title>t</title></item></channel></rss>"
    ),
    "item-outside-channel": '<rss version="2.0"><channel/><item><title>t</title></item></rss>',
    "title-type-attribute": (
        '<rss version="2.0"><channel><item><title type="html">x</title></item></channel></rss>'
    ),
    "entity-text-in-cdata": (
        '<rss version="2.0"><channel><item><description><![CDATA[<!ENTITY x "y">]]>'
        "</description></item></channel></rss>"
    ),
}


@pytest.mark.parametrize("document", DECLINED.values(), ids=DECLINED.keys())
def test_documents_the_fast_path_is_not_sure_about_are_declined(document: str) -> None:
    assert_same(document.encode(), taken=False)


CHARSET_CASES = {
    "latin1-declared": (
        '<?xml version="1.0" encoding="iso-8859-1"?><rss version="2.0"><channel>'
        "<title>Caf\u00e9</title><item><title>\u00fcber</title></item></channel></rss>"
    ).encode("latin-1"),
    "ascii-declared-utf8-sent": (
        '<?xml version="1.0" encoding="us-ascii"?><rss version="2.0"><channel>'
        "<title>Caf\u00e9 \u4e2d</title></channel></rss>"
    ).encode(),
    "cp1252-bytes": (
        b'<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel>'
        b"<item><title>\x93quoted\x94 \x85</title></item></channel></rss>"
    ),
    "utf16-bom": (
        '<?xml version="1.0" encoding="utf-16"?><rss version="2.0"><channel>'
        "<item><title>\u4e2d\u6587</title></item></channel></rss>"
    ).encode("utf-16"),
    "utf8-bom": b"\xef\xbb\xbf"
    + b'<rss version="2.0"><channel><item><title>t</title></item></channel></rss>',
}
HEADER_CHARSETS = [None, "utf-8", "iso-8859-1", "gb2312", "windows-1252"]


@pytest.mark.parametrize("charset", HEADER_CHARSETS)
@pytest.mark.parametrize("document", CHARSET_CASES.values(), ids=CHARSET_CASES.keys())
def test_charsets_agree(document: bytes, charset: str | None) -> None:
    """Transcoding happens before the split, so both paths see the same characters."""
    results = []
    for fast in (True, False):
        try:
            results.append(comparable(parse_feed(document, url=URL, charset=charset, fast=fast)))
        except FeedParseError as exc:
            results.append(("FeedParseError", str(exc)))
    assert results[0] == results[1]


#: Where expat (feedparser) and libxml2 (lxml) could disagree on well-formedness.
XML_EDGES = {
    "empty-prefix-declaration": (
        BARE.replace("<rss ", '<rss xmlns:a="" ').format("<item><title>x</title></item>"),
        False,
    ),
    "xml-1.1-declaration": (
        '<?xml version="1.1"?>' + BARE.format("<item><title>x\u0085</title></item>"),
        True,
    ),
    "noncharacter": (BARE.format("<item><title>x\ufffe</title></item>"), False),
    "noncharacter-reference": (BARE.format("<item><title>x&#xFFFF;</title></item>"), False),
    "nul-reference": (BARE.format("<item><title>x&#0;</title></item>"), False),
    "delete-character": (BARE.format("<item><title>x\x7f</title></item>"), True),
    "cdata-end-in-text": (BARE.format("<item><title>a ]]> b</title></item>"), False),
    "element-after-root": (BARE.format("<item/>") + "<x/>", False),
    "text-after-root": (BARE.format("<item/>") + "junk", False),
    "stylesheet-pi": ('<?xml-stylesheet href="a.xsl"?>' + BARE.format("<item/>"), True),
    "non-ascii-element-name": (BARE.format("<item><t\u00eftle>x</t\u00eftle></item>"), True),
    "astral-characters": (BARE.format("<item><title>\U0001f600 &#x1F600;</title></item>"), True),
    "uppercase-names": (
        BARE.format(
            "<item><TITLE>X</TITLE><Link>https://e.com/</Link>"
            "<PubDate>Tue, 01 Mar 2022 13:31:34 GMT</PubDate></item>"
        ),
        True,
    ),
    "newline-in-attribute": (
        BARE.format(
            '<item><enclosure url="https://e.com/a&#10;b.png" type="image/png"/>'
            '<enclosure url="https://e.com/c\nd.png" type="image/png"/></item>'
        ),
        True,
    ),
    "bom-inside-text": (BARE.format("<item><title>\ufeffx</title></item>"), True),
    "deep-nesting": (BARE.format("<item><x>" + "<y>" * 300 + "</y>" * 300 + "</x></item>"), False),
    "many-items": (BARE.format("<item><title>x</title></item>" * 3000), True),
}


@pytest.mark.parametrize(("document", "taken"), XML_EDGES.values(), ids=XML_EDGES.keys())
def test_xml_edge_cases(document: str, taken: bool) -> None:
    assert_same(document.encode(), taken=taken)


def test_non_utf8_document_is_read_through_transcoding() -> None:
    document = (
        '<?xml version="1.0" encoding="gb2312"?><rss version="2.0"><channel><title>'
        "中文频道</title><item><title>标题 &amp; 内容</title></item></channel></rss>"
    ).encode("gb18030")
    assert_same(document)


# --------------------------------------------------------------------------
# 5. Generated items: both paths agree on whatever the fast path takes

_PLAIN = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cs", "Cc"),
        include_characters="\n\t <>&\"'\x85\x93é中",
    ),
    max_size=20,
)
# Pieces that exercise feedparser's HTML guess, entity handling and repairs.
_FRAGMENTS = st.sampled_from(
    [
        "<b>",
        "</b>",
        "<p>",
        "</p>",
        "<script>",
        "</script>",
        "<foo>",
        "</foo>",
        "&amp;",
        "&nbsp;",
        "&#169;",
        "&bogus;",
        "&lt;",
        "<",
        "&",
        "<!-- c -->",
        "Ã©",
        "\x93",
        " ",
        "\n",
        "a",
        "中文",
    ]
)
_TEXT = st.lists(st.one_of(_PLAIN, _FRAGMENTS), max_size=6).map("".join)
_LINKS = st.sampled_from(
    ["https://example.com/a", "/relative", "", "  http://x.example/ y ", "javascript:x", "?q=1"]
)
_DATES = st.sampled_from(
    [
        "Tue, 01 Mar 2022 13:31:34 GMT",
        "2022-03-01T13:31:34+08:00",
        "2022-03-01 13:31:34",
        "2022-03-01",
        "not a date",
        "",
        "Tue, 01 Mar 2022 13:31:34 CST",
    ]
)


_PERMALINK = st.sampled_from(["", ' isPermaLink="false"', ' isPermaLink="true"'])


def _text_node(draw: st.DrawFn) -> str:
    """Generated text, escaped or in CDATA."""
    text = draw(_TEXT)
    if draw(st.booleans()) and "]]>" not in text:
        return f"<![CDATA[{text}]]>"
    return escape(text, quote=False)


@st.composite
def generated_item(draw: st.DrawFn) -> str:
    candidates = [
        lambda: f"<title>{_text_node(draw)}</title>",
        lambda: f"<link>{escape(draw(_LINKS))}</link>",
        lambda: f"<guid{draw(_PERMALINK)}>{escape(draw(_LINKS))}</guid>",
        lambda: f"<pubDate>{draw(_DATES)}</pubDate>",
        lambda: f"<dc:date>{draw(_DATES)}</dc:date>",
        lambda: f"<description>{_text_node(draw)}</description>",
        lambda: f"<description>{_text_node(draw)}</description>",
        lambda: f"<itunes:summary>{_text_node(draw)}</itunes:summary>",
        lambda: f"<content:encoded>{_text_node(draw)}</content:encoded>",
        lambda: f"<content:encoded>{_text_node(draw)}</content:encoded>",
        lambda: f"<dc:creator>{_text_node(draw)}</dc:creator>",
        lambda: f'<media:thumbnail url="{escape(draw(_LINKS))}"/>',
        lambda: (
            f'<enclosure url="{escape(draw(_LINKS))}" '
            f'type="{draw(st.sampled_from(["image/png", "audio/mpeg", "", "IMAGE/GIF"]))}"/>'
        ),
        lambda: (
            f'<atom:link rel="{draw(st.sampled_from(["alternate", "self", "enclosure"]))}" '
            f'href="{escape(draw(_LINKS))}"/>'
        ),
        lambda: f"<category>{_text_node(draw)}</category>",
        lambda: f'<source url="https://s.example/">{_text_node(draw)}</source>',
        lambda: (
            f"<media:group><media:title>{_text_node(draw)}</media:title>"
            f"<media:description>{_text_node(draw)}</media:description></media:group>"
        ),
    ]
    chosen = draw(st.lists(st.sampled_from(range(len(candidates))), max_size=8, unique=True))
    parts = [candidates[i]() for i in chosen]
    return "<item>" + "".join(draw(st.permutations(parts))) + "</item>"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(generated_item(), min_size=1, max_size=3), _TEXT)
def test_generated_rss_items_match(items: list[str], channel_title: str) -> None:
    document = rss(
        "".join(items),
        f"<title>{escape(channel_title, quote=False)}</title><link>https://example.com/</link>",
    )
    assert_same(document, taken=None)


@st.composite
def generated_entry(draw: st.DrawFn) -> str:
    kinds = st.sampled_from(["", ' type="text"', ' type="html"', ' type="TEXT/HTML"'])
    candidates = [
        lambda: f"<title{draw(kinds)}>{_text_node(draw)}</title>",
        lambda: f"<summary{draw(kinds)}>{_text_node(draw)}</summary>",
        lambda: f"<content{draw(kinds)}>{_text_node(draw)}</content>",
        lambda: f"<id>{escape(draw(_LINKS))}</id>",
        lambda: (
            f'<link rel="{draw(st.sampled_from(["alternate", "related", "enclosure"]))}" '
            f'type="{draw(st.sampled_from(["text/html", "image/png", "text/plain"]))}" '
            f'href="{escape(draw(_LINKS))}"/>'
        ),
        lambda: f'<link href="{escape(draw(_LINKS))}"/>',
        lambda: f"<published>{draw(_DATES)}</published>",
        lambda: f"<updated>{draw(_DATES)}</updated>",
        lambda: (
            f"<author><name>{_text_node(draw)}</name>"
            + draw(st.sampled_from(["", "<email>e@example.com</email>"]))
            + "</author>"
        ),
        lambda: (
            f"<media:group><media:title>{_text_node(draw)}</media:title>"
            f"<media:description>{_text_node(draw)}</media:description>"
            f'<media:thumbnail url="{escape(draw(_LINKS))}"/></media:group>'
        ),
    ]
    chosen = draw(st.lists(st.sampled_from(range(len(candidates))), max_size=8, unique=True))
    parts = [candidates[i]() for i in chosen]
    return "<entry>" + "".join(draw(st.permutations(parts))) + "</entry>"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(generated_entry(), min_size=1, max_size=3))
def test_generated_atom_entries_match(entries: list[str]) -> None:
    document = (
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">'
        f"<title>T</title>{''.join(entries)}</feed>"
    ).encode()
    assert_same(document, taken=None)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_generated_documents_are_mostly_taken() -> None:
    """The property tests above are only evidence if the fast path takes most cases."""
    taken = 0
    for example in range(200):
        item = generated_item().example() if example % 2 else generated_entry().example()
        if example % 2:
            document = rss(item)
        else:
            document = (
                '<feed xmlns="http://www.w3.org/2005/Atom" '
                f'xmlns:media="http://search.yahoo.com/mrss/">{item}</feed>'
            ).encode()
        taken += takes(document)
    print(f"fast path takes {taken} of 200 generated documents")
    assert taken >= 120


def test_farm_item_dates_survive() -> None:
    """A sanity check that the comparison is not vacuous: dates are there."""
    material = farm.Material.of(farm.load_seeds())
    parsed = parse_feed(farm.render_feed(material, "http://127.0.0.1:1", 3, 5), url=URL)
    assert len(parsed.entries) == 5
    assert all(e.published is not None and e.images for e in parsed.entries)
    assert parsed.entries[0].published is not None
    assert format_date(parsed.entries[0].published)
