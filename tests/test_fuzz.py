"""Fuzzing the two parsers that read text from outside: the post format and the body clean-up.

* ``aggregator.hexo.post.parse`` reads files people edit by hand (``aggregator
  replay``): whatever it is given, it either returns a post or raises
  ``PostFormatError`` naming the line -- never another exception, which
  would abort a whole replay instead of reporting one file.
* ``aggregator.content.clean.clean_html`` reads bodies written by whoever controls
  a feed: it must never crash, and what it returns must be safe read by
  *two* independent parsers (Python's ``html.parser`` and libxml2 via
  ``lxml.html``), because they disagree on comments, CDATA and bogus markup
  in the places where sanitisers are usually bypassed -- and the output is
  checked every time, including when the clean-up left the body as it was.

tests/test_content.py already has a grammar of hostile tags and attributes
and checks idempotence; this file adds what it lacks: entity-obfuscated
script URLs generated character by character, SVG/MathML foreign content,
``noscript``/comment/CDATA confusion, arbitrary unicode, and the lxml view.
Example counts are modest so the file runs in seconds in CI; raise
``max_examples`` locally when hunting for bugs.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import lxml.html
import pytest
from feedbuild import seed_paths
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aggregator.content.clean import clean_html
from aggregator.hexo.post import PostFormatError, parse, render

BASE = "https://news.example.com/2024/story.html"

# --------------------------------------------------------------------------
# The post format


def _seeds() -> list[str]:
    return [p.read_bytes().decode("utf-8") for p in seed_paths()]


def _parse_or_format_error(text: str) -> None:
    """The property: a post (that renders and reads back the same) or PostFormatError."""
    try:
        post = parse(text, source="fuzz.txt")
    except PostFormatError as exc:
        assert str(exc).startswith("fuzz.txt"), str(exc)
        return
    assert parse(render(post)) == post


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
@example("")
@example("\n---\n")
@example("\n---\n---\n")
@example("\ufeff\n---\ntitle: 'x'\n---\n")
def test_parse_of_arbitrary_text_raises_only_format_errors(text: str) -> None:
    _parse_or_format_error(text)


# Pieces of the format, so mutations land where the parser makes decisions.
_FORMAT_TOKENS = [
    "\n", "\r\n", "\r", "---", "\n---\n", "'", "''", ":", ": ", " - ", "-", " ", "\t",
    "title: ", "categories: ", "date: ", "headimg: ", "comments: ", "author: ",
    "Invalid Date", "Tue, 01 Mar 2022 13:31:34 GMT", "Mon, 31 Feb 2022 25:61:61 GMT",
    "true", "false", "null", "~", "&#123;", "{", "}", "<div>", "</div>", "\ufeff", "\x00",
    "\x85", "\u2028", "中文", "#", "!!python/object:os.system", "&anchor", "*alias", "|", ">",
]  # fmt: skip
_token = st.one_of(st.sampled_from(_FORMAT_TOKENS), st.text(max_size=8))


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    """A seed file with one to four edits: deletions, insertions, line shuffles, cuts."""
    text = draw(st.sampled_from(_seeds()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "lines", "truncate"]))
        at = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif kind == "insert":
            text = text[:at] + draw(_token) + text[at:]
        elif kind == "replace":
            text = text[:at] + draw(_token) + text[at + 1 :]
        elif kind == "truncate":
            text = text[:at]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            how = draw(st.sampled_from(["swap", "duplicate", "drop"]))
            if how == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            elif how == "duplicate":
                lines.insert(j, lines[i])
            else:
                del lines[i]
            text = "\n".join(lines)
    return text


@settings(max_examples=300, deadline=None)
@given(mutated_seed())
def test_parse_of_mutated_seeds_raises_only_format_errors(text: str) -> None:
    _parse_or_format_error(text)


@pytest.mark.parametrize("path", seed_paths(), ids=lambda p: p.name)
def test_every_prefix_of_a_seed_raises_only_format_errors(path: Path) -> None:
    """A file cut short anywhere (a full disk, a killed editor) is reported, not a crash."""
    text = path.read_bytes().decode("utf-8")
    for end in range(0, len(text), 7):
        _parse_or_format_error(text[:end])


# --------------------------------------------------------------------------
# Body clean-up: a grammar of hostile HTML

_JS = "javascript:"
_SEPARATORS = ["", "", "", "\t", "\n", "\r", "&#9;", "&#x0A;", "&Tab;", "&NewLine;", "&#13"]


@st.composite
def obfuscated_char(draw: st.DrawFn, char: str) -> str:
    """One character of a URL scheme as a page may spell it, browsers still reading it."""
    if char == ":" and draw(st.booleans()):
        return draw(st.sampled_from(["&colon;", "&#58;", "&#x3a;", "&#0058", "&#X3A"]))
    code = ord(char)
    form = draw(st.sampled_from(["plain", "upper", "dec", "hex", "padded", "nosemi"]))
    if form == "plain":
        return char
    if form == "upper":
        return char.upper()
    if form == "dec":
        return f"&#{code};"
    if form == "hex":
        return f"&#x{code:x};" if draw(st.booleans()) else f"&#X{code:X};"
    if form == "padded":
        return f"&#{'0' * draw(st.integers(1, 8))}{code};"
    return f"&#{code}"  # numeric references need no semicolon, in attributes too


@st.composite
def script_url(draw: st.DrawFn) -> str:
    """``javascript:alert(1)`` with per-character entities, case, and the tabs,
    newlines and leading controls that the URL parser strips."""
    lead = draw(st.sampled_from(["", " ", "\x01", "\x0e", "\x1f ", "&#1;", "  \n"]))
    scheme = draw(st.sampled_from([_JS, _JS, _JS, "vbscript:", "livescript:"]))
    parts = []
    for char in scheme:
        parts.append(draw(obfuscated_char(char)))
        parts.append(draw(st.sampled_from(_SEPARATORS)))
    return lead + "".join(parts) + draw(st.sampled_from(["alert(1)", "//%0aalert(1)", ""]))


_TAGS = [
    "a", "img", "p", "div", "script", "sCrIpT", "iframe", "IFRAME", "svg", "math", "mtext", "mi",
    "mglyph", "malignmark", "annotation-xml", "foreignObject", "desc", "title", "use", "animate",
    "set", "image", "noscript", "style", "template", "table", "select", "option", "textarea",
    "xmp", "noembed", "object", "embed", "form", "button", "input", "video", "source", "details",
    "body", "base", "meta", "frameset", "plaintext", "listing", "script/x", "iframe\t",
]  # fmt: skip
_EVENT_ATTRIBUTES = [
    "onerror", "ONLOAD", "onfocus", "onmouseover", "OnToggle", "onanimationstart", "onbegin",
    "onpointerenter", "on", "onerror\t", "/onerror",
]  # fmt: skip
_URL_ATTRIBUTE_NAMES = [
    "href", "src", "xlink:href", "XLINK:HREF", "action", "formaction", "data", "srcdoc", "poster",
    "srcset", "background", "values", "to", "from", "by", "lowsrc", "dynsrc", "ping", "cite",
    "data-src", "data-href",
]  # fmt: skip
_OTHER_ATTRIBUTE_NAMES = ["title", "alt", "style", "class", "attributename", "autofocus", "open"]
_benign_value = st.text(alphabet=st.sampled_from(list("ab <>&\"'=/{}!-\n中;#x")), max_size=10)
_attribute_value = st.one_of(
    script_url(),
    _benign_value,
    st.sampled_from(
        [
            "alert(1)",
            "x</noscript><img src=x onerror=alert(1)>",
            "</style><script>alert(1)</script>",
            "background:url(javascript:alert(1))",
            "width:expression(alert(1))",
            "https://ok.example/i.png",
            "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
            "data:image/svg+xml,<svg onload=alert(1)>",
            "href",
        ]
    ),
)


@st.composite
def attribute(draw: st.DrawFn) -> str:
    name = draw(
        st.one_of(
            st.sampled_from(_EVENT_ATTRIBUTES),
            st.sampled_from(_URL_ATTRIBUTE_NAMES),
            st.sampled_from(_OTHER_ATTRIBUTE_NAMES),
        )
    )
    value = draw(_attribute_value)
    quote = draw(st.sampled_from(['"', "'", "", "`"]))
    if quote in ('"', "'"):
        value = value.replace(quote, "")
    elif quote == "":
        value = re.sub(r"[\s>]", "", value)
    gap = draw(st.sampled_from([" ", "\n", "/", "\t", " / ", "\x0c"]))
    if not value and draw(st.booleans()):
        return f"{gap}{name}"
    return f"{gap}{name}={quote}{value}{quote}"


_start_tag = st.builds(
    lambda name, attrs, end: f"<{name}{''.join(attrs)}{end}",
    st.sampled_from(_TAGS),
    st.lists(attribute(), max_size=3),
    st.sampled_from([">", " />", "/>", "", "\n>"]),
)
_end_tag = st.builds(
    lambda name, tail: f"</{name}{tail}>",
    st.sampled_from(_TAGS),
    st.sampled_from(["", " ", " x=y"]),
)
_CONFUSION = [
    "<!--", "-->", "--!>", "<!-->", "<!--->", "<![CDATA[", "]]>", "<![CDATA[ x >", "<!", "<!x>",
    "<?", "?>", "<?xml x?>", "</", "</>", "</ x>", "<", ">", "&", "&amp;", "&lt;script&gt;",
    "<!DOCTYPE html>", "<scr<script>ipt>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<svg><style><img src=x onerror=alert(1)></style></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<svg><![CDATA[ ><img src=x onerror=alert(1)> ]]></svg>",
    "<svg><foreignObject><iframe src=javascript:alert(1)>",
    "<math><annotation-xml encoding=text/html><script>alert(1)</script>",
    "<template><script>alert(1)</script></template>",
    "<select><template><img src=x onerror=alert(1)></template></select>",
    "<!--[if IE]><script>alert(1)</script><![endif]-->",
    "<svg><animate attributeName=href values=javascript:alert(1) /><a><text>x</text></a></svg>",
    "<svg><set attributeName=onload to=alert(1) />",
    "<a href=\"java\nscript:alert(1)\">x</a>",
    "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\">",
    "{{ x }}", "{% y %}", "中文", " ", "\n", "\x00", "\ufffd",
]  # fmt: skip
_text_chunk = st.text(alphabet=st.sampled_from(list("ab <>&\"'=/!-\n\t中;#x:")), max_size=12)
_fragment = st.one_of(
    _start_tag, _start_tag, _start_tag, _end_tag, _text_chunk, st.sampled_from(_CONFUSION)
)
hostile_html = st.lists(_fragment, max_size=14).map("".join)


# --------------------------------------------------------------------------
# What "safe" means, read by two independent parsers

# The URL parser drops tabs and newlines anywhere and C0 controls and spaces
# at the front; comparing with all of them removed over-approximates that.
_URL_IGNORED = re.compile("[\x00-\x20\x7f-\x9f]")
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "livescript:")
_FORBIDDEN_TAGS = {"script", "iframe"}


def _check_attribute(tag: str, name: str, value: str | None, out: str) -> None:
    name = name.lower()
    assert not name.lstrip("\"'/=`").startswith("on"), f"event handler {name!r} on <{tag}>: {out!r}"
    decoded = _URL_IGNORED.sub("", html.unescape(value or "")).lower()
    # A URL runs script only when its scheme is one (``href="x:javascript:"``
    # does not), so any attribute *starting* with one is refused; CSS can
    # call url() anywhere in a style, so there it must not appear at all.
    assert not decoded.startswith(_SCRIPT_SCHEMES), f"{name}={value!r} on <{tag}>: {out!r}"
    if name == "style":
        assert not any(s in decoded for s in _SCRIPT_SCHEMES), f"{name}={value!r}: {out!r}"


class _StdlibView(HTMLParser):
    def __init__(self, out: str) -> None:
        super().__init__(convert_charrefs=True)
        self.out = out
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        assert tag not in _FORBIDDEN_TAGS, self.out
        for name, value in attrs:
            _check_attribute(tag, name, value, self.out)

    handle_startendtag = handle_starttag


def assert_safe(out: str) -> None:
    lowered = out.lower()
    assert "<script" not in lowered, out
    assert "<iframe" not in lowered, out

    stdlib = _StdlibView(out)
    stdlib.feed(out)
    stdlib.close()

    # libxml2 ends comments and bogus declarations where html.parser does not
    # (``<!-->``, ``<![CDATA[ x >``), so markup hidden from one is seen by the other.
    document = lxml.html.document_fromstring(f"<!DOCTYPE html><html><body>{out}</body></html>")
    for element in document.iter():
        if not isinstance(element.tag, str):  # comments, processing instructions
            continue
        tag = element.tag.lower()
        assert tag not in _FORBIDDEN_TAGS, out
        for name, value in element.attrib.items():
            _check_attribute(tag, str(name), str(value), out)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile_html, base=st.sampled_from([None, BASE]))
@example(body="<svg><![CDATA[ x ><img src=x onerror=alert(1)> ]]></svg>", base=None)
@example(body="<!--><img src=x onerror=alert(1)>-->", base=None)
@example(body='<a href="&#x6a;&#X41;vascript&colon;alert(1)">x</a>', base=BASE)
@example(body='<a href="j&#x0000000061vascript:1">x</a>', base=None)
@example(body='<svg><a xlink:href="&#106;avascript:1"><text>x</text></a></svg>', base=None)
def test_hostile_html_comes_out_safe_to_both_parsers(body: str, base: str | None) -> None:
    assert_safe(clean_html(body, base_url=base))


@settings(max_examples=200, deadline=None)
@given(
    url=script_url(),
    name=st.sampled_from(_URL_ATTRIBUTE_NAMES),
    tag=st.sampled_from(["a", "img", "svg"]),
)
def test_every_spelling_of_a_script_url_is_removed(url: str, name: str, tag: str) -> None:
    """Character-by-character entity obfuscation, in any URL attribute."""
    body = f'<{tag} {name}="{url.replace(chr(34), "")}">x'
    out = clean_html(body, base_url=BASE)
    assert_safe(out)
    decoded = _URL_IGNORED.sub("", html.unescape(url)).lower()
    if decoded.startswith(_SCRIPT_SCHEMES):
        assert name.lower() + "=" not in out.lower(), out


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_clean_up_and_comes_out_safe(text: str) -> None:
    for base in (None, BASE):
        assert_safe(clean_html(text, base_url=base))
