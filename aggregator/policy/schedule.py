"""When is a feed next due?  Pure policy, no I/O.

The rules (README, "Scheduling"):

* Never poll more often than the feed's ``interval``.
* A feed or server that asks for *less* frequent polling is obeyed: RSS
  ``<ttl>``, ``sy:updatePeriod``/``sy:updateFrequency``, ``Cache-Control:
  max-age`` and ``Retry-After`` can each lengthen the delay, up to
  ``MAX_HINT`` so that one bad header cannot silence a feed for weeks.
* Errors come in classes, each with its own policy (:func:`after_failure`):

  - *transient* (timeouts, connection resets, 5xx): most are blips, so two
    quick retries with jitter (~30 s, ~2 min: :data:`QUICK_RETRIES`), then
    exponential back-off ``interval * 2**(streak-3)`` capped at
    ``MAX_BACKOFF``.  Never disables a feed: a host that is down for a
    fortnight still comes back.
  - *throttled* (429, 503 with ``Retry-After``, Cloudflare challenge pages:
    :func:`is_challenge`): the server asking us to wait, not the feed failing.
    We wait as asked (a challenge without ``Retry-After`` waits
    :data:`CHALLENGE_WAIT`); it neither grows the error streak nor counts
    toward disabling.  Miniflux stops polling after three errors of any kind,
    429 included, which silences feeds whose only fault is a busy RSSHub.
  - *permanent* (404, other 4xx, not a feed): back off ``interval *
    2**(streak-1)``; the feed is disabled once it has failed permanently,
    without a success in between, for ``disable_after`` (feeds.yaml, 7 days
    by default).  Days, not tries: the number of tries depends on the
    back-off, while a publisher's broken redesign is fixed in days.
  - *gone* (``410 Gone``): the publisher says the feed is gone for good, so
    it is disabled at once.

  ``Retry-After`` wins whenever it asks for longer than the back-off.
* A small random jitter spreads feeds that share an interval, so a restart
  or a config with 300 feeds of ``15m`` does not poll them all in one burst.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "CHALLENGE_WAIT",
    "MAX_BACKOFF",
    "MAX_HINT",
    "QUICK_RETRIES",
    "ErrorClass",
    "ErrorState",
    "FailurePlan",
    "Hints",
    "after_failure",
    "classify_status",
    "is_challenge",
    "next_after_error",
    "next_after_success",
    "startup_delay",
]

MAX_BACKOFF = timedelta(hours=24)
MAX_HINT = timedelta(hours=24)
#: Share of the delay added at random so feeds drift apart.
JITTER = 0.05
#: Transient failures are first retried after these delays (plus up to
#: ``QUICK_JITTER`` of each, so feeds of one host that failed together do
#: not come back together), then back off exponentially.
QUICK_RETRIES = (timedelta(seconds=30), timedelta(minutes=2))
QUICK_JITTER = 0.5
#: A challenge page is not lifted by retrying soon, and every retry makes
#: the bot score worse; wait this long unless Retry-After says otherwise.
CHALLENGE_WAIT = timedelta(hours=1)

# What Cloudflare's interstitial and block pages say in their first kilobyte.
_CHALLENGE_MARKERS = (
    b"just a moment...",
    b"/cdn-cgi/challenge-platform/",
    b"cf-chl-",
    b"attention required! | cloudflare",
)


class ErrorClass(enum.StrEnum):
    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"
    GONE = "gone"


def is_challenge(status: int | None, headers: Mapping[str, str], body_head: bytes) -> bool:
    """Whether an error response is a Cloudflare bot check rather than the site's answer.

    Cloudflare marks challenges with ``cf-mitigated: challenge``; older
    set-ups only show ``server: cloudflare`` with a "Just a moment..." or
    challenge-platform page.  Only 403, 429 and 503 are considered: a
    challenge is never served as 404, so a real 404 behind Cloudflare stays
    a 404.
    """
    if status not in (403, 429, 503):
        return False
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("cf-mitigated", "").strip().lower() == "challenge":
        return True
    if "cloudflare" not in lowered.get("server", "").lower():
        return False
    text = body_head.lower()
    return any(marker in text for marker in _CHALLENGE_MARKERS)


def classify_status(
    status: int | None,
    *,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
    body_head: bytes = b"",
) -> ErrorClass:
    """The class of a failed fetch; ``status`` is None for network errors.

    ``headers`` and ``body_head`` (the response's first bytes) are only
    needed to recognise challenge pages (:func:`is_challenge`).
    """
    if status is None:
        return ErrorClass.TRANSIENT
    if status == 410:
        return ErrorClass.GONE
    if status == 429 or (status == 503 and retry_after is not None):
        return ErrorClass.THROTTLED
    if is_challenge(status, headers or {}, body_head):
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
    """Next poll after a failure; ``streak`` counts this failure (>= 1).

    See the module docstring for each class's rule.  ``retry_after`` is the
    server's Retry-After, in seconds; it only ever lengthens the wait.
    """
    asked = min(timedelta(seconds=retry_after), MAX_BACKOFF) if retry_after else None
    if error_class is ErrorClass.THROTTLED:
        wait = asked if asked is not None else interval * 2
        return now + _jitter(min(max(wait, interval), MAX_BACKOFF), rng)
    if error_class is ErrorClass.TRANSIENT and streak <= len(QUICK_RETRIES):
        quick = QUICK_RETRIES[max(streak, 1) - 1]
        quick += quick * QUICK_JITTER * (rng or random).random()
        return now + (max(quick, asked) if asked is not None else quick)
    if error_class is ErrorClass.TRANSIENT:
        exponent = streak - 1 - len(QUICK_RETRIES)
        backoff = min(max(interval * 2**exponent, QUICK_RETRIES[-1]), MAX_BACKOFF)
    else:
        backoff = min(interval * (2 ** max(streak - 1, 0)), MAX_BACKOFF)
    if asked is not None:
        backoff = max(backoff, asked)
    return now + _jitter(backoff, rng)


@dataclass(frozen=True, slots=True)
class ErrorState:
    """A feed's error bookkeeping before this failure (from its database row).

    ``first_error_at`` is when the current run of failures of
    ``last_class`` began; it is what ``disable_after`` is measured from.
    """

    streak: int = 0
    first_error_at: datetime | None = None
    last_class: ErrorClass | None = None


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """What to record for a failed poll: the feed's new error state and fate."""

    error_class: ErrorClass
    streak: int
    first_error_at: datetime | None
    next_check_at: datetime
    #: Set when the feed must stop being polled; shown by ``aggregator status``.
    disabled_reason: str | None = None


def after_failure(
    now: datetime,
    interval: timedelta,
    state: ErrorState,
    error_class: ErrorClass,
    *,
    disable_after: timedelta,
    retry_after: float | None = None,
    challenge: bool = False,
    rng: random.Random | None = None,
) -> FailurePlan:
    """The whole error policy for one failed poll (module docstring), as data.

    * throttled: streak and ``first_error_at`` untouched -- a 429 says
      nothing about the feed, so it neither starts, extends nor breaks a run;
    * transient / permanent / gone: the streak grows; ``first_error_at``
      is kept while failures stay in the same class (throttling in between
      does not count), and restarts at ``now`` when the class changes, so
      six days of timeouts followed by one 404 are not "seven days of 404";
    * permanent for ``disable_after`` or more, or gone: disabled, with a
      reason a person can act on.
    """
    if error_class is ErrorClass.THROTTLED:
        wait = retry_after
        if wait is None and challenge:
            wait = CHALLENGE_WAIT.total_seconds()
        return FailurePlan(
            error_class=error_class,
            streak=state.streak,
            first_error_at=state.first_error_at,
            next_check_at=next_after_error(
                now, interval, max(state.streak, 1), error_class, retry_after=wait, rng=rng
            ),
        )
    streak = state.streak + 1
    same_run = state.first_error_at is not None and state.last_class in (
        error_class,
        ErrorClass.THROTTLED,
    )
    first = state.first_error_at if same_run and state.first_error_at else now
    disabled = None
    if error_class is ErrorClass.GONE:
        disabled = f"410 Gone at {now:%Y-%m-%d %H:%M} UTC: the publisher removed this feed"
    elif error_class is ErrorClass.PERMANENT and now - first >= disable_after:
        disabled = (
            f"failing permanently since {first:%Y-%m-%d %H:%M} UTC "
            f"({_days(now - first)}, disable_after is {_days(disable_after)}); "
            "fix its url in feeds.yaml, or re-enable it with a successful "
            "`aggregator fetch --feed URL`"
        )
    return FailurePlan(
        error_class=error_class,
        streak=streak,
        first_error_at=first,
        next_check_at=next_after_error(
            now, interval, streak, error_class, retry_after=retry_after, rng=rng
        ),
        disabled_reason=disabled,
    )


def _days(delta: timedelta) -> str:
    """``7 days``, ``1.5 days``, ``12 hours``: how long, in words a person reads at a glance."""
    seconds = delta.total_seconds()
    count, unit = (seconds / 86400, "day") if seconds >= 86400 else (seconds / 3600, "hour")
    text = f"{count:.1f}".removesuffix(".0")
    return f"{text} {unit}" + ("" if text == "1" else "s")


#: New feeds are first polled within this long of being added (or less than
#: their interval): long enough to spread a burst, short enough to feel instant.
STARTUP_SPREAD = timedelta(seconds=10)


def startup_delay(interval: timedelta, *, rng: random.Random | None = None) -> timedelta:
    """Spread never-polled feeds over the first seconds, not all in one burst."""
    spread = min(interval, STARTUP_SPREAD).total_seconds()
    return timedelta(seconds=(rng or random).random() * spread)
