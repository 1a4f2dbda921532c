"""When is a feed next due?  Pure policy, no I/O.

The rules (README, "Scheduling"):

* Never poll more often than the feed's ``interval``.
* A feed or server that asks for *less* frequent polling is obeyed: RSS
  ``<ttl>``, ``sy:updatePeriod``/``sy:updateFrequency``, ``Cache-Control:
  max-age`` and ``Retry-After`` can each lengthen the delay, up to
  ``MAX_HINT`` so that one bad header cannot silence a feed for weeks.
* Errors back off exponentially per feed -- ``interval * 2**(streak-1)`` --
  capped at ``MAX_BACKOFF``.  ``Retry-After`` wins when it asks for longer.
* Errors come in classes with their own policy: *transient* (timeouts,
  connection resets, 5xx) and *permanent* (404, not a feed) back off;
  *throttled* (429, 503 with ``Retry-After``) waits as asked and never counts
  toward disabling; ``410 Gone`` disables the feed at once.
* A small random jitter spreads feeds that share an interval, so a restart
  or a config with 300 feeds of ``15m`` does not poll them all in one burst.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "MAX_BACKOFF",
    "MAX_HINT",
    "ErrorClass",
    "Hints",
    "classify_status",
    "next_after_error",
    "next_after_success",
    "startup_delay",
]

MAX_BACKOFF = timedelta(hours=24)
MAX_HINT = timedelta(hours=24)
#: Share of the delay added at random so feeds drift apart.
JITTER = 0.05


class ErrorClass(enum.StrEnum):
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    GONE = "gone"


def classify_status(status: int | None, *, retry_after: float | None = None) -> ErrorClass:
    """The class of a failed fetch; ``status`` is None for network errors."""
    if status is None:
        return ErrorClass.TRANSIENT
    if status == 410:
        return ErrorClass.GONE
    if status == 429 or (status == 503 and retry_after is not None):
        return ErrorClass.THROTTLED
    if status >= 500 or status in (408, 425):
        return ErrorClass.TRANSIENT
    return ErrorClass.PERMANENT


@dataclass(frozen=True, slots=True)
class Hints:
    """What the feed and server said about polling frequency, in seconds."""

    ttl: float | None = None
    update_period: float | None = None
    max_age: float | None = None
    retry_after: float | None = None


def _jitter(delay: timedelta, rng: random.Random | None) -> timedelta:
    r = (rng or random).random()
    return delay + timedelta(seconds=delay.total_seconds() * JITTER * r)


def next_after_success(
    now: datetime, interval: timedelta, hints: Hints, *, rng: random.Random | None = None
) -> datetime:
    """Next poll after a good fetch (200 or 304)."""
    asked = [h for h in (hints.ttl, hints.update_period, hints.max_age, hints.retry_after) if h]
    hint = min(timedelta(seconds=max(asked)), MAX_HINT) if asked else timedelta(0)
    return now + _jitter(max(interval, hint), rng)


def next_after_error(
    now: datetime,
    interval: timedelta,
    streak: int,
    error_class: ErrorClass,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Next poll after a failure; ``streak`` counts this failure (>= 1)."""
    if error_class is ErrorClass.THROTTLED:
        wait = timedelta(seconds=retry_after) if retry_after else interval * 2
        return now + _jitter(min(max(wait, interval), MAX_BACKOFF), rng)
    backoff = min(interval * (2 ** max(streak - 1, 0)), MAX_BACKOFF)
    if retry_after:
        backoff = max(backoff, min(timedelta(seconds=retry_after), MAX_BACKOFF))
    return now + _jitter(backoff, rng)


#: New feeds are first polled within this long of being added (or less than
#: their interval): long enough to spread a burst, short enough to feel instant.
STARTUP_SPREAD = timedelta(seconds=10)


def startup_delay(interval: timedelta, *, rng: random.Random | None = None) -> timedelta:
    """Spread never-polled feeds over the first seconds, not all in one burst."""
    spread = min(interval, STARTUP_SPREAD).total_seconds()
    return timedelta(seconds=(rng or random).random() * spread)
