"""Entry -> Post: HTML clean-up, the post image and full-text extraction.  Pure.

The archives want a body that is already clean to come out *exactly* as it
went in, so :func:`clean_html` never re-serialises a document.  It runs one
pass of an HTML5-conformant tokenizer over the string and rewrites only the
tokens that need it; every other byte is copied.  When no token needs
anything the original string object is returned.

Why a tokenizer rather than a tree (lxml, BeautifulSoup): re-serialising a
tree changes what needs no change (``&resize`` -> ``&amp;resize``, ``alt`` ->
``alt=""``), and a parser whose idea of the document differs from the
browser's (libxml2 knows HTML4 entities, not ``&colon;``; it treats
``<!-->`` and ``<noscript>`` differently) is how sanitisers get bypassed.
Tokenization is the part of HTML5 that decides what is a tag, an attribute
or a comment; it is small, fully specified, and the only part that matters
here, because the output never contains an element that changes the
tokenizer's state (script, style, textarea, title, xmp, iframe, noembed,
noframes, noscript, plaintext are all gone).  So a browser reads our output
token for token as we do.

Policy (the product spec, plus the decisions it left open):

* Removed with their content: ``script``, ``style`` (a ``<style>`` in a post
  restyles the whole blog page, and brace escaping would corrupt the CSS
  anyway), ``iframe``, ``noembed``, ``noframes``, ``textarea``, ``title``,
  ``xmp`` -- all elements whose content the browser does not parse as markup.
* Removed as tags, content kept (what a browser shows when they do nothing):
  ``object``, ``applet``, ``embed``, ``param``, ``form``, ``base``, ``meta``,
  ``link``, ``frame``, ``frameset``, ``noscript`` (its content is usually the
  real image behind a lazy-loader), ``plaintext``, ``portal``,
  ``fencedframe``, ``isindex``; also tags with names no element has
  (``<script;>``, ``<a"b>``) and look-alikes of the removed ones
  (``<script-x>``), so no ``<script`` or ``<iframe`` survives even for naive
  scanners downstream.
* Attributes: every ``on*`` handler goes; URL attributes whose scheme is
  ``javascript:``, ``vbscript:``, ``livescript:``, ``mocha:`` or ``data:``
  go, after HTML5 entity decoding and the URL parser's own stripping of
  tabs, newlines and leading controls; the one ``data:`` kept is a raster
  image (png, gif, jpeg, webp, avif, bmp; not SVG) in ``img src``, because
  lazy-loading placeholders use it and it cannot run code.  Any attribute
  whose value *is* a script URL goes too (``data-href="javascript:..."`` is
  how lazy-loaders get tricked).  ``style`` attributes go when they contain
  ``expression(``, ``behavior:``, ``-moz-binding`` or a script URL.
* ``href``, ``src``, ``srcset`` and ``poster`` are made absolute against
  ``base_url``; ``#fragment`` links stay as they are (footnotes must keep
  working inside the post).
* Every ``<img>`` gets ``referrerpolicy="no-referrer"``.
* A ``<`` that is not markup stays text (escaped as ``&lt;`` whenever the
  body is rewritten anyway), as does any ``<`` inside an attribute value;
  comments with markup inside (IE conditional comments) and unterminated
  tags or comments at the end (they would swallow the post's closing
  ``</div>``) are dropped.
* ``{`` and ``}`` become ``&#123;`` and ``&#125;`` so Hexo leaves them alone.
"""

from __future__ import annotations

import bisect
import html
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html.entities import html5 as _HTML5_ENTITIES
from urllib.parse import urljoin

from aggregator.errors import AggregatorError
from aggregator.hexo.post import Post
from aggregator.types import Entry

__all__ = [
    "ContentError",
    "clean_html",
    "entry_to_post",
    "extract_full_text",
    "header_image_url",
    "inert_title",
    "pick_image",
]


class ContentError(AggregatorError, ValueError):
    """Full text could not be extracted (selector matched nothing or is invalid)."""


def clean_html(html: str, *, base_url: str | None) -> str:
    """The body made safe and self-contained; unchanged bodies come back as is."""
    return _render_safe(_clean(html, base_url).html)


def pick_image(entry: Entry, body_html: str, *, placeholder: str = "") -> str:
    """The post image: the feed's own image, else the body's first, else the placeholder."""
    return _choose_image(entry, lambda: _first_image(body_html), placeholder)


def entry_to_post(
    entry: Entry,
    *,
    group: str,
    outlet: str,
    section: str,
    first_seen: datetime,
    placeholder_image: str = "",
    body_html: str | None = None,
    date: datetime | None = None,
) -> Post:
    """One entry as an archive post.

    ``body_html`` replaces the feed's body (full text fetched elsewhere);
    ``date`` replaces the entry's own date (the feed's date rules, applied
    by the caller with :func:`aggregator.policy.dates.effective_date`).
    The author is the outlet, as the archives want; the entry's own author
    stays in the stored raw entry.  A post always has a date: the entry's,
    else when we first saw it.
    """
    if body_html is None:
        body_html = entry.content_html if entry.content_html.strip() else entry.summary_html
    cleaned = _clean(body_html, entry.base_url)
    image = _choose_image(entry, lambda: cleaned.first_image, placeholder_image)
    return Post(
        title=inert_title(entry.title),
        group=group,
        outlet=outlet,
        section=section,
        body=_render_safe(cleaned.html),
        date=date or entry.published or entry.updated or first_seen,
        headimg=image,
        thumbnail=image,
        author=outlet,
        comments=False,
    )


def extract_full_text(
    page_html: str,
    *,
    selector: str,
    remove: Sequence[str] = (),
    base_url: str | None,
) -> str:
    """The inner HTML of the first element matching ``selector``, cleaned.

    ``remove`` selectors (share bars, related links, ads) are deleted inside
    it first.  A ``<base href>`` in the page is honoured, as the browser
    would when it resolved the page's relative links.
    """
    # Imported here: only feeds with a full_text rule need a tree, and the
    # parse workers that import this module start faster without it.
    from bs4 import BeautifulSoup
    from soupsieve import SelectorSyntaxError

    soup = BeautifulSoup(page_html, "lxml")
    try:
        found = soup.select_one(selector)
        if found is None:
            raise ContentError(f"selector {selector!r} matched nothing in the page")
        for unwanted in remove:
            for element in found.select(unwanted):
                element.decompose()
    except SelectorSyntaxError as exc:
        raise ContentError(f"invalid CSS selector: {exc}") from None
    base_tag = soup.find("base", href=True)
    page_href = base_tag.get("href") if base_tag is not None else None
    if isinstance(page_href, str) and page_href.strip():
        base_url = urljoin(base_url or "", page_href.strip())
    return clean_html(found.decode_contents().strip(), base_url=base_url)


# --------------------------------------------------------------------------
# Images


def _choose_image(entry: Entry, first_in_body: Callable[[], str | None], placeholder: str) -> str:
    """Feed images first; the body is only scanned when the feed named none."""
    for candidate in entry.images:
        usable = header_image_url(candidate)
        if usable is not None:
            return usable
    # The body's image went through header_image_url already; the
    # placeholder is the operator's (it may be a site path) and only encoded.
    return first_in_body() or _HEADER_URL_UNSAFE.sub(_percent_encode, placeholder.strip(_SPACE))


def header_image_url(url: str | None) -> str | None:
    """``url`` as ``headimg``/``thumbnail`` can carry it, or None when it cannot.

    Themes print these fields into ``src="..."``, ``src='...'`` or even an
    unquoted ``src=...``, usually unescaped (``<%- %>``).  So the URL written
    to the front matter has every character that could end such an
    attribute or open a tag percent-encoded -- space, ``"``, ``'``, ``<``,
    ``>`` and the backtick -- which is how a browser would request it anyway
    (WHATWG URL percent-encodes them), so the image is the same.  What is
    left must be an http(s) URL without controls or other whitespace.
    """
    if url is None:
        return None
    encoded = _HEADER_URL_UNSAFE.sub(_percent_encode, url.strip(_SPACE))
    return encoded if _usable_image(encoded) else None


_HEADER_URL_UNSAFE = re.compile("[ \"'<>`]")


def _percent_encode(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _usable_image(url: str | None) -> bool:
    """An http(s) URL a post header can carry (no controls, no whitespace).

    ``data:`` placeholders and relative URLs (no base was known) are skipped:
    neither makes a usable header image.
    """
    return url is not None and _HTTP_URL.match(url) is not None


_HTTP_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f-\x9f\ufeff\ufffe\uffff\ud800-\udfff]+\Z", re.I)


def _first_image(body: str) -> str | None:
    """The first usable ``<img src>`` of an (already cleaned) body."""
    for token in _tokens(body):
        if isinstance(token, _Tag) and not token.closing and token.name in _IMAGE_TAGS:
            src = header_image_url(_attribute_value(body, token, "src"))
            if src is not None:
                return src
    return None


# --------------------------------------------------------------------------
# Tokenizer (HTML5 "data state" tokenization, WHATWG HTML section 13.2.5)


@dataclass(frozen=True, slots=True)
class _Attr:
    sep_start: int  # where the separator before the name starts
    start: int  # name start
    name_end: int
    value_start: int  # -1 when the attribute has no value
    value_end: int
    end: int  # end of the whole attribute, closing quote included
    name: str  # ASCII-lowercased


@dataclass(frozen=True, slots=True)
class _Tag:
    start: int
    end: int
    name: str  # ASCII-lowercased
    closing: bool
    attrs: tuple[_Attr, ...]
    tail_start: int  # the "[ /]*>" that ends the tag


@dataclass(frozen=True, slots=True)
class _Text:
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Comment:  # comments, bogus comments, doctypes, CDATA outside foreign content
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _RawText:  # content of script/style/...: never parsed as markup
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Unterminated:  # a tag or comment cut off by the end of the string
    start: int
    end: int


_Token = _Tag | _Text | _Comment | _RawText | _Unterminated

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_LETTERS = frozenset(string.ascii_letters)
_SPACE = "\t\n\f\r "
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_SEPARATOR = re.compile(r"[\t\n\f\r /]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r />=]*")
_EQUALS = re.compile(r"[\t\n\f\r ]*=[\t\n\f\r ]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_COMMENT = re.compile(r"<!--(?:-?>|.*?--!?>)", re.DOTALL)
_SIMPLE_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)>")

# Elements whose content the tokenizer reads as text up to "</name".  All of
# them are removed with that content.  <noscript> is raw text too in a
# browser running scripts, but we remove only its tags and read its content
# as markup: with the tag gone, a browser reads our output the same way.
_RAW_TEXT = frozenset(
    {"script", "style", "iframe", "noembed", "noframes", "textarea", "title", "xmp"}
)
_RAW_TEXT_END = {
    name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE | re.ASCII) for name in _RAW_TEXT
}


# A '<' that may open markup (see _markup_at); any other '<' is text.
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])")


def _tokens(s: str) -> Iterator[_Token]:
    """Split ``s`` into tokens exactly where an HTML5 browser would.

    A ``<`` that opens nothing stays inside the text around it (one token
    for ``"a < b " * 200000``, not 400,000).
    """
    n = len(s)
    pos = 0
    markup = _MARKUP_START.search
    while pos < n:
        found = markup(s, pos)
        lt = found.start() if found is not None else -1
        if lt < 0:
            yield _Text(pos, n)
            return
        if lt > pos:
            yield _Text(pos, lt)
        token = _markup_at(s, lt)
        yield token
        pos = token.end
        if isinstance(token, _Tag) and not token.closing and token.name in _RAW_TEXT:
            close = _RAW_TEXT_END[token.name].search(s, pos)
            end = close.start() if close else n
            yield _RawText(pos, end)
            pos = end


def _markup_at(s: str, lt: int) -> _Token:
    """The token starting at the ``<`` at ``lt``."""
    simple = _SIMPLE_TAG.match(s, lt)  # fast path for <p>, </p>, <br>: most tags
    if simple is not None:
        closing = simple.group(1) == "/"
        name = simple.group(2).translate(_ASCII_LOWER)
        return _Tag(lt, simple.end(), name, closing, (), simple.end() - 1)
    nxt = s[lt + 1 : lt + 2]
    if nxt in _ASCII_LETTERS:
        return _read_tag(s, lt, lt + 1, closing=False)
    if nxt == "/":
        after = s[lt + 2 : lt + 3]
        if after in _ASCII_LETTERS:
            return _read_tag(s, lt, lt + 2, closing=True)
        if after == "":
            return _Text(lt, len(s))  # "</" at the very end is text
        return _bogus_comment(s, lt)  # "</>" is one too: browsers drop it
    if nxt == "!":
        if s.startswith("<!--", lt):
            found = _COMMENT.match(s, lt)
            return _Comment(lt, found.end()) if found else _Unterminated(lt, len(s))
        return _bogus_comment(s, lt)
    if nxt == "?":
        return _bogus_comment(s, lt)
    return _Text(lt, lt + 1)  # a '<' that opens nothing is text


def _bogus_comment(s: str, lt: int) -> _Token:
    gt = s.find(">", lt + 2)
    return _Comment(lt, gt + 1) if gt >= 0 else _Unterminated(lt, len(s))


def _read_tag(s: str, lt: int, name_start: int, *, closing: bool) -> _Token:
    """A start or end tag with its attributes (the spec's tag states)."""
    n = len(s)
    if s.find(">", name_start) < 0:
        # Only a '>' ends a tag: without one it is cut off by the end of the
        # string, whatever comes first.  Said at once rather than after
        # reading a million attributes ("<a " * 10**6).
        return _Unterminated(lt, n)
    pos = _TAG_NAME.match(s, name_start).end()  # type: ignore[union-attr]
    name = s[name_start:pos].translate(_ASCII_LOWER)
    attrs: list[_Attr] = []
    while True:
        sep_start = pos
        pos = _SEPARATOR.match(s, pos).end()  # type: ignore[union-attr]
        if pos >= n:
            return _Unterminated(lt, n)
        if s[pos] == ">":
            return _Tag(lt, pos + 1, name, closing, tuple(attrs), sep_start)
        attr = _read_attribute(s, sep_start, pos)
        if attr is None:
            return _Unterminated(lt, n)
        attrs.append(attr)
        pos = attr.end


def _read_attribute(s: str, sep_start: int, start: int) -> _Attr | None:
    name_end = _ATTR_NAME.match(s, start).end()  # type: ignore[union-attr]
    name = s[start:name_end].translate(_ASCII_LOWER)
    equals = _EQUALS.match(s, name_end)
    if equals is None:
        return _Attr(sep_start, start, name_end, -1, -1, name_end, name)
    pos = equals.end()
    if pos >= len(s):
        return None
    quote = s[pos]
    if quote in "\"'":
        close = s.find(quote, pos + 1)
        if close < 0:
            return None
        return _Attr(sep_start, start, name_end, pos + 1, close, close + 1, name)
    end = _UNQUOTED.match(s, pos).end()  # type: ignore[union-attr]
    return _Attr(sep_start, start, name_end, pos, end, end, name)


_CHARREF = re.compile(r"&(?:#[xX]([0-9A-Fa-f]+);?|#([0-9]+);?|([A-Za-z][A-Za-z0-9]*)(;?))")


def _decode_attribute(raw: str) -> str:
    """An attribute value as the browser sees it (HTML5 character references).

    Unlike :func:`html.unescape` this keeps the attribute-value rule that a
    legacy entity without ``;`` followed by a letter, digit or ``=`` stays
    literal (``?a=1&copy=2`` is not ``?a=1©=2``); and unlike libxml2 it knows
    every HTML5 name (``&colon;``, ``&Tab;``, ``&NewLine;``).
    """
    if "&" not in raw:
        return raw
    return _CHARREF.sub(lambda m: _decode_reference(m, raw), raw)


def _decode_reference(match: re.Match[str], raw: str) -> str:
    if match.group(3) is None:  # numeric: html.unescape applies the spec's replacements
        return _numeric_reference(match)
    name, semicolon = match.group(3), match.group(4)
    if semicolon and name + ";" in _HTML5_ENTITIES:
        return _HTML5_ENTITIES[name + ";"]
    # Longest legacy (semicolon-less) name first.  None is longer than
    # _LEGACY_NAME_MAX, so longer prefixes are not tried: trying every prefix
    # of a megabyte-long name was quadratic.
    for cut in range(min(len(name), _LEGACY_NAME_MAX), 1, -1):
        if name[:cut] in _HTML5_ENTITIES:
            following = name[cut : cut + 1] or semicolon or raw[match.end() : match.end() + 1]
            if following and (following.isalnum() or following == "="):
                return match.group()
            return _HTML5_ENTITIES[name[:cut]] + name[cut:] + semicolon
    return match.group()


_LEGACY_NAME_MAX = max(len(name) for name in _HTML5_ENTITIES if not name.endswith(";"))


def _numeric_reference(match: re.Match[str]) -> str:
    """``html.unescape`` of one numeric reference, also when it has thousands of digits.

    ``int()`` refuses decimals over 4,300 digits with a ValueError, which
    would fail the feed; such a number is beyond U+10FFFF, which
    ``html.unescape`` decodes as U+FFFD.  Leading zeros do not count.
    """
    digits = match.group(2)
    if digits is not None and len(digits) > 7:
        significant = digits.lstrip("0")
        if len(significant) > 7:  # >= 10**7 > 0x10FFFF
            return "\ufffd"
        semicolon = ";" if match.group().endswith(";") else ""
        return html.unescape("&#" + (significant or "0") + semicolon)
    return html.unescape(match.group())


def _attribute_value(s: str, tag: _Tag, name: str) -> str | None:
    """The decoded value of the first attribute called ``name`` (browsers keep the first)."""
    for attr in tag.attrs:
        if attr.name == name:
            has_value = attr.value_start >= 0
            return _decode_attribute(s[attr.value_start : attr.value_end]) if has_value else ""
    return None


# --------------------------------------------------------------------------
# Sanitising


_DROP_WITH_CONTENT = _RAW_TEXT
_DROP_TAG = frozenset(
    {
        "object", "applet", "embed", "param", "form", "base", "meta", "link", "frame",
        "frameset", "noscript", "plaintext", "portal", "fencedframe", "isindex",
        # Render safety: <html>/<body> in a post add their attributes to the
        # page's own elements; a select swallows the end tags after it (the
        # parser's "in select" mode), and form controls have no place in a
        # news post anyway.
        "html", "head", "body", "select", "option", "optgroup", "datalist",
    }
)  # fmt: skip
# Names no real element has ("script;", "a<b", "p\"") and look-alikes of the
# elements we remove ("script-x", "iframe:x").  Browsers treat them as
# unknown elements, but naive consumers downstream (regex filters, old
# parsers) may not, so the output never contains "<script" or "<iframe".
# A name that starts with a script URL scheme is also a Markdown autolink
# (``<javascript:alert.call>``) should the body ever be read as Markdown.
_ODD_TAG_NAME = re.compile(
    r"script|iframe|(?:java|vb|live)script:|mocha:|data:|.*[^a-z0-9:._\-]", re.DOTALL
)
_IMAGE_TAGS = frozenset({"img", "image"})  # "<image>" is parsed as <img>
_RESOLVED = frozenset({"href", "src", "poster"})
_URL_ATTRIBUTES = frozenset(
    {
        "href", "src", "poster", "action", "formaction", "background", "cite", "longdesc",
        "lowsrc", "dynsrc", "data", "codebase", "classid", "archive", "usemap", "manifest",
        "icon", "profile", "xlink:href", "itemtype", "ping", "srcset", "imagesrcset",
    }
)  # fmt: skip
_URL_LISTS = frozenset({"archive", "ping"})  # space-separated URLs, checked not resolved
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "livescript:", "mocha:")
_BLOCKED_SCHEMES = (*_SCRIPT_SCHEMES, "data:")
_RASTER_DATA_URL = re.compile(r"data:image/(?:png|gif|jpe?g|webp|avif|bmp|x-icon)[;,]", re.I)
# What the URL parser ignores: leading/trailing C0 controls and spaces, tabs
# and newlines anywhere.  We drop all C0/C1 controls and invisible format
# characters anywhere: stricter, so never more lenient than a browser.
_URL_IGNORED = re.compile("[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.S)
_CSS_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{1,6})[\t\n\f\r ]?|\\(.)", re.S)
_CSS_DANGER = ("expression(", "behavior:", "-moz-binding", *_SCRIPT_SCHEMES)
_REFERRER_POLICY = ' referrerpolicy="no-referrer"'


@dataclass(frozen=True, slots=True)
class _Cleaned:
    html: str
    #: The kept image tags, as written to ``html``, in order (for ``first_image``).
    image_tags: tuple[str, ...] = ()

    @property
    def first_image(self) -> str | None:
        """The first usable image of the cleaned body (only asked for when the
        feed named none, so not looked for while cleaning)."""
        for piece in self.image_tags:
            found = _first_image(piece)
            if found is not None:
                return found
        return None


# Common tags without attributes that the clean-up always keeps as written
# (see _clean_tag): a run of text without "<" and of these is copied in one
# step instead of token by token.  Most of a feed's body is such a run.
_PLAIN_TAG_NAMES = (
    "p", "br", "hr", "div", "span", "h1", "h2", "h3", "h4", "h5", "h6", "b", "i", "u", "s",
    "em", "strong", "small", "sub", "sup", "blockquote", "pre", "code", "ul", "ol", "li",
    "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption",
    "figure", "figcaption", "section", "article", "header", "footer", "center", "font", "a",
)  # fmt: skip
_PLAIN_RUN = re.compile(
    r"(?:[^<]+|</?(?:" + "|".join(sorted(_PLAIN_TAG_NAMES, key=len, reverse=True)) + r")>)*",
    re.IGNORECASE | re.ASCII,
)


# A '<' that opens nothing (no letter, '/', '!' or '?' after it: _markup_at
# calls it text), with the text up to the next '<', and up to 10,000 such in
# a row: "a < b " * 200000 is 20 steps instead of 200,000 tokens.  (The cap
# keeps each call short -- it holds the GIL -- and is faster than none.)
_STRAY_RUN = re.compile(r"(?:<(?![A-Za-z/!?])[^<]*){1,10000}")


def _clean(s: str, base_url: str | None) -> _Cleaned:
    """One pass: copy what is fine, rewrite what is not, note the image tags.

    Text is copied with any stray ``<`` escaped, but that only shows when
    something else changed: on its own a ``<`` that opens nothing is read as
    text by every browser, and once a neighbouring tag is removed it could
    open one (``<<script>x</script>img onerror=...>``).
    """
    if "<" not in s:  # no markup at all: only braces can need escaping
        return _Cleaned(_escape_braces(s) if "{" in s or "}" in s else s)
    base_url = base_url if _usable_base(base_url) else None
    out: list[str] = []
    changed = False
    image_tags: list[str] = []
    n = len(s)
    pos = 0
    plain_run = _PLAIN_RUN.match
    stray_run = _STRAY_RUN.match
    while pos < n:
        run_end = plain_run(s, pos).end()  # type: ignore[union-attr]
        if run_end > pos:
            out.append(s[pos:run_end])
            pos = run_end
            if pos >= n:
                break
        # s[pos] is a "<" that starts something other than a plain tag.
        stray = stray_run(s, pos)
        if stray is not None:  # text, as _markup_at would say of each '<', in one step
            out.append(stray.group().replace("<", "&lt;"))
            pos = stray.end()
            continue
        token = _markup_at(s, pos)
        pos = token.end
        if isinstance(token, _Text):
            out.append(s[token.start : token.end].replace("<", "&lt;"))
        elif isinstance(token, _Tag):
            piece = _clean_tag(s, token, base_url)
            changed = changed or piece is not None
            if piece is None:
                piece = s[token.start : token.end]
            out.append(piece)
            if piece and token.name in _IMAGE_TAGS and not token.closing:
                image_tags.append(piece)
            if not token.closing and token.name in _RAW_TEXT:
                # Its content is text up to its end tag, and is removed with it.
                close = _RAW_TEXT_END[token.name].search(s, pos)
                end = close.start() if close else n
                changed = changed or end > pos
                pos = end
        elif isinstance(token, _Comment) and "<" not in s[token.start + 1 : token.end]:
            out.append(s[token.start : token.end])
        else:
            # unterminated markup, or markup hidden in a comment (IE
            # conditional comments)
            changed = True
    if not changed and "{" not in s and "}" not in s:
        return _Cleaned(s, tuple(image_tags))
    return _Cleaned(_escape_braces("".join(out)), tuple(image_tags))


def _escape_braces(text: str) -> str:
    """Hexo's template engine reads ``{{``/``{%``; the archives escape every brace."""
    return text.replace("{", "&#123;").replace("}", "&#125;")


def _usable_base(base_url: str | None) -> bool:
    """Only an absolute base makes resolution final (and so clean_html idempotent)."""
    return bool(base_url) and _ABSOLUTE_BASE.match(base_url or "") is not None


_ABSOLUTE_BASE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#\s]")


def _clean_tag(s: str, tag: _Tag, base_url: str | None) -> str | None:
    """None to keep the tag as written, '' to remove it, else its new text."""
    if tag.name in _DROP_WITH_CONTENT or tag.name in _DROP_TAG or _ODD_TAG_NAME.match(tag.name):
        return ""
    if tag.closing:  # attributes on end tags mean nothing; only '<' in them matters
        if "<" not in s[tag.start + 1 : tag.end]:
            return None
        return "</" + s[tag.start + 2 : tag.start + 2 + len(tag.name)] + ">"
    attributes: list[str] = []
    changed = False
    policy_set = False  # an <img> has had its first referrerpolicy
    for attr in tag.attrs:
        new = _clean_attribute(s, tag, attr, base_url, policy_set)
        if attr.name == "referrerpolicy" and new != "":
            policy_set = True
        if new is None:
            attributes.append(_kept_attribute(s, attr))
        else:
            changed = True
            if new:
                attributes.append(new)
    if tag.name in _IMAGE_TAGS and not policy_set:
        attributes.append(_REFERRER_POLICY)
        changed = True
    if not changed:
        return None
    head = s[tag.start : tag.attrs[0].sep_start if tag.attrs else tag.tail_start]
    return _assemble_tag(head, attributes, s[tag.tail_start : tag.end])


def _kept_attribute(s: str, attr: _Attr) -> str:
    """The attribute as written, unless it is ``name=`` with nothing after.

    That is legal only as the last thing before ``>``; once we append
    anything (the referrer policy), it would become the value.
    """
    if attr.value_start == attr.value_end >= 0 and s[attr.end - 1] not in "\"'":
        return f' {s[attr.start : attr.name_end]}=""'
    return s[attr.sep_start : attr.end]


def _assemble_tag(head: str, attributes: list[str], tail: str) -> str:
    """``<name``, attributes, ``[ /]>``, with a space wherever one is needed.

    A kept attribute may have followed a quoted value with nothing between
    (legal); once its neighbour is gone it would glue onto the tag name.  A
    ``/>`` straight after an unquoted value would become part of that value.
    """
    parts = [head]
    for attribute in attributes:
        parts.append(attribute if attribute[:1] in _SEPARATORS else " " + attribute)
    parts.append(" " + tail if tail.startswith("/") else tail)
    return "".join(parts)


_SEPARATORS = frozenset(_SPACE + "/")


def _clean_attribute(
    s: str, tag: _Tag, attr: _Attr, base_url: str | None, policy_set: bool
) -> str | None:
    """None to keep the attribute as written, '' to drop it, else its new text."""
    name = attr.name
    if name.lstrip(string.punctuation).startswith("on") or "<" in name:
        return ""
    raw_value = s[attr.value_start : attr.value_end] if attr.value_start >= 0 else ""
    value = _decode_attribute(raw_value)
    if _URL_IGNORED.sub("", value).lower().startswith(_SCRIPT_SCHEMES):
        return ""
    if name == "referrerpolicy" and tag.name in _IMAGE_TAGS and not policy_set:
        return None if value.lower() == "no-referrer" else _REFERRER_POLICY
    if name == "style" and _dangerous_css(value):
        return ""
    if name in _ANIMATION_VALUES and _dangerous_animation(s, tag, value):
        return ""
    new_value = value
    if name in _URL_ATTRIBUTES:
        checked = _clean_url_attribute(tag.name, name, value, base_url)
        if checked is None:
            return ""
        new_value = checked
    if new_value != value or "<" in raw_value:
        return _attribute_text(s, attr, new_value)
    return None


def _attribute_text(s: str, attr: _Attr, value: str) -> str:
    """`` name="value"`` with the value escaped (``<`` too: see the module docstring)."""
    escaped = (
        value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )
    return f' {s[attr.start : attr.name_end]}="{escaped}"'


def _clean_url_attribute(tag_name: str, name: str, value: str, base_url: str | None) -> str | None:
    """The value to write (resolved where the spec says), or None when it must go."""
    if name in _SRCSETS:
        return _clean_srcset(value, base_url)
    if name in _URL_LISTS:
        return None if any(_blocked_url(u, tag_name, name) for u in value.split()) else value
    if _blocked_url(value, tag_name, name):
        return None
    if name in _RESOLVED and base_url:
        return _resolve(value, base_url)
    return value


def _blocked_url(value: str, tag_name: str, name: str) -> bool:
    compact = _URL_IGNORED.sub("", value).lower()
    if not compact.startswith(_BLOCKED_SCHEMES):
        return False
    return not (tag_name in _IMAGE_TAGS and name == "src" and _RASTER_DATA_URL.match(compact))


def _clean_srcset(value: str, base_url: str | None) -> str | None:
    """Candidates' URLs checked and resolved in place; the rest copied.

    Follows the spec's srcset parsing: a URL is a run of non-space
    characters, trailing commas on it end the candidate, otherwise its
    descriptors run to the next comma outside parentheses.
    """
    pieces: list[str] = []
    pos = 0
    while True:
        start = _SRCSET_GAP.match(value, pos).end()  # type: ignore[union-attr]
        pieces.append(value[pos:start])
        if start >= len(value):
            return "".join(pieces)
        end = _SRCSET_URL.match(value, start).end()  # type: ignore[union-attr]
        url = value[start:end].rstrip(",")
        if _blocked_url(url, "", "srcset"):
            return None
        pieces.append(_resolve(url, base_url) if base_url else url)
        pos = start + len(url)
        if pos == end:  # no trailing comma: descriptors follow
            pos = _SRCSET_DESCRIPTORS.match(value, end).end()  # type: ignore[union-attr]
            pieces.append(value[end:pos])


_SRCSETS = frozenset({"srcset", "imagesrcset"})
_SRCSET_GAP = re.compile(r"[\t\n\f\r ,]*")
_SRCSET_URL = re.compile(r"[^\t\n\f\r ]+")
_SRCSET_DESCRIPTORS = re.compile(r"(?:[^,(]|\([^)]*\)?)*,?")


def _resolve(value: str, base_url: str) -> str:
    """``value`` made absolute; fragments, empty values and absolute URLs stay."""
    url = value.strip(_SPACE)
    if not url or url.startswith("#") or _HAS_SCHEME.match(url):
        return value
    try:
        return urljoin(base_url, url)
    except ValueError:  # malformed host in the base or the reference
        return value


_HAS_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


# SVG/SMIL animation: <animate attributeName="href" values="...;javascript:...">
# turns a harmless <a> into a script link once the animation runs, and
# ``values`` is a ';'-separated list, so the whole-value check above misses it.
_ANIMATIONS = frozenset({"animate", "set", "animatemotion", "animatetransform", "animatecolor"})
_ANIMATION_VALUES = frozenset({"values", "from", "to", "by"})


def _dangerous_animation(s: str, tag: _Tag, value: str) -> bool:
    """A ``values``/``from``/``to``/``by`` that could put a script URL or handler in place.

    Any item of the list that is a blocked URL goes, on any element; on an
    animation element whose ``attributeName`` is a URL attribute, a handler or
    ``style``, the value goes whatever it holds (a browser's idea of what the
    animated attribute means is not ours to second-guess).
    """
    for item in value.split(";"):
        if _URL_IGNORED.sub("", item).lower().startswith(_BLOCKED_SCHEMES):
            return True
    if tag.name not in _ANIMATIONS:
        return False
    target = (_attribute_value(s, tag, "attributename") or "").strip(_SPACE).lower()
    target = target.rpartition(":")[2]
    return target.startswith("on") or target == "style" or target in _URL_ATTRIBUTES


def _dangerous_css(value: str) -> bool:
    """Legacy script hooks in a style attribute, seen through comments and escapes."""
    text = _CSS_COMMENT.sub("", value)
    text = _CSS_ESCAPE.sub(_css_unescape, text)
    compact = _URL_IGNORED.sub("", text).lower()
    return any(marker in compact for marker in _CSS_DANGER)


def _css_unescape(match: re.Match[str]) -> str:
    if match.group(1):
        code = int(match.group(1), 16)
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"
    return match.group(2)


# --------------------------------------------------------------------------
# Safe as rendered: what Hexo does with the body next
#
# A post file is not read as HTML.  Hexo hands it to its Markdown renderer
# (hexo-renderer-marked), and the body is raw HTML only while it stays in
# the HTML block that the ``<div>`` line opens: a blank line ends that block
# and whatever follows is Markdown again, where ``[x](javascript:...)``,
# ``[1]: javascript:...`` and their entity and backslash spellings are live
# links.  Before that, Hexo turns ``` / ~~~ fences at a line start into
# escaped code (anywhere, even inside HTML) and cuts the index-page excerpt
# at ``<!-- more -->``.  And on the index page the next post follows ours in
# the same document, so an element we leave open (``<a><b>read more``) or an
# end tag we leave unmatched (``</div>``) changes the posts after it.
#
# ``_render_safe`` runs after the clean-up, on its output, so that whatever
# the clean-up removed cannot join two halves of a problem; every step leaves
# a body that needs none of them unchanged (the seeds pass through as is).


def _render_safe(s: str) -> str:
    """The cleaned body, balanced and with nothing Hexo would read as Markdown."""
    original = s
    if "<" in s:
        s = _balance(s)
    if "]" in s:
        s = _defuse_markdown_links(s)
    if "```" in s or "~~~" in s or _BLANK_LINE_HINT.search(s) or _BLANK_FIRST_LINE.match(s):
        s = _fix_lines(s)
    if s is not original and "<" in s:
        # A body the clean-up passed as it was may hold a stray '<' (harmless
        # where it stands); once this pass has rewritten the body, it is
        # rewritten text, and rewritten text spells every stray '<' as &lt;,
        # as the clean-up's own rewrites do (joined lines could put a letter
        # after it).
        s = _STRAY_LT.sub("&lt;", s)
    return s


_STRAY_LT = re.compile(r"<(?![A-Za-z/!?])")


# Elements, as the HTML parser groups them (WHATWG HTML 13.2.4.3, 13.2.6).
_VOID = frozenset(
    {
        "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "image",
        "img", "input", "keygen", "link", "meta", "param", "source", "track", "wbr",
    }
)  # fmt: skip
#: Reopened by the parser after they are closed implicitly: left open, they
#: spread into everything after them, the next posts included.
_FORMATTING = frozenset(
    {
        "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong",
        "tt", "u",
    }
)  # fmt: skip
#: An end tag cannot close anything beneath one of these (the parser's "scope").
_BOUNDARY = frozenset(
    {
        "applet", "caption", "html", "table", "td", "th", "marquee", "object", "template",
        "mi", "mo", "mn", "ms", "mtext", "annotation-xml", "foreignobject", "desc", "title",
    }
)  # fmt: skip
#: End tags the parser may leave out: closed by the parent's end tag.
_IMPLIED = frozenset({"dd", "dt", "li", "optgroup", "option", "p", "rb", "rp", "rt", "rtc"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
#: Start tags that close an open <p> first.
_CLOSES_P = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir",
        "div", "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main",
        "menu", "nav", "ol", "p", "search", "section", "summary", "ul", "pre", "listing",
        "form", "plaintext", "table", "hr", "xmp", "li", "dd", "dt", *_HEADINGS,
    }
)  # fmt: skip
#: End tags that pop every element above the one they close (after
#: "generate implied end tags"); only formatting elements and scope
#: boundaries above need their own end tags first.
_BLOCK_END = frozenset(
    {
        "address", "article", "aside", "blockquote", "button", "center", "details", "dialog",
        "dir", "div", "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup",
        "listing", "main", "menu", "nav", "ol", "pre", "search", "section", "summary", "ul",
        "li", "dd", "dt", "p", "form", "applet", "marquee", "object", "table", "tbody",
        "thead", "tfoot", "tr", "td", "th", "caption", "template", *_HEADINGS,
    }
)  # fmt: skip
_SPECIAL = frozenset(
    _CLOSES_P
    | _BOUNDARY
    | _VOID
    | {
        "body", "button", "colgroup", "frameset", "head", "iframe", "marquee", "noembed",
        "noframes", "noscript", "script", "select", "style", "tbody", "textarea", "tfoot",
        "thead", "tr", "xmp",
    }
)  # fmt: skip
#: In SVG or MathML, these start tags end the foreign element (the parser
#: pops out of it) and are read as HTML.
_BREAKOUT = frozenset(
    {
        "b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt",
        "em", "embed", "head", "hr", "i", "img", "li", "listing", "menu", "meta", "nobr", "ol",
        "p", "pre", "ruby", "s", "small", "span", "strong", "strike", "sub", "sup", "table",
        "tt", "u", "ul", "var", *_HEADINGS,
    }
)  # fmt: skip
#: Foreign elements whose content is parsed as HTML again.
_INTEGRATION_POINTS = frozenset(
    {"foreignobject", "desc", "title", "mi", "mo", "mn", "ms", "mtext", "annotation-xml"}
)
_TABLE_SECTIONS = frozenset({"tbody", "thead", "tfoot"})
#: What a table end tag closes by itself (cells, rows, sections).
_TABLE_IMPLIED = {
    "table": frozenset({"td", "th", "tr", "caption", "colgroup", *_TABLE_SECTIONS}),
    **dict.fromkeys(_TABLE_SECTIONS, frozenset({"td", "th", "tr"})),
    "tr": frozenset({"td", "th"}),
}
#: Nesting deeper than this is flattened: no news post needs it, and it
#: keeps every scope walk below short, so the pass stays linear.
_MAX_DEPTH = 256
#: Hexo cuts the index-page excerpt here (hexo/lib/plugins/filter/after_post_render/excerpt).
_EXCERPT_MARK = re.compile(r"<!-- ?more ?-->", re.IGNORECASE)


@dataclass(slots=True)
class _Open:
    name: str
    foreign: bool


class _Balancer:
    """A model of the HTML tree builder's stack of open elements, just good
    enough to know what a browser leaves open; where the model and the
    browser could disagree, explicit end tags make the browser follow the
    model.  Scope questions are answered from per-name positions, so each
    tag costs O(1) whatever the nesting."""

    def __init__(self, s: str) -> None:
        self.s = s
        self.stack: list[_Open] = []
        self.where: dict[str, list[int]] = {}  # name -> its indexes in the stack
        self.boundaries: list[int] = []  # indexes of scope boundaries
        self.edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in order

    def run(self) -> str:
        s = self.s
        pos = 0
        find = s.find
        strict = _STRICT_TAG.match
        stray: list[int] = []  # where a '<' is text
        while True:
            lt = find("<", pos)
            if lt < 0:
                break
            if s[lt + 1 : lt + 2] not in _OPENS_MARKUP:
                stray.append(lt)
                pos = lt + 1
                continue
            m = strict(s, lt)
            if m is not None and m.group(2).translate(_ASCII_LOWER) != "font":
                pos = m.end()
                name = m.group(2).translate(_ASCII_LOWER)
                if m.group(1):
                    self._end_tag(lt, pos, name)
                else:
                    self._start_tag(lt, pos, name, m.group(3).endswith("/"), ())
                    if name in _RAW_TEXT:  # never in a cleaned body; read as the browser does
                        close = _RAW_TEXT_END[name].search(s, pos)
                        pos = close.start() if close else len(s)
                continue
            token = _markup_at(s, lt)
            pos = token.end
            if isinstance(token, _Text):
                stray.append(lt)
            elif isinstance(token, _Tag):
                if token.closing:
                    self._end_tag(token.start, token.end, token.name)
                else:
                    tail = s[token.tail_start : token.end - 1]
                    names = tuple(a.name for a in token.attrs)
                    self._start_tag(token.start, token.end, token.name, tail.endswith("/"), names)
            elif isinstance(token, _Comment):
                if _EXCERPT_MARK.search(s, token.start, token.end):
                    self.edits.append((token.start, token.end, ""))
            elif isinstance(token, _Unterminated):
                self.edits.append((token.start, token.end, ""))
        self._close_above(-1, at=len(s), needs=lambda e: e.name not in _IMPLIED)
        if not self.edits:
            return s
        # A removed end tag must not join a stray '<' to what follows it
        # ("<</a>script>"): once anything changes, every stray '<' is text.
        edits = sorted(self.edits + [(at, at + 1, "&lt;") for at in stray], key=_edit_position)
        out: list[str] = []
        pos = 0
        for start, end, text in edits:
            out.append(s[pos:start])
            out.append(text)
            pos = end
        out.append(s[pos:])
        return "".join(out)

    # -- the stack

    def _push(self, start: int, end: int, entry: _Open) -> None:
        if len(self.stack) >= _MAX_DEPTH:
            self.edits.append((start, end, ""))
            return
        index = len(self.stack)
        self.stack.append(entry)
        self.where.setdefault(entry.name, []).append(index)
        if entry.name in _BOUNDARY:
            self.boundaries.append(index)

    def _truncate(self, size: int) -> None:
        """Pop everything from ``stack[size]`` up."""
        for entry in reversed(self.stack[size:]):
            self.where[entry.name].pop()
            if entry.name in _BOUNDARY:
                self.boundaries.pop()
        del self.stack[size:]

    def _topmost(self, name: str) -> int:
        found = self.where.get(name)
        return found[-1] if found else -1

    def _in_scope(self, name: str, *, button: bool = False) -> int:
        """Index of the topmost ``name`` if no scope boundary is above it, else -1."""
        index = self._topmost(name)
        if index < 0 or self.stack[index].foreign:
            return -1
        stop = self.boundaries[-1] if self.boundaries else -1
        if button:
            stop = max(stop, self._topmost("button"))
        return index if index >= stop else -1

    def _close_above(self, index: int, *, at: int, needs: Callable[[_Open], bool]) -> None:
        """Pop everything above ``stack[index]``; write end tags, top down, for
        the elements from the top to the lowest one that ``needs`` its own."""
        above = self.stack[index + 1 :]
        lowest = next((i for i, entry in enumerate(above) if needs(entry)), None)
        if lowest is not None:
            closing = "".join(f"</{entry.name}>" for entry in reversed(above[lowest:]))
            self.edits.append((at, at, closing))
        self._truncate(index + 1)

    def _close(self, index: int, *, at: int, needs: Callable[[_Open], bool]) -> None:
        """Pop ``stack[index]`` and everything above it (its own end tag is implied)."""
        self._close_above(index, at=at, needs=needs)
        self._truncate(index)

    def _in_foreign(self) -> bool:
        if not self.stack:
            return False
        top = self.stack[-1]
        return top.foreign and top.name not in _INTEGRATION_POINTS

    # -- tags

    def _start_tag(
        self, start: int, end: int, name: str, self_closing: bool, attrs: tuple[str, ...]
    ) -> None:
        if self._in_foreign():
            breakout = name in _BREAKOUT or (
                name == "font" and any(a in ("color", "face", "size") for a in attrs)
            )
            if not breakout:
                if not self_closing:
                    self._push(start, end, _Open(name, foreign=True))
                return
            # The parser pops out of the foreign element; say so, so that any
            # end tag written before this start tag is read outside it too.
            index = len(self.stack) - 1
            while index >= 0 and self.stack[index].foreign:
                if self.stack[index].name in _INTEGRATION_POINTS:
                    break
                index -= 1
            self._close_above(index, at=start, needs=lambda e: True)
        if name in ("svg", "math"):
            if not self_closing:
                self._push(start, end, _Open(name, foreign=True))
            return
        if name in _VOID:
            return
        if name in _CLOSES_SOMETHING and not self._implicit_closes(start, name):
            return  # the parser ignores this start tag
        self._push(start, end, _Open(name, foreign=False))

    def _implicit_closes(self, at: int, name: str) -> bool:
        """What the tree builder closes by itself when ``name`` starts; False
        when it ignores the tag altogether."""
        if name in ("li", "dd", "dt"):
            same = ("li",) if name == "li" else ("dd", "dt")
            # The parser walks down past phrasing elements only; a short walk
            # is enough for real lists and keeps hostile nesting cheap.
            for index in range(len(self.stack) - 1, max(-1, len(self.stack) - 17), -1):
                entry = self.stack[index]
                if not entry.foreign and entry.name in same:
                    self._close(index, at=at, needs=_needs_formatting)
                    break
                if entry.foreign or (
                    entry.name in _SPECIAL and entry.name not in ("address", "div", "p")
                ):
                    break
        if name in _CLOSES_P:
            index = self._in_scope("p", button=True)
            if index >= 0:
                self._close(index, at=at, needs=_needs_formatting)
        if name in _HEADINGS and self.stack and self.stack[-1].name in _HEADINGS:
            self._truncate(len(self.stack) - 1)
        if name in ("a", "nobr", "button"):
            index = self._in_scope(name)
            if index >= 0:  # the parser closes it (adoption agency); say so
                self._close_above(index, at=at, needs=lambda e: True)
                self.edits.append((at, at, f"</{name}>"))
                self._truncate(index)
        if name == "table":  # a table straight inside a table (no cell) closes it
            index = self._topmost("table")
            if index >= 0 and index > max(self._topmost(n) for n in ("td", "th", "caption")):
                self._close(index, at=at, needs=_needs_formatting)
        if name in _TABLE_PARTS:
            return self._table_part(at, name)
        return True

    def _table_part(self, at: int, name: str) -> bool:
        """A cell, row, section, caption or column group: outside a table the
        parser ignores it; inside one it closes the open cell, row or section
        it replaces and clears the stack back to the table's structure
        (whatever stands there was foster-parented)."""
        table = self._topmost("table")
        if table < 0:
            return False
        cell = max(self._topmost("td"), self._topmost("th"))
        if cell > table:
            self._close(cell, at=at, needs=_needs_formatting)
        row = self._topmost("tr")
        section = max(self._topmost(n) for n in _TABLE_SECTIONS)
        if name in ("td", "th"):
            context = max(row, section, table)
        elif name == "tr":
            if row > max(section, table):
                self._close(row, at=at, needs=_needs_formatting)
            context = max(section, table)
        else:
            if name in _TABLE_SECTIONS and section > table:
                self._close(section, at=at, needs=_needs_formatting)
            context = table
        self._close_above(context, at=at, needs=_needs_formatting)
        return True

    def _end_tag(self, start: int, end: int, name: str) -> None:
        index = self._topmost(name)
        if index >= 0 and index == len(self.stack) - 1:  # closes the current element
            self.where[name].pop()
            if name in _BOUNDARY:
                self.boundaries.pop()
            self.stack.pop()
            return
        if index < 0:
            if name not in ("p", "br"):  # those two make an element; the rest would
                self.edits.append((start, end, ""))  # close something of the theme's
            return
        entry = self.stack[index]
        if entry.foreign:
            needs: Callable[[_Open], bool] = lambda e: not e.foreign  # noqa: E731
        elif name in _BLOCK_END:
            implied = _TABLE_IMPLIED.get(name, frozenset())
            needs = lambda e: e.name not in implied and (  # noqa: E731
                e.name in _FORMATTING or e.name in _BOUNDARY or e.name == name or e.foreign
            )  # fmt: skip
        else:
            needs = lambda e: True  # noqa: E731
        self._close(index, at=start, needs=needs)


def _edit_position(edit: tuple[int, int, str]) -> tuple[int, int]:
    """Sort key for edits: position only, so insertions at one place keep their order."""
    return edit[0], edit[1]


#: Start tags that _implicit_closes has a rule for.
_TABLE_PARTS = frozenset({"td", "th", "tr", "caption", "colgroup", *_TABLE_SECTIONS})
_CLOSES_SOMETHING = frozenset(
    _CLOSES_P | _HEADINGS | _TABLE_PARTS | {"li", "dd", "dt", "a", "nobr", "button", "table"}
)
_OPENS_MARKUP = frozenset(string.ascii_letters + "/!?")


def _needs_formatting(entry: _Open) -> bool:
    return entry.name in _FORMATTING or entry.name in _BOUNDARY


# A tag in its plainest spelling (every attribute separated by whitespace,
# names and unquoted values free of quotes and '<'), read in one match; the
# rest go through the full tokenizer.  Group 3 is what precedes the '>'.
_STRICT_TAG = re.compile(
    r"<(/?)([A-Za-z][^\t\n\f\r />]*)"
    r"(?:[\t\n\f\r /]+[^\t\n\f\r />=\"'<][^\t\n\f\r />=\"'<]*"
    r"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"[^\"]*\"|'[^']*'|[^\t\n\f\r >\"'<=`]+))?)*"
    r"([\t\n\f\r /]*)>"
)


def _balance(s: str) -> str:
    """Every element the body opens is closed inside it, and no end tag closes
    anything the body did not open (the theme's own wrappers)."""
    if _nested_as_written(s):
        return s
    return _Balancer(s).run()


# In a cleaned body every '<' followed by a letter starts a tag (attribute
# values and comments hold none), so one findall lists the tags in order.
_TAG_START = re.compile(r"<(/?)([A-Za-z][^\t\n\f\r />]*)")


def _nested_as_written(s: str) -> bool:
    """Fast path for what real bodies are: every element closed by its own end
    tag, in order (void elements aside), and no excerpt mark.

    Then nothing can reach past the body: whatever the parser closes early
    inside (a ``<p>`` before a ``<div>``), the written end tags that follow
    close or are ignored, and none is left for the next post.  Bodies that
    are not nested as written go through the model in :class:`_Balancer`.
    """
    if "<!--" in s and _EXCERPT_MARK.search(s):
        return False
    stack: list[str] = []
    for closing, raw_name in _TAG_START.findall(s):
        name = raw_name.translate(_ASCII_LOWER)
        if closing:
            if not stack or stack[-1] != name:
                return False
            stack.pop()
        elif name not in _VOID:
            stack.append(name)
    return not stack


# Markdown links and reference definitions whose destination is a script URL.
_MARKDOWN_LINK = re.compile(r"\]\(|\]:")
_MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# Markdown's destination: after optional whitespace (one line break at most
# matters), a run without spaces.  Bounded, so many "](" in a row stay linear;
# 512 characters is room for any spelling of a scheme with entities.
_DESTINATION = re.compile(r"\s{0,64}([^\s)]{0,512})")


def _defuse_markdown_links(s: str) -> str:
    """``[x](javascript:...)`` and ``[x]: javascript:...`` in text lose the
    ``(`` or ``:`` that makes them Markdown (written as ``&#40;``/``&#58;``,
    so a browser shows the same text).  Hexo never reads our bodies as
    Markdown (see :func:`_fix_lines`); this is the second line of defence."""
    if _MARKDOWN_LINK.search(s) is None:
        return s
    edits: list[tuple[int, str]] = []
    for token in _tokens(s) if "<" in s else [_Text(0, len(s))]:
        if not isinstance(token, _Text):
            continue
        for match in _MARKDOWN_LINK.finditer(s, token.start, token.end):
            destination = _DESTINATION.match(s, match.end(), token.end)
            if destination and _markdown_destination_is_blocked(destination.group(1)):
                edits.append((match.end() - 1, "&#40;" if match.group() == "](" else "&#58;"))
    if not edits:
        return s
    out: list[str] = []
    pos = 0
    for at, text in edits:
        out.append(s[pos:at])
        out.append(text)
        pos = at + 1
    out.append(s[pos:])
    return "".join(out)


def _markdown_destination_is_blocked(after: str) -> bool:
    """Whether the text after ``](`` or ``]:`` starts a blocked URL as
    Markdown and then the browser would read it: backslash escapes and
    entities decoded, an opening ``<`` and ignored characters dropped."""
    text = html.unescape(_MARKDOWN_ESCAPE.sub(r"\1", after))
    text = _URL_IGNORED.sub("", text.lstrip("<")).lower()
    return text.startswith(_BLOCKED_SCHEMES)


# A blank line (only spaces and tabs, which is what marked counts) ends the
# HTML block; a ``` or ~~~ fence at a line start (after Hexo's allowed
# prefixes: blockquote marks, a list marker) becomes a code block.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Cheap hints that _fix_lines has work (a CRLF alone also matches; then it
# finds nothing to change).
_BLANK_LINE_HINT = re.compile(r"[\r\n][ \t]*[\r\n]")
_BLANK_FIRST_LINE = re.compile(r"[ \t]*[\r\n]")
_FENCE = re.compile(
    r"(?:\A|(?<=[\r\n\u2028\u2029]))(?:(?:[^\S\r\n]*>){0,3}|[-*+]|[0-9]+\.)[^\S\r\n]*([`~])\1\1"
)
_RAW_PRE = frozenset({"pre", "listing"})


def _fix_lines(s: str) -> str:
    """No blank line and no code fence at a line start, keeping the meaning.

    A line break that ends a blank line becomes a space where whitespace
    collapses (text, between attributes, comments), or ``&#10;`` where it
    does not (inside ``<pre>``, in attribute values): the same newline to a
    browser, not one to Markdown.  The first character of a fence becomes
    ``&#96;``/``&#126;`` (``_`` where no reference is decoded).  The body's
    first line counts as a line start: the ``<div>`` line ends just before it.
    """
    fixes: dict[int, tuple[int, str]] = {}  # start -> (end, kind)
    line_start = 0
    for brk in _LINE_BREAK.finditer(s):
        if not s[line_start : brk.start()].strip(" \t"):
            fixes[brk.start()] = (brk.end(), "break")
        line_start = brk.end()
    for fence in _FENCE.finditer(s):
        at = fence.start(1)
        fixes[at] = (at + 1, "fence")
    if not fixes:
        return s
    contexts = _contexts(s)
    out: list[str] = []
    pos = 0
    for start in sorted(fixes):
        end, kind = fixes[start]
        context = contexts(start)
        if kind == "break":
            text = "&#10;" if context in ("pre", "value") else " "
        elif context in ("text", "pre", "value"):
            text = "&#96;" if s[start] == "`" else "&#126;"
        else:
            text = "_"
        out.append(s[pos:start])
        out.append(text)
        pos = end
    out.append(s[pos:])
    return "".join(out)


def _contexts(s: str) -> Callable[[int], str]:
    """Where each position of ``s`` is: ``text``, ``pre`` (text inside a
    ``<pre>``), ``value`` (an attribute value), ``markup`` (the rest of a
    tag, a comment)."""
    spans: list[tuple[int, int, str]] = []
    pre_depth = 0
    for token in _tokens(s):
        if isinstance(token, _Tag):
            cursor = token.start
            for attr in token.attrs:
                if attr.value_start >= 0:
                    spans.append((cursor, attr.value_start, "markup"))
                    spans.append((attr.value_start, attr.value_end, "value"))
                    cursor = attr.value_end
            spans.append((cursor, token.end, "markup"))
            if token.name in _RAW_PRE:
                pre_depth = max(0, pre_depth + (-1 if token.closing else 1))
        elif isinstance(token, _Text | _RawText):
            spans.append((token.start, token.end, "pre" if pre_depth else "text"))
        else:
            spans.append((token.start, token.end, "markup"))
    starts = [span[0] for span in spans]

    def context(position: int) -> str:
        index = bisect.bisect_right(starts, position) - 1
        return spans[index][2] if index >= 0 else "text"

    return context


# --------------------------------------------------------------------------
# Titles


def inert_title(title: str) -> str:
    """The title as the post stores it: every character kept, no tag possible.

    The parse stage has taken markup out but kept text such as
    ``vector<int>`` or ``a<b``.  Printed unescaped (``<%- page.title %>``),
    ``<int>`` would be read as a tag and the word lost; worse text could be
    markup.  So a WORD JOINER (U+2060, invisible, no line break) goes
    between every ``<`` and the letter, ``/``, ``!`` or ``?`` after it: then
    no ``<`` in a title opens a tag, a comment or an end tag in any HTML
    context (element content, ``<title>``), and both kinds of theme show the
    same ``vector<int>``.  Escaping (``&lt;``) instead would show ``&lt;``
    in every theme that escapes, the usual kind.  Idempotent.
    """
    return _TITLE_TAG_OPENER.sub("<\u2060", title) if "<" in title else title


_TITLE_TAG_OPENER = re.compile(r"<(?=[A-Za-z/!?])")
