"""RSSHub: detection and the warm-up rules (aggregator.policy.rsshub), as tables and through
the pipeline against a local server that behaves like an RSSHub instance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from feedbuild import rss_document
from localserver import LocalServer

from aggregator.config.feeds import FeedSpec
from aggregator.fetch.fetcher import Fetcher, FetchLimits
from aggregator.policy.rsshub import (
    COLD_TIMEOUT,
    WARMING,
    RsshubPolicy,
    Sightings,
    classify_failure,
    generator_is_rsshub,
    headers_say_rsshub,
    is_rsshub,
    origin,
)
from aggregator.service.pipeline import Pipeline
from aggregator.store import FeedUpdate, Store

RSSHUB_FEED = rss_document(
    "<item><title>t</title><link>https://news.example.com/1</link><guid>1</guid></item>",
    channel_extra="<generator>RSSHub</generator>",
)

# --- detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generator", "expected"),
    [
        ("RSSHub", True),
        ("rsshub", True),
        ("  RSSHub v1.0.0 https://github.com/DIYgod/RSSHub ", True),
        ("WordPress 6.4", False),
        ("", False),
        (None, False),
    ],
)
def test_generator_names_rsshub(generator: str | None, expected: bool) -> None:
    assert generator_is_rsshub(generator) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RSSHub-Route": "/guancha/headline"}, True),
        ({"Server": "RSSHub"}, True),
        ({"X-Powered-By": "RSSHub"}, True),
        ({"Server": "nginx/1.25"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_headers_name_rsshub(headers: dict[str, str] | None, expected: bool) -> None:
    assert headers_say_rsshub(httpx.Headers(headers) if headers is not None else None) is expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"route": "/guancha/headline"}, True),  # configured with rsshub: -> by definition
        ({"generator": "RSSHub"}, True),
        ({"headers": httpx.Headers({"x-rsshub-route": "/a"})}, True),
        ({"seen_on_origin": True}, True),
        ({"generator": "Hexo", "headers": httpx.Headers({"server": "nginx"})}, False),
        ({}, False),
    ],
)
def test_any_one_sign_makes_a_source_rsshub(kwargs: dict[str, Any], expected: bool) -> None:
    assert is_rsshub(**kwargs) is expected


def test_sightings_are_per_origin_not_per_host() -> None:
    seen = Sightings()
    seen.note("http://127.0.0.1:1200/guancha/headline")
    assert "http://127.0.0.1:1200/zaobao/realtime" in seen  # another route, same instance
    assert "HTTP://127.0.0.1:1200/x" in seen
    assert "http://127.0.0.1:8080/feed" not in seen  # same host, other server
    assert "http://localhost:1200/x" not in seen
    assert origin("https://RSSHub.app/a") == "https://rsshub.app:443"


# --- the rules, as a table --------------------------------------------------------

COLD: dict[str, Any] = {"timed_out": True, "ever_succeeded": False}
BASE: dict[str, Any] = {
    "rsshub": True,
    "status": None,
    "max_age": None,
    "retry_after": None,
    "timed_out": False,
    "ever_succeeded": True,
    "error_streak": 0,
    "previous_outcome": None,
}


@pytest.mark.parametrize(
    ("case", "outcome", "delay"),
    [
        ({"status": 503, "max_age": 60}, WARMING, 60),
        ({"status": 503, "max_age": 300}, WARMING, 300),  # 5 min is still warming up
        ({"status": 503, "max_age": 60, "error_streak": 4}, WARMING, 60),
        ({"status": 503, "max_age": 60, "retry_after": 120}, WARMING, 120),
        ({"status": 503, "max_age": 301}, None, None),  # longer: an outage, not a warm-up
        ({"status": 503, "max_age": 0}, None, None),  # "now" would hammer the route
        ({"status": 503}, None, None),
        ({"status": 500, "max_age": 60}, None, None),
        ({"status": 503, "max_age": 60, "rsshub": False}, None, None),  # RSSHub only
        ({"timed_out": True, "ever_succeeded": False}, COLD_TIMEOUT, 30),
        (
            {"timed_out": True, "ever_succeeded": False, "previous_outcome": WARMING},
            COLD_TIMEOUT,
            30,
        ),
        # the one retry is used up: normal back-off from here
        (
            {"timed_out": True, "ever_succeeded": False, "previous_outcome": COLD_TIMEOUT},
            None,
            None,
        ),
        ({"timed_out": True, "ever_succeeded": False, "error_streak": 1}, None, None),
        ({"timed_out": True, "ever_succeeded": True}, None, None),  # warm route: a real timeout
        ({"timed_out": True, "ever_succeeded": False, "rsshub": False}, None, None),
        ({"status": None, "ever_succeeded": False}, None, None),  # refused: not a slow warm-up
    ],
)
def test_classify_failure(case: dict[str, Any], outcome: str | None, delay: float | None) -> None:
    deferral = classify_failure(**{**BASE, **case})
    if outcome is None:
        assert deferral is None
    else:
        assert deferral is not None
        assert (deferral.outcome, deferral.delay) == (outcome, delay)
        assert "not counted as an error" in deferral.reason


def test_policy_sets_both_waits() -> None:
    policy = RsshubPolicy(warming_max_age=10, cold_retry_delay=2)
    warm = classify_failure(**{**BASE, "status": 503, "max_age": 11}, policy=policy)
    cold = classify_failure(**{**BASE, "timed_out": True, "ever_succeeded": False}, policy=policy)
    assert warm is None
    assert cold is not None and cold.delay == 2
    with pytest.raises(ValueError, match="cold_retry_delay must be positive"):
        RsshubPolicy(cold_retry_delay=0)


# --- through the pipeline, against a local server ----------------------------------


@pytest.fixture
def sqlite_store(tmp_path: Any) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        yield store
    finally:
        store.close()


def _spec(url: str, route: str | None = None) -> FeedSpec:
    return FeedSpec(
        url=url,
        outlet="观察者网",
        section="头条",
        group="新媒体",
        interval=timedelta(minutes=15),
        rsshub_route=route,
    )


async def _poll(store: Store, spec: FeedSpec, *, fetcher: Fetcher, **kw: Any) -> Any:
    ids = store.sync_feeds([spec], now=datetime.now(UTC))
    report = await Pipeline(store, fetcher, **kw).run_feed(spec, ids[spec.url])
    return report, store.feed_state(ids[spec.url])


def _in(moment: datetime | None) -> float:
    assert moment is not None
    if moment.tzinfo is None:  # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime.now(UTC)).total_seconds()


async def test_warming_503_is_retried_after_max_age_and_not_counted(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route(
        "/guancha/headline", status=503, body="warming", headers={"Cache-Control": "max-age=90"}
    )
    spec = _spec(local_server.url("/guancha/headline"), route="/guancha/headline")
    async with Fetcher() as fetcher:
        report, state = await _poll(sqlite_store, spec, fetcher=fetcher)
    assert (report.status, report.error_class) == (503, WARMING)
    assert state.error_streak == 0 and state.first_error_at is None
    assert state.error_class == WARMING and "warming up" in (state.last_error or "")
    assert 80 < _in(state.next_check_at) <= 90  # now + max-age, not the 15 min interval


async def test_warming_keeps_an_earlier_error_streak(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route("/r", status=503, headers={"Cache-Control": "public, max-age=60"})
    spec = _spec(local_server.url("/r"), route="/r")
    feed_id = sqlite_store.sync_feeds([spec], now=datetime.now(UTC))[spec.url]
    first = datetime(2024, 1, 1, tzinfo=UTC)
    sqlite_store.update_feed(
        feed_id, FeedUpdate(error_streak=3, first_error_at=first, error_class="transient")
    )
    async with Fetcher() as fetcher:
        await Pipeline(sqlite_store, fetcher).run_feed(spec, feed_id)
    state = sqlite_store.feed_state(feed_id)
    assert state.error_streak == 3
    assert state.first_error_at is not None and state.first_error_at.replace(tzinfo=UTC) == first


async def test_503_with_max_age_from_a_plain_server_is_an_ordinary_error(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route("/feed", status=503, headers={"Cache-Control": "max-age=60"})
    async with Fetcher() as fetcher:
        report, state = await _poll(sqlite_store, _spec(local_server.url("/feed")), fetcher=fetcher)
    assert (report.error_class, state.error_streak) == ("transient", 1)


async def test_503_naming_rsshub_in_its_headers_is_warming(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route(
        "/feed", status=503, headers={"Cache-Control": "max-age=60", "X-RSSHub-Route": "/x"}
    )
    async with Fetcher() as fetcher:
        report, state = await _poll(sqlite_store, _spec(local_server.url("/feed")), fetcher=fetcher)
    assert (report.error_class, state.error_streak) == (WARMING, 0)


async def test_a_url_feed_on_a_known_rsshub_instance_is_rsshub(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    """A failing route's 503 has no <generator>; a healthy sibling route told us."""
    local_server.route("/good", body=RSSHUB_FEED, headers={"Content-Type": "application/xml"})
    local_server.route("/bad", status=503, headers={"Cache-Control": "max-age=60"})
    good, bad = _spec(local_server.url("/good")), _spec(local_server.url("/bad"))
    ids = sqlite_store.sync_feeds([good, bad], now=datetime.now(UTC))
    async with Fetcher() as fetcher:
        pipeline = Pipeline(sqlite_store, fetcher)
        assert not (await pipeline.run_feed(good, ids[good.url])).failed
        report = await pipeline.run_feed(bad, ids[bad.url])
    assert report.error_class == WARMING


async def test_cold_route_timeout_is_retried_once_after_the_delay(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route("/slow/route", body=RSSHUB_FEED, delay=2)
    spec = _spec(local_server.url("/slow/route"), route="/slow/route")
    feed_id = sqlite_store.sync_feeds([spec], now=datetime.now(UTC))[spec.url]
    limits = FetchLimits(read_timeout=0.3)
    async with Fetcher(limits) as fetcher:
        pipeline = Pipeline(sqlite_store, fetcher, rsshub_policy=RsshubPolicy(cold_retry_delay=45))
        first = await pipeline.run_feed(spec, feed_id)
        after_first = sqlite_store.feed_state(feed_id)
        second = await pipeline.run_feed(spec, feed_id)  # the one retry, timing out again
        after_second = sqlite_store.feed_state(feed_id)
    assert first.error_class == COLD_TIMEOUT
    assert after_first.error_streak == 0
    assert 40 < _in(after_first.next_check_at) <= 45
    # The retry used up, the route is treated like any failing feed ...
    assert second.error_class == "transient"
    assert after_second.error_streak == 1
    # ... first with the transient policy's quick retry: 30 s plus up to 50 %.
    assert 25 < _in(after_second.next_check_at) <= 46


async def test_timeout_of_a_route_that_worked_before_is_a_normal_error(
    sqlite_store: Store, local_server: LocalServer
) -> None:
    local_server.route("/r", body=RSSHUB_FEED, delay=2)
    spec = _spec(local_server.url("/r"), route="/r")
    feed_id = sqlite_store.sync_feeds([spec], now=datetime.now(UTC))[spec.url]
    sqlite_store.update_feed(
        feed_id, FeedUpdate(last_success_at=datetime.now(UTC) - timedelta(hours=1))
    )
    async with Fetcher(FetchLimits(read_timeout=0.3)) as fetcher:
        report = await Pipeline(sqlite_store, fetcher).run_feed(spec, feed_id)
    assert (report.error_class, sqlite_store.feed_state(feed_id).error_streak) == ("transient", 1)
