"""Which date a post gets: pure rules over plain values, no I/O.

In Hexo a post's date decides its permalink and the archive page it lands
on, so a wrong date is a visible bug, not a cosmetic one.  Feeds get dates
wrong in recurring ways, each with its own remedy:

* **Forms the feed parser misreads or drops.**  feedparser reads
  ``2022年03月01日 13:31`` and ``2020/1/10 14:33:00`` as 1 December of the
  year (its ISO 8601 reader stops after the year) and gives up on an RFC 822
  date without a zone (``Tue, 01 Mar 2022 13:31:34``), on ``+0900`` glued to
  the time, and on Portuguese or Italian month names.  :func:`read_date`
  reads the text itself first with a small grammar for the numeric and
  Chinese forms, then feedparser, then dateutil for what is left.
* **No offset at all** (``2022-03-01 13:31:34``).  The wall time is read in
  the feed's ``timezone`` (an IANA name), else as UTC; either way the zone
  was assumed, not read, and that is logged and counted.
* **An ambiguous zone name**: ``CST`` is US Central (-06:00) to feedparser
  and dateutil but China Standard Time (+08:00) to Chinese outlets.  A feed
  whose ``timezone`` is at UTC+8 reads it as +08:00; any other feed keeps
  -06:00, counted as ambiguous unless its zone is itself at UTC-6.
* **A wrong offset** -- some RSSHub routes label Beijing wall times as
  ``GMT`` (RSSHub issues #673 and #6795).  The time *has* an offset, just the
  wrong one, so ``timezone`` cannot help; the feed's ``date_offset`` (a signed
  duration such as ``-8h``) shifts every date of that feed.
* **Nonsense**: dates far in the future (a typo, a wrong year, or an outlet
  that "pins" a story by dating it 2099) or before the web existed (epoch
  zero, year 1).  A future date would sit at the top of the archive for ever;
  such dates are replaced by the time the item was first seen.

Every date that was replaced or whose zone was assumed comes back with a
:class:`DateNote` (one of :data:`REASONS`), which the pipeline logs and
counts.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, Literal, get_args
from zoneinfo import ZoneInfo

# feedparser's date readers and dateutil are imported on the first text the
# fast paths below do not read: this module is imported by every command
# that opens the store (aggregator.store.records), and feedparser's package
# alone is ~35 ms of a warm `fetch` that reads no date at all.
if TYPE_CHECKING:
    from dateutil.parser import parserinfo

__all__ = [
    "EARLIEST",
    "FUTURE_TOLERANCE",
    "REASONS",
    "DateNote",
    "Reading",
    "Reason",
    "effective_date",
    "has_offset",
    "read_date",
    "read_entry_date",
]

#: Dates before this are not news on the web: epoch zero, year 1, ``0000``.
EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)
#: Clocks disagree a little; an item stamped a few minutes ahead is fine.
FUTURE_TOLERANCE = timedelta(minutes=10)

#: Why a post's date is not simply the entry's date as written.  A fixed set:
#: it is the ``reason`` label of a Prometheus counter.
Reason = Literal[
    "missing",  # no date in the entry: the time first seen
    "unparsable",  # a date text nothing reads: the time first seen
    "zone_assumed",  # no zone in the text: the feed's timezone, else UTC
    "cst_china",  # CST read as +08:00 because the feed's timezone is at UTC+8
    "cst_ambiguous",  # CST read as US Central, the feed's timezone not saying otherwise
    "future",  # more than FUTURE_TOLERANCE ahead: the time first seen
    "too_old",  # before EARLIEST (or shifted off the calendar): the time first seen
]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)

_CHINA = timedelta(hours=8)
_US_CENTRAL = timedelta(hours=-6)

# A time of day followed by a zone designator that the date parsers honour.
# Zone *names* count only when feedparser knows them: it reads any other name
# (``CCT``, ``PM``) as UTC, exactly as if there were no zone, so for our
# purpose such a date is naive too.
_KNOWN_ZONE_NAMES = (
    "utc|ut|gmt|etc/gmt|etc/utc|adt|ast|at|edt|est|et|cdt|cst|ct|mdt|mst|mt|pdt|pst|pt|mest|met"
)
_TIME_THEN_ZONE = re.compile(
    r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*"
    r"(?:z\b|[+-]\d{2}(?::?\d{2})?\b|(?:" + _KNOWN_ZONE_NAMES + r")\b)",
    re.IGNORECASE,
)


def has_offset(text: str | None) -> bool:
    """Whether a raw date string says which zone its time is in.

    ``Tue, 01 Mar 2022 13:31:34 GMT``, ``...+0800`` and ``2022-03-01T13:31:34Z``
    do; ``2022-03-01 13:31:34``, a bare date (``2022-03-01``: midnight local
    time) and an unknown zone name do not.  ``None`` or empty text has no
    offset either.
    """
    return bool(text) and _TIME_THEN_ZONE.search(text or "") is not None


# --------------------------------------------------------------------------
# Reading the text


@dataclass(frozen=True, slots=True)
class Reading:
    """A date as the text gives it.

    ``value`` is aware when the text named an offset, naive (wall time) when
    it did not; ``cst`` says the text's zone was the ambiguous ``CST``, in
    which case ``value`` is the naive wall time.
    """

    value: datetime
    cst: bool = False


# Hand-written grammars, because no library reads these forms right:
# feedparser turns "2022年03月01日" and "2022/03/01" into 1 December (its
# ISO 8601 reader takes "2022" and then fills in garbage) and dateutil cannot
# read 年/月/日 at all.  The tests check the numeric forms against dateutil,
# which reads them correctly once the CJK markers are swapped for dashes.
_TIME = (
    r"(?:\s*T?\s*(?P<ampm>上午|下午|早上|晚上|凌晨|中午)?\s*"
    r"(?P<hour>\d{1,2})\s*[:时時点點]\s*(?P<minute>\d{1,2})"
    r"(?:\s*[:分]\s*(?P<second>\d{1,2})(?:[.,]\d+)?\s*秒?)?\s*分?)?"
)
_CHINESE = re.compile(
    r"(?P<year>\d{4})\s*年\s*(?P<month>\d{1,2})\s*月\s*(?P<day>\d{1,2})\s*[日号號]?"
    r"(?:\s*[(（]?\s*(?:星期|周|週)[一二三四五六日天][)）]?)?" + _TIME
)
_NUMERIC = re.compile(
    r"(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})" + _TIME
)
_PM = ("下午", "晚上")
# CST as the zone of a time, with nothing else saying the offset.
_CST = re.compile(r"(?<=\d)\s*\(?\bCST\b\)?\s*$", re.IGNORECASE)
# Unix time in seconds (seen once in the corpus as an RSS pubDate; feedparser
# reads it as a date in 2015).
_EPOCH = re.compile(r"\d{9,10}")
# A leading word (a weekday: redundant next to the day of the month, and in
# another language one dateutil would refuse: ``Seg,``, ``mer,``).
_LEADING_WORD = re.compile(r"^([^\W\d_]+)\.?,?\s+")


# dateutil takes any number of names per month at run time; its stubs say
# two or three, hence Any.
_MONTH_NAMES: Any = [
    ("Jan", "January", "janv", "ene", "gen"),
    ("Feb", "February", "fev", "fév", "févr"),
    ("Mar", "March", "mars", "mär", "märz"),
    ("Apr", "April", "abr", "avr"),
    ("May", "mai", "mag"),
    ("Jun", "June", "juin", "giu"),
    ("Jul", "July", "juil", "lug"),
    ("Aug", "August", "ago", "août"),
    ("Sep", "Sept", "September", "set"),
    ("Oct", "October", "out", "ott", "okt"),
    ("Nov", "November"),
    ("Dec", "December", "dez", "dic", "déc"),
]


@functools.cache
def _dateutil_info() -> parserinfo:
    """dateutil's English names plus the month abbreviations of the other
    European languages feeds in the corpus use (Portuguese ``Set``, Italian
    ``nov``...).  None of them means another month in another language."""
    from dateutil.parser import parserinfo

    class _Months(parserinfo):
        MONTHS = _MONTH_NAMES

    return _Months()


#: No date text is longer ("Tuesday, 01 March 2022 13:31:34 +0000 (Coordinated
#: Universal Time)" is 70); longer text is not handed to the parsers at all.
_LONGEST: Final = 200
# Two defaults that differ in every date field: a reading that depends on
# which one is used took a field from the default, i.e. the text lacked it.
_DEFAULTS: Final = (datetime(2000, 1, 1), datetime(2001, 2, 2))


@functools.lru_cache(maxsize=8192)
def read_date(text: str | None) -> Reading | None:
    """The date a feed's date text says, or None when nothing can read it.

    Cached: every poll lists mostly the entries of the last one, and reading
    a text that no fast path takes (feedparser's handlers, then dateutil)
    costs tens of microseconds.  The answer is immutable and depends on the
    text alone.
    """
    if not text:
        return None
    clean = " ".join(unicodedata.normalize("NFKC", text).split())
    if not clean or len(clean) > _LONGEST:
        return None
    if _EPOCH.fullmatch(clean):
        return Reading(datetime.fromtimestamp(int(clean), UTC))
    cst = _CST.search(clean)
    if cst is not None and not _has_numeric_offset(clean):
        wall = _read(clean[: cst.start()])
        if wall is None:
            return None
        return Reading(wall, cst=wall.tzinfo is None)  # "... GMT CST": the GMT counts
    value = _read(clean)
    return Reading(value) if value is not None else None


def _has_numeric_offset(text: str) -> bool:
    return re.search(r"\d:\d{2}(?::\d{2})?\s*[+-]\d{2}:?\d{2}", text) is not None


def _read(text: str) -> datetime | None:
    for grammar in (_CHINESE, _NUMERIC):
        match = grammar.fullmatch(text)
        if match is not None:
            # The form is ours: an impossible date is unreadable, not a cue
            # to let feedparser invent one.
            return _from_fields(match)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    from feedparser.datetimes import _parse_date as feedparser_date

    parsed = feedparser_date(text)
    if parsed is not None:
        year, month, day, hour, minute, second = parsed[:6]
        try:  # "00" comes back as the year -99
            value = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            return None
        return value if has_offset(text) else value.replace(tzinfo=None)
    return _dateutil(text)


def _from_fields(match: re.Match[str]) -> datetime | None:
    hour = int(match["hour"] or 0)
    if match["ampm"] in _PM and hour < 12:
        hour += 12
    try:
        return datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            hour,
            int(match["minute"] or 0),
            int(match["second"] or 0),
        )
    except ValueError:
        return None


def _dateutil(text: str) -> datetime | None:
    """dateutil's reading, if the text gives year, month and day itself."""
    from dateutil import parser as dateutil_parser

    info = _dateutil_info()
    word = _LEADING_WORD.match(text)
    if word is not None and info.month(word.group(1)) is None:
        text = text[word.end() :]
    readings = []
    for default in _DEFAULTS:
        try:
            with warnings.catch_warnings():
                # An unknown zone name: dateutil warns and returns wall time,
                # which is what we want (the zone is then assumed and counted).
                warnings.simplefilter("ignore")
                readings.append(dateutil_parser.parse(text, info, default=default))
        except (ValueError, OverflowError):
            return None
    first, second = readings
    if first != second:
        return None  # a date field came from the default
    try:
        return first.astimezone(UTC) if first.tzinfo is not None else first
    except (ValueError, OverflowError):
        return None


def read_entry_date(
    text: str | None, fallback: datetime | None, *, whole_seconds: bool = True
) -> tuple[datetime | None, bool]:
    """An entry's date as the parser keeps it: aware UTC, and whether the text
    named no zone.

    Naive wall times are read as UTC and CST as US Central, as the feed
    parser always did; :func:`effective_date` re-reads the text under the
    feed's own settings.  ``fallback`` (the parser's own reading) is used
    only when there is no text to read.  ``whole_seconds`` matches
    feedparser's struct_time, which has no smaller unit: entry keys are built
    from this value, so an RSS or Atom entry keeps the key it always had.
    """
    if not text:
        return fallback, True
    reading = read_date(text)
    if reading is None:
        return None, not has_offset(text)
    if reading.cst:
        value = _at(reading.value, _US_CENTRAL)
    elif reading.value.tzinfo is None:
        value = reading.value.replace(tzinfo=UTC)
    else:
        value = reading.value.astimezone(UTC)
    naive = reading.value.tzinfo is None and not reading.cst
    return (value.replace(microsecond=0) if whole_seconds else value), naive


# --------------------------------------------------------------------------
# Deciding


@dataclass(frozen=True, slots=True)
class DateNote:
    """Why a post's date is not just the entry's date as written, for the log."""

    reason: Reason
    #: The entry's date text as the feed sent it (None: it had none).
    text: str | None
    #: What was done, in words: ``read in Asia/Shanghai``, ``2099-01-01 is in the future``.
    detail: str


def effective_date(
    text: str | None,
    *,
    parsed: datetime | None = None,
    naive: bool = False,
    timezone: ZoneInfo | None,
    offset: timedelta,
    first_seen: datetime,
    now: datetime,
) -> tuple[datetime, DateNote | None]:
    """The date a post gets, and a note when it was replaced or its zone assumed.

    ``text`` is the entry's date text.  ``parsed``/``naive`` (the date as
    the parser read it, and whether its text had no offset) stand in when
    there is no text -- entries stored before the text was kept.  Applied in
    order:

    1. nothing to read: ``first_seen`` (``missing``; ``unparsable`` when
       there was text);
    2. no zone in the text: the wall time in ``timezone``, else UTC
       (``zone_assumed``); ``CST``: +08:00 when ``timezone`` is at UTC+8
       (``cst_china``), else -06:00 (``cst_ambiguous`` unless ``timezone``
       is at UTC-6);
    3. ``offset`` is added (a feed-wide correction for a mislabelled zone);
    4. more than :data:`FUTURE_TOLERANCE` after ``now`` (``future``), or
       before :data:`EARLIEST` (``too_old``): ``first_seen``.

    The result is aware, in UTC.
    """
    reading = read_date(text) if text else None
    if reading is None and not text and parsed is not None:
        reading = Reading(parsed.replace(tzinfo=None) if naive else parsed)
    if reading is None:
        if text:
            return first_seen, DateNote("unparsable", text, "no reader understands it")
        return first_seen, DateNote("missing", None, "the entry has no date")
    date, note = _zoned(reading, text, timezone)
    if offset:
        try:
            date = date + offset
        except OverflowError:
            return first_seen, DateNote(
                "too_old", text, f"{date.isoformat()} shifted by {offset} leaves the calendar"
            )
    if date > now + FUTURE_TOLERANCE:
        ahead = date - now
        return first_seen, DateNote(
            "future", text, f"{date.isoformat()} is {_rough(ahead)} in the future"
        )
    if date < EARLIEST:
        return first_seen, DateNote("too_old", text, f"{date.isoformat()} is before {EARLIEST:%Y}")
    return date.replace(microsecond=0), note


def _zoned(
    reading: Reading, text: str | None, zone: ZoneInfo | None
) -> tuple[datetime, DateNote | None]:
    """The reading as an aware UTC time, and a note when the zone was not the text's."""
    wall = reading.value
    if wall.tzinfo is not None:
        return wall.astimezone(UTC), None
    if reading.cst:
        standard = _standard_offset(zone, wall) if zone is not None else None
        if standard == _CHINA:
            return _at(wall, _CHINA), DateNote("cst_china", text, f"CST read as +08:00 ({zone})")
        at = _at(wall, _US_CENTRAL)
        if standard == _US_CENTRAL:
            return at, None
        why = f"timezone {zone} is not at UTC+8" if zone else "the feed sets no timezone"
        return at, DateNote("cst_ambiguous", text, f"CST read as US Central -06:00 ({why})")
    if zone is None:
        return wall.replace(tzinfo=UTC), DateNote(
            "zone_assumed", text, "no zone in the text; read as UTC (the feed sets no timezone)"
        )
    return wall.replace(tzinfo=zone).astimezone(UTC), DateNote(
        "zone_assumed", text, f"no zone in the text; read in {zone}"
    )


def _at(wall: datetime, offset: timedelta) -> datetime:
    return wall.replace(tzinfo=timezone(offset)).astimezone(UTC)


def _standard_offset(zone: ZoneInfo, wall: datetime) -> timedelta | None:
    """The zone's offset on that day without daylight saving (what "CST" names)."""
    local = wall.replace(tzinfo=zone)
    total, dst = local.utcoffset(), local.dst()
    return total - dst if total is not None and dst is not None else total


def _rough(delta: timedelta) -> str:
    """A human-sized duration for log lines: ``3 days``, ``7 hours``, ``25 minutes``."""
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} seconds"
