"""cProfile of the daemon's warm round (every feed answers 304), every thread.

    python bench/profile_daemon.py [--feeds 300] [--items 20] [--out warm.prof] [--top 40]

The suite's daemon row (bench/suite.py) measures the CPU of a warm round
from outside; this says where it goes.  It runs ``aggregator run`` as the
suite does (a cold round, then a reload that makes every feed due at once),
in a child process that installs a profile hook in every thread.  The hook
does nothing until SIGUSR1, which the parent sends a second before the warm
round is due; from then on each thread profiles itself with cProfile (the
claim thread and the store's worker threads too, not only the event loop).
Each thread's clock is its own CPU time (``time.thread_time``), so a wait
for the GIL or the network does not count.  SIGUSR2, once every feed had
its 304 and the daemon is idle again, merges
the threads' profiles into ``--out`` and prints the top entries by
cumulative and internal time.  The hook slows the cold round (it is called
on every function call until it hands over to cProfile), and cProfile
inflates call-heavy code: read the split, not the seconds.  A measurement
aid, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402
import suite  # noqa: E402

#: The child: the hook, the signals, then ``python -m aggregator run ...``.
CHILD = """
import cProfile, pstats, runpy, signal, sys, threading, time
profiles = {}
active = False
def hook(frame, event, arg):
    if active and threading.get_ident() not in profiles:
        p = profiles[threading.get_ident()] = cProfile.Profile(time.thread_time)
        p.enable()
def start(signum, frame):
    global active
    active = True
def stop(signum, frame):
    global active
    active = False
    stats = None
    for p in list(profiles.values()):
        p.disable()
        stats = pstats.Stats(p) if stats is None else stats.add(p)
    if stats is not None:
        stats.dump_stats(OUT)
        print("PROFILE-DUMPED", len(profiles), "threads", flush=True)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
sys.setprofile(hook)
threading.setprofile(hook)
sys.argv = ["aggregator", *sys.argv[1:]]
runpy.run_module("aggregator", run_name="__main__", alter_sys=True)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=bench.ROOT)
    ap.add_argument("--feeds", type=int, default=300)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("warm.prof"))
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="copy the daemon's database and log here")
    args = ap.parse_args()
    out = args.out.resolve()
    with tempfile.TemporaryDirectory(prefix="aggregator-profd-") as tmp:
        work = Path(tmp)
        farm = bench.Farm(args.feeds, args.items, work, gzip=True)
        try:
            info = json.loads(farm.manifest.read_text())
            base, feeds = info["base"], info["feeds"][: args.feeds]
            n = len(feeds)
            config = work / "feeds.yaml"
            suite.write_feeds_yaml(config, feeds, "6h")
            env = {
                **os.environ,
                "PYTHONPATH": str(args.root),
                "AGGREGATOR_DATABASE_URL": f"sqlite:///{work / 'a.db'}",
            }
            code = CHILD.replace("OUT", repr(str(out)))
            log_path = work / "daemon.log"
            bench._farm_get(base, "/_reset")
            with log_path.open("w") as sink:
                child = subprocess.Popen(
                    [sys.executable, "-c", code, "run", "--config", str(config)],
                    cwd=work,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            memory = bench.TreeMemory(child.pid)

            def answered(status: int) -> int:
                return int(suite.farm_stats(base)["feed_requests"].get(str(status), 0))

            try:
                suite.wait_until("start", lambda: "polling" in log_path.read_text(), 300)
                suite.wait_until("the cold round", lambda: answered(200) >= n, 900)
                suite.wait_quiet(child.pid, memory)
                warm_in = 12 + 4 * n / 1000
                bench._farm_get(base, "/_reset")
                reloaded = time.monotonic()
                for interval, at in ((f"{warm_in:.0f}s", 0.0), ("6h", warm_in / 2)):
                    while time.monotonic() < reloaded + at:
                        time.sleep(0.05)
                    suite.write_feeds_yaml(config, feeds, interval)
                    child.send_signal(signal.SIGHUP)
                while time.monotonic() < reloaded + warm_in - 1:
                    time.sleep(0.05)
                cpu_from = suite.tree_cpu(child.pid)
                child.send_signal(signal.SIGUSR1)
                suite.wait_until("the warm round", lambda: answered(304) >= n, 900)
                cpu_to = suite.wait_quiet(child.pid, memory)
                child.send_signal(signal.SIGUSR2)
                suite.wait_until("the dump", lambda: "PROFILE-DUMPED" in log_path.read_text(), 120)
                print(f"warm round CPU under the profiler: {cpu_to - cpu_from:.2f} s")
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    for name in ("a.db", "a.db-wal", "a.db-shm", "daemon.log"):
                        if (work / name).exists():
                            shutil.copy(work / name, args.keep / name)
            finally:
                suite.stop_daemon(child)
        finally:
            farm.close()
    import pstats

    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
