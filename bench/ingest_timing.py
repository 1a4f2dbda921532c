"""Store.ingest_many alone: cold (every item new) and warm (every item unchanged).

The store's single writer is what a pass over many feeds waits for; this
times only it, without the network or the parse workers, so a change inside
``aggregator.store`` can be compared side by side against another checkout:

    PYTHONPATH=/path/to/checkout python bench/ingest_timing.py --feeds 300 --items 20 --runs 5

Each run stores ``feeds x items`` synthetic items (a few hundred bytes of
HTML each, distinct titles) into a fresh SQLite file in batches of 16 feeds,
as the pipeline does, then stores the same items again (all unchanged).
Prints the median and range of items/s for both passes, by the wall clock
and by this process's CPU time (on a shared, loaded machine the CPU time is
the steadier of the two: SQLite runs in-process), and which code ran.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aggregator
from aggregator.config.feeds import FeedSpec
from aggregator.content.items import IngestItem
from aggregator.hexo.post import Post
from aggregator.store import IngestJob, Store

try:  # after the store split: typed feed updates
    from aggregator.store.feeds import FeedUpdate
except ImportError:  # before it: a dict of columns
    FeedUpdate = None  # type: ignore[assignment,misc]

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
BATCH = 16  # the pipeline's ingest batch (service.pipeline, _Batches limit)


def _items(feed: int, count: int) -> list[IngestItem]:
    items = []
    for n in range(count):
        body = f"<p>Feed {feed} item {n}: " + "some words of a story " * 12 + "</p>"
        post = Post(
            title=f"Story {feed}-{n}",
            group="G",
            outlet=f"Outlet {feed}",
            section="S",
            headimg="",
            thumbnail="",
            author="",
            comments=False,
            date=NOW - timedelta(minutes=n),
            body=body,
        )
        link = f"https://example.org/{feed}/{n}"
        items.append(
            IngestItem(
                key=f"guid:{feed}-{n}",
                post=post,
                guid=f"{feed}-{n}",
                link=link,
                raw={"format": 1, "title": post.title, "link": link},
            )
        )
    return items


def _update() -> Any:
    values = {
        "etag": '"e"',
        "last_status": 200,
        "last_checked_at": NOW,
        "lease_until": None,
        "lease_owner": None,
        "next_check_at": NOW + timedelta(minutes=15),
    }
    return FeedUpdate(**values) if FeedUpdate is not None else values


def _jobs(ids: list[int], docs: list[list[IngestItem]]) -> list[IngestJob]:
    update = _update()
    if FeedUpdate is not None:
        return [
            IngestJob(fid, items, NOW, feed_update=update)
            for fid, items in zip(ids, docs, strict=True)
        ]
    return [
        IngestJob(fid, items, NOW, feed_values=update) for fid, items in zip(ids, docs, strict=True)
    ]


def one_run(feeds: int, items: int) -> tuple[float, float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            specs = [
                FeedSpec(
                    url=f"https://example.org/{n}.xml", outlet=f"Outlet {n}", section="S", group="G"
                )
                for n in range(feeds)
            ]
            ids = list(store.sync_feeds(specs, now=NOW).values())
            docs = [_items(n, items) for n in range(feeds)]
            times: list[float] = []
            for _ in range(2):  # cold, then warm
                jobs = _jobs(ids, docs)
                start, cpu = time.perf_counter(), time.process_time()
                for at in range(0, len(jobs), BATCH):
                    for result in store.ingest_many(jobs[at : at + BATCH]):
                        assert not isinstance(result, Exception), result
                times += [time.perf_counter() - start, time.process_time() - cpu]
        finally:
            store.close()
    n = feeds * items
    return n / times[0], n / times[2], n / times[1], n / times[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {
        "cold wall": [],
        "warm wall": [],
        "cold cpu": [],
        "warm cpu": [],
    }
    for _ in range(args.runs):
        for name, value in zip(rates, one_run(args.feeds, args.items), strict=True):
            rates[name].append(value)
    where = Path(aggregator.__file__).parent.parent
    for name, values in rates.items():
        print(
            f"{where}  {name} ingest_many items/s: median {statistics.median(values):,.0f} "
            f"({min(values):,.0f}-{max(values):,.0f}), {args.runs} runs"
        )


if __name__ == "__main__":
    main()
