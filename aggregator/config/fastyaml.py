"""feeds.yaml through libyaml when that provably reads it as ruamel would.

ruamel's round-trip loader (``aggregator.config.feeds``) is the reference:
YAML 1.2, line numbers for every message, duplicate keys refused.  It is
pure Python, and reading a 300-feed file with it was ~12% of a whole
``aggregator fetch``.  libyaml (PyYAML's C parser) reads the same file in a
twentieth of the time, but it is a YAML 1.1 parser with 1.1's implicit types
(``on``/``yes`` are booleans there, ``010`` is octal, ``1:20`` a number).

So only libyaml's *events* are used -- its tokenizer and its structure --
and the values are resolved here, by YAML 1.2's rules as ruamel applies
them, and only where those rules leave no doubt: ``true``/``false`` and
their capitalised forms, the null forms, plain decimal integers, and text.
Whatever else a file holds gives up with :data:`UNSURE`, and the caller
reads the file with ruamel, as before: any libyaml error; a tag, an anchor,
an alias or a merge key; a duplicate key (ruamel refuses it, with its own
message and line); a key that is not text; a plain scalar that YAML 1.2
reads as a number (other than a plain decimal integer), a date, a merge key
or ``=`` (or that starts with a digit and holds a ``-`` or ``:``); a block
scalar (``|``, ``>``) or a scalar over several lines (folding); any
backslash (double-quoted escapes) or tab in the text;
a ``%YAML``/``%TAG`` directive; more than one document; and characters
whose reading differs between YAML 1.1 and 1.2 or that ruamel refuses (NEL,
LS, PS, a byte-order mark, non-printables).

The caller also falls back whenever the file has a problem to report or a
warning to give, since those carry line numbers only ruamel's nodes have
(``_Loader.load_fast``).  tests/test_config_fastyaml.py reads every
feeds.yaml of the tests and seeds, and generated ones, both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["UNSURE", "Parsed", "plain_yaml"]

#: What :func:`plain_yaml` returns when libyaml's reading is not provably ruamel's.
UNSURE: Final = object()

_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS: Final = {
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}
_DECIMAL: Final = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
#: Every other plain scalar YAML 1.2 reads as other than text, in ruamel's
#: patterns (ruamel.yaml.resolver, the 1.2 float, int, merge, timestamp and
#: value resolvers): such a scalar goes to ruamel.
_NOT_TEXT: Final = re.compile(
    r"""(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+
    |<<
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
     (?:[Tt]|[\ \t]+)[0-9][0-9]?
     :[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
    |=
    |!|&|\*
    )""",
    re.X,
)
#: Backslashes (escapes), tabs (ruamel refuses some that libyaml takes), the
#: line breaks only YAML 1.1 has, a byte-order mark, and what ruamel's reader
#: refuses as non-printable.
_DOUBTFUL_TEXT: Final = re.compile(
    "[\\\\\t\x85\u2028\u2029\ufeff]"
    "|[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A document read by libyaml, with the start of each node as ruamel records it.

    ``positions`` maps (``id`` of a dict or list in ``data``, key or index)
    to the 0-based (line, column) where that key (of a mapping) or item (of
    a sequence) starts: what ruamel's ``lc.key`` and ``lc.item`` give.
    ``root`` is where the document's top node starts (ruamel's ``lc.line``,
    ``lc.col``).
    """

    data: Any
    root: tuple[int, int]
    positions: dict[tuple[int, str | int], tuple[int, int]]


class _Unsure(Exception):
    """libyaml's events hold something only ruamel may decide."""


def plain_yaml(text: str) -> Parsed | object:
    """The document of ``text`` as plain dicts, lists, str, int, bool and None
    (with where its nodes start); :data:`UNSURE` when libyaml is not
    installed or its reading is not provably the one ruamel's YAML 1.2
    round-trip loader gives.
    """
    if _DOUBTFUL_TEXT.search(text):
        return UNSURE
    try:
        from yaml import CSafeLoader
    except ImportError:  # PyYAML without libyaml: its pure-Python parser is no faster
        return UNSURE
    loader = CSafeLoader(text)
    try:
        return _Events(loader).document()
    except (_Unsure, RecursionError):
        return UNSURE
    except Exception:  # any libyaml error: ruamel says what is wrong, with its line
        return UNSURE
    finally:
        loader.dispose()


class _Events:
    """A recursive descent over libyaml's events for one stream."""

    def __init__(self, loader: Any) -> None:
        import yaml.events as ev

        self._loader = loader
        self._ev = ev
        self.positions: dict[tuple[int, str | int], tuple[int, int]] = {}

    def _next(self) -> Any:
        return self._loader.get_event()

    def document(self) -> Parsed:
        ev = self._ev
        if not isinstance(self._next(), ev.StreamStartEvent):
            raise _Unsure
        first = self._next()
        if isinstance(first, ev.StreamEndEvent):
            return Parsed(None, (0, 0), {})  # no document: ruamel's load gives None too
        if not isinstance(first, ev.DocumentStartEvent) or first.version or first.tags:
            raise _Unsure
        top = self._next()
        value = self._node(top)
        if not isinstance(self._next(), ev.DocumentEndEvent):
            raise _Unsure
        if not isinstance(self._next(), ev.StreamEndEvent):
            raise _Unsure  # a second document: ruamel refuses the file
        return Parsed(value, (top.start_mark.line, top.start_mark.column), self.positions)

    def _node(self, event: Any) -> Any:
        ev = self._ev
        if isinstance(event, ev.AliasEvent) or event.anchor is not None or event.tag is not None:
            raise _Unsure
        if isinstance(event, ev.ScalarEvent):
            return _scalar(event)
        if isinstance(event, ev.SequenceStartEvent):
            items: list[Any] = []
            while not isinstance(following := self._next(), ev.SequenceEndEvent):
                mark = following.start_mark
                self.positions[id(items), len(items)] = (mark.line, mark.column)
                items.append(self._node(following))
            return items
        if isinstance(event, ev.MappingStartEvent):
            mapping: dict[str, Any] = {}
            while not isinstance(following := self._next(), ev.MappingEndEvent):
                key = self._node(following)
                if not isinstance(key, str) or key in mapping or key == "<<":
                    raise _Unsure  # not text, a duplicate (refused by ruamel), a merge
                mark = following.start_mark
                self.positions[id(mapping), key] = (mark.line, mark.column)
                mapping[key] = self._node(self._next())
            return mapping
        raise _Unsure


def _scalar(event: Any) -> Any:
    if event.start_mark.line != event.end_mark.line:
        raise _Unsure  # folded over lines
    value: str = event.value
    if event.style in ("'", '"'):
        return value
    if event.style:  # libyaml says "" for a plain scalar
        raise _Unsure  # a block scalar
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    if _DECIMAL.fullmatch(value):
        return int(value)
    if _NOT_TEXT.fullmatch(value) or (value[0].isdigit() and ("-" in value or ":" in value)):
        raise _Unsure  # a float, an octal or hex number, a date (or near one), a merge key...
    return value
