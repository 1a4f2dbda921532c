"""``feeds.yaml``: which outlet feeds the daemon polls, and how.

The file is written by people, so every design choice here serves the person
who has to fix it:

* Errors name the file, the line and the key (``feeds.yaml:12:
  feeds[3].interval: bad duration 'abc' ...``), and *all* of them are reported
  at once, so one edit-reload cycle fixes everything instead of one per error.
* The YAML is read with ruamel's round-trip loader, which only ever builds
  plain data (tags it does not know are kept as inert markers, never
  resolved to Python callables) and remembers where every node came from.
  Any tag other than ``!!str`` is then rejected outright, so a config file can
  never smuggle in an object, let alone run code.  A file that libyaml
  provably reads the same way (plain values, no problem to report: the usual
  case) is read by libyaml instead, twenty times faster
  (:mod:`aggregator.config.fastyaml`); any other goes to ruamel.
* Field checks are pydantic models (``extra="forbid"``, frozen); their error
  locations are mapped back to ruamel's line numbers here.
* Loading is a pure function of the text (plus, for :func:`load_config`, the
  file's directory): no module-level mutable state, no caches.  A daemon can
  therefore hot-reload by calling :func:`load_config` again and keeping the old
  :class:`Config` if it raises :class:`ConfigError`.

The result types (:class:`FeedSpec`, :class:`Config`, :class:`FullText`) are
frozen dataclasses rather than the pydantic models (``FeedSpec`` and
``FullText`` live in :mod:`aggregator.config.spec`, free of this loader's
libraries, and are re-exported here): they are what the rest of
the daemon passes around, hashes and compares, and ``FeedSpec.line`` is left
out of equality so that moving a feed within the file does not look like a
change to a reloading scheduler.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import re
import unicodedata
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from aggregator.config.digest import config_digest
from aggregator.config.fastyaml import UNSURE, Parsed, plain_yaml
from aggregator.config.spec import (
    _DEFAULT_PORTS,
    DEFAULT_DISABLE_AFTER,
    DEFAULT_INTERVAL,
    DEFAULT_MAX_IMAGE_BYTES,
    FeedSpec,
    FullText,
    normalise_url,
)
from aggregator.errors import ConfigurationError
from aggregator.policy.dedup import IDENTITIES, Identity
from aggregator.policy.filters import FIELDS as _RULE_FIELDS
from aggregator.policy.filters import Filters, Rule, compile_pattern
from aggregator.policy.politeness import HostPolicy, default_host_policy

if TYPE_CHECKING:
    from aggregator.config.publish import PublishConfig

__all__ = [
    "DEFAULT_DISABLE_AFTER",
    "DEFAULT_INTERVAL",
    "DEFAULT_MAX_IMAGE_BYTES",
    "MIN_INTERVAL",
    "WARN_INTERVAL",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "FeedSpec",
    "FullText",
    "feed_keys_table",
    "feed_settings",
    "format_duration",
    "join_rsshub",
    "load_config",
    "loads_config",
    "normalise_url",
    "parse_duration",
]

logger = logging.getLogger(__name__)

#: Shorter intervals are errors: they would hammer the outlet for no gain.
MIN_INTERVAL: Final = timedelta(seconds=1)
#: Shorter intervals are accepted with a warning: outlets rarely publish that
#: often and may rate-limit or block such pollers.
WARN_INTERVAL: Final = timedelta(seconds=60)

#: A date_offset corrects a mislabelled zone; zones are at most 14 h from UTC,
#: so anything past a day is a typo, not a correction.
MAX_DATE_OFFSET: Final = timedelta(hours=24)

_DURATION_HELP = "use 90s, 15m, 1h or a number of seconds"


# --------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded ``feeds.yaml``.

    ``warnings`` are formatted like errors (``file:line: key: message``) and
    were also logged when the file was loaded.  ``source`` is the file it came
    from, or ``None`` when parsed from text; neither takes part in equality, so
    ``old == new`` tells a reloading daemon whether anything changed.
    """

    feeds: tuple[FeedSpec, ...] = ()
    output_dir: Path | None = None
    #: Politeness per host name (lowercase, no port) from the ``hosts:``
    #: section, each already merged with the default for that host.
    hosts: Mapping[str, HostPolicy] = field(default_factory=lambda: MappingProxyType({}))
    #: The ``publish:`` section (aggregator.config.publish), None without one.
    publish: PublishConfig | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    source: Path | None = field(default=None, compare=False)
    #: A digest of the file's bytes as loaded (aggregator.store.lite's sync marker).
    source_digest: str | None = field(default=None, compare=False)

    def enabled_feeds(self) -> tuple[FeedSpec, ...]:
        """The feeds the daemon should poll, in file order."""
        return tuple(feed for feed in self.feeds if feed.enabled)

    def select(self, needle: str) -> tuple[FeedSpec, ...]:
        """Feeds matching ``needle`` by URL, RSSHub route or outlet name.

        This backs ``aggregator fetch --feed URL|OUTLET``, so it searches
        disabled feeds too (asking for one by name is deliberate) and is
        forgiving: URLs match after normalisation, outlets case-insensitively,
        and an outlet with several sections returns all of them.
        """
        wanted = needle.strip()
        wanted_key = normalise_url(wanted) if "://" in wanted else None
        wanted_route = "/" + wanted.lstrip("/")
        folded = wanted.casefold()
        found = tuple(
            feed
            for feed in self.feeds
            if feed.url == wanted
            or (wanted_key is not None and feed.key == wanted_key)
            or (feed.rsshub_route is not None and feed.rsshub_route == wanted_route)
            or feed.outlet.casefold() == folded
        )
        if not found:
            outlets = ", ".join(dict.fromkeys(feed.outlet for feed in self.feeds)) or "none"
            where = str(self.source) if self.source is not None else "config"
            raise ConfigError(
                [
                    f"{where}: feed: no feed has the url, rsshub route or outlet {needle!r} "
                    f"(outlets: {outlets})"
                ]
            )
        return found


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, located for a human.

    ``line`` and ``column`` are 1-based (``None`` when unknown); ``key`` is the
    dotted path of the setting, such as ``feeds[3].interval`` (feed indexes
    count from 0; the line number is the reliable pointer).
    """

    source: str
    line: int | None
    column: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(ConfigurationError, ValueError):
    """``feeds.yaml`` cannot be used; ``errors`` lists every reason.

    Each entry of ``errors`` reads ``file:line: key: message``; ``issues`` holds
    the same problems as :class:`ConfigIssue` (with columns) for tools.  A
    daemon that gets this on reload should log it and keep its old config.
    """

    def __init__(self, errors: str | Iterable[str | ConfigIssue]) -> None:
        items = [errors] if isinstance(errors, str) else list(errors)
        self.issues: tuple[ConfigIssue, ...] = tuple(i for i in items if isinstance(i, ConfigIssue))
        self.errors: list[str] = [str(i) for i in items]
        super().__init__("\n".join(self.errors))


# --------------------------------------------------------------------------
# Durations and URLs
# --------------------------------------------------------------------------

_NUMBER = r"\d+(?:\.\d+)?"
_PLAIN_SECONDS = re.compile(_NUMBER)
_COMPOUND = re.compile(
    rf"(?:(?P<days>{_NUMBER})\s*d)?\s*(?:(?P<hours>{_NUMBER})\s*h)?\s*"
    rf"(?:(?P<minutes>{_NUMBER})\s*m)?\s*(?:(?P<seconds>{_NUMBER})\s*s)?"
)


def parse_duration(text: str | int | float) -> timedelta:
    """Read ``90s``, ``15m``, ``1h``, ``1h30m``, ``2d`` or plain seconds.

    Units go largest first, each at most once, and may be fractional
    (``1.5h``).  A YAML number is taken as seconds.  Zero and negative
    durations are rejected because no schedule can use them; the 1 s minimum
    for intervals is the config's rule, not this function's.

    Raises ``ValueError`` naming the input and the accepted forms.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"bad duration {text!r}: expected text or a number ({_DURATION_HELP})")
    if isinstance(text, int | float):
        if isinstance(text, float) and not math.isfinite(text):
            raise ValueError(f"bad duration {text!r}: not a finite number ({_DURATION_HELP})")
        if text <= 0:
            raise ValueError(f"bad duration {text!r}: must be more than zero ({_DURATION_HELP})")
        return _timedelta(text, seconds=text)
    stripped = text.strip()
    if stripped.startswith("-"):
        raise ValueError(f"bad duration {text!r}: must be more than zero ({_DURATION_HELP})")
    if _PLAIN_SECONDS.fullmatch(stripped):
        parts = {"seconds": float(stripped)}
    else:
        match = _COMPOUND.fullmatch(stripped)
        if match is None or not any(match.groupdict().values()):
            raise ValueError(f"bad duration {text!r} ({_DURATION_HELP})")
        parts = {unit: float(n) for unit, n in match.groupdict().items() if n is not None}
    result = _timedelta(text, **parts)
    if result <= timedelta(0):
        raise ValueError(f"bad duration {text!r}: must be more than zero ({_DURATION_HELP})")
    return result


def _timedelta(text: object, **parts: float) -> timedelta:
    try:
        return timedelta(**parts)
    except OverflowError:
        raise ValueError(f"bad duration {text!r}: too long ({_DURATION_HELP})") from None


#: FeedSpec fields that are not settings: where the feed is and what it is
#: called (written as url/rsshub, outlet, section, group) and bookkeeping.
_NOT_SETTINGS: Final = frozenset({"url", "outlet", "section", "group", "rsshub_route", "line"})


def _setting_value(name: str, value: Any) -> Any:
    """A FeedSpec field's value as it is written in feeds.yaml (the loader's inverse)."""
    if name == "date_offset":
        sign = "-" if value < timedelta(0) else ""
        return f"{sign}{format_duration(abs(value))}" if value else "0"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, FullText):
        return {"selector": value.selector, "remove": list(value.remove)}
    if isinstance(value, Filters):
        return {
            "keep": [dict(rule.patterns) for rule in value.keep],
            "block": [dict(rule.patterns) for rule in value.block],
        }
    if name == "image_referers":
        return dict(value)
    return value


def feed_settings(feed: FeedSpec, *, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """``feed``'s settings as feeds.yaml keys, those that differ from the built-in defaults.

    The inverse of the loader for everything but the feed's address and
    names, so a feed list can leave this file (OPML) and come back with every
    setting.  Driven by FeedSpec's own fields and defaults: a new setting is
    carried without touching this function, unless its type needs a new
    spelling in ``_setting_value`` (a test fails until it has one).
    """
    out: dict[str, Any] = {}
    for spec_field in dataclasses.fields(FeedSpec):
        name = spec_field.name
        if name in _NOT_SETTINGS:
            continue
        value = getattr(feed, name)
        if value == _spec_default(spec_field) and name not in always:
            continue
        written = _setting_value(name, value)
        if isinstance(value, Filters):
            out.update({k: v for k, v in written.items() if v})
        else:
            out[name] = written
    return out


def _spec_default(spec_field: dataclasses.Field[Any]) -> Any:
    """A FeedSpec field's default (built fresh when it has a factory), or MISSING."""
    if spec_field.default is not dataclasses.MISSING:
        return spec_field.default
    if spec_field.default_factory is not dataclasses.MISSING:
        return spec_field.default_factory()
    return dataclasses.MISSING


#: Plain YAML scalars that read back as the same text: no quotes needed.
_PLAIN_SCALAR: Final = re.compile(r"[\w./+-](?:[\w ./@+-]*[\w./@+-])?")
#: Words YAML reads as something other than text, whatever their case.
_YAML_WORDS: Final = frozenset({"true", "false", "yes", "no", "on", "off", "null", "~"})


def _yaml_text(value: Any) -> str:
    """``value`` (plain data from :func:`_setting_value`) as written on one line of feeds.yaml.

    YAML's flow style, as a person types it: ``true``/``false``, numbers as
    they are, text bare unless YAML would read it otherwise (then
    double-quoted; ``""`` for empty), lists ``[a, b]``, mappings ``{k: v}``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if _PLAIN_SCALAR.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_yaml_text(k)}: {_yaml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_text(item) for item in value) + "]"
    raise TypeError(f"no feeds.yaml spelling for {type(value).__name__}; extend _setting_value")


def _default_text(key: str, extra: Mapping[str, Any]) -> str:
    """The docs' Default cell for feed key ``key``: FeedSpec's own default, as feeds.yaml writes it.

    Derived, not written down, so that changing a default in
    :mod:`aggregator.config.spec` changes docs/configuration.md with it
    (tests/test_feeds.py fails until the docs are regenerated).  Hand-written
    text (``_setting(default=...)``) is accepted only for keys that have no
    runtime default to derive from -- required names, the address keys that
    ``defaults`` may not set, ``rsshub_base`` that only goes into the URL --
    and is refused for any other key, so it cannot shadow a real default.
    A note (``_setting(note=...)``) that restates the default is a function
    of it, for the same reason.
    """
    spec_key = "filters" if key in ("keep", "block") else key
    spec_field = next((f for f in dataclasses.fields(FeedSpec) if f.name == spec_key), None)
    default = dataclasses.MISSING if spec_field is None else _spec_default(spec_field)
    if "default" in extra:
        if default is not dataclasses.MISSING:
            raise AssertionError(f"{key}: FeedSpec has a default; do not write one in _setting")
        return str(extra["default"])
    if default is dataclasses.MISSING:
        raise AssertionError(f"{key}: no FeedSpec default to show; write one in _setting")
    if default is None:
        text = "none"  # not set: the cell says so in words, not YAML's null
    else:
        value = _setting_value(spec_key, default)
        if key in ("keep", "block"):
            value = value[key]
        text = f"`{_yaml_text(value)}`"
    note = extra.get("note")
    if callable(note):
        note = note(default)
    return f"{text} {note}" if note else text


def feed_keys_table() -> str:
    """The Markdown table of feed keys in docs/configuration.md, built from the schema.

    Types and meanings live on the loader's model and defaults on FeedSpec;
    a test compares this with the docs, so the docs cannot drift.
    """
    lines = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for key, info in _FeedFields.model_fields.items():
        extra = info.json_schema_extra
        assert isinstance(extra, dict), key
        lines.append(
            f"| `{key}` | {extra['kind']} | {_default_text(key, extra)} | {info.description} |"
        )
    return "\n".join(lines) + "\n"


def format_duration(duration: timedelta) -> str:
    """The shortest ``parse_duration`` spelling of ``duration`` (``1h30m``, ``0.5s``).

    Used in messages so the user sees the value in the units they write.
    """
    total = duration.total_seconds()
    if total <= 0 or total != int(total):
        return f"{total:g}s"
    rest = int(total)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def join_rsshub(base: str, route: str) -> str:
    """The feed URL for an RSSHub ``route`` on the server at ``base``.

    Exactly one ``/`` joins them whatever slashes either side has, ``base``
    may carry a path prefix (a server behind a reverse proxy), and both query
    strings survive: the route's first, then the base's (where RSSHub's
    ``?key=`` access key naturally lives).
    """
    b = urlsplit(base)
    r = urlsplit(route)
    path = b.path.rstrip("/") + "/" + r.path.lstrip("/")
    query = "&".join(q for q in (r.query, b.query) if q)
    return urlunsplit((b.scheme, b.netloc, path, query, r.fragment))


# --------------------------------------------------------------------------
# Field validation (pydantic)
# --------------------------------------------------------------------------


def _check_text(value: str, *, allow_empty: bool = False) -> str:
    """Names become post categories and the ``author:`` line: one printable line."""
    if not allow_empty and not value.strip():
        raise ValueError("is empty")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs") or char in "\ufeff\ufffe\uffff":
            raise ValueError(f"contains the control character {char!r}; use a single line of text")
    return value


def _check_http_url(value: str) -> str:
    if any(char.isspace() for char in value):
        raise ValueError(f"{value!r} contains whitespace; percent-encode spaces as %20")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"must be an http(s) URL like https://example.com/feed, got {value!r}")
    return value


class _FullTextModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: str
    remove: tuple[str, ...] = ()

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty; give the CSS selector of the article body")
        return value

    @field_validator("remove")
    @classmethod
    def _remove(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not item.strip() for item in value):
            raise ValueError("has an empty selector")
        return value


class _RuleModel(BaseModel):
    """One keep/block rule: field -> regular expression, all must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    body: str | None = None
    link: str | None = None
    author: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _pattern(cls, value: object) -> object:
        if value is None:
            raise ValueError("has no value; give a regular expression or delete the line")
        if isinstance(value, str):
            compile_pattern(value)
        return value

    def rule(self) -> Rule:
        patterns = tuple((name, getattr(self, name)) for name in _RULE_FIELDS)
        return Rule(tuple((k, v) for k, v in patterns if v is not None))


def _check_rules(value: tuple[_RuleModel, ...]) -> tuple[_RuleModel, ...]:
    for index, rule in enumerate(value):
        if not rule.model_fields_set:
            raise ValueError(
                f"rule {index} is empty; give a pattern for one of {', '.join(_RULE_FIELDS)}, "
                'e.g. {title: "广告|推广"}'
            )
    return value


def _setting(
    kind: str,
    meaning: str,
    *,
    default: str | None = None,
    note: str | Callable[[Any], str] | None = None,
) -> Any:
    """A feeds.yaml key's documentation, kept with its type; docs/configuration.md shows it.

    For feed keys, ``default`` is written only for keys that FeedSpec has no
    default for (the address, the names); every other default is read off
    FeedSpec by :func:`_default_text`, so the loader, OPML and the docs cannot
    disagree about it.  ``note`` follows the default in the docs; make it a
    function of the default value when it restates it (``16 MiB``).  The
    publish models (aggregator.config.publish) use this too, with written
    defaults.
    """
    extra: dict[str, Any] = {"kind": kind}
    if default is not None:
        extra["default"] = default
    if note is not None:
        extra["note"] = note
    return Field(default=None, description=meaning, json_schema_extra=extra)


class _FeedFields(BaseModel):
    """The keys one feed entry (or ``defaults``) may set, each optional.

    Required-ness is checked after merging with ``defaults``, which pydantic
    cannot see; keeping every field optional here lets one model validate both
    blocks and report each bad value once, at the line where it is written.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = _setting(
        "http(s) URL",
        (
            "The feed's address. Each feed needs exactly one of `url` or `rsshub`. Not allowed in"
            " `defaults`."
        ),
        default="—",
    )
    rsshub: str | None = _setting(
        "route, e.g. `/guancha/headline`",
        (
            "An [RSSHub](https://docs.rsshub.app/) route. It is joined to `rsshub_base` to give "
            "the feed URL. Not allowed in `defaults`."
        ),
        default="—",
    )
    rsshub_base: str | None = _setting(
        "http(s) URL",
        (
            "The RSSHub server, usually set once in `defaults` (a local RSSHub is "
            "`http://127.0.0.1:1200`). A feed that uses `rsshub` needs it. Feeds that use `url` "
            "ignore it."
        ),
        default="none",
    )
    outlet: str | None = _setting(
        "text",
        "The outlet's name. It is the second category and the `author:` line.",
        default="**required**",
    )
    section: str | None = _setting(
        "text",
        "The section within the outlet. It is the third category.",
        default="**required**",
    )
    group: str | None = _setting(
        "text",
        "The first category, e.g. `新媒体`.",
        default="**required** (usually from `defaults`)",
    )
    interval: timedelta | None = _setting(
        "duration",
        (
            "How often to poll the feed. It must be at least `1s`. Anything under `60s` loads but"
            " logs a warning."
        ),
    )
    enabled: bool | None = _setting(
        "boolean",
        (
            "Set it to `false` to keep the entry in the file without polling it. `aggregator "
            "fetch --feed` can still select a disabled feed."
        ),
    )
    full_text: _FullTextModel | None = _setting(
        "mapping or `null`",
        (
            "Replaces each item's body with part of the article's web page (see below). On a "
            "feed, `full_text: null` turns off a `full_text` inherited from `defaults`."
        ),
    )
    placeholder_image: str | None = _setting(
        "text (URL or path)",
        'The image used for a post that has none. `""` means no placeholder.',
    )
    timezone: str | None = _setting(
        "IANA zone name, e.g. `Asia/Shanghai`",
        (
            "The zone of entry dates that carry no offset (`2022-03-01 13:31:34`, "
            "`2022年03月01日 13:31`, `Tue, 01 Mar 2022 13:31:34`), and what `CST` means: +08:00 "
            "for a zone at UTC+8, else US Central. Dates with an offset or `GMT` are left "
            "alone. See [Dates](#dates)."
        ),
        note="(UTC)",
    )
    date_offset: timedelta | None = _setting(
        "signed duration, e.g. `-8h`",
        (
            "Added to every entry date of the feed, for feeds that label local time with the "
            "wrong zone. At most a day either way. See [Dates](#dates)."
        ),
    )
    disable_after: timedelta | None = _setting(
        "duration",
        (
            "A feed that fails permanently (404, not a feed) for this long, with no success in "
            "between, stops being polled. See [Errors](#errors-and-disabled-feeds)."
        ),
    )
    identity: Identity | None = _setting(
        "`guid`, `link` or `title`",
        (
            'Which field says "this is the same item, edited" (see *Item identity* in the '
            "README). `link` for feeds whose GUIDs change with the headline; `title` for feeds "
            "whose GUIDs and links both change (headlines must then be unique)."
        ),
    )
    keep: tuple[_RuleModel, ...] | None = _setting(
        "list of rules",
        (
            "With keep rules, only items matching one of them are exported. Rules in `defaults` "
            "and on the feed add up."
        ),
    )
    block: tuple[_RuleModel, ...] | None = _setting(
        "list of rules",
        (
            "Items matching any of these are stored but never exported. Rules in `defaults` and "
            "on the feed add up. Block wins over keep."
        ),
    )

    @field_validator("keep", "block")
    @classmethod
    def _rules(cls, value: tuple[_RuleModel, ...]) -> tuple[_RuleModel, ...]:
        return _check_rules(value)

    allow_private_networks: bool | None = _setting(
        "boolean",
        (
            "Lets links *inside* the feed (full-text pages) reach this machine and private "
            "networks: loopback, RFC 1918, link-local (including the cloud metadata address "
            "`169.254.169.254`), carrier-grade NAT and similar addresses. By default such links "
            "are refused, because whoever writes an item chooses its link. The feed's own `url` "
            "is never restricted. See [Security](../README.md#security)."
        ),
    )
    images: Literal["remote", "archive"] | None = _setting(
        "`remote` or `archive`",
        (
            '`remote`: posts link the outlet\'s images, with `referrerpolicy="no-referrer"` (as '
            "the seeds do). `archive`: each post's images are downloaded at ingest and the post "
            "points at the copies. See [Images](#images)."
        ),
    )
    max_image_bytes: int | None = _setting(
        f"whole number of bytes, 1 to {DEFAULT_MAX_IMAGE_BYTES}",
        "With `images: archive`, a bigger image is not archived (it keeps its remote URL).",
        note=lambda size: f"({size / 2**20:g} MiB)",
    )
    image_referers: dict[str, str] | None = _setting(
        "mapping of image host → `none`, `origin` or an http(s) URL",
        (
            "The Referer sent when archiving an image from that host. The feed's rules are merged"
            " over those in `defaults`, host by host. See [Images](#images)."
        ),
        note="(every host: `none`)",
    )

    @field_validator("max_image_bytes")
    @classmethod
    def _max_image_bytes(cls, value: int) -> int:
        if value < 1 or value > DEFAULT_MAX_IMAGE_BYTES:
            raise ValueError(
                f"must be a number of bytes from 1 to {DEFAULT_MAX_IMAGE_BYTES} (16 MiB, "
                f"the fetcher's limit), got {value}"
            )
        return value

    @field_validator("image_referers")
    @classmethod
    def _image_referers(cls, value: dict[str, str]) -> dict[str, str]:
        rules: dict[str, str] = {}
        for key, rule in value.items():
            host = key.strip().lower().rstrip(".")
            if not host or "://" in host or "/" in host or any(c.isspace() for c in host):
                raise ValueError(f"keys are image host names like n.sinaimg.cn, got {key!r}")
            if rule not in ("none", "origin"):
                try:
                    rule = _check_http_url(rule)
                except ValueError:
                    raise ValueError(
                        f"{key}: the rule is none, origin or an http(s) URL to send as "
                        f"Referer, got {rule!r}"
                    ) from None
            rules[host] = rule
        return rules

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        # ``full_text: null`` switches off a full_text from defaults; for any
        # other key an empty value is almost always an unfinished edit.
        if value is None and info.field_name != "full_text":
            raise ValueError("has no value; give one, or delete the line to use the default")
        return value

    @field_validator("outlet", "section", "group")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_text(value)

    @field_validator("placeholder_image")
    @classmethod
    def _placeholder(cls, value: str) -> str:
        return _check_text(value, allow_empty=True)

    @field_validator("url", "rsshub_base")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("rsshub")
    @classmethod
    def _route(cls, value: str) -> str:
        if "://" in value or value.startswith("//"):
            raise ValueError(
                f"must be a route like /guancha/headline, not a full URL ({value!r}); "
                "use url: for a full URL"
            )
        if any(char.isspace() for char in value):
            raise ValueError(f"{value!r} contains whitespace")
        if not value.strip("/"):
            raise ValueError("is empty; give a route like /guancha/headline")
        return "/" + value.lstrip("/")

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: object) -> object:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"must be a duration ({_DURATION_HELP}), got {_kind(value)}")
        duration = parse_duration(value)
        if duration < MIN_INTERVAL:
            raise ValueError(
                f"{format_duration(duration)} is shorter than the 1s minimum; "
                "polling that often would hammer the outlet"
            )
        return duration

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _check_timezone(value)

    @field_validator("date_offset", mode="before")
    @classmethod
    def _date_offset(cls, value: object) -> object:
        return _signed_duration(value)

    @field_validator("disable_after", mode="before")
    @classmethod
    def _disable_after(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"must be a duration such as 7d, got {_kind(value)}")
        return parse_duration(value)


def _check_timezone(value: str) -> str:
    """An IANA zone name that zoneinfo can load, so a typo fails at load, not per entry."""
    name = value.strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown time zone {value!r}; {hint}use an IANA name such as Asia/Shanghai"
        ) from None
    return name


def _signed_duration(value: object) -> timedelta:
    """``-8h``, ``+8h``, ``7h30m`` or signed seconds: a correction may go either way."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a signed duration such as -8h, got {_kind(value)}")
    magnitude: str | float
    if isinstance(value, int | float):
        sign, magnitude = (-1 if value < 0 else 1), abs(value)
    else:
        text = value.strip()
        sign = -1 if text.startswith("-") else 1
        magnitude = text[1:].strip() if text[:1] in ("+", "-") else text
    if magnitude in (0, "0"):
        return timedelta(0)
    try:
        offset = sign * parse_duration(magnitude)
    except ValueError:
        raise ValueError(
            f"bad offset {value!r}; use a signed duration such as -8h or +30m"
        ) from None
    if abs(offset) > MAX_DATE_OFFSET:
        raise ValueError(
            f"{value!r} is more than a day; an offset corrects a mislabelled time zone"
        )
    return offset


_FEED_KEYS: Final = tuple(_FeedFields.model_fields)
#: Feed keys whose loaded value is the FeedSpec field of the same name as is
#: (the others are joined, merged or renamed on the way: see _Loader._feed).
_PLAIN_SETTINGS: Final = tuple(
    key
    for key in _FEED_KEYS
    if key in {f.name for f in dataclasses.fields(FeedSpec)}
    and key not in {"url", "outlet", "section", "group", "full_text", "image_referers"}
)
_FULL_TEXT_KEYS: Final = tuple(_FullTextModel.model_fields)
_TOP_KEYS: Final = ("defaults", "feeds", "hosts", "output_dir", "publish")
_HOST_KEYS: Final = ("max_concurrency", "min_spacing")
_NOT_DEFAULTABLE: Final = ("url", "rsshub")
_REQUIRED_HELP: Final = MappingProxyType(
    {
        "outlet": "every feed needs an outlet (the second category and the author: line)",
        "section": "every feed needs a section (the third category)",
        "group": "set group on the feed or in defaults (the first category, e.g. 新媒体)",
    }
)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_config(path: Path) -> Config:
    """Load ``feeds.yaml`` from ``path``; raise :class:`ConfigError` listing every problem.

    A relative ``output_dir`` is taken relative to the file's directory, so the
    daemon finds the same directory whatever its working directory.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        message = (
            "file not found; create it from the shipped feeds.yaml "
            "(keys are described in docs/configuration.md)"
        )
        raise ConfigError([ConfigIssue(str(path), None, None, "", message)]) from None
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue(str(path), None, None, "", message)]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        message = f"the file is not valid UTF-8 (byte {exc.start}); save it as UTF-8"
        raise ConfigError([ConfigIssue(str(path), line, None, "", message)]) from None
    config = loads_config(text, source=str(path), base_dir=path.absolute().parent)
    return replace(config, source=path, source_digest=config_digest(data))


def loads_config(text: str, *, source: str = "feeds.yaml", base_dir: Path | None = None) -> Config:
    """Parse ``feeds.yaml`` text; ``source`` names it in messages.

    ``base_dir``, when given, anchors a relative ``output_dir``; otherwise it
    is kept as written.  Warnings are logged and returned on the config.
    """
    config = _Loader(source).load_fast(text, base_dir) or _Loader(source).load(text, base_dir)
    for warning in config.warnings:
        logger.warning("%s", warning)
    return config


_Path = tuple[str | int, ...]
_SKIP: Final = object()  # a node already reported as unusable
_STR_TAG: Final = "tag:yaml.org,2002:str"


def _spacing(value: object) -> float:
    """A ``min_spacing`` in seconds: a duration, or 0 for none."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be a duration like 2s or 0.5s (0 for none), got {_kind(value)}")
    if isinstance(value, int | float) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s"):
        return 0.0
    return parse_duration(value).total_seconds()


def _kind(value: object) -> str:
    """How a YAML value reads to the person who wrote it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _dotted(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _tag_name(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!", 1)


def _unknown_key(key: str, allowed: Iterable[str], where: str) -> str:
    allowed = tuple(allowed)
    if key == "output_dir" and where != "top":
        return "unknown key: output_dir is a top-level setting, not a feed key; move it to the top"
    if where == "top" and key in _FEED_KEYS:
        return f"unknown top-level key; to apply {key} to every feed put it under defaults:"
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; valid keys here: {', '.join(allowed)}"


class _Loader:
    """One parse of one text: collects issues and warnings, then builds a Config.

    An instance lives for a single :meth:`load`; nothing outlives it, which is
    what makes reloading safe.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.root: Any = None
        self.fast: Parsed | None = None  # libyaml's reading (load_fast), else None
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self.refused: set[_Path] = set()  # nodes dropped for their tag, already reported

    # -- locating ------------------------------------------------------------

    def _position(self, path: _Path) -> tuple[int | None, int | None]:
        """1-based line and column of the deepest node of ``path`` in the file.

        Walks ruamel's ``.lc`` records; a path that runs past what is written
        (a missing key) stops at its parent, which is where the key belongs.
        """
        if self.fast is not None:
            return self._fast_position(self.fast, path)
        from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq

        node = self.root
        if not isinstance(node, CommentedBase):
            return None, None
        line, col = node.lc.line, node.lc.col
        for part in path:
            try:
                if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
                    line, col = node.lc.key(part)
                elif isinstance(node, CommentedSeq) and isinstance(part, int):
                    line, col = node.lc.item(part)
                else:
                    break
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break  # keys from a YAML merge (<<) have no position of their own
        if line is None:
            return None, None
        return line + 1, (col + 1 if col is not None else None)

    @staticmethod
    def _fast_position(fast: Parsed, path: _Path) -> tuple[int | None, int | None]:
        """:meth:`_position` over libyaml's marks: the same walk, the same stops."""
        node, (line, col) = fast.data, fast.root
        for part in path:
            found = fast.positions.get((id(node), part))
            if found is None:
                break
            line, col = found
            node = node[part]
        return line + 1, col + 1

    def _issue(self, path: _Path, message: str) -> None:
        line, col = self._position(path)
        self.issues.append(ConfigIssue(self.source, line, col, _dotted(path), message))

    def _warn(self, path: _Path, message: str) -> None:
        line, col = self._position(path)
        self.warnings.append(ConfigIssue(self.source, line, col, _dotted(path), message))

    # -- YAML ----------------------------------------------------------------

    def _parse_yaml(self, text: str) -> Any:
        from ruamel.yaml import YAML
        from ruamel.yaml.error import MarkedYAMLError, YAMLError

        yaml = YAML(typ="rt")  # a fresh, private instance: ruamel's YAML objects hold state
        try:
            return yaml.load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = ": ".join(str(part) for part in (exc.context, exc.problem) if part)
            line = mark.line + 1 if mark is not None else None
            col = mark.column + 1 if mark is not None else None
            issue = ConfigIssue(self.source, line, col, "", f"invalid YAML: {what}")
        except YAMLError as exc:
            issue = ConfigIssue(self.source, None, None, "", f"invalid YAML: {exc}")
        except ValueError as exc:  # ruamel builds dates unmarked: `2024-13-45` ends up here
            issue = ConfigIssue(
                self.source,
                None,
                None,
                "",
                f"invalid YAML value: {exc} (is a value shaped like a date, such as "
                "2024-13-45, not a real date? put it in quotes)",
            )
        raise ConfigError([issue])

    def _plain(self, node: Any, path: _Path, memo: dict[int, Any]) -> Any:
        """ruamel's nodes as plain dicts, lists and scalars, refusing tags.

        ``memo`` makes aliases cost nothing extra, so a "billion laughs" file
        stays as small as it is written.
        """
        from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

        if id(node) in memo:
            return memo[id(node)]
        if isinstance(node, TaggedScalar):
            tag = node.tag.value or ""
            if tag == _STR_TAG:
                return str(node.value)
            return self._refuse_tag(path, tag)
        if isinstance(node, CommentedMap | CommentedSeq) and node.tag.value is not None:
            return self._refuse_tag(path, node.tag.value)
        if isinstance(node, CommentedMap):
            mapping: dict[str, Any] = {}
            memo[id(node)] = mapping
            for key, value in node.items():
                if not isinstance(key, str):
                    self._issue(path, f"key {key!r} is not text; keys are names like url or outlet")
                    continue
                plain = self._plain(value, (*path, key), memo)
                if plain is not _SKIP:
                    mapping[key] = plain
            return mapping
        if isinstance(node, CommentedSeq):
            items: list[Any] = []
            memo[id(node)] = items
            for index, value in enumerate(node):
                plain = self._plain(value, (*path, index), memo)
                if plain is not _SKIP:
                    items.append(plain)
            return items
        if node is None or isinstance(node, str | bool | int | float | date):
            # Drop ruamel's str/int/float subclasses: they carry formatting, not meaning.
            for kind in (str, bool, int, float):
                if isinstance(node, kind):
                    return kind(node)
            return node
        self._issue(path, f"unsupported YAML value of type {type(node).__name__}; use plain values")
        return _SKIP

    def _refuse_tag(self, path: _Path, tag: str) -> object:
        self.refused.add(path)
        self._issue(
            path,
            f"YAML tag {_tag_name(tag)!r} is not allowed; this file holds only plain values "
            "(text, numbers, booleans, lists and mappings)",
        )
        return _SKIP

    # -- fields ----------------------------------------------------------------

    def _describe(self, err: ErrorDetails) -> str:
        kind, loc, value = err["type"], err["loc"], err.get("input")
        if kind == "value_error":
            return str(err.get("ctx", {}).get("error", err["msg"]))
        if kind == "extra_forbidden" and len(loc) > 2 and loc[0] in ("keep", "block"):
            return _unknown_key(str(loc[-1]), _RULE_FIELDS, "rule")
        if kind == "literal_error" and loc[:1] == ("identity",):
            return f"must be one of {', '.join(IDENTITIES)}, got {_kind(value)}"
        if kind in ("tuple_type", "list_type") and loc[:1] in (("keep",), ("block",)):
            return f'must be a list of rules like [{{title: "广告|推广"}}], got {_kind(value)}'
        if kind in ("model_type", "dict_type") and loc[:1] in (("keep",), ("block",)):
            return f'each rule must be a mapping like {{title: "广告|推广"}}, got {_kind(value)}'
        if kind == "extra_forbidden":
            inside_full_text = len(loc) > 1 and loc[0] == "full_text"
            allowed = _FULL_TEXT_KEYS if inside_full_text else _FEED_KEYS
            return _unknown_key(str(loc[-1]), allowed, "full_text" if inside_full_text else "feed")
        if kind == "missing":
            return "missing (required)"
        if kind == "string_type":
            scalar = isinstance(value, int | float | date)
            hint = "; put it in quotes to use it as text" if scalar else ""
            return f"must be text, got {_kind(value)}{hint}"
        if kind in ("bool_type", "bool_parsing"):
            return f"must be true or false, got {_kind(value)}"
        if kind in ("tuple_type", "list_type"):
            return f"must be a list like [.ad, .related], got {_kind(value)}"
        if kind in ("model_type", "dict_type"):
            return (
                "must be a mapping like {selector: .article-content, remove: [.ad]}, "
                f"got {_kind(value)}"
            )
        return str(err["msg"])

    def _fields(self, path: _Path, data: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
        """Validate one feed entry or ``defaults``: the keys it validly sets, and
        the keys it sets that were reported as bad (so nothing is reported twice).
        """
        bad: set[str] = set()
        try:
            model = _FeedFields.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                self._issue((*path, *err["loc"]), self._describe(err))
                bad.add(str(err["loc"][0]))
            # Fields are independent, so the rest validates on its own.
            model = _FeedFields.model_validate({k: v for k, v in data.items() if k not in bad})
        fields = {name: getattr(model, name) for name in model.model_fields_set}
        depth = len(path)
        bad.update(str(p[depth]) for p in self.refused if len(p) > depth and p[:depth] == path)
        interval = fields.get("interval")
        if interval is not None and interval < WARN_INTERVAL:
            self._warn(
                (*path, "interval"),
                f"{format_duration(interval)} is under a minute; outlets rarely publish that "
                "often and may rate-limit or block frequent pollers",
            )
        return fields, bad

    # -- structure -----------------------------------------------------------

    def load_fast(self, text: str, base_dir: Path | None) -> Config | None:
        """The config as :meth:`load` gives it, read with libyaml; None when unsure.

        None -- read it with :meth:`load` (a fresh loader) -- when libyaml's
        reading is not provably ruamel's (:func:`plain_yaml`), and when the
        file has a problem or a warning: those name lines and columns, and
        ruamel's are the reference, so ruamel reads such a file again.
        """
        parsed = plain_yaml(text)
        if not isinstance(parsed, Parsed):
            assert parsed is UNSURE
            return None
        self.fast = parsed
        try:
            config = self._build(parsed.data, base_dir)
        except ConfigError:
            return None
        return None if config.warnings else config

    def load(self, text: str, base_dir: Path | None) -> Config:
        try:
            self.root = self._parse_yaml(text)
            data = self._plain(self.root, (), {})
        except RecursionError:  # ruamel and the walk both recurse per nesting level
            issue = ConfigIssue(self.source, None, None, "", "nested too deeply to be a feeds file")
            raise ConfigError([issue]) from None
        return self._build(data, base_dir)

    def _build(self, data: Any, base_dir: Path | None) -> Config:
        """The config from the file's plain data; :class:`ConfigError` with every issue."""
        if data is None or data is _SKIP:
            if data is None:
                self._issue((), "the file is empty; it needs a feeds: list (feeds: [] for none)")
            raise ConfigError(self.issues)
        if not isinstance(data, dict):
            self._issue(
                (),
                f"the file must be a mapping with a feeds: list (and optionally defaults: "
                f"and output_dir:), not {_kind(data)}",
            )
            raise ConfigError(self.issues)

        for key in data:
            if key not in _TOP_KEYS:
                self._issue((key,), _unknown_key(key, _TOP_KEYS, "top"))
        defaults, bad_defaults = self._defaults(data)
        output_dir = self._output_dir(data, base_dir)
        hosts = self._hosts(data)
        publish = self._publish(data, base_dir)
        feeds = self._feeds(data, defaults, bad_defaults)

        if self.issues:
            ordered: list[ConfigIssue] = sorted(
                self.issues, key=lambda i: (i.line or 0, i.column or 0)
            )
            raise ConfigError(ordered)
        return Config(
            feeds=feeds,
            output_dir=output_dir,
            hosts=MappingProxyType(hosts),
            publish=publish,
            warnings=tuple(str(w) for w in self.warnings),
        )

    def _defaults(self, data: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
        if ("defaults",) in self.refused:
            return {}, set(_FEED_KEYS)
        raw = data.get("defaults", {})
        if not isinstance(raw, dict):
            self._issue(
                ("defaults",), f"must be a mapping of feed keys such as group:, got {_kind(raw)}"
            )
            return {}, set(_FEED_KEYS)  # unknown defaults: do not also call keys missing
        for key in _NOT_DEFAULTABLE:
            if key in raw:
                self._issue(
                    ("defaults", key),
                    "cannot be a default: each feed has its own url or rsshub route "
                    "(rsshub_base can be a default)",
                )
        usable = {k: v for k, v in raw.items() if k not in _NOT_DEFAULTABLE}
        return self._fields(("defaults",), usable)

    def _output_dir(self, data: dict[str, Any], base_dir: Path | None) -> Path | None:
        if "output_dir" not in data:
            return None
        value = data["output_dir"]
        if not isinstance(value, str) or not value.strip():
            self._issue(("output_dir",), f"must be a directory path, got {_kind(value)}")
            return None
        if value.startswith("~"):
            self._issue(("output_dir",), f"~ is not expanded; write the full path, not {value!r}")
            return None
        path = Path(value)
        return base_dir / path if base_dir is not None and not path.is_absolute() else path

    def _publish(self, data: dict[str, Any], base_dir: Path | None) -> PublishConfig | None:
        """``publish:`` (see aggregator.config.publish), loaded only when the file has one."""
        if "publish" not in data or ("publish",) in self.refused:
            return None
        from aggregator.config.publish import parse_publish

        config, problems = parse_publish(data["publish"], base_dir)
        for where, message in problems:
            self._issue(("publish", *where), message)
        return config

    def _hosts(self, data: dict[str, Any]) -> dict[str, HostPolicy]:
        """``hosts:``: per host name, ``max_concurrency`` and ``min_spacing``.

        A key left out keeps the default for that host (local or public, see
        :func:`aggregator.fetch.fetcher.default_host_policy`), so ``min_spacing: 2s``
        alone is enough to slow one host down.
        """
        raw = data.get("hosts", {})
        if ("hosts",) in self.refused:
            return {}
        if not isinstance(raw, dict):
            self._issue(
                ("hosts",),
                "must be a mapping of host names, like "
                f"{{www.reddit.com: {{min_spacing: 2s}}}}, got {_kind(raw)}",
            )
            return {}
        policies: dict[str, HostPolicy] = {}
        for key, value in raw.items():
            path: _Path = ("hosts", key)
            host = self._host_name(path, key)
            if host is None or path in self.refused:
                continue
            if host in policies:
                self._issue(path, f"{host} is listed twice (host names ignore case); keep one")
                continue
            if not isinstance(value, dict):
                self._issue(
                    path,
                    f"must be a mapping like {{max_concurrency: 1, min_spacing: 2s}}, "
                    f"got {_kind(value)}",
                )
                continue
            default = default_host_policy(host)
            concurrency, spacing = default.max_concurrency, default.min_spacing
            for name, setting in value.items():
                if name == "max_concurrency":
                    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
                        self._issue(
                            (*path, name),
                            f"must be a whole number of requests, 1 or more, got {_kind(setting)}",
                        )
                        continue
                    concurrency = setting
                elif name == "min_spacing":
                    try:
                        spacing = _spacing(setting)
                    except ValueError as exc:
                        self._issue((*path, name), str(exc))
                else:
                    self._issue((*path, name), _unknown_key(name, _HOST_KEYS, "hosts"))
            policies[host] = HostPolicy(concurrency, spacing)
        return policies

    def _host_name(self, path: _Path, key: str) -> str | None:
        host = key.strip().lower()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # an IPv6 literal as written in URLs
        problem = None
        if "://" in host or "/" in host:
            problem = f"give the host name only, like www.reddit.com, not a URL ({key!r})"
        elif host.count(":") == 1:
            problem = (
                f"give the host name without a port ({key!r}): requests are limited "
                "per host name, whatever the port"
            )
        elif not host or any(char.isspace() for char in host):
            problem = f"{key!r} is not a host name"
        if problem is not None:
            self._issue(path, problem)
            return None
        return host

    def _feeds(
        self, data: dict[str, Any], defaults: dict[str, Any], bad_defaults: set[str]
    ) -> tuple[FeedSpec, ...]:
        if ("feeds",) in self.refused:
            return ()
        if "feeds" not in data:
            self._issue(("feeds",), "missing; list your feeds under feeds: (feeds: [] for none)")
            return ()
        raw = data["feeds"]
        if not isinstance(raw, list):
            self._issue(
                ("feeds",),
                f"must be a list of feeds (items start with '- url:'; feeds: [] for none), "
                f"got {_kind(raw)}",
            )
            return ()
        specs: list[FeedSpec] = []
        seen: dict[str, int] = {}  # feed key -> index of the first feed with it
        for index, entry in enumerate(raw):
            spec, url = self._feed(index, entry, defaults, bad_defaults)
            if spec is not None:
                specs.append(spec)
            if url is not None:
                self._check_duplicate(index, url, "rsshub" if "rsshub" in entry else "url", seen)
        return tuple(specs)

    def _feed(
        self, index: int, entry: Any, defaults: dict[str, Any], bad_defaults: set[str]
    ) -> tuple[FeedSpec | None, str | None]:
        """The feed's spec (``None`` if it has errors) and its URL if that much is known.

        The URL is returned even for a broken feed so duplicates are still found.
        """
        path: _Path = ("feeds", index)
        if not isinstance(entry, dict):
            self._issue(
                path,
                f"each feed must be a mapping with url (or rsshub), outlet and section, "
                f"got {_kind(entry)}",
            )
            return None, None
        own, bad = self._fields(path, entry)
        merged = {**defaults, **own}
        ok = not bad
        written = set(entry) | bad  # bad includes keys dropped for a refused tag
        if "url" in written and "rsshub" in written:
            self._issue((*path, "rsshub"), "give either url or rsshub, not both")
            ok = False
        elif "url" not in written and "rsshub" not in written:
            self._issue((*path, "url"), "missing; every feed needs a url (or an rsshub route)")
            ok = False
        for key, help_text in _REQUIRED_HELP.items():
            if key not in merged:
                ok = False
                if key not in bad and key not in bad_defaults:  # else already reported
                    self._issue((*path, key), f"missing; {help_text}")

        url, route = own.get("url"), None
        if "rsshub" in own and "url" not in written:
            route = own["rsshub"]
            base = merged.get("rsshub_base")
            if base is not None:
                url = join_rsshub(base, route)
            elif "rsshub_base" not in bad and "rsshub_base" not in bad_defaults:
                self._issue(
                    (*path, "rsshub"),
                    "needs an RSSHub server: set defaults.rsshub_base "
                    "(e.g. http://127.0.0.1:1200) or rsshub_base on this feed",
                )
        if not ok or url is None:
            return None, url

        full_text = merged.get("full_text")
        # Rules add up: the defaults' (say, a house ad filter) and the feed's own.
        filters = Filters(
            keep=tuple(r.rule() for r in (*defaults.get("keep", ()), *own.get("keep", ()))),
            block=tuple(r.rule() for r in (*defaults.get("block", ()), *own.get("block", ()))),
        )
        line, _ = self._position(path)
        # Only what the file sets is passed: every other value is FeedSpec's
        # own default, the one place defaults are written.
        plain = {key: merged[key] for key in _PLAIN_SETTINGS if key in merged}
        spec = FeedSpec(
            url=url,
            outlet=merged["outlet"],
            section=merged["section"],
            group=merged["group"],
            full_text=(
                FullText(full_text.selector, full_text.remove) if full_text is not None else None
            ),
            rsshub_route=route,
            filters=filters,
            image_referers=tuple(
                sorted(
                    {**defaults.get("image_referers", {}), **own.get("image_referers", {})}.items()
                )
            ),
            line=line or 0,
            **plain,
        )
        return spec, url

    def _check_duplicate(self, index: int, url: str, key: str, seen: dict[str, int]) -> None:
        """Two entries for one URL would fetch and file every post twice."""
        identity = normalise_url(url)
        if identity not in seen:
            seen[identity] = index
            return
        first = seen[identity]
        first_line, _ = self._position(("feeds", first))
        self._issue(
            ("feeds", index, key),
            f"duplicate feed: {identity} is already feeds[{first}] "
            f"(line {first_line}); remove one of them",
        )
