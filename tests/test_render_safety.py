"""Posts are safe as the site renders them, not only as HTML.

A post file goes through Hexo: its Markdown renderer (hexo-renderer-marked,
for which our body is raw HTML only while no blank line ends the ``<div>``
block), its code-fence and excerpt filters, and a theme that prints the
title and image fields, often unescaped, next to other posts on the index
page.  Two independent readings check the result:

* html5lib, a well-kept HTML5 parser, reads every cleaned attack body the
  way a browser would, inside a post wrapper followed by the next post: no
  dangerous element, attribute or URL survives, and nothing the body opens
  reaches the next post (a list of attacks, plus hypothesis tag soup);
* real Hexo 8 (tests/hexo, pinned by its package-lock.json, installed by
  ``.ci/run`` with ``npm ci``) renders posts built from the same attacks by
  the real parse and content stages, and html5lib reads the generated
  pages.  Skipped, with the reason, when node or the installed site is
  missing.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import html5lib
import pytest
from feedbuild import rss_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paths import REPO

from aggregator.content.clean import clean_html, entry_to_post
from aggregator.hexo.post import Post, render
from aggregator.parse.parser import parse_feed

BASE = "https://news.example.com/2022/story.html"

#: (id, body) pairs: every way we know to get script or stray markup past
#: a sanitiser that only thinks in HTML.
ATTACKS: list[tuple[str, str]] = [
    ("md-inline", "<p>a</p>\n\n[click](javascript:alert(1))"),
    ("md-reference", "<p>a</p>\n\n[ref][1]\n\n[1]: javascript:alert(2)"),
    ("md-backslash", "<p>a</p>\n\n[c](javascript\\:alert(3))"),
    ("md-entity", "<p>a</p>\n\n[d](jav&#x61;script:alert(4))"),
    ("md-entity-colon", "<p>a</p>\n\n[d](javascript&colon;alert(4))"),
    ("md-angle", "<p>a</p>\n\n[d](<javascript:alert(4)>)"),
    ("md-autolink", "<p>a</p>\n\n<javascript:alert.call>"),
    ("md-image", "<p>a</p>\n\n![i](javascript:alert(4))"),
    ("md-spaces-line", "<p>a</p>\n \t\n[e](javascript:alert(5))"),
    ("md-crlf", "<p>a</p>\r\n\r\n[f](javascript:alert(6))"),
    ("md-cr", "<p>a</p>\r\r[f](javascript:alert(6))"),
    ("md-first-line", "\n[f](javascript:alert(6))"),
    ("md-no-blank-line", "<p>[g](javascript:alert(7)) [h]: vbscript:x</p>"),
    ("md-after-removed-tag", "<p>a</p>\n<script>x</script>\n[x](javascript:alert(7))"),
    ("md-in-attribute", '<p title="a\n\n[x](javascript:alert(13))">t</p>'),
    ("md-in-comment", "<!-- a\n\n-->[x](javascript:alert(13))"),
    ("md-in-tag", '<img\n\nsrc="https://img.example/x.jpg">\n[x](javascript:alert(13))'),
    ("pre-blank-lines", "<pre>line1\n\n[x](javascript:alert(12))\n \n</pre>"),
    ("fence", "<p>x</p>\n```\n</p><b>\n```\n<p>y</p>"),
    ("fence-tilde-quote", "<p>x\n> ~~~\n<i>\n> ~~~\n</p>"),
    ("more", "<b>bold <!-- more --> rest</b><p>after</p>"),
    (
        "svg-animate-href",
        '<svg><a><animate attributeName=href values="javascript:alert(9)"/>'
        "<text x=20 y=20>click</text></a></svg>",
    ),
    (
        "svg-animate-list",
        '<svg><a><animate attributeName="xlink:href" '
        'values="https://ok.example/;&#106;avascript:alert(10)"/></a></svg>',
    ),
    ("svg-set-handler", '<svg><set attributeName="onmouseover" to="alert(11)"/></svg>'),
    ("svg-set-to", '<svg><a><set attributeName="href" to="data:text/html,x"/></a></svg>'),
    ("unclosed-link-bold", '<p>Breaking: <a href="https://x.example/"><b>read more'),
    ("unclosed-divs", "<div><div><span>x"),
    ("unclosed-table", "<table><tr><td>cell"),
    ("unclosed-list", "<ul><li>one<li>two"),
    ("stray-end-tags", "<p>x</p></div></div></article></main></body>"),
    ("misnested", "<i><p>x</i>y</p><b><div>z</b>w</div>"),
    ("template", "<template><p>x"),
    ("foreign-object", "<svg><foreignObject><p><b>x"),
    ("mathml", "<math><mi><b>x"),
    ("select", "<select><option>x"),
    ("nested-links", '<a href="https://a.example/">x<a href="https://b.example/">y'),
    ("body-attributes", '<body onload="alert(1)" style="display:none"><p>x'),
    ("formatting-in-table", "<b><table><td>x</b>"),
    ("marquee", "<marquee><b>x"),
    ("nobr", "<nobr><nobr>x"),
    ("heading", "<h1><h2>x"),
    ("table-in-table", "<table><div><table>x</div>"),
    ("breakout", "<nobr><svg><nobr>x"),
    ("font-in-svg", '<svg><font color="red"><b>x'),
    ("raw-less-than", "<<</a>script>alert(1)<</a>/script>"),
    ("event-handlers", '<img src=x onerror=alert(1)><p ONCLICK="alert(1)">x</p>'),
    ("script-url-attrs", '<a href=" &#106;avascript:alert(1)">x</a><form action=javascript:x>'),
]

_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "livescript:", "mocha:")
_URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "xlink:href", "poster", "data", "background",
    "srcset", "values", "from", "to", "by", "cite", "longdesc",
}  # fmt: skip
_FORBIDDEN = {
    "script", "iframe", "object", "embed", "style", "base", "meta", "link", "form", "frame",
    "frameset", "applet", "noscript",
}  # fmt: skip
_IGNORED_IN_URLS = re.compile("[\x00-\x20\x7f-\x9f]")


def _local(name: str) -> str:
    """``{namespace}name`` -> ``name``."""
    return name.rpartition("}")[2].lower()


def _parse(document: str) -> Element:
    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False)
    return parser.parse(document)  # type: ignore[no-any-return]


def _dangerous_url(value: str) -> bool:
    for item in value.split(";") + value.split(","):
        compact = _IGNORED_IN_URLS.sub("", html.unescape(item)).lower()
        if compact.startswith(_SCRIPT_SCHEMES) or compact.startswith("data:text/html"):
            return True
    return False


def assert_no_script(root: Element, *, theme_scripts: int = 0, where: str = "") -> None:
    """No script element (but the theme's), no handler, no script URL anywhere."""
    scripts = 0
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # comments
        tag = _local(element.tag)
        if tag == "script" and element.get("id") == "theme-script":
            scripts += 1
            continue
        assert tag not in _FORBIDDEN, f"{where}: <{tag}> survived"
        for raw_name, value in element.attrib.items():
            name = _local(raw_name).replace("{http://www.w3.org/1999/xlink}", "xlink:")
            assert not name.startswith("on"), f"{where}: <{tag} {name}> survived"
            if name in _URL_ATTRIBUTES or _local(raw_name) in _URL_ATTRIBUTES:
                assert not _dangerous_url(value), f"{where}: <{tag} {name}={value!r}> survived"
            compact = _IGNORED_IN_URLS.sub("", value).lower()
            assert not compact.startswith(_SCRIPT_SCHEMES), f"{where}: {name}={value!r}"
    assert scripts == theme_scripts, f"{where}: {scripts} theme scripts, not {theme_scripts}"


def read_in_page(body: str) -> tuple[Element, Element, Element]:
    """The body as a browser builds it inside a post, with the next post after it.

    Returns the page's ``<body>``, the post wrapper and the next post's paragraph.
    """
    document = (
        "<!DOCTYPE html><html><head><title>t</title></head><body>"
        f'<div id="post">   \n{body}\n  \n</div><p id="next">NEXT</p></body></html>'
    )
    root = _parse(document)
    page = root.find("body")
    assert page is not None
    children = list(page)
    return page, children[0], children[-1]


def assert_contained(body: str) -> None:
    """The body's elements all end inside the post: the page body holds the post
    and the next post, side by side, and the next post is plain."""
    page, post, after = read_in_page(body)
    assert [(c.tag, c.get("id")) for c in page] == [("div", "post"), ("p", "next")], (
        body,
        [(c.tag, c.get("id")) for c in page],
    )
    assert list(after) == [] and after.text == "NEXT", body
    assert page.text in (None, "") and (post.tail or "") == "", body
    assert_no_script(page, where=body)


def assert_no_markdown_trigger(body: str) -> None:
    """What keeps the whole body inside Hexo's HTML block: no blank line
    (marked: a line of spaces and tabs), no code fence at a line start."""
    lines = re.split(r"\r\n|\r|\n", body)
    # The last line may be blank: the post format's own blank line follows it,
    # and after that comes only the closing </div>.
    assert all(line.strip(" \t") for line in lines[:-1]), body
    assert not any(re.match(r"(?:\s*>){0,3}\s*(```|~~~)", line) for line in lines), body


@pytest.mark.parametrize(("name", "body"), ATTACKS, ids=[name for name, _ in ATTACKS])
def test_attacks_are_safe_as_a_browser_reads_them(name: str, body: str) -> None:
    cleaned = clean_html(body, base_url=BASE)
    assert_contained(cleaned)
    assert_no_markdown_trigger(cleaned)
    assert "<!-- more -->" not in cleaned
    assert clean_html(cleaned, base_url=BASE) == cleaned  # idempotent


def test_the_wrapper_check_can_fail() -> None:
    """The containment check catches what it should (so passing means something)."""
    for leaky in ("<b>x", "<div>x", "</div>", "<table><td>x", "<a href=x>y"):
        with pytest.raises(AssertionError):
            assert_contained(leaky)


def test_pre_blank_lines_keep_their_meaning() -> None:
    body = "<pre>line1\n\nline3\n \n</pre>"
    cleaned = clean_html(body, base_url=BASE)
    assert "\n\n" not in cleaned
    _, post, _ = read_in_page(cleaned)
    pre = post.find("pre")
    assert pre is not None and pre.text == "line1\n\nline3\n \n"


def test_attribute_blank_lines_keep_their_meaning() -> None:
    cleaned = clean_html('<p title="a\n\nb">t</p>', base_url=BASE)
    _, post, _ = read_in_page(cleaned)
    paragraph = post.find("p")
    assert paragraph is not None and paragraph.get("title") == "a\n\nb"


# --------------------------------------------------------------------------
# Tag soup

_TAGS = [
    "a", "b", "i", "em", "strong", "font", "nobr", "p", "div", "span", "ul", "ol", "li", "dl",
    "dt", "dd", "table", "tbody", "tr", "td", "th", "caption", "h1", "h2", "pre", "svg",
    "math", "mi", "foreignObject", "desc", "g", "animate", "set", "template", "marquee",
    "button", "select", "option", "body", "html", "object", "center", "blockquote", "section",
    "img", "br", "hr", "script", "iframe", "style", "textarea", "noscript",
]  # fmt: skip
_ATTRIBUTES = [
    'href="https://e.example/"', 'href="javascript:alert(1)"', "onclick=alert(1)",
    'attributeName="href"', 'values="x;javascript:alert(1)"', 'to="javascript:alert(1)"',
    'color="red"', 'src="https://e.example/i.jpg"', "title='a\n\nb'",
]  # fmt: skip
_TEXT = [
    "x", "\n", "\n\n", "\n \n", "[l](javascript:alert(1))", "[r]: javascript:alert(1)", "```",
    "\n```\n", "<!-- more -->", "中文", " ", "<", "&lt;b&gt;",
]  # fmt: skip
_start = st.builds(
    lambda name, attrs, end: f"<{name}{''.join(' ' + a for a in attrs)}{end}",
    st.sampled_from(_TAGS),
    st.lists(st.sampled_from(_ATTRIBUTES), max_size=2),
    st.sampled_from([">", ">", "/>"]),
)
_end = st.builds(lambda name: f"</{name}>", st.sampled_from([*_TAGS, "article", "main"]))
tag_soup = st.lists(st.one_of(_start, _start, _end, st.sampled_from(_TEXT)), max_size=16).map(
    "".join
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=tag_soup)
def test_tag_soup_is_contained_and_inert(body: str) -> None:
    cleaned = clean_html(body, base_url=BASE)
    assert_contained(cleaned)
    assert_no_markdown_trigger(cleaned)
    assert clean_html(cleaned, base_url=BASE) == cleaned


# --------------------------------------------------------------------------
# Real Hexo

HEXO_SITE = REPO / "tests" / "hexo"
HEXO_BIN = HEXO_SITE / "node_modules" / "hexo" / "bin" / "hexo"

#: (title as the feed writes it, what a reader must see)
TITLES: list[tuple[str, str]] = [
    ("C++: vector&lt;int&gt; and map&lt;string,int&gt;", "C++: vector<int> and map<string,int>"),
    ("if a&lt;b then", "if a<b then"),
    ("&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;标题", "标题"),
    ("&lt;b&gt;粗体&lt;/b&gt; 标题", "粗体 标题"),
    ("&lt;img src=x onerror=alert(1)&gt;图", "图"),
    ("It&apos;s &quot;quoted&quot; &amp; 1&lt;2", 'It\'s "quoted" & 1<2'),
    # Removing <b></b> joins "<" and "script>": that is a script element, so
    # it goes with everything after it.
    ("&lt;&lt;b&gt;&lt;/b&gt;script&gt;alert(1)", ""),
]
IMAGES = [
    'https://img.example.com/a.jpg?x="><script>alert(1)</script>',
    "https://img.example.com/it's<b>.jpg",
]


def _hexo_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Hexo render tests need Node 20+)"
    if not HEXO_BIN.is_file():
        return f"the Hexo test site is not installed: run `npm ci` in {HEXO_SITE}"
    return None


def _feed() -> bytes:
    """One RSS item per attack body and per title, images in media:thumbnail."""
    items = []
    attacks = ATTACKS + [(f"title-{i}", "<p>body</p>") for i in range(len(TITLES))]
    for index, (name, body) in enumerate(attacks):
        title = TITLES[index - len(ATTACKS)][0] if name.startswith("title-") else name
        image = IMAGES[index % len(IMAGES)]
        cdata = body.replace("]]>", "]]]]><![CDATA[>")
        items.append(
            f"<item><title>{title}</title><link>https://news.example.com/{index}</link>"
            f"<guid>{name}</guid>"
            f'<media:thumbnail url="{html.escape(image)}"/>'
            f"<content:encoded><![CDATA[{cdata}]]></content:encoded></item>"
        )
    return rss_document("".join(items)).encode()


def _posts() -> list[tuple[str, Post]]:
    parsed = parse_feed(_feed(), url="https://news.example.com/feed", content_type=None)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    posts = []
    for index, entry in enumerate(parsed.entries):
        post = entry_to_post(
            entry,
            group="新媒体",
            outlet="Outlet",
            section="新闻",
            first_seen=start,
            date=start + timedelta(minutes=index),
        )
        posts.append((f"p{index:03d}", post))
    return posts


#: A body written as is, not through aggregator: shows the site really does
#: read blank-line-separated text as Markdown (so the checks can fail).
CONTROL_BODY = "<p>control</p>\n\n[control](javascript:alert(0))"


@pytest.fixture(scope="module")
def hexo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    missing = _hexo_missing()
    if missing:
        pytest.skip(missing)
    site = tmp_path_factory.mktemp("hexo")
    for name in ("_config.yml", "package.json", "themes"):
        source = HEXO_SITE / name
        if source.is_dir():
            shutil.copytree(source, site / name)
        else:
            shutil.copy(source, site / name)
    (site / "node_modules").symlink_to(HEXO_SITE / "node_modules")
    posts_dir = site / "source" / "_posts"
    posts_dir.mkdir(parents=True)
    posts = _posts()
    for slug, post in posts:
        (posts_dir / f"{slug}.md").write_text(render(post), encoding="utf-8", newline="")
    control = Post(
        title="control", group="g", outlet="o", section="s", body=CONTROL_BODY,
        date=datetime(2023, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    (posts_dir / "control.md").write_text(render(control), encoding="utf-8", newline="")
    result = subprocess.run(
        ["node", str(HEXO_BIN), "generate"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    yield {"site": site, "posts": posts}


def _page(site: Path, slug: str) -> Element:
    return _parse((site / "public" / slug / "index.html").read_text(encoding="utf-8"))


def test_hexo_control_post_shows_the_markdown_path_is_real(hexo_site: dict[str, Any]) -> None:
    page = _page(hexo_site["site"], "control")
    hrefs = [a.get("href") for a in page.iter("a")]
    assert "javascript:alert(0)" in hrefs


def test_hexo_renders_every_post_page_without_script(hexo_site: dict[str, Any]) -> None:
    site = hexo_site["site"]
    for slug, post in hexo_site["posts"]:
        page = _page(site, slug)
        body = page.find("body")
        assert body is not None
        assert_no_script(body, where=f"{slug} ({post.title})")
        assert [s.get("id") for s in page.iter("script")] == ["theme-script"], slug
        article = page.find(".//article")
        assert article is not None
        # Nothing in the body reaches past the post's <article>.
        main = page.find(".//main")
        assert main is not None and [c.tag for c in main] == ["article"], slug


def test_hexo_index_keeps_every_post_to_itself(hexo_site: dict[str, Any]) -> None:
    site = hexo_site["site"]
    index = _parse((site / "public" / "index.html").read_text(encoding="utf-8"))
    main = index.find(".//main")
    assert main is not None
    children = list(main)
    slugs = [slug for slug, _ in hexo_site["posts"]] + ["control"]
    assert [c.tag for c in children] == ["article", "p"] * len(slugs)
    for article, sentinel in zip(children[::2], children[1::2], strict=True):
        slug = article.get("data-slug")
        assert sentinel.get("data-after") == slug
        assert list(sentinel) == [] and sentinel.text == "SENTINEL", f"{slug} leaks"
        assert (article.tail or "").strip() == "" and (sentinel.tail or "").strip() == ""
        if slug != "control":
            assert_no_script(article, where=f"index: {slug}")
    scripts = list(index.iter("script"))
    assert [s.get("id") for s in scripts] == ["theme-script"]


def test_hexo_titles_keep_every_word_and_carry_no_markup(hexo_site: dict[str, Any]) -> None:
    site = hexo_site["site"]
    shown = {}
    for slug, post in hexo_site["posts"]:
        page = _page(site, slug)
        heading = page.find(".//h1[@class='post-title']")
        assert heading is not None
        assert list(heading) == [], f"{slug}: the title made elements: {post.title!r}"
        shown[slug] = (heading.text or "").replace("\u2060", "")
        title = page.find(".//title")
        assert title is not None and list(title) == []
        expected_title = shown[slug] or "render-safety"  # the theme falls back to the site's
        assert (title.text or "").replace("\u2060", "") == expected_title, (slug, post.title)
    titles = list(shown.values())[len(ATTACKS) :]
    assert titles == [expected for _, expected in TITLES]


def test_hexo_image_fields_stay_inside_their_attribute(hexo_site: dict[str, Any]) -> None:
    site = hexo_site["site"]
    for slug, post in hexo_site["posts"]:
        page = _page(site, slug)
        images = [img for img in page.iter("img") if img.get("class") in ("headimg", "thumbnail")]
        assert len(images) == 2, slug
        for img in images:
            assert set(img.attrib) == {"class", "src"}, (slug, img.attrib)
            assert img.get("src") == post.headimg
            assert re.fullmatch(r"https://[^\s\"'<>`]+", img.get("src") or ""), img.get("src")
