"""How long the operator's page takes with many feeds: prints a table of medians.

Builds a database (SQLite by default, or ``--database-url``) with ``--feeds``
feeds, ``--posts-per-feed`` posts each (with entries and export-ledger rows),
and ``--polls-per-feed`` polls each over the last 24 hours; a tenth of the
feeds failing, some throttled, warming and disabled.  Then it serves the
page from this process (the real HttpServer and OperatorSite, on 127.0.0.1)
and times each URL end to end over HTTP: ``--runs`` requests, median and
max.  The header's 5-second cache is cleared before every request, so each
one pays for the totals and the 24-hour chart (the worst case).

    python bench/page_timing.py                      # 30,000 feeds, SQLite
    python bench/page_timing.py --feeds 3000 --runs 3
    python bench/page_timing.py --database-url postgresql://postgres@127.0.0.1/bench_page

Nothing here is a test; the target is under 0.5 s a page on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregator.service.metrics import Metrics
from aggregator.service.server import HttpServer
from aggregator.service.web.site import OperatorSite
from aggregator.store import Store
from aggregator.store import models as m
from aggregator.store.polls import PollRecord, record_polls

NOW = datetime.now(UTC).replace(microsecond=0)
WORDS = [
    "莫斯科",
    "强调",
    "拒绝",
    "欧洲",
    "美国",
    "核武器",
    "乌克兰",
    "总统",
    "谈判",
    "结果",
    "经济",
    "市场",
    "科技",
    "气候",
    "选举",
]


def build(store: Store, feeds: int, posts_per_feed: int, polls_per_feed: int) -> None:
    states = ["transient", "throttled", "warming", "permanent"] + [None] * 16
    feed_rows = []
    for i in range(feeds):
        cls = states[i % len(states)]
        feed_rows.append(
            {
                "id": i + 1,
                "url": f"https://site{i % 997}.example.com/feed/{i}.xml?token=t{i}",
                "outlet": f"Outlet {i % 3000}",
                "section": f"Section {i % 7}",
                "group_name": f"Group {i % 11}",
                "enabled": True,
                "in_config": True,
                "interval_seconds": 900,
                "next_check_at": NOW + timedelta(seconds=i % 900),
                "last_checked_at": NOW - timedelta(seconds=i % 900),
                "last_status": 500 if cls else 200,
                "last_error": f"HTTP 500 from feed {i}" if cls else None,
                "error_class": cls,
                "error_streak": 3 if cls else 0,
                "disabled_reason": "410 Gone" if i % 97 == 0 else None,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
    with store.engine.begin() as c:
        c.execute(insert(m.Feed), feed_rows)
    post_id = 0
    batch_posts, batch_entries, batch_exports = [], [], []
    for i in range(feeds):
        for _ in range(posts_per_feed):
            post_id += 1
            title = " ".join(WORDS[(post_id * k) % len(WORDS)] for k in (1, 3, 7)) + f" {post_id}"
            created = NOW - timedelta(hours=(post_id * 7) % (24 * 30))
            batch_posts.append(
                {
                    "id": post_id,
                    "slug": f"s{post_id}",
                    "content_hash": f"{post_id:064d}",
                    "title": title,
                    "group_name": "g",
                    "outlet": "o",
                    "section": "s",
                    "headimg": "",
                    "thumbnail": "",
                    "author": "",
                    "comments": False,
                    "date": created,
                    "body": "<p>x</p>",
                    "link": f"https://site.example.com/{post_id}",
                    "feed_id": i + 1,
                    "revision": 0,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            batch_entries.append(
                {
                    "feed_id": i + 1,
                    "key": f"k{post_id}",
                    "post_id": post_id,
                    "first_seen_at": created,
                    "last_seen_at": created,
                }
            )
            batch_exports.append(
                {
                    "post_id": post_id,
                    "directory": "/srv/site/source/_posts",
                    "file_name": f"{post_id}.md",
                    "revision": 0,
                    "post_updated_at": created,
                    "written_at": created,
                }
            )
        if len(batch_posts) >= 20000 or i == feeds - 1:
            with store.engine.begin() as c:
                c.execute(insert(m.Post), batch_posts)
                c.execute(insert(m.Entry), batch_entries)
                c.execute(insert(m.ExportedFile), batch_exports)
            batch_posts, batch_entries, batch_exports = [], [], []
    polls: list[PollRecord] = []
    for i in range(feeds):
        for j in range(polls_per_feed):
            polls.append(
                PollRecord(
                    feed_id=i + 1,
                    started_at=NOW - timedelta(minutes=(j * 24 * 60) // polls_per_feed + i % 60),
                    status=200,
                    duration_ms=40,
                    bytes=5000,
                    new=j % 3,
                    updated=0,
                    error_class="transient" if (i + j) % 10 == 0 else None,
                    message=None,
                    schedule="interval 900 s",
                    next_check_at=NOW,
                )
            )
        if len(polls) >= 50000 or i == feeds - 1:
            record_polls(store.engine, polls)  # as the pipeline does: rows and hourly counts
            polls = []


async def measure(store: Store, paths: list[str], runs: int) -> list[tuple[str, float, float, int]]:
    site = OperatorSite(lambda: store)
    results = []
    async with HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_ok, site=site) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for path in paths:
                times = []
                size = 0
                for _ in range(runs):
                    site._summary = None  # the worst case: no cached header
                    started = time.perf_counter()
                    response = await client.get(path)
                    times.append(time.perf_counter() - started)
                    response.raise_for_status()
                    size = len(response.content)
                results.append((path, statistics.median(times), max(times), size))
    return results


async def screenshot(store: Store, path: Path) -> None:
    """``/`` in headless Chromium (Debian's, never a downloaded one), saved as a PNG."""
    import shutil

    from playwright.async_api import async_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("--screenshot needs chromium on PATH (apt-get install chromium)")
    site = OperatorSite(lambda: store)
    async with (
        HttpServer("127.0.0.1", 0, metrics=Metrics(), health=_ok, site=site) as server,
        async_playwright() as p,
    ):
        browser = await p.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        await page.goto(f"http://127.0.0.1:{server.port}/?per_page=20")
        await page.screenshot(path=str(path), full_page=False)
        await browser.close()
    print(f"saved {path}")


async def _ok() -> tuple[bool, str]:
    return True, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=30000)
    parser.add_argument("--posts-per-feed", type=int, default=5)
    parser.add_argument("--polls-per-feed", type=int, default=24)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temp directory")
    parser.add_argument(
        "--screenshot",
        type=Path,
        help="also save a PNG of / drawn by the system's Chromium (docs/operator-page.png)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'page.db'}"
        store = Store.open(url)
        started = time.perf_counter()
        with store.engine.connect() as c:
            have = c.execute(select(func.count()).select_from(m.Feed)).scalar_one()
        if have:  # --database-url of an earlier run: time the pages over what is there
            args.feeds = have
        else:
            build(store, args.feeds, args.posts_per_feed, args.polls_per_feed)
            # A freshly filled database has no planner statistics (and the
            # server may run without autovacuum): gather them, as any
            # database that has been running a while has them.
            with store.engine.begin() as c:
                c.execute(text("ANALYZE"))
        print(
            f"{'reused' if have else 'built'} {args.feeds} feeds"
            + (
                ""
                if have
                else f", {args.feeds * args.posts_per_feed} posts, "
                f"{args.feeds * args.polls_per_feed} polls"
            )
            + f" on {store.engine.dialect.name} in {time.perf_counter() - started:.1f} s"
        )
        last_page = (args.feeds + 99) // 100
        paths = [
            "/",
            f"/?page={last_page}",
            "/?state=failing",
            "/?sort=last&desc=1&page=100",
            "/?q=Outlet+2999",
            f"/feeds/{args.feeds // 2}",
            "/posts",
            "/posts?q=" + "核武器",
            "/posts?q=election",
            "/api/feeds?per_page=500",
            "/api/summary",
        ]
        rows = asyncio.run(measure(store, paths, args.runs))
        if args.screenshot:
            asyncio.run(screenshot(store, args.screenshot))
        store.close()
    width = max(len(p) for p, *_ in rows)
    print(f"\n{'URL'.ljust(width)}  median ms  max ms  bytes")
    for path, median, worst, size in rows:
        print(f"{path.ljust(width)}  {median * 1000:9.1f}  {worst * 1000:6.1f}  {size}")


if __name__ == "__main__":
    main()
