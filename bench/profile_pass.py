"""One cold and one warm pass of ours against the farm, in this process: a profiling target.

    python bench/profile_pass.py [--feeds 300] [--items 20] [--warm 3] [--workers N]
    py-spy record --subprocesses -o cold.svg -- python bench/profile_pass.py --warm 0
    py-spy record --gil -f raw -o cold.raw -- python bench/profile_pass.py

``bench/run.py`` measures in fresh child processes and compares with reader;
this script is for looking inside ours.  It starts the farm
(``bench/farm.py``) in its own process, runs ``fetch_once`` on a new SQLite
database in a temporary directory, and prints for each pass its wall time
and the CPU time this process spent in it (``getrusage``): when CPU is close
to wall, the main process is the bottleneck, not the parse workers.
A measurement aid, not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import OUR_MAX_CONNECTIONS, OUR_MAX_PER_HOST, feeds_yaml  # noqa: E402


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=300)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3, help="warm passes after the cold one")
    parser.add_argument("--workers", type=int, default=None, help="parse workers (default: auto)")
    args = parser.parse_args(argv)

    from aggregator.config.feeds import loads_config
    from aggregator.fetch.fetcher import Fetcher, FetchLimits
    from aggregator.service.runner import fetch_once
    from aggregator.store import Store

    with tempfile.TemporaryDirectory(prefix="aggregator-profile-") as tmp:
        manifest = Path(tmp) / "farm.json"
        command = [sys.executable, str(ROOT / "bench" / "farm.py"), "--feeds", str(args.feeds)]
        command += ["--items", str(args.items), "--manifest", str(manifest)]
        farm = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert farm.stdout is not None
            if not farm.stdout.readline():
                raise SystemExit("the feed farm did not start")
            feeds = json.loads(manifest.read_text(encoding="utf-8"))["feeds"]
            config = loads_config(feeds_yaml(feeds), source="profile.yaml")
            specs = config.enabled_feeds()
            store = Store.open(f"sqlite:///{Path(tmp) / 'profile.db'}")
            limits = FetchLimits(max_per_host=OUR_MAX_PER_HOST, max_connections=OUR_MAX_CONNECTIONS)
            for name in ["cold", *[f"warm {i + 1}" for i in range(args.warm)]]:
                cpu, wall = _cpu_seconds(), time.perf_counter()
                reports = asyncio.run(
                    fetch_once(store, config, specs, fetcher=Fetcher(limits), workers=args.workers)
                )
                wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
                new = sum(r.new for r in reports)
                failed = sum(r.failed for r in reports)
                print(
                    f"{name:7s} {wall:6.2f} s wall, {cpu:6.2f} s CPU in this process, "
                    f"{new:,} new, {failed} failed"
                )
            store.close()
        finally:
            if farm.stdin is not None:
                farm.stdin.close()
            farm.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
