"""Publishing: after posts were stored, commit them, build the site, tell others.

The ``publish:`` section of feeds.yaml (:mod:`aggregator.config.publish`)
names up to three kinds of publisher, run one after another in a *round*:

* :class:`GitPublisher` commits the changed post files (and archived images)
  in the export directory's repository, and optionally pushes; a push that
  fails is retried with back-off, and commits that could not be pushed stay
  in the repository and go with the next round's push;
* :class:`CommandPublisher` runs a command (``npx hexo generate``) in its own
  process group with a time limit, its output logged line by line;
* :class:`WebhookPublisher` POSTs a JSON document per new post, through an
  outbox in the database (:mod:`aggregator.store.publish`) so that a restart
  neither loses nor repeats a delivery.

:class:`Publishing` decides when: a round runs at most once per
``publish.interval`` (changes in between are gathered into the next round),
only for the publishers that have something to do, and always as a task of
its own -- git and the command are child processes, the database is reached
from threads, HTTP is asynchronous -- so the daemon's polling never waits for
it.  ``aggregator publish`` runs one round by hand (after ``aggregator fetch``
from cron).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator.errors import AggregatorError
from aggregator.policy.urls import redact_url

# Defined with the status command's other tables (light: no store), used here too.
from aggregator.service.status import (
    PublisherStatus,
    publisher_statuses,
    publisher_table,
    status_rows,
)
from aggregator.store import Store
from aggregator.store import publish as ledger

if TYPE_CHECKING:
    from aggregator.config.publish import (
        CommandPublish,
        GitPublish,
        PublishConfig,
        WebhookPublish,
    )
    from aggregator.service.metrics import Metrics

# The HTTP client (fetch), the post parser (hexo) and pydantic (config) are
# imported where a publisher runs: the daemon's page and /metrics import this
# module for publisher_states.  ``aggregator status`` does not import it at
# all (its publisher table lives in aggregator.service.status).

__all__ = [
    "CommandPublisher",
    "GitPublisher",
    "ProcessResult",
    "PublishError",
    "PublisherStatus",
    "Publishing",
    "RunOutcome",
    "WebhookPublisher",
    "publisher_states",
    "publisher_table",
    "run_process",
    "sign",
    "status_rows",
]

log = logging.getLogger(__name__)

#: After SIGTERM, how long a timed-out command's process group has before SIGKILL.
KILL_GRACE = 5.0
#: Output lines of a failed command quoted in its error.
ERROR_TAIL = 3
#: Deliveries one webhook sends per round at most (the rest go next round).
MAX_DELIVERIES_PER_ROUND = 1000
#: Outlets named in a commit message, the busiest first.
MESSAGE_OUTLETS = 12
DEFAULT_AUTHOR = ("aggregator", "aggregator@localhost")

class PublishError(AggregatorError):
    """A publisher cannot run as configured (no git repository, no export directory)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Aggregator-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body.

    The scheme is GitHub's ``X-Hub-Signature-256``: the key is the secret's
    UTF-8 bytes, the message the request body exactly as sent.  A receiver
    computes the same over the bytes it read and compares with
    :func:`hmac.compare_digest`.
    """
    import hashlib
    import hmac

    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# -- child processes ---------------------------------------------------------------


@dataclass(slots=True)
class ProcessResult:
    """How a child process ended: exit status (None: killed at the time limit), output."""

    argv: Sequence[str]
    returncode: int | None
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def tail(self, lines: int = ERROR_TAIL) -> str:
        return " | ".join(line for line in self.output[-lines:] if line.strip())


def _kill_group(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _stop_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole group, SIGKILL it after :data:`KILL_GRACE`."""
    _kill_group(process, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE)
    except TimeoutError:
        _kill_group(process, signal.SIGKILL)
        await process.wait()
    # Children that outlived the leader (a daemonised grandchild) go too.
    _kill_group(process, signal.SIGKILL)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    limit: float,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    stdin: bytes | None = None,
) -> ProcessResult:
    """Run ``argv`` in a new session (its own process group), output merged and read by line.

    After ``limit`` seconds the whole group is stopped (a ``hexo`` started by ``npx``
    is a grandchild: killing only the child would leave it running), and the
    result has ``returncode`` None.  Cancelling the caller stops the group
    the same way.  ``on_line`` sees each line as it comes.
    """
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        limit=1 << 20,  # longest line read whole
    )
    result = ProcessResult(argv, None)
    assert process.stdout is not None

    async def read() -> None:
        if stdin is not None:
            assert process.stdin is not None
            process.stdin.write(stdin)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await process.stdin.drain()
            process.stdin.close()
        assert process.stdout is not None
        while True:
            try:
                raw = await process.stdout.readline()
            except ValueError:  # one line over the limit: take it in pieces
                raw = await process.stdout.read(1 << 20)
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            result.output.append(line)
            if len(result.output) > 200:
                del result.output[:100]  # keep the tail, memory stays bounded
            if on_line is not None:
                on_line(line)
        await process.wait()

    try:
        await asyncio.wait_for(read(), limit)
    except TimeoutError:
        await _stop_group(process)
        result.seconds = time.monotonic() - started
        return result
    except BaseException:
        await asyncio.shield(_stop_group(process))
        raise
    result.returncode = process.returncode
    result.seconds = time.monotonic() - started
    return result


# -- outcomes and state ------------------------------------------------------------


@dataclass(slots=True)
class RunOutcome:
    """What one publisher did in a round: ``error`` None on success."""

    name: str
    summary: str
    error: str | None = None
    pending: int = 0
    #: Nothing was tried (a webhook whose queue waits out its back-off): not a success.
    idle: bool = False


def publisher_states(store: Store, config: PublishConfig | None = None) -> list[PublisherStatus]:
    """Every publisher the database knows or ``config`` names, in run order then by name.

    Publishers that ran once but are no longer configured are listed with
    ``configured`` False (a webhook's undelivered queue stays in the
    database until it is configured again).
    """
    names = list(config.publishers) if config is not None else None
    return publisher_statuses(ledger.publisher_rows(store.engine), names)


# -- git -----------------------------------------------------------------------------


class GitPublisher:
    """Commits the export directory's changes and pushes them; see the module docstring."""

    name = "git"

    def __init__(self, config: GitPublish, export_dir: Path) -> None:
        self.config = config
        self.export_dir = export_dir
        self._env: dict[str, str] | None = None

    async def _git(
        self, *args: str, cwd: Path, stdin: bytes | None = None, check: bool = True
    ) -> ProcessResult:
        result = await run_process(
            ["git", *args],
            cwd=cwd,
            limit=self.config.timeout.total_seconds(),
            env=self._env,
            stdin=stdin,
        )
        if check and not result.ok:
            what = "timed out" if result.timed_out else f"exited with status {result.returncode}"
            raise PublishError(f"git {args[0]} {what}: {result.tail() or 'no output'}")
        return result

    async def _environment(self, root: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody will type
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        env["LC_ALL"] = "C"  # messages we read (rejections) in English
        author = self.config.author_parts()
        if author is None:
            self._env = env
            known = await self._git("config", "user.email", cwd=root, check=False)
            if not known.ok or not "".join(known.output).strip():
                author = DEFAULT_AUTHOR
        if author is not None:
            env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = author[0]
            env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = author[1]
        return env

    async def run(self) -> RunOutcome:
        if not self.export_dir.is_dir():
            raise PublishError(f"export directory {self.export_dir} does not exist yet")
        self._env = None
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
        self._env = env
        top = await self._git("rev-parse", "--show-toplevel", cwd=self.export_dir, check=False)
        if not top.ok:
            raise PublishError(
                f"export directory {self.export_dir} is not inside a git repository: "
                f"run `git init` in the site's directory (or remove publish.git)"
            )
        root = Path(top.output[-1])
        self._env = await self._environment(root)
        paths = self._paths(root)
        committed, summary = (
            await self._commit(root, paths) if paths else (False, "nothing to commit")
        )
        if not self.config.push:
            return RunOutcome(self.name, summary)
        return await self._push(root, summary, committed)

    def _paths(self, root: Path) -> list[str]:
        """The configured paths that exist, relative to the repository's root."""
        out = []
        for entry in self.config.paths:
            path = (self.export_dir / entry).resolve()
            if not path.exists():
                continue
            try:
                out.append(str(path.relative_to(root.resolve())) or ".")
            except ValueError:
                raise PublishError(
                    f"publish.git.paths: {path} is outside the repository at {root}"
                ) from None
        return out

    async def _commit(self, root: Path, paths: list[str]) -> tuple[bool, str]:
        listed = await self._git(
            "ls-files",
            "-z",
            "--others",
            "--modified",
            "--deleted",
            "--exclude-standard",
            "--",
            *paths,
            cwd=root,
        )
        names = "\n".join(listed.output).split("\0")
        # Hidden files are ours and not the site's: an export's temporary
        # file, the image archive's URL index (.by-url/).
        changed = sorted(
            {n for n in names if n and not any(p.startswith(".") for p in Path(n).parts)}
        )
        if not changed:
            return False, "nothing to commit"
        spec = b"".join(name.encode("utf-8") + b"\0" for name in changed)
        await self._git(
            "add", "-A", "--pathspec-from-file=-", "--pathspec-file-nul", cwd=root, stdin=spec
        )
        status = await self._git(
            "diff",
            "--cached",
            "--name-status",
            "-z",
            "--no-renames",
            "--",
            *paths,
            cwd=root,
        )
        fields = "\n".join(status.output).split("\0")
        changes = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]
        if not changes:
            return False, "nothing to commit"
        # Reads and parses every changed post for its outlet: a catch-up of
        # 30,000 posts is seconds of work, done off the loop that polls.
        message = await asyncio.to_thread(self._message, root, changes)
        await self._git(
            "commit",
            "-q",
            "--no-verify",
            "-m",
            message,
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
            cwd=root,
            stdin=spec,
        )
        first = message.splitlines()[0]
        log.info("git: committed in %s: %s", root, first)
        return True, f"committed: {first}"

    def _message(self, root: Path, changes: list[tuple[str, str]]) -> str:
        """``aggregator: 3 new, 1 changed, 0 removed posts, 2 images`` and the outlets."""
        from aggregator.hexo.post import PostFormatError, parse

        export = self.export_dir.resolve()
        counts: Counter[str] = Counter()
        outlets: Counter[str] = Counter()
        images = 0
        for status, name in changes:
            path = root / name
            if path.resolve().parent != export or path.suffix not in (".md", ".txt"):
                images += 1
                continue
            kind = {"A": "new", "D": "removed"}.get(status[:1], "changed")
            counts[kind] += 1
            if kind == "removed":
                continue
            try:
                outlets[parse(path.read_text("utf-8")).outlet] += 1
            except (OSError, UnicodeDecodeError, PostFormatError):
                outlets["?"] += 1
        head = (
            f"aggregator: {counts['new']} new, {counts['changed']} changed, "
            f"{counts['removed']} removed posts"
        )
        if images:
            head += f", {images} image file{'s' if images != 1 else ''}"
        lines = [head]
        if outlets:
            busiest = outlets.most_common()
            named = ", ".join(f"{name} {n}" for name, n in busiest[:MESSAGE_OUTLETS])
            more = len(busiest) - MESSAGE_OUTLETS
            lines += ["", f"Outlets: {named}" + (f" and {more} more" if more > 0 else "")]
        return "\n".join(lines)

    async def _branch(self, root: Path) -> str:
        if self.config.branch is not None:
            return self.config.branch
        head = await self._git("symbolic-ref", "--short", "-q", "HEAD", cwd=root, check=False)
        if not head.ok or not head.output:
            raise PublishError(
                "the repository is not on a branch (detached HEAD): set publish.git.branch"
            )
        return head.output[-1].strip()

    async def _ahead(self, root: Path, branch: str) -> int | None:
        """Commits not yet on the remote, as far as the last push/fetch knows (None: unknown)."""
        tracking = f"refs/remotes/{self.config.remote}/{branch}"
        counted = await self._git("rev-list", "--count", f"{tracking}..HEAD", cwd=root, check=False)
        if not counted.ok or not counted.output:
            return None
        return int(counted.output[-1].strip())

    async def _push(self, root: Path, summary: str, committed: bool) -> RunOutcome:
        branch = await self._branch(root)
        ahead = await self._ahead(root, branch)
        if ahead == 0:
            return RunOutcome(self.name, summary)
        remote = self.config.remote
        delay = self.config.retry_delay.total_seconds()
        error = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                log.info("git: push retry %d of %d in %.0f s", attempt, self.config.retries, delay)
                await asyncio.sleep(delay)
                delay *= 2
            pushed = await self._git(
                "push", "--porcelain", remote, f"HEAD:refs/heads/{branch}", cwd=root, check=False
            )
            if pushed.ok:
                log.info("git: pushed to %s %s", remote, branch)
                return RunOutcome(self.name, f"{summary}; pushed to {remote} {branch}")
            text = "\n".join(pushed.output)
            error = pushed.tail() or "no output"
            if pushed.timed_out:
                error = f"timed out after {self.config.timeout.total_seconds():.0f} s"
            elif "[rejected]" in text or "non-fast-forward" in text or "fetch first" in text:
                error = f"rejected (the remote has commits we lack): {error}"
                await self._integrate(root, branch)
            log.warning("git: push to %s %s failed: %s", remote, branch, error)
        waiting = await self._ahead(root, branch)
        pending = waiting if waiting else 1
        return RunOutcome(
            self.name,
            summary,
            error=(
                f"push to {remote} {branch} failed {self.config.retries + 1} time(s): {error}; "
                f"{pending} commit(s) stay and are pushed next round"
            ),
            pending=pending,
        )

    async def _integrate(self, root: Path, branch: str) -> None:
        """After a rejected push: fetch the remote branch and rebase our commits onto it.

        Post files have unique names, so the site's other writers rarely
        conflict with us; if they do, the rebase is undone and the error
        says so (the push keeps failing until someone merges by hand).
        """
        fetched = await self._git("fetch", "-q", self.config.remote, branch, cwd=root, check=False)
        if not fetched.ok:
            return
        rebased = await self._git(
            "rebase", "-q", "--autostash", "FETCH_HEAD", cwd=root, check=False
        )
        if not rebased.ok:
            await self._git("rebase", "--abort", cwd=root, check=False)
            log.error(
                "git: our commits do not rebase onto %s %s (%s): merge by hand",
                self.config.remote,
                branch,
                rebased.tail(),
            )


# -- command --------------------------------------------------------------------------


class CommandPublisher:
    """Runs ``publish.command``; its output is logged at INFO, line by line."""

    name = "command"

    def __init__(self, config: CommandPublish) -> None:
        self.config = config

    async def run(self) -> RunOutcome:
        argv = list(self.config.run)
        shown = " ".join(argv)
        log.info("command: running %s", shown)
        try:
            result = await run_process(
                argv,
                cwd=self.config.cwd,
                limit=self.config.timeout.total_seconds(),
                on_line=lambda line: log.info("command: %s", line),
            )
        except FileNotFoundError as exc:
            raise PublishError(
                f"command {argv[0]!r} not found ({exc.strerror}); "
                "check publish.command.run and PATH"
            ) from None
        except NotADirectoryError:
            raise PublishError(
                f"publish.command.cwd {self.config.cwd} is not a directory"
            ) from None
        except PermissionError as exc:
            raise PublishError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        if result.timed_out:
            log.warning("command: %s stopped after the %.0f s time limit", shown, result.seconds)
            return RunOutcome(
                self.name,
                f"killed after {result.seconds:.0f} s",
                error=f"{shown}: no exit within {self.config.timeout.total_seconds():.0f} s; "
                "its process group was stopped",
            )
        log.info(
            "command: %s exited with status %d in %.1f s", shown, result.returncode, result.seconds
        )
        if not result.ok:
            return RunOutcome(
                self.name,
                f"exit status {result.returncode}",
                error=(
                    f"{shown} exited with status {result.returncode}: "
                    f"{result.tail() or 'no output'}"
                ),
            )
        return RunOutcome(self.name, f"exit status 0 in {result.seconds:.1f} s")


# -- webhook ------------------------------------------------------------------------


class WebhookPublisher:
    """Queues new posts for one webhook and delivers the queue; see the module docstring.

    Headers of each POST: ``Content-Type: application/json; charset=utf-8``,
    ``X-Aggregator-Event: post``, ``X-Aggregator-Delivery`` and
    ``Idempotency-Key`` (the same value, fixed per webhook and post: a
    retried delivery carries the key of the first try), and, with a secret,
    ``X-Aggregator-Signature: sha256=<hex>`` (:func:`sign`).
    """

    def __init__(
        self,
        config: WebhookPublish,
        store: Store,
        export_dir: Path,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.export_dir = export_dir
        self.clock = clock
        self.name = config.publisher

    def retry_in(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failure: backoff, doubled each time, capped."""
        backoff, cap = self.config.backoff, self.config.max_backoff
        return min(backoff * (2 ** min(attempts, 30)), cap) if backoff else timedelta(0)

    async def enqueue(self) -> int:
        """Queue the posts exported since the last call (see ``store.publish``)."""
        return await asyncio.to_thread(
            ledger.enqueue_new_posts,
            self.store.engine,
            self.name,
            self.export_dir,
            now=self.clock(),
        )

    async def due(self) -> bool:
        """Whether a queued delivery's time has come."""
        first = await asyncio.to_thread(ledger.next_attempt, self.store.engine, self.name)
        return first is not None and first <= self.clock()

    async def run(self) -> RunOutcome:
        from aggregator.fetch.fetcher import FetchError
        from aggregator.fetch.webhook import JsonPoster

        queued = await self.enqueue()
        await asyncio.to_thread(
            ledger.prune_delivered,
            self.store.engine,
            self.name,
            self.export_dir,
            now=self.clock(),
        )
        try:
            secret = self.config.resolve_secret()
        except KeyError as exc:
            raise PublishError(
                f"publish.webhook {self.config.name}: environment variable {exc.args[0]} "
                "(secret_env) is not set; nothing is sent unsigned"
            ) from None
        sent = failed = 0
        error: str | None = None
        url = self.config.url
        timeout = self.config.timeout.total_seconds()
        async with JsonPoster(timeout=timeout) as poster:
            while error is None and sent < MAX_DELIVERIES_PER_ROUND:
                batch = await asyncio.to_thread(
                    ledger.due_deliveries, self.store.engine, self.name, now=self.clock()
                )
                if not batch:
                    break
                for delivery in batch:
                    headers = {
                        "X-Aggregator-Event": "post",
                        "X-Aggregator-Delivery": delivery.key,
                        "Idempotency-Key": delivery.key,
                    }
                    if secret is not None:
                        headers["X-Aggregator-Signature"] = sign(secret, delivery.body)
                    status: int | None = None
                    try:
                        answer = await poster.post(url, delivery.body, headers=headers)
                        status = answer.status
                        if not answer.ok:
                            error = f"HTTP {answer.status}: {answer.head.strip()[:200]}"
                    except FetchError as exc:
                        error = exc.reason
                    if error is None:
                        await asyncio.to_thread(
                            ledger.delivered,
                            self.store.engine,
                            delivery.id,
                            now=self.clock(),
                            status=status or 0,
                        )
                        sent += 1
                        continue
                    wait = self.retry_in(delivery.attempts)
                    await asyncio.to_thread(
                        ledger.failed,
                        self.store.engine,
                        delivery.id,
                        now=self.clock(),
                        retry_in=wait,
                        error=error,
                        status=status,
                    )
                    failed += 1
                    log.warning(
                        "webhook %s: delivery %s to %s failed (attempt %d): %s; retried in %s",
                        self.config.name,
                        delivery.key,
                        redact_url(url),
                        delivery.attempts + 1,
                        error,
                        wait,
                    )
                    # The receiver is failing: the rest wait for the next round
                    # rather than each running into the same error now.
                    break
        rows = await asyncio.to_thread(ledger.publisher_rows, self.store.engine, [self.name])
        queue = rows[0].queue if rows else 0
        summary = f"{queued} queued, {sent} delivered, {queue} waiting"
        if sent:
            log.info("webhook %s: %s", self.config.name, summary)
        return RunOutcome(
            self.name,
            summary,
            error=None if error is None else f"{redact_url(url)}: {error} ({queue} waiting)",
            pending=queue,
            idle=error is None and not sent and bool(queue),
        )


# -- rounds ---------------------------------------------------------------------------


Publisher = GitPublisher | CommandPublisher | WebhookPublisher


class Publishing:
    """Runs publishing rounds: debounced, each publisher only when it has work.

    ``notify()`` says posts were stored or changed; :meth:`serve` (a task of
    its own in the daemon) runs a round at most once per ``interval``, and
    :meth:`run_round` runs one now (``aggregator publish``).  Which
    publisher has work: all of them after ``notify()`` (and at start, to
    finish whatever a previous process left); git also while commits wait to
    be pushed; the command also after it failed; a webhook also while a
    queued delivery is due.
    """

    def __init__(
        self,
        store: Store,
        config: PublishConfig,
        export_dir: Path,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.export_dir = export_dir
        self.metrics = metrics
        self.clock = clock
        self._wake = asyncio.Event()
        self._running = False
        self.configure(config)

    def configure(self, config: PublishConfig) -> None:
        """Take a new ``publish:`` section (a reload); every publisher has work once."""
        self.config = config
        publishers: list[Publisher] = []
        if config.git is not None:
            publishers.append(GitPublisher(config.git, self.export_dir))
        if config.command is not None:
            publishers.append(CommandPublisher(config.command))
        for hook in config.webhook:
            publishers.append(WebhookPublisher(hook, self.store, self.export_dir, clock=self.clock))
        self.publishers = publishers
        self._dirty = {p.name for p in publishers}
        self._retry: set[str] = set()
        self._wake.set()

    def notify(self) -> None:
        """Posts were stored, changed or removed: every publisher has work."""
        self._dirty = {p.name for p in self.publishers}
        self._wake.set()

    async def _has_work(self, publisher: Publisher) -> bool:
        if publisher.name in self._dirty:
            return True
        if isinstance(publisher, WebhookPublisher):
            # Its retries are timed by each delivery's back-off, not by rounds.
            return await publisher.due()
        return publisher.name in self._retry

    async def run_round(self, *, everything: bool = False) -> list[RunOutcome]:
        """Run, one after another, the publishers with work (``everything``: all of them)."""
        outcomes = []
        self._running = True
        try:
            for publisher in list(self.publishers):
                try:
                    if not everything and not await self._has_work(publisher):
                        continue
                except Exception as exc:  # the database is away: try it next round
                    log.warning("publish: cannot tell whether %s has work: %s", publisher.name, exc)
                    continue
                self._dirty.discard(publisher.name)
                outcome = await self._run_one(publisher)
                outcomes.append(outcome)
                if outcome.error is None:
                    self._retry.discard(publisher.name)
                elif not isinstance(publisher, WebhookPublisher):
                    self._retry.add(publisher.name)
            await self.refresh_metrics()
        finally:
            self._running = False
        return outcomes

    async def _run_one(self, publisher: Publisher) -> RunOutcome:
        try:
            outcome = await publisher.run()
        except PublishError as exc:
            outcome = RunOutcome(publisher.name, "not run", error=str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("publish: %s failed unexpectedly", publisher.name, exc_info=exc)
            outcome = RunOutcome(publisher.name, "failed", error=f"{type(exc).__name__}: {exc}")
        if outcome.error is not None:
            log.error("publish: %s: %s", publisher.name, outcome.error)
        try:
            await asyncio.to_thread(
                ledger.record_run,
                self.store.engine,
                publisher.name,
                now=self.clock(),
                error=outcome.error,
                pending=outcome.pending,
                success=not outcome.idle,
            )
        except Exception as exc:
            log.warning("publish: %s's outcome not recorded (database: %s)", publisher.name, exc)
        if self.metrics is not None:
            self.metrics.publisher_ran(publisher.name, ok=outcome.error is None)
        return outcome

    async def refresh_metrics(self) -> None:
        """Copy every configured publisher's stored state into the gauges."""
        if self.metrics is None:
            return
        try:
            states = await asyncio.to_thread(publisher_states, self.store, self.config)
        except Exception as exc:
            log.debug("publish: metrics not refreshed: %s", exc)
            return
        for state in states:
            if state.configured:
                self.metrics.set_publisher(
                    state.name,
                    last_success=state.last_success_at.timestamp()
                    if state.last_success_at
                    else None,
                    last_error=state.last_error_at.timestamp() if state.last_error_at else None,
                    queue=state.queue,
                    failing=state.failing,
                )

    async def serve(self, stop: asyncio.Event) -> None:
        """Run rounds until ``stop`` is set: at most one per ``interval``, only with work.

        Idle, it looks every ``interval`` whether a retry is due (a push
        that failed, a webhook delivery whose back-off ran out).
        """
        last: float | None = None
        while not stop.is_set():
            interval = self.config.interval.total_seconds()
            if last is not None and time.monotonic() - last < interval:
                await _wait(stop, interval - (time.monotonic() - last))
                continue
            if not self._dirty and not self._retry:
                self._wake.clear()
                webhook_due = False
                for publisher in self.publishers:
                    if isinstance(publisher, WebhookPublisher):
                        with contextlib.suppress(Exception):
                            webhook_due = webhook_due or await publisher.due()
                if not webhook_due:
                    await _wait_either(stop, self._wake, interval)
                    continue
            last = time.monotonic()
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("publish: round failed: %s", exc, exc_info=exc)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(seconds, 0.0))


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Sleep until ``stop`` or ``wake`` is set, or ``seconds`` passed."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()


async def publish_once(
    store: Store, config: PublishConfig, export_dir: Path, *, everything: bool = True
) -> list[RunOutcome]:
    """``aggregator publish``: one round of every configured publisher."""
    publishing = Publishing(store, config, export_dir)
    return await publishing.run_round(everything=everything)
