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

import html
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html.entities import html5 as _HTML5_ENTITIES
from urllib.parse import urljoin

from aggregator.parse import Entry
from aggregator.post import Post

__all__ = ["ContentError", "clean_html", "entry_to_post", "extract_full_text", "pick_image"]


class ContentError(ValueError):
    """Full text could not be extracted (selector matched nothing or is invalid)."""


def clean_html(html: str, *, base_url: str | None) -> str:
    """The body made safe and self-contained; unchanged bodies come back as is."""
    return _clean(html, base_url).html


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
    by the caller with :func:`aggregator.dates.effective_date`).
    The author is the outlet, as the archives want; the entry's own author
    stays in the stored raw entry.  A post always has a date: the entry's,
    else when we first saw it.
    """
    if body_html is None:
        body_html = entry.content_html if entry.content_html.strip() else entry.summary_html
    cleaned = _clean(body_html, entry.base_url)
    image = _choose_image(entry, lambda: cleaned.first_image, placeholder_image)
    return Post(
        title=entry.title,
        group=group,
        outlet=outlet,
        section=section,
        body=cleaned.html,
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
        if _usable_image(candidate):
            return candidate
    return first_in_body() or placeholder or ""


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
            src = _attribute_value(body, token, "src")
            if src is not None and _usable_image(src.strip()):
                return src.strip()
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
    }
)  # fmt: skip
# Names no real element has ("script;", "a<b", "p\"") and look-alikes of the
# elements we remove ("script-x", "iframe:x").  Browsers treat them as
# unknown elements, but naive consumers downstream (regex filters, old
# parsers) may not, so the output never contains "<script" or "<iframe".
_ODD_TAG_NAME = re.compile(r"script|iframe|.*[^a-z0-9:._\-]", re.DOTALL)
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
