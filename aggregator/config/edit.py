"""Adding feeds to a ``feeds.yaml`` that a person wrote, without disturbing it.

``feeds.yaml`` is hand-edited and commented (the shipped one explains every
key), so a tool that appends a feed must leave every byte a person wrote
exactly where it was.  :func:`append_feeds` does that in two steps:

1. ruamel's round-trip mode loads the file, the new entries are appended to
   the ``feeds`` list and the document is dumped again, with the indentation
   the file uses.  The result is accepted only if it is the original text
   with one contiguous insertion (or with an empty ``feeds: []`` turned into
   a block list, the one change an append into an empty flow list needs).
   Anything else -- ruamel re-spacing a value, re-wrapping a long line,
   moving a comment -- rejects this step.
2. Otherwise the entries are rendered on their own and inserted as text at
   the same place, which works for any block list.  An empty ``feeds: []``
   is the one place text is replaced: its ``[]`` goes, and the entries follow
   on the next lines.  When even that is impossible (a non-empty ``[...]``
   list that ruamel would reflow), :class:`FeedsEditError` shows the YAML to
   paste by hand: rewriting someone's file is never the fallback.

The new entries go right after the last feed's own lines, not after comments
that introduce what follows the list (see :func:`append_feeds`).

The file-level half, :func:`save_feeds_file`, writes atomically (temporary
file + rename, so the daemon's hot reload never reads half a file),
re-validates with :func:`aggregator.config.feeds.load_config` and puts the original
back if the result does not load.

Everything else here is pure: duplicate detection, RSSHub route recognition
and building an entry that only spells out what ``defaults`` does not give.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from aggregator.config.feeds import (
    Config,
    ConfigError,
    FeedSpec,
    feed_settings,
    join_rsshub,
    load_config,
    loads_config,
    normalise_url,
    parse_duration,
)
from aggregator.errors import ConfigurationError

__all__ = [
    "FALLBACK_GROUP",
    "FALLBACK_SECTION",
    "FeedsEditError",
    "FeedsFile",
    "append_feeds",
    "build_entry",
    "duplicate_of",
    "read_defaults",
    "rsshub_base_of",
    "rsshub_route_of",
    "save_feeds_file",
]

#: The first category when neither the command line nor ``defaults.group``
#: gives one: the group every archive this project serves files under.
FALLBACK_GROUP: Final = "新媒体"
#: The third category when nothing else gives one: an outlet's whole feed is
#: its news section (the Aljazeera seeds file under it).
FALLBACK_SECTION: Final = "新闻"

#: An empty flow list as the value of ``feeds:`` (`` []``); the only original
#: text an append may replace.
_EMPTY_FLOW_LIST: Final = re.compile(r"[ \t]*\[[ \t]*\][ \t]*")


class FeedsEditError(ConfigurationError, ValueError):
    """The feeds file cannot be edited safely; the message says what to do instead."""


# --------------------------------------------------------------------------
# Reading what is there
# --------------------------------------------------------------------------


def read_defaults(text: str) -> dict[str, Any]:
    """The ``defaults`` mapping of a feeds file, as plain values (``{}`` if none).

    New entries leave out what ``defaults`` already gives (group, section,
    interval...), so an appended feed looks like the hand-written ones.  The
    text is expected to be valid already (callers load it with
    :func:`~aggregator.config.feeds.load_config` first); anything odd reads as ``{}``.
    """
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError:
        return {}
    raw = data.get("defaults") if isinstance(data, Mapping) else None
    return _plain(raw) if isinstance(raw, Mapping) else {}


def duplicate_of(config: Config, url: str, route: str | None = None) -> FeedSpec | None:
    """The configured feed that ``url`` (or RSSHub ``route``) would duplicate, if any.

    Two entries for one feed would file every post twice, so a feed counts as
    present when its normalised URL matches, or when both are RSSHub feeds
    with the same route (state is kept per route even if the server moves).
    Disabled feeds count: the person switched them off on purpose.
    """
    key = normalise_url(url)
    wanted = "/" + route.lstrip("/") if route else None
    for feed in config.feeds:
        if feed.key == key or (wanted is not None and feed.rsshub_route == wanted):
            return feed
    return None


def rsshub_route_of(url: str, base: str | None) -> str | None:
    """The RSSHub route that ``url`` is on the server ``base``, or ``None``.

    ``http://127.0.0.1:1200/guancha/headline`` on base ``http://127.0.0.1:1200``
    is ``/guancha/headline``; writing it as ``rsshub:`` keeps the file
    readable and lets the feed follow ``rsshub_base`` if the server moves.
    The answer is checked by joining it back with
    :func:`~aggregator.config.feeds.join_rsshub`, so it is never a near miss.
    """
    if not base:
        return None
    b, u = urlsplit(base), urlsplit(url)
    prefix = b.path.rstrip("/") + "/"
    if normalise_url(urlunsplit((u.scheme, u.netloc, "/", "", ""))) != normalise_url(
        urlunsplit((b.scheme, b.netloc, "/", "", ""))
    ):
        return None
    if not u.path.startswith(prefix) or not u.path[len(prefix) :]:
        return None
    query = u.query
    if b.query:  # join_rsshub puts the base's query (an access key) last
        if query != b.query and not query.endswith("&" + b.query):
            return None
        query = query[: -len(b.query)].rstrip("&")
    route = "/" + u.path[len(prefix) :] + (f"?{query}" if query else "")
    return route if normalise_url(join_rsshub(base, route)) == normalise_url(url) else None


def rsshub_base_of(url: str, route: str) -> str | None:
    """The server ``url`` must be on for ``route`` to give it (the inverse of joining).

    Used when an imported feed carries its route but the file has no
    ``rsshub_base`` for it; ``None`` when ``url`` does not end in ``route``.
    """
    u = urlsplit(url)
    r = urlsplit("/" + route.lstrip("/"))
    if not u.path.endswith(r.path) or (r.query and not u.query.startswith(r.query)):
        return None
    rest_query = u.query[len(r.query) :].lstrip("&") if r.query else u.query
    base = urlunsplit((u.scheme, u.netloc, u.path[: -len(r.path)], rest_query, ""))
    return base if normalise_url(join_rsshub(base, route)) == normalise_url(url) else None


# --------------------------------------------------------------------------
# Building an entry
# --------------------------------------------------------------------------


def build_entry(
    *,
    url: str,
    outlet: str,
    section: str,
    group: str,
    defaults: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``feeds`` entry that spells out only what ``defaults`` does not already give.

    ``settings`` are further feed keys carried over (from an OPML export),
    in feeds.yaml spelling (``rsshub`` is the route); each is written only
    where ``defaults`` would not give the same value.  The feed is written as an
    ``rsshub:`` route when it lives on the file's ``rsshub_base`` -- or on
    another server whose base can be read off the URL, written next to it --
    and as ``url:`` otherwise.  The result loads to a :class:`FeedSpec` with
    exactly the given values.
    """
    settings = settings or {}
    entry: dict[str, Any] = {}
    base = defaults.get("rsshub_base")
    route = rsshub_route_of(url, base if isinstance(base, str) else None)
    given_route = settings.get("rsshub")
    if route is not None and (given_route is None or route == given_route):
        entry["rsshub"] = route
    elif isinstance(given_route, str) and (own_base := rsshub_base_of(url, given_route)):
        entry["rsshub"] = "/" + given_route.lstrip("/")
        entry["rsshub_base"] = own_base
    else:
        entry["url"] = url
    entry["outlet"] = outlet
    if defaults.get("section") != section:
        entry["section"] = section
    if defaults.get("group") != group:
        entry["group"] = group
    for key, value in settings.items():
        if key == "rsshub":
            continue
        own = _beyond_defaults(key, value, defaults)
        if own is not None:
            entry[key] = own
    return entry


#: What a key means when neither the feed nor ``defaults`` sets it, in
#: feeds.yaml spelling (FeedSpec's own defaults, so there is one source).
_BUILT_IN: Final = feed_settings(
    FeedSpec(url="https://example.invalid/", outlet="-", section="-", group="-"),
    always=tuple(f.name for f in dataclasses.fields(FeedSpec)),
)


def _beyond_defaults(key: str, value: Any, defaults: Mapping[str, Any]) -> Any:
    """The part of a carried-over setting that ``defaults`` does not already give, or None.

    keep/block rules add up and image referers merge per host, so only the
    rules and hosts the defaults lack are written: writing all of them would
    apply the defaults' rules twice.
    """
    if key in ("keep", "block"):
        rules = list(defaults.get(key) or ())
        extra_rules = [rule for rule in value if rule not in rules]
        return extra_rules or None
    if key == "image_referers":
        referers = dict(defaults.get(key) or {})
        extra = {host: rule for host, rule in value.items() if referers.get(host) != rule}
        return extra or None
    if key in ("interval", "disable_after"):
        fallback = defaults.get(key, _BUILT_IN[key])
        try:
            same = parse_duration(value) == parse_duration(fallback)
        except ValueError:
            same = False
        return None if same else str(value)
    fallback = defaults.get(key, _BUILT_IN.get(key))
    if key == "full_text" and value is not None and fallback is not None:
        fallback = dict(fallback)
    return None if value == fallback else value


# --------------------------------------------------------------------------
# Appending to the text
# --------------------------------------------------------------------------


def append_feeds(text: str, entries: Sequence[Mapping[str, Any]], *, source: str = "") -> str:
    """``text`` with ``entries`` appended to its ``feeds`` list, all else byte for byte.

    ``entries`` are plain mappings (text, booleans, lists, nested mappings),
    such as :func:`build_entry` returns.  They go right after the last feed's
    own lines: comments written less indented than the feed's keys after it
    (``# where posts go`` above ``output_dir:``) introduce what follows, so
    they stay after the new feeds.  Raises :class:`FeedsEditError` when the
    entries cannot be added without rewriting what is there.
    """
    where = source or "feeds.yaml"
    if not entries:
        return text
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise FeedsEditError(f"{where}: not valid YAML, fix it first ({exc})") from None
    feeds = data.get("feeds") if isinstance(data, CommentedMap) else None
    if not isinstance(feeds, CommentedSeq):
        raise FeedsEditError(f"{where}: has no feeds: list to append to (write feeds: [] first)")
    if not feeds or feeds.fa.flow_style():
        # `feeds: []` may become a block list; a flow list is appended to inside its brackets.
        for edited in _round_trips(text, entries):
            if _is_append_of(text, edited, was_empty_flow=not feeds):
                return _checked(text, edited, entries, where)
        if feeds:
            raise FeedsEditError(_by_hand(where, "feeds: is a [...] list", entries))
        return _checked(text, _fill_empty_list(text, data, entries, where), entries, where)
    point, dash = _insertion_point(text, data, feeds)
    head, tail = text[:point], text[point:]
    for edited in _round_trips(text, entries):
        if len(edited) > len(text) and edited.startswith(head) and edited.endswith(tail):
            return _checked(text, edited, entries, where)
    # ruamel would reflow something: the entries, rendered alone, go in as text.
    newline = "\r\n" if "\r\n" in text else "\n"
    joiner = "" if not head or head.endswith("\n") else newline
    block = _indent(_render(entries), dash, newline)
    return _checked(text, head + joiner + block + tail, entries, where)


def _lines(text: str) -> list[str]:
    """Lines with their endings, split on \\n only (as YAML and ruamel count them)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _insertion_point(text: str, data: CommentedMap, feeds: CommentedSeq) -> tuple[int, int]:
    """Where new items go (an offset into ``text``), and the column of the items' dashes.

    That is after the last item's last line that is content or a comment
    indented deeper than the dashes (a commented-out option of that feed);
    blank lines and shallower comments after it are left below the new items.
    """
    lines = _lines(text)
    first_line, first_col = feeds.lc.item(0)
    dash = lines[first_line].rfind("-", 0, first_col)
    dash = dash if dash >= 0 else max(first_col - 2, 0)
    keys = list(data)
    after = keys.index("feeds") + 1
    end = data.lc.key(keys[after])[0] if after < len(keys) else len(lines)
    last = end - 1
    last_item = feeds.lc.item(len(feeds) - 1)[0]
    while last > last_item:
        stripped = lines[last].strip()
        indent = len(lines[last]) - len(lines[last].lstrip())
        if stripped and not (stripped.startswith("#") and indent <= dash):
            break
        last -= 1
    return sum(len(line) for line in lines[: last + 1]), dash


def _round_trips(text: str, entries: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """ruamel dumps of ``text`` plus ``entries``, one per plausible indentation style.

    ruamel does not keep a file's indentation on its own; it is guessed from
    the file, and the common layouts are tried after the guess.
    """
    _, seq_indent, offset = load_yaml_guess_indent(text)
    styles = []
    if seq_indent is not None:
        offset = offset or 0
        styles.append((seq_indent - offset if offset else seq_indent, seq_indent, offset))
    styles += [(2, 2, 0), (2, 4, 2), (4, 4, 0), (4, 6, 4), (4, 4, 2)]
    for mapping, sequence, off in dict.fromkeys(styles):
        yaml = _yaml(mapping, sequence, off)
        data = yaml.load(text)
        if not data["feeds"]:  # an empty list can only be written `feeds: []`
            data["feeds"].fa.set_block_style()  # ... and becomes a block list
        data["feeds"].extend(_commented(entry) for entry in entries)
        out = io.StringIO()
        yaml.dump(data, out)
        yield out.getvalue()


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never re-wrap a long line
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _commented(value: Any) -> Any:
    """Plain data as ruamel nodes; lists of text stay on one line (``[.ad, .related]``)."""
    if isinstance(value, Mapping):
        node = CommentedMap()
        for key, item in value.items():
            node[key] = _commented(item)
        return node
    if isinstance(value, list | tuple):
        seq = CommentedSeq(_commented(item) for item in value)
        seq.fa.set_flow_style()
        return seq
    return value


def _is_append_of(original: str, edited: str, *, was_empty_flow: bool) -> bool:
    """Whether ``edited`` is ``original`` with one insertion and nothing else changed.

    The one replacement allowed is the `` []`` of an empty ``feeds: []``.
    """
    if len(edited) <= len(original):
        return False
    prefix = 0
    limit = min(len(original), len(edited))
    while prefix < limit and original[prefix] == edited[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < limit - prefix
        and original[len(original) - 1 - suffix] == edited[len(edited) - 1 - suffix]
    ):
        suffix += 1
    replaced = original[prefix : len(original) - suffix]
    return not replaced or (was_empty_flow and _EMPTY_FLOW_LIST.fullmatch(replaced) is not None)


def _fill_empty_list(
    text: str, data: CommentedMap, entries: Sequence[Mapping[str, Any]], where: str
) -> str:
    """``feeds: []`` loses its ``[]`` and gets the entries on the lines below it."""
    lines = _lines(text)
    line_no, col = (int(n) for n in data.lc.value("feeds"))
    line = lines[line_no]
    empty = _EMPTY_FLOW_LIST.match(line, col)
    if empty is None or line[col] != "[":
        raise FeedsEditError(_by_hand(where, "feeds: [] is written in an unusual way", entries))
    newline = "\r\n" if "\r\n" in text else "\n"
    head = line[:col] + line[empty.end() :]
    if not head.endswith("\n"):
        head += newline
    block = _indent(_render(entries), int(data.lc.key("feeds")[1]) + 2, newline)
    return "".join(lines[:line_no]) + head + block + "".join(lines[line_no + 1 :])


def _by_hand(where: str, why: str, entries: Sequence[Mapping[str, Any]]) -> str:
    return (
        f"{where}: cannot add feeds without reformatting the file ({why}); "
        "add these lines to the feeds: list by hand:\n" + _render(entries)
    )


def _indent(rendered: str, column: int, newline: str) -> str:
    return "".join(" " * column + line + newline for line in rendered.splitlines() if line.strip())


def _render(entries: Sequence[Mapping[str, Any]]) -> str:
    yaml = _yaml(2, 2, 0)
    out = io.StringIO()
    yaml.dump(CommentedSeq(_commented(entry) for entry in entries), out)
    return out.getvalue()


def _checked(original: str, edited: str, entries: Sequence[Mapping[str, Any]], where: str) -> str:
    """The edit, once it reads back as the old list plus exactly the new entries."""
    old = YAML(typ="rt").load(original)["feeds"]
    try:
        new = YAML(typ="rt").load(edited)["feeds"]
    except (YAMLError, KeyError, TypeError) as exc:
        raise FeedsEditError(f"{where}: appending would break the file ({exc})") from None
    expected = [_plain(item) for item in old] + [_plain(entry) for entry in entries]
    if [_plain(item) for item in new] != expected:
        raise FeedsEditError(
            f"{where}: appending would change the existing feeds; add these lines by hand:\n"
            + _render(entries)
        )
    return edited


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    for kind in (bool, str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


# --------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedsFile:
    """A feeds file as read for editing: where it is, its text and what it holds."""

    path: Path
    text: str
    config: Config

    @classmethod
    def read(cls, path: Path) -> FeedsFile:
        """Read and validate ``path``; :class:`ConfigError` if it does not load.

        A symlinked file is followed, so the edit lands in the real file and
        the link stays a link.
        """
        config = load_config(path)
        real = Path(path).resolve()
        return cls(real, real.read_bytes().decode("utf-8"), config)

    @property
    def defaults(self) -> dict[str, Any]:
        return read_defaults(self.text)


def save_feeds_file(feeds_file: FeedsFile, new_text: str) -> Config:
    """Write ``new_text`` over the file atomically, then make sure it loads.

    The text is validated before anything is written (nothing is written if
    it would not load); after the rename the file is loaded again from disk,
    as the daemon will, and if that fails the original is put back.  Raises
    :class:`ConfigError` (file left as it was) or :class:`OSError` from the
    write itself (also leaving the file as it was).
    """
    path = feeds_file.path
    loads_config(new_text, source=str(path), base_dir=path.parent)
    _write_atomically(path, new_text)
    try:
        return load_config(path)
    except ConfigError:
        _write_atomically(path, feeds_file.text)
        raise


def _write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same directory, fsync, rename: readers see old or new."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
