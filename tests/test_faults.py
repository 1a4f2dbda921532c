"""Faults from outside: kill -9, a database that goes away, an export disk that refuses.

Each test runs ``aggregator`` as a real process against a local feed server
and checks what an operator would: the process survives or says plainly why
it cannot, and the database never holds half a feed, a duplicate, or less
than was fetched once the fault is gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from pgcluster import PrivatePostgres, private_cluster
from sqlalchemy import create_engine, text
from support_proc import AggregatorProcess, free_port, wait_for

from aggregator.hexo.post import parse
from aggregator.service.daemon import dead_local_owners, pid_alive
from aggregator.store import Store

KEY = ("新媒体", "观察者网", "头条")


def _feed(n_items: int, *, seed: int = 0, tag: str = "") -> str:
    """An RSS document of ``n_items`` seed-like stories, each with its own title."""
    post = seed_posts()[seed]
    return rss_document(
        "".join(
            seed_item(
                dataclasses.replace(post, title=f"{post.title} {tag}#{i}"),
                link=f"https://news.example.com/{tag}{i}",
                guid=f"{tag}story-{i}",
            )
            for i in range(n_items)
        )
    )


def _config(path: Path, server: LocalServer, feed: str, interval: str = "1h") -> Path:
    path.write_text(feeds_yaml({KEY: server.url(feed)}, interval=interval), encoding="utf-8")
    return path


def _scalar(url: str, sql: str) -> int:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _status(base: str) -> int | None:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code
    except httpx.TransportError:
        return None


# -- leases of dead daemons ---------------------------------------------------


def test_only_dead_daemons_on_this_host_lose_their_leases() -> None:
    alive = {100}
    owners = ["box:100", "box:200", "box:300", "other:200", "box:notapid", "box:42"]
    dead = dead_local_owners(owners, me="box:42", alive=lambda pid: pid in alive)
    assert dead == {"box:200", "box:300"}, "own lease, live pids and other hosts are kept"


def test_pid_alive_knows_this_process_and_a_reaped_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert pid_alive(os.getpid())
    assert not pid_alive(child.pid)


def test_release_owners_frees_only_the_dead_owners_leases(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from aggregator.config.feeds import FeedSpec

    now = datetime.now(UTC)
    specs = [
        FeedSpec(url=f"https://news.example.com/{i}.xml", outlet="O", section="S", group="G")
        for i in range(3)
    ]
    store.sync_feeds(specs, now=now - timedelta(hours=1), spread_new=False)
    lease = timedelta(minutes=15)
    assert len(store.claim_due(now=now, limit=2, lease=lease, owner="box:1")) == 2
    assert len(store.claim_due(now=now, limit=1, lease=lease, owner="box:2")) == 1
    assert store.lease_owners(now=now) == {"box:1", "box:2"}
    assert store.release_owners(["box:1"]) == 2
    assert store.lease_owners(now=now) == {"box:2"}
    assert len(store.claim_due(now=now, limit=5, lease=lease, owner="box:3")) == 2


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_no_half_feed_and_a_restart_finishes_it(
    tmp_path: Path, local_server: LocalServer
) -> None:
    n = 2000
    local_server.route("/big.xml", EtagFeed(_feed(n)))
    config = _config(tmp_path / "feeds.yaml", local_server, "/big.xml")
    db_file = tmp_path / "a.db"
    db = f"sqlite:///{db_file}"
    Store.open(db).close()  # schema first, so the WAL below is the ingest's own
    wal = Path(f"{db_file}-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0

    with AggregatorProcess("run", "--config", str(config), db=db, cwd=tmp_path) as daemon:
        assert daemon.proc is not None
        wait_for(lambda: local_server.requests_to("/big.xml"), 30, "the big feed fetched")
        # 2000 posts do not fit SQLite's page cache, so the open transaction
        # spills into the WAL: a growing WAL means the ingest is under way.
        wait_for(
            lambda: wal.exists() and wal.stat().st_size > wal_before + 2_000_000,
            60,
            "the ingest transaction under way",
            step=0.01,
        )
        daemon.proc.kill()
        daemon.proc.wait(10)

    with sqlite3.connect(db_file) as conn:
        stored = conn.execute("select count(*) from posts").fetchone()[0]
    assert stored in (0, n), f"{stored} of {n} posts survived kill -9: half a feed was committed"

    with AggregatorProcess("run", "--config", str(config), db=db, cwd=tmp_path) as daemon:
        if stored == 0:
            # Well inside the killed daemon's 15-minute lease.
            wait_for(
                lambda: "took back 1 lease(s)" in daemon.log, 20, "the dead daemon's lease freed"
            )
            wait_for(lambda: "poll ok" in daemon.log, 90, "the feed polled and stored")
        assert daemon.stop()[0] == 0, daemon.log

    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "select count(*), count(distinct content_hash), count(distinct slug) from posts"
        ).fetchone()
        assert rows == (n, n, n), "every story once"
        assert conn.execute("select count(*) from entries").fetchone() == (n,)
        incomplete = conn.execute(
            "select count(*) from posts where title = '' or body = '' or slug = ''"
            " or id not in (select post_id from entries)"
        ).fetchone()
        assert incomplete == (0,), "every stored post is whole and has its entry"
        lease = conn.execute("select lease_owner, lease_until from feeds").fetchone()
        assert lease == (None, None)


# -- the database goes away ---------------------------------------------------


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this test's own, which it may stop and start (see pgcluster)."""
    with private_cluster() as cluster:
        yield cluster


class GatedFeed(EtagFeed):
    """An ``EtagFeed`` that, once armed, signals a request and holds its answer."""

    def __init__(self, body: str) -> None:
        super().__init__(body)
        self.armed = False
        self.arrived = threading.Event()
        self.hold = 3.0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.armed:
            self.armed = False
            self.arrived.set()
            import asyncio

            await asyncio.sleep(self.hold)
        return await super().__call__(request)


@pytest.mark.slow
def test_database_down_at_start_the_daemon_waits_then_runs(
    tmp_path: Path, local_server: LocalServer, private_postgres: PrivatePostgres
) -> None:
    local_server.route("/a.xml", EtagFeed(_feed(3)))
    config = _config(tmp_path / "feeds.yaml", local_server, "/a.xml")
    private_postgres.stop()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with AggregatorProcess(
        "run",
        "--config",
        str(config),
        "--http",
        f"127.0.0.1:{port}",
        db=private_postgres.url,
        cwd=tmp_path,
    ) as daemon:
        wait_for(lambda: "cannot open the database" in daemon.log, 20, "the outage logged")
        assert "retrying in" in daemon.log
        wait_for(lambda: _status(base) == 503, 10, "/healthz 503 while waiting")
        assert "waiting for the database" in httpx.get(f"{base}/healthz", timeout=5).text
        private_postgres.start()
        wait_for(lambda: _status(base) == 200, 40, "/healthz 200 once the database is up")
        wait_for(
            lambda: _scalar(private_postgres.url, "select count(*) from posts") == 3,
            30,
            "the feed stored",
        )
        assert daemon.stop()[0] == 0
    assert "Traceback" not in daemon.log, daemon.log


@pytest.mark.slow
def test_database_restart_mid_run_loses_and_doubles_nothing(
    tmp_path: Path, local_server: LocalServer, private_postgres: PrivatePostgres
) -> None:
    feed = GatedFeed(_feed(3))
    local_server.route("/a.xml", feed)
    config = _config(tmp_path / "feeds.yaml", local_server, "/a.xml", interval="2s")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = private_postgres.url
    with AggregatorProcess(
        "run", "--config", str(config), "--http", f"127.0.0.1:{port}", db=url, cwd=tmp_path
    ) as daemon:
        assert daemon.proc is not None
        wait_for(lambda: _status(base) == 200, 30, "/healthz 200")
        wait_for(lambda: _scalar(url, "select count(*) from posts") == 3, 30, "first poll stored")
        # The publisher adds three stories; the poll that fetches them is
        # answered only after the database has gone down, so it cannot be stored.
        feed.body = _feed(6).encode()
        feed.armed = True
        assert feed.arrived.wait(20), "the next poll never came"
        private_postgres.stop()
        wait_for(lambda: "database unavailable" in daemon.log, 20, "the outage logged")
        wait_for(lambda: _status(base) == 503, 10, "/healthz 503 while the database is down")
        time.sleep(2)  # some claims fail meanwhile; the daemon must ride them out
        assert daemon.proc.poll() is None, daemon.log
        private_postgres.start()
        wait_for(lambda: "database is back" in daemon.log, 30, "the recovery logged")
        wait_for(lambda: _status(base) == 200, 20, "/healthz 200 again")
        # Well inside the 15-minute lease: the failed poll's lease was given back.
        wait_for(
            lambda: _scalar(url, "select count(*) from posts") == 6,
            20,
            "the stories fetched during the outage stored",
        )
        assert daemon.stop()[0] == 0
    assert _scalar(url, "select count(*) from posts") == 6
    assert _scalar(url, "select count(distinct content_hash) from posts") == 6
    assert _scalar(url, "select count(*) from entries") == 6
    assert "Traceback" not in daemon.log, daemon.log


# -- SQLite file that cannot be opened ----------------------------------------


@contextlib.contextmanager
def _tmpfs(directory: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs at ``directory`` (skip the test when mounting is not allowed)."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextlib.contextmanager
def _read_only_dir(directory: Path) -> Iterator[Path]:
    """A directory this test's processes cannot write in.

    As an ordinary user a ``chmod 555`` does it; root writes through
    permissions, so as root a read-only tmpfs is mounted instead.
    """
    if os.geteuid() == 0:
        with _tmpfs(directory, "size=64k,ro") as mounted:
            yield mounted
        return
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o555)
    try:
        yield directory
    finally:
        directory.chmod(0o755)


def _run_to_exit(*args: str, db: str, cwd: Path, timeout: float = 30) -> tuple[int, str]:
    with AggregatorProcess(*args, db=db, cwd=cwd) as proc:
        assert proc.proc is not None
        code = proc.proc.wait(timeout)
    return code, proc.log


def test_sqlite_directory_missing_at_start_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'nowhere' / 'a.db'}"
    code, log = _run_to_exit("run", "--config", str(config), db=db, cwd=tmp_path)
    assert code == 1
    assert "does not exist" in log and str(tmp_path / "nowhere") in log
    assert "Traceback" not in log


def test_sqlite_directory_read_only_at_start_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    with _read_only_dir(tmp_path / "ro") as ro:
        code, log = _run_to_exit(
            "run", "--config", str(config), db=f"sqlite:///{ro}/a.db", cwd=tmp_path
        )
    assert code == 1
    assert "is not writable" in log and str(ro) in log
    assert "Traceback" not in log


# -- the export directory refuses ---------------------------------------------


def test_read_only_export_directory_stops_the_daemon_at_start(
    tmp_path: Path, local_server: LocalServer
) -> None:
    local_server.route("/a.xml", EtagFeed(_feed(3)))
    config = _config(tmp_path / "feeds.yaml", local_server, "/a.xml")
    with _read_only_dir(tmp_path / "posts") as ro:
        code, log = _run_to_exit(
            "run",
            "--config",
            str(config),
            "--export",
            str(ro),
            db=f"sqlite:///{tmp_path / 'a.db'}",
            cwd=tmp_path,
        )
    assert code == 1
    assert f"export directory {ro} is not writable" in log
    assert "Traceback" not in log


def _export_fills_up(tmp_path: Path, local_server: LocalServer, n: int) -> None:
    """``fetch --export`` into a 64 KiB tmpfs: posts stored, export says the disk is full."""
    local_server.route("/a.xml", EtagFeed(_feed(n, seed=2)))
    config = _config(tmp_path / "feeds.yaml", local_server, "/a.xml")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with _tmpfs(tmp_path / "posts", "size=64k") as full:
        code, log = _run_to_exit(
            "fetch", "--config", str(config), "--export", str(full), db=db, cwd=tmp_path
        )
        assert code == 1, log
        assert "no space left on the device" in log, log
        assert "Traceback" not in log
        written = list(full.iterdir())
        assert written, "some posts fit before the disk filled up"
        assert len(written) < n
        assert all(p.suffix == ".md" and not p.name.startswith(".") for p in written), (
            "no temporary file is left behind"
        )
        for path in written:
            parse(path.read_text(encoding="utf-8"))  # whole files only
    with sqlite3.connect(tmp_path / "a.db") as conn:
        assert conn.execute("select count(*) from posts").fetchone() == (n,), (
            "the database holds every post although the export failed"
        )
    code, log = _run_to_exit("export", str(tmp_path / "later"), db=db, cwd=tmp_path)
    assert code == 0, log
    assert f"{n} written" in log
    assert len(list((tmp_path / "later").glob("*.md"))) == n


def test_full_export_disk_keeps_the_posts_and_export_writes_them_later(
    tmp_path: Path, local_server: LocalServer
) -> None:
    _export_fills_up(tmp_path, local_server, n=30)


def _make_read_only(directory: Path) -> None:
    """Turn a writable directory (a tmpfs when root) read-only under a running process."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    else:
        directory.chmod(0o555)


@pytest.mark.slow
def test_export_directory_turning_read_only_mid_run_keeps_polling_and_storing(
    tmp_path: Path, local_server: LocalServer
) -> None:
    feed = EtagFeed(_feed(3))
    local_server.route("/a.xml", feed)
    config = _config(tmp_path / "feeds.yaml", local_server, "/a.xml", interval="2s")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    posts = tmp_path / "posts"
    mounted = _tmpfs(posts, "size=1m") if os.geteuid() == 0 else contextlib.nullcontext(posts)
    with (
        mounted,
        AggregatorProcess(
            "run", "--config", str(config), "--export", str(posts), db=db, cwd=tmp_path
        ) as daemon,
    ):
        assert daemon.proc is not None
        wait_for(lambda: len(list(posts.glob("*.md"))) == 3, 30, "the first poll exported")
        _make_read_only(posts)
        feed.body = _feed(6).encode()
        wait_for(lambda: "export failed (posts are stored)" in daemon.log, 20, "the export error")
        assert "cannot write in" in daemon.log
        with sqlite3.connect(tmp_path / "a.db") as conn:
            assert conn.execute("select count(*) from posts").fetchone() == (6,)
        assert daemon.proc.poll() is None, "the daemon keeps running"
        assert daemon.stop()[0] == 0
        if os.geteuid() != 0:
            posts.chmod(0o755)
        assert len(list(posts.iterdir())) == 3, "no temporary file is left behind"
    assert "Traceback" not in daemon.log, daemon.log
    code, log = _run_to_exit("export", str(tmp_path / "later"), db=db, cwd=tmp_path)
    assert (code, "6 written" in log) == (0, True), log
