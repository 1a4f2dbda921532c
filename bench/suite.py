"""Every row of issue 15's table in one command, side by side with lemon24/reader.

    python bench/suite.py                       # 300 feeds x 20 items, growth at 300 and 3,000
    python bench/suite.py --growth 30000        # ... and the 30,000-feed growth row (tiny feeds)
    python bench/suite.py --root /work/main     # measure another checkout of ours

Rows (see bench/README.md, "The suite"):

* ``aggregator fetch`` as a whole process (``python -m aggregator fetch``),
  cold (every item new) and warm (every feed answers 304), against a whole
  process that opens reader and runs ``update_feeds(workers=8)``;
* the daemon's CPU for one round, cold and warm: ours is ``aggregator run``
  and its process tree's CPU (``/proc``) over the round; reader's is
  ``update_feeds`` in a long-lived process (``time.process_time``);
* start-up: ``aggregator --help``, ``status``, ``fetch`` with nothing to poll,
  against ``import reader; make_reader(db)``;
* memory: the peak PSS of all processes of the cold whole-process pass;
* growth: the daemon's CPU per feed of a warm round at 300, 3,000 and
  ``--growth`` feeds (one item each), and the daemon's PSS at each size.

Every pass is checked from the farm's counters (each feed asked once, all
200 or all 304) and from what the client says it stored; a failed check
ends the suite with status 1.  Nothing here is a test.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402  (bench/run.py: the farm, PSS sampling, checks)
import startup as bench_startup  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
READER_WORKERS = bench.READER_WORKERS
MARK = "SUITE-RESULT "

#: The issue's targets: (row key, kind, bound) -- kind "ratio>=" compares
#: ours/reader, "seconds<=" an absolute wall time, "mb<=reader+" PSS.
TARGETS: dict[str, tuple[str, float]] = {
    "fetch_cold": ("ratio>=", 4.0),
    "fetch_warm": ("ratio>=", 2.0),
    "daemon_cold": ("ratio>=", 5.0),
    "daemon_warm": ("ratio>=", 5.0),
    "startup": ("seconds<=", 0.2),
    "pss": ("mb<=reader+", 30.0),
    "growth": ("factor<=", 1.1),
}


class SuiteFailure(Exception):
    """A measured pass did not do its work: no number is reported for it."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# process trees: CPU and PSS from /proc
# --------------------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    return bench.TreeMemory(pid)._descendants()


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every live descendant, plus reaped ones."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / HZ


def stop_daemon(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an operator stops it; killed if it has not exited in 30 s."""
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def wait_until(
    what: str, done: Callable[[], bool], timeout: float, tick: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SuiteFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        if tick is not None:
            tick()
        time.sleep(0.05)


def wait_quiet(pid: int, memory: bench.TreeMemory, window: float = 1.0, idle: float = 0.05) -> float:
    """Wait until the tree uses under ``idle`` CPU seconds in ``window``; its CPU then."""
    last = tree_cpu(pid)
    while True:
        end = time.monotonic() + window
        while time.monotonic() < end:
            memory.sample()
            time.sleep(0.05)
        now = tree_cpu(pid)
        if now - last < idle:
            return now
        last = now


# --------------------------------------------------------------------------
# the farm and feeds.yaml
# --------------------------------------------------------------------------


def farm_stats(base: str) -> dict[str, Any]:
    return bench._farm_get(base, "/_stats")


def check_farm(stats: dict[str, Any], status: int, feeds: int, what: str) -> None:
    try:
        bench._check_farm(stats, status, feeds, what)
    except bench.BenchFailure as exc:
        raise SuiteFailure(str(exc)) from None


def write_feeds_yaml(path: Path, feeds: list[dict[str, str]], interval: str) -> None:
    """Our feeds file: the farm is one host standing in for many (as bench/run.py)."""
    text = bench.feeds_yaml(feeds).replace("interval: 15m", f"interval: {interval}", 1)
    head, _, rest = text.partition("feeds:\n")
    hosts = f"hosts:\n  127.0.0.1: {{max_concurrency: {bench.OUR_MAX_PER_HOST}}}\n"
    path.write_text(head + hosts + "feeds:\n" + rest, encoding="utf-8")


# --------------------------------------------------------------------------
# whole-process fetch passes
# --------------------------------------------------------------------------

READER_ADD = """
import json, sys
from reader import make_reader
feeds = json.load(open(sys.argv[2]))["feeds"][: int(sys.argv[3])]
r = make_reader(sys.argv[1])
for f in feeds:
    r.add_feed(f["url"])
r.close()
"""

READER_UPDATE = f"""
import sys
from reader import make_reader
r = make_reader(sys.argv[1])
r.update_feeds(workers={READER_WORKERS}, scheduled=False)
bad = [f.url for f in r.get_feeds() if f.last_exception]
print("{MARK}", r.get_entry_counts().total, len(bad))
r.close()
"""


def _timed_process(
    command: list[str], *, cwd: Path, env: dict[str, str]
) -> tuple[float, float, float | None, str, int]:
    """Wall and CPU seconds, peak PSS of the tree (MB), output and exit status of one process.

    The CPU is the process's own plus what it reaped (``wait4``): on a
    machine other work shares, wall time stretches with the load and CPU
    time much less, so both are kept.
    """
    out = cwd / "out.txt"
    started = time.perf_counter()
    with out.open("w") as sink:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
        memory = bench.TreeMemory(child.pid)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            memory.sample()
            time.sleep(0.02)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, memory.peak_mb, out.read_text(errors="replace"), child.returncode


def fetch_ours(root: Path, base: str, feeds: list[dict[str, str]], items: int, work: Path) -> dict[str, Any]:
    work.mkdir()
    write_feeds_yaml(work / "feeds.yaml", feeds, "15m")
    env = {**os.environ, "PYTHONPATH": str(root), "AGGREGATOR_DATABASE_URL": f"sqlite:///{work / 'a.db'}"}
    command = [sys.executable, "-m", "aggregator", "fetch", "--config", str(work / "feeds.yaml")]
    result: dict[str, Any] = {}
    n = len(feeds)
    for phase, status, line in (
        ("cold", 200, f"{n * items} new, 0 duplicate, 0 updated, 0 failed ({n} feeds)"),
        ("warm", 304, f"0 new, 0 duplicate, 0 updated, 0 failed ({n} feeds)"),
    ):
        bench._farm_get(base, "/_reset")
        wall, cpu, pss, out, code = _timed_process(command, cwd=work, env=env)
        if code != 0 or line not in out:
            raise SuiteFailure(f"ours {phase} fetch: exit {code}, expected {line!r}:\n{out[-2000:]}")
        check_farm(farm_stats(base), status, n, f"ours {phase} fetch")
        result[f"{phase}_s"], result[f"{phase}_pss_mb"] = wall, pss
        result[f"{phase}_cpu"] = cpu
    return result


def fetch_reader(base: str, manifest: Path, n: int, items: int, work: Path) -> dict[str, Any]:
    work.mkdir()
    db = str(work / "reader.db")
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", READER_ADD, db, str(manifest), str(n)], check=True, env=env)
    result: dict[str, Any] = {}
    for phase, status in (("cold", 200), ("warm", 304)):
        bench._farm_get(base, "/_reset")
        wall, cpu, pss, out, code = _timed_process(
            [sys.executable, "-c", READER_UPDATE, db], cwd=work, env=env
        )
        mark = [ln for ln in out.splitlines() if ln.startswith(MARK)]
        if code != 0 or not mark or mark[0].split()[1:] != [str(n * items), "0"]:
            raise SuiteFailure(f"reader {phase} update: exit {code}:\n{out[-2000:]}")
        check_farm(farm_stats(base), status, n, f"reader {phase} update")
        result[f"{phase}_s"], result[f"{phase}_pss_mb"] = wall, pss
        result[f"{phase}_cpu"] = cpu
    return result


# --------------------------------------------------------------------------
# the daemon: CPU per round
# --------------------------------------------------------------------------

READER_DAEMON = f"""
import json, sys, time
from reader import make_reader
feeds = json.load(open(sys.argv[2]))["feeds"][: int(sys.argv[3])]
r = make_reader(sys.argv[1])
for f in feeds:
    r.add_feed(f["url"])
out = {{}}
for phase in ("cold", "warm"):
    sys.stdin.readline()  # the parent resets the farm's counters first
    c, t = time.process_time(), time.perf_counter()
    r.update_feeds(workers={READER_WORKERS}, scheduled=False)
    out[phase + "_cpu"], out[phase + "_wall"] = time.process_time() - c, time.perf_counter() - t
    out[phase + "_bad"] = sum(1 for f in r.get_feeds() if f.last_exception)
    print("{MARK}" + json.dumps(out), flush=True)
"""


def daemon_reader(base: str, manifest: Path, n: int, work: Path) -> dict[str, Any]:
    work.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", READER_DAEMON, str(work / "reader.db"), str(manifest), str(n)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    result: dict[str, Any] = {}
    for phase, status in (("cold", 200), ("warm", 304)):
        bench._farm_get(base, "/_reset")
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        if not line.startswith(MARK):
            child.kill()
            raise SuiteFailure(f"reader daemon {phase}: {line!r}")
        result = json.loads(line[len(MARK) :])
        if result[f"{phase}_bad"]:
            raise SuiteFailure(f"reader daemon {phase}: {result[f'{phase}_bad']} feeds failed")
        check_farm(farm_stats(base), status, n, f"reader daemon {phase}")
    child.stdin.close()
    child.wait(timeout=60)
    return result


def daemon_ours(
    root: Path, base: str, feeds: list[dict[str, str]], work: Path, *, timeout: float
) -> dict[str, Any]:
    """One ``aggregator run``: the CPU of its first round, then of a round of 304s.

    The feeds are new, so the daemon spreads their first polls over its
    start-up spread; the cold round ends when the farm has answered every
    feed and the process tree is idle again.  For the warm round the feeds'
    interval is then shortened by a reload (SIGHUP), which makes every feed
    due at the same moment, ``warm_in`` seconds later; the round is the CPU
    from a second before that until every feed has had its 304 and the tree
    is idle.  Between rounds the daemon only ticks (claim, reload checks);
    ``idle_cpu_per_s`` says what that costs.
    """
    work.mkdir()
    n = len(feeds)
    config = work / "feeds.yaml"
    write_feeds_yaml(config, feeds, "6h")
    env = {**os.environ, "PYTHONPATH": str(root), "AGGREGATOR_DATABASE_URL": f"sqlite:///{work / 'a.db'}"}
    log_path = work / "daemon.log"
    bench._farm_get(base, "/_reset")
    with log_path.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "aggregator", "run", "--config", str(config)],
            cwd=work,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    memory = bench.TreeMemory(child.pid)
    result: dict[str, Any] = {}
    try:
        wait_until(
            "the daemon to start",
            lambda: "polling" in log_path.read_text(),
            120 + n / 50,  # registering 30,000 new feeds takes a while on a busy machine
            memory.sample,
        )
        start_cpu = tree_cpu(child.pid)
        result["startup_cpu"] = start_cpu
        started = time.monotonic()

        def answered(status: int) -> int:
            return int(farm_stats(base)["feed_requests"].get(str(status), 0))

        wait_until("the cold round", lambda: answered(200) >= n, timeout, memory.sample)
        cold_end = wait_quiet(child.pid, memory)
        result["cold_cpu"], result["cold_wall"] = cold_end - start_cpu, time.monotonic() - started
        check_farm(farm_stats(base), 200, n, "ours daemon cold round")
        result["cold_pss_mb"] = memory.peak_mb
        # idle ticking between rounds, for the record
        idle_from, t = tree_cpu(child.pid), time.monotonic()
        time.sleep(3)
        result["idle_cpu_per_s"] = (tree_cpu(child.pid) - idle_from) / (time.monotonic() - t)

        # Two reloads: the short interval makes every feed due ``warm_in``
        # seconds after the first; the long one, halfway there, leaves those
        # times alone (only a shorter interval moves them) but has each
        # warm poll schedule its next one hours away, so no feed comes
        # round twice however long the round takes.
        warm_in = 12 + 4 * n / 1000
        bench._farm_get(base, "/_reset")
        reloaded = time.monotonic()
        for interval, at in ((f"{warm_in:.0f}s", 0.0), ("6h", warm_in / 2)):
            while time.monotonic() < reloaded + at:
                memory.sample()
                time.sleep(0.05)
            write_feeds_yaml(config, feeds, interval)
            child.send_signal(signal.SIGHUP)
        while time.monotonic() < reloaded + warm_in - 1:
            memory.sample()
            time.sleep(0.05)
        warm_from, started = tree_cpu(child.pid), time.monotonic()
        wait_until("the warm round", lambda: answered(304) >= n, timeout, memory.sample)
        warm_end = wait_quiet(child.pid, memory)
        result["warm_cpu"], result["warm_wall"] = warm_end - warm_from, time.monotonic() - started
        check_farm(farm_stats(base), 304, n, "ours daemon warm round")
        result["pss_mb"] = memory.peak_mb
        failed = log_path.read_text().count("poll failed")
        if failed:
            raise SuiteFailure(f"ours daemon: {failed} poll(s) failed; see {log_path}")
    finally:
        stop_daemon(child)
    return result


# --------------------------------------------------------------------------
# start-up
# --------------------------------------------------------------------------


def startup_rows(root: Path, runs: int, work: Path) -> dict[str, list[float]]:
    work.mkdir()
    (work / "feeds.yaml").write_text("feeds: []\n", encoding="utf-8")
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": f"sqlite:///{work / 'a.db'}"}
    bench_startup._run(root, ["fetch"], env, work)  # a database for `status`
    walls: dict[str, list[float]] = {name: [] for name in bench_startup.COMMANDS}
    walls["reader: import + make_reader"] = []
    code = f"import reader; reader.make_reader({str(work / 'r.db')!r}).close()"
    for _ in range(runs):
        for name, argv in bench_startup.COMMANDS.items():
            walls[name].append(bench_startup._run(root, argv, env, work)[0])
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=work)
        walls["reader: import + make_reader"].append(time.perf_counter() - t)
    return walls


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def verdict(key: str, value: float) -> tuple[str, str]:
    kind, bound = TARGETS[key]
    target = {
        "ratio>=": f">= {bound:g}x",
        "seconds<=": f"< {bound:g} s",
        "mb<=reader+": f"<= reader + {bound:g} MB",
        "factor<=": f"<= {bound:g}x",
    }[kind]
    met = value >= bound if kind == "ratio>=" else value <= bound
    return target, "yes" if met else "no"


def print_table(rows: list[tuple[str, str, str, str, str, str]]) -> None:
    header = ("measure", "ours", "reader", "ours vs reader", "target", "met?")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(6)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python bench/suite.py", description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=bench.ROOT, help="our checkout (default: this one)")
    ap.add_argument("--feeds", type=int, default=300)
    ap.add_argument("--items", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="whole-process runs per side")
    ap.add_argument("--daemon-runs", type=int, default=1)
    ap.add_argument("--startup-runs", type=int, default=7)
    ap.add_argument("--growth", type=int, default=3000, help="largest growth size (0: none)")
    ap.add_argument(
        "--growth-sizes", help="comma-separated sizes instead of 300, 3000 and --growth"
    )
    ap.add_argument("--skip", action="append", default=[], choices=("fetch", "daemon", "startup", "growth"))
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args()
    bench.check_imports("both")
    # reader's modules were compiled to bytecode when pip installed them; an
    # editable checkout's are written on first import -- unless
    # PYTHONDONTWRITEBYTECODE is set (it is on some machines), in which case
    # every run of ours would compile every module again (~0.6 s) and the
    # comparison would time the compiler.  compileall writes them regardless.
    compileall.compile_dir(args.root / "aggregator", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="aggregator-suite-"))
    data: dict[str, Any] = {"root": str(args.root), "machine": bench.machine_facts()}
    rows: list[tuple[str, str, str, str, str, str]] = []
    try:
        farm = bench.Farm(args.feeds, args.items, work, gzip=True)
        manifest = farm.manifest
        info = json.loads(manifest.read_text())
        base, feeds = info["base"], info["feeds"][: args.feeds]
        n, m = args.feeds, args.items
        try:
            if "fetch" not in args.skip:
                ours, theirs = [], []
                for i in range(args.runs):
                    ours.append(fetch_ours(args.root, base, feeds, m, work / f"fetch-ours-{i}"))
                    theirs.append(fetch_reader(base, manifest, n, m, work / f"fetch-reader-{i}"))
                    log(f"fetch run {i + 1}: ours {ours[-1]}, reader {theirs[-1]}")
                data["fetch"] = {"ours": ours, "reader": theirs}
                for phase in ("cold", "warm"):
                    o, r = (med([x[f"{phase}_s"] for x in side]) for side in (ours, theirs))
                    oc, rc = (med([x[f"{phase}_cpu"] for x in side]) for side in (ours, theirs))
                    pairs = list(zip(ours, theirs, strict=True))
                    ratio = med([b[f"{phase}_s"] / a[f"{phase}_s"] for a, b in pairs])
                    cpu_ratio = med([b[f"{phase}_cpu"] / a[f"{phase}_cpu"] for a, b in pairs])

                    def cell(wall: float, cpu: float, phase: str = phase) -> str:
                        rate = f"{n * m / wall:,.0f} items/s, " if phase == "cold" else ""
                        return f"{rate}{wall:.2f} s (CPU {cpu:.2f} s)"

                    rows.append(
                        (
                            f"`aggregator fetch` whole process, {phase} ({n}x{m})",
                            cell(o, oc),
                            cell(r, rc),
                            f"{ratio:.2f}x faster (CPU {cpu_ratio:.2f}x less)",
                            *verdict(f"fetch_{phase}", ratio),
                        )
                    )
                o = med([x["cold_pss_mb"] for x in ours])
                r = med([x["cold_pss_mb"] for x in theirs])
                rows.append(("memory, all processes (PSS), cold pass", f"{o:.0f} MB", f"{r:.0f} MB", f"{o - r:+.0f} MB", *verdict("pss", o - r)))
            if "daemon" not in args.skip:
                ours, theirs = [], []
                for i in range(args.daemon_runs):
                    ours.append(daemon_ours(args.root, base, feeds, work / f"daemon-ours-{i}", timeout=600))
                    theirs.append(daemon_reader(base, manifest, n, work / f"daemon-reader-{i}"))
                    log(f"daemon run {i + 1}: ours {ours[-1]}, reader {theirs[-1]}")
                data["daemon"] = {"ours": ours, "reader": theirs}
                for phase in ("cold", "warm"):
                    o, r = med([x[f"{phase}_cpu"] for x in ours]), med([x[f"{phase}_cpu"] for x in theirs])
                    rows.append((f"daemon CPU per round, {phase} ({n} feeds)", f"{o:.2f} s", f"{r:.2f} s", f"{r / o:.2f}x less", *verdict(f"daemon_{phase}", r / o)))
                o = med([x["pss_mb"] for x in ours])
                rows.append(("daemon PSS, all processes, after both rounds", f"{o:.0f} MB", "-", "-", "-", "-"))
        finally:
            farm.close()
        if "startup" not in args.skip:
            walls = startup_rows(args.root, args.startup_runs, work / "startup")
            data["startup"] = walls
            theirs_s = med(walls.pop("reader: import + make_reader"))
            for name, values in walls.items():
                o = med(values)
                rows.append((f"start-up: `aggregator {name}`", f"{o:.3f} s", f"{theirs_s:.3f} s (import + make_reader)", f"{o / theirs_s:.2f}x the time", *verdict("startup", o)))
        if "growth" not in args.skip and args.growth:
            sizes = sorted(
                {int(x) for x in args.growth_sizes.split(",")}
                if args.growth_sizes
                else {s for s in (300, 3000, args.growth) if s <= args.growth}
            )
            gfarm = bench.Farm(max(sizes), 1, work, gzip=True)
            try:
                ginfo = json.loads(gfarm.manifest.read_text())
                per_feed: dict[int, float] = {}
                data["growth"] = {}
                for size in sizes:
                    r = daemon_ours(args.root, ginfo["base"], ginfo["feeds"][:size], work / f"growth-{size}", timeout=3600)
                    per_feed[size] = r["warm_cpu"] / size * 1000
                    data["growth"][size] = r
                    log(f"growth {size}: {r}")
            finally:
                gfarm.close()
            small, large = sizes[0], sizes[-1]
            factor = per_feed[large] / per_feed[small]
            cells = ", ".join(f"{per_feed[s]:.2f} ms at {s:,}" for s in sizes)
            rows.append((f"growth: daemon warm CPU per feed, {small:,} -> {large:,} feeds (1 item each)", cells, "-", f"{factor:.2f}x ({large:,}/{small:,})", *verdict("growth", factor)))
            pss = {s: data["growth"][s]["pss_mb"] for s in sizes}
            if 3000 in pss and 300 in pss:
                f = pss[3000] / pss[300]
                rows.append(("growth: daemon PSS, 300 -> 3,000 feeds", f"{pss[300]:.0f} -> {pss[3000]:.0f} MB", "-", f"{f:.2f}x", *verdict("growth", f)))
    except SuiteFailure as exc:
        print(f"SUITE FAILED: {exc}", file=sys.stderr)
        if rows:
            print("rows measured before the failure:", file=sys.stderr)
            print_table(rows)
        if args.json:
            args.json.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"root {args.root}; {data['machine'].get('cpus', os.cpu_count())} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end; medians of paired runs"
    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
