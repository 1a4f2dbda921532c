"""Publishing (issue 16): git against a real bare repository, a real command,
a webhook against a real HTTP receiver on 127.0.0.1, and their state.

Posts are stored from the seeds and exported by the real
:class:`~aggregator.hexo.export.Exporter`, so the ledger rows the webhook
queue reads are the ones a daemon writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from feedbuild import EtagFeed, feeds_yaml, rss_document, seed_item, seed_posts
from localserver import LocalServer
from sqlalchemy import select
from support_proc import AggregatorProcess, free_port, wait_for
from support_proc import aggregator as aggregator_cli

from aggregator.config.feeds import ConfigError, loads_config
from aggregator.config.publish import (
    CommandPublish,
    GitPublish,
    PublishConfig,
    WebhookPublish,
    publish_keys_table,
)
from aggregator.service.daemon import pid_alive
from aggregator.service.export import Exporter
from aggregator.service.metrics import Metrics
from aggregator.service.publish import (
    CommandPublisher,
    GitPublisher,
    Publishing,
    publisher_states,
    sign,
)
from aggregator.store import Store
from aggregator.store import models as m
from aggregator.store import publish as publish_ledger

ROOT = Path(__file__).resolve().parent.parent
FEED = "feeds:\n  - url: https://example.com/feed\n    outlet: A\n    section: B\n    group: C\n"


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
        },
    )
    return done.stdout


# -- configuration -------------------------------------------------------------------


def test_publish_section_loads_with_defaults_and_a_cwd_next_to_the_file(tmp_path: Path) -> None:
    text = FEED + (
        "publish:\n"
        "  interval: 2m\n"
        "  git: {push: true, branch: main}\n"
        "  command: {run: npx hexo generate, cwd: site}\n"
        "  webhook: {name: site, url: 'https://hooks.example/new', secret_env: HOOK_SECRET}\n"
    )
    config = loads_config(text, base_dir=tmp_path)
    publish = config.publish
    assert publish is not None
    assert publish.interval == timedelta(minutes=2)
    assert publish.git is not None and publish.git.push and publish.git.remote == "origin"
    assert publish.command is not None
    assert publish.command.run == ("npx", "hexo", "generate")
    assert publish.command.cwd == tmp_path / "site"
    assert publish.command.timeout == timedelta(minutes=10)
    assert publish.publishers == ("git", "command", "webhook:site")
    assert loads_config(FEED).publish is None
    assert loads_config(FEED + "publish: {command: {run: [make]}}").publish.interval == (  # type: ignore[union-attr]
        timedelta(seconds=60)
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{interval: -5}", "publish.interval: must not be negative"),
        ("{interval: 0}", "publish.interval: 0s is shorter than the 1s minimum"),
        ("{webhook: {url: 'ftp://x.example/'}}", "publish.webhook[0].url: must be an http(s) URL"),
        ("{webhook: {name: a}}", "needs url:"),
        ("{webhook: [{url: 'http://a.example/'}, {url: 'http://b.example/'}]}", "used twice"),
        ("{webhook: {url: 'http://a.example/', secret: s, secret_env: S}}", "not both"),
        ("{git: {pussh: true}}", "publish.git.pussh: unknown key"),
        ("{git: {author: bob}}", "must read like `Site Bot <bot@example.com>`"),
        ("{command: {cwd: site}}", "needs run:"),
        ("{command: {run: make, timeout: 1h-}}", "publish.command.timeout"),
        ("[git]", "publish: must be a mapping"),
    ],
)
def test_bad_publish_values_are_refused_with_the_key_and_the_reason(
    section: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        loads_config(FEED + f"publish: {section}\n")
    assert message in str(caught.value)
    assert ":6: publish" in str(caught.value)  # the line of the publish: key


def test_the_docs_show_the_publish_keys_as_the_models_define_them() -> None:
    docs = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert publish_keys_table() in docs


def test_a_missing_secret_variable_is_an_error_not_an_unsigned_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook = WebhookPublish.model_validate({"url": "http://127.0.0.1:9/", "secret_env": "NO_SUCH_X"})
    monkeypatch.delenv("NO_SUCH_X", raising=False)
    with pytest.raises(KeyError):
        hook.resolve_secret()
    monkeypatch.setenv("NO_SUCH_X", "s3cret")
    assert hook.resolve_secret() == "s3cret"


# -- helpers --------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A Hexo-like site in a git repository: posts go to source/_posts."""
    root = tmp_path / "site"
    (root / "source" / "_posts").mkdir(parents=True)
    git("init", "-q", "-b", "main", str(root), cwd=tmp_path)
    (root / "README").write_text("site\n")
    git("add", "README", cwd=root)
    git("commit", "-q", "-m", "start", cwd=root)
    return root


def export(store: Store, directory: Path, count: int | None = None) -> int:
    """Store seed posts (``count`` of them) and export; returns the files written."""
    store.add_posts(seed_posts()[:count])
    return Exporter(store, directory).catch_up().written


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- git ---------------------------------------------------------------------------------


def test_git_commits_the_new_post_files_with_counts_and_outlets(store: Store, site: Path) -> None:
    posts = site / "source" / "_posts"
    assert export(store, posts) == 5
    (posts / ".half-written.abcd1234.tmp").write_text("not a post")
    publisher = GitPublisher(GitPublish.model_validate({}), posts)
    outcome = run(publisher.run())
    assert outcome.error is None, outcome.error
    message = git("log", "-1", "--format=%B", cwd=site)
    assert message.startswith("aggregator: 5 new, 0 changed, 0 removed posts")
    outlets = {p.outlet for p in seed_posts()}
    assert all(outlet in message for outlet in outlets)
    committed = git("show", "--name-only", "--format=", "HEAD", cwd=site).split()
    assert len(committed) == 5 and all(n.startswith("source/_posts/") for n in committed)
    assert "?? source/_posts/.half-written.abcd1234.tmp" in git("status", "--short", cwd=site)
    # Nothing changed: no empty commit.
    head = git("rev-parse", "HEAD", cwd=site)
    assert run(publisher.run()).summary == "nothing to commit"
    assert git("rev-parse", "HEAD", cwd=site) == head
    # A removed post is a removed file in the next commit.
    victim = sorted(posts.glob("*.md"))[0]
    victim.unlink()
    assert run(publisher.run()).error is None
    assert git("log", "-1", "--format=%s", cwd=site).startswith(
        "aggregator: 0 new, 0 changed, 1 removed posts"
    )


def test_git_commits_the_archived_images_beside_the_posts_but_not_their_url_index(
    store: Store, site: Path, local_server: LocalServer
) -> None:
    """``images: archive`` writes ``source/images`` next to ``source/_posts`` (issue 16:
    "the changed post files (and archived images)"); the archive's URL index
    (``images/.by-url/``) is the daemon's bookkeeping, not the site's."""
    from aggregator.content.images import archive_images

    posts = site / "source" / "_posts"
    images = site / "source" / "images"
    for name in ("a", "b"):
        local_server.route(
            f"/{name}.png",
            body=b"\x89PNG\r\n\x1a\n" + name.encode() * 64,
            headers={"Content-Type": "image/png"},
        )

    async def download(url: str, headers: Any) -> Any:
        async with httpx.AsyncClient(timeout=10) as client:  # the local server
            answer = await client.get(url, headers=headers)
        return Downloaded(answer.content, answer.headers.get("content-type"))

    urls = [local_server.url("/a.png"), local_server.url("/b.png")]
    archived = run(archive_images(urls, download, images, {}))
    assert len(archived.mapping) == 2 and archived.failures == {}
    assert (images / ".by-url").is_dir()
    export(store, posts, 1)

    outcome = run(GitPublisher(GitPublish.model_validate({}), posts).run())
    assert outcome.error is None, outcome.error
    assert git("log", "-1", "--format=%s", cwd=site) == (
        "aggregator: 1 new, 0 changed, 0 removed posts, 2 image files\n"
    )
    committed = sorted(git("show", "--name-only", "--format=", "HEAD", cwd=site).split())
    expected = sorted("source" + path for path in archived.mapping.values())
    assert [n for n in committed if n.startswith("source/images/")] == expected
    assert len([n for n in committed if n.startswith("source/_posts/")]) == 1
    assert "?? source/images/.by-url/" in git("status", "--short", cwd=site)


def test_git_reads_the_changed_posts_off_the_event_loop(
    store: Store, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit message parses every changed post (for its outlet): after a catch-up
    that is thousands of files, so it must not run on the loop that polls feeds."""
    import aggregator.hexo.post as hexo_post

    posts = site / "source" / "_posts"
    export(store, posts, 3)
    threads: list[int] = []
    real_parse = hexo_post.parse

    def parse(text: str) -> Any:
        threads.append(threading.get_ident())
        return real_parse(text)

    monkeypatch.setattr(hexo_post, "parse", parse)

    async def commit() -> tuple[Any, int]:
        outcome = await GitPublisher(GitPublish.model_validate({}), posts).run()
        return outcome, threading.get_ident()

    outcome, loop_thread = run(commit())
    assert outcome.error is None, outcome.error
    assert len(threads) == 3 and loop_thread not in threads
    assert all(p.outlet in git("log", "-1", "--format=%B", cwd=site) for p in seed_posts()[:3])


@dataclasses.dataclass(frozen=True)
class Downloaded:
    """What the image archive's download returns (``aggregator.content.images.Downloaded``)."""

    content: bytes
    content_type: str | None


def test_git_outside_a_repository_says_what_to_do(store: Store, tmp_path: Path) -> None:
    posts = tmp_path / "plain" / "_posts"
    posts.mkdir(parents=True)
    publishing = Publishing(
        store, PublishConfig.model_validate({"git": {}}), posts, metrics=Metrics()
    )
    [outcome] = run(publishing.run_round())
    assert outcome.error is not None and "not inside a git repository" in outcome.error
    [state] = publisher_states(store, publishing.config)
    assert state.failing and state.last_error is not None and "git init" in state.last_error


def test_a_failed_push_keeps_the_commits_and_the_next_round_pushes_them(
    store: Store, site: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=site)
    posts = site / "source" / "_posts"
    config = PublishConfig.model_validate(
        {"git": {"push": True, "retries": 1, "retry_delay": 0}, "interval": "1s"}
    )
    metrics = Metrics()
    publishing = Publishing(store, config, posts, metrics=metrics)

    away = tmp_path / "remote-away.git"
    bare.rename(away)  # the remote is unreachable
    export(store, posts, 2)
    [outcome] = run(publishing.run_round())
    assert outcome.error is not None and "push to origin main failed 2 time(s)" in outcome.error
    assert outcome.pending == 1
    local = git("rev-parse", "HEAD", cwd=site).strip()
    [state] = publisher_states(store, config)
    assert state.failing and state.queue == 1
    assert 'aggregator_publisher_failing{publisher="git"} 1.0' in metrics.render()[0].decode()

    # The next round has work although nothing new was exported: the push.
    bare = away.rename(bare)
    [outcome] = run(publishing.run_round())
    assert outcome.error is None, outcome.error
    assert git("rev-parse", "main", cwd=bare).strip() == local
    [state] = publisher_states(store, config)
    assert not state.failing and state.queue == 0
    text = metrics.render()[0].decode()
    assert 'aggregator_publisher_queue{publisher="git"} 0.0' in text
    assert 'aggregator_publisher_runs_total{publisher="git",result="error"} 1.0' in text
    # Then nothing is due: no round runs git again.
    assert run(publishing.run_round()) == []


def test_a_rejected_push_is_rebased_onto_the_remote_and_pushed(
    store: Store, site: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=site)
    git("push", "-q", "origin", "main", cwd=site)
    other = tmp_path / "other"
    git("clone", "-q", str(bare), str(other), cwd=tmp_path)
    (other / "about.md").write_text("written elsewhere\n")
    git("add", "about.md", cwd=other)
    git("commit", "-q", "-m", "someone else", cwd=other)
    git("push", "-q", "origin", "main", cwd=other)

    posts = site / "source" / "_posts"
    export(store, posts, 3)
    publisher = GitPublisher(
        GitPublish.model_validate({"push": True, "retries": 1, "retry_delay": 0}), posts
    )
    outcome = run(publisher.run())
    assert outcome.error is None, outcome.error
    subjects = git("log", "--format=%s", "main", cwd=bare).splitlines()
    assert subjects[0].startswith("aggregator: 3 new") and "someone else" in subjects


# -- command ------------------------------------------------------------------------------


def test_the_command_output_is_logged_by_line_and_its_exit_status_kept(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    command = CommandPublish.model_validate(
        {"run": ["sh", "-c", "echo built; echo warned >&2; pwd; exit 3"], "cwd": str(tmp_path)}
    )
    caplog.set_level(logging.INFO, logger="aggregator.service.publish")
    outcome = run(CommandPublisher(command).run())
    assert outcome.error is not None and "exited with status 3" in outcome.error
    lines = [r.getMessage() for r in caplog.records]
    assert "command: built" in lines and "command: warned" in lines
    assert f"command: {tmp_path}" in lines
    ok = CommandPublish.model_validate({"run": "true"})
    assert run(CommandPublisher(ok).run()).error is None


def test_a_command_over_its_time_limit_is_stopped_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The shell starts a grandchild and waits: killing only the shell would leave it.
    command = CommandPublish.model_validate(
        {"run": ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], "timeout": "1s"}
    )
    outcome = run(CommandPublisher(command).run())
    assert outcome.error is not None and "no exit within 1 s" in outcome.error
    child = int(pidfile.read_text())
    assert not pid_alive(child)  # a zombie waiting for a reaper counts as dead


def test_a_command_runs_again_only_after_new_posts_or_after_it_failed(
    store: Store, tmp_path: Path
) -> None:
    marker = tmp_path / "runs"
    fail = tmp_path / "fail"
    fail.touch()
    config = PublishConfig.model_validate(
        {"command": {"run": ["sh", "-c", f"echo x >> {marker}; test ! -e {fail}"]}}
    )
    publishing = Publishing(store, config, tmp_path)
    assert [o.name for o in run(publishing.run_round())] == ["command"]  # at start: once
    assert run(publishing.run_round())[0].error is not None  # it failed: retried
    fail.unlink()
    assert run(publishing.run_round())[0].error is None
    assert run(publishing.run_round()) == []  # nothing new, nothing failed
    publishing.notify()
    assert [o.name for o in run(publishing.run_round())] == ["command"]
    assert marker.read_text().count("x") == 4


# -- webhook ------------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with the statuses queued in ``plan``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # the answer to each of ``received``
        self.plan: list[int] = []  # statuses to answer, then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                    status = receiver.plan.pop(0) if receiver.plan else 200
                    receiver.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def hook_config(url: str, **extra: Any) -> PublishConfig:
    return PublishConfig.model_validate(
        {"webhook": {"name": "site", "url": url, "backoff": 0, "max_backoff": 0, **extra}}
    )


def test_webhook_posts_each_new_post_signed_and_retries_a_500(
    store: Store, tmp_path: Path, receiver: Receiver
) -> None:
    posts = tmp_path / "_posts"
    config = hook_config(receiver.url, secret="It's a Secret to Everybody")
    publishing = Publishing(store, config, posts, metrics=Metrics())
    export(store, posts, 1)  # exported before the webhook was first seen: not sent
    assert run(publishing.run_round())[0].error is None
    assert receiver.received == []

    store.add_posts(seed_posts()[1:])
    Exporter(store, posts).catch_up()
    publishing.notify()
    receiver.plan = [500]
    [outcome] = run(publishing.run_round())
    assert outcome.error is not None and "HTTP 500" in outcome.error
    assert outcome.pending == 4 and len(receiver.received) == 1
    [outcome] = run(publishing.run_round())  # the back-off (0 here) has run out
    assert outcome.error is None and outcome.pending == 0
    assert len(receiver.received) == 5

    first = receiver.received[0]
    [retried] = [r for r in receiver.received[1:] if r[1] == first[1]]  # the same bytes ...
    assert first[0]["Idempotency-Key"] == retried[0]["Idempotency-Key"]  # ... and key
    keys = {headers["Idempotency-Key"] for headers, _ in receiver.received}
    assert len(keys) == 4
    for headers, body in receiver.received:
        expected = hmac.new(b"It's a Secret to Everybody", body, hashlib.sha256).hexdigest()
        assert headers["X-Aggregator-Signature"] == f"sha256={expected}"
        assert headers["Content-Type"].startswith("application/json")
        assert headers["X-Aggregator-Event"] == "post"
    assert sign("It's a Secret to Everybody", b"Hello, World!") == (
        # GitHub's documented example value for this secret and payload.
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    by_slug = {doc["slug"]: doc for doc in receiver.documents()}
    stored = {p.slug: p for p in store.iter_posts()}
    first_stored = min(stored.values(), key=lambda p: p.id).slug
    assert set(by_slug) == set(stored) - {first_stored}
    with store.engine.connect() as conn:
        hashes = dict(conn.execute(select(m.Post.slug, m.Post.content_hash)).all())
    for slug, doc in by_slug.items():
        post = stored[slug]
        assert doc["title"] == post.post.title
        assert doc["categories"] == list(post.post.categories)
        assert doc["content_hash"] == hashes[slug]
        assert doc["file"] == f"{slug}.md" and (posts / doc["file"]).is_file()
        assert doc["date"] == (post.post.date.isoformat() if post.post.date else None)
        assert "link" in doc


def test_a_restart_neither_repeats_delivered_posts_nor_loses_queued_ones(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    posts = tmp_path / "_posts"
    config = hook_config(receiver.url)
    store = Store.open(database_url)
    run(Publishing(store, config, posts).run_round())  # the webhook is seen: cursor placed
    export(store, posts)
    receiver.plan = [200, 200, 503]
    [outcome] = run(Publishing(store, config, posts).run_round())
    assert outcome.error is not None and outcome.pending == 3
    store.close()

    store = Store.open(database_url)  # a new process, as far as the database can tell
    try:
        [outcome] = run(Publishing(store, config, posts).run_round())
        assert outcome.error is None and outcome.pending == 0
        slugs = [doc["slug"] for doc in receiver.documents()]
        assert len(slugs) == 6  # 2 delivered, 1 failed (503) and retried, 2 more
        assert len(set(slugs)) == 5
        assert [s for s in set(slugs) if slugs.count(s) > 1] == [slugs[2]]  # the 503 one
        assert run(Publishing(store, config, posts).run_round())[0].pending == 0
        assert len(receiver.received) == 6  # nothing sent twice after a 2xx
    finally:
        store.close()


def test_delivered_rows_go_once_the_cursor_has_left_them_behind(
    store: Store, tmp_path: Path
) -> None:
    posts, now = tmp_path / "_posts", datetime(2026, 12, 3, tzinfo=UTC)
    engine = store.engine
    assert publish_ledger.enqueue_new_posts(engine, "site", posts, now=now) == 0  # cursor placed
    export(store, posts)
    assert publish_ledger.enqueue_new_posts(engine, "site", posts, now=now) == 5
    queue = publish_ledger.due_deliveries(engine, "site", now=now)
    long_ago = now - timedelta(days=40)
    for delivery in queue[:2]:
        publish_ledger.delivered(engine, delivery.id, now=long_ago, status=200)
    publish_ledger.delivered(engine, queue[2].id, now=now, status=200)  # recent: kept
    publish_ledger.failed(
        engine, queue[3].id, now=long_ago, retry_in=timedelta(0), error="HTTP 500", status=500
    )

    def rows() -> set[int]:
        with engine.connect() as conn:
            return set(conn.scalars(select(m.WebhookDelivery.id)))

    # Inside the re-read window a delivered row is what stops a second
    # delivery, however old: nothing goes.
    assert publish_ledger.prune_delivered(engine, "site", posts, now=now) == 0
    assert rows() == {d.id for d in queue}
    # Once the cursor has left them behind, the old delivered rows go; the
    # recent one and every undelivered one stay ...
    gone = publish_ledger.prune_delivered(engine, "site", posts, now=now, lookback=0)
    assert gone == 2 and rows() == {d.id for d in queue[2:]}
    # ... and their posts are not queued again.
    assert publish_ledger.enqueue_new_posts(engine, "site", posts, now=now, lookback=0) == 0
    assert publish_ledger.prune_delivered(engine, "other", posts, now=now) == 0  # never seen


def test_an_unreachable_receiver_backs_off_and_the_queue_shows(
    store: Store, tmp_path: Path
) -> None:
    posts = tmp_path / "_posts"
    config = PublishConfig.model_validate(
        {"webhook": {"name": "down", "url": "http://127.0.0.1:9/hook", "backoff": "1h"}}
    )
    metrics = Metrics()
    publishing = Publishing(store, config, posts, metrics=metrics)
    run(publishing.run_round())
    export(store, posts, 2)
    publishing.notify()
    [outcome] = run(publishing.run_round())
    assert outcome.error is not None and outcome.pending == 2
    # The failed row waits an hour; the other is due, but the round stopped at
    # the first failure. Next round: the second is tried once and fails too.
    [outcome] = run(publishing.run_round())
    assert outcome.error is not None
    assert run(publishing.run_round()) == []  # both wait out their back-off now
    [state] = publisher_states(store, config)
    assert state.name == "webhook:down" and state.queue == 2 and state.failing
    text = metrics.render()[0].decode()
    assert 'aggregator_publisher_queue{publisher="webhook:down"} 2.0' in text


# -- the command line ------------------------------------------------------------------


def test_aggregator_publish_and_status_from_the_command_line(
    tmp_path: Path, receiver: Receiver, site: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'agg.db'}"
    posts = site / "source" / "_posts"
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        FEED
        + f"output_dir: {posts}\n"
        + "publish:\n"
        + "  git: {}\n"
        + f"  command: {{run: [sh, -c, 'echo generated > out.txt'], cwd: {site}}}\n"
        + f"  webhook: {{name: site, url: '{receiver.url}', secret_env: HOOK_SECRET}}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "AGGREGATOR_DATABASE_URL": db, "HOOK_SECRET": "s"}
    env["PYTHONPATH"] = str(ROOT)

    def aggregator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aggregator", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = aggregator("publish", "--config", str(feeds))
    assert first.returncode == 0, first.stderr
    assert "webhook:site: 0 queued" in first.stdout
    store = Store.open(db)
    try:
        export(store, posts, 3)
    finally:
        store.close()
    second = aggregator("publish", "--config", str(feeds))
    assert second.returncode == 0, second.stderr
    assert "git: committed: aggregator: 3 new" in second.stdout
    assert (site / "out.txt").read_text() == "generated\n"
    assert len(receiver.received) == 3
    status = aggregator("status", "--json")
    assert status.returncode == 0, status.stderr
    states = {p["name"]: p for p in json.loads(status.stdout)["publishers"]}
    assert set(states) == {"git", "command", "webhook:site"}
    assert states["webhook:site"]["queue"] == 0 and states["git"]["last_error"] is None
    table = aggregator("status")
    assert "publishers" in table.stdout and "webhook:site" in table.stdout
    env.pop("HOOK_SECRET")
    third = aggregator("publish", "--config", str(feeds))
    assert third.returncode == 1
    assert "HOOK_SECRET (secret_env) is not set" in third.stderr


def test_publisher_states_lists_what_is_configured_before_it_ever_ran(store: Store) -> None:
    config = PublishConfig.model_validate(
        {"git": {}, "webhook": [{"name": "a", "url": "http://127.0.0.1:9/"}]}
    )
    states = publisher_states(store, config)
    assert [(s.name, s.kind, s.configured, s.queue) for s in states] == [
        ("git", "git", True, 0),
        ("webhook:a", "webhook", True, 0),
    ]
    assert not any(s.failing for s in states)
    assert all(s.last_success_at is None for s in states)
    now = datetime.now(UTC)
    assert now  # the dataclass is plain: the page renders it as it likes


# -- the daemon -----------------------------------------------------------------------------


def test_the_daemon_publishes_without_losing_or_repeating_across_a_restart(
    tmp_path: Path, site: Path, receiver: Receiver, local_server: LocalServer
) -> None:
    """A real ``aggregator run``: posts from a local feed are committed and pushed to a
    bare repository and POSTed to the receiver; the receiver fails part of the way,
    the daemon is stopped (SIGTERM) and started again, and every post ends up
    delivered exactly once with a 2xx, none lost."""
    bare = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=site)
    posts = site / "source" / "_posts"
    post = seed_posts()[0]
    local_server.route(
        "/feed.xml",
        EtagFeed(
            rss_document(
                "".join(
                    seed_item(
                        dataclasses.replace(post, title=f"{post.title} #{i}"),
                        link=f"https://news.example.com/{i}",
                        guid=f"story-{i}",
                    )
                    for i in range(3)
                )
            )
        ),
    )
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(
        feeds_yaml({("新媒体", "观察者网", "头条"): local_server.url("/feed.xml")}, interval="1h")
        + f"output_dir: {posts}\n"
        + "publish:\n"
        + "  interval: 1s\n"
        + "  git: {push: true, retry_delay: 0s}\n"
        + f"  webhook: {{name: site, url: '{receiver.url}', backoff: 1s, max_backoff: 1s}}\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'agg.db'}"
    # Seen once before the first poll: the posts the daemon stores are new to it.
    aggregator_cli("publish", "--config", str(feeds), db=db, cwd=tmp_path)
    receiver.plan = [200, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503]
    port = free_port()
    run_args = ("run", "--config", str(feeds), "--http", f"127.0.0.1:{port}")
    with AggregatorProcess(*run_args, db=db, cwd=tmp_path) as daemon:
        wait_for(lambda: len(list(posts.glob("*.md"))) == 3, 60, "three posts exported")
        wait_for(lambda: 503 in receiver.statuses, 60, "the receiver failing")
        wait_for(lambda: "git: pushed to origin main" in daemon.log, 60, "a push")
        code, _ = daemon.stop(timeout=30)
        assert code == 0, daemon.log
        assert "publish: git, webhook:site, at most one round every 0:00:01" in daemon.log
    delivered_before = [
        json.loads(body)["slug"]
        for (_, body), status in zip(receiver.received, receiver.statuses, strict=True)
        if status == 200
    ]
    assert len(delivered_before) == 1
    subjects = git("log", "--format=%s", "main", cwd=bare)
    assert "aggregator: 3 new, 0 changed, 0 removed posts" in subjects

    receiver.plan = []  # the receiver is fixed
    seen = len(receiver.received)
    with AggregatorProcess(*run_args, db=db, cwd=tmp_path) as daemon:
        wait_for(lambda: receiver.statuses.count(200) == 3, 60, "every post delivered")

        def metrics() -> str:
            url = f"http://127.0.0.1:{port}/metrics"
            return str(urllib.request.urlopen(url, timeout=10).read().decode())

        # The gauges are refreshed at the end of the round that delivered
        # the posts, a moment after the receiver saw them: wait for that.
        wait_for(
            lambda: 'aggregator_publisher_queue{publisher="webhook:site"} 0.0' in metrics(),
            30,
            "the queue gauge at 0",
        )
        # The series itself, not only its HELP line (which is there from the start).
        assert 'aggregator_publisher_last_success_timestamp_seconds{publisher="webhook:site"}' in (
            metrics()
        )
        code, _ = daemon.stop(timeout=30)
        assert code == 0, daemon.log
    after = [json.loads(body)["slug"] for _, body in receiver.received[seen:]]
    assert delivered_before[0] not in after, "a delivered post was sent again"
    ok = [
        json.loads(body)["slug"]
        for (_, body), status in zip(receiver.received, receiver.statuses, strict=True)
        if status == 200
    ]
    assert len(ok) == len(set(ok)) == 3


def test_rounds_are_debounced_and_run_beside_the_caller(store: Store, tmp_path: Path) -> None:
    """``serve`` runs a round at start, then gathers notifications until the interval
    has passed; the event loop stays free meanwhile (the command is a child process)."""
    marker = tmp_path / "runs"
    command = {"run": ["sh", "-c", f"echo x >> {marker}; sleep 0.3"]}

    async def scenario(interval: str, notifies: int) -> tuple[int, int]:
        config = PublishConfig.model_validate({"interval": interval, "command": command})
        publishing = Publishing(store, config, tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(publishing.serve(stop))
        ticks = 0
        while not marker.exists() or marker.read_text().count("x") < 1:
            await asyncio.sleep(0.01)
            ticks += 1  # the loop is not blocked while the round runs
        for _ in range(notifies):
            publishing.notify()
            await asyncio.sleep(0.05)
        if interval == "1s":
            for _ in range(600):
                if marker.read_text().count("x") >= 2:
                    break
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 10)
        return marker.read_text().count("x"), ticks

    runs, ticks = run(scenario("1h", 5))
    assert runs == 1  # five notifications inside the hour: gathered, not run
    assert ticks > 0
    marker.unlink()
    runs, _ = run(scenario("1s", 3))
    assert runs == 2  # at start, then once for the three notifications


def test_a_reload_starts_changes_and_stops_publishing(store: Store, tmp_path: Path) -> None:
    from aggregator.service.daemon import Daemon

    marker = tmp_path / "runs"
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(FEED, encoding="utf-8")
    plain = loads_config(FEED)
    with_command = loads_config(
        FEED + f"publish: {{interval: 1h, command: {{run: [sh, -c, 'echo x >> {marker}']}}}}\n"
    )
    with_git = loads_config(FEED + "publish: {git: {}}\n")

    async def scenario() -> None:
        daemon = Daemon(store, feeds, plain, export_dir=tmp_path / "_posts")
        daemon._scheduler = object()  # type: ignore[assignment]  # "running": reloads may start it
        daemon._reconfigure_publishing(with_command)
        assert daemon._publish_task is not None and daemon._publishing is not None
        for _ in range(400):
            # The shell creates the file before it writes the line: wait for the line.
            if marker.exists() and marker.read_text().endswith("\n"):
                break
            await asyncio.sleep(0.05)
        assert marker.read_text() == "x\n"  # the new section's first round ran
        daemon.config = with_command
        daemon._reconfigure_publishing(with_git)
        assert [p.name for p in daemon._publishing.publishers] == ["git"]
        daemon.config = with_git
        task = daemon._publish_task
        daemon._reconfigure_publishing(plain)
        assert daemon._publishing is None and daemon._publish_task is None
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled() or task.done()

    run(scenario())
