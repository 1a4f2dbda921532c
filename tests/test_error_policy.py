"""Error classes and what each does to a feed: the policy as data, then for real.

The one thing we must not do is what Miniflux does -- stop polling a feed
after a few errors of any kind, 429 included -- so a feed that is merely
busy or behind a bot check is never disabled, and a feed that is really gone
is disabled only after ``disable_after`` of continuous permanent failure.
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from localserver import LocalServer
from rich.console import Console

from aggregator.config.feeds import DEFAULT_DISABLE_AFTER, ConfigError, FeedSpec, loads_config
from aggregator.fetch.fetcher import Fetcher, HTTPStatusError
from aggregator.policy.schedule import (
    CHALLENGE_WAIT,
    QUICK_RETRIES,
    ErrorClass,
    ErrorState,
    after_failure,
    classify_status,
    is_challenge,
)
from aggregator.service.pipeline import FeedReport, Pipeline
from aggregator.service.runner import status_table
from aggregator.store import FeedUpdate, Store

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
M15 = timedelta(minutes=15)
WEEK = timedelta(days=7)


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


NJ = NoJitter()
T, TH, P, G = ErrorClass.TRANSIENT, ErrorClass.THROTTLED, ErrorClass.PERMANENT, ErrorClass.GONE

CHALLENGE_HTML = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b'<script src="/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1"></script>'
)


# --------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (403, {"cf-mitigated": "challenge"}, b"", TH),
        (503, {"CF-Mitigated": "challenge", "Server": "cloudflare"}, b"", TH),
        (403, {"server": "cloudflare"}, CHALLENGE_HTML, TH),
        (503, {"Server": "cloudflare"}, CHALLENGE_HTML, TH),
        (403, {"server": "cloudflare"}, b"<html>Attention Required! | Cloudflare", TH),
        (403, {"server": "cloudflare"}, b"<html>Forbidden</html>", P),  # a real 403
        (403, {"server": "nginx"}, CHALLENGE_HTML, P),  # not Cloudflare's page
        (503, {"server": "cloudflare"}, b"<html>origin down</html>", T),
        (404, {"cf-mitigated": "challenge"}, CHALLENGE_HTML, P),  # never served as 404
        (404, {}, b"", P),
        (410, {}, b"", G),
        (429, {}, b"", TH),
        (None, {}, b"", T),
    ],
)
def test_classify_with_headers_and_body(
    status: int | None, headers: dict[str, str], body: bytes, expected: ErrorClass
) -> None:
    assert classify_status(status, headers=headers, body_head=body) is expected


def test_is_challenge_needs_only_the_start_of_the_page() -> None:
    assert is_challenge(403, {"server": "cloudflare"}, CHALLENGE_HTML[:120])


# --------------------------------------------------------------------------
# after_failure, as a table


def state(
    streak: int = 0, since: timedelta | None = None, last: ErrorClass | None = None
) -> ErrorState:
    """The error state of a feed that has failed `streak` times, the run starting `since` ago."""
    return ErrorState(streak, NOW - since if since is not None else None, last)


@pytest.mark.parametrize(
    ("before", "kind", "streak", "first_error_ago", "disabled"),
    [
        pytest.param(state(), T, 1, timedelta(0), False, id="first timeout starts a run"),
        pytest.param(state(5, timedelta(days=30), T), T, 6, timedelta(days=30), False,
                     id="a month of timeouts never disables"),
        pytest.param(state(), TH, 0, None, False, id="429 starts nothing"),
        pytest.param(state(19, timedelta(days=30), TH), TH, 19, timedelta(days=30), False,
                     id="429 leaves the state alone"),
        pytest.param(state(), P, 1, timedelta(0), False, id="first 404"),
        pytest.param(state(3, timedelta(days=6), P), P, 4, timedelta(days=6), False,
                     id="404 for six days: still polled"),
        pytest.param(state(9, WEEK, P), P, 10, WEEK, True, id="404 for a week: disabled"),
        pytest.param(state(9, WEEK, TH), P, 10, WEEK, True,
                     id="a 429 in between does not restart the clock"),
        pytest.param(state(9, timedelta(days=20), T), P, 10, timedelta(0), False,
                     id="timeouts then a 404: the 404 clock starts now"),
        pytest.param(state(9, timedelta(days=20), P), T, 10, timedelta(0), False,
                     id="a timeout breaks a 404 run"),
        pytest.param(state(), G, 1, timedelta(0), True, id="410 disables at once"),
    ],
)  # fmt: skip
def test_after_failure(
    before: ErrorState,
    kind: ErrorClass,
    streak: int,
    first_error_ago: timedelta | None,
    disabled: bool,
) -> None:
    plan = after_failure(NOW, M15, before, kind, disable_after=WEEK, rng=NJ)
    assert plan.error_class is kind
    assert plan.streak == streak
    expected_first = NOW - first_error_ago if first_error_ago is not None else None
    assert plan.first_error_at == expected_first
    assert (plan.disabled_reason is not None) is disabled
    assert plan.next_check_at > NOW


def test_disable_after_is_per_feed() -> None:
    two_days = state(3, timedelta(days=2), P)
    assert after_failure(NOW, M15, two_days, P, disable_after=WEEK).disabled_reason is None
    reason = after_failure(NOW, M15, two_days, P, disable_after=timedelta(days=1)).disabled_reason
    assert reason is not None
    assert "failing permanently since 2024-04-29 12:00 UTC" in reason
    assert "(2 days, disable_after is 1 day)" in reason


def test_transient_retries_are_quick_then_exponential_with_jitter() -> None:
    rng = random.Random(3)
    first = [after_failure(NOW, M15, state(), T, disable_after=WEEK, rng=rng) for _ in range(50)]
    delays = {p.next_check_at - NOW for p in first}
    assert all(QUICK_RETRIES[0] <= d <= QUICK_RETRIES[0] * 1.5 for d in delays)
    assert len(delays) > 40  # spread, so feeds that failed together come back apart
    second = after_failure(NOW, M15, state(1, timedelta(0), T), T, disable_after=WEEK, rng=NJ)
    assert second.next_check_at - NOW == QUICK_RETRIES[1]
    fourth = after_failure(NOW, M15, state(3, timedelta(0), T), T, disable_after=WEEK, rng=NJ)
    assert fourth.next_check_at - NOW == 2 * M15


@pytest.mark.parametrize(
    ("retry_after", "challenge", "wait"),
    [
        (3600.0, False, timedelta(hours=1)),
        (None, False, 2 * M15),
        (None, True, CHALLENGE_WAIT),
        (600.0, True, M15),  # Retry-After wins, but never sooner than the interval
    ],
)
def test_throttled_waits_as_asked(
    retry_after: float | None, challenge: bool, wait: timedelta
) -> None:
    plan = after_failure(
        NOW,
        M15,
        state(),
        TH,
        disable_after=WEEK,
        retry_after=retry_after,
        challenge=challenge,
        rng=NJ,
    )
    assert plan.next_check_at - NOW == wait


# --------------------------------------------------------------------------
# feeds.yaml


def test_disable_after_is_read_and_defaulted() -> None:
    config = loads_config(
        "defaults:\n  group: g\n  disable_after: 3d\nfeeds:\n"
        "  - url: https://a.example/\n    outlet: o\n    section: s\n"
        "  - url: https://b.example/\n    outlet: o\n    section: s\n    disable_after: 12h\n"
    )
    assert [f.disable_after for f in config.feeds] == [timedelta(days=3), timedelta(hours=12)]
    plain = loads_config("feeds:\n  - url: https://a.example/\n    outlet: o\n    section: s\n"
                         "    group: g\n")  # fmt: skip
    assert plain.feeds[0].disable_after == DEFAULT_DISABLE_AFTER == WEEK


def test_a_bad_disable_after_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"feeds.yaml:6: feeds\[0\].disable_after: bad duration"):
        loads_config(
            "feeds:\n  - url: https://a.example/\n    outlet: o\n    section: s\n"
            "    group: g\n    disable_after: soon\n"
        )


# --------------------------------------------------------------------------
# The fetcher hands over what classification needs


async def test_an_error_carries_headers_and_the_start_of_its_body(
    local_server: LocalServer,
) -> None:
    page = CHALLENGE_HTML + b"x" * 50_000
    local_server.route(
        "/cf",
        status=403,
        body=gzip.compress(page),
        headers={"Server": "cloudflare", "Content-Encoding": "gzip", "Content-Type": "text/html"},
    )
    async with Fetcher() as fetcher:
        with pytest.raises(HTTPStatusError) as info:
            await fetcher.fetch(local_server.url("/cf"))
    error = info.value
    assert error.status == 403
    assert error.headers["server"] == "cloudflare"
    assert error.body_head == page[:2048]
    assert "Just a moment" not in str(error)  # bodies are evidence, never quoted


# --------------------------------------------------------------------------
# End to end: the pipeline against a real server, time driven by its clock


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def poll(store: Store, spec: FeedSpec, clock: Callable[[], datetime]) -> FeedReport:
    async def go() -> FeedReport:
        (feed_id,) = store.sync_feeds([spec], now=clock()).values()
        async with Fetcher() as fetcher:
            return await Pipeline(store, fetcher, clock=clock).run_feed(spec, feed_id)

    return asyncio.run(go())


def spec_for(url: str, **extra: object) -> FeedSpec:
    return FeedSpec(url=url, outlet="观察者网", section="头条", group="新媒体", **extra)  # type: ignore[arg-type]


def test_a_feed_answering_429_twenty_times_is_never_disabled(
    store: Store, local_server: LocalServer
) -> None:
    local_server.route("/busy", status=429, body=b"slow down", headers={"Retry-After": "120"})
    spec, clock = spec_for(local_server.url("/busy")), Clock()
    for _ in range(20):
        report = poll(store, spec, clock)
        assert report.error_class == "throttled"
        clock.now += timedelta(days=1)  # twenty days of it, far past disable_after
    (feed,) = store.feeds()
    assert feed.active and feed.disabled_reason is None
    assert feed.error_streak == 0
    assert len(local_server.requests_to("/busy")) == 20


def test_a_cloudflare_challenge_is_throttled_not_a_dead_feed(
    store: Store, local_server: LocalServer
) -> None:
    local_server.route(
        "/cf", status=403, body=CHALLENGE_HTML, headers={"Server": "cloudflare"}
    )  # fmt: skip
    spec, clock = spec_for(local_server.url("/cf"), disable_after=timedelta(days=1)), Clock()
    for _ in range(5):
        report = poll(store, spec, clock)
        clock.now += timedelta(days=2)
    assert report.error_class == "throttled"
    assert report.error is not None and "Cloudflare challenge" in report.error
    (feed,) = store.feeds()
    assert feed.active and feed.error_streak == 0
    assert feed.next_check_at is not None
    assert feed.next_check_at - (clock.now - timedelta(days=2)) >= CHALLENGE_WAIT


def test_a_404_disables_the_feed_only_once_its_first_error_is_older_than_disable_after(
    store: Store, local_server: LocalServer
) -> None:
    spec, clock = spec_for(local_server.url("/moved"), disable_after=timedelta(days=3)), Clock()
    polls_before_disabling = 0
    while clock.now - NOW < timedelta(days=3):
        report = poll(store, spec, clock)
        assert report.error_class == "permanent"
        (feed,) = store.feeds()
        assert feed.active, f"disabled after only {clock.now - NOW}"
        polls_before_disabling += 1
        clock.now += timedelta(hours=12)
    assert polls_before_disabling == 6

    poll(store, spec, clock)  # exactly three days after the first 404
    (feed,) = store.feeds()
    assert not feed.active
    assert feed.disabled_reason is not None
    assert "failing permanently since 2024-05-01 12:00 UTC" in feed.disabled_reason
    assert feed.error_class == "permanent" and feed.last_status == 404

    # `aggregator status` shows why.
    console = Console(width=400, record=True)
    console.print(status_table([feed], now=clock.now))
    assert "disabled: failing permanently since 2024-05-01 12:00 UTC" in console.export_text()


def test_the_disable_clock_can_be_driven_through_first_error_at(
    store: Store, local_server: LocalServer
) -> None:
    spec, clock = spec_for(local_server.url("/gone-quietly")), Clock()
    poll(store, spec, clock)
    (feed,) = store.feeds()
    assert feed.active
    store.update_feed(feed.id, FeedUpdate(first_error_at=NOW - DEFAULT_DISABLE_AFTER))
    poll(store, spec, clock)
    (feed,) = store.feeds()
    assert not feed.active


def test_a_success_re_enables_a_disabled_feed_and_clears_its_errors(
    store: Store, local_server: LocalServer
) -> None:
    local_server.route("/back", status=410)
    spec, clock = spec_for(local_server.url("/back")), Clock()
    poll(store, spec, clock)
    (feed,) = store.feeds()
    assert feed.disabled_reason is not None and feed.disabled_reason.startswith("410 Gone")
    local_server.route(
        "/back",
        body=b'<rss version="2.0"><channel><title>t</title></channel></rss>',
        headers={"Content-Type": "application/rss+xml"},
    )
    assert not poll(store, spec, clock).failed
    (feed,) = store.feeds()
    assert feed.active and feed.error_streak == 0 and feed.first_error_at is None
