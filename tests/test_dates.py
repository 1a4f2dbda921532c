"""Post dates: the rules as data, the feeds.yaml keys, and the whole pipeline.

In Hexo the date decides the permalink and the archive page, so each rule is
checked end to end too: a real feed server, ``fetch_once``, the stored post.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from feedbuild import rss_document
from localserver import LocalServer

from aggregator.dates import EARLIEST, FUTURE_TOLERANCE, effective_date, has_offset
from aggregator.feeds import ConfigError, loads_config
from aggregator.metrics import Metrics
from aggregator.parse import parse_feed
from aggregator.runner import fetch_once
from aggregator.store import Store

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SEEN = NOW  # first seen = this poll, as for every new item
NO_SHIFT = timedelta(0)


# --------------------------------------------------------------------------
# Does the raw text carry an offset?


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tue, 01 Mar 2022 13:31:34 GMT", True),
        ("Tue, 01 Mar 2022 13:31:34 +0800", True),
        ("Tue, 01 Mar 2022 13:31:34 -0500 (EST)", True),
        ("Tue, 01 Mar 2022 13:31 UT", True),
        ("Tue, 01 Mar 2022 13:31:34 CST", True),  # feedparser reads it as US Central
        ("2022-03-01T13:31:34Z", True),
        ("2022-03-01T13:31:34+08:00", True),
        ("2022-03-01T13:31:34.123+0800", True),
        ("2022-03-01 13:31:34 +08", True),
        ("2022-03-01 13:31:34", False),
        ("2022-03-01T13:31:34", False),
        ("2022-03-01T13:31:34.500", False),
        ("2022-03-01 13:31", False),
        ("2022-03-01", False),  # a bare date: midnight, local time
        ("Sun Jan  4 16:29:06 2004", False),  # asctime has no zone
        ("Tue, 01 Mar 2022 13:31:34 CCT", False),  # unknown name: feedparser assumed UTC
        ("Tue, 01 Mar 2022 1:31:34 PM", False),
        ("", False),
        (None, False),
    ],
)
def test_has_offset(text: str | None, expected: bool) -> None:
    assert has_offset(text) is expected


# --------------------------------------------------------------------------
# effective_date, as a table

WALL = datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)  # "13:31:34", read as UTC


@pytest.mark.parametrize(
    ("entry_date", "naive", "timezone", "offset", "expected", "replaced"),
    [
        pytest.param(WALL, False, None, NO_SHIFT, WALL, False, id="correct date kept"),
        pytest.param(
            WALL, True, SHANGHAI, NO_SHIFT, WALL - timedelta(hours=8), False, id="naive + zone"
        ),
        pytest.param(WALL, False, SHANGHAI, NO_SHIFT, WALL, False, id="zone ignores offset dates"),
        pytest.param(WALL, True, None, NO_SHIFT, WALL, False, id="naive, no zone: UTC as before"),
        pytest.param(
            WALL, False, None, timedelta(hours=-8), WALL - timedelta(hours=8), False, id="offset"
        ),
        pytest.param(
            WALL,
            True,
            SHANGHAI,
            timedelta(minutes=5),
            WALL - timedelta(hours=8) + timedelta(minutes=5),
            False,
            id="zone then offset",
        ),
        pytest.param(None, False, SHANGHAI, timedelta(hours=-8), SEEN, False, id="no date"),
        pytest.param(
            NOW + FUTURE_TOLERANCE,
            False,
            None,
            NO_SHIFT,
            NOW + FUTURE_TOLERANCE,
            False,
            id="10 minutes ahead is clock skew",
        ),
        pytest.param(
            NOW + FUTURE_TOLERANCE + timedelta(seconds=1),
            False,
            None,
            NO_SHIFT,
            SEEN,
            True,
            id="just past the tolerance",
        ),
        pytest.param(
            datetime(2099, 1, 1, tzinfo=UTC), False, None, NO_SHIFT, SEEN, True, id="pinned 2099"
        ),
        pytest.param(
            datetime(1970, 1, 1, tzinfo=UTC), False, None, NO_SHIFT, SEEN, True, id="epoch zero"
        ),
        pytest.param(EARLIEST, False, None, NO_SHIFT, EARLIEST, False, id="1995 is fine"),
        pytest.param(
            NOW + timedelta(hours=8),
            False,
            None,
            timedelta(hours=-8),
            NOW,
            False,
            id="offset rescues a 'future' mislabelled date",
        ),
        pytest.param(
            datetime(1, 1, 1, tzinfo=UTC),
            False,
            None,
            timedelta(hours=-8),
            SEEN,
            True,
            id="shifted off the calendar",
        ),
    ],
)
def test_effective_date(
    entry_date: datetime | None,
    naive: bool,
    timezone: ZoneInfo | None,
    offset: timedelta,
    expected: datetime,
    replaced: bool,
) -> None:
    date, reason = effective_date(
        entry_date, naive=naive, timezone=timezone, offset=offset, first_seen=SEEN, now=NOW
    )
    assert date == expected
    assert date.utcoffset() == timedelta(0)
    assert (reason is not None) is replaced


def test_the_reason_names_the_bad_date() -> None:
    bad = datetime(2099, 1, 1, tzinfo=UTC)
    _, reason = effective_date(
        bad, naive=False, timezone=None, offset=NO_SHIFT, first_seen=SEEN, now=NOW
    )
    assert reason is not None and "2099-01-01T00:00:00+00:00" in reason and "future" in reason
    _, reason = effective_date(
        datetime(1970, 1, 1, tzinfo=UTC),
        naive=False,
        timezone=None,
        offset=NO_SHIFT,
        first_seen=SEEN,
        now=NOW,
    )
    assert reason == "1970-01-01T00:00:00+00:00 is before 1995"


def test_a_zone_with_daylight_saving_uses_the_offset_of_that_day() -> None:
    paris = ZoneInfo("Europe/Paris")
    winter = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
    summer = datetime(2024, 4, 10, 12, 0, tzinfo=UTC)
    kw = {"naive": True, "timezone": paris, "offset": NO_SHIFT, "first_seen": SEEN, "now": NOW}
    assert effective_date(winter, **kw)[0] == winter - timedelta(hours=1)  # type: ignore[arg-type]
    assert effective_date(summer, **kw)[0] == summer - timedelta(hours=2)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# The parser says which dates were naive


def test_parse_marks_naive_dates_in_rss_and_json_feed() -> None:
    rss = rss_document(
        "<item><guid>a</guid><title>a</title><pubDate>2022-03-01 13:31:34</pubDate></item>"
        "<item><guid>b</guid><title>b</title>"
        "<pubDate>Tue, 01 Mar 2022 13:31:34 +0800</pubDate></item>"
    ).encode()
    naive, aware = parse_feed(rss, url="https://x.example/").entries
    assert (naive.published_naive, aware.published_naive) == (True, False)
    assert naive.published == datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)

    json_feed = (
        b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": ['
        b'{"id": "1", "content_text": "x", "date_published": "2022-03-01T13:31:34",'
        b' "date_modified": "2022-03-01T13:31:34Z"}]}'
    )
    (item,) = parse_feed(json_feed, url="https://x.example/").entries
    assert (item.published_naive, item.updated_naive) == (True, False)


# --------------------------------------------------------------------------
# feeds.yaml keys

HEAD = (
    "defaults:\n  group: g\nfeeds:\n"
    "  - url: https://a.example/feed\n    outlet: o\n    section: s\n"
)


def test_date_keys_are_read_and_defaulted() -> None:
    config = loads_config(
        "defaults:\n  group: g\n  timezone: Asia/Shanghai\n  date_offset: -8h\nfeeds:\n"
        "  - url: https://a.example/\n    outlet: o\n    section: s\n"
        "  - url: https://b.example/\n    outlet: o\n    section: s\n"
        "    timezone: Europe/Paris\n    date_offset: +1h30m\n"
        "  - url: https://c.example/\n    outlet: o\n    section: s\n    date_offset: 0\n"
    )
    a, b, c = config.feeds
    assert (a.timezone, a.date_offset) == ("Asia/Shanghai", timedelta(hours=-8))
    assert (b.timezone, b.date_offset) == ("Europe/Paris", timedelta(hours=1, minutes=30))
    assert c.date_offset == timedelta(0)


def test_plain_feeds_keep_their_dates_as_read() -> None:
    (feed,) = loads_config(HEAD).feeds
    assert (feed.timezone, feed.date_offset) == (None, timedelta(0))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "timezone: Asia/Shangai",
            "feeds.yaml:7: feeds[0].timezone: unknown time zone 'Asia/Shangai'; "
            "did you mean 'Asia/Shanghai'?",
        ),
        ("timezone: +08:00", "feeds[0].timezone: unknown time zone"),
        ("timezone: ../../etc/passwd", "feeds[0].timezone: unknown time zone"),
        ("date_offset: eight hours", "feeds.yaml:7: feeds[0].date_offset: bad offset"),
        ("date_offset: -30h", "feeds[0].date_offset: '-30h' is more than a day"),
        ("date_offset: true", "feeds[0].date_offset: must be a signed duration"),
    ],
)
def test_bad_date_keys_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_config(HEAD + "    " + line + "\n")
    (error,) = info.value.errors
    assert message in error


# --------------------------------------------------------------------------
# End to end: a real feed server, fetch_once, the stored posts


def item(guid: str, date_text: str) -> str:
    return (
        f"<item><guid>{guid}</guid><title>Story {guid}</title>"
        f"<link>https://news.example.com/{guid}</link>"
        f"<pubDate>{date_text}</pubDate><description>Body of {guid}</description></item>"
    )


def fetch(store: Store, config_text: str) -> list:  # type: ignore[type-arg]
    config = loads_config(config_text)
    return asyncio.run(fetch_once(store, config, config.feeds))


def stored_dates(store: Store) -> dict[str, datetime | None]:
    return {p.post.title: p.post.date for p in store.iter_posts()}


def feed_config(url: str, extra: str = "") -> str:
    return (
        "defaults:\n  group: 新媒体\nfeeds:\n"
        f"  - url: {url}\n    outlet: 观察者网\n    section: 头条\n{extra}"
    )


def test_a_naive_date_is_read_in_the_feeds_timezone(
    store: Store, local_server: LocalServer
) -> None:
    local_server.route(
        "/naive.xml",
        body=rss_document(item("n1", "2022-03-01 13:31:34") + item("z1", "2022-03-01T13:31:34Z")),
        headers={"Content-Type": "application/rss+xml"},
    )
    (report,) = fetch(
        store, feed_config(local_server.url("/naive.xml"), "    timezone: Asia/Shanghai\n")
    )
    assert report.new == 2 and report.dates_replaced == 0
    assert stored_dates(store) == {
        "Story n1": datetime(2022, 3, 1, 5, 31, 34, tzinfo=UTC),  # Beijing 13:31 = 05:31 GMT
        "Story z1": datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC),  # said Z: left alone
    }


def test_date_offset_corrects_a_feed_that_labels_beijing_time_gmt(
    store: Store, local_server: LocalServer
) -> None:
    # RSSHub issues #673 / #6795: a 13:31 Beijing story sent as "13:31 GMT".
    local_server.route(
        "/rsshub.xml",
        body=rss_document(item("m1", "Tue, 01 Mar 2022 13:31:34 GMT")),
        headers={"Content-Type": "application/rss+xml"},
    )
    fetch(store, feed_config(local_server.url("/rsshub.xml"), "    date_offset: -8h\n"))
    assert stored_dates(store) == {"Story m1": datetime(2022, 3, 1, 5, 31, 34, tzinfo=UTC)}


def test_a_future_date_becomes_the_time_first_seen_and_is_logged_and_counted(
    store: Store, local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    local_server.route(
        "/future.xml",
        body=rss_document(
            item("f1", "Thu, 01 Jan 2099 00:00:00 GMT")
            + item("ok", "Tue, 01 Mar 2022 13:31:34 GMT")
        ),
        headers={"Content-Type": "application/rss+xml"},
    )
    caplog.set_level(logging.WARNING, logger="aggregator.pipeline")
    before = datetime.now(UTC).replace(microsecond=0)  # posts keep whole seconds
    (report,) = fetch(store, feed_config(local_server.url("/future.xml")))
    after = datetime.now(UTC)

    dates = stored_dates(store)
    future = dates["Story f1"]
    assert future is not None and before <= future <= after
    assert dates["Story ok"] == datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)
    assert report.dates_replaced == 1
    (record,) = [r for r in caplog.records if "date replaced" in r.getMessage()]
    assert record.feed == local_server.url("/future.xml")  # type: ignore[attr-defined]
    assert record.entry == "f1"  # type: ignore[attr-defined]
    assert record.bad_date == "2099-01-01T00:00:00+00:00"  # type: ignore[attr-defined]

    metrics = Metrics()
    metrics.observe(report)
    assert b"aggregator_dates_replaced_total 1.0" in metrics.render()[0]


def test_a_replaced_date_does_not_move_on_the_next_poll(
    store: Store, local_server: LocalServer, tmp_path: Path
) -> None:
    local_server.route(
        "/future.xml",
        body=rss_document(item("f1", "Thu, 01 Jan 2099 00:00:00 GMT")),
        headers={"Content-Type": "application/rss+xml"},
    )
    config = feed_config(local_server.url("/future.xml"))
    fetch(store, config)
    first = stored_dates(store)
    (again,) = fetch(store, config)
    assert again.new == 0 and stored_dates(store) == first
