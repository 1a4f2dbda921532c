"""Prometheus metrics for the daemon, on a registry of its own.

Design choices, and why:

* Every :class:`Metrics` owns a :class:`~prometheus_client.CollectorRegistry`
  (a fresh one unless the caller passes one).  The library's global default
  registry refuses a second metric of the same name, so two daemons, or two
  tests, in one process would collide there; with a registry per instance they
  cannot, and nothing is hidden in module state.
* The pipeline is not imported: :func:`Metrics.observe` takes anything shaped
  like its ``FeedReport`` (:class:`FeedReportLike`), so this module stays a
  leaf that the pipeline, the daemon and the tests can all import.
* Label values come from fixed sets (outcomes, post kinds, error classes,
  feed states), so the number of series is bounded whatever the feeds send
  and however many feeds there are.  A fleet of 30,000 feeds must not become
  30,000 series (issue 17): the per-feed view lives in the database
  (``aggregator status``), and Prometheus gets
  ``aggregator_feeds_by_state{state}`` and
  ``aggregator_oldest_success_age_seconds`` instead, which the daemon's
  housekeeping computes from one query.  Small installs may opt in to
  ``aggregator_last_success_timestamp_seconds{feed}`` (``per_feed=True``,
  ``aggregator run --metrics-per-feed``); :meth:`Metrics.forget_feed` drops a
  feed that was removed from ``feeds.yaml``.  The ``publisher`` label
  (``git``, ``command``, ``webhook:<name>``) is bounded by the ``publish:``
  section likewise.
* The known label values are created up front at zero, so ``rate()`` and
  alerts see a series from the first scrape instead of only after the first
  error of each kind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from aggregator.policy.dates import REASONS as DATE_REASONS

__all__ = [
    "DATE_REASONS",
    "DURATION_BUCKETS",
    "ERROR_CLASSES",
    "FEED_STATES",
    "FeedReportLike",
    "Metrics",
]

#: Error classes the pipeline reports (``FeedReport.error_class``).  Anything
#: else is counted as ``other`` so a bug cannot grow the label set.
ERROR_CLASSES: Final = (
    "transient",
    "throttled",
    "permanent",
    "gone",
    "export",
    # RSSHub waits (aggregator.policy.rsshub): retried soon, not counted in error streaks.
    "warming",
    "cold_timeout",
)
_OTHER: Final = "other"
_OUTCOMES: Final = ("ok", "not_modified", *ERROR_CLASSES, _OTHER)
_POST_KINDS: Final = ("new", "duplicate", "updated")
#: What ``aggregator_feeds_by_state`` counts (the store's ``FeedSummary``):
#: polled fine last time, never polled yet, failing, told to slow down, or
#: disabled (in feeds.yaml or after too many errors).  Feeds removed from
#: feeds.yaml are not counted.
FEED_STATES: Final = ("ok", "new", "failing", "throttled", "disabled")

#: Fetch durations span a cached 304 from a nearby CDN (~10 ms) to a slow
#: outlet running into the fetch timeout (~60 s), roughly 2.5x per bucket.
DURATION_BUCKETS: Final = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
)


class FeedReportLike(Protocol):
    """What :meth:`Metrics.observe` reads from the pipeline's ``FeedReport``.

    Read-only properties, so frozen dataclasses and plain ones both match.
    """

    @property
    def url(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def new(self) -> int: ...
    @property
    def duplicate(self) -> int: ...
    @property
    def updated(self) -> int: ...
    @property
    def wire_bytes(self) -> int: ...
    @property
    def elapsed_ms(self) -> int: ...
    @property
    def error_class(self) -> str | None: ...
    @property
    def dates_replaced(self) -> int: ...
    @property
    def date_notes(self) -> Mapping[str, int]: ...
    @property
    def failed(self) -> bool: ...


class Metrics:
    """The daemon's counters, gauges and histogram, rendered for ``/metrics``.

    Thread-safe (prometheus-client locks each metric), so fetch workers may
    call :meth:`observe` from threads while the HTTP server renders.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
        per_feed: bool = False,
    ) -> None:
        """``clock`` gives the Unix time stamped on successes (tests fix it);
        ``per_feed`` adds the one series per feed (off: see the module docstring)."""
        self.registry: CollectorRegistry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self.per_feed = per_feed
        r = self.registry
        self._fetches = Counter(
            "aggregator_fetches",
            "Feed fetches by outcome: ok (2xx), not_modified (304) or the error class.",
            ["outcome"],
            registry=r,
        )
        self._posts = Counter(
            "aggregator_posts",
            "Feed entries by what the store made of them: new, duplicate or updated.",
            ["kind"],
            registry=r,
        )
        self._duration = Histogram(
            "aggregator_fetch_duration_seconds",
            "Wall time of one feed fetch, including failures.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._bytes = Counter(
            "aggregator_fetched_bytes",
            "Bytes received from feed servers, as sent on the wire (compressed).",
            registry=r,
        )
        self._due = Gauge("aggregator_feeds_due", "Feeds due for a fetch now.", registry=r)
        self._leased = Gauge(
            "aggregator_feeds_leased", "Feeds currently leased by a fetch worker.", registry=r
        )
        self._active = Gauge(
            "aggregator_feeds_active", "Feeds configured and not disabled.", registry=r
        )
        self._last_success: Gauge | None = None
        if per_feed:
            self._last_success = Gauge(
                "aggregator_last_success_timestamp_seconds",
                "Unix time of the feed's last successful fetch (200 or 304) by this process.",
                ["feed"],
                registry=r,
            )
        self._by_state = Gauge(
            "aggregator_feeds_by_state",
            "Feeds in feeds.yaml by state: ok, new (never polled), failing, throttled, "
            "disabled; counted over the whole database, so every daemon of a fleet agrees.",
            ["state"],
            registry=r,
        )
        self._oldest_success_age = Gauge(
            "aggregator_oldest_success_age_seconds",
            "Seconds since the least recently successful active feed last succeeded "
            "(since it was added, if it never did): the fleet-wide staleness alarm.",
            registry=r,
        )
        self._errors = Counter(
            "aggregator_feed_errors",
            "Failed feed fetches by error class.",
            ["error_class"],
            registry=r,
        )
        self._dates_replaced = Counter(
            "aggregator_dates_replaced",
            "New posts whose entry date was replaced by the time first seen because it "
            "was in the future or before 1995 (a feed with a broken clock or zone).",
            registry=r,
        )
        self._dates_guessed = Counter(
            "aggregator_dates_guessed",
            "New posts whose date is not the entry's own as written, by reason: "
            "missing/unparsable/future/too_old (the time first seen was used), "
            "zone_assumed (no zone in the text: the feed's timezone, else UTC), "
            "cst_china / cst_ambiguous (CST read as +08:00 / as US Central).",
            ["reason"],
            registry=r,
        )
        self._publisher_success = Gauge(
            "aggregator_publisher_last_success_timestamp_seconds",
            "Unix time of the publisher's last successful round (git, command, webhook:<name>).",
            ["publisher"],
            registry=r,
        )
        self._publisher_error = Gauge(
            "aggregator_publisher_last_error_timestamp_seconds",
            "Unix time of the publisher's last failed round.",
            ["publisher"],
            registry=r,
        )
        self._publisher_queue = Gauge(
            "aggregator_publisher_queue",
            "What waits: commits not pushed (git), posts not delivered (webhook), 0 (command).",
            ["publisher"],
            registry=r,
        )
        self._publisher_failing = Gauge(
            "aggregator_publisher_failing",
            "1 when the publisher's last round failed, else 0.",
            ["publisher"],
            registry=r,
        )
        self._publisher_runs = Counter(
            "aggregator_publisher_runs",
            "Publisher rounds by result (ok or error).",
            ["publisher", "result"],
            registry=r,
        )
        # Every fixed label's child, made now (so each series shows from the
        # start) and kept: ``labels()`` takes a lock and validates its
        # arguments on every call, and a daemon's round of 304s counts every
        # poll into several series.
        self._fetch_by_outcome = {o: self._fetches.labels(outcome=o) for o in _OUTCOMES}
        self._posts_by_kind = {k: self._posts.labels(kind=k) for k in _POST_KINDS}
        self._errors_by_class = {
            e: self._errors.labels(error_class=e) for e in (*ERROR_CLASSES, _OTHER)
        }
        for reason in DATE_REASONS:
            self._dates_guessed.labels(reason=reason)
        for state in FEED_STATES:
            self._by_state.labels(state=state)

    def observe(self, report: FeedReportLike) -> None:
        """Count one finished fetch.

        Post counts are taken from failed reports too: an ``export`` failure
        happens after the posts were stored, and they were.
        """
        if report.failed:
            error_class = _bounded_error_class(report.error_class)
            self._fetch_by_outcome[error_class].inc()
            self._errors_by_class[error_class].inc()
        else:
            outcome = "not_modified" if report.status == 304 else "ok"
            self._fetch_by_outcome[outcome].inc()
            if self._last_success is not None:
                self._last_success.labels(feed=report.url).set(self._clock())
        # Adding nothing is skipped (most polls store nothing): same values.
        for kind, count in (
            ("new", report.new),
            ("duplicate", report.duplicate),
            ("updated", report.updated),
        ):
            if count > 0:
                self._posts_by_kind[kind].inc(count)
        if report.wire_bytes > 0:
            self._bytes.inc(report.wire_bytes)
        if report.dates_replaced > 0:
            self._dates_replaced.inc(report.dates_replaced)
        for reason, count in report.date_notes.items():
            if reason in DATE_REASONS:  # a fixed label set, whatever the report says
                self._dates_guessed.labels(reason=reason).inc(max(count, 0))
        self._duration.observe(max(report.elapsed_ms, 0) / 1000)

    def set_feed_counts(self, *, due: int, leased: int, active: int) -> None:
        """Record the scheduler's view of the feed table (called periodically)."""
        self._due.set(due)
        self._leased.set(leased)
        self._active.set(active)

    def set_feed_states(
        self, by_state: Mapping[str, int], *, oldest_success_age: float | None
    ) -> None:
        """Record the feeds per state and the oldest success (housekeeping, fleet-wide).

        States outside :data:`FEED_STATES` are dropped, so the label set stays
        fixed; ``None`` (no active feed) shows as 0.
        """
        for state in FEED_STATES:
            self._by_state.labels(state=state).set(max(by_state.get(state, 0), 0))
        self._oldest_success_age.set(max(oldest_success_age or 0.0, 0.0))

    def forget_feed(self, url: str) -> None:
        """Drop a feed's per-feed series, e.g. once it is removed from ``feeds.yaml``.

        Without this a removed feed would keep exporting a last-success time
        that grows ever older and trips staleness alerts for nothing.
        """
        if self._last_success is None:
            return
        with contextlib.suppress(KeyError):  # a feed that never succeeded has no series
            self._last_success.remove(url)

    def set_publisher(
        self,
        name: str,
        *,
        last_success: float | None,
        last_error: float | None,
        queue: int,
        failing: bool,
    ) -> None:
        """Record a publisher's stored state (times as Unix seconds, None: never)."""
        if last_success is not None:
            self._publisher_success.labels(publisher=name).set(last_success)
        if last_error is not None:
            self._publisher_error.labels(publisher=name).set(last_error)
        self._publisher_queue.labels(publisher=name).set(max(queue, 0))
        self._publisher_failing.labels(publisher=name).set(1 if failing else 0)

    def publisher_ran(self, name: str, *, ok: bool) -> None:
        """Count one round of a publisher."""
        self._publisher_runs.labels(publisher=name, result="ok" if ok else "error").inc()

    def forget_publisher(self, name: str) -> None:
        """Drop a publisher's series once it is removed from the ``publish:`` section."""
        for gauge in (
            self._publisher_success,
            self._publisher_error,
            self._publisher_queue,
            self._publisher_failing,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(name)
        for result in ("ok", "error"):
            with contextlib.suppress(KeyError):
                self._publisher_runs.remove(name, result)

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, with its content type.

        The classic 0.0.4 type is announced (what prometheus-client's own
        handler sends by default): every scraper version reads it, and all
        our names are plain ASCII so nothing newer is needed.
        """
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


def _bounded_error_class(error_class: str | None) -> str:
    return error_class if error_class in ERROR_CLASSES else _OTHER
