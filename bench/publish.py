"""What a publishing round costs: git commit, webhook queue and delivery, idle check.

    python bench/publish.py [-n POSTS] [--repeat R]

Builds N posts (copies of the seeds with distinct titles) in a fresh SQLite
database, exports them into a git repository, then times, R times each in
fresh directories: the git publisher committing N new files; queueing N
posts for a webhook (one transaction) and delivering them to a receiver on
127.0.0.1 (http.server thread, 200 to everything); and the check a daemon
makes every interval when nothing is due.  Prints median and max seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.config.publish import GitPublish, PublishConfig  # noqa: E402
from aggregator.hexo.post import parse  # noqa: E402
from aggregator.service.export import Exporter  # noqa: E402
from aggregator.service.publish import GitPublisher, Publishing  # noqa: E402
from aggregator.store import Store  # noqa: E402


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _one(n: int, work: Path, url: str) -> dict[str, float]:
    site = work / "site"
    posts = site / "source" / "_posts"
    posts.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(site)], check=True)
    store = Store.open(f"sqlite:///{work / 'bench.db'}")
    try:
        config = PublishConfig.model_validate({"webhook": {"name": "bench", "url": url}})
        publishing = Publishing(store, config, posts)
        asyncio.run(publishing.run_round())  # the webhook is seen: cursor placed
        seeds = [parse(p.read_text("utf-8")) for p in sorted((ROOT / "seeds").glob("*.txt"))]
        store.add_posts(
            [
                dataclasses.replace(
                    seeds[i % len(seeds)], title=f"{seeds[i % len(seeds)].title} {i}"
                )
                for i in range(n)
            ]
        )
        Exporter(store, posts).catch_up()
        out: dict[str, float] = {}
        started = time.perf_counter()
        outcome = asyncio.run(GitPublisher(GitPublish.model_validate({}), posts).run())
        out["git commit"] = time.perf_counter() - started
        assert outcome.error is None and "committed" in outcome.summary, outcome
        hook = publishing.publishers[0]
        started = time.perf_counter()
        queued = asyncio.run(hook.enqueue())  # type: ignore[union-attr]
        out["webhook queue"] = time.perf_counter() - started
        assert queued == n, queued
        started = time.perf_counter()
        [outcome] = asyncio.run(publishing.run_round(everything=True))
        out["webhook deliver"] = time.perf_counter() - started
        assert outcome.error is None and outcome.pending == 0, outcome
        started = time.perf_counter()
        assert asyncio.run(publishing.run_round()) == []
        out["idle check"] = time.perf_counter() - started
        return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="posts per round")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    runs: list[dict[str, float]] = []
    try:
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(_one(args.n, Path(tmp), url))
    finally:
        server.shutdown()
    print(f"{'step':<18}{'posts':>7}{'median s':>10}{'max s':>8}{'per post ms':>13}")
    for step in runs[0]:
        values = [r[step] for r in runs]
        median = statistics.median(values)
        per = f"{median / args.n * 1000:.2f}" if step != "idle check" else "-"
        print(f"{step:<18}{args.n:>7}{median:>10.3f}{max(values):>8.3f}{per:>13}")


if __name__ == "__main__":
    main()
