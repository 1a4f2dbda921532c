"""Text that every codec and both databases accept: the repairs feed values get where they enter.

Feeds carry text that Python holds happily but that something further down
refuses, and one refused value used to cost a whole feed, or a whole pass:

* a *lone surrogate* (``"\\ud83d"``, what JavaScript writes when it cuts an
  emoji in half; or ``&#55357;`` in XML) cannot be encoded as UTF-8, so
  feedparser, ``json``, SQLite and psycopg all raise ``UnicodeEncodeError``;
* a surrogate *pair written as two numeric references* (``&#55357;&#56832;``)
  is a valid character spelled the UTF-16 way; XML parsers decode each half
  on its own and fail as above;
* NUL is refused by PostgreSQL in text and JSON, and the other C0 controls
  are not text at all (and forge lines in logs);
* a value longer than its column (``VARCHAR(n)``) or than a B-tree index row
  allows is refused by PostgreSQL and quietly kept by SQLite.

The rules are the same whatever the backend, so a feed stores the same rows
on SQLite and on PostgreSQL: a valid pair becomes its character, a lone
surrogate U+FFFD, controls are dropped (tab, newline and carriage return stay
in text that may span lines), and over-long keys are shortened with a hash of
the whole value so two long keys stay apart.  Everything here is pure and
imports nothing of the project.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Final

__all__ = [
    "REPLACEMENT",
    "escape_for_log",
    "fit_key",
    "fit_or_none",
    "repair_references",
    "repair_text",
    "repair_tree",
]

#: What a lone surrogate becomes (U+FFFD REPLACEMENT CHARACTER).
REPLACEMENT: Final = "\ufffd"

_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls that are not whitespace a text may hold (tab, LF, CR).
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_LINE_CONTROLS = re.compile("[\x00-\x1f]")


def _has_surrogate(value: str) -> bool:
    # Encoding is how every consumer finds out, and it is several times
    # faster than a regex class over the surrogate range.
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _join_pair(match: re.Match[str]) -> str:
    pair = match.group()
    return chr(0x10000 + ((ord(pair[0]) - 0xD800) << 10) + (ord(pair[1]) - 0xDC00))


def repair_text(value: str, *, multiline: bool = True) -> str:
    """``value`` as text every encoder and database takes (see the module docstring).

    ``multiline`` keeps tab, newline and carriage return (bodies, summaries);
    without it they are dropped too (GUIDs, links, header values).  Returns
    ``value`` itself when nothing needs repair, which is nearly always.
    """
    controls = _CONTROLS if multiline else _LINE_CONTROLS
    surrogates = _has_surrogate(value)
    if not surrogates and not controls.search(value):
        return value
    if surrogates:
        value = _SURROGATE.sub(REPLACEMENT, _PAIR.sub(_join_pair, value))
    return controls.sub("", value)


def _dump_needs_repair(dumped: str) -> bool:
    """Whether ``json.dumps(..., ensure_ascii=False)`` output holds a control or a surrogate.

    C0 controls come out escaped (``\\u0000``, ``\\b``, ``\\f``; ``\\n``,
    ``\\r`` and ``\\t``, which text may hold, are not looked for),
    surrogates as they are.  Text that merely spells such an escape (a
    backslash then ``b``) is a false alarm, which only costs the walk.
    """
    return "\\u00" in dumped or "\\b" in dumped or "\\f" in dumped or _has_surrogate(dumped)


def repair_tree(value: Any) -> Any:
    """JSON-ready data (dicts, lists, strings, numbers) with every string repaired.

    Keys too: ``json`` and psycopg encode them like values.  Strings may span
    lines (this is for raw entries and documents, bodies included).  Returns
    ``value`` itself when nothing in it needs repair, so the common case
    copies nothing -- and costs one ``json.dumps`` in C and one search, not
    a walk in Python over every node (a third of the parse time otherwise).
    """
    try:
        dumped = json.dumps(value, ensure_ascii=False, check_circular=False)
    except (TypeError, ValueError):  # not JSON-ready after all: walk it
        dumped = None
    if dumped is not None and not _dump_needs_repair(dumped):
        return value
    return _repair_tree(value)


def _repair_tree(value: Any) -> Any:
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, dict):
        repaired = {
            repair_text(k) if isinstance(k, str) else k: _repair_tree(v) for k, v in value.items()
        }
        same = len(repaired) == len(value) and all(
            k in value and value[k] is v for k, v in repaired.items()
        )
        return value if same else repaired
    if isinstance(value, list | tuple):
        items = [_repair_tree(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


# --------------------------------------------------------------------------
# Numeric character references to surrogates, in the bytes of an XML document

# Code points as decimal or hexadecimal references (leading zeros allowed),
# split into high (D800-DBFF) and low (DC00-DFFF) halves.
_HIGH = (
    rb"(?:0*(?:5529[6-9]|55[3-9][0-9]{2}|56[0-2][0-9]{2}|563[01][0-9])"
    rb"|[xX]0*[dD][89abAB][0-9a-fA-F]{2})"
)
_LOW = (
    rb"(?:0*(?:563[2-9][0-9]|56[4-9][0-9]{2}|57[0-2][0-9]{2}|573[0-3][0-9]|5734[0-3])"
    rb"|[xX]0*[dD][c-fC-F][0-9a-fA-F]{2})"
)
_REFERENCE_PAIR = re.compile(rb"&#(" + _HIGH + rb");&#(" + _LOW + rb");")
_LONE_REFERENCE = re.compile(rb"&#(?:" + _HIGH + rb"|" + _LOW + rb");")


def _code(reference: bytes) -> int:
    return int(reference[1:], 16) if reference[:1] in (b"x", b"X") else int(reference)


def _pair_reference(match: re.Match[bytes]) -> bytes:
    high, low = _code(match.group(1)), _code(match.group(2))
    return b"&#%d;" % (0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def repair_references(document: bytes) -> bytes:
    """An XML document whose character references never name a surrogate.

    ``&#55357;&#56832;`` (a pair, as UTF-16 writes it) becomes ``&#128512;``
    (😀); any other reference to a surrogate becomes ``&#65533;`` (U+FFFD).
    XML parsers decode references one by one, so this has to happen before
    they run.  ASCII-compatible encodings only (references in UTF-16 bytes
    are left alone, as is every document without a surrogate reference).
    """
    if b"&#" not in document or not _LONE_REFERENCE.search(document):
        return document
    return _LONE_REFERENCE.sub(b"&#65533;", _REFERENCE_PAIR.sub(_pair_reference, document))


# --------------------------------------------------------------------------
# Column sizes


def _fits(value: str, limit: int) -> bool:
    # PostgreSQL counts VARCHAR(n) in characters, but a B-tree index row is
    # limited in bytes (about 2,700): a key of 2,048 CJK characters fits the
    # column and not its unique index.  So the bytes count too.
    return len(value) <= limit and len(value.encode("utf-8", "surrogatepass")) <= limit


def fit_key(value: str, limit: int) -> str:
    """``value`` shortened to ``limit`` characters *and* UTF-8 bytes, if it is longer.

    A shortened key keeps its start (readable in the database) and ends with
    ``|sha256:`` and the hash of the whole value, so two long keys that
    share a start stay two keys, and the same value always gives the same key.
    """
    if _fits(value, limit):
        return value
    suffix = "|sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    room = limit - len(suffix)
    if room <= 0:
        raise ValueError(f"a key limit of {limit} leaves no room for the {len(suffix)}-char hash")
    # Characters never take fewer bytes than one, so ``room`` bytes are also
    # at most ``room`` characters; a character cut in half is left out.
    head = value.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + suffix


def fit_or_none(value: str | None, limit: int) -> str | None:
    """A single-line header value repaired, or None if empty or longer than ``limit``.

    For values that only work whole (HTTP validators): a shortened or
    hashed ETag would never match the server's again, so a value no column
    can hold is better not kept at all.
    """
    if value is None:
        return None
    value = repair_text(value, multiline=False)
    return value if value and _fits(value, limit) else None


# --------------------------------------------------------------------------
# Logs

_LOG_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SHORT_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_for_log(text: str) -> str:
    """``text`` on one line: controls, line separators and surrogates as escapes.

    A value from a feed (a GUID with a newline, a title with a carriage
    return) can then never start a line of its own that a reader or a log
    collector would take for another record.  Backslashes are left as they
    are: the point is that no line is forged, not that the escaping can be
    undone.
    """
    return _LOG_UNSAFE.sub(_escape_one, text) if _LOG_UNSAFE.search(text) else text
