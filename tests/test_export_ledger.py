"""The export ledger: every stored post reaches its file, whatever stopped the last pass.

The unit tests drive :class:`aggregator.service.export.Exporter` on real files and a
real database (both backends); the process tests run ``aggregator fetch`` and
``aggregator run`` against a local feed server and break the export directory
the ways an operator meets: read-only, a crash (SIGKILL), a full disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from sqlalchemy import update
from support_proc import AggregatorProcess, wait_for

from aggregator.hexo import export as export_module
from aggregator.hexo.export import export_posts, file_name
from aggregator.hexo.post import Post
from aggregator.policy.dedup import entry_key
from aggregator.service.export import Exporter
from aggregator.store import IngestItem, Store
from aggregator.store import models as m
from aggregator.store.exports import LedgerRow, PostVersion, directory_key, plan_exports

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEY = ("新媒体", "观察者网", "头条")


# -- the decision, as a pure function -----------------------------------------


def _version(post_id: int, *, revision: int = 0, blocked: bool = False) -> PostVersion:
    return PostVersion(post_id, f"slug-{post_id}", revision, NOW, blocked)


def _row(row_id: int, post_id: int | None, *, revision: int = 0, at: datetime = NOW) -> LedgerRow:
    return LedgerRow(row_id, post_id, f"slug-{post_id}.md", revision, at)


def test_plan_writes_what_is_missing_or_stale_and_removes_what_must_go() -> None:
    plan = plan_exports(
        [
            (_version(1), None),  # never written
            (_version(2, revision=3), _row(20, 2, revision=2)),  # edited since
            (_version(3), _row(30, 3, at=NOW - timedelta(seconds=1))),  # reprocessed since
            (_version(4), _row(40, 4)),  # up to date
            (_version(5, blocked=True), _row(50, 5)),  # blocked since it was written
            (None, _row(60, None)),  # the post is gone
            (_version(7, blocked=True), None),  # blocked and never written
        ],
        file_name=lambda slug: f"{slug}.md",
    )
    assert plan.write == [1, 2, 3]
    assert [r.id for r in plan.remove] == [50, 60]
    assert plan.forget == []
    assert len(plan) == 5


def test_plan_never_removes_a_file_that_a_live_post_has_now() -> None:
    gone = LedgerRow(60, None, "slug-1.md", 0, NOW)  # an old row with post 1's file name
    plan = plan_exports([(_version(1), None), (None, gone)], file_name=lambda s: f"{s}.md")
    assert plan.write == [1]
    assert plan.remove == [] and plan.forget == [gone]
    other = LedgerRow(70, None, "kept.md", 0, NOW)
    plan = plan_exports([(None, other)], file_name=lambda s: f"{s}.md", live_names={"kept.md"})
    assert plan.forget == [other] and plan.remove == []


# -- the exporter on real files and a real database ---------------------------


def _post(title: str, body: str = "<p>正文</p>") -> Post:
    return Post(
        title=title,
        group="新媒体",
        outlet="观察者网",
        section="头条",
        body=body,
        date=datetime(2022, 3, 1, 8, 20, 30, tzinfo=UTC),
        author="观察者网",
    )


def _feed_id(store: Store, url: str = "https://example.org/feed") -> int:
    with store.engine.begin() as conn:
        conn.execute(
            m.Feed.__table__.insert().values(
                url=url,
                outlet="观察者网",
                section="头条",
                group_name="新媒体",
                enabled=True,
                in_config=True,
                interval_seconds=900,
                error_streak=0,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    return store.feed_ids([url])[url]


def _item(post: Post, guid: str, blocked: str | None = None) -> IngestItem:
    link = f"https://example.org/{guid}"
    return IngestItem(
        key=entry_key(guid, link, post.title, post.date),
        post=post,
        guid=guid,
        link=link,
        raw={"title": post.title},
        blocked=blocked,
    )


def _clean_export(store: Store, directory: Path) -> dict[str, bytes]:
    """What ``aggregator export`` writes into an empty directory, name -> bytes."""
    export_posts(directory, store.iter_posts())
    return _files(directory)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.md"))}


def _ledger(store: Store, directory: Path) -> dict[str, int]:
    return store.exports.files(directory)


def test_catch_up_writes_every_stored_post_once_and_records_it(
    store: Store, tmp_path: Path
) -> None:
    store.add_posts(seed_posts())
    out = tmp_path / "posts"
    exporter = Exporter(store, out)
    first = exporter.catch_up()
    assert (first.written, first.unchanged, first.missing) == (5, 0, 0)
    assert _files(out) == _clean_export(store, tmp_path / "clean")
    assert set(_ledger(store, out)) == set(_files(out))
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = exporter.catch_up()
    assert (again.written, again.unchanged) == (0, 0), "the ledger vouches: no file is even read"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


def test_edits_blocks_and_reprocess_changes_are_pending_until_written(
    store: Store, tmp_path: Path
) -> None:
    feed = _feed_id(store)
    store.ingest(feed, [_item(_post("甲"), "a"), _item(_post("乙"), "b")], now=NOW)
    out = tmp_path / "posts"
    exporter = Exporter(store, out)
    exporter.catch_up()
    assert len(_ledger(store, out)) == 2
    # The publisher edits "a" and a rule now blocks "b"; nobody exports (a crash).
    store.ingest(
        feed,
        [_item(_post("甲", "<p>改</p>"), "a"), _item(_post("乙", "<p>广告</p>"), "b", "广告")],
        now=NOW + timedelta(hours=1),
    )
    plan = store.exports.plan(out, file_name=file_name)
    assert len(plan.write) == 1 and len(plan.remove) == 1
    done = exporter.catch_up()
    assert (done.written, done.removed) == (1, 1)
    assert _files(out) == _clean_export(store, tmp_path / "clean")
    assert list(_ledger(store, out).values()) == [1], "the edited post's revision is recorded"
    # Reprocess changes content in place (no new revision): updated_at tells.
    with store.engine.begin() as conn:
        conn.execute(
            update(m.Post.__table__).values(
                body="<p>重新处理</p>", updated_at=NOW + timedelta(hours=2)
            )
        )
    assert exporter.catch_up().written == 1
    assert "重新处理" in next(iter(_files(out).values())).decode()


def test_a_relative_directory_is_one_directory_with_its_absolute_name(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_posts(seed_posts()[:2])
    monkeypatch.chdir(tmp_path)
    assert Exporter(store, Path("posts")).catch_up().written == 2
    assert directory_key(Path("posts")) == str(tmp_path.resolve() / "posts")
    assert len(_ledger(store, tmp_path / "posts")) == 2
    monkeypatch.chdir(tmp_path / "posts")
    assert len(store.exports.plan(Path(), file_name=file_name)) == 0


def test_replayed_files_count_as_exported_only_when_byte_identical(
    store: Store, tmp_path: Path
) -> None:
    store.add_posts(seed_posts())
    out = tmp_path / "posts"
    clean = _clean_export(store, out)  # the files the posts were replayed from
    victim = sorted(clean)[0]
    (out / victim).write_bytes(clean[victim].replace(b"<div>", b"<div> hand-edited"))
    done = Exporter(store, out).catch_up()
    assert (done.written, done.unchanged) == (1, 4)
    assert _files(out) == clean
    assert len(_ledger(store, out)) == 5


def test_one_file_that_cannot_be_written_does_not_stop_the_others(
    store: Store, tmp_path: Path
) -> None:
    store.add_posts(seed_posts())
    out = tmp_path / "posts"
    clean = _clean_export(store, tmp_path / "clean")
    blocked_name = sorted(clean)[2]
    (out / blocked_name).mkdir(parents=True)  # a directory where the file must go: EISDIR
    (out / blocked_name / "x").write_text("keep", encoding="utf-8")
    exporter = Exporter(store, out)
    done = exporter.catch_up()
    assert (done.written, done.missing) == (4, 1)
    problem = done.problem(out)
    assert problem is not None
    assert (
        str(out / blocked_name) in problem and "the next pass writes the 1 missing file" in problem
    )
    assert blocked_name not in _ledger(store, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file is left"
    shutil.rmtree(out / blocked_name)  # the operator fixes it
    assert exporter.catch_up().written == 1
    assert _files(out) == clean


def test_a_full_disk_at_the_write_call_is_retried_by_the_next_pass(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC injected at fsync (the tmpfs test below does it for real, as root)."""
    store.add_posts(seed_posts())
    out = tmp_path / "posts"
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(export_module.os, "fsync", fsync)
    exporter = Exporter(store, out)
    done = exporter.catch_up()
    assert done.written == 2 and done.missing == 3
    assert calls["n"] == 3, "after the disk filled up, the other files were not tried"
    assert done.problem(out) == (
        f"no space left on the device holding {out}: free some space, "
        "the next pass writes the 3 missing files"
    )
    assert len(_ledger(store, out)) == 2
    assert len(list(out.iterdir())) == 2, "no temporary file is left behind"
    monkeypatch.setattr(export_module.os, "fsync", real_fsync)
    assert exporter.catch_up().written == 3
    assert _files(out) == _clean_export(store, tmp_path / "clean")


def test_a_file_is_recorded_only_after_its_rename(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_posts(seed_posts()[:1])
    out = tmp_path / "posts"

    def refuse(self: Path, target: Path) -> Path:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(Path, "replace", refuse)
    done = Exporter(store, out).catch_up()
    assert done.missing == 1 and _ledger(store, out) == {}
    monkeypatch.undo()
    assert Exporter(store, out).catch_up().written == 1
    assert len(_ledger(store, out)) == 1


def test_temporary_files_of_a_killed_writer_are_swept_once_old(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "posts"
    out.mkdir()
    old = out / ".2022-03-01-abcdef123456.k3j_9x2a.tmp"
    fresh = out / ".2022-03-01-123456abcdef.zz81mq0p.tmp"
    mine = out / ".keep.tmp"  # not one of ours
    for path in (old, fresh, mine):
        path.write_bytes(b"half a post")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(mine, (an_hour_ago, an_hour_ago))
    Exporter(store, out).catch_up(sweep=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([fresh.name, mine.name])


# -- the real CLI and daemon against a local feed server ------------------------


def _feed_xml(n_items: int, *, seed: int = 0) -> str:
    """An RSS document of ``n_items`` seed-like stories, each with its own title."""
    post = seed_posts()[seed]
    return rss_document(
        "".join(
            seed_item(
                dataclasses.replace(post, title=f"{post.title} #{i}"),
                link=f"https://news.example.com/{i}",
                guid=f"story-{i}",
            )
            for i in range(n_items)
        )
    )


def _config(directory: Path, server: LocalServer, feed: str) -> Path:
    path = directory / "feeds.yaml"
    path.write_text(feeds_yaml({KEY: server.url(feed)}, interval="1h"), encoding="utf-8")
    return path


def _cli(
    *args: str | Path, db: str, cwd: Path, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "aggregator", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "AGGREGATOR_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _count(db_file: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


def _ledger_rows(db_file: Path, directory: Path) -> int:
    with contextlib.closing(sqlite3.connect(db_file)) as conn:
        row = conn.execute(
            "select count(*) from exports where directory = ?", (str(directory.resolve()),)
        ).fetchone()
        return int(row[0])


def _cli_export(db: str, cwd: Path) -> dict[str, bytes]:
    """``aggregator export`` into a fresh directory: what every pass must end up with."""
    clean = cwd / "clean"
    done = _cli("export", clean, db=db, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return _files(clean)


def _unprivileged(directory: Path) -> tuple[str, ...]:
    """A command prefix under which a ``chmod 555`` ``directory`` refuses writes.

    Root writes through permissions because of CAP_DAC_OVERRIDE; setpriv
    (util-linux) starts the command as root without it, so the directory's
    mode bits apply as they would to the daemon's own user.
    """
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot deny writes")
        prefix = (
            setpriv,
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search,-fowner,-linux_immutable",
            "--",
        )
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", f"open({str(directory / 'probe')!r}, 'w')"],
        capture_output=True,
        text=True,
    )
    if probe.returncode == 0:
        (directory / "probe").unlink()
        pytest.skip(f"cannot make {directory} refuse writes here: {probe.stderr.strip()}")
    assert "PermissionError" in probe.stderr, probe.stderr
    return prefix


def test_read_only_export_directory_keeps_the_posts_and_a_later_pass_writes_them(
    tmp_path: Path, local_server: LocalServer
) -> None:
    local_server.route("/a.xml", EtagFeed(_feed_xml(3)))
    config = _config(tmp_path, local_server, "/a.xml")
    db_file = tmp_path / "a.db"
    db = f"sqlite:///{db_file}"
    out = tmp_path / "posts"
    out.mkdir()
    out.chmod(0o555)
    try:
        prefix = _unprivileged(out)
        first = _cli(
            "fetch", "--config", config, "--export", out, db=db, cwd=tmp_path, prefix=prefix
        )
    finally:
        out.chmod(0o755)  # the operator fixes the permissions
    assert first.returncode == 1, first.stdout + first.stderr
    assert "3 new, 0 duplicate" in first.stdout
    assert (
        f"error: export: export directory {out} is not writable: fix permissions, "
        "the next pass writes the 3 missing files"
    ) in first.stderr
    assert "Traceback" not in first.stderr
    assert list(out.iterdir()) == []
    assert (_count(db_file, "posts"), _ledger_rows(db_file, out)) == (3, 0)

    again = _cli("fetch", "--config", config, "--export", out, db=db, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 new, 0 duplicate" in again.stdout, "the feed had nothing new (304)"
    assert (
        f"export: 3 file(s) written and 0 removed that earlier passes had left undone in {out}"
        in again.stdout
    )
    assert _files(out) == _cli_export(db, tmp_path)
    assert _ledger_rows(db_file, out) == 3


def _kill_mid_export(work: Path, out: Path, args: tuple[str, ...], db: str) -> None:
    """Start ``fetch --export`` and SIGKILL it as soon as its first file appears."""
    with AggregatorProcess(*args, db=db, cwd=work) as proc:
        child = proc.proc
        assert child is not None
        wait_for(
            lambda: (out.is_dir() and any(out.glob("*.md"))) or child.poll() is not None,
            120,
            "the export under way",
            step=0.002,
        )
        child.send_signal(signal.SIGKILL)
        child.wait(10)


@pytest.mark.slow
def test_kill_9_mid_export_then_the_next_pass_completes_every_file(
    tmp_path: Path, local_server: LocalServer
) -> None:
    n = 1500
    local_server.route("/big.xml", EtagFeed(_feed_xml(n)))
    for attempt in range(5):
        work = tmp_path / f"try{attempt}"
        work.mkdir()
        config = _config(work, local_server, "/big.xml")
        db_file = work / "a.db"
        db = f"sqlite:///{db_file}"
        out = work / "posts"
        args = ("fetch", "--config", str(config), "--export", str(out))
        _kill_mid_export(work, out, args, db)
        if 0 < len(list(out.glob("*.md"))) < n:
            break
    else:
        pytest.fail("the export was never caught under way in 5 attempts")
    assert _count(db_file, "posts") == n, "the posts were committed before their files"
    assert _ledger_rows(db_file, out) < n

    again = _cli(*args, db=db, cwd=work)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 new" in again.stdout
    assert _files(out) == _cli_export(db, work), "every file, byte for byte"
    assert _ledger_rows(db_file, out) == n
    leftovers = [p.name for p in out.iterdir() if p.suffix != ".md"]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers


def test_the_daemon_writes_the_missing_files_at_start(
    tmp_path: Path, local_server: LocalServer
) -> None:
    local_server.route("/a.xml", EtagFeed(_feed_xml(4)))
    config = _config(tmp_path, local_server, "/a.xml")
    db_file = tmp_path / "a.db"
    db = f"sqlite:///{db_file}"
    stored = _cli("fetch", "--config", config, db=db, cwd=tmp_path)  # no export: files missing
    assert stored.returncode == 0 and "4 new" in stored.stdout, stored.stderr
    polls = len(local_server.requests_to("/a.xml"))
    out = tmp_path / "posts"
    with AggregatorProcess(
        "run", "--config", str(config), "--export", str(out), db=db, cwd=tmp_path
    ) as daemon:
        wait_for(lambda: len(list(out.glob("*.md"))) == 4, 30, "the missing files written")
        wait_for(lambda: "export: wrote 4 file(s)" in daemon.log, 10, "the catch-up logged")
        assert daemon.stop()[0] == 0
    assert len(local_server.requests_to("/a.xml")) == polls, "from the database, not a poll"
    assert _files(out) == _cli_export(db, tmp_path)
    assert _ledger_rows(db_file, out) == 4
    assert _ledger_rows(db_file, tmp_path / "clean") == 4, "aggregator export records too"
    assert "Traceback" not in daemon.log, daemon.log


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


def test_full_export_disk_then_room_again_the_next_pass_writes_the_rest(
    tmp_path: Path, local_server: LocalServer
) -> None:
    n = 30
    local_server.route("/a.xml", EtagFeed(_feed_xml(n, seed=2)))
    config = _config(tmp_path, local_server, "/a.xml")
    db_file = tmp_path / "a.db"
    db = f"sqlite:///{db_file}"
    with _tmpfs(tmp_path / "posts", "size=64k") as out:
        first = _cli("fetch", "--config", config, "--export", out, db=db, cwd=tmp_path)
        assert first.returncode == 1, first.stdout + first.stderr
        assert f"no space left on the device holding {out}: free some space" in first.stderr
        written = len(list(out.glob("*.md")))
        assert 0 < written < n
        assert f"the next pass writes the {n - written} missing files" in first.stderr
        assert _ledger_rows(db_file, out) == written
        # The operator makes room.
        subprocess.run(["mount", "-o", "remount,size=4m", str(out)], check=True)
        again = _cli("fetch", "--config", config, "--export", out, db=db, cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 new" in again.stdout
        assert _files(out) == _cli_export(db, tmp_path)
        assert sorted(p.name for p in out.iterdir()) == sorted(_files(out)), "no temporary file"
    assert _ledger_rows(db_file, out) == n


def test_an_unusable_directory_is_reported_only_when_files_are_missing(
    store: Store, tmp_path: Path
) -> None:
    blocker = tmp_path / "site"
    blocker.write_text("not a directory", encoding="utf-8")
    out = blocker / "posts"  # its parent is a file: ENOTDIR, whoever runs it
    exporter = Exporter(store, out)
    assert exporter.catch_up().problem(out) is None, "nothing to write, nothing to report"
    store.add_posts(seed_posts()[:2])
    problem = exporter.catch_up().problem(out)
    assert problem == (
        f"cannot create export directory {out}: Not a directory: fix that, "
        "the next pass writes the 2 missing files"
    )
    blocker.unlink()
    assert exporter.catch_up().written == 2
    assert len(_ledger(store, out)) == 2


async def test_the_daemon_writes_them_within_a_minute_once_the_cause_is_gone(
    tmp_path: Path,
) -> None:
    import asyncio

    from aggregator.config.feeds import load_config
    from aggregator.service.daemon import Daemon, DaemonOptions

    config_path = tmp_path / "feeds.yaml"
    config_path.write_text("feeds: []\n", encoding="utf-8")
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    store.add_posts(seed_posts())
    blocker = tmp_path / "site"
    blocker.write_text("not a directory", encoding="utf-8")
    out = blocker / "posts"
    daemon = Daemon(
        store,
        config_path,
        load_config(config_path),
        export_dir=out,
        options=DaemonOptions(exports_every=0.2),
    )
    running = asyncio.create_task(daemon.run())
    try:
        await asyncio.sleep(1)  # several catch-ups fail meanwhile
        assert not running.done()
        blocker.unlink()  # the operator fixes it
        # The files are renamed into place before the ledger records them (in
        # the export's thread): wait for both, or the last row may still be
        # on its way.  Within the minute the test is named for.
        for _ in range(600):
            if out.is_dir() and len(_files(out)) == 5 and len(_ledger(store, out)) == 5:
                break
            await asyncio.sleep(0.1)
        assert _files(out) == _clean_export(store, tmp_path / "clean")
        assert len(_ledger(store, out)) == 5
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(running, 10) == 0
        store.close()
