"""RSSHub: recognising an RSSHub server, and the failures it means as "wait".

Pure decisions over plain data, no I/O, so the rules are table-tested
(``tests/test_rsshub.py``) and the pipeline only asks and applies.

RSSHub renders every feed on demand by scraping the upstream site, so a route
that nobody asked for lately is *cold*: its first request can be slow, and
while a route is still being built RSSHub may answer ``503`` with a short
``Cache-Control: max-age`` meaning "come back then".  Treating those as errors
would back the route off exponentially for what is a normal warm-up.  Two
rules follow, and both only ever touch the one feed (= one route) involved --
never the host, so one failing route cannot freeze the other routes of the
same instance (what FreshRSS #7870 and #7880 did):

* **warming** -- a ``503`` from RSSHub with ``0 < max-age <= 5 min`` is
  retried after ``max-age`` seconds and is not an error: the error streak and
  the first-error time stay as they were.
* **cold timeout** -- the *first* failure of a route that never succeeded,
  when it is a timeout, is retried once after ``cold_retry_delay`` (30 s),
  again without counting; a second timeout backs off as usual.

A source is RSSHub when the feed is configured with ``rsshub:``, when a
response names it (``<generator>RSSHub</generator>``, an ``X-RSSHub-Route``
header, ``RSSHub`` in ``Server`` / ``X-Powered-By``), or when another feed on
the same origin was recognised so (:class:`Sightings`) -- a failing route's
``503`` carries no feed to read the generator from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "COLD_TIMEOUT",
    "WARMING",
    "Deferral",
    "RsshubPolicy",
    "Sightings",
    "classify_failure",
    "generator_is_rsshub",
    "headers_say_rsshub",
    "is_rsshub",
    "origin",
]

#: Outcome (``error_class`` on the feed row) of a 503 while a route warms up.
WARMING: Final = "warming"
#: Outcome of the first timeout of a route that never succeeded.
COLD_TIMEOUT: Final = "cold_timeout"

_HINT_HEADERS: Final = ("server", "x-powered-by")


@dataclass(frozen=True, slots=True)
class RsshubPolicy:
    """The two waits, in seconds; tests shorten them."""

    #: A 503's max-age up to this long reads as "warming up"; longer is an
    #: ordinary outage and follows the usual error classes.
    warming_max_age: float = 300.0
    #: How long a cold route gets before its one retry after a timeout.
    cold_retry_delay: float = 30.0

    def __post_init__(self) -> None:
        for name in ("warming_max_age", "cold_retry_delay"):
            if not getattr(self, name) > 0:
                value = getattr(self, name)
                raise ValueError(f"RsshubPolicy.{name} must be positive, got {value!r}")


@dataclass(frozen=True, slots=True)
class Deferral:
    """ "Not an error, try this feed again in ``delay`` seconds", and why."""

    outcome: str  # WARMING or COLD_TIMEOUT
    delay: float
    reason: str


def generator_is_rsshub(generator: str | None) -> bool:
    """``<generator>RSSHub</generator>`` (RSSHub also writes a URL or version after it)."""
    return generator is not None and generator.strip().lower().startswith("rsshub")


def headers_say_rsshub(headers: Mapping[str, str] | None) -> bool:
    """Whether response headers name RSSHub; ``headers`` must look names up case-blind
    (httpx.Headers does)."""
    if headers is None:
        return False
    if headers.get("x-rsshub-route") is not None:
        return True
    return any("rsshub" in (headers.get(name) or "").lower() for name in _HINT_HEADERS)


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``, lowercased: one RSSHub instance."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(slots=True)
class Sightings:
    """Origins seen serving RSSHub feeds, so a route there that fails is known as one.

    Held by one pipeline for its lifetime (not persisted): after a restart a
    plain ``url:`` feed is recognised again by its first answer that names
    RSSHub; feeds configured with ``rsshub:`` need no sighting.
    """

    origins: set[str] = field(default_factory=set)

    def note(self, url: str) -> None:
        self.origins.add(origin(url))

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and origin(url) in self.origins


def is_rsshub(
    *,
    route: str | None = None,
    generator: str | None = None,
    headers: Mapping[str, str] | None = None,
    seen_on_origin: bool = False,
) -> bool:
    """Any one sign is enough; see the module docstring."""
    return (
        route is not None
        or generator_is_rsshub(generator)
        or headers_say_rsshub(headers)
        or seen_on_origin
    )


def classify_failure(
    *,
    rsshub: bool,
    status: int | None,
    max_age: float | None,
    retry_after: float | None,
    timed_out: bool,
    ever_succeeded: bool,
    error_streak: int,
    previous_outcome: str | None,
    policy: RsshubPolicy | None = None,
) -> Deferral | None:
    """A failed fetch that is RSSHub warming up, or ``None`` for the usual error policy.

    ``error_streak`` and ``previous_outcome`` are the feed row's before this
    failure; they tell whether the cold route's one retry was already used.
    """
    if not rsshub:
        return None
    policy = policy or RsshubPolicy()
    if status == 503 and max_age is not None and 0 < max_age <= policy.warming_max_age:
        delay = max(max_age, retry_after or 0.0)
        return Deferral(
            WARMING,
            delay,
            f"RSSHub route warming up (HTTP 503, max-age {max_age:g}); "
            f"retrying in {delay:g} s, not counted as an error",
        )
    first_failure = error_streak == 0 and previous_outcome != COLD_TIMEOUT
    if timed_out and not ever_succeeded and first_failure:
        delay = policy.cold_retry_delay
        return Deferral(
            COLD_TIMEOUT,
            delay,
            f"first request to a cold RSSHub route timed out; retrying once in {delay:g} s, "
            "not counted as an error",
        )
    return None
