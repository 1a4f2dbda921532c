"""`aggregator fetch` end to end: a real feed server, a real database, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from feedbuild import (
    EtagFeed,
    feeds_yaml,
    outlet_feeds,
    rss_document,
    seed_item,
    seed_paths,
    seed_posts,
)
from localserver import LocalServer
from support_proc import aggregator

from aggregator.hexo.post import parse


@pytest.fixture
def seed_farm(local_server: LocalServer, tmp_path: Path) -> Path:
    """Serves one RSS feed per seed outlet; returns the feeds.yaml naming them."""
    urls = {}
    for n, (key, document) in enumerate(outlet_feeds(seed_posts()).items()):
        local_server.route(f"/feed{n}.xml", EtagFeed(document))
        urls[key] = local_server.url(f"/feed{n}.xml")
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(urls), encoding="utf-8")
    return config


def test_fetch_then_export_reproduces_the_seeds(
    database_url: str,
    tmp_path: Path,
    seed_farm: Path,
    local_server: LocalServer,
) -> None:
    out = tmp_path / "posts"
    first = aggregator(
        "fetch", "--config", str(seed_farm), "--export", str(out), db=database_url, cwd=tmp_path
    )
    assert first.stdout.endswith("5 new, 0 duplicate, 0 updated, 0 failed (2 feeds)\n")
    written = sorted(p.read_bytes() for p in out.iterdir())
    assert written == sorted(p.read_bytes() for p in seed_paths())

    # `export` into an empty directory gives the same files.
    again = tmp_path / "again"
    aggregator("export", str(again), db=database_url, cwd=tmp_path)
    assert sorted(p.read_bytes() for p in again.iterdir()) == written

    # A second pass is answered 304 and adds nothing.
    local_server.clear()
    second = aggregator("fetch", "--config", str(seed_farm), db=database_url, cwd=tmp_path)
    requests = local_server.requests
    assert len(requests) == 2
    assert all(r.headers.get("If-None-Match") for r in requests)
    assert "304" in second.stdout
    assert second.stdout.endswith("0 new, 0 duplicate, 0 updated, 0 failed (2 feeds)\n")
    replay = aggregator("replay", str(out), db=database_url, cwd=tmp_path)
    assert replay.stdout == "0 new, 5 duplicate\n"


def test_fetch_one_feed_by_outlet(
    tmp_path: Path, seed_farm: Path, local_server: LocalServer
) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    aggregator(
        "fetch",
        "--config",
        str(seed_farm),
        "--feed",
        "观察者网",
        "--export",
        str(tmp_path / "o"),
        db=db,
        cwd=tmp_path,
    )
    (only,) = (tmp_path / "o").iterdir()
    assert parse(only.read_text(encoding="utf-8")).outlet == "观察者网"
    assert len(local_server.requests) == 1


def test_a_failing_feed_does_not_stop_the_others(tmp_path: Path, local_server: LocalServer) -> None:
    posts = seed_posts()
    (key, document), *_ = outlet_feeds(posts).items()
    local_server.route("/good.xml", EtagFeed(document))
    local_server.route("/gone.xml", status=500, body="boom")
    config = tmp_path / "feeds.yaml"
    config.write_text(
        feeds_yaml(
            {
                key: local_server.url("/good.xml"),
                ("新媒体", "Broken", "新闻"): local_server.url("/gone.xml"),
            }
        ),
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'a.db'}"
    proc = aggregator("fetch", "--config", str(config), db=db, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "500" in proc.stdout
    assert proc.stdout.endswith("4 new, 0 duplicate, 0 updated, 1 failed (2 feeds)\n")
    status = aggregator("status", db=db, cwd=tmp_path).stdout
    assert "transient" in status
    out = tmp_path / "posts"
    aggregator("export", str(out), db=db, cwd=tmp_path)
    assert len(list(out.iterdir())) == 4


def test_an_invalid_config_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n  - url: http://127.0.0.1:9/x\n    outlet: A\n    interval: soon\n",
        encoding="utf-8",
    )
    proc = aggregator(
        "fetch",
        "--config",
        str(config),
        db=f"sqlite:///{tmp_path / 'a.db'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "feeds.yaml:4" in proc.stderr
    assert "interval" in proc.stderr


def test_json_logs_carry_one_line_per_poll(tmp_path: Path, seed_farm: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    proc = aggregator(
        "--log-format", "json", "fetch", "--config", str(seed_farm), db=db, cwd=tmp_path
    )
    polls = [json.loads(line) for line in proc.stderr.splitlines() if '"feed"' in line]
    assert len(polls) == 2
    assert {p["status"] for p in polls} == {200}
    assert sum(p["new"] for p in polls) == 5
    assert all({"feed", "duplicate", "bytes", "ms", "level", "time"} <= p.keys() for p in polls)


def test_worker_processes_change_nothing_but_speed(
    local_server: LocalServer, tmp_path: Path
) -> None:
    """40 feeds (enough for the parse workers) carrying the five seed stories
    eight times over: with workers and without (--workers 0) the same five
    posts come out, byte for byte, and the same 35 duplicates are found."""
    posts = seed_posts()
    urls = {}
    for n in range(40):
        post = posts[n % len(posts)]
        item = seed_item(post, link=f"https://news.example.com/{n}", guid=f"story-{n}")
        local_server.route(f"/f{n}.xml", EtagFeed(rss_document(item)))
        urls[(post.group, f"Outlet {n}", post.section)] = local_server.url(f"/f{n}.xml")
    config = tmp_path / "feeds.yaml"
    config.write_text(feeds_yaml(urls), encoding="utf-8")
    exported = {}
    for workers in ("0", "2"):
        db = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        out = tmp_path / f"posts-{workers}"
        run = aggregator(
            "fetch", "--config", str(config), "--workers", workers, "--export", str(out),
            db=db, cwd=tmp_path,
        )  # fmt: skip
        assert run.stdout.endswith("5 new, 35 duplicate, 0 updated, 0 failed (40 feeds)\n")
        exported[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(exported["0"]) == 5
    assert exported["0"] == exported["2"]


def test_the_summary_is_a_table_on_a_terminal_and_tab_separated_lines_elsewhere(
    tmp_path: Path, seed_farm: Path
) -> None:
    import os
    import pty
    import subprocess
    import sys

    from aggregator.service.runner import SUMMARY_COLUMNS

    db = f"sqlite:///{tmp_path / 'a.db'}"
    piped = aggregator("fetch", "--config", str(seed_farm), db=db, cwd=tmp_path).stdout
    header, *rows, totals = piped.splitlines()
    assert header.split("\t") == list(SUMMARY_COLUMNS)
    assert totals == "5 new, 0 duplicate, 0 updated, 0 failed (2 feeds)"
    feeds = sorted(row.split("\t")[5] for row in rows)
    assert feeds == ["Aljazeera 半岛网 / 新闻", "观察者网 / 头条"]
    assert all(row.split("\t")[0] == "200" and row.endswith("\tok") for row in rows)

    # A person at a terminal gets rich's table, as before (a small one: it
    # must fit the terminal's buffer, read once the command is done).
    leader, follower = pty.openpty()
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": db, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "aggregator", "fetch", "--config", str(seed_farm)],
        cwd=tmp_path, env=env, stdout=follower, stderr=subprocess.PIPE, timeout=120,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed once everything is read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.returncode == 0, proc.stderr
    text = shown.decode("utf-8", "replace")
    assert "fetch summary" in text and "┏━" in text and "\t" not in text
    assert "0 new, 0 duplicate, 0 updated, 0 failed (2 feeds)" in text
