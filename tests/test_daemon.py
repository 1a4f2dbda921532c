"""`aggregator run` as a service: real processes, real signals, a local feed server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from prometheus_client.parser import text_string_to_metric_families
from support_proc import AggregatorProcess, free_port, wait_for

pytestmark = pytest.mark.slow

GROUP_KEY = ("新媒体", "观察者网", "头条")


def _serve(server: LocalServer, path: str, n_items: int = 2, tag: str = "") -> None:
    post = seed_posts()[2]
    items = "".join(
        seed_item(
            post.__class__(
                **{
                    **{f: getattr(post, f) for f in post.__dataclass_fields__},
                    "title": f"{post.title} {tag}{path} #{i}",
                }
            ),
            link=f"https://news.example.com{path}/{i}",
            guid=f"{path}-{i}",
        )
        for i in range(n_items)
    )
    server.route(path, EtagFeed(rss_document(items)))


def _config(path: Path, server: LocalServer, feeds: list[str], interval: str) -> None:
    path.write_text(
        feeds_yaml(
            {("新媒体", f"Outlet {f}", "头条"): server.url(f) for f in feeds}, interval=interval
        ),
        encoding="utf-8",
    )


def _hits(server: LocalServer, path: str) -> int:
    return len(server.requests_to(path))


def _stored_posts(db: Path) -> int:
    """Posts committed so far (0 before the daemon has created its tables)."""
    if not db.exists():
        return 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        try:
            return int(conn.execute("select count(*) from posts").fetchone()[0])
        except sqlite3.OperationalError:  # no tables yet
            return 0


def test_schedule_survives_a_restart_and_sigterm_exits_zero(
    tmp_path: Path,
    local_server: LocalServer,
) -> None:
    for f in ("/a.xml", "/b.xml"):
        _serve(local_server, f)
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/a.xml", "/b.xml"], interval="1h")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess("run", "--config", str(config), db=db, cwd=tmp_path) as daemon:
        # Both polls stored, not only requested: new feeds are first polled at
        # random within 10 s, and a poll still parsing when SIGTERM comes would
        # make the stop wait for it (or, on a slow machine, be cancelled).
        wait_for(lambda: _stored_posts(tmp_path / "a.db") == 4, 60, "both feeds stored")
        code, took = daemon.stop()
    assert (code, took < 10) == (0, True), daemon.log
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("select count(*) from posts").fetchone() == (4,)
        assert conn.execute(
            "select count(*) from feeds where next_check_at is not null"
        ).fetchone() == (2,)
    local_server.clear()
    with AggregatorProcess("run", "--config", str(config), db=db, cwd=tmp_path) as daemon:
        # Started (signal handlers installed, schedule loaded), then give it time to misbehave.
        wait_for(lambda: "polling 2 feeds" in daemon.log, 30, "the restarted daemon up")
        time.sleep(4)
        assert local_server.requests == [], "a restart must resume the schedule, not refetch"
        assert daemon.stop()[0] == 0


def test_hot_reload_adds_removes_and_rejects_invalid(
    tmp_path: Path, local_server: LocalServer
) -> None:
    for f in ("/a.xml", "/b.xml"):
        _serve(local_server, f)
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/a.xml"], interval="2s")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess("run", "--config", str(config), db=db, cwd=tmp_path) as daemon:
        wait_for(lambda: _hits(local_server, "/a.xml") >= 1, 20, "feed a polled")
        # add b (file change)
        _config(config, local_server, ["/a.xml", "/b.xml"], interval="2s")
        wait_for(
            lambda: _hits(local_server, "/b.xml") >= 1, 10, "the added feed polled within seconds"
        )
        # remove a, then tell the daemon with SIGHUP
        _config(config, local_server, ["/b.xml"], interval="2s")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "1 removed" in daemon.log, 10, "reload logged")
        # A poll of a claimed just before the reload may reach the server just
        # after the log line: count a's requests once b has been claimed again
        # (a claim tick, a second or more, later).
        b_reloaded = _hits(local_server, "/b.xml")
        wait_for(
            lambda: _hits(local_server, "/b.xml") > b_reloaded, 15, "b polled after the reload"
        )
        a_before = _hits(local_server, "/a.xml")
        # an invalid file is refused and b keeps being polled
        config.write_text("feeds:\n  - url: nope\n", encoding="utf-8")
        wait_for(
            lambda: "still running the previous configuration" in daemon.log,
            10,
            "invalid file refused",
        )
        b_before = _hits(local_server, "/b.xml")
        wait_for(lambda: _hits(local_server, "/b.xml") >= b_before + 2, 15, "b still polled")
        assert _hits(local_server, "/a.xml") == a_before, "a removed feed is not polled"
        assert daemon.stop()[0] == 0
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("select count(*) from posts").fetchone() == (4,), (
            "posts of removed feeds stay"
        )


def test_health_and_metrics(tmp_path: Path, local_server: LocalServer) -> None:
    _serve(local_server, "/a.xml")
    local_server.route("/broken.xml", status=503, body="down")
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/a.xml", "/broken.xml"], interval="1h")
    port = free_port()
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess(
        "run", "--config", str(config), "--http", f"127.0.0.1:{port}", db=db, cwd=tmp_path
    ) as daemon:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, 20, "/healthz 200")
        wait_for(
            lambda: _hits(local_server, "/a.xml") and _hits(local_server, "/broken.xml"),
            20,
            "feeds polled",
        )

        def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            text = httpx.get(f"{base}/metrics", timeout=5).text
            return {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }

        # A poll is counted after its outcome is stored, a moment after the
        # request the server saw (longer on a loaded machine, and the first
        # parse may start the parse worker): wait until both are counted.
        wait_for(
            lambda: samples().get(("aggregator_fetch_duration_seconds_count", ())) == 2,
            30,
            "both polls counted",
            step=0.3,
        )
        counted = samples()
        assert counted[("aggregator_fetches_total", (("outcome", "ok"),))] == 1
        assert counted[("aggregator_fetches_total", (("outcome", "transient"),))] == 1
        assert counted[("aggregator_posts_total", (("kind", "new"),))] == 2
        assert counted[("aggregator_fetch_duration_seconds_count", ())] == 2
        assert daemon.stop()[0] == 0


def test_a_bad_http_address_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    with AggregatorProcess(
        "run",
        "--config",
        str(config),
        "--http",
        "127.0.0.1:99999",
        db=f"sqlite:///{tmp_path / 'a.db'}",
        cwd=tmp_path,
    ) as daemon:
        assert daemon.proc is not None
        assert daemon.proc.wait(20) == 1
    assert "99999" in daemon.log
    assert "Traceback" not in daemon.log


@pytest.mark.postgres
def test_two_daemons_on_postgresql_poll_each_feed_once_per_interval(
    postgres_url: str,
    tmp_path: Path,
    local_server: LocalServer,
) -> None:
    feeds = [f"/f{i}.xml" for i in range(12)]
    for f in feeds:
        _serve(local_server, f, n_items=3)
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, feeds, interval="3s")
    # Create the schema once so the two daemons do not race on start-up logs.
    from aggregator.store import Store

    Store.open(postgres_url).close()
    with (
        AggregatorProcess("run", "--config", str(config), db=postgres_url, cwd=tmp_path) as one,
        AggregatorProcess("run", "--config", str(config), db=postgres_url, cwd=tmp_path) as two,
    ):
        wait_for(
            lambda: all(_hits(local_server, f) >= 3 for f in feeds), 60, "every feed polled 3 times"
        )
        assert one.stop()[0] == 0
        assert two.stop()[0] == 0
    for f in feeds:
        times = [r.time for r in local_server.requests_to(f)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 2.9, f"{f} polled twice within its interval: {gaps}"
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from posts")).scalar() == 36
        assert conn.execute(text("select count(*) from entries")).scalar() == 36
    engine.dispose()
    assert "Traceback" not in one.log + two.log


def test_sigterm_with_a_feed_in_flight_exits_zero_and_writes_nothing_half(
    tmp_path: Path, local_server: LocalServer
) -> None:
    _serve(local_server, "/fast.xml")
    started = []

    async def stuck(request: web.Request) -> web.StreamResponse:
        started.append(time.monotonic())
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        await response.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        await asyncio.sleep(30)  # never finishes within the daemon's grace period
        return response

    local_server.route("/stuck.xml", stuck)
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/fast.xml", "/stuck.xml"], interval="1h")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess(
        "--log-format", "json", "run", "--config", str(config), db=db, cwd=tmp_path
    ) as daemon:
        # New feeds are first polled at random within 10 s of a start that can
        # itself take seconds; and the fast feed must be stored, not merely
        # requested, before SIGTERM, or it too could be cut by the grace period.
        wait_for(
            lambda: started and _stored_posts(tmp_path / "a.db") == 2,
            60,
            "the stuck feed in flight and the fast one stored",
        )
        # A generous bound on the wall time: on a loaded machine the process
        # exit after the daemon's last line alone can take seconds.  The 10 s
        # the daemon promises are measured below from its own log.
        code, _took = daemon.stop(timeout=30)
    assert code == 0, daemon.log
    records = [json.loads(line) for line in daemon.log.splitlines() if line.startswith("{")]
    at = {r["message"].split(":")[0]: datetime.fromisoformat(r["time"]) for r in records}
    assert "cancelled 1 feed(s) still running at shutdown" in at, daemon.log
    shutdown = at["stopped (exit status 0)"] - at["stopping"]
    assert shutdown < timedelta(seconds=10), daemon.log  # grace (8 s), not the stuck 30 s
    with sqlite3.connect(tmp_path / "a.db") as conn:
        rows = dict(conn.execute("select url, lease_until is null from feeds").fetchall())
        posts = conn.execute("select count(*) from posts").fetchone()[0]
    assert posts == 2  # the fast feed's, complete; nothing of the stuck one
    assert all(rows.values()), "leases of cancelled polls are given back"


def test_log_lines_an_operator_reads(tmp_path: Path, local_server: LocalServer) -> None:
    """JSON times in ISO 8601 with their zone, the short-interval warning once
    at start, a reload that changed a feed says so, unchanged polls out of
    INFO, and a last line when the daemon stops."""
    _serve(local_server, "/a.xml")
    config = tmp_path / "feeds.yaml"
    _config(config, local_server, ["/a.xml"], interval="2s")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess(
        "--log-format", "json", "run", "--config", str(config), db=db, cwd=tmp_path
    ) as daemon:
        wait_for(lambda: _hits(local_server, "/a.xml") >= 2, 30, "feed a polled twice")
        _config(config, local_server, ["/a.xml"], interval="3s")
        wait_for(lambda: "reloaded" in daemon.log, 15, "the reload logged")
        assert daemon.stop()[0] == 0
    records = [json.loads(line) for line in daemon.log.splitlines() if line.startswith("{")]
    assert records
    for record in records:
        assert datetime.fromisoformat(record["time"]).utcoffset() == timedelta(0), record
    (reload,) = [r for r in records if r["message"].startswith("reloaded")]
    at_start = records[: records.index(reload)]
    warned = [r for r in at_start if "2s is under a minute" in r["message"]]
    assert len(warned) == 1, warned
    assert "0 added, 0 removed, 1 changed" in reload["message"]
    polls = [r for r in records if r["message"] == "poll ok"]
    assert len(polls) == 1 and polls[0]["new"] == 2  # the second poll changed nothing
    assert records[-1]["message"] == "stopped (exit status 0)"


async def test_a_skipped_claim_tick_is_not_a_warning_but_other_skipped_jobs_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real APScheduler with a claim job and another job that each outlast
    their 0.2 s interval: only the other job's skipped runs are warned about
    (the claim is kicked again when polls end; a skipped tick loses nothing)."""
    import logging

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from aggregator.service.daemon import CLAIM_JOB, quiet_claim_skips

    logger = logging.getLogger("apscheduler.scheduler")
    quiet = quiet_claim_skips()
    assert quiet_claim_skips() is quiet  # installed once, however often the daemon starts
    scheduler = AsyncIOScheduler()
    started = {CLAIM_JOB: 0, "heartbeat": 0}

    def slow(name: str) -> object:
        async def job() -> None:
            started[name] += 1
            await asyncio.sleep(0.5)

        return job

    common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    for name in started:
        scheduler.add_job(slow(name), "interval", seconds=0.2, id=name, name=name, **common)
    with caplog.at_level(logging.WARNING, logger="apscheduler.scheduler"):
        scheduler.start()
        try:
            await asyncio.sleep(1.3)
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0.6)  # let the runs in flight end
            logger.removeFilter(quiet)
    skipped = [r.getMessage() for r in caplog.records if "running instances" in r.getMessage()]
    assert started[CLAIM_JOB] >= 1 and started["heartbeat"] >= 1
    assert any('job "heartbeat ' in m for m in skipped), skipped
    assert not any(f'job "{CLAIM_JOB} ' in m for m in skipped), skipped
