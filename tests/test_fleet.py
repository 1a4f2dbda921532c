"""A fleet of daemons on one database (issue 17): the store's side.

Real databases (SQLite, and PostgreSQL when AGGREGATOR_TEST_POSTGRES_URL is
set), real rows; the processes-and-signals side is in test_fleet_procs.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.config.feeds import FeedSpec
from aggregator.store import Store
from aggregator.store.fleet import feed_summary

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def spec(i: int, **extra: object) -> FeedSpec:
    return FeedSpec(
        url=f"https://h{i % 3}.example/{i}.xml", outlet="O", section="S", group="G", **extra
    )  # type: ignore[arg-type]


def test_feed_summary_counts_states_and_the_oldest_success(store: Store) -> None:
    specs = [spec(i) for i in range(8)] + [spec(8, enabled=False)]
    ids = store.sync_feeds(specs, now=NOW - timedelta(hours=2), spread_new=False)
    url = [s.url for s in specs]
    ok = {"last_checked_at": NOW, "last_success_at": NOW - timedelta(minutes=5)}
    store.update_feed(ids[url[0]], **ok)
    store.update_feed(ids[url[1]], **ok)
    store.update_feed(ids[url[2]], last_checked_at=NOW, last_success_at=NOW - timedelta(hours=1))
    store.update_feed(ids[url[3]], last_checked_at=NOW, error_streak=2, error_class="transient")
    store.update_feed(ids[url[4]], last_checked_at=NOW, error_streak=1, error_class="throttled")
    store.update_feed(ids[url[5]], last_checked_at=NOW, disabled_reason="gone (410)")
    # 6 and 7 were never polled: "new", and the oldest (added two hours ago).
    summary = feed_summary(store, now=NOW)
    assert summary.by_state == {"ok": 3, "failing": 1, "throttled": 1, "disabled": 2, "new": 2}
    assert summary.active == 7
    assert summary.oldest_success_age == pytest.approx(7200)

    store.update_feed(ids[url[6]], **ok)
    store.update_feed(ids[url[7]], **ok)
    store.update_feed(ids[url[3]], last_success_at=NOW - timedelta(minutes=1))
    store.update_feed(ids[url[4]], last_success_at=NOW - timedelta(minutes=1))
    assert feed_summary(store, now=NOW).oldest_success_age == pytest.approx(3600)


def test_feed_summary_of_an_empty_table(store: Store) -> None:
    summary = feed_summary(store, now=NOW)
    assert (summary.due, summary.leased, summary.active) == (0, 0, 0)
    assert summary.by_state == {}
    assert summary.oldest_success_age is None
