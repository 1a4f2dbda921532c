"""Poisoned values: repaired where they enter, stored the same on both backends, isolated.

A "poisoned" item is one whose text some layer refuses: a lone surrogate
(JavaScript cutting an emoji in half) that no UTF-8 encoder takes, a
surrogate pair written as two XML references, NUL (refused by PostgreSQL),
keys and validators longer than their columns.  Each used to cost a whole
feed, a whole ``aggregator fetch`` pass, or turn the daemon's ``/healthz``
red.  The tests here run each one through the real pipeline on SQLite and on
PostgreSQL next to a good feed, through the real CLI (40 good feeds and one
poisoned) and through the daemon on PostgreSQL; the pure repairs and the
"is the database down?" decision are table-tested.  ``docs/hostile-input.md``
lists the cases.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedbuild import EtagFeed, feeds_yaml, rss_document
from localserver import LocalServer
from sqlalchemy import create_engine, select, text
from sqlalchemy import exc as sa
from support_proc import AggregatorProcess, aggregator, free_port, wait_for

from aggregator.config.feeds import loads_config
from aggregator.content import items as items_module
from aggregator.fetch.fetcher import Fetcher, Validators
from aggregator.parse.fast import shape_feed
from aggregator.parse.parser import parse_feed
from aggregator.policy.repair import (
    escape_for_log,
    fit_key,
    fit_or_none,
    repair_references,
    repair_text,
    repair_tree,
)
from aggregator.policy.schedule import QUICK_RETRIES
from aggregator.service import worker as worker_module
from aggregator.service.logs import configure_logging
from aggregator.service.pipeline import FeedReport, database_unavailable, describe_error, fetch_page
from aggregator.service.runner import fetch_once
from aggregator.store import FeedState, Store
from aggregator.store import models as m

GROUP, SECTION = "新媒体", "新闻"
GOOD, POISON = "好媒体", "毒媒体"
EMOJI = "\U0001f600"  # 😀, U+D83D U+DE00 in UTF-16
HIGH, LOW = "\ud83d", "\ude00"
FFFD = "\ufffd"
#: What no stored text may contain after repair: surrogates, NUL, other C0 but \t \n \r.
UNSTORABLE = re.compile("[\ud800-\udfff\x00-\x08\x0b\x0c\x0e-\x1f]")


# --------------------------------------------------------------------------
# The pure repairs, table-tested


@pytest.mark.parametrize(
    ("value", "multiline", "expected"),
    [
        ("plain 中文 text", True, "plain 中文 text"),
        (f"x {HIGH} y", True, f"x {FFFD} y"),  # cut emoji (high half)
        (f"x {LOW} y", True, f"x {FFFD} y"),  # the other half
        (f"{HIGH}{LOW}", True, EMOJI),  # a valid pair held as two code units
        (f"{LOW}{HIGH}", True, FFFD + FFFD),  # wrong order: two lone halves
        (f"{HIGH}{HIGH}{LOW}", True, FFFD + EMOJI),
        ("a\x00b\x01c\x1bd\x7f", True, "abcd\x7f"),  # C0 out; DEL is not C0
        ("line\none\ttab\r\n", True, "line\none\ttab\r\n"),  # text may span lines
        ("guid\nwith\ttab\r", False, "guidwithtab"),  # single-line values may not
        ("", False, ""),
    ],
)
def test_repair_text(value: str, multiline: bool, expected: str) -> None:
    repaired = repair_text(value, multiline=multiline)
    assert repaired == expected
    assert not UNSTORABLE.search(repaired)
    repaired.encode("utf-8")  # what every database and codec does first


def test_repair_text_returns_clean_text_itself() -> None:
    clean = "a clean title, " + "x" * 100
    assert repair_text(clean) is clean
    assert repair_text(clean, multiline=False) is clean


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b"<t>&#55357;&#56832;</t>", b"<t>&#128512;</t>"),  # decimal pair
        (b"<t>&#xD83D;&#xDE00;</t>", b"<t>&#128512;</t>"),  # hex pair
        (b"<t>&#xd83d;&#xde00;</t>", b"<t>&#128512;</t>"),  # lower-case hex
        (b"<t>&#0055357;&#056832;</t>", b"<t>&#128512;</t>"),  # leading zeros
        (b"<t>&#55357; x</t>", b"<t>&#65533; x</t>"),  # lone high
        (b"<t>&#56832;</t>", b"<t>&#65533;</t>"),  # lone low
        (b"<t>&#56832;&#55357;</t>", b"<t>&#65533;&#65533;</t>"),  # reversed
        (b"&#55357;&#55357;&#56832;", b"&#65533;&#128512;"),  # high, then a pair
        (b"&#55295;&#57344;&#65;&#x1F600;", b"&#55295;&#57344;&#65;&#x1F600;"),  # neighbours
        (b"&#55296;&#57343;&#xDBFF;&#xDC00;", b"&#66559;&#1113088;"),  # pairs at the range ends
        (b"no references at all", b"no references at all"),
    ],
)
def test_repair_references(document: bytes, expected: bytes) -> None:
    assert repair_references(document) == expected


def test_repair_tree_repairs_keys_and_values_at_any_depth_and_copies_nothing_clean() -> None:
    clean = {"a": ["x", {"k": 1, "n": None}], "b": 2.5}
    assert repair_tree(clean) is clean
    poisoned = {"a": [f"x{HIGH}", {f"k{HIGH}{LOW}": "\x00v"}], "b": (f"{LOW}",), "c": 1}
    assert repair_tree(poisoned) == {
        "a": [f"x{FFFD}", {f"k{EMOJI}": "v"}],
        "b": (FFFD,),
        "c": 1,
    }
    json.dumps(repair_tree(poisoned), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    "value",
    ["guid:" + "g" * 3000, "guid:" + "中" * 1000, "guid:" + "中" * 700, "x" * 2049],
    ids=["3000-ascii", "1000-cjk", "700-cjk (fits the chars, not the bytes)", "one-over"],
)
def test_fit_key_shortens_to_the_limit_in_characters_and_bytes(value: str) -> None:
    fitted = fit_key(value, 2048)
    assert len(fitted) <= 2048 and len(fitted.encode("utf-8")) <= 2048
    assert fitted.startswith(value[:100])
    assert fitted.endswith(fit_key(value, 2048)[-64:])  # deterministic
    assert fit_key(value + "!", 2048) != fitted  # a different value keeps a different key


def test_fit_key_leaves_a_key_that_fits_alone() -> None:
    key = "guid:" + "g" * 2043
    assert fit_key(key, 2048) is key


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        ('"abc"', 1024, '"abc"'),
        (None, 1024, None),
        ('"' + "e" * 1100 + '"', 1024, None),  # longer than the column: not kept
        ("Tue, 01 Mar 2022 13:31:34 GMT", 128, "Tue, 01 Mar 2022 13:31:34 GMT"),
        ("x" * 129, 128, None),
        ('"a\x00b"', 1024, '"ab"'),
        ("\x00\x01", 1024, None),  # nothing left
    ],
)
def test_fit_or_none(value: str | None, limit: int, expected: str | None) -> None:
    assert fit_or_none(value, limit) == expected


def test_validators_never_hold_what_their_columns_cannot() -> None:
    long = Validators(etag='"' + "e" * 2000 + '"', last_modified="x" * 200)
    assert (long.etag, long.last_modified) == (None, None)
    fine = Validators(etag='"v1"', last_modified="Tue, 01 Mar 2022 13:31:34 GMT")
    assert (fine.etag, fine.last_modified) == ('"v1"', "Tue, 01 Mar 2022 13:31:34 GMT")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain 中文", "plain 中文"),
        ("a\nb", "a\\nb"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nel\x85 ls\u2028 ps\u2029", "nel\\x85 ls\\u2028 ps\\u2029"),
        (f"half {HIGH}", "half \\ud83d"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_escape_for_log(value: str, expected: str) -> None:
    escaped = escape_for_log(value)
    assert escaped == expected
    assert len(escaped.splitlines()) <= 1


@pytest.mark.parametrize(
    "title", ["a&#0;b", "a\x01b", "a&#27;b", "a&#55357;b", "a&#xDE00;b", "a\x00b"]
)
def test_the_fast_parser_declines_every_document_a_repair_would_change(title: str) -> None:
    """Why entries from the lxml fast path skip the repair (it costs a third
    of a parse): strict XML refuses controls and surrogate references, so
    such documents always go to feedparser, whose entries are repaired."""
    document = rss_document(f"<item><title>{title}</title><guid>g</guid></item>").encode()
    assert shape_feed(document) is None
    (entry,) = parse_feed(document, url="https://p.example.com/feed").entries
    assert not UNSTORABLE.search(entry.title) and entry.title.startswith("a")


# --------------------------------------------------------------------------
# What counts as "the database is unavailable"


class _Orig(Exception):
    """A DBAPI exception as psycopg (``sqlstate``) or sqlite3 (``sqlite_errorname``) makes it."""

    def __init__(self, sqlstate: str | None = None, sqlite_errorname: str | None = None) -> None:
        super().__init__("driver message")
        self.sqlstate = sqlstate
        self.sqlite_errorname = sqlite_errorname


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (sa.OperationalError("SELECT 1", {}, _Orig()), True),  # connection refused: no state
        (sa.OperationalError("SELECT 1", {}, _Orig("08006")), True),  # connection failure
        (sa.OperationalError("SELECT 1", {}, _Orig("57P01")), True),  # admin shutdown
        (sa.OperationalError("SELECT 1", {}, _Orig("53300")), True),  # too many connections
        (sa.InterfaceError("SELECT 1", {}, _Orig()), True),
        (sa.OperationalError("SELECT 1", {}, _Orig(sqlite_errorname="SQLITE_BUSY")), True),
        (sa.OperationalError("SELECT 1", {}, _Orig(sqlite_errorname="SQLITE_IOERR")), True),
        (sa.DBAPIError("SELECT 1", {}, _Orig("22001"), connection_invalidated=True), True),
        (sa.TimeoutError("QueuePool limit reached"), True),
        (ConnectionResetError("reset by peer"), True),
        (sa.DataError("INSERT", {}, _Orig("22001")), False),  # value too long
        (sa.DataError("INSERT", {}, _Orig()), False),  # psycopg: NUL in text
        (sa.IntegrityError("INSERT", {}, _Orig("23505")), False),
        (sa.ProgrammingError("INSERT", {}, _Orig("42703")), False),
        (sa.OperationalError("INSERT", {}, _Orig("54000")), False),  # index row too big
        (sa.OperationalError("UPDATE", {}, _Orig("40P01")), False),  # deadlock victim
        (sa.OperationalError("INSERT", {}, _Orig(sqlite_errorname="SQLITE_TOOBIG")), False),
        (UnicodeEncodeError("utf-8", HIGH, 0, 1, "surrogates not allowed"), False),
        (ValueError("a bug"), False),
    ],
    ids=lambda v: v if isinstance(v, bool) else type(v).__name__,
)
def test_database_unavailable(exc: BaseException, unavailable: bool) -> None:
    assert database_unavailable(exc) is unavailable


def test_describe_error_is_one_repaired_line_with_the_type() -> None:
    described = describe_error(ValueError(f"bad \x00value {HIGH}\n[SQL: INSERT ... huge]"))
    assert described == f"ValueError: bad value {FFFD}"
    assert describe_error(RuntimeError()) == "RuntimeError"
    assert len(describe_error(ValueError("x" * 5000))) == 500


# --------------------------------------------------------------------------
# Each poison through the whole pipeline, on SQLite and on PostgreSQL


@dataclass(frozen=True, slots=True)
class Stored:
    """What the poisoned feed left in the database."""

    report: FeedReport
    feed: FeedState
    title: str
    body: str
    entry: dict[str, Any]  # the entries row: key, guid, link, link_key, author, raw
    requests: int


@dataclass(frozen=True, slots=True)
class Poison:
    body: str | bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    check: Callable[[Stored], None] = lambda stored: None


def _json_feed(item: dict[str, Any], title: str = "JSON 频道") -> str:
    # json.dumps writes a lone surrogate as "\ud83d": exactly what JavaScript sends.
    return json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "title": title, "items": [item]}
    )


def _rss_item(title: str, body: str, guid: str, link: str = "https://p.example.com/1") -> str:
    return rss_document(
        f"<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>"
        f"<author>编辑部</author><description>{body}</description></item>"
    )


def _check_json_surrogate(s: Stored) -> None:
    assert s.title == f"半个 {FFFD} 表情"
    assert f"正文 {FFFD}" in s.body
    assert s.entry["guid"] == f"id-{FFFD}"
    assert s.entry["author"] == f"作者{FFFD}"
    assert s.entry["raw"]["item"]["tags"] == [f"标签{FFFD}"]
    assert s.entry["raw"]["summary_html"] == f"摘要 {FFFD}"


def _check_pair(s: Stored) -> None:
    assert s.title == f"笑脸 {EMOJI} 完整"
    assert EMOJI in s.body and FFFD not in s.body
    assert s.entry["guid"] == f"g-{EMOJI}"


def _check_lone_reference(s: Stored) -> None:
    assert s.title == f"半个 {FFFD}"
    assert FFFD in s.body


def _check_controls(s: Stored) -> None:
    assert s.title == "NUL 与控制字符"
    assert "ab\tc" in s.entry["raw"]["content_html"]  # tab kept, NUL and ESC gone
    assert "\n" in s.entry["raw"]["content_html"]  # line breaks are text
    assert s.entry["guid"] == "nul-guid"
    assert s.entry["author"] == "作者"


def _check_long_guid(s: Stored) -> None:
    key = s.entry["key"]
    assert len(key) <= 2048 and len(key.encode("utf-8")) <= 2048
    assert key.startswith("guid:ggg") and "|sha256:" in key
    assert s.entry["guid"] == "g" * 3000  # the column is text: kept whole


def _check_long_cjk_guid(s: Stored) -> None:
    key = s.entry["key"]
    assert len(key.encode("utf-8")) <= 2048 and key.startswith("guid:中中")
    assert s.entry["guid"] == "中" * 1000


def _check_long_cjk_link(s: Stored) -> None:
    assert s.entry["link"] == "https://p.example.com/" + "新" * 900
    assert s.entry["link_key"] is None  # too long for its index: matched by guid alone


def _check_no_etag(s: Stored) -> None:
    assert s.feed.etag is None
    assert s.feed.last_modified == "Tue, 01 Mar 2022 13:31:34 GMT"


def _check_no_last_modified(s: Stored) -> None:
    assert s.feed.last_modified is None
    assert s.feed.etag == '"short"'


def _check_guid_newline(s: Stored) -> None:
    assert s.entry["guid"] == "aFORGED line"


POISONS: dict[str, Poison] = {
    "json-lone-surrogate": Poison(
        _json_feed(
            {
                "id": f"id-{HIGH}",
                "url": "https://p.example.com/1",
                "title": f"半个 {HIGH} 表情",
                "content_html": f"<p>正文 {HIGH}</p>",
                "summary": f"摘要 {LOW}",
                "authors": [{"name": f"作者{HIGH}"}],
                "tags": [f"标签{LOW}"],
                "image": f"https://img.example.com/{HIGH}.jpg",
            },
            title=f"频道 {HIGH}",
        ),
        "application/feed+json",
        check=_check_json_surrogate,
    ),
    "rss-surrogate-pair-references": Poison(
        _rss_item(
            "笑脸 &#55357;&#56832; 完整",
            "&lt;p&gt;正文 &#xD83D;&#xDE00;&lt;/p&gt;",
            "g-&#55357;&#56832;",
        ),
        check=_check_pair,
    ),
    "rss-lone-reference": Poison(
        _rss_item("半个 &#55357;", "正文 &#56832;", "lone-ref"), check=_check_lone_reference
    ),
    "json-nul-and-controls": Poison(
        _json_feed(
            {
                "id": "nul-\x00guid",
                "url": "https://p.example.com/1",
                "title": "NUL\x00 与控制\x01字符\x1b",
                "content_html": "<p>a\x00b\tc</p>\n<p>d\x1be</p>",
                "authors": [{"name": "作\x00者"}],
                "tags": ["t\x00"],
            },
            title="频道\x00",
        ),
        "application/feed+json",
        check=_check_controls,
    ),
    "rss-nul-reference": Poison(_rss_item("空&#0;字符", "正文&#0;", "nul-ref")),
    "guid-over-2048": Poison(_rss_item("长 GUID", "正文", "g" * 3000), check=_check_long_guid),
    "cjk-guid-over-2048-bytes": Poison(
        _rss_item("长中文 GUID", "正文", "中" * 1000), check=_check_long_cjk_guid
    ),
    "cjk-link-over-2048-bytes": Poison(
        _rss_item("长链接", "正文", "long-link", link="https://p.example.com/" + "新" * 900),
        check=_check_long_cjk_link,
    ),
    "etag-over-1024": Poison(
        _rss_item("长 ETag", "正文", "etag"),
        headers={"ETag": '"' + "e" * 1100 + '"', "Last-Modified": "Tue, 01 Mar 2022 13:31:34 GMT"},
        check=_check_no_etag,
    ),
    "last-modified-over-128": Poison(
        _rss_item("长 Last-Modified", "正文", "lm"),
        headers={"ETag": '"short"', "Last-Modified": "Tue, 01 Mar 2022 " + "9" * 200},
        check=_check_no_last_modified,
    ),
    "guid-with-newline": Poison(
        _json_feed(
            {"id": "a\nFORGED line", "url": "https://p.example.com/1", "title": "换行 GUID"}
        ),
        "application/feed+json",
        check=_check_guid_newline,
    ),
}


def _serve_good(server: LocalServer, path: str, n: int = 3) -> list[str]:
    titles = [f"正常新闻 {path} 第{i}条" for i in range(n)]
    items = "".join(
        f"<item><title>{title}</title><link>https://news.example.com{path}/{i}</link>"
        f"<guid>{path}-{i}</guid><pubDate>Tue, 01 Mar 2022 13:3{i}:00 GMT</pubDate>"
        f"<description>&lt;p&gt;第{i}条正文&lt;/p&gt;</description></item>"
        for i, title in enumerate(titles)
    )
    server.route(path, EtagFeed(rss_document(items)))
    return titles


def _serve_poison(server: LocalServer, poison: Poison, path: str = "/poison") -> None:
    body = (
        poison.body.encode("utf-8", "surrogatepass")
        if isinstance(poison.body, str)
        else poison.body
    )
    server.route(path, body=body, headers={"Content-Type": poison.content_type, **poison.headers})


def _entry_rows(store: Store, outlet: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                m.Entry.key, m.Entry.guid, m.Entry.link, m.Entry.link_key, m.Entry.author,
                m.Entry.raw, m.Post.title, m.Post.body,
            )
            .join(m.Post, m.Post.id == m.Entry.post_id)
            .join(m.Feed, m.Feed.id == m.Entry.feed_id)
            .where(m.Feed.outlet == outlet)
        )  # fmt: skip
        return [dict(row._mapping) for row in rows]


def _all_stored_text(store: Store) -> Iterator[tuple[str, str]]:
    """Every text the database holds for posts, entries and feeds (raw JSON as written)."""
    with store.engine.connect() as conn:
        for table, columns in (
            ("posts", "title, body, headimg, thumbnail, author, link"),
            ("entries", "key, guid, link, link_key, author, CAST(raw AS TEXT)"),
            ("feeds", "etag, last_modified, last_error"),
        ):
            for row in conn.execute(text(f"SELECT {columns} FROM {table}")):
                for value in row:
                    if isinstance(value, str):
                        yield table, value


@pytest.mark.parametrize("case", list(POISONS), ids=list(POISONS))
async def test_a_poisoned_item_is_stored_repaired_beside_a_whole_good_feed(
    case: str, store: Store, local_server: LocalServer, tmp_path: Path
) -> None:
    poison = POISONS[case]
    _serve_poison(local_server, poison)
    good_titles = _serve_good(local_server, "/good.xml")
    config = loads_config(
        feeds_yaml(
            {
                (GROUP, GOOD, SECTION): local_server.url("/good.xml"),
                (GROUP, POISON, SECTION): local_server.url("/poison"),
            }
        )
    )
    export_dir = tmp_path / "posts"
    reports = {
        r.outlet: r
        for r in await fetch_once(store, config, config.enabled_feeds(), export_dir=export_dir)
    }
    assert reports[GOOD].error is None and reports[GOOD].new == 3
    assert reports[POISON].error is None, reports[POISON].error
    assert reports[POISON].new == 1
    assert {p.post.title for p in store.iter_posts(outlet=GOOD)} == set(good_titles)
    (entry,) = _entry_rows(store, POISON)
    assert isinstance(entry["raw"], dict), "the raw entry is stored and reads back as JSON"
    for where, value in _all_stored_text(store):
        assert not UNSTORABLE.search(value), (where, value[:200])
    assert len(list(export_dir.glob("*.md"))) == 4  # every post written out, the poisoned one too
    feeds = {f.outlet: f for f in store.feeds()}
    poison.check(
        Stored(
            report=reports[POISON],
            feed=feeds[POISON],
            title=entry["title"],
            body=entry["body"],
            entry=entry,
            requests=len(local_server.requests_to("/poison")),
        )
    )
    # A second pass finds the same item under the same key: repairs are stable.
    again = {r.outlet: r for r in await fetch_once(store, config, config.enabled_feeds())}
    assert (again[POISON].error, again[POISON].new) == (None, 0)
    assert again[POISON].duplicate + again[POISON].unchanged == 1


# --------------------------------------------------------------------------
# Isolation: an exception fails its item or its feed, nothing else


async def test_an_item_that_cannot_be_built_is_skipped_and_counted_and_the_rest_stored(
    store: Store, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    titles = _serve_good(local_server, "/mixed.xml", n=3)
    real = items_module.entry_to_post

    def fragile(entry: Any, **kwargs: Any) -> Any:
        if entry.title == titles[1]:
            raise RuntimeError("clean-up bug met input nobody foresaw")
        return real(entry, **kwargs)

    monkeypatch.setattr(items_module, "entry_to_post", fragile)
    config = loads_config(feeds_yaml({(GROUP, GOOD, SECTION): local_server.url("/mixed.xml")}))
    (report,) = await fetch_once(store, config, config.enabled_feeds())
    assert report.error is None
    assert (report.new, report.skipped) == (2, 1)
    assert any("skipped: RuntimeError: clean-up bug" in note for note in report.notes)
    assert {p.post.title for p in store.iter_posts()} == {titles[0], titles[2]}
    assert report.log_fields()["skipped"] == 1


async def test_an_unforeseen_exception_fails_its_feed_only_with_a_repaired_reason(
    store: Store, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exception's message quotes the feed (NUL, half an emoji, a second
    line): the feed row stores it repaired, on both backends, and backs off."""
    good_titles = _serve_good(local_server, "/good.xml")
    _serve_good(local_server, "/crash.xml")
    real = worker_module.parse_and_build

    def crash_on_one(content: bytes, url: str, *args: Any) -> Any:
        if url.endswith("/crash.xml"):
            raise RuntimeError(f"item 'x\x00{HIGH}'\nsecond line")
        return real(content, url, *args)

    # The pipeline takes the worker's entry point when a body arrives.
    monkeypatch.setattr(worker_module, "parse_and_build", crash_on_one)
    config = loads_config(
        feeds_yaml(
            {
                (GROUP, GOOD, SECTION): local_server.url("/good.xml"),
                (GROUP, POISON, SECTION): local_server.url("/crash.xml"),
            }
        )
    )
    reports = {r.outlet: r for r in await fetch_once(store, config, config.enabled_feeds())}
    assert reports[GOOD].error is None and reports[GOOD].new == 3
    assert {p.post.title for p in store.iter_posts()} == set(good_titles)
    failed = reports[POISON]
    assert failed.error == f"RuntimeError: item 'x{FFFD}'"
    assert failed.error_class == "transient"
    feed = {f.outlet: f for f in store.feeds()}[POISON]
    assert feed.last_error == failed.error and feed.error_class == "transient"
    assert feed.error_streak == 1
    assert feed.next_check_at is not None and feed.next_check_at > datetime.now(UTC)


async def test_an_article_page_with_nul_and_controls_is_repaired_as_fetched(
    local_server: LocalServer,
) -> None:
    """``full_text`` pages become post bodies (and are kept for reprocess)."""
    page = "<html><body><div class=a>正文\x00 一\x1b段\n第二行</div></body></html>"
    local_server.route(
        "/article", body=page.encode(), headers={"Content-Type": "text/html; charset=utf-8"}
    )
    async with Fetcher() as fetcher:
        stored = await fetch_page(fetcher, local_server.url("/article"), guard=None)
    assert "<div class=a>正文 一段\n第二行</div>" in stored.html


# --------------------------------------------------------------------------
# The scenarios through the real CLI and the daemon


def _farm(server: LocalServer, tmp_path: Path, poison: Poison, good: int) -> Path:
    feeds = {}
    for n in range(good):
        _serve_good(server, f"/g{n}.xml", n=2)
        feeds[(GROUP, f"Outlet {n}", SECTION)] = server.url(f"/g{n}.xml")
    _serve_poison(server, poison)
    feeds[(GROUP, POISON, SECTION)] = server.url("/poison")
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(feeds), encoding="utf-8")
    return config


@pytest.mark.slow
def test_fetch_of_40_good_feeds_and_a_poisoned_one_stores_all_41(
    database_url: str, local_server: LocalServer, tmp_path: Path
) -> None:
    """The issue's pass: the half emoji used to kill ``aggregator fetch`` with
    a UnicodeEncodeError and cancel the feeds in flight (12 of 40 stored)."""
    config = _farm(local_server, tmp_path, POISONS["json-lone-surrogate"], good=40)
    proc = aggregator(
        "fetch", "--config", str(config), "--workers", "2", "--export", str(tmp_path / "out"),
        db=database_url, cwd=tmp_path, env={"COLUMNS": "300"},
    )  # fmt: skip
    assert proc.stdout.endswith("81 new, 0 duplicate, 0 updated, 0 failed (41 feeds)\n")
    assert "Traceback" not in proc.stderr
    assert len(list((tmp_path / "out").glob("*.md"))) == 81
    store = Store.open(database_url)
    try:
        (entry,) = _entry_rows(store, POISON)
        assert entry["title"] == f"半个 {FFFD} 表情"
    finally:
        store.close()


def test_fetch_makes_refused_statements_rows_of_the_summary_never_a_traceback(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """Two feeds the database refuses, each in its own way, beside two good
    ones: SQLite triggers refuse the posts of one (recorded on its feed row,
    like any failure) and every write of the other's row (it cannot even be
    recorded: the summary says so).  The good feeds are stored; exit 1."""
    _serve_good(local_server, "/g0.xml", n=2)
    _serve_good(local_server, "/g1.xml", n=2)
    # Served late, so each refused write is a batch of its own (a failed
    # batch failing its other feeds' jobs is the batch writer's business).
    refused = rss_document("<item><title>拒绝 this</title><guid>r1</guid></item>")
    local_server.route("/refused.xml", body=refused, delay=1.0)
    frozen = rss_document("<item><title>t</title><guid>f</guid></item>")
    local_server.route("/frozen.xml", body=frozen, delay=2.0)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feeds_yaml(
            {
                (GROUP, "Outlet 0", SECTION): local_server.url("/g0.xml"),
                (GROUP, "Outlet 1", SECTION): local_server.url("/g1.xml"),
                (GROUP, "Refused", SECTION): local_server.url("/refused.xml"),
                (GROUP, "Frozen", SECTION): local_server.url("/frozen.xml"),
            }
        ),
        encoding="utf-8",
    )
    path = tmp_path / "a.db"
    db = f"sqlite:///{path}"
    aggregator("db", "upgrade", db=db, cwd=tmp_path)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TRIGGER refuse_posts BEFORE INSERT ON posts WHEN NEW.title LIKE '拒绝%'
            BEGIN SELECT RAISE(ABORT, 'posts like this are refused'); END;
            CREATE TRIGGER freeze_feed BEFORE UPDATE ON feeds
            WHEN NEW.outlet = 'Frozen' AND NEW.last_checked_at IS NOT NULL
            BEGIN SELECT RAISE(ABORT, 'this feed row is frozen'); END;
            """
        )
    proc = aggregator(
        "fetch", "--config", str(config), db=db, cwd=tmp_path, check=False,
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.endswith("4 new, 0 duplicate, 0 updated, 2 failed (4 feeds)\n"), (
        proc.stdout + proc.stderr
    )
    assert "not stored: IntegrityError: (sqlite3.IntegrityError) this feed row is frozen" in (
        proc.stdout
    )
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT outlet, last_error FROM feeds").fetchall())
    assert rows["Refused"] == "IntegrityError: (sqlite3.IntegrityError) posts like this are refused"
    assert rows["Frozen"] is None and rows["Outlet 0"] is None and rows["Outlet 1"] is None


def test_a_guid_with_a_newline_forges_no_log_line_in_text_or_json(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """An impossible date makes the pipeline log the entry's GUID: the GUID's
    newline (and the error text's) must not start a line of its own."""
    forged = "2026-01-01 00:00:00,000 ERROR aggregator.service.daemon: database unavailable"
    document = _json_feed(
        {
            "id": f"guid-1\n{forged}",
            "url": "https://p.example.com/1",
            "title": "换行\n" + forged,
            "date_published": "3020-01-01T00:00:00Z",
        }
    )
    local_server.route("/p.json", body=document, headers={"Content-Type": "application/json"})
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml({(GROUP, POISON, SECTION): local_server.url("/p.json")}))
    for fmt in ("text", "json"):
        # A fresh database each time: the date note is logged for new posts only.
        db = f"sqlite:///{tmp_path / f'{fmt}.db'}"
        proc = aggregator(
            "--log-format", fmt, "fetch", "--config", str(config), db=db, cwd=tmp_path
        )
        lines = proc.stderr.splitlines()
        assert lines, proc.stderr
        assert not any(line.startswith("2026-01-01") for line in lines), proc.stderr
        assert not any(line.startswith(forged[:10]) for line in lines)
        if fmt == "json":
            records = [json.loads(line) for line in lines]
            assert all("\n" not in str(value) for r in records for value in r.values())
            assert any(r.get("message", "").startswith("entry date future") for r in records)
        else:
            assert any("entry date future" in line for line in lines), proc.stderr


def test_a_traceback_in_text_logs_cannot_pass_for_a_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import logging

    configure_logging("INFO", "text")
    log = logging.getLogger("aggregator.test")
    try:
        raise ValueError("bad value\n2026-01-01 00:00:00,000 ERROR forged: record")
    except ValueError:
        log.exception("poll of %s failed", "http://x/\rfeed")
    lines = capsys.readouterr().err.splitlines()
    assert "\\rfeed" in lines[0]
    assert all(line.startswith("    ") for line in lines[1:]), lines
    assert any("forged: record" in line for line in lines[1:])


def _healthz(base: str) -> int | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code
    except httpx.TransportError:
        return None


@pytest.mark.slow
@pytest.mark.postgres
def test_the_daemon_on_postgres_stores_poisoned_feeds_and_stays_healthy(
    postgres_url: str, local_server: LocalServer, tmp_path: Path
) -> None:
    """The daemon's side of the issue: NUL, a long GUID, ETag and Last-Modified
    used to raise DataError on PostgreSQL, which the daemon took for "database
    down" (/healthz 503, the feed re-polled every second, its batch lost)."""
    feeds = {}
    for n in range(3):
        _serve_good(local_server, f"/g{n}.xml", n=2)
        feeds[(GROUP, f"Outlet {n}", SECTION)] = local_server.url(f"/g{n}.xml")
    poisoned = [
        "json-nul-and-controls",
        "guid-over-2048",
        "etag-over-1024",
        "last-modified-over-128",
    ]
    for name in poisoned:
        _serve_poison(local_server, POISONS[name], f"/{name}")
        feeds[(GROUP, name, SECTION)] = local_server.url(f"/{name}")
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(feeds, interval="1h"), encoding="utf-8")
    aggregator("db", "upgrade", db=postgres_url, cwd=tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with AggregatorProcess(
            "run", "--config", str(config), "--http", f"127.0.0.1:{port}",
            db=postgres_url, cwd=tmp_path,
        ) as daemon:  # fmt: skip

            def stored() -> int:
                with engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM posts")).scalar() or 0)

            wait_for(lambda: stored() == 6 + len(poisoned), 40, "every feed stored", step=0.3)
            healthy = []
            for _ in range(8):  # some seconds of claims: nothing re-polled, always 200
                healthy.append(_healthz(base))
                time.sleep(0.5)
            assert healthy == [200] * 8, daemon.log
            for name in poisoned:
                assert len(local_server.requests_to(f"/{name}")) == 1, name
            assert daemon.stop()[0] == 0
        assert "database unavailable" not in daemon.log
        assert "Traceback" not in daemon.log
        with engine.connect() as conn:
            failed = conn.execute(text("SELECT count(*) FROM feeds WHERE last_error IS NOT NULL"))
            assert failed.scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_a_statement_postgres_refuses_fails_its_feed_not_the_daemon(
    postgres_url: str, local_server: LocalServer, tmp_path: Path
) -> None:
    """A real DataError from PostgreSQL (a trigger refusing one feed's posts
    with SQLSTATE 22023): the daemon used to take it for "database down"
    (/healthz 503, the feed re-polled every second).  Now it is that feed's
    transient error: backed off, /healthz 200, the other feeds stored."""
    for n in range(2):
        _serve_good(local_server, f"/g{n}.xml", n=2)
    # A second late, so its refused write is a batch of its own.
    refused = rss_document("<item><title>拒绝 this</title><guid>r1</guid></item>")
    local_server.route("/refused.xml", body=refused, delay=1.0)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feeds_yaml(
            {
                (GROUP, "Outlet 0", SECTION): local_server.url("/g0.xml"),
                (GROUP, "Outlet 1", SECTION): local_server.url("/g1.xml"),
                (GROUP, "Refused", SECTION): local_server.url("/refused.xml"),
            },
            interval="1h",
        ),
        encoding="utf-8",
    )
    aggregator("db", "upgrade", db=postgres_url, cwd=tmp_path)
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.title LIKE '拒绝%' THEN "
                    "RAISE EXCEPTION 'posts like this are refused' USING ERRCODE = '22023'; "
                    "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON posts "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with AggregatorProcess(
            "run", "--config", str(config), "--http", f"127.0.0.1:{port}",
            db=postgres_url, cwd=tmp_path,
        ) as daemon:  # fmt: skip

            def refused_row() -> tuple[Any, ...] | None:
                with engine.connect() as conn:
                    row = conn.execute(
                        text(
                            "SELECT last_error, error_class, error_streak, next_check_at, "
                            "last_checked_at "
                            "FROM feeds WHERE outlet = 'Refused' AND last_error IS NOT NULL"
                        )
                    ).first()
                    return tuple(row) if row else None

            def stored() -> int:
                with engine.connect() as conn:
                    return int(conn.execute(text("SELECT count(*) FROM posts")).scalar() or 0)

            # New feeds are first polled at random within STARTUP_SPREAD (10 s),
            # so a good feed may come well after the refused one: wait for both.
            wait_for(
                lambda: refused_row() is not None and stored() == 4,
                40,
                "the refused feed's error recorded and the good feeds stored",
                step=0.3,
            )
            healthy = []
            for _ in range(8):  # four seconds of claims every second
                healthy.append(_healthz(base))
                time.sleep(0.5)
            assert healthy == [200] * 8, daemon.log
            assert len(local_server.requests_to("/refused.xml")) == 1, "re-polled, not backed off"
            assert daemon.stop()[0] == 0
        last_error, error_class, streak, next_check, checked = refused_row() or ()
        assert last_error.startswith("DataError: (psycopg.errors.InvalidParameterValue) posts like")
        assert (error_class, streak) == ("transient", 1)
        # A transient error's quick retry (30 s), then backing off: never every
        # second.  Counted from the failed poll, not from now: the good feeds
        # may be polled up to 10 s after it, and a loaded machine adds more.
        assert (next_check - checked).total_seconds() >= QUICK_RETRIES[0].total_seconds()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM posts")).scalar() == 4
        assert "database unavailable" not in daemon.log
    finally:
        engine.dispose()
