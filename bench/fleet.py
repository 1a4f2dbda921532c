"""A fleet at size: N feeds, several ``aggregator run`` daemons, one PostgreSQL.

    python bench/fleet.py --feeds 30000 --interval 300 --duration 900

What it does (issue 17), all on this machine:

1. (re)creates its own database (``--database-url``, default
   ``postgresql://postgres@127.0.0.1:5432/test_fleet``);
2. starts the local feed farm (bench/farm.py) with N small feeds spread over
   ``--hosts`` loopback addresses (127.0.0.1 .. 127.0.0.K), logging every
   request it serves;
3. writes a feeds.yaml (every feed at ``--interval``; every host at
   ``--concurrency`` requests at once, ``--spacing`` seconds apart), stores
   the feeds and spreads their first due times evenly over one interval
   starting ``--warmup`` seconds from now (a fleet in its steady state, not a
   cold start where everything is due at once);
4. starts ``--daemons`` daemons (``aggregator run --http``), and measures for
   ``--duration`` seconds from the first due time;
5. then kills one daemon with SIGKILL and watches ``--after-kill`` seconds
   more: how long the feeds it held went unpolled;
6. stops the others with SIGTERM (their leases must all come back).

It reports, from the farm's request log (the ground truth, from outside the
daemons) and the database:

* polls per feed per interval: feeds whose every gap between two polls was
  within one interval (plus the schedule's 5% jitter and ``--slack``), and
  pairs of polls of one feed closer than half an interval (want 0);
* lateness: each poll against its earliest due time (the seeded time, else
  the previous poll plus the interval; so the 0..5% jitter is included), and
  the age of the oldest due feed nobody had claimed, sampled every second;
* per-host spacing violations: two requests to one host that reached the
  farm closer than 90% of ``--spacing`` (want 0), how many of those two
  different daemons sent (the farm logs the client's port; the daemons'
  sockets say whose it is), and the smallest gap seen; the farm's times
  are the kernel's receive stamps, so a busy farm does not make two
  requests look closer than they came; gaps short by less than 10% are
  counted apart;
* CPU seconds per poll per daemon (the daemon and its parse worker,
  /proc), polls per daemon (its /metrics), database size and the most
  connections open at once;
* after the kill: the dead daemon's held leases, when the others reaped it,
  and how long until each of its feeds was polled again.

``--check`` exits 1 if an invariant fails (every feed polled every interval,
none twice within half an interval, no spacing violation, every daemon
doing at least a quarter of its even share of the polls, every held feed
polled again within ``--takeover-limit`` seconds, no lease left after
SIGTERM); the CI test (tests/test_fleet_bench.py) runs it small with that.
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

JITTER = 0.05  # aggregator.policy.schedule.JITTER: next poll = interval * (1 + 0..5%)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# the database


def recreate_database(url: str) -> None:
    target = make_url(url)
    admin = target.set(database="postgres")
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    engine.dispose()


SEED = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from sqlalchemy import text
from aggregator.config.feeds import load_config
from aggregator.store import Store
config = load_config(Path(sys.argv[2]))
store = Store.open(sys.argv[1])
try:
    ids = store.sync_feeds(config.feeds, now=datetime.now(UTC), spread_new=False)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE feeds SET next_check_at = now() + interval '1 day'"))
finally:
    store.close()
print(json.dumps(ids))
"""


def seed_feeds(url: str, config_path: Path, env: dict[str, str], cwd: Path) -> dict[str, int]:
    """Store the feeds, due tomorrow (the daemons start with nothing to do); url -> id.

    Run by the daemons' code (``env``'s PYTHONPATH): it builds the schema
    that code expects.
    """
    done = subprocess.run(
        [sys.executable, "-c", SEED, url, str(config_path)],
        env=env,
        cwd=cwd,  # not this checkout: "-c" puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    ids: dict[str, int] = json.loads(done.stdout)
    return ids


def schedule(
    url: str, ids: dict[str, int], *, first_due: datetime, interval: float
) -> dict[str, float]:
    """Spread the first due times evenly over one interval from ``first_due``; url -> due (Unix)."""
    n = len(ids)
    # In the farm's order (by path, /feeds/00000.xml ...), which takes the
    # hosts in turn: sorted by URL, all of one host's feeds would fall due
    # together, a few seconds in which only that host could be polled.
    order = sorted(ids, key=lambda u: urllib.parse.urlsplit(u).path)
    due = {u: first_due + timedelta(seconds=interval * i / n) for i, u in enumerate(order)}
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE feeds SET next_check_at = :due WHERE id = :id"),
                [{"id": ids[u], "due": at} for u, at in due.items()],
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            # Statistics, as autovacuum keeps them on a database in use: a
            # table bulk-loaded a minute ago would be planned as empty.
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return {u: at.timestamp() for u, at in due.items()}


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class DbSampler(threading.Thread):
    """Every second: connections open to our database, and the oldest unclaimed due feed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url, pool_size=1)
        self.stop = threading.Event()
        self.samples: list[tuple[float, int, float]] = []  # (time, connections, backlog age s)
        self.pids: list[int] = []  # the daemons, once started
        self.ports: dict[int, int] = {}  # their connections' local ports -> daemon index
        self.database = make_url(url).database

    def run(self) -> None:
        while not self.stop.wait(1.0):
            if self.pids:
                self.ports.update(socket_ports(self.pids))
            with contextlib.suppress(Exception), self.engine.connect() as conn:
                conns = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"),
                    {"d": self.database},
                ).scalar_one()
                age = conn.execute(
                    text(
                        "SELECT EXTRACT(EPOCH FROM now() - min(next_check_at)) FROM feeds"
                        " WHERE next_check_at <= now() AND enabled AND in_config"
                        " AND disabled_reason IS NULL"
                        " AND (lease_until IS NULL OR lease_until < now())"
                    )
                ).scalar_one()
                self.samples.append((time.time(), int(conns) - 1, float(age or 0.0)))

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


# --------------------------------------------------------------------------
# processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children still running."""
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids.extend(int(c) for c in children)
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (its parse worker's forkserver and workers)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{stack.pop()}/task").iterdir():
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    stack.append(int(child))
    return found


def scrape_fetches(port: int, *, patience: float = 120.0) -> float:
    """Sum of aggregator_fetches_total over its outcomes, from a daemon's /metrics."""
    deadline = time.time() + patience
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                body = r.read().decode()
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("aggregator_fetches_total{")
    )


def write_config(
    path: Path,
    feeds: list[dict[str, str]],
    *,
    interval: float,
    hosts: int,
    concurrency: int,
    spacing: float,
) -> None:
    lines = [f"defaults: {{group: 新媒体, interval: {int(interval)}s}}", "hosts:"]
    for k in range(1, hosts + 1):
        lines.append(f"  127.0.0.{k}: {{max_concurrency: {concurrency}, min_spacing: {spacing}s}}")
    lines.append("feeds:")
    for feed in feeds:
        lines.append(f"  - url: {json.dumps(feed['url'])}")
        lines.append(f"    outlet: {json.dumps(feed['outlet'], ensure_ascii=False)}")
        lines.append(f"    section: {json.dumps(feed['section'], ensure_ascii=False)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# analysis


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def read_log(
    path: Path, base_path_to_url: dict[tuple[str, str], str]
) -> list[tuple[float, str, str, int]]:
    """(time, host, url, client port) per feed request."""
    out = []
    for line in path.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if len(parts) not in (4, 5):
            continue
        t, host, fpath = parts[:3]
        url = base_path_to_url.get((host, fpath))
        if url is not None:
            out.append((float(t), host, url, int(parts[4]) if len(parts) == 5 else 0))
    return out


def socket_ports(pids: list[int]) -> dict[int, int]:
    """Local TCP port -> index in ``pids`` of the process holding the socket
    (the daemons' connections to the farm: which daemon sent a request)."""
    inodes: dict[str, int] = {}
    for i, pid in enumerate(pids):
        for one in [pid, *descendants(pid)]:
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{one}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = str(fd.readlink())
                        if target.startswith("socket:["):
                            inodes[target[8:-1]] = i
    ports: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports[int(fields[1].rpartition(":")[2], 16)] = inodes[fields[9]]
    return ports


def analyse(
    requests: list[tuple[float, str, str, int]],
    due: dict[str, float],
    *,
    start: float,
    end: float,
    interval: float,
    spacing: float,
    slack: float,
    ports: dict[int, int] | None = None,
) -> dict[str, Any]:
    by_feed: dict[str, list[float]] = defaultdict(list)
    by_host: dict[str, list[tuple[float, int]]] = defaultdict(list)
    sender = ports or {}
    for t, host, url, port in requests:
        if start - interval <= t <= end:
            by_feed[url].append(t)
        if start <= t <= end:
            by_host[host].append((t, sender.get(port, -1)))
    lateness: list[float] = []
    too_close = 0
    missed = 0  # feeds with a gap longer than an interval (+ jitter + slack), or never polled
    polls_in_window = 0
    counts: list[int] = []
    longest_gap = 0.0
    for url, first_due in due.items():
        times = sorted(by_feed.get(url, []))
        in_window = [t for t in times if t >= start]
        polls_in_window += len(in_window)
        counts.append(len(in_window))
        expected = first_due
        late_feed = False
        previous: float | None = None
        for t in times:
            lateness.append(t - expected)
            if previous is not None:
                gap = t - previous
                longest_gap = max(longest_gap, gap)
                if gap < interval / 2:
                    too_close += 1
                if gap > interval * (1 + JITTER) + slack:
                    late_feed = True
            previous = t
            expected = t + interval
        # The last poll must be followed by another within the window's end.
        last = previous if previous is not None else first_due
        overdue = end - last > interval * (1 + JITTER) + slack
        if (previous is None and first_due + slack < end) or overdue:
            late_feed = True
        if late_feed:
            missed += 1
    violations = 0
    across = 0  # of the violations: two requests sent by different daemons
    near = 0
    smallest = float("inf")
    for times in by_host.values():
        times.sort()
        for (a, who_a), (b, who_b) in itertools.pairwise(times):
            gap = b - a
            smallest = min(smallest, gap)
            if gap < spacing - 0.0005:
                near += 1
                if gap < spacing * 0.9:
                    violations += 1
                    across += who_a != who_b or who_a < 0
    return {
        "feeds": len(due),
        "polls": polls_in_window,
        "polls_per_s": polls_in_window / max(end - start, 1e-9),
        "polls_per_feed_per_interval": polls_in_window / len(due) / ((end - start) / interval),
        "feeds_polled_every_interval": len(due) - missed,
        "feeds_missing_an_interval": missed,
        "polled_twice_within_half_interval": too_close,
        "longest_gap_over_interval": longest_gap / interval,
        "lateness_s": {q: pct(lateness, q) for q in (50, 90, 99, 100)},
        "spacing_violations": violations,
        "spacing_violations_across_daemons": across,
        "spacing_under_by_any": near,
        "smallest_host_gap_s": smallest,
        "host_requests": sum(len(v) for v in by_host.values()),
    }


# --------------------------------------------------------------------------
# the run


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - one script, in order
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=3000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--items", type=int, default=1)
    ap.add_argument("--daemons", type=int, default=3)
    ap.add_argument("--interval", type=float, default=300.0, help="seconds between polls of a feed")
    ap.add_argument(
        "--duration", type=float, default=900.0, help="seconds measured before the kill"
    )
    ap.add_argument("--after-kill", type=float, default=150.0)
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds before the first due time")
    ap.add_argument("--spacing", type=float, default=0.2, help="min_spacing of every host (s)")
    ap.add_argument("--concurrency", type=int, default=2, help="max_concurrency of every host")
    ap.add_argument("--capacity", type=int, default=32, help="feeds each daemon polls at once")
    ap.add_argument("--slack", type=float, default=30.0, help="lateness tolerated (s)")
    ap.add_argument("--takeover-limit", type=float, default=120.0)
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test_fleet")
    ap.add_argument(
        "--daemon-code",
        type=Path,
        help="run the daemons from this checkout (a before/after comparison; default: this one)",
    )
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--check", action="store_true", help="exit 1 if an invariant fails")
    args = ap.parse_args(argv)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    code = (args.daemon_code or ROOT).resolve()
    env = dict(os.environ, PYTHONPATH=str(code), AGGREGATOR_DATABASE_URL=args.database_url)
    env.pop("AGGREGATOR_CONFIG", None)
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        log(f"database {make_url(args.database_url).database}: recreating")
        recreate_database(args.database_url)

        manifest_path, request_log = work / "manifest.json", work / "requests.log"
        request_log.unlink(missing_ok=True)
        farm = subprocess.Popen(
            [
                python,
                str(ROOT / "bench" / "farm.py"),
                "--feeds",
                str(args.feeds),
                "--items",
                str(args.items),
                "--hosts",
                str(args.hosts),
                "--manifest",
                str(manifest_path),
                "--log",
                str(request_log),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        procs.append(farm)
        assert farm.stdout is not None
        ready = json.loads(farm.stdout.readline() or b"{}")
        if not ready:
            raise SystemExit("the farm did not start")
        log(f"farm: {args.feeds} feeds on {args.hosts} hosts, built in {ready['build_s']} s")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        feeds = manifest["feeds"]
        key_of = {}
        for feed in feeds:
            u = urllib.parse.urlsplit(feed["url"])
            key_of[(u.hostname or "", u.path)] = feed["url"]
        config = work / "feeds.yaml"
        write_config(
            config,
            feeds,
            interval=args.interval,
            hosts=args.hosts,
            concurrency=args.concurrency,
            spacing=args.spacing,
        )

        ids = seed_feeds(args.database_url, config, env, work)
        log(f"stored {len(ids)} feeds")

        sampler = DbSampler(args.database_url)
        sampler.start()
        daemons: list[tuple[subprocess.Popen[bytes], int]] = []
        for i in range(args.daemons):
            port = free_port()
            out = (work / f"daemon{i}.log").open("wb")
            p = subprocess.Popen(
                [
                    python,
                    "-m",
                    "aggregator",
                    "run",
                    "--config",
                    str(config),
                    "--http",
                    f"127.0.0.1:{port}",
                    "--capacity",
                    str(args.capacity),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )
            procs.append(p)
            daemons.append((p, port))
        sampler.pids = [p.pid for p, _ in daemons]
        log(f"{args.daemons} daemons started: pids {[p.pid for p, _ in daemons]}")
        # Measure the fleet at work, not its start-up (30,000 feeds take each
        # daemon a while to read): schedule the feeds once all are serving.
        deadline = time.time() + 900
        while not all(healthy(port) for _, port in daemons):
            if time.time() > deadline or any(p.poll() is not None for p, _ in daemons):
                raise SystemExit("the daemons did not come up; see daemon*.log in " + str(work))
            time.sleep(1.0)
        log("all daemons serving")
        first_due = datetime.now(UTC) + timedelta(seconds=args.warmup)
        due = schedule(args.database_url, ids, first_due=first_due, interval=args.interval)
        start = first_due.timestamp()
        end = start + args.duration
        log(
            f"scheduled; first feeds due at {first_due:%H:%M:%S}, measuring until "
            f"{datetime.fromtimestamp(end, UTC):%H:%M:%S}"
        )

        def wait_until(t: float) -> None:
            while (left := t - time.time()) > 0:
                for p, _ in daemons:
                    if p.poll() is not None and p.returncode != -signal.SIGKILL:
                        raise SystemExit(f"daemon {p.pid} exited with {p.returncode}")
                time.sleep(min(left, 30.0))
                if left > 30:
                    done = sum(1 for _ in request_log.open("rb")) if request_log.exists() else 0
                    log(f"{done} feed requests served so far")

        backends_sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
        wait_until(start)
        cpu0 = [proc_cpu(p.pid) for p, _ in daemons]
        polls0 = [scrape_fetches(port) for _, port in daemons]
        db0 = {pid: proc_cpu(pid) for (pid,) in sampler.rows(backends_sql)}
        wait_until(end)
        cpu1 = [proc_cpu(p.pid) for p, _ in daemons]
        polls1 = [scrape_fetches(port) for _, port in daemons]
        # PostgreSQL's share: the backends serving this database (the pools
        # keep them for the whole run; one opened meanwhile counts from 0).
        db_cpu = sum(proc_cpu(pid) - db0.get(pid, 0.0) for (pid,) in sampler.rows(backends_sql))
        per_daemon = []
        for i in range(args.daemons):
            n = polls1[i] - polls0[i]
            cpu = cpu1[i] - cpu0[i]
            per_daemon.append(
                {"polls": n, "cpu_s": cpu, "cpu_ms_per_poll": 1000 * cpu / n if n else None}
            )
        results["per_daemon"] = per_daemon
        total_polls = sum(polls1) - sum(polls0)
        results["db_cpu_s"] = db_cpu
        results["db_cpu_ms_per_poll"] = 1000 * db_cpu / total_polls if total_polls else None
        results["db_size_mb"] = (
            sampler.scalar("SELECT pg_database_size(current_database())") / 2**20
        )
        window = [s for s in sampler.samples if start <= s[0] <= end]
        results["db_connections_max"] = max((s[1] for s in window), default=0)
        results["backlog_age_s"] = {q: pct([s[2] for s in window], q) for q in (50, 99, 100)}

        # -- kill -9 one daemon -------------------------------------------------
        victim, _ = daemons[0]
        owner = f"{socket.gethostname()}:{victim.pid}"
        # Kill it while it holds leases (polls take milliseconds here, so
        # wait for a moment when some are in flight), then read what it
        # held: a dead process gives nothing back.
        holding = "SELECT count(*) FROM feeds WHERE lease_owner = :o"
        deadline = time.time() + 20
        while time.time() < deadline and not sampler.scalar(holding, o=owner):
            time.sleep(0.01)
        orphans = descendants(victim.pid)
        killed_at = time.time()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        for pid in orphans:  # its parse worker would outlive it; another machine's would not
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        held = sampler.rows("SELECT url FROM feeds WHERE lease_owner = :o", o=owner)
        log(f"killed daemon {victim.pid} holding {len(held)} lease(s)")
        reaped_at: float | None = None
        until = killed_at + args.after_kill
        while time.time() < until:
            if reaped_at is None and not sampler.scalar(
                "SELECT count(*) FROM daemons WHERE id = :o", o=owner
            ):
                reaped_at = time.time()
            time.sleep(1.0)
        requests = read_log(request_log, key_of)
        held_urls = {u for (u,) in held}
        repolled: dict[str, float] = {}
        for t, _host, url, _port in requests:
            if url in held_urls and t > killed_at and url not in repolled:
                repolled[url] = t - killed_at
        waits = sorted(repolled.values())
        results["kill"] = {
            "held_leases": len(held_urls),
            "reaped_after_s": None if reaped_at is None else reaped_at - killed_at,
            "repolled": len(repolled),
            "unpolled_max_s": max(waits) if waits else None,
            "unpolled_median_s": statistics.median(waits) if waits else None,
        }
        after = [s for s in sampler.samples if s[0] > killed_at]
        results["kill"]["backlog_age_max_s"] = max((s[2] for s in after), default=0.0)

        # -- SIGTERM the rest: every lease comes back at once ----------------------
        for p, _ in daemons[1:]:
            p.send_signal(signal.SIGTERM)
        for p, _ in daemons[1:]:
            p.wait(timeout=30)
        results["leases_after_sigterm"] = sampler.scalar(
            "SELECT count(*) FROM feeds WHERE lease_owner IS NOT NULL AND lease_owner <> :o",
            o=owner,
        )
        results["daemon_rows_after_sigterm"] = sampler.scalar(
            "SELECT count(*) FROM daemons WHERE id <> :o", o=owner
        )
        sampler.stop.set()

        results["window"] = analyse(
            requests,
            due,
            start=start,
            end=end,
            interval=args.interval,
            spacing=args.spacing,
            slack=args.slack,
            ports=sampler.ports,
        )
    finally:
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=15)
            if p.poll() is None:
                p.kill()

    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    problems = invariant_failures(results, args)
    for problem in problems:
        log(f"INVARIANT: {problem}")
    return 1 if args.check and problems else 0


def invariant_failures(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    w, kill = results["window"], results["kill"]
    problems = []
    if w["feeds_missing_an_interval"]:
        problems.append(
            f"{w['feeds_missing_an_interval']} feed(s) went more than an interval unpolled"
        )
    if w["polled_twice_within_half_interval"]:
        problems.append(f"{w['polled_twice_within_half_interval']} poll(s) within half an interval")
    if w["spacing_violations"]:
        problems.append(f"{w['spacing_violations']} per-host spacing violation(s)")
    if kill["held_leases"] and (
        kill["repolled"] < kill["held_leases"]
        or (kill["unpolled_max_s"] or 0) > args.takeover_limit
    ):
        problems.append(
            f"the killed daemon's feeds were not all polled again within "
            f"{args.takeover_limit:.0f} s: {kill}"
        )
    polls = [d["polls"] for d in results["per_daemon"]]
    fair = sum(polls) / max(len(polls), 1)
    if len(polls) > 1 and min(polls) < fair / 4:
        # One daemon holding every spaced host while the others idle (the
        # hosts are shared out: each holds about its share).
        problems.append(f"the work was not shared: polls per daemon {polls}")
    if results["leases_after_sigterm"] or results["daemon_rows_after_sigterm"]:
        problems.append("SIGTERM left leases or heartbeat rows behind")
    return problems


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    w, kill = results["window"], results["kill"]
    late = w["lateness_s"]
    rows = [
        ("feeds / hosts / daemons", f"{args.feeds} / {args.hosts} / {args.daemons}"),
        ("interval / measured", f"{args.interval:.0f} s / {args.duration:.0f} s"),
        ("host policy", f"{args.concurrency} at once, {args.spacing} s apart"),
        ("polls in the window (per s)", f"{w['polls']} ({w['polls_per_s']:.1f}/s)"),
        ("polls per feed per interval", f"{w['polls_per_feed_per_interval']:.3f}"),
        ("feeds polled every interval", f"{w['feeds_polled_every_interval']} of {w['feeds']}"),
        ("polled twice within half an interval", str(w["polled_twice_within_half_interval"])),
        ("longest gap between two polls", f"{w['longest_gap_over_interval']:.3f} intervals"),
        (
            "lateness p50 / p90 / p99 / max (s)",
            " / ".join(f"{late[q]:.1f}" for q in (50, 90, 99, 100)),
        ),
        (
            "oldest unclaimed due feed p50 / p99 / max (s)",
            " / ".join(f"{results['backlog_age_s'][q]:.1f}" for q in (50, 99, 100)),
        ),
        (
            "per-host spacing violations (gap < 90% of spacing)",
            f"{w['spacing_violations']} (smallest gap {w['smallest_host_gap_s']:.3f} s)",
        ),
        (
            "  of them sent by two different daemons",
            str(w["spacing_violations_across_daemons"]),
        ),
        (
            "gaps short by < 10% (farm's clock jitter)",
            f"{w['spacing_under_by_any'] - w['spacing_violations']} of {w['host_requests']}",
        ),
    ]
    for i, d in enumerate(results["per_daemon"]):
        per = d["cpu_ms_per_poll"]
        rows.append(
            (
                f"daemon {i}: polls, CPU ms per poll",
                f"{d['polls']:.0f}, {per:.2f}" if per is not None else f"{d['polls']:.0f}, -",
            )
        )
    rows += [
        (
            "PostgreSQL CPU ms per poll (its backends)",
            "-"
            if results["db_cpu_ms_per_poll"] is None
            else f"{results['db_cpu_ms_per_poll']:.2f} ({results['db_cpu_s']:.0f} s in all)",
        ),
        ("database size", f"{results['db_size_mb']:.1f} MB"),
        ("connections used (max)", str(results["db_connections_max"])),
        ("kill -9: leases held", str(kill["held_leases"])),
        (
            "kill -9: reaped by the others after",
            "-" if kill["reaped_after_s"] is None else f"{kill['reaped_after_s']:.0f} s",
        ),
        (
            "kill -9: its feeds unpolled, median / max",
            "-"
            if kill["unpolled_max_s"] is None
            else f"{kill['unpolled_median_s']:.0f} s / {kill['unpolled_max_s']:.0f} s "
            f"({kill['repolled']} of {kill['held_leases']} polled again)",
        ),
        ("kill -9: oldest unclaimed due feed after it", f"{kill['backlog_age_max_s']:.1f} s"),
        (
            "leases / heartbeat rows left after SIGTERM",
            f"{results['leases_after_sigterm']} / {results['daemon_rows_after_sigterm']}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | --- |")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


if __name__ == "__main__":
    sys.exit(main())
