"""Benchmark: our fetch pass against lemon24/reader on a local feed farm.

    python bench/run.py                      # 300 feeds x 20 items, 3 runs, growth at 3000
    python bench/run.py --feeds 50 --runs 1 --growth 0 --only ours   # a quick look

What runs where (see bench/README.md for why):

* the farm (``bench/farm.py``) in its own process, serving pre-rendered feeds;
* every measured run in a fresh child process (``run.py --child ours|reader``)
  with a fresh SQLite database: a cold pass (every item new) then a warm pass
  (every feed answers 304), each timed with ``time.perf_counter`` inside the
  child, peak RSS from ``getrusage`` inside the child, all reported back as
  one JSON line on stdout;
* ours and reader's runs interleaved (ours, reader, ours, reader, ...), the
  table showing medians.

Every pass is checked, in the child and from the farm's own counters: the
cold pass must store N x M items after N 200s, the warm pass must get N 304s
and store nothing.  Any failure stops the benchmark with exit status 1: a
benchmark that silently measures failures is worthless.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
FARM = BENCH / "farm.py"

#: The reader release whose API (``update_feeds(workers=, scheduled=)``,
#: ``get_entry_counts``) this file is written against.
READER_REQUIREMENT = "reader>=3.12"
#: reader's vendored feedparser imports ``sgmllib``, which current feedparser
#: releases no longer install (they depend on feedparser-sgmllib instead).
READER_SGMLLIB = "sgmllib3k"
#: The farm is one host standing in for hundreds: see README ("Concurrency").
OUR_MAX_PER_HOST = 32
OUR_MAX_CONNECTIONS = 32
READER_WORKERS = 8
#: One child run may take at most this long before it counts as hung.
CHILD_TIMEOUT = 3600.0
RESULT_MARK = "BENCH-RESULT "


class BenchFailure(Exception):
    """A pass did not do what it must; the benchmark's numbers would be lies."""


# --------------------------------------------------------------------------
# Child side: one measured run, in its own process
# --------------------------------------------------------------------------


def _farm_get(base: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + path, timeout=30) as response:  # the farm on 127.0.0.1
        return json.loads(response.read())


def _maxrss_mb() -> float:
    """This process's peak resident set, from ``getrusage``.

    Caveat: on Linux a process starts with its parent's high-water mark (it
    survives fork and exec), so this is only the child's own peak while the
    parent stays smaller than the child: the parent never imports the
    measured code for that reason.  ``_hwm_mb`` cross-checks it.
    """
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _hwm_mb() -> float | None:
    """Linux's VmHWM: the peak RSS of this process image alone (None elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _db_bytes(db: Path) -> int:
    """The database's size on disk: the file plus its write-ahead log."""
    total = 0
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            total += path.stat().st_size
    return total


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BenchFailure(message)


def _check_farm(stats: dict[str, Any], status: int, feeds: int, what: str) -> None:
    """From outside the client: every feed was asked for once and got ``status``."""
    expected = {str(status): feeds}
    _check(
        stats["feed_requests"] == expected and stats["distinct_feeds"] == expected,
        f"{what}: the farm expected {feeds} feed requests answered {status}, "
        f"it saw {stats['feed_requests']} (distinct feeds {stats['distinct_feeds']})",
    )


def _timed_pass(base: str, run: Callable[[], Any]) -> tuple[float, Any, dict[str, Any]]:
    _farm_get(base, "/_reset")
    started = time.perf_counter()
    outcome = run()
    elapsed = time.perf_counter() - started
    return elapsed, outcome, _farm_get(base, "/_stats")


def feeds_yaml(feeds: Sequence[dict[str, str]]) -> str:
    """A feeds.yaml for the farm's feeds (JSON strings are valid YAML scalars)."""
    lines = ["defaults: {group: 新媒体, interval: 15m}", "feeds:"]
    for feed in feeds:
        lines.append(f"  - url: {json.dumps(feed['url'])}")
        lines.append(f"    outlet: {json.dumps(feed['outlet'], ensure_ascii=False)}")
        lines.append(f"    section: {json.dumps(feed['section'], ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def child_ours(
    base: str, feeds: list[dict[str, str]], items: int, db: Path, workers: int | None = None
) -> dict[str, Any]:
    import asyncio

    from aggregator.config.feeds import loads_config
    from aggregator.fetch.fetcher import Fetcher, FetchLimits
    from aggregator.service.runner import fetch_once, parse_workers
    from aggregator.store import Store

    n = len(feeds)
    config = loads_config(feeds_yaml(feeds), source="bench.yaml")
    specs = config.enabled_feeds()
    _check(len(specs) == n, f"feeds.yaml: expected {n} enabled feeds, got {len(specs)}")
    limits = FetchLimits(max_per_host=OUR_MAX_PER_HOST, max_connections=OUR_MAX_CONNECTIONS)
    store = Store.open(f"sqlite:///{db}")
    rss_base = _maxrss_mb()

    def one_pass() -> list[Any]:
        async def go() -> list[Any]:
            # fetch_once closes the fetcher it is given, so each pass gets its own.
            return await fetch_once(store, config, specs, fetcher=Fetcher(limits), workers=workers)

        return asyncio.run(go())

    def failures(reports: list[Any], status: int) -> list[str]:
        return [
            f"{r.url}: status {r.status}, error {r.error!r}"
            for r in reports
            if r.error is not None or r.status != status
        ]

    cold_s, reports, farm_cold = _timed_pass(base, one_pass)
    rss_cold, hwm_cold = _maxrss_mb(), _hwm_mb()
    db_cold = _db_bytes(db)
    bad = failures(reports, 200)
    _check(not bad, f"cold pass: {len(bad)} feed(s) failed, e.g. {bad[:3]}")
    new = sum(r.new for r in reports)
    _check(
        len(reports) == n and new == n * items,
        f"cold pass: expected {n * items} new items from {n} feeds, got {new} new "
        f"({sum(r.duplicate for r in reports)} duplicate) from {len(reports)} reports",
    )
    _check_farm(farm_cold, 200, n, "cold pass")

    warm_s, reports, farm_warm = _timed_pass(base, one_pass)
    bad = failures(reports, 304)
    _check(not bad, f"warm pass: {len(bad)} feed(s) did not answer 304 cleanly, e.g. {bad[:3]}")
    new = sum(r.new + r.updated for r in reports)
    _check(new == 0, f"warm pass: 304s must store nothing, {new} items new or updated")
    _check_farm(farm_warm, 304, n, "warm pass")
    db_warm = _db_bytes(db)
    store.close()
    return {
        **_measures(
            cold_s,
            warm_s,
            n * items,
            rss_base,
            rss_cold,
            hwm_cold,
            db,
            db_cold,
            db_warm,
            farm_cold,
            farm_warm,
        ),
        "limits": {"max_per_host": OUR_MAX_PER_HOST, "max_connections": OUR_MAX_CONNECTIONS},
        "parse_workers": parse_workers(n, workers),
    }


def _measures(
    cold_s: float,
    warm_s: float,
    items_stored: int,
    rss_base: float,
    rss_cold: float,
    hwm_cold: float | None,
    db: Path,
    db_cold: int,
    db_warm: int,
    farm_cold: Any,
    farm_warm: Any,
) -> dict[str, Any]:
    """What every child reports, ours and reader's alike, so the table compares like with like."""
    return {
        "cold_s": cold_s,
        "warm_s": warm_s,
        "items_stored": items_stored,
        "rss_base_mb": rss_base,
        "rss_cold_mb": rss_cold,
        "rss_peak_mb": _maxrss_mb(),
        "vm_hwm_cold_mb": hwm_cold,
        "db_cold_bytes": db_cold,
        "db_bytes": db_warm,
        "db_closed_bytes": _db_bytes(db),
        "farm_cold": farm_cold,
        "farm_warm": farm_warm,
    }


def child_reader(base: str, feeds: list[dict[str, str]], items: int, db: Path) -> dict[str, Any]:
    from reader import make_reader

    n = len(feeds)
    reader = make_reader(str(db))
    for feed in feeds:
        reader.add_feed(feed["url"])
    rss_base = _maxrss_mb()

    def one_pass() -> None:
        reader.update_feeds(workers=READER_WORKERS, scheduled=False)

    def broken() -> list[str]:
        # update_feeds skips feeds that fail to parse "silently": look at each.
        return [f"{f.url}: {f.last_exception}" for f in reader.get_feeds() if f.last_exception]

    cold_s, _, farm_cold = _timed_pass(base, one_pass)
    rss_cold, hwm_cold = _maxrss_mb(), _hwm_mb()
    db_cold = _db_bytes(db)
    bad = broken()
    _check(not bad, f"reader cold pass: {len(bad)} feed(s) failed, e.g. {bad[:3]}")
    stored = reader.get_entry_counts().total
    _check(stored == n * items, f"reader cold pass: expected {n * items} entries, got {stored}")
    _check_farm(farm_cold, 200, n, "reader cold pass")

    warm_s, _, farm_warm = _timed_pass(base, one_pass)
    bad = broken()
    _check(not bad, f"reader warm pass: {len(bad)} feed(s) failed, e.g. {bad[:3]}")
    after = reader.get_entry_counts().total
    _check(after == n * items, f"reader warm pass: entries went from {stored} to {after}")
    _check_farm(farm_warm, 304, n, "reader warm pass")
    db_warm = _db_bytes(db)
    reader.close()
    return {
        **_measures(
            cold_s,
            warm_s,
            stored,
            rss_base,
            rss_cold,
            hwm_cold,
            db,
            db_cold,
            db_warm,
            farm_cold,
            farm_warm,
        ),
        "workers": READER_WORKERS,
    }


def child_main(args: argparse.Namespace) -> int:
    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    feeds = manifest["feeds"][: args.feeds]
    if len(feeds) != args.feeds:
        raise SystemExit(f"the farm has {len(manifest['feeds'])} feeds, {args.feeds} asked for")
    run = child_ours if args.child == "ours" else child_reader
    if Path(args.db).exists():
        raise SystemExit(f"{args.db} exists: every measured run starts from a fresh database")
    try:
        extra = {"workers": args.workers} if args.child == "ours" else {}
        result = run(manifest["base"], feeds, manifest["items"], Path(args.db), **extra)
    except BenchFailure as exc:
        print(f"BENCHMARK FAILED ({args.child}, {args.feeds} feeds): {exc}", file=sys.stderr)
        return 1
    result.update(side=args.child, feeds=len(feeds), items=manifest["items"])
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------
# Parent side: farm, interleaved children, medians, table
# --------------------------------------------------------------------------


class Farm:
    """``bench/farm.py`` in a subprocess; it exits when our end of its stdin closes."""

    def __init__(self, feeds: int, items: int, workdir: Path, *, gzip: bool) -> None:
        self.manifest = workdir / "farm.json"
        command = [sys.executable, str(FARM), "--feeds", str(feeds), "--items", str(items)]
        command += ["--manifest", str(self.manifest)]
        if not gzip:
            command.append("--no-gzip")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise SystemExit(f"the feed farm did not start (exit status {code})")
        self.info: dict[str, Any] = json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(timeout=10)


class TreeMemory:
    """Peak memory of a process and all its descendants, sampled from /proc.

    ``ru_maxrss`` sees one process; our pass also runs parse workers (forked
    from a fork server, so not even children of the measured process).  The
    sum of PSS -- each process's private pages plus its share of pages it
    shares -- counts copy-on-write pages once across the tree, where a sum
    of RSS would count them in every worker.  Sampled every 20 ms from this
    (lean) parent, so the sampling costs the measured process nothing; a
    peak shorter than that can be missed.  None off Linux.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb: float | None = 0.0 if Path("/proc/self/smaps_rollup").exists() else None
        self.max_processes = 0

    def _descendants(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
        found, todo = [self.pid], [self.pid]
        while todo:
            for child in parents.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def sample(self) -> None:
        if self.peak_mb is None:
            return
        total_kb, alive = 0, 0
        for pid in self._descendants():
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue  # exited meanwhile
            for line in rollup.splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    alive += 1
                    break
        self.peak_mb = max(self.peak_mb, total_kb / 1024)
        self.max_processes = max(self.max_processes, alive)


def run_child(
    side: str, feeds: int, farm: Farm, workdir: Path, tag: str, workers: int | None = None
) -> dict[str, Any]:
    db = workdir / f"{tag}-{side}-{feeds}.db"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side]
    command += ["--feeds", str(feeds), "--manifest", str(farm.manifest), "--db", str(db)]
    if workers is not None and side == "ours":
        command += ["--workers", str(workers)]
    started = time.perf_counter()
    out_path, err_path = workdir / f"{tag}-{side}.out", workdir / f"{tag}-{side}.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=workdir)
        memory = TreeMemory(child.pid)
        while child.poll() is None:
            memory.sample()
            if time.perf_counter() - started > CHILD_TIMEOUT:
                child.kill()
                child.wait()
                raise SystemExit(f"{side} at {feeds} feeds took over {CHILD_TIMEOUT:.0f}s: hung")
            time.sleep(0.02)
    done = subprocess.CompletedProcess(
        command, child.returncode, out_path.read_text(), err_path.read_text()
    )
    out_path.unlink()
    err_path.unlink()
    wall = time.perf_counter() - started
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if done.returncode != 0 or len(lines) != 1:
        sys.stderr.write(done.stdout[-4000:])
        sys.stderr.write(done.stderr[-8000:])
        raise SystemExit(
            f"{side} at {feeds} feeds failed (exit status {done.returncode}); "
            "no numbers are reported for a run that did not do its work"
        )
    result = json.loads(lines[0][len(RESULT_MARK) :])
    result["child_wall_s"] = wall
    result["tree_pss_peak_mb"] = memory.peak_mb
    result["tree_max_processes"] = memory.max_processes
    hwm = result.get("vm_hwm_cold_mb")
    if hwm is not None and result["rss_cold_mb"] > 1.1 * hwm + 2:
        log(
            f"warning: {side}'s ru_maxrss ({result['rss_cold_mb']:.0f} MB) is above its own "
            f"VmHWM ({hwm:.0f} MB): it inherited this parent's peak, the RSS row is too high"
        )
    for path in workdir.glob(db.name + "*"):
        path.unlink()
    return result


def cold_rate(r: dict[str, Any]) -> float:
    return r["feeds"] * r["items"] / r["cold_s"]


def warm_rate(r: dict[str, Any]) -> float:
    return r["feeds"] / r["warm_s"]


def cold_ms_per_feed(r: dict[str, Any]) -> float:
    return 1000 * r["cold_s"] / r["feeds"]


def warm_ms_per_feed(r: dict[str, Any]) -> float:
    return 1000 * r["warm_s"] / r["feeds"]


def rss_mb(r: dict[str, Any]) -> float:
    return r["rss_cold_mb"]


def tree_mb(r: dict[str, Any]) -> float:
    """Peak memory of the child and every process under it (see ``TreeMemory``);
    off Linux, where it cannot be sampled, the child's own peak RSS."""
    return r.get("tree_pss_peak_mb") or r["rss_cold_mb"]


def db_mb(r: dict[str, Any]) -> float:
    return r["db_bytes"] / 2**20


METRICS: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
    ("cold ingest, items/s", cold_rate, "{:,.0f}"),
    ("warm re-poll (all 304), feeds/s", warm_rate, "{:,.0f}"),
    ("peak RSS after cold pass, MB", rss_mb, "{:,.0f}"),
    ("peak memory, all processes (PSS), MB", tree_mb, "{:,.0f}"),
    ("DB size (db + wal), MB", db_mb, "{:,.1f}"),
]


def summarise(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def paired_ratio(ours: list[dict[str, Any]], theirs: list[dict[str, Any]], f: Callable) -> str:
    pairs = [f(a) / f(b) for a, b in zip(ours, theirs, strict=False) if f(b)]
    return f"{statistics.median(pairs):.2f}" if pairs else "-"


def growth_factor(small: list[dict[str, Any]], large: list[dict[str, Any]], f: Callable) -> str:
    """Median at the growth size over median at N: 1.00 means flat."""
    if not small or not large:
        return "-"
    return f"{statistics.median(f(r) for r in large) / statistics.median(f(r) for r in small):.2f}"


def machine_facts() -> dict[str, Any]:
    import sqlite3

    facts: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    from importlib.metadata import PackageNotFoundError, version

    for name in ("aggregator", "reader", "feedparser", "httpx", "SQLAlchemy", "aiohttp"):
        try:
            facts[name] = version(name)
        except PackageNotFoundError:
            facts[name] = None
    return facts


def print_report(
    facts: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    growth: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    farm_info: dict[str, Any],
) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Piped output gets rich's 80 columns by default, too narrow for the table.
    width = max(120, shutil.get_terminal_size((120, 24)).columns)
    console = Console(highlight=False, soft_wrap=True, width=width)
    console.print(
        f"machine: {facts['cores']} cores, Python {facts['python']}, {facts['date']}, "
        f"load average at start {' '.join(map(str, facts['load_average']))}"
    )
    console.print(
        f"versions: aggregator {facts['aggregator']}, reader {facts['reader']}, "
        f"feedparser {facts['feedparser']}, httpx {facts['httpx']}, SQLite {facts['sqlite']}"
    )
    console.print(
        f"farm: {args.feeds} feeds x {args.items} items on one 127.0.0.1 host, "
        f"{farm_info['item_bytes']:,} bytes of RSS per item, "
        f"{'gzip' if farm_info['gzip_bytes'] else 'identity'} on the wire; "
        f"ours: max_per_host={OUR_MAX_PER_HOST}, max_connections={OUR_MAX_CONNECTIONS}, "
        f"parse workers={'auto' if args.workers is None else args.workers}; "
        f"reader: update_feeds(workers={READER_WORKERS}, scheduled=False)"
    )
    n_runs = max(len(runs["ours"]), len(runs["reader"]))
    table = Table(
        title=f"median of {n_runs} run(s), (min-max) after it; ratio = median of paired runs",
        box=box.ASCII2,
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("ours", justify="right")
    table.add_column("reader", justify="right")
    table.add_column("ours/reader", justify="right")
    for label, f, fmt in METRICS:
        table.add_row(
            label,
            summarise([f(r) for r in runs["ours"]], fmt),
            summarise([f(r) for r in runs["reader"]], fmt),
            paired_ratio(runs["ours"], runs["reader"], f),
        )
    if args.growth:
        growth_rows = (
            ("cold ms per feed", cold_ms_per_feed, "{:,.2f}"),
            ("warm ms per feed", warm_ms_per_feed, "{:,.2f}"),
            ("peak RSS after cold pass, MB", rss_mb, "{:,.0f}"),
            ("peak memory, all processes (PSS), MB", tree_mb, "{:,.0f}"),
        )
        for label, f, fmt in growth_rows:
            table.add_section()
            for n, results in ((args.feeds, runs), (args.growth, growth)):
                table.add_row(
                    f"{label}, N={n:,}",
                    summarise([f(r) for r in results["ours"]], fmt),
                    summarise([f(r) for r in results["reader"]], fmt),
                    paired_ratio(results["ours"], results["reader"], f),
                )
            table.add_row(
                f"{label}, N={args.growth:,} / N={args.feeds:,}",
                growth_factor(runs["ours"], growth["ours"], f),
                growth_factor(runs["reader"], growth["reader"], f),
                "",
            )
    console.print(table)


def check_imports(only: str) -> None:
    """Check in a throwaway interpreter that each side can run.

    Not by importing here: a child inherits this process's peak RSS as the
    floor of its own ``ru_maxrss``, so the parent must stay small.
    """

    def importable(*modules: str) -> str | None:
        code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
        done = subprocess.run(
            [sys.executable, "-c", code, *modules],
            capture_output=True,
            text=True,
            check=False,
            cwd=BENCH,  # the path the children see, not whatever the caller's cwd holds
        )
        lines = done.stderr.strip().splitlines()
        return None if done.returncode == 0 else (lines[-1] if lines else "failed")

    if only in ("reader", "both"):
        install = f"{sys.executable} -m pip install '{READER_REQUIREMENT}' {READER_SGMLLIB}"
        if importable("reader") is not None:
            print(
                "The comparison needs lemon24/reader, an optional extra of the benchmark:\n"
                f"    {install}\n"
                "(or run only our side: python bench/run.py --only ours)",
                file=sys.stderr,
            )
            raise SystemExit(2)
        if importable("sgmllib") is not None:
            # reader vendors a feedparser that imports ``sgmllib``; feedparser
            # >= 6.0.12 no longer pulls that module in, so reader's first
            # update would fail with ModuleNotFoundError.
            print(
                "reader is installed but its vendored feedparser needs the 'sgmllib' module:\n"
                f"    {install}",
                file=sys.stderr,
            )
            raise SystemExit(2)
    if only in ("ours", "both"):
        error = importable("aggregator.service.runner")
        if error is not None:
            print(
                f"aggregator's fetch pass is not importable ({error}); install the project "
                f"into this interpreter: {sys.executable} -m pip install -e {ROOT}",
                file=sys.stderr,
            )
            raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Cold-ingest and warm re-poll benchmark of aggregator against reader.",
    )
    parser.add_argument("--feeds", type=int, default=300, help="N feeds (default 300)")
    parser.add_argument("--items", type=int, default=20, help="M items per feed (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument(
        "--growth", type=int, default=3000, help="feeds for the growth row (default 3000; 0 skips)"
    )
    parser.add_argument(
        "--growth-runs", type=int, default=1, help="runs at the growth size (default 1)"
    )
    parser.add_argument(
        "--growth-reader", action="store_true", help="run reader at the growth size too (slow)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="our parse worker processes (default: as `aggregator fetch` decides; 0: none)",
    )
    parser.add_argument("--only", choices=("ours", "reader", "both"), default="both")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write every number here")
    parser.add_argument("--no-gzip", action="store_true", help="the farm serves identity only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    # The child mode: one measured run, a JSON line on stdout.
    parser.add_argument("--child", choices=("ours", "reader"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args
    if args.feeds < 1 or args.items < 1 or args.runs < 1 or args.growth < 0:
        parser.error("--feeds, --items and --runs must be positive, --growth >= 0")
    if args.growth and args.growth <= args.feeds:
        parser.error("--growth must be larger than --feeds (or 0 to skip)")
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def describe(r: dict[str, Any]) -> str:
    return (
        f"cold {r['cold_s']:.2f}s ({cold_rate(r):,.0f} items/s), "
        f"warm {r['warm_s']:.2f}s ({warm_rate(r):,.0f} feeds/s), "
        f"RSS {r['rss_cold_mb']:.0f} MB, DB {db_mb(r):.1f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    check_imports(args.only)
    sides = ["ours", "reader"] if args.only == "both" else [args.only]
    facts = machine_facts()
    workdir = Path(tempfile.mkdtemp(prefix="aggregator-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "reader": []}
    growth: dict[str, list[dict[str, Any]]] = {"ours": [], "reader": []}
    started = time.perf_counter()
    farm = Farm(max(args.feeds, args.growth), args.items, workdir, gzip=not args.no_gzip)
    try:
        info = farm.info
        log(
            f"farm up at {info['base']}: {info['feeds']} feeds x {info['items']} items, "
            f"{info['feed_bytes'] / 2**20:.0f} MB rendered in {info['build_s']}s"
        )
        # Interleaved: ours, reader, ours, reader, ... so drift hits both.
        for i in range(args.runs):
            for side in sides:
                r = run_child(side, args.feeds, farm, workdir, f"run{i}", args.workers)
                runs[side].append(r)
                log(f"run {i + 1}/{args.runs} {side:6} N={args.feeds}: {describe(r)}")
        if args.growth:
            growth_sides = sides if args.growth_reader else [s for s in sides if s == "ours"]
            for i in range(args.growth_runs):
                for side in growth_sides:
                    r = run_child(side, args.growth, farm, workdir, f"growth{i}", args.workers)
                    growth[side].append(r)
                    log(
                        f"growth {i + 1}/{args.growth_runs} {side:6} N={args.growth}: {describe(r)}"
                    )
    finally:
        farm.close()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    facts["total_s"] = round(time.perf_counter() - started, 1)
    facts["parent_maxrss_mb"] = round(_maxrss_mb(), 1)
    print_report(facts, runs, growth, args, farm.info)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": facts,
                    "args": {k: v for k, v in vars(args).items() if k not in ("child", "json")}
                    | {"json": str(args.json)},
                    "farm": farm.info,
                    "runs": runs,
                    "growth": growth,
                },
                indent=2,
                default=str,
            ),
            encoding="utf-8",
        )
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
