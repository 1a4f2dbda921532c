"""The end of a poll: its feed row and its history line, written together.

``Store.finish_polls`` is what every daemon poll ends with (a 304, a
failure, a deferral: the feed row's change; after an ingest, only the
history line).  Real databases (SQLite, and PostgreSQL when
AGGREGATOR_TEST_POSTGRES_URL is set); the pipeline test polls a real local
server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from feedbuild import EtagFeed, rss_document, seed_item, seed_posts
from localserver import LocalServer
from sqlalchemy import func, select

from aggregator.config.feeds import FeedSpec
from aggregator.fetch.fetcher import Fetcher, FetchLimits
from aggregator.policy.politeness import HostPolicy
from aggregator.service.pipeline import Pipeline
from aggregator.store import FeedUpdate, LeaseLost, Store
from aggregator.store import models as m
from aggregator.store.feeds import PollOutcome
from aggregator.store.polls import PollRecord

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)
LOCAL = HostPolicy(max_concurrency=8)


def _spec(i: int, url: str | None = None) -> FeedSpec:
    return FeedSpec(url=url or f"https://h{i}.example/{i}.xml", outlet="O", section="S", group="G")


def _record(feed_id: int, *, status: int = 304, error_class: str | None = None) -> PollRecord:
    return PollRecord(
        feed_id=feed_id,
        started_at=NOW,
        status=status,
        duration_ms=5,
        bytes=0,
        new=0,
        updated=0,
        error_class=error_class,
        message=None,
        schedule="interval 900 s",
        next_check_at=NOW + timedelta(minutes=15),
    )


def _polls(store: Store) -> dict[int, int]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(m.Poll.feed_id, func.count()).group_by(m.Poll.feed_id)
        ).all()
    return {feed_id: int(n) for feed_id, n in rows}


def _hour_counts(store: Store) -> list[tuple[int, int, int]]:
    with store.engine.connect() as connection:
        return [
            (int(p), int(f), int(n))
            for p, f, n in connection.execute(
                select(m.PollHour.polls, m.PollHour.failed, m.PollHour.new)
            )
        ]


def test_a_batch_writes_rows_and_history_and_a_lost_lease_writes_neither(store: Store) -> None:
    ids = store.sync_feeds([_spec(i) for i in range(3)], now=NOW, spread_new=False)
    first, lost, third = ids.values()
    claims = {
        c.feed_id: c
        for c in store.claim_fair(
            now=NOW, limit=8, lease=LEASE, owner="me:1", policy_for=lambda h: LOCAL
        )
    }
    assert set(claims) == {first, lost, third}
    # Another daemon took one feed over (its lease was handed out meanwhile).
    store.release([lost], owner="me:1")

    def done(feed_id: int, status: int, etag: str | None = None) -> PollOutcome:
        update = FeedUpdate(
            etag=etag,
            last_status=status,
            error_streak=0 if status == 304 else 1,
            lease_until=None,
            lease_owner=None,
            fence=claims[feed_id].token,
        )
        return PollOutcome(feed_id, update, _record(feed_id, status=status))

    results = store.finish_polls(
        [done(first, 304, '"a"'), done(lost, 304, '"b"'), done(third, 500)]
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LeaseLost)
    states = store.feed_states([first, lost, third])
    assert (states[first].etag, states[first].last_status) == ('"a"', 304)
    assert states[first].lease_until is None
    assert (states[lost].etag, states[lost].last_status) == (None, None)
    assert (states[third].last_status, states[third].error_streak) == (500, 1)
    assert _polls(store) == {first: 1, third: 1}
    assert _hour_counts(store) == [(2, 0, 0)]  # the lost poll is not counted either


def test_a_refused_poll_fails_alone(store: Store) -> None:
    ids = list(store.sync_feeds([_spec(i) for i in range(3)], now=NOW, spread_new=False).values())
    missing = max(ids) + 100  # no such feed: its history line breaks the foreign key
    results = store.finish_polls(
        [
            PollOutcome(ids[0], FeedUpdate(last_status=304), _record(ids[0])),
            PollOutcome(missing, None, _record(missing)),
            PollOutcome(ids[2], None, _record(ids[2], status=500, error_class="transient")),
        ]
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Exception)
    assert store.feed_state(ids[0]).last_status == 304
    assert _polls(store) == {ids[0]: 1, ids[2]: 1}
    assert _hour_counts(store) == [(2, 1, 0)]


def test_a_poll_whose_lease_was_taken_over_stores_nothing(
    store: Store, local_server: LocalServer
) -> None:
    """End to end: a 304 arriving after the lease changed hands is dropped whole."""
    feed = EtagFeed(rss_document(seed_item(seed_posts()[0])))
    local_server.route("/feed.xml", feed)
    spec = _spec(0, local_server.url("/feed.xml"))
    (feed_id,) = store.sync_feeds([spec], now=NOW, spread_new=False).values()
    store.update_feed(feed_id, FeedUpdate(etag=feed.etag))

    async def poll(fence: int) -> None:
        async with Fetcher(FetchLimits()) as fetcher:
            await Pipeline(store, fetcher).run_feed(spec, feed_id, fence=fence)

    (claim,) = store.claim_fair(
        now=NOW, limit=1, lease=LEASE, owner="me:1", policy_for=lambda h: LOCAL
    )
    store.release([feed_id], owner="me:1")  # handed to another daemon meanwhile
    with pytest.raises(LeaseLost):
        asyncio.run(poll(claim.token))
    assert store.feed_state(feed_id).last_status is None
    assert _polls(store) == {}

    later = NOW + timedelta(seconds=1)
    (claim,) = store.claim_fair(
        now=later, limit=1, lease=LEASE, owner="me:1", policy_for=lambda h: LOCAL
    )
    asyncio.run(poll(claim.token))
    state = store.feed_state(feed_id)
    assert (state.last_status, state.lease_until) == (304, None)
    assert _polls(store) == {feed_id: 1}
