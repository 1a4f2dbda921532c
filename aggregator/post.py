"""The seed post format: a typed ``Post`` and its exact text form.

This module is the contract with the archives the daemon feeds (Hexo blogs
built from files like ``seeds/*.txt``), so it renders byte for byte what those
files contain: the blank first line, ``categories: `` with its trailing space,
``<div>   `` with three spaces, the twelve spaces after ``</div>``.  It
deliberately does not use a general YAML emitter: none of them reproduces that
layout, and a hand-checked grammar of nine keys gives errors that name the line.

It imports nothing else from the project, so the format can be reused and
tested on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "INVALID_DATE",
    "Post",
    "PostFormatError",
    "format_date",
    "parse",
    "parse_date",
    "render",
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

_OPEN = "\n---\n"
_BODY_OPEN = "<div>   \n"
_BODY_CLOSE = "\n  \n</div>\n            "
# Editors that strip trailing whitespace turn the exact markers into these;
# such files are still ours, they just come back out in canonical form.
_BODY_OPEN_LOOSE = re.compile(r"<div>[ \t]*\n")
_BODY_CLOSE_LOOSE = re.compile(r"\n[ \t]*\n</div>[ \t]*(?:\n[ \t]*)?\Z")

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
_OPTIONAL_KEYS = ("updated",)

# Characters a YAML single-quoted scalar cannot carry (and Hexo's js-yaml
# rejects): C0 controls but tab, DEL, C1 controls, surrogates, BOM, U+FFFE/F.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")

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


class PostFormatError(ValueError):
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


@dataclass(frozen=True, slots=True)
class Post:
    """One news post as the archive stores it.

    ``date`` is an aware datetime in UTC with whole seconds, or ``None`` for a
    replayed file that says ``Invalid Date``.  ``body`` is the HTML between the
    ``<div>`` markers, exactly as written, ends trimmed of nothing.
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
            f"expected an RFC 822 GMT date like 'Tue, 01 Mar 2022 13:31:34 GMT' "
            f"or '{INVALID_DATE}', found {text!r}"
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


def _quoted(value: str) -> str:
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
    ):
        return _quoted(value)
    return value


def render(post: Post) -> str:
    """The post as a seed-format file, byte for byte."""
    return "".join(
        (
            _OPEN,
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
            "\n---\n\n",
            _BODY_OPEN,
            post.body,
            _BODY_CLOSE,
        )
    )


def _scalar(raw: str, line: int) -> str:
    """A plain or single-quoted YAML scalar on one line."""
    if raw.startswith("'"):
        if len(raw) < 2 or not raw.endswith("'"):
            raise PostFormatError(f"unterminated single-quoted value {raw!r}", line)
        inner = raw[1:-1]
        if "'" in inner.replace("''", ""):
            raise PostFormatError(
                f"a lone ' inside a single-quoted value must be doubled: {raw!r}", line
            )
        return inner.replace("''", "'")
    if raw.startswith('"'):
        raise PostFormatError(
            f"double-quoted values are not part of the format; use single quotes: {raw!r}", line
        )
    if raw != raw.strip():
        raise PostFormatError(f"unexpected whitespace around value {raw!r}", line)
    return raw


def parse(text: str, *, source: str | None = None) -> Post:
    """Read a seed-format file.  Raises :class:`PostFormatError` naming the line."""
    try:
        return _parse(text)
    except PostFormatError as exc:
        if source is not None:
            raise exc.with_source(source) from None
        raise


def _check_categories(categories: list[str], line: int) -> None:
    if len(categories) != 3:
        raise PostFormatError(
            "categories needs exactly three '- ' items (group, outlet, section), "
            f"found {len(categories)}",
            line,
        )


def _parse(text: str) -> Post:
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.startswith(_OPEN):
        pos, lineno = len(_OPEN), 3
    elif text.startswith("---\n"):
        pos, lineno = 4, 2
    else:
        first = text.split("\n", 2)[:2]
        raise PostFormatError(
            f"expected a blank line then '---' to open the front matter, found {first!r}", 1
        )

    values: dict[str, str] = {}
    categories: list[str] = []
    in_categories = False
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
        item = re.fullmatch(r" {0,4}- (.*)", line)
        if in_categories and item:
            if len(categories) == 3:
                raise PostFormatError(
                    "categories has more than three items (group, outlet, section)", lineno
                )
            categories.append(_scalar(item.group(1), lineno))
            lineno += 1
            continue
        if in_categories:
            _check_categories(categories, lineno)
        in_categories = False
        m = re.fullmatch(r"([a-z]+):(?: (.*))?", line)
        if m is None:
            raise PostFormatError(f"expected 'key: value' or '---', found {line!r}", lineno)
        key, raw = m.group(1), m.group(2) or ""
        if key not in _KEYS and key not in _OPTIONAL_KEYS:
            known = ", ".join((*_KEYS, *_OPTIONAL_KEYS))
            raise PostFormatError(f"unknown key {key!r}; the format has {known}", lineno)
        if key in values or (key == "categories" and categories):
            raise PostFormatError(f"key {key!r} appears twice", lineno)
        if key == "categories":
            if raw.strip():
                raise PostFormatError(
                    "categories takes its three items on the following lines", lineno
                )
            in_categories = True
            values[key] = ""
        elif key == "comments":
            if raw not in ("true", "false"):
                raise PostFormatError(f"comments must be true or false, found {raw!r}", lineno)
            values[key] = raw
        elif key in ("date", "updated"):
            if key == "updated" and raw == INVALID_DATE:
                raise PostFormatError(
                    f"updated must be a real date; delete the line if the post was never "
                    f"revised, found {raw!r}",
                    lineno,
                )
            values[key] = raw
            try:
                parse_date(raw)
            except ValueError as exc:
                raise PostFormatError(str(exc), lineno) from None
        else:
            values[key] = _scalar(raw, lineno)
        lineno += 1
    if in_categories:
        _check_categories(categories, lineno)
    missing = [k for k in _KEYS if k not in values]
    if missing:
        raise PostFormatError(f"missing key(s): {', '.join(missing)}", lineno)

    lineno += 1
    rest = text[pos:]
    if rest.startswith("\n" + _BODY_OPEN):
        body_start = 1 + len(_BODY_OPEN)
    else:
        m_open = re.match(r"\n?" + _BODY_OPEN_LOOSE.pattern, rest)
        if m_open is None:
            raise PostFormatError(
                f"expected a blank line and '<div>' after the front matter, found {rest[:40]!r}",
                lineno,
            )
        body_start = m_open.end()
    if rest.endswith(_BODY_CLOSE):
        body_end = len(rest) - len(_BODY_CLOSE)
    else:
        m_close = _BODY_CLOSE_LOOSE.search(rest, body_start)
        if m_close is None:
            last = lineno + rest.count("\n")
            raise PostFormatError("expected the body to end with a blank line and '</div>'", last)
        body_end = m_close.start()
    if body_end < body_start:
        raise PostFormatError("the body's '<div>' and '</div>' overlap", lineno)
    try:
        return Post(
            title=values["title"],
            group=categories[0],
            outlet=categories[1],
            section=categories[2],
            headimg=values["headimg"],
            author=values["author"],
            comments=values["comments"] == "true",
            date=parse_date(values["date"]),
            updated=parse_date(values["updated"]) if "updated" in values else None,
            thumbnail=values["thumbnail"],
            body=rest[body_start:body_end],
        )
    except (TypeError, ValueError) as exc:
        raise PostFormatError(str(exc), None) from None
