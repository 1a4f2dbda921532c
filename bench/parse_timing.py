"""Per-feed time of parse_feed on farm feeds: fast path vs feedparser path.

    python bench/parse_timing.py [--feeds 20] [--items 20] [--runs 5]

Prints the median (over ``--runs`` passes) of the mean time per feed for
each path, and the speed-up.  A measurement aid, not a test: nothing here
asserts a number.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aggregator.parse.parser import parse_feed  # noqa: E402
from bench.farm import Material, load_seeds, render_feed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    material = Material.of(load_seeds())
    base = "http://127.0.0.1:8080"
    feeds = [
        (render_feed(material, base, i, args.items), f"{base}/feeds/{i:05d}.xml")
        for i in range(args.feeds)
    ]
    print(f"{args.feeds} farm feeds x {args.items} items, {args.runs} runs")
    medians = {}
    for fast in (True, False):
        per_feed = []
        for _ in range(args.runs):
            start = time.perf_counter()
            for body, url in feeds:
                parse_feed(body, url=url, content_type="application/rss+xml", fast=fast)
            per_feed.append((time.perf_counter() - start) / len(feeds))
        medians[fast] = statistics.median(per_feed)
        label = "fast (lxml)" if fast else "feedparser "
        print(
            f"{label}: median {medians[fast] * 1e3:.2f} ms/feed "
            f"({medians[fast] / args.items * 1e6:.0f} us/item)"
        )
    print(f"speed-up: {medians[False] / medians[True]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
