"""One feed through every stage, in process: full text, failures, feed state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from feedbuild import EtagFeed, rss_document, seed_item, seed_posts
from localserver import LocalServer

from aggregator.config.feeds import Config, loads_config
from aggregator.service.pipeline import FeedReport
from aggregator.service.runner import fetch_once
from aggregator.store import Store


def _config(text: str) -> Config:
    return loads_config(text, source="feeds.yaml")


def _one_feed(url: str, extra: str = "") -> str:
    return (
        "defaults:\n  group: 新媒体\nfeeds:\n"
        f"  - url: {url}\n    outlet: 观察者网\n    section: 头条\n{extra}"
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'a.db'}")


def _article(body: str) -> str:
    return (
        "<html><head><title>x</title></head><body><nav>menu</nav>"
        f'<div class="article-content">{body}<div class="ad">BUY NOW</div>'
        '<p class="related">related stories</p></div></body></html>'
    )


def test_full_text_replaces_the_teaser_and_drops_the_clutter(
    store: Store, local_server: LocalServer
) -> None:
    post = seed_posts()[2]
    teaser = post.__class__(
        **{**{f: getattr(post, f) for f in post.__dataclass_fields__}, "body": "<p>teaser only</p>"}
    )
    local_server.route(
        "/feed.xml", EtagFeed(rss_document(seed_item(teaser, link=local_server.url("/a/1"))))
    )
    local_server.route(
        "/a/1",
        body=_article('<p>第一段 <img src="/img/1.jpg"></p>'),
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    config = _config(
        _one_feed(
            local_server.url("/feed.xml"),
            "    allow_private_networks: true\n"
            "    full_text:\n      selector: .article-content\n      remove: [.ad, .related]\n",
        )
    )
    (report,) = asyncio.run(fetch_once(store, config, config.feeds))
    assert report.new == 1, report
    (stored,) = store.iter_posts()
    body = stored.post.body
    assert "第一段" in body and "teaser only" not in body
    assert "BUY NOW" not in body and "related stories" not in body and "menu" not in body
    assert f'src="{local_server.url("/img/1.jpg")}"' in body  # made absolute against the page
    assert 'referrerpolicy="no-referrer"' in body


def test_full_text_failure_keeps_the_feeds_body_and_says_why(
    store: Store, local_server: LocalServer
) -> None:
    post = seed_posts()[2]
    local_server.route(
        "/feed.xml", EtagFeed(rss_document(seed_item(post, link=local_server.url("/gone"))))
    )
    local_server.route("/gone", status=404, body="no")
    config = _config(
        _one_feed(
            local_server.url("/feed.xml"),
            "    allow_private_networks: true\n    full_text:\n      selector: .x\n",
        )
    )
    (report,) = asyncio.run(fetch_once(store, config, config.feeds))
    assert report.new == 1 and not report.failed
    assert any("full text" in note and "404" in note for note in report.notes), report.notes
    (stored,) = store.iter_posts()
    assert stored.post.body == post.body


def test_gone_disables_the_feed_with_a_reason(store: Store, local_server: LocalServer) -> None:
    local_server.route("/feed.xml", status=410, body="gone")
    config = _config(_one_feed(local_server.url("/feed.xml")))
    (report,) = asyncio.run(fetch_once(store, config, config.feeds))
    assert report.failed and report.error_class == "gone"
    (feed,) = store.feeds()
    assert feed.disabled_reason and "410" in feed.disabled_reason
    assert not feed.active
    assert (
        store.claim_due(now=datetime.now(UTC), limit=5, lease=timedelta(minutes=1), owner="t") == []
    )


def test_validators_and_schedule_are_stored_on_the_feed(
    store: Store, local_server: LocalServer
) -> None:
    feed = EtagFeed(rss_document("<ttl>120</ttl>" + seed_item(seed_posts()[2])))
    local_server.route("/feed.xml", feed)
    config = _config(_one_feed(local_server.url("/feed.xml")))
    before = datetime.now(UTC)
    asyncio.run(fetch_once(store, config, config.feeds))
    (state,) = store.feeds()
    assert state.etag == feed.etag
    assert state.last_status == 200 and state.error_streak == 0
    # <ttl>120</ttl> asks for two hours, more than the 15 minute interval
    assert state.next_check_at is not None
    assert (state.next_check_at - before).total_seconds() >= 7200


def test_a_slow_body_is_cut_by_the_deadline_and_recorded(
    store: Store, local_server: LocalServer
) -> None:
    from aggregator.fetch.fetcher import Fetcher, FetchLimits

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        for _ in range(30):
            await response.write(b" ")
            await asyncio.sleep(0.2)
        return response

    local_server.route("/feed.xml", drip)
    config = _config(_one_feed(local_server.url("/feed.xml")))

    async def run() -> list[FeedReport]:
        async with Fetcher(FetchLimits(deadline=1.0)) as fetcher:
            return await fetch_once(store, config, config.feeds, fetcher=fetcher)

    (report,) = asyncio.run(run())
    assert report.failed and report.error_class == "transient"
    (state,) = store.feeds()
    assert "deadline" in (state.last_error or "")
    assert state.error_streak == 1


def test_a_pass_over_many_feeds_parses_in_worker_processes(
    store: Store, local_server: LocalServer
) -> None:
    """At PROCESS_POOL_MIN_FEEDS feeds fetch_once parses in spawned processes."""
    from dataclasses import replace

    from aggregator.service import runner

    post = seed_posts()[2]
    n = runner.PROCESS_POOL_MIN_FEEDS
    feeds = []
    for f in range(n):
        items = "".join(
            seed_item(
                replace(post, title=f"{post.title} {f}-{i}"),
                link=f"https://news.example.com/{f}/{i}",
                guid=f"{f}-{i}",
            )
            for i in range(2)
        )
        local_server.route(f"/f{f}.xml", EtagFeed(rss_document(items)))
        feeds.append(
            f"  - url: {local_server.url(f'/f{f}.xml')}\n    outlet: 观察者网\n    section: s{f}\n"
        )
    config = _config("defaults:\n  group: 新媒体\nfeeds:\n" + "".join(feeds))
    cold = asyncio.run(fetch_once(store, config, config.feeds))
    assert [r.status for r in cold] == [200] * n and not any(r.failed for r in cold)
    assert sum(r.new for r in cold) == 2 * n
    assert store.count_posts() == 2 * n
    warm = asyncio.run(fetch_once(store, config, config.feeds))
    assert [r.status for r in warm] == [304] * n
    assert sum(r.new + r.updated + r.duplicate for r in warm) == 0


# --- feed-row updates are written in groups --------------------------------------


async def test_concurrent_writes_share_transactions() -> None:
    from aggregator.service.pipeline import _Batches

    batches: list[list[int]] = []

    async def write(jobs: list[int]) -> list[int]:
        batches.append(jobs)
        await asyncio.sleep(0.01)  # a commit takes time; jobs pile up meanwhile
        return [job * 10 for job in jobs]

    writes = _Batches(write, limit=16)
    results = await asyncio.gather(*(writes.submit(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]  # each caller gets its own result
    written = [job for batch in batches for job in batch]
    assert sorted(written) == list(range(50))  # every job, once
    assert len(batches) < 10  # ... in a few transactions, not fifty
    assert max(len(batch) for batch in batches) <= 16  # and none larger than the limit
    assert await writes.submit(99) == 990  # the writer starts again when idle
    assert batches[-1] == [99]


async def test_a_lingering_writer_gathers_jobs_that_arrive_apart() -> None:
    """A pass's writes wait for others to join them, but never past a full batch."""
    from aggregator.service.pipeline import _Batches

    batches: list[list[int]] = []

    async def write(jobs: list[int]) -> list[int]:
        batches.append(jobs)
        return jobs

    writes = _Batches(write, limit=4, linger=60.0)

    async def later(job: int) -> int:
        await asyncio.sleep(0.01 * job)  # parsed feeds come out one at a time
        return await writes.submit(job)

    # A full batch is written at once: the guard fails long before the linger ends.
    together = asyncio.gather(*(later(i) for i in range(4)))
    assert await asyncio.wait_for(together, 30) == [0, 1, 2, 3]
    assert batches == [[0, 1, 2, 3]]
    # A batch that never fills is written when the linger is over.
    batches.clear()
    writes = _Batches(write, limit=4, linger=0.05)
    assert await asyncio.gather(writes.submit(5), writes.submit(6)) == [5, 6]
    assert batches == [[5, 6]]


async def test_a_failed_batch_reaches_every_caller() -> None:
    from aggregator.service.pipeline import _Batches

    calls = 0

    async def write(jobs: list[int]) -> list[None]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("database went away")
        return [None] * len(jobs)

    writes = _Batches(write)
    outcomes = await asyncio.gather(*(writes.submit(i) for i in range(10)), return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, ConnectionError)]
    assert failed and all(o is None or isinstance(o, ConnectionError) for o in outcomes)
    await writes.submit(1)  # the next job is written normally
    assert calls >= 2


async def test_a_job_that_failed_on_its_own_fails_only_its_caller() -> None:
    from aggregator.service.pipeline import _Batches

    batches: list[list[int]] = []

    async def write(jobs: list[int]) -> list[int | Exception]:
        batches.append(jobs)
        await asyncio.sleep(0.01)
        return [ValueError(f"job {job} refused") if job == 3 else job * 10 for job in jobs]

    writes = _Batches(write)
    outcomes = await asyncio.gather(*(writes.submit(i) for i in range(6)), return_exceptions=True)
    assert isinstance(outcomes[3], ValueError) and str(outcomes[3]) == "job 3 refused"
    assert [o for i, o in enumerate(outcomes) if i != 3] == [0, 10, 20, 40, 50]
    assert any(3 in batch and len(batch) > 1 for batch in batches)  # it shared a batch


async def test_a_cancelled_caller_still_has_its_job_written() -> None:
    """A feed's posts and row go in together or not at all, even if its poll is cancelled."""
    from aggregator.service.pipeline import _Batches

    written: list[int] = []
    release = asyncio.Event()

    async def write(jobs: list[int]) -> list[None]:
        await release.wait()
        written.extend(jobs)
        return [None] * len(jobs)

    writes = _Batches(write)
    poll = asyncio.ensure_future(writes.submit(7))
    await asyncio.sleep(0)
    poll.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await poll
    await writes.submit(8)
    assert written == [7, 8]


async def test_warm_pass_writes_every_feed_row(local_server: LocalServer, tmp_path: Path) -> None:
    """Forty feeds answering 304 at once: every row gets its 304 and next poll."""
    lines = ["defaults: {group: g, section: s, interval: 15m}", "feeds:"]
    for i in range(40):
        feed = EtagFeed(rss_document(seed_item(seed_posts()[i % 5])))
        local_server.route(f"/f{i}.xml", feed)
        lines += [f"  - url: {local_server.url(f'/f{i}.xml')}", f"    outlet: o{i}"]
    config = loads_config("\n".join(lines) + "\n", source="feeds.yaml")
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        await fetch_once(store, config, config.enabled_feeds())
        before = {f.url: f.last_checked_at for f in store.feeds()}
        reports = await fetch_once(store, config, config.enabled_feeds())
        assert {r.status for r in reports} == {304}
        after = store.feeds()
        assert len(after) == 40
        assert all(f.last_status == 304 and f.error_streak == 0 for f in after)
        assert all(f.last_checked_at > before[f.url] for f in after)
        soon = datetime.now(UTC) + timedelta(minutes=5)
        assert all(f.next_check_at > soon for f in after)
    finally:
        store.close()
