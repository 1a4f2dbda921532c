"""Post dates: the rules as data, the feeds.yaml keys, and the whole pipeline.

In Hexo the date decides the permalink and the archive page, so each rule is
checked end to end too: a real feed server, ``fetch_once``, the stored post.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dateutil import parser as dateutil_parser
from feedbuild import CORPUS, corpus_rows, require_corpus, rss_document
from hypothesis import example, given, settings
from hypothesis import strategies as st
from localserver import LocalServer
from support_proc import aggregator

from aggregator.config.feeds import ConfigError, loads_config
from aggregator.content.items import post_date
from aggregator.content.rawentry import dump_entry, load_entry
from aggregator.parse.parser import Entry, FeedParseError, parse_feed
from aggregator.policy.dates import (
    EARLIEST,
    FUTURE_TOLERANCE,
    REASONS,
    effective_date,
    has_offset,
    read_date,
)
from aggregator.service.metrics import Metrics
from aggregator.service.runner import fetch_once
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
# read_date: what each form of date text says

CST_WALL = datetime(2022, 3, 1, 13, 31, 34)
AWARE = datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "value", "cst"),
    [
        # RFC 822 without a zone: feedparser gives up on it.
        ("Tue, 01 Mar 2022 13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        ("Tue, 01 Mar 2022 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("01 Mar 2022 13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        # Chinese forms: feedparser says 1 December, dateutil cannot read them.
        ("2022年03月01日 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022年03月01日 13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        ("2022年03月01日13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022年3月1日", datetime(2022, 3, 1), False),
        ("2022 年 3 月 1 日 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022年3月1日 星期二 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022年3月1日 下午1:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022年3月1日 上午11:31", datetime(2022, 3, 1, 11, 31), False),
        ("2022年3月1日 13时31分", datetime(2022, 3, 1, 13, 31), False),
        ("2022年3月1日 13时31分34秒", datetime(2022, 3, 1, 13, 31, 34), False),
        ("２０２２年０３月０１日 １３：３１", datetime(2022, 3, 1, 13, 31), False),  # full width
        # Numeric, zone-less, with or without seconds.
        ("2022-03-01 13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        ("2022-03-01 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022-3-1 9:31:34", datetime(2022, 3, 1, 9, 31, 34), False),
        ("2022/03/01 13:31", datetime(2022, 3, 1, 13, 31), False),  # feedparser: 1 December
        ("2022/03/01 13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        ("2020/1/10 14:33:00", datetime(2020, 1, 10, 14, 33), False),
        ("2022.03.01 13:31", datetime(2022, 3, 1, 13, 31), False),
        ("2022/03/01", datetime(2022, 3, 1), False),
        ("2022-03-01T13:31:34", datetime(2022, 3, 1, 13, 31, 34), False),
        ("2022-03-01", datetime(2022, 3, 1), False),
        # CST: the wall time, with the zone left to the feed's settings.
        ("Tue, 01 Mar 2022 13:31:34 CST", CST_WALL, True),
        ("2022-03-01 13:31:34 CST", CST_WALL, True),  # feedparser drops the time
        ("Tue, 01 Mar 2022 13:31:34 -0600 (CST)", AWARE + timedelta(hours=6), False),
        # Dates with an offset, as before.
        ("Tue, 01 Mar 2022 13:31:34 GMT", AWARE, False),
        ("Tue, 01 Mar 2022 13:31:34 +0800", AWARE - timedelta(hours=8), False),
        ("2022-03-01T13:31:34+08:00", AWARE - timedelta(hours=8), False),
        ("2022-03-01T13:31:34Z", AWARE, False),
        # What the corpus showed feedparser missing.
        ("Tue, 27 Dec 2005 13:08:54+0900", datetime(2005, 12, 27, 4, 8, 54, tzinfo=UTC), False),
        ("Seg, 24 Set 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC), False),
        ("mer, 16 nov 2022 00:38:15 +0100", datetime(2022, 11, 15, 23, 38, 15, tzinfo=UTC), False),
        ("Friday, January 29, 2021 04:42 PM", datetime(2021, 1, 29, 16, 42), False),
        ("January 29, 2021 04:42 PM", datetime(2021, 1, 29, 16, 42), False),
        ("Set 24, 2018 19:42:40 -0300", datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC), False),
        ("1518478934", datetime(2018, 2, 12, 23, 42, 14, tzinfo=UTC), False),
    ],
)
def test_read_date(text: str, value: datetime, cst: bool) -> None:
    reading = read_date(text)
    assert reading is not None
    assert (reading.value, reading.value.tzinfo is None, reading.cst) == (
        value,
        value.tzinfo is None,
        cst,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "05/20 7:03 am",  # no year (in the corpus)
        "Mar 2022",  # no day
        "2022/13/01 13:31",  # no 13th month: not handed on to feedparser's guess
        "2022年02月30日",
        "3分钟前",  # relative forms: not read (see README)
        "昨天 13:31",
        "x" * 500,
    ],
)
def test_read_date_refuses(text: str) -> None:
    assert read_date(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "2022年03月01日 13:31",
        "2022年3月1日 9:05:07",
        "1999年12月31日 23:59",
        "2022年3月1日",
        "2024/02/29 00:00",
        "2022/3/1 13:31:34",
        "2022.03.01 13:31",
        "2022-3-1 13:31",
    ],
)
def test_the_hand_written_grammar_agrees_with_dateutil(text: str) -> None:
    """dateutil reads the numeric forms, and the Chinese ones once 年/月/日 are
    swapped for dashes; our grammar must say the same."""
    plain = text.replace("年", "-").replace("月", "-").replace("日", "")
    reading = read_date(text)
    assert reading is not None and reading.value == dateutil_parser.parse(plain)


_DATEISH = st.text(alphabet="0123456789 -/.:年月日时分秒上下午TZ+CSTGMTueMarSetJanPM,", max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), _DATEISH))
@example("00")  # feedparser: the year -99
def test_any_text_is_read_or_refused_without_error(text: str) -> None:
    """Date texts come from strangers: reading never raises, and whatever is
    read becomes a date in UTC or the time first seen."""
    read_date(text)
    date, note = effective_date(
        text, timezone=SH, offset=timedelta(hours=-8), first_seen=SEEN, now=NOW
    )
    assert date.utcoffset() == timedelta(0)
    assert note is None or note.reason in REASONS


# --------------------------------------------------------------------------
# effective_date, as a table: text, the feed's settings -> date and reason

SH = ZoneInfo("Asia/Shanghai")
BEIJING_1331 = datetime(2022, 3, 1, 5, 31, 34, tzinfo=UTC)  # 13:31:34 in Beijing


@pytest.mark.parametrize(
    ("text", "timezone", "offset", "expected", "reason"),
    [
        pytest.param("Tue, 01 Mar 2022 13:31:34 GMT", None, NO_SHIFT, AWARE, None, id="GMT kept"),
        pytest.param("Tue, 01 Mar 2022 13:31:34 GMT", SH, NO_SHIFT, AWARE, None, id="zone ignored"),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34", SH, NO_SHIFT, BEIJING_1331, "zone_assumed", id="rfc822"
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34", None, NO_SHIFT, AWARE, "zone_assumed", id="rfc822 utc"
        ),
        pytest.param(
            "2022年03月01日 13:31:34", SH, NO_SHIFT, BEIJING_1331, "zone_assumed", id="chinese"
        ),
        pytest.param(
            "2022/03/01 13:31:34", SH, NO_SHIFT, BEIJING_1331, "zone_assumed", id="slashes"
        ),
        pytest.param(
            "2022-03-01 13:31:34", SH, NO_SHIFT, BEIJING_1331, "zone_assumed", id="iso naive"
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST", SH, NO_SHIFT, BEIJING_1331, "cst_china", id="cst sh"
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST",
            ZoneInfo("Asia/Taipei"),
            NO_SHIFT,
            BEIJING_1331,
            "cst_china",
            id="cst taipei",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST",
            ZoneInfo("Asia/Singapore"),
            NO_SHIFT,
            BEIJING_1331,
            "cst_china",
            id="cst singapore",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST",
            ZoneInfo("America/Chicago"),
            NO_SHIFT,
            AWARE + timedelta(hours=6),
            None,
            id="cst chicago",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST",
            None,
            NO_SHIFT,
            AWARE + timedelta(hours=6),
            "cst_ambiguous",
            id="cst no zone",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 CST",
            ZoneInfo("Europe/Paris"),
            NO_SHIFT,
            AWARE + timedelta(hours=6),
            "cst_ambiguous",
            id="cst paris",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34 GMT",
            None,
            timedelta(hours=-8),
            BEIJING_1331,
            None,
            id="date_offset",
        ),
        pytest.param(
            "Tue, 01 Mar 2022 13:31:34",
            SH,
            timedelta(minutes=5),
            BEIJING_1331 + timedelta(minutes=5),
            "zone_assumed",
            id="zone then offset",
        ),
        pytest.param(None, SH, NO_SHIFT, SEEN, "missing", id="no date"),
        pytest.param("3分钟前", SH, NO_SHIFT, SEEN, "unparsable", id="unreadable"),
        pytest.param(
            "Thu, 01 Jan 2099 00:00:00 GMT", None, NO_SHIFT, SEEN, "future", id="pinned 2099"
        ),
        pytest.param(
            "Thu, 01 Jan 1970 00:00:00 GMT", None, NO_SHIFT, SEEN, "too_old", id="epoch zero"
        ),
        pytest.param(
            "2099年01月01日", SH, NO_SHIFT, SEEN, "future", id="future beats zone_assumed"
        ),
        pytest.param(
            "Wed, 01 May 2024 20:00:00 GMT",
            None,
            timedelta(hours=-8),
            NOW,
            None,
            id="offset rescues a 'future' mislabelled date",
        ),
        pytest.param(
            "0001-01-01T00:00:00Z", None, timedelta(hours=-8), SEEN, "too_old", id="off calendar"
        ),
        pytest.param(
            (NOW + FUTURE_TOLERANCE).isoformat(),
            None,
            NO_SHIFT,
            NOW + FUTURE_TOLERANCE,
            None,
            id="10 minutes ahead is clock skew",
        ),
        pytest.param(
            (NOW + FUTURE_TOLERANCE + timedelta(seconds=1)).isoformat(),
            None,
            NO_SHIFT,
            SEEN,
            "future",
            id="just past the tolerance",
        ),
        pytest.param(EARLIEST.isoformat(), None, NO_SHIFT, EARLIEST, None, id="1995 is fine"),
    ],
)
def test_effective_date(
    text: str | None,
    timezone: ZoneInfo | None,
    offset: timedelta,
    expected: datetime,
    reason: str | None,
) -> None:
    date, note = effective_date(text, timezone=timezone, offset=offset, first_seen=SEEN, now=NOW)
    assert date == expected
    assert date.utcoffset() == timedelta(0)
    assert (note.reason if note is not None else None) == reason
    if note is not None:
        assert note.text == text


WALL = datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)  # "13:31:34", read as UTC


@pytest.mark.parametrize(
    ("parsed", "naive", "timezone", "expected", "reason"),
    [
        pytest.param(WALL, False, SH, WALL, None, id="offset date kept"),
        pytest.param(WALL, True, SH, WALL - timedelta(hours=8), "zone_assumed", id="naive"),
        pytest.param(None, False, SH, SEEN, "missing", id="nothing"),
    ],
)
def test_entries_stored_without_their_text_keep_todays_rules(
    parsed: datetime | None,
    naive: bool,
    timezone: ZoneInfo | None,
    expected: datetime,
    reason: str | None,
) -> None:
    """Raw entries stored before the text was kept have only the parsed value."""
    date, note = effective_date(
        None,
        parsed=parsed,
        naive=naive,
        timezone=timezone,
        offset=NO_SHIFT,
        first_seen=SEEN,
        now=NOW,
    )
    assert date == expected
    assert (note.reason if note is not None else None) == reason


def test_the_note_says_what_was_done() -> None:
    _, note = effective_date(
        "Thu, 01 Jan 2099 00:00:00 GMT", timezone=None, offset=NO_SHIFT, first_seen=SEEN, now=NOW
    )
    assert note is not None and "2099-01-01T00:00:00+00:00" in note.detail
    assert "future" in note.detail
    _, note = effective_date(
        "2022-03-01 13:31", timezone=SH, offset=NO_SHIFT, first_seen=SEEN, now=NOW
    )
    assert note is not None and note.detail == "no zone in the text; read in Asia/Shanghai"
    _, note = effective_date(
        "2022-03-01 13:31 CST", timezone=None, offset=NO_SHIFT, first_seen=SEEN, now=NOW
    )
    assert note is not None and "US Central" in note.detail and "no timezone" in note.detail


def test_a_zone_with_daylight_saving_uses_the_offset_of_that_day() -> None:
    paris = ZoneInfo("Europe/Paris")
    kw = {"timezone": paris, "offset": NO_SHIFT, "first_seen": SEEN, "now": NOW}
    winter = effective_date("2024-01-10 12:00", **kw)[0]  # type: ignore[arg-type]
    summer = effective_date("2024-04-10 12:00", **kw)[0]  # type: ignore[arg-type]
    assert winter == datetime(2024, 1, 10, 11, 0, tzinfo=UTC)
    assert summer == datetime(2024, 4, 10, 10, 0, tzinfo=UTC)


def test_reasons_are_a_small_fixed_set() -> None:
    assert set(REASONS) == {
        "missing",
        "unparsable",
        "zone_assumed",
        "cst_china",
        "cst_ambiguous",
        "future",
        "too_old",
    }


# --------------------------------------------------------------------------
# post_date: published, else updated


def entry(**dates: object) -> Entry:
    fields: dict[str, object] = {
        "guid": "g",
        "link": None,
        "title": "t",
        "published": None,
        "updated": None,
        "author": None,
        "content_html": "",
        "summary_html": "",
        "base_url": None,
        "images": (),
        "raw": {},
    }
    return Entry(**{**fields, **dates})  # type: ignore[arg-type]


SPEC_SH = loads_config(
    "defaults:\n  group: g\nfeeds:\n  - url: https://a.example/\n    outlet: o\n"
    "    section: s\n    timezone: Asia/Shanghai\n"
).feeds[0]


@pytest.mark.parametrize(
    ("published", "updated", "expected", "reason"),
    [
        pytest.param("2022-03-01 13:31:34", None, BEIJING_1331, "zone_assumed", id="published"),
        pytest.param(None, "2022-03-01 13:31:34", BEIJING_1331, "zone_assumed", id="updated"),
        pytest.param("2022-03-01T05:31:34Z", "2023-01-01", BEIJING_1331, None, id="published 1st"),
        pytest.param("3分钟前", "2022-03-01T05:31:34Z", BEIJING_1331, "unparsable", id="fallback"),
        pytest.param("3分钟前", "5分钟前", SEEN, "unparsable", id="neither"),
        pytest.param(None, None, SEEN, "missing", id="none"),
    ],
)
def test_post_date_takes_published_else_updated(
    published: str | None, updated: str | None, expected: datetime, reason: str | None
) -> None:
    date, note = post_date(entry(published_text=published, updated_text=updated), SPEC_SH, now=NOW)
    assert date == expected
    assert (note.reason if note is not None else None) == reason
    if published == "3分钟前" and updated and expected != SEEN:
        assert note is not None and note.text == "3分钟前" and updated in note.detail


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
    assert (item.published_text, item.updated_text) == (
        "2022-03-01T13:31:34",
        "2022-03-01T13:31:34Z",
    )


def test_entries_keep_their_date_text_and_store_it() -> None:
    rss = rss_document(
        "<item><guid>a</guid><title>a</title><pubDate> 2022年03月01日 13:31 </pubDate>"
        "<dc:date>2022/03/02 08:00</dc:date></item>"
    ).encode()
    (parsed,) = parse_feed(rss, url="https://x.example/").entries
    assert parsed.published_text == "2022年03月01日 13:31"
    assert parsed.updated_text == "2022/03/02 08:00"
    # Read as UTC wall time here (feedparser: 1 December); the feed's zone applies later.
    assert parsed.published == datetime(2022, 3, 1, 13, 31, tzinfo=UTC)
    assert parsed.updated == datetime(2022, 3, 2, 8, 0, tzinfo=UTC)
    assert parsed.published_naive and parsed.updated_naive
    raw = dump_entry(parsed)
    assert load_entry(raw)[0] == parsed
    # Raw entries stored before the text was kept load without it.
    older = {k: v for k, v in raw.items() if k not in ("published_text", "updated_text")}
    assert load_entry(older)[0].published_text is None


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
    assert report.date_notes == {"zone_assumed": 1}  # the Z date needed no guess
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
    caplog.set_level(logging.INFO, logger="aggregator.service.pipeline")
    before = datetime.now(UTC).replace(microsecond=0)  # posts keep whole seconds
    (report,) = fetch(store, feed_config(local_server.url("/future.xml")))
    after = datetime.now(UTC)

    dates = stored_dates(store)
    future = dates["Story f1"]
    assert future is not None and before <= future <= after
    assert dates["Story ok"] == datetime(2022, 3, 1, 13, 31, 34, tzinfo=UTC)
    assert report.dates_replaced == 1 and report.date_notes == {"future": 1}
    (record,) = [r for r in caplog.records if r.getMessage().startswith("entry date")]
    assert record.levelno == logging.WARNING
    assert record.feed == local_server.url("/future.xml")  # type: ignore[attr-defined]
    assert record.entry == "f1"  # type: ignore[attr-defined]
    assert record.reason == "future"  # type: ignore[attr-defined]
    assert record.date_text == "Thu, 01 Jan 2099 00:00:00 GMT"  # type: ignore[attr-defined]
    assert record.date_used == future.isoformat()  # type: ignore[attr-defined]
    assert "2099-01-01T00:00:00+00:00 is" in record.getMessage()

    metrics = Metrics()
    metrics.observe(report)
    text = metrics.render()[0]
    assert b"aggregator_dates_replaced_total 1.0" in text
    assert b'aggregator_dates_guessed_total{reason="future"} 1.0' in text
    assert b'aggregator_dates_guessed_total{reason="zone_assumed"} 0.0' in text


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
    # Counted once, when the post was new, not on every poll.
    assert again.dates_replaced == 0 and again.date_notes == {}


def test_a_shanghai_feed_reads_every_chinese_form_and_counts_the_guesses(
    store: Store, local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    local_server.route(
        "/cn.xml",
        body=rss_document(
            item("rfc", "Tue, 01 Mar 2022 13:31:34")
            + item("cn", "2022年03月01日 13:31")
            + item("cst", "Tue, 01 Mar 2022 13:31:34 CST")
            + item("gmt", "Tue, 01 Mar 2022 05:31:34 GMT")
            + "<item><guid>none</guid><title>Story none</title></item>"
        ),
        headers={"Content-Type": "application/rss+xml"},
    )
    caplog.set_level(logging.INFO, logger="aggregator.service.pipeline")
    (report,) = fetch(
        store, feed_config(local_server.url("/cn.xml"), "    timezone: Asia/Shanghai\n")
    )
    dates = stored_dates(store)
    assert dates["Story rfc"] == dates["Story cst"] == dates["Story gmt"] == BEIJING_1331
    assert dates["Story cn"] == datetime(2022, 3, 1, 5, 31, tzinfo=UTC)
    assert report.date_notes == {"zone_assumed": 2, "cst_china": 1, "missing": 1}
    assert report.notes == ["dates guessed: 1 cst_china, 2 zone_assumed"]  # not "missing"
    logged = {
        r.entry: (r.reason, r.date_text, r.levelno)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage().startswith("entry date")
    }
    assert logged == {
        "rfc": ("zone_assumed", "Tue, 01 Mar 2022 13:31:34", logging.INFO),
        "cn": ("zone_assumed", "2022年03月01日 13:31", logging.INFO),
        "cst": ("cst_china", "Tue, 01 Mar 2022 13:31:34 CST", logging.INFO),
        "none": ("missing", "-", logging.INFO),
    }


def test_cst_in_a_feed_without_a_china_zone_is_counted_as_ambiguous(
    store: Store, local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    local_server.route(
        "/cst.xml",
        body=rss_document(item("cst", "Tue, 01 Mar 2022 13:31:34 CST")),
        headers={"Content-Type": "application/rss+xml"},
    )
    caplog.set_level(logging.INFO, logger="aggregator.service.pipeline")
    (report,) = fetch(store, feed_config(local_server.url("/cst.xml")))
    assert stored_dates(store) == {"Story cst": datetime(2022, 3, 1, 19, 31, 34, tzinfo=UTC)}
    assert report.date_notes == {"cst_ambiguous": 1}
    (record,) = [r for r in caplog.records if r.getMessage().startswith("entry date")]
    assert record.levelno == logging.WARNING


def test_metrics_count_only_known_reasons() -> None:
    @dataclass
    class Report:
        url: str = "https://a.example/"
        status: int | None = 200
        new: int = 3
        duplicate: int = 0
        updated: int = 0
        wire_bytes: int = 0
        elapsed_ms: int = 0
        error_class: str | None = None
        dates_replaced: int = 0
        date_notes: dict[str, int] = field(default_factory=dict)
        failed: bool = False

    metrics = Metrics()
    metrics.observe(Report(date_notes={"zone_assumed": 2, "cst_china": 1, "bogus": 5}))
    text = metrics.render()[0].decode()
    assert 'aggregator_dates_guessed_total{reason="zone_assumed"} 2.0' in text
    assert 'aggregator_dates_guessed_total{reason="cst_china"} 1.0' in text
    assert "bogus" not in text
    for reason in REASONS:  # every series exists from the first scrape
        assert f'aggregator_dates_guessed_total{{reason="{reason}"}}' in text


# --------------------------------------------------------------------------
# The corpus: an entry with a date text gets the first-seen time only when
# the text is really unreadable.

#: Date texts in the corpus that nothing can read, and why.
UNREADABLE_IN_CORPUS = {
    "chardet-big5__oui-design.com.xml": "'05/20 7:03 am': month/day without a year",
}


def corpus_entries() -> list[tuple[str, Entry]]:
    require_corpus()
    found = []
    for row in corpus_rows():
        name = row["file"]
        try:
            parsed = parse_feed((CORPUS / name).read_bytes(), url=f"https://c.example/{name}")
        except FeedParseError:
            continue
        found += [(name, e) for e in parsed.entries]
    return found


def test_corpus_dates_are_read_unless_really_unreadable() -> None:
    spec = loads_config(HEAD).feeds[0]
    unread: dict[str, set[str]] = {}
    dated = 0
    for name, entry in corpus_entries():
        if entry.published_text is None and entry.updated_text is None:
            continue
        dated += 1
        _, note = post_date(entry, spec, now=datetime.now(UTC))
        if note is not None and note.reason == "unparsable":
            unread.setdefault(name, set()).add(note.text or "")
    assert dated > 2000
    assert set(unread) == set(UNREADABLE_IN_CORPUS), unread


@pytest.mark.parametrize(
    ("name", "index", "field_name", "expected"),
    [
        ("nnw__kc0011.rss", 0, "published", datetime(2020, 1, 10, 14, 33, tzinfo=UTC)),
        (
            "feedjira__InvalidDateFormat.xml",
            0,
            "updated",
            datetime(2018, 2, 12, 23, 42, 14, tzinfo=UTC),
        ),
        (
            "rssparser__uolNoticias.rss",
            0,
            "published",
            datetime(2018, 9, 24, 22, 42, 40, tzinfo=UTC),
        ),
        ("chardet-gb2312__acnnewswire.net.xml", 0, "published", None),
    ],
)
def test_corpus_dates_feedparser_misreads(
    name: str, index: int, field_name: str, expected: datetime | None
) -> None:
    require_corpus()
    parsed = parse_feed((CORPUS / name).read_bytes(), url=f"https://c.example/{name}")
    value = getattr(parsed.entries[index], field_name)
    text = getattr(parsed.entries[index], f"{field_name}_text")
    reading = read_date(text)
    assert reading is not None
    if expected is None:  # "+0900" glued to the time: an aware reading
        assert value is not None and reading.value.tzinfo is not None
    else:
        assert value == expected


# --------------------------------------------------------------------------
# Through the real CLI: `aggregator fetch --export`


def test_fetch_command_exports_the_right_dates_and_reports_the_guesses(
    database_url: str, local_server: LocalServer, tmp_path: Path
) -> None:
    local_server.route(
        "/cn.xml",
        body=rss_document(
            item("rfc", "Tue, 01 Mar 2022 13:31:34")
            + item("cn", "2022年03月01日 13:31")
            + item("cst", "Tue, 01 Mar 2022 13:31:34 CST")
            + item("gmt", "Tue, 01 Mar 2022 05:31:34 GMT")
        ),
        headers={"Content-Type": "application/rss+xml"},
    )
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feed_config(local_server.url("/cn.xml"), "    timezone: Asia/Shanghai\n"),
        encoding="utf-8",
    )
    out = tmp_path / "posts"
    run = aggregator(
        "--log-format",
        "json",
        "fetch",
        "--config",
        str(config),
        "--export",
        str(out),
        db=database_url,
        cwd=tmp_path,
    )
    assert run.stdout.endswith("4 new, 0 duplicate, 0 updated, 0 failed (1 feeds)\n")
    dates = {}
    for path in out.iterdir():
        text = path.read_text(encoding="utf-8")
        title = re.search(r"^title: '(.*)'$", text, re.MULTILINE)
        date = re.search(r"^date: (.*)$", text, re.MULTILINE)
        assert title is not None and date is not None
        dates[title.group(1)] = date.group(1)
    assert dates == {
        "Story rfc": "Tue, 01 Mar 2022 05:31:34 GMT",
        "Story cn": "Tue, 01 Mar 2022 05:31:00 GMT",
        "Story cst": "Tue, 01 Mar 2022 05:31:34 GMT",
        "Story gmt": "Tue, 01 Mar 2022 05:31:34 GMT",
    }
    # The fetch report (tab-separated in a pipe) names the guesses in its result column ...
    result = " ".join(
        line.split("\t")[-1] for line in run.stdout.splitlines() if line.count("\t") == 7
    )
    assert "ok (dates guessed: 1 cst_china, 2 zone_assumed)" in result
    # ... and each is one structured log line: feed, raw text, date used.
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    notes = {r["entry"]: r for r in lines if r.get("message", "").startswith("entry date")}
    assert {e: (r["reason"], r["date_text"], r["date_used"]) for e, r in notes.items()} == {
        "rfc": ("zone_assumed", "Tue, 01 Mar 2022 13:31:34", "2022-03-01T05:31:34+00:00"),
        "cn": ("zone_assumed", "2022年03月01日 13:31", "2022-03-01T05:31:00+00:00"),
        "cst": ("cst_china", "Tue, 01 Mar 2022 13:31:34 CST", "2022-03-01T05:31:34+00:00"),
    }
    assert all(r["feed"] == local_server.url("/cn.xml") for r in notes.values())
