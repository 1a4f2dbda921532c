"""The seed post format: a typed ``Post`` and its exact text form.

This module is the contract with the archives the daemon feeds (Hexo blogs
built from files like ``seeds/*.txt``), so it renders byte for byte what those
files contain: the blank first line, ``categories: `` with its trailing space,
``<div>   `` with three spaces, the twelve spaces after ``</div>``.  It
deliberately does not use a general YAML emitter: none of them reproduces that
layout, and a hand-checked grammar of nine keys gives errors that name the line.

Archives written by the original JavaScript generator differ from that
canonical layout in small ways (two generator versions, several body endings,
dates without a zone; see README "The post format").  ``parse`` accepts them
and records what differs in a :class:`Layout`, which ``render`` follows, so a
replayed file is written back byte for byte; posts we fetch have no layout and
always come out canonical.

It imports nothing else from the project but the error tree, so the format
can be reused and tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregator.errors import AggregatorError

__all__ = [
    "INVALID_DATE",
    "Layout",
    "Post",
    "PostFormatError",
    "format_date",
    "parse",
    "parse_date",
    "render",
    "zone",
]

#: What the archives' generator wrote for an unparsable date.  Accepted on
#: replay and written back unchanged; the fetch pipeline never produces it.
INVALID_DATE = "Invalid Date"

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE_RE = re.compile(
    r"(?P<wd>Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?P<d>\d\d) (?P<mon>[A-Z][a-z]{2}) "
    r"(?P<y>\d{4}) (?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d) GMT"
)
# Some generator outlets wrote the date as local wall time without a zone
# (``2021-11-09 08:09:39``); the archive's zone says what it means.
_NAIVE_DATE_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)")

# The canonical layout, as the seeds have it.
_HEAD = "\n---\n"
_OPENING = "\n<div>   \n"
_CLOSING = "\n  \n</div>\n            "
_INDENT = " "

# What the parser accepts around the body; whatever matched is kept verbatim.
_HEAD_RE = re.compile(r"\ufeff?\n?---\n")
_OPENING_RE = re.compile(r"\n?<div>[ \t]*\n")
_TAIL_RE = re.compile(r"\n</div>[ \t]*(?:\n[ \t]*)?\Z")
_CLOSING_RE = re.compile(r"(?:\n[ \t]*|[ \t]*)\n</div>[ \t]*(?:\n[ \t]*)?")
_ITEM_RE = re.compile(r"( *)-( .*|)")
_KEY_RE = re.compile(r"([a-z]+):(.*)")

_KEYS = (
    "title",
    "categories",
    "headimg",
    "author",
    "comments",
    "date",
    "thumbnail",
)
# Keys a post may leave out; ``updated`` is written (right after ``date``)
# only for posts the publisher revised, so untouched posts stay seed-exact.
# ``headimg`` is absent from the older generator's files.
_OPTIONAL_KEYS = ("updated",)
_MAY_BE_ABSENT = ("headimg", "updated")
_ORDER = ("title", "categories", "headimg", "author", "comments", "date", "updated", "thumbnail")

# Characters a YAML single-quoted scalar cannot carry (and Hexo's js-yaml
# rejects): C0 controls but tab, DEL, C1 controls, surrogates, BOM, U+FFFE/F.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")
# Line breaks to YAML 1.1 (PyYAML) but ordinary characters to YAML 1.2
# (js-yaml, which Hexo uses): inside single quotes or a plain value PyYAML
# folds NEL into a space and drops blanks around LS/PS.  Only a double-quoted
# escape reads the same in both, so values holding them are double-quoted.
_YAML_BREAKS = re.compile("[\x85\u2028\u2029]")

# Plain (unquoted) scalars are used for categories and author, as the seeds
# do; anything YAML could read as something other than that exact string is
# single-quoted instead.
_PLAIN_UNSAFE_START = re.compile(r"""[\s\-?:,\[\]{}#&*!|>'"%@`]""")
_IMPLICIT_NON_STRING = re.compile(
    r"""(?ix)
    (?: y|n|yes|no|true|false|on|off|null|~
      | [-+]?(?:\.?[0-9][0-9_,.:]*(?:e[-+]?[0-9]+)?|0x[0-9a-f_]+|0o?[0-7_]+|0b[01_]+)
      | [-+]?\.(?:inf)|\.nan
      | \d{4}-\d\d?-\d\d?(?:[Tt ].*)?
      | <<|=
    )\Z"""
)
# Reading an unquoted value: what makes YAML read something other than the
# text (a flow collection, anchor, tag, block scalar, comment or a nested
# mapping).  Such a value is refused rather than read two ways.
_PLAIN_YAML_START = re.compile(r"""[,\[\]{}#&*!|>%@`]|[-?:](?:[ \t]|\Z)""")
_PLAIN_YAML_INSIDE = re.compile(r""":(?:[ \t]|\Z)|[ \t]#""")

# YAML double-quoted escapes (the set PyYAML and js-yaml both know).
_ESCAPES = {
    "0": "\x00",
    "a": "\x07",
    "b": "\x08",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\x0b",
    "f": "\x0c",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_ESCAPE_RE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S)
_DOUBLE_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)


class PostFormatError(AggregatorError, ValueError):
    """A text is not in the seed post format.

    ``line`` is 1-based and points at the offending line of the text, so a
    person can open the file and fix it; ``source`` names the file when known.
    """

    def __init__(self, message: str, line: int | None = None, source: str | None = None):
        self.message = message
        self.line = line
        self.source = source
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = self.source or "<text>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}"

    def with_source(self, source: str) -> PostFormatError:
        """The same error, naming the file it came from."""
        return PostFormatError(self.message, self.line, source)


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` saying so when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'UTC' or 'Asia/Shanghai'"
        ) from None


_L = TypeVar("_L", bound="Layout")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a replayed file spelled what the canonical format spells otherwise.

    Each field's default is the canonical layout, and ``parse`` returns no
    layout at all for a canonical file, so only archive files carry one.
    ``written`` keeps a value's text after ``key:`` (or an item's after
    ``-``) where it differs from how ``render`` would spell the value; it is
    reused only while it still reads as the post's current value, so an
    edited field comes out canonical and nothing stale is ever written.
    """

    #: Before the first key: optional BOM, the blank line, ``---``.
    head: str = _HEAD
    #: Key lines in the order written; empty for the canonical order.
    keys: tuple[str, ...] = ()
    #: ``(slot, text)`` pairs; slots are key names and ``categories.0``-``.2``.
    written: tuple[tuple[str, str], ...] = ()
    #: Before each category's ``-``.
    indent: str = _INDENT
    #: Category items written: 3, or 2 (group, outlet) in the older format.
    items: int = 3
    #: From the closing ``---`` line up to the body.
    opening: str = _OPENING
    #: From the end of the body to the end of the file.
    closing: str = _CLOSING
    #: The zone that dates written without one were read in.
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        checks: tuple[tuple[bool, str], ...] = (
            (_HEAD_RE.fullmatch(self.head) is not None, "head"),
            (_OPENING_RE.fullmatch(self.opening) is not None, "opening"),
            (
                _CLOSING_RE.fullmatch(self.closing) is not None,
                "closing",
            ),
            (re.fullmatch(r" *", self.indent) is not None, "indent"),
            (self.items in (2, 3), "items"),
            (
                not self.keys
                or (
                    len(set(self.keys)) == len(self.keys)
                    and set(self.keys) <= set(_ORDER)
                    and set(_KEYS) - set(_MAY_BE_ABSENT) <= set(self.keys)
                ),
                "keys",
            ),
        )
        for ok, name in checks:
            if not ok:
                raise ValueError(f"Layout.{name} is not one the format allows: {self!r}")
        for slot, text in self.written:
            if not isinstance(slot, str) or not isinstance(text, str):
                raise ValueError(f"Layout.written needs (slot, text) strings, got {self.written!r}")
        try:
            zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"Layout.timezone: {exc}") from None

    def spelled(self, slot: str) -> str | None:
        """The text written for ``slot``, or None where it was canonical."""
        for name, text in self.written:
            if name == slot:
                return text
        return None

    def as_dict(self) -> dict[str, Any]:
        """The fields that differ from the canonical layout, JSON-ready."""
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name == "written":
                value = [list(pair) for pair in value]
            elif f.name == "keys":
                value = list(value)
            data[f.name] = value
        return data

    @classmethod
    def from_dict(cls: type[_L], data: Mapping[str, Any]) -> _L:
        """Inverse of :meth:`as_dict`; ``ValueError`` for anything else."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown Layout field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "keys" in values:
            values["keys"] = tuple(values["keys"])
        if "written" in values:
            values["written"] = tuple((str(s), str(t)) for s, t in values["written"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Post:
    """One news post as the archive stores it.

    ``date`` is an aware datetime in UTC with whole seconds, or ``None`` for a
    replayed file that says ``Invalid Date``.  ``body`` is the HTML between the
    ``<div>`` markers, exactly as written, ends trimmed of nothing.

    ``layout`` is how a replayed file was spelled (``None``: canonical).  It
    is presentation, not data, so it takes no part in equality: a post read
    from an archive file equals the same post fetched.
    """

    title: str
    group: str
    outlet: str
    section: str
    body: str
    date: datetime | None = None
    headimg: str = ""
    thumbnail: str = ""
    author: str = ""
    comments: bool = False
    #: When the publisher last revised the post; ``None`` for a post never
    #: revised, which renders exactly as the seeds do (no ``updated:`` line).
    updated: datetime | None = None
    layout: Layout | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("title", "group", "outlet", "section", "headimg", "thumbnail", "author"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"Post.{name} must be a str, not {type(value).__name__}")
            bad = _UNPRINTABLE.search(value)
            if bad:
                raise ValueError(
                    f"Post.{name} contains the control character {bad.group()!r}; "
                    "header fields are single printable lines"
                )
        if not isinstance(self.body, str):
            raise TypeError(f"Post.body must be a str, not {type(self.body).__name__}")
        if self.layout is not None and not isinstance(self.layout, Layout):
            raise TypeError(f"Post.layout must be a Layout, not {type(self.layout).__name__}")
        for name in ("date", "updated"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.tzinfo is None:
                raise ValueError(f"Post.{name} must be timezone-aware (got a naive datetime)")
            normal = value.astimezone(UTC).replace(microsecond=0)
            if normal != value or normal.tzinfo is not value.tzinfo:
                object.__setattr__(self, name, normal)

    @property
    def categories(self) -> tuple[str, str, str]:
        """The three front-matter categories: group, outlet, section."""
        return (self.group, self.outlet, self.section)


def format_date(date: datetime | None) -> str:
    """RFC 822 date in GMT as JavaScript's ``toUTCString`` writes it."""
    if date is None:
        return INVALID_DATE
    d = date.astimezone(UTC)
    return (
        f"{_WEEKDAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year:04d} "
        f"{d.hour:02d}:{d.minute:02d}:{d.second:02d} GMT"
    )


def parse_date(text: str) -> datetime | None:
    """Inverse of :func:`format_date`; raises ``ValueError`` with the reason."""
    if text == INVALID_DATE:
        return None
    m = _DATE_RE.fullmatch(text)
    if m is None or m["mon"] not in _MONTHS:
        raise ValueError(
            f"expected an RFC 822 GMT date like 'Tue, 01 Mar 2022 13:31:34 GMT', "
            f"a local time like '2021-11-09 08:09:39' or '{INVALID_DATE}', found {text!r}"
        )
    try:
        d = datetime(
            int(m["y"]),
            _MONTHS.index(m["mon"]) + 1,
            int(m["d"]),
            int(m["H"]),
            int(m["M"]),
            int(m["S"]),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise ValueError(f"not a real date: {text!r} ({exc})") from None
    if _WEEKDAYS[d.weekday()] != m["wd"]:
        raise ValueError(f"{text!r}: {d:%Y-%m-%d} is a {_WEEKDAYS[d.weekday()]}, not a {m['wd']}")
    return d


# -- writing -----------------------------------------------------------------


def _double_quoted(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _YAML_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", out) + '"'


def _quoted(value: str) -> str:
    if _YAML_BREAKS.search(value):
        return _double_quoted(value)
    return "'" + value.replace("'", "''") + "'"


def _plain_or_quoted(value: str) -> str:
    if (
        not value
        or _PLAIN_UNSAFE_START.match(value)
        or value != value.rstrip()
        or ": " in value
        or " #" in value
        or "\t" in value
        or value.endswith(":")
        or _IMPLICIT_NON_STRING.match(value)
        or _YAML_BREAKS.search(value)
    ):
        return _quoted(value)
    return value


_T = TypeVar("_T")


def _spell(layout: Layout, slot: str, value: _T, canonical: str, read: Callable[[str], _T]) -> str:
    """The text the file had for ``slot`` while it still reads as ``value``."""
    text = layout.spelled(slot)
    if text is not None:
        try:
            if read(text) == value:
                return text
        except (PostFormatError, ValueError):
            pass
    return canonical


def _key_order(post: Post, layout: Layout) -> list[str]:
    keys = [k for k in (layout.keys or _KEYS) if k != "updated" or post.updated is not None]
    wanted = {"headimg": post.headimg != "", "updated": post.updated is not None}
    for key, needed in wanted.items():
        if needed and key not in keys:
            before = _ORDER[: _ORDER.index(key)]
            at = max((i + 1 for i, k in enumerate(keys) if k in before), default=0)
            keys.insert(at, key)
    return keys


_CANONICAL = Layout()


def _render_canonical(post: Post) -> str:
    # The layout-free path of ``render`` (every fetched post), written out
    # flat because export renders every post; tests hold it equal to
    # rendering with ``Layout()``.
    return "".join(
        (
            _HEAD,
            "title: ",
            _quoted(post.title),
            "\ncategories: \n - ",
            _plain_or_quoted(post.group),
            "\n - ",
            _plain_or_quoted(post.outlet),
            "\n - ",
            _plain_or_quoted(post.section),
            "\nheadimg: ",
            _quoted(post.headimg),
            "\nauthor: ",
            _plain_or_quoted(post.author),
            "\ncomments: ",
            "true" if post.comments else "false",
            "\ndate: ",
            format_date(post.date),
            "" if post.updated is None else "\nupdated: " + format_date(post.updated),
            "\nthumbnail: ",
            _quoted(post.thumbnail),
            "\n---\n",
            _OPENING,
            post.body,
            _CLOSING,
        )
    )


def render(post: Post) -> str:
    """The post as a seed-format file, byte for byte (its layout, if any)."""
    if post.layout is None:
        return _render_canonical(post)
    layout = post.layout
    tz = zone(layout.timezone)
    out = [layout.head]
    for key in _key_order(post, layout):
        out.append(key + ":")
        if key == "categories":
            out.append(_spell(layout, key, "", " ", partial(_read_empty, line=0)))
            items = post.categories
            count = 2 if layout.items == 2 and post.section == "" else 3
            for i in range(count):
                out += (
                    "\n",
                    layout.indent,
                    "-",
                    _spell(
                        layout,
                        f"categories.{i}",
                        items[i],
                        " " + _plain_or_quoted(items[i]),
                        partial(_read_item, line=0),
                    ),
                )
        elif key in ("date", "updated"):
            date = post.date if key == "date" else post.updated
            out.append(
                _spell(
                    layout,
                    key,
                    date,
                    " " + format_date(date),
                    partial(_read_date, line=0, tz=tz, key=key),
                )
            )
        elif key == "comments":
            out.append(
                _spell(
                    layout,
                    key,
                    post.comments,
                    " true" if post.comments else " false",
                    partial(_read_bool, line=0),
                )
            )
        else:
            value: str = getattr(post, key)
            canonical = " " + (_plain_or_quoted(value) if key == "author" else _quoted(value))
            out.append(_spell(layout, key, value, canonical, partial(_read_scalar, line=0)))
        out.append("\n")
    out += ("---\n", layout.opening, post.body, layout.closing)
    return "".join(out)


# -- reading -----------------------------------------------------------------


def _read_empty(text: str, line: int) -> str:
    if text.strip(" \t"):
        raise PostFormatError("categories takes its items on the following lines", line)
    return ""


def _read_bool(text: str, line: int) -> bool:
    raw = text.strip(" \t")
    if raw not in ("true", "false") or not text.startswith(" "):
        raise PostFormatError(f"comments must be true or false, found {raw!r}", line)
    return raw == "true"


def _read_date(text: str, line: int, tz: ZoneInfo, key: str = "date") -> datetime | None:
    raw = text.strip(" \t")
    if not text.startswith(" "):
        raise PostFormatError(f"expected a space after '{key}:'", line)
    if key == "updated" and raw == INVALID_DATE:
        raise PostFormatError(
            f"updated must be a real date; delete the line if the post was never "
            f"revised, found {raw!r}",
            line,
        )
    naive = _NAIVE_DATE_RE.fullmatch(raw)
    if naive is not None:
        try:
            y, mo, d, h, mi, sec = (int(part) for part in naive.groups())
            local = datetime(y, mo, d, h, mi, sec, tzinfo=tz)
        except ValueError as exc:
            raise PostFormatError(f"not a real date: {raw!r} ({exc})", line) from None
        return local.astimezone(UTC)
    try:
        return parse_date(raw)
    except ValueError as exc:
        raise PostFormatError(str(exc), line) from None


def _read_double(raw: str, line: int) -> str:
    quoted = _DOUBLE_RE.fullmatch(raw)
    if quoted is None:
        raise PostFormatError(
            f'unterminated double-quoted value, or a " inside it not escaped as \\": {raw!r}',
            line,
        )

    def unescape(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2) or m.group(3)
        if code:
            return chr(int(code, 16))
        if m.group(4) not in _ESCAPES:
            raise PostFormatError(f"unknown escape \\{m.group(4)} in {raw!r}", line)
        return _ESCAPES[m.group(4)]

    return _ESCAPE_RE.sub(unescape, quoted.group(1))


def _read_scalar(text: str, line: int) -> str:
    """A value after ``key:`` or ``-``: plain, single- or double-quoted.

    Plain values may continue on indented lines, folded with one space as
    YAML does (the older generator wrapped long titles so).
    """
    if text and not text.startswith((" ", "\t")):
        raise PostFormatError(f"expected a space before the value {text!r}", line)
    first, *more = text.split("\n")
    raw = first.strip(" \t")
    if raw.startswith(("'", '"')):
        if more:
            raise PostFormatError(f"a quoted value must stay on one line: {raw!r}", line)
        if raw.startswith('"'):
            return _read_double(raw, line)
        if len(raw) < 2 or not raw.endswith("'"):
            raise PostFormatError(f"unterminated single-quoted value {raw!r}", line)
        inner = raw[1:-1]
        if "'" in inner.replace("''", ""):
            raise PostFormatError(
                f"a lone ' inside a single-quoted value must be doubled: {raw!r}", line
            )
        return inner.replace("''", "'")
    if any(not m.startswith((" ", "\t")) or not m.strip(" \t") for m in more):
        raise PostFormatError("a value's continuation lines must be indented, not blank", line)
    parts = [raw, *(m.strip(" \t") for m in more)]
    value = " ".join(parts)
    if _PLAIN_YAML_START.match(value) or _PLAIN_YAML_INSIDE.search(value):
        raise PostFormatError(
            f"YAML would not read the unquoted value {value!r} as this text "
            "(a leading indicator, ': ' or ' #'); put it in single quotes",
            line,
        )
    return value


def _read_item(text: str, line: int) -> str:
    if "\n" in text:
        raise PostFormatError("a category item stays on one line", line)
    return _read_scalar(text, line)


def parse(text: str, *, source: str | None = None, timezone: str = "UTC") -> Post:
    """Read a post file.  Raises :class:`PostFormatError` naming the line.

    ``timezone`` is the zone of dates the file writes without one (an IANA
    name, kept in the post's layout).
    """
    tz = zone(timezone)
    try:
        return _parse(text, tz, timezone)
    except PostFormatError as exc:
        if source is not None:
            raise exc.with_source(source) from None
        raise


def _check_categories(count: int, line: int) -> None:
    if count not in (2, 3):
        raise PostFormatError(
            "categories needs three '- ' items (group, outlet, section), or two "
            f"(group, outlet) in the older format; found {count}",
            line,
        )


def _canonical_spelling(key: str, value: Any) -> str:
    if key in ("date", "updated"):
        return " " + format_date(value)
    if key == "comments":
        return " true" if value else " false"
    if key == "categories":
        return " "
    if key == "author" or key.startswith("categories."):
        return " " + _plain_or_quoted(value)
    return " " + _quoted(value)


def _parse(text: str, tz: ZoneInfo, tz_name: str) -> Post:  # noqa: C901 - one pass over a line grammar; each branch is one key's shape
    head = _HEAD_RE.match(text)
    if head is None:
        first = text.split("\n", 2)[:2]
        raise PostFormatError(
            f"expected a blank line then '---' to open the front matter, found {first!r}", 1
        )
    pos = head.end()
    lineno = head.group().count("\n") + 1

    # (slot, text after 'key:' or '-', first line) as written, in order.
    slots: list[tuple[str, str, int]] = []
    keys: list[str] = []
    indent: str | None = None
    items = 0
    in_categories = False
    may_continue = False
    while True:
        end = text.find("\n", pos)
        if end < 0:
            raise PostFormatError("the front matter is never closed by a '---' line", lineno)
        line = text[pos:end]
        pos = end + 1
        if "\r" in line:
            raise PostFormatError(
                "CR characters in the front matter: convert the file to LF line endings", lineno
            )
        if line == "---":
            break
        item = _ITEM_RE.fullmatch(line) if in_categories else None
        if item:
            if indent is not None and item.group(1) != indent:
                raise PostFormatError(
                    f"category items must all be indented alike ({len(indent)} spaces)", lineno
                )
            indent = item.group(1)
            if items == 3:
                raise PostFormatError(
                    "categories has more than three items (group, outlet, section)", lineno
                )
            slots.append((f"categories.{items}", item.group(2), lineno))
            items += 1
            lineno += 1
            continue
        if in_categories:
            _check_categories(items, lineno)
            in_categories = False
        if may_continue and line[:1] in (" ", "\t") and line.strip(" \t"):
            slot, written, at = slots[-1]
            slots[-1] = (slot, written + "\n" + line, at)
            lineno += 1
            continue
        m = _KEY_RE.fullmatch(line)
        if m is None:
            raise PostFormatError(f"expected 'key: value' or '---', found {line!r}", lineno)
        key, written = m.group(1), m.group(2)
        if key not in _KEYS and key not in _OPTIONAL_KEYS:
            known = ", ".join((*_KEYS, *_OPTIONAL_KEYS))
            raise PostFormatError(f"unknown key {key!r}; the format has {known}", lineno)
        if key in keys:
            raise PostFormatError(f"key {key!r} appears twice", lineno)
        keys.append(key)
        slots.append((key, written, lineno))
        in_categories = key == "categories"
        value_start = written.lstrip(" \t")[:1]
        may_continue = key in ("title", "headimg", "author", "thumbnail") and value_start not in (
            "",
            "'",
            '"',
        )
        lineno += 1
    if in_categories:
        _check_categories(items, lineno)
    values: dict[str, Any] = {"headimg": "", "updated": None, "categories.2": ""}
    written_out: list[tuple[str, str]] = []
    naive_dates = False
    for slot, written, at in slots:
        value: Any
        if slot == "categories":
            value = _read_empty(written, at)
        elif slot == "comments":
            value = _read_bool(written, at)
        elif slot in ("date", "updated"):
            value = _read_date(written, at, tz, slot)
            naive_dates = naive_dates or _NAIVE_DATE_RE.fullmatch(written.strip(" \t")) is not None
        else:
            value = _read_scalar(written, at)
        values[slot] = value
        if written != _canonical_spelling(slot, value):
            written_out.append((slot, written))
    missing = [k for k in _KEYS if k not in keys and k not in _MAY_BE_ABSENT]
    if missing:
        raise PostFormatError(f"missing key(s): {', '.join(missing)}", lineno)

    lineno += 1
    rest = text[pos:]
    opening = _OPENING_RE.match(rest)
    if opening is None:
        raise PostFormatError(
            f"expected a blank line and '<div>' after the front matter, found {rest[:40]!r}",
            lineno,
        )
    body_start = opening.end()
    # The tail is the last '</div>' line: look there, not all through the body.
    tail = _TAIL_RE.match(rest, max(rest.rfind("\n</div>"), body_start))
    if tail is None:
        last = lineno + rest.count("\n")
        raise PostFormatError(
            "expected the body to end with a line before '</div>' (whitespace, or content "
            "and trailing spaces) and '</div>' at the end of the file",
            last,
        )
    # The last line before '</div>' belongs to the layout when it holds only
    # whitespace (its line break too); otherwise only its trailing blanks do.
    last_break = rest.rfind("\n", body_start, tail.start())
    last_line = rest[last_break + 1 if last_break >= 0 else body_start : tail.start()]
    if not last_line.strip(" \t") and last_break >= 0:
        body_end = last_break
    else:
        body_end = tail.start() - (len(last_line) - len(last_line.rstrip(" \t")))

    order = tuple(keys)
    canonical_order = tuple(k for k in _ORDER if k in keys)
    layout = Layout(
        head=head.group(),
        keys=() if order == canonical_order and "headimg" in keys else order,
        written=tuple(written_out),
        indent=_INDENT if indent is None else indent,
        items=items,
        opening=opening.group(),
        closing=rest[body_end:],
        timezone=tz_name if naive_dates else "UTC",
    )
    try:
        return Post(
            title=values["title"],
            group=values["categories.0"],
            outlet=values["categories.1"],
            section=values["categories.2"],
            headimg=values["headimg"],
            author=values["author"],
            comments=values["comments"],
            date=values["date"],
            updated=values["updated"],
            thumbnail=values["thumbnail"],
            body=rest[body_start:body_end],
            layout=None if layout == _CANONICAL else layout,
        )
    except (TypeError, ValueError) as exc:
        raise PostFormatError(str(exc), None) from None
