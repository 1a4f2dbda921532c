"""aggregator.content.clean: clean HTML passes through untouched, hostile HTML comes out safe."""

from __future__ import annotations

import dataclasses
import html
import re
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from feedbuild import rss_document, seed_item, seed_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.content.clean import (
    ContentError,
    clean_html,
    entry_to_post,
    extract_full_text,
    header_image_url,
    inert_title,
    pick_image,
)
from aggregator.hexo.post import Post, parse, render
from aggregator.parse.parser import Entry, parse_feed

BASE = "https://news.example.com/2022/story.html"
FIRST_SEEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def make_entry(**changes: object) -> Entry:
    fields: dict[str, object] = {
        "guid": "g1",
        "link": BASE,
        "title": "A title",
        "published": None,
        "updated": None,
        "author": "Someone",
        "content_html": "",
        "summary_html": "",
        "base_url": BASE,
        "images": (),
        "raw": {},
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


def seed(path: Path) -> tuple[str, Post]:
    text = path.read_text(encoding="utf-8")
    return text, parse(text, source=str(path))


# --------------------------------------------------------------------------
# The contract: seeds


@pytest.mark.parametrize("path", seed_paths(), ids=lambda p: p.name)
def test_seed_body_passes_through_unchanged(path: Path) -> None:
    _, post = seed(path)
    for base_url in (None, BASE, "https://chinese.aljazeera.net/"):
        assert clean_html(post.body, base_url=base_url) is post.body


@pytest.mark.parametrize("thumbnail", [True, False], ids=["media-thumbnail", "first-img"])
@pytest.mark.parametrize("body_in", ["content", "description", "description-cdata"])
@pytest.mark.parametrize("path", seed_paths(), ids=lambda p: p.name)
def test_seed_round_trips_through_feed_and_post(path: Path, body_in: str, thumbnail: bool) -> None:
    """An RSS item carrying a seed's fields renders back to that seed file."""
    text, expected = seed(path)
    document = rss_document(seed_item(expected, body_in=body_in, thumbnail=thumbnail))
    feed = parse_feed(document.encode("utf-8"), url="https://news.example.com/feed.xml")
    (entry,) = feed.entries
    post = entry_to_post(
        entry,
        group=expected.group,
        outlet=expected.outlet,
        section=expected.section,
        first_seen=FIRST_SEEN,
    )
    # Feed parsers may trim whitespace at the two ends of a body; nothing else moves.
    assert post.body == expected.body.strip()
    assert render(dataclasses.replace(post, body=expected.body)) == text
    if expected.body == expected.body.strip():
        assert render(post) == text


# --------------------------------------------------------------------------
# What clean_html changes, rule by rule


@pytest.mark.parametrize(
    "body",
    [
        "",
        "plain text",
        "a < b and c > d",
        "<p>x</p><!-- wp:paragraph --><p>y</p>",
        '<a href="https://a.example/x?y=1&z=2">l</a>',
        '<img src="https://a.example/i.jpg" alt referrerpolicy="no-referrer">',
        '<img src="https://a.example/i.jpg" REFERRERPOLICY="No-Referrer">',
        '<a href="#fn1">1</a><a href="mailto:x@example.com">m</a>',
        '<p style="text-align:center;">c</p><span style="color:#666;">s</span>',
        '<img src="data:image/gif;base64,R0lGOD" referrerpolicy="no-referrer">',
        "<!DOCTYPE html><p>x</p></>",
        "<pre>  keep\n\tme  </pre>",
    ],
)
def test_clean_bodies_are_returned_as_is(body: str) -> None:
    assert clean_html(body, base_url=BASE) is body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('<p onclick="x()">hi</p>', "<p>hi</p>"),
        ("<p ONMOUSEOVER='x()' class=c>hi</p>", "<p class=c>hi</p>"),
        ("<script>alert(1)</script><p>ok</p>", "<p>ok</p>"),
        ("<SCRIPT type=x>a</script >b", "b"),
        ("<style>p{color:red}</style>t", "t"),
        ('<iframe src="https://v.example/"></iframe>after', "after"),
        ("<object data=x><param name=a value=b>fallback</object>", "fallback"),
        ('<embed src="x.swf">e', "e"),
        ("<form action=/go><input name=q></form>", "<input name=q>"),
        ('<base href="https://e.example/"><meta http-equiv=refresh content=0><link rel=x>t', "t"),
        ("<textarea><b>x</b></textarea><title>t</title>y", "y"),
        ("<noscript><p>real</p></noscript>", "<p>real</p>"),
        ("<!--[if IE]><script>x</script><![endif]-->ok", "ok"),
        ("{{ title }} and {% tag %}", "&#123;&#123; title &#125;&#125; and &#123;% tag %&#125;"),
        ('<a title="{x}">y</a>', '<a title="&#123;x&#125;">y</a>'),
        ("ok<img src=x.jpg", "ok"),
        ("ok<!-- never closed", "ok"),
        ('<p title="</p><script>">t</p>', '<p title="&lt;/p&gt;&lt;script&gt;">t</p>'),
        ('<div style="width:expression(alert(1))">x</div>', "<div>x</div>"),
        ('<div style="background:url(&#x6A;avascript:alert(1))">x</div>', "<div>x</div>"),
        ('<div style="b\\65havior: url(x.htc)">x</div>', "<div>x</div>"),
        (
            '<a data-href="javascript:alert(1)" title="on javascript: a language">x</a>',
            '<a title="on javascript: a language">x</a>',
        ),
        ('<a title="javascript:alert(1)">x</a>', "<a>x</a>"),
    ],
)
def test_unsafe_markup_is_removed(body: str, expected: str) -> None:
    assert clean_html(body, base_url=None) == expected


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "  javascript:alert(1)",
        "\x01javascript:alert(1)",
        "java\tscript:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "jav&#9;ascript:alert(1)",
        "java&Tab;script:alert(1)",
        "java&NewLine;script:alert(1)",
        "&#106;avascript:alert(1)",
        "&#x6A&#x61&#x76&#x61script:alert(1)",
        "javascript&colon;alert(1)",
        "javascript&#58;alert(1)",
        "vbscript:msgbox(1)",
        "livescript:x",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "DATA:text/html,<script>alert(1)</script>",
        "data:image/svg+xml,<svg onload=alert(1)>",
    ],
)
@pytest.mark.parametrize(
    "attribute", ["href", "src", "action", "formaction", "xlink:href", "poster"]
)
def test_script_and_data_urls_are_removed(url: str, attribute: str) -> None:
    for quote in ('"', "'"):
        if quote in url:
            continue
        out = clean_html(f"<a {attribute}={quote}{url}{quote}>x</a>", base_url=BASE)
        assert out == "<a>x</a>"


def test_raster_data_image_is_kept_in_img_src_only() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    kept = f'<img src="{png}" referrerpolicy="no-referrer">'
    assert clean_html(kept, base_url=BASE) is kept
    assert clean_html(f'<a href="{png}">x</a>', base_url=BASE) == "<a>x</a>"
    assert clean_html(f'<img srcset="{png} 1x">', base_url=BASE) == (
        '<img referrerpolicy="no-referrer">'
    )


def test_relative_urls_become_absolute() -> None:
    body = (
        '<a href="/about">a</a><a href="next.html">n</a><a href="//cdn.example/x">c</a>'
        '<img src="i/p.png" srcset="s.png 1x, /l.png 2x,t.png" referrerpolicy="no-referrer">'
        '<video poster="p.jpg"><source src="v.mp4"></video><a href="#top">t</a><a href="">e</a>'
    )
    assert clean_html(body, base_url=BASE) == (
        '<a href="https://news.example.com/about">a</a>'
        '<a href="https://news.example.com/2022/next.html">n</a>'
        '<a href="https://cdn.example/x">c</a>'
        '<img src="https://news.example.com/2022/i/p.png" srcset="https://news.example.com/2022/s.png'
        ' 1x, https://news.example.com/l.png 2x,https://news.example.com/2022/t.png"'
        ' referrerpolicy="no-referrer">'
        '<video poster="https://news.example.com/2022/p.jpg">'
        '<source src="https://news.example.com/2022/v.mp4"></video>'
        '<a href="#top">t</a><a href="">e</a>'
    )


def test_relative_urls_stay_without_an_absolute_base() -> None:
    body = '<a href="/about">a</a>'
    assert clean_html(body, base_url=None) is body
    assert clean_html(body, base_url="relative/base/") is body


def test_srcset_follows_the_spec_on_commas() -> None:
    """A URL is a run of non-space characters; only commas at its end separate."""
    srcset = "a.jpg?w=1,2 1x,b.jpg,, c.jpg (x, y) 2x,d,e.jpg"
    body = f'<img srcset="{srcset}" referrerpolicy="no-referrer">'
    assert clean_html(body, base_url="https://x.example/") == (
        '<img srcset="https://x.example/a.jpg?w=1,2 1x,https://x.example/b.jpg,,'
        ' https://x.example/c.jpg (x, y) 2x,https://x.example/d,e.jpg"'
        ' referrerpolicy="no-referrer">'
    )


def test_every_img_gets_no_referrer_and_nothing_else_moves() -> None:
    body = "<p>x</p>\n<img src='https://a.example/i.jpg?w=1&h=2' alt data-x=1>\n<IMG SRC=https://a.example/j.jpg/>"
    assert clean_html(body, base_url=BASE) == (
        "<p>x</p>\n<img src='https://a.example/i.jpg?w=1&h=2' alt data-x=1"
        ' referrerpolicy="no-referrer">\n'
        '<IMG SRC=https://a.example/j.jpg/ referrerpolicy="no-referrer">'
    )
    assert clean_html('<img src=a.jpg referrerpolicy="origin" alt=a>', base_url=None) == (
        '<img src=a.jpg referrerpolicy="no-referrer" alt=a>'
    )
    assert clean_html("<img src=a.jpg />", base_url=None) == (
        '<img src=a.jpg referrerpolicy="no-referrer" />'
    )


def test_removing_an_attribute_never_glues_its_neighbours() -> None:
    assert clean_html('<a onclick="x"title="t">y</a>', base_url=None) == '<a title="t">y</a>'
    assert clean_html('<a href=p.html onclick="x"/>y', base_url=None) == "<a href=p.html />y</a>"


def test_stray_less_than_is_escaped_once_anything_changes() -> None:
    assert clean_html("<<script>x</script>img src=x onerror=alert(1)>", base_url=None) == (
        "&lt;img src=x onerror=alert(1)>"
    )
    assert clean_html("a < b <p onclick=x>", base_url=None) == "a &lt; b <p>"


def test_attribute_entities_follow_html5_attribute_rules() -> None:
    """``&copy=2`` in a URL is literal in an attribute; resolution must keep it so."""
    assert clean_html('<a href="?a=1&copy=2&amp;b=3">x</a>', base_url=BASE) == (
        '<a href="https://news.example.com/2022/story.html?a=1&amp;copy=2&amp;b=3">x</a>'
    )


def test_pathological_inputs_take_linear_time() -> None:
    bodies = [
        "<a " * 40_000,
        '<a href="' * 40_000,
        "<!--" * 40_000,
        "<script>" * 40_000,
        "<" * 200_000,
        "&" * 200_000,
        '<img srcset="' + "a, " * 40_000 + '">',
        '<p style="' + "/*" * 40_000 + '">',
    ]
    for body in bodies:
        started = time.perf_counter()
        clean_html(body, base_url=BASE)
        assert time.perf_counter() - started < 2.0, body[:20]


# --------------------------------------------------------------------------
# Properties: hostile input comes out safe, and cleaning is idempotent

_EVIL_URLS = [
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "jav&#x09;ascript:alert(1)",
    "jav&#9;ascript:alert(1)",
    "java&Tab;script:alert(1)",
    "&#106;avascript:alert(1)",
    "javascript&colon;alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,x",
    "\x0ejavascript:x",
    "https://ok.example/a.jpg",
    "rel/a.png",
    "//cdn.example/b.png",
    "#frag",
]
_TAGS = [
    "a", "img", "p", "div", "span", "b", "script", "SCRIPT", "ScRiPt", "iframe", "object",
    "embed", "svg", "math", "style", "form", "base", "meta", "link", "noscript", "textarea",
    "title", "xmp", "video", "source", "table", "plaintext", "animate", "set", "image",
    "noembed", "noframes", "button",
]  # fmt: skip
_ATTRIBUTES = [
    "href", "src", "srcset", "poster", "action", "formaction", "xlink:href", "onclick",
    "onerror", "ONLOAD", "onmouseover", "style", "title", "data-x", "alt", "values",
    "referrerpolicy",
]  # fmt: skip
_SNIPPETS = [
    "<", "</", ">", "&", "&lt;", "'", '"', "{", "}", "<!--", "-->", "<!-->", "--!>", "<![CDATA[",
    "]]>", "<?php x ?>", "</>", "<!DOCTYPE html>", "<scr<script>ipt>", "<<", "=", "/", " ",
    "\n", "中文", "javascript:", "onerror=alert(1)", "<!--[if IE]><script>x</script><![endif]-->",
]  # fmt: skip

_text = st.text(alphabet=st.sampled_from(list("ab <>&\"'=/{}!-\n\t中;#x")), max_size=12)
_value = st.one_of(st.sampled_from(_EVIL_URLS), _text)


def _quoted_attribute(name: str, value: str, quote: str, gap: str) -> str:
    """One attribute as a page might write it (quotes inside removed, unquoted kept whole)."""
    unquoted = value.replace(" ", "").replace(">", "")
    value = value.replace(quote, "") if quote else unquoted
    return f"{gap}{name}={quote}{value}{quote}"


_attribute = st.builds(
    _quoted_attribute,
    st.sampled_from(_ATTRIBUTES),
    _value,
    st.sampled_from(['"', "'", ""]),
    st.sampled_from([" ", "\n", "/", " / "]),
)
_start_tag = st.builds(
    lambda name, attrs, end: f"<{name}{''.join(attrs)}{end}",
    st.sampled_from(_TAGS),
    st.lists(_attribute, max_size=3),
    st.sampled_from([">", " />", "/>", ""]),
)
_end_tag = st.builds(lambda name: f"</{name}>", st.sampled_from(_TAGS))
_fragment = st.one_of(_start_tag, _start_tag, _end_tag, _text, st.sampled_from(_SNIPPETS))
hostile_html = st.lists(_fragment, max_size=12).map("".join)


class _Inventory(HTMLParser):
    """An independent reading of the output (the standard library's parser)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag


_FORBIDDEN_ELEMENTS = {
    "script", "iframe", "object", "embed", "style", "base", "meta", "link", "form",
}  # fmt: skip
_IGNORED_IN_URLS = re.compile("[\x00-\x20\x7f-\x9f]")
_URL_ATTRIBUTES = {"href", "src", "srcset", "poster", "action", "formaction", "xlink:href"}


def assert_safe(out: str) -> None:
    lowered = out.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered
    assert "{" not in out and "}" not in out
    inventory = _Inventory()
    inventory.feed(out)
    inventory.close()
    for tag, attrs in inventory.tags:
        assert tag not in _FORBIDDEN_ELEMENTS, out
        for name, value in attrs:
            assert not name.lstrip("\"'/=").startswith("on"), out
            compact = _IGNORED_IN_URLS.sub("", html.unescape(value or "")).lower()
            assert not compact.startswith(("javascript:", "vbscript:")), out
            if compact.startswith("data:") and name in _URL_ATTRIBUTES:
                assert (tag, name) == ("img", "src") and compact.startswith("data:image/"), out
    # And in our own reading: every '<' in the output opens a tag, a comment
    # or a declaration, never a stray that could open one later.
    assert not re.search(r"<(?![A-Za-z/!?])", out), out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile_html, base=st.sampled_from([None, BASE]))
def test_hostile_html_comes_out_safe_and_cleaning_is_idempotent(
    body: str, base: str | None
) -> None:
    once = clean_html(body, base_url=base)
    if once is not body:
        assert_safe(once)
    assert clean_html(once, base_url=base) == once


# Clean means no blank line too: a blank line ends Hexo's HTML block (see
# tests/test_render_safety.py), so the clean-up removes it.
_safe_text = st.text(alphabet=st.sampled_from(list("ab c中文.,;:!?\n'\"")), max_size=10).filter(
    lambda t: re.search(r"\n[ \t]*\n", t) is None
)
_safe_element = st.one_of(
    st.builds(lambda t: f"<p>{t}</p>", _safe_text),
    st.builds(lambda t: f'<a href="https://e.example/{t.strip()[:3]}">{t}</a>', _safe_text),
    st.builds(
        lambda t: f'<img src="https://e.example/i.jpg" alt="{t}" referrerpolicy="no-referrer">',
        st.text(alphabet="abc ", max_size=5),
    ),
    st.builds(lambda t: f"<h3>{t}</h3><!-- {t} -->", _safe_text),
)


@settings(max_examples=150, deadline=None)
@given(body=st.lists(_safe_element, max_size=8).map("\n".join))
def test_clean_html_never_touches_clean_html(body: str) -> None:
    assert clean_html(body, base_url=BASE) is body


# --------------------------------------------------------------------------
# Images and posts


def test_pick_image_prefers_feed_images_then_body_then_placeholder() -> None:
    body = (
        '<img src="data:image/gif;base64,R0lG"><img src="/rel.png">'
        '<img src="https://a.example/first.jpg"><img src="https://a.example/second.jpg">'
    )
    with_images = make_entry(images=("https://a.example/feed.jpg", "https://a.example/b.jpg"))
    assert pick_image(with_images, body) == "https://a.example/feed.jpg"
    assert pick_image(make_entry(), body) == "https://a.example/first.jpg"
    assert pick_image(make_entry(), "<p>no image</p>", placeholder="https://p.example/x.png") == (
        "https://p.example/x.png"
    )
    assert pick_image(make_entry(), "<p>no image</p>") == ""
    assert pick_image(make_entry(images=("not a url",)), "") == ""


def test_entry_to_post_follows_the_spec() -> None:
    entry = make_entry(
        title="Plain title",
        author="A. Reporter",
        content_html='<p onclick="x">Body</p><img src="/a.jpg">',
        summary_html="<p>Summary</p>",
        published=datetime(2022, 3, 1, 21, 31, 34, tzinfo=UTC),
        updated=datetime(2023, 1, 1, tzinfo=UTC),
    )
    post = entry_to_post(entry, group="G", outlet="Outlet", section="S", first_seen=FIRST_SEEN)
    assert post == Post(
        title="Plain title",
        group="G",
        outlet="Outlet",
        section="S",
        body='<p>Body</p><img src="https://news.example.com/a.jpg" referrerpolicy="no-referrer">',
        date=datetime(2022, 3, 1, 21, 31, 34, tzinfo=UTC),
        headimg="https://news.example.com/a.jpg",
        thumbnail="https://news.example.com/a.jpg",
        author="Outlet",
        comments=False,
    )
    assert "date: Tue, 01 Mar 2022 21:31:34 GMT" in render(post)


def test_entry_to_post_date_and_body_fallbacks() -> None:
    updated = datetime(2023, 1, 1, tzinfo=UTC)
    only_updated = make_entry(updated=updated, content_html="  ", summary_html="<p>s</p>")
    post = entry_to_post(only_updated, group="g", outlet="o", section="s", first_seen=FIRST_SEEN)
    assert post.date == updated
    assert post.body == "<p>s</p>"
    undated = entry_to_post(
        make_entry(), group="g", outlet="o", section="s", first_seen=FIRST_SEEN,
        placeholder_image="https://p.example/x.png",
    )  # fmt: skip
    assert undated.date == FIRST_SEEN
    assert undated.body == ""
    assert undated.headimg == undated.thumbnail == "https://p.example/x.png"
    full = entry_to_post(
        make_entry(content_html="<p>feed</p>"), group="g", outlet="o", section="s",
        first_seen=FIRST_SEEN, body_html="<p>full {text}</p>",
    )  # fmt: skip
    assert full.body == "<p>full &#123;text&#125;</p>"


# --------------------------------------------------------------------------
# Full text

PAGE = """<!DOCTYPE html><html><head><title>t</title><base href="https://cdn.example/site/">
<script>var x = 1;</script></head><body><nav><a href="/">home</a></nav>
<article class="post"><h1>Headline</h1><div class="share"><a href="s">share</a></div>
<p>First {para}.</p><img src="img/a.jpg"><script>track()</script>
<aside class="related"><a href="r.html">related</a></aside></article></body></html>"""


def test_extract_full_text_selects_removes_and_cleans() -> None:
    body = extract_full_text(
        PAGE, selector="article.post", remove=[".share", "aside"], base_url=BASE
    )
    assert body == (
        "<h1>Headline</h1>\n<p>First &#123;para&#125;.</p>"
        '<img src="https://cdn.example/site/img/a.jpg" referrerpolicy="no-referrer" />'
    )


def test_extract_full_text_errors_are_content_errors() -> None:
    with pytest.raises(ContentError, match="matched nothing"):
        extract_full_text(PAGE, selector="div.missing", base_url=BASE)
    with pytest.raises(ContentError, match="invalid CSS selector"):
        extract_full_text(PAGE, selector="div[", base_url=BASE)


# --------------------------------------------------------------------------
# Safe as rendered (Hexo): rule by rule; tests/test_render_safety.py reads
# the results with html5lib and with real Hexo


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A blank line would end Hexo's HTML block: it joins the next line.
        ("<p>a</p>\n\n<p>b</p>", "<p>a</p>\n <p>b</p>"),
        ("<p>a</p>\n \t\n\n<p>b</p>", "<p>a</p>\n \t  <p>b</p>"),
        ("<p>a</p>\r\n\r\n<p>b</p>", "<p>a</p>\r\n <p>b</p>"),
        ("\n<p>b</p>", " <p>b</p>"),
        # ...keeping its newlines where they show.
        ("<pre>a\n\nb</pre>", "<pre>a\n&#10;b</pre>"),
        ('<p title="a\n\nb">t</p>', '<p title="a\n&#10;b">t</p>'),
        # Code fences at a line start would become Hexo code blocks.
        ("<p>x\n```\ny\n```</p>", "<p>x\n&#96;``\ny\n&#96;``</p>"),
        ("<p>x\n> ~~~</p>", "<p>x\n> &#126;~~</p>"),
        # Hexo cuts the index excerpt at <!-- more -->.
        ("<b>a<!-- more -->b</b>", "<b>ab</b>"),
        # Markdown links to script URLs lose their syntax, not their text.
        ("<p>[x](javascript:alert(1))</p>", "<p>[x]&#40;javascript:alert(1))</p>"),
        ("[x]( jav&#x61;script:alert(1))", "[x]&#40; jav&#x61;script:alert(1))"),
        ("[x](javascript\\:alert(1))", "[x]&#40;javascript\\:alert(1))"),
        ("[1]: javascript:alert(1)", "[1]&#58; javascript:alert(1)"),
        ("[x](https://ok.example/) [y]: https://ok.example/", None),
        # Markdown autolinks to script URLs are not tags either.
        ("a<javascript:alert.call>b", "ab"),
    ],
)
def test_bodies_never_read_as_markdown(body: str, expected: str | None) -> None:
    assert clean_html(body, base_url=None) == (body if expected is None else expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '<p>Breaking: <a href="https://x/"><b>read more',
            '<p>Breaking: <a href="https://x/"><b>read more</b></a>',
        ),
        ("<div><div><span>x", "<div><div><span>x</span></div></div>"),
        ("<p>x</p></div></article>", "<p>x</p>"),
        ("<ul><li>one<li>two</ul>", None),
        ("<table><tr><td>a<td>b</table>", None),
        ("<p>a<p>b", None),
        ("<svg><path d=M0></svg>", None),
        ("<i><p>x</i>y</p>", "<i><p>x</p></i>y</p>"),
        ("<a href=x>1<a href=y>2</a>", "<a href=x>1</a><a href=y>2</a>"),
        ("<<</a>script>", "&lt;&lt;script>"),
        ("<body onload=x><p>t", "<p>t"),
        ("<select><option>x</select>", "x"),
        # Found by hypothesis against html5lib: a breakout tag leaves the SVG
        # before any end tag written in front of it; a table straight inside
        # a table closes it (so the body's </div> would close the post's).
        ("<nobr><svg><nobr>", "<nobr><svg></svg></nobr><nobr></nobr>"),
        ("<table><div><table>", "<table><div><table></table>"),
        # Table parts outside a table are ignored by the parser, so by us.
        ("<tbody><div><tbody>", "<tbody><div><tbody></div>"),
    ],
)
def test_bodies_are_balanced(body: str, expected: str | None) -> None:
    """Every element opened is closed in the body, no end tag closes the theme's."""
    assert clean_html(body, base_url=None) == (body if expected is None else expected)


@pytest.mark.parametrize(
    "body",
    [
        '<svg><a><animate attributeName=href values="javascript:alert(1)"/></a></svg>',
        '<svg><a><animate attributeName="xlink:href" values="https://a/;javascript:x"/></a></svg>',
        '<svg><a><set attributeName="href" to="data:text/html,x"/></a></svg>',
        '<svg><set attributeName="onmouseover" to="alert(1)"/></svg>',
        '<svg><a><animate attributeName=HREF from="https://a/" to="x"/></a></svg>',
    ],
)
def test_svg_animation_cannot_set_a_script_url_or_handler(body: str) -> None:
    out = clean_html(body, base_url=None)
    assert not re.search(r"\b(?:values|from|to|by)=", out), out


def test_header_images_are_urls_a_theme_can_print_unescaped() -> None:
    entry = make_entry(images=("https://img.example/a.jpg?x=\"><script>'`",))
    post = entry_to_post(entry, group="g", outlet="o", section="s", first_seen=FIRST_SEEN)
    assert post.headimg == post.thumbnail == "https://img.example/a.jpg?x=%22%3E%3Cscript%3E%27%60"
    body = '<img src="https://img.example/a b\'c.jpg">'
    post = entry_to_post(
        make_entry(content_html=body), group="g", outlet="o", section="s", first_seen=FIRST_SEEN
    )
    assert post.headimg == "https://img.example/a%20b%27c.jpg"
    assert header_image_url("https://img.example/x.jpg") == "https://img.example/x.jpg"
    assert header_image_url("javascript:alert(1)") is None


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        (
            "C++: vector<int> and map<string,int>",
            "C++: vector<\u2060int> and map<\u2060string,int>",
        ),
        ("if a<b then", "if a<\u2060b then"),
        ("a < b </x> <!x <?y", "a < b <\u2060/x> <\u2060!x <\u2060?y"),
        ("莫斯科强调", "莫斯科强调"),
    ],
)
def test_titles_are_stored_inert_with_every_word(title: str, stored: str) -> None:
    post = entry_to_post(
        make_entry(title=title), group="g", outlet="o", section="s", first_seen=FIRST_SEEN
    )
    assert post.title == stored == inert_title(stored)
    assert post.title.replace("\u2060", "") == title
