"""Which date a post gets: pure rules over plain values, no I/O.

In Hexo a post's date decides its permalink and the archive page it lands
on, so a wrong date is a visible bug, not a cosmetic one.  Feeds get dates
wrong in three recurring ways, each with its own remedy:

* **No offset at all** (``2022-03-01 13:31:34``).  feedparser (and our JSON
  Feed reader) silently read such a time as UTC.  Chinese outlets mean Beijing
  time, so the post would be eight hours late.  The feed's ``timezone``
  (an IANA name) says what the wall time means; :func:`has_offset` tells
  from the raw text whether the date carried an offset to begin with, since
  the parsed value no longer shows it.
* **A wrong offset** -- some RSSHub routes label Beijing wall times as
  ``GMT`` (RSSHub issues #673 and #6795).  The time *has* an offset, just the
  wrong one, so ``timezone`` cannot help; the feed's ``date_offset`` (a signed
  duration such as ``-8h``) shifts every date of that feed.
* **Nonsense**: dates far in the future (a typo, a wrong year, or an outlet
  that "pins" a story by dating it 2099) or before the web existed (epoch
  zero, year 1).  A future date would sit at the top of the archive for ever;
  such dates are replaced by the time the item was first seen, and the caller
  logs and counts the replacement.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "EARLIEST",
    "FUTURE_TOLERANCE",
    "effective_date",
    "has_offset",
]

#: Dates before this are not news on the web: epoch zero, year 1, ``0000``.
EARLIEST = datetime(1995, 1, 1, tzinfo=UTC)
#: Clocks disagree a little; an item stamped a few minutes ahead is fine.
FUTURE_TOLERANCE = timedelta(minutes=10)

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


def effective_date(
    entry_date: datetime | None,
    *,
    naive: bool,
    timezone: ZoneInfo | None,
    offset: timedelta,
    first_seen: datetime,
    now: datetime,
) -> tuple[datetime, str | None]:
    """The date a post gets, and why the entry's own date was replaced (if it was).

    ``entry_date`` is the parsed date, aware and in UTC (a naive source time
    was read as UTC wall time); ``naive`` says the source had no offset.
    Applied in order:

    1. no entry date: ``first_seen`` (normal, not a replacement: reason None);
    2. ``naive`` and a ``timezone``: the wall time is re-read in that zone;
    3. ``offset`` is added (a feed-wide correction for a mislabelled zone);
    4. more than :data:`FUTURE_TOLERANCE` after ``now``, or before
       :data:`EARLIEST`: ``first_seen``, with a reason naming the bad date.

    The result is aware, in UTC.
    """
    if entry_date is None:
        return first_seen, None
    date = entry_date.astimezone(UTC)
    if naive and timezone is not None:
        date = date.replace(tzinfo=None).replace(tzinfo=timezone).astimezone(UTC)
    if offset:
        try:
            date = date + offset
        except OverflowError:
            return first_seen, f"{date.isoformat()} shifted by {offset} leaves the calendar"
    if date > now + FUTURE_TOLERANCE:
        ahead = date - now
        return first_seen, f"{date.isoformat()} is {_rough(ahead)} in the future"
    if date < EARLIEST:
        return first_seen, f"{date.isoformat()} is before {EARLIEST:%Y}"
    return date, None


def _rough(delta: timedelta) -> str:
    """A human-sized duration for log lines: ``3 days``, ``7 hours``, ``25 minutes``."""
    seconds = delta.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} seconds"
