"""Issue 13: no story of the corpus is lost.

Every titled entry of every feed in the shared corpus is run through the path
a fetch takes -- parse, build the items (what a parse worker does), store
(SQLite) -- and must end up as a post.  The only entries allowed to leave no
post of their own are those whose title and text are identical to an entry
stored before them (the same story listed twice, or carried by two feeds);
the test names each of those and the entry it repeats, and names every file
that is not a feed at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from feedbuild import CORPUS, corpus_rows, require_corpus

from aggregator.config.feeds import FeedSpec
from aggregator.content.items import IngestItem
from aggregator.parse.parser import FeedParseError
from aggregator.policy.dedup import content_hash
from aggregator.service.worker import parse_and_build
from aggregator.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
#: Corpus files that are not feeds (tests/test_parse.py says why).
NOT_FEEDS = ("nnw__ScriptingNews.json",)


def _spec(name: str) -> FeedSpec:
    return FeedSpec(
        url=f"https://corpus.example/{name}", outlet="语料", section="测试", group="新媒体"
    )


def _build(name: str) -> list[IngestItem]:
    spec = _spec(name)
    _, items, _ = parse_and_build((CORPUS / name).read_bytes(), spec.url, None, None, spec, NOW)
    return items


def test_every_titled_entry_of_the_corpus_becomes_a_post(tmp_path: Path) -> None:
    require_corpus()
    names = [row["file"] for row in corpus_rows()]
    store = Store.open(f"sqlite:///{tmp_path / 'corpus.db'}")
    try:
        feed_ids = store.sync_feeds([_spec(name) for name in names], now=NOW)
        documents: dict[str, list[IngestItem]] = {}
        not_feeds: list[str] = []
        for name in names:
            try:
                documents[name] = _build(name)
            except FeedParseError as exc:
                not_feeds.append(f"{name}: {exc}")
        first_seen: dict[str, str] = {}  # content hash -> "file: title" that stored it
        repeats: list[str] = []
        for name, items in documents.items():
            store.ingest(feed_ids[_spec(name).url], items, now=NOW)
            for item in items:
                if not item.post.title.strip():
                    continue
                where = f"{name}: {item.post.title[:60]!r}"
                if item.digest in first_seen:
                    repeats.append(f"{where} has the title and text of {first_seen[item.digest]}")
                else:
                    first_seen[item.digest] = where
        stored = {content_hash(p.post.title, p.post.body): p.post.title for p in store.iter_posts()}
        lost = [where for digest, where in first_seen.items() if digest not in stored]
        report = "\n".join(
            [
                f"not feeds ({len(not_feeds)}):",
                *not_feeds,
                f"entries that are repeats, stored once ({len(repeats)}):",
                *repeats,
            ]
        )
        print(report)  # shown with -s / on failure: what was left out and why
        assert not lost, f"{len(lost)} titled entries have no post:\n" + "\n".join(lost)
        # Nothing was skipped by accident: the one file that is no feed is known.
        assert [line.split(":")[0] for line in not_feeds] == list(NOT_FEEDS)
        assert len(first_seen) + len(repeats) > 2000

        # A second poll of the same documents changes nothing: keys are stable.
        for name, items in documents.items():
            again = store.ingest(feed_ids[_spec(name).url], items, now=NOW)
            assert (again.new, again.updated) == (0, 0), name
    finally:
        store.close()


@pytest.mark.parametrize(
    ("name", "stories"),
    [
        # No GUIDs; every item links the project's one news page.
        ("feeder__rss_nixos.xml", 99),
        # No GUIDs; items link the archive page of their week (16 entries, one untitled).
        ("chardet-gb2312__cnblog.org.xml", 15),
        # Two stories share one link.
        ("feeder__rss_ukrnet.xml", 20),
    ],
)
def test_feeds_that_share_links_keep_every_story(tmp_path: Path, name: str, stories: int) -> None:
    require_corpus()
    store = Store.open(f"sqlite:///{tmp_path / 'one.db'}")
    try:
        spec = _spec(name)
        feed_id = store.sync_feeds([spec], now=NOW)[spec.url]
        items = [it for it in _build(name) if it.post.title.strip()]
        result = store.ingest(feed_id, items, now=NOW)
        assert (result.new, result.duplicate, result.updated) == (stories, 0, 0)
        assert sorted(p.post.title for p in store.iter_posts()) == sorted(
            it.post.title for it in items
        )
    finally:
        store.close()
