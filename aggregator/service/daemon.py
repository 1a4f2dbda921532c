"""The daemon: ``aggregator run``.

APScheduler (3.x, asyncio) drives three in-process jobs:

* **claim** (every second): lease due feeds from the database and start a
  pipeline run for each, up to ``capacity`` at once;
* **reload** (every two seconds, and at once on SIGHUP): re-read feeds.yaml
  when it changed; an invalid file is logged and the running configuration
  stays;
* **heartbeat** (every 10 s): renew this daemon's row in ``daemons``;
* **housekeeping** (every 15 s): hand back the leases of daemons whose
  heartbeat is stale (killed anywhere, even on another machine), and the
  feed gauges for /metrics; hourly, the poll history is pruned
  (``aggregator.store.polls.prune_polls``);
* **exports** (at start, then every minute): write the files the export
  directory still lacks (see ``Pipeline.catch_up_exports``) -- posts stored
  while it was full or read-only, or before a crash.

Beside the jobs, with a ``publish:`` section, publishing runs as a task of its
own (:class:`aggregator.service.publish.Publishing`): polls that stored or
changed posts notify it, and it runs a round at most once per
``publish.interval``, never holding up a poll.

The schedule itself -- each feed's next poll time, validators and error
streak -- lives in the database, not in APScheduler's job store.  APScheduler
3 cannot share a job store between processes safely, and the database can
arbitrate: :meth:`Store.claim_fair` leases feeds in one transaction, so any
number of daemons on one PostgreSQL never poll a feed twice, and a restart
resumes exactly where the last run stopped.  A fleet (issue 17):

* claims are fair and polite fleet-wide: due order, but a host whose
  concurrency or spacing budget is spent (across all daemons, kept in the
  database) is skipped for now, and each claimed feed starts no earlier
  than its host's turn (aggregator.policy.fleet);
* leases follow liveness: a daemon whose heartbeat is older than
  ``stale_after`` (45 s) is presumed dead and its feeds are handed out again;
  every claim carries a fencing token, and a poll that outlived its lease is
  refused by the store (LeaseLost), so a feed is never stored twice.

Shutdown (SIGTERM/SIGINT): stop claiming, let in-flight feeds finish for up
to ``grace`` seconds, cancel the rest (their transactions commit whole or not
at all), give back every lease at once and delete the heartbeat row (a
rolling restart hands the feeds to the other daemons), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import DBAPIError, OperationalError

from aggregator.config.feeds import Config, ConfigError, FeedSpec, load_config
from aggregator.config.publish import PublishConfig
from aggregator.fetch.fetcher import Fetcher, FetchLimits, redact_url
from aggregator.hexo.export import ExportError, prepare_directory
from aggregator.policy.fleet import STALE_AFTER
from aggregator.service.memory import release_free_memory
from aggregator.service.metrics import Metrics
from aggregator.service.pipeline import FeedReport, ParseProcesses, Pipeline, database_unavailable
from aggregator.service.publish import Publishing
from aggregator.service.server import BindError, HttpServer, start_http_server
from aggregator.store import Claim, DatabaseURLError, FeedState, LeaseLost, SchemaNotReady, Store
from aggregator.store.fleet import feed_summary
from aggregator.store.polls import prune_polls

__all__ = ["Daemon", "DaemonOptions", "dead_local_owners", "pid_alive", "run_daemon"]

log = logging.getLogger(__name__)

_DB_ERRORS = (OperationalError, DBAPIError, OSError)
#: After cancelling a publishing round at shutdown, how long its child processes have to go.
KILL_WAIT = 6.0
#: Seconds between prunes of the poll history (a delete over an index; hourly is plenty).
PRUNE_POLLS_EVERY = 3600.0


def utcnow() -> datetime:
    return datetime.now(UTC)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up at once when ``event`` is set (a stop request)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    capacity: int = 16  # feeds polled at once by this process
    claim_every: float = 1.0
    reload_every: float = 2.0
    housekeeping_every: float = 15.0
    exports_every: float = 60.0
    # Longer than the fetch deadline plus full-text pages, so a lease only
    # lapses when its daemon died; then another daemon takes the feed over.
    lease: timedelta = timedelta(minutes=15)
    grace: float = 8.0  # SIGTERM to exit, well inside systemd's/Docker's 10 s
    db_retry_max: float = 30.0
    # Processes that parse and clean fetched feeds, off the event loop (see
    # pipeline.ParseProcesses); 0 parses in threads of this process.
    parse_workers: int = 1
    heartbeat_every: float = 10.0
    # A daemon silent this long is presumed dead; its leases are handed out.
    stale_after: timedelta = STALE_AFTER
    # How far ahead a claim may book a host's next start (policy.fleet).
    claim_horizon: timedelta = timedelta(seconds=2)
    # One /metrics series per feed (aggregator_last_success_timestamp_seconds);
    # off by default so a fleet of 30,000 feeds stays a few dozen series.
    metrics_per_feed: bool = False


def owner_id() -> str:
    """Who holds a lease: readable in `status` and unique per process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        # "pid (comm) S ...": the state follows the last ')'.
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no procfs (not Linux): trust kill()
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def dead_local_owners(
    owners: Iterable[str], *, me: str, alive: Callable[[int], bool] = pid_alive
) -> set[str]:
    """The lease owners that were daemons on this host whose process has ended.

    Their leases would otherwise block the feeds for the whole lease length
    (15 min) after a crash or ``kill -9``.  Only owners on *this* host can be
    judged -- a pid on another machine means nothing here -- so a daemon that
    died elsewhere still loses its leases by expiry.  An owner whose pid was
    reused by an unrelated process looks alive: the safe mistake (its leases
    expire as before).
    """
    host = me.rpartition(":")[0]
    dead = set()
    for owner in owners:
        owner_host, _, pid = owner.rpartition(":")
        if owner == me or owner_host != host or not pid.isdigit():
            continue
        if not alive(int(pid)):
            dead.add(owner)
    return dead


#: The APScheduler id of the daemon's claim job: its skipped ticks are not worth a warning.
CLAIM_JOB = "claim"


class _ClaimTickSkipped(logging.Filter):
    """Drop APScheduler's "skipped: maximum number of running instances" for the claim job.

    The claim job ticks every ``claim_every`` seconds and is also kicked
    whenever a poll ends; a tick that finds the previous claim still running
    (a long round on a busy SQLite writer) has nothing to do, and the next
    kick or tick claims.  At 30,000 feeds that warning came 600+ times in a
    round and buried the lines an operator needs.  A skipped run of any other
    job (heartbeat, housekeeping, reload, exports) still warns: there it
    means the job itself is stuck.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args or "running instances" not in str(record.msg):
            return True
        return getattr(args[0], "id", None) != CLAIM_JOB


def quiet_claim_skips(logger: logging.Logger | None = None) -> logging.Filter:
    """Install :class:`_ClaimTickSkipped` on APScheduler's scheduler logger (once)."""
    target = logger or logging.getLogger("apscheduler.scheduler")
    for existing in target.filters:
        if isinstance(existing, _ClaimTickSkipped):
            return existing
    quiet = _ClaimTickSkipped()
    target.addFilter(quiet)
    return quiet


class Daemon:
    """One polling process; see the module docstring."""

    def __init__(
        self,
        store: Store,
        config_path: Path,
        config: Config,
        *,
        export_dir: Path | None = None,
        metrics: Metrics | None = None,
        limits: FetchLimits | None = None,
        options: DaemonOptions | None = None,
    ) -> None:
        self.store = store
        self.config_path = config_path
        self.config = config
        self.export_dir = export_dir if export_dir is not None else config.output_dir
        self.metrics = metrics or Metrics()
        self.limits = limits
        self.options = options or DaemonOptions()
        self.owner = owner_id()
        self._specs: dict[str, FeedSpec] = {s.url: s for s in config.feeds}
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._stopping = False
        self._db_down_since: datetime | None = None
        # Leases we still hold for polls that died on a database error; given
        # back as soon as the database answers, so those feeds are polled
        # again at once instead of after the lease length.
        self._unreleased: set[int] = set()
        self._config_stamp = self._stamp()
        self._scheduler: AsyncIOScheduler | None = None
        self._pipeline: Pipeline | None = None
        self._exports_swept = False
        self._publishing: Publishing | None = None
        self._publish_task: asyncio.Task[None] | None = None
        self._polls_pruned = 0.0  # time.monotonic() of the last prune_polls
        self._claim_kicked = False
        self._claim_was_full = False
        # Claims run in a thread of their own: in the default pool they would
        # queue behind the polls' store writes, and a busy daemon would claim
        # late and seldom (a claim a second is what keeps the fleet fed).
        self._claim_thread = ThreadPoolExecutor(1, thread_name_prefix="claim")

    # -- lifecycle ------------------------------------------------------------

    def request_stop(self) -> None:
        if not self._stopping:
            log.info(
                "stopping: no new fetches; waiting up to %.0fs for %d in flight",
                self.options.grace,
                len(self._inflight),
            )
        self._stopping = True
        self._stop.set()

    def request_reload(self) -> None:
        log.info("SIGHUP: reloading %s", self.config_path)
        asyncio.get_running_loop().create_task(self._reload(force=True))

    async def run(self) -> int:
        """Poll until asked to stop; returns the exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        if not await self._sync_with_retry(spread_new=True):
            return 0
        with contextlib.suppress(*_DB_ERRORS):
            await asyncio.to_thread(self._register)
            await asyncio.to_thread(self._reclaim_dead_leases)
        limits = replace(self.limits or FetchLimits(), host_policies=self.config.hosts)
        workers = ParseProcesses(self.options.parse_workers) if self.options.parse_workers else None
        try:
            async with Fetcher(limits) as fetcher:
                self._pipeline = Pipeline(
                    self.store, fetcher, export_dir=self.export_dir, executor=workers
                )
                await self._serve()
        finally:
            if workers is not None:
                workers.kill()  # a parse still running after the grace period is dropped
            self._claim_thread.shutdown(wait=False)
        return 0

    async def _serve(self) -> None:
        """Schedule the jobs, and run them until asked to stop."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        o = self.options
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        quiet_claim_skips()
        scheduler.add_job(
            self._claim,
            "interval",
            seconds=o.claim_every,
            id=CLAIM_JOB,
            next_run_time=utcnow(),
            **common,
        )
        scheduler.add_job(self._reload, "interval", seconds=o.reload_every, id="reload", **common)
        scheduler.add_job(
            self._heartbeat, "interval", seconds=o.heartbeat_every, id="heartbeat", **common
        )
        scheduler.add_job(
            self._housekeeping,
            "interval",
            seconds=o.housekeeping_every,
            id="housekeeping",
            next_run_time=utcnow(),
            **common,
        )
        assert self._pipeline is not None
        if self._pipeline.exporter is not None:
            scheduler.add_job(
                self._catch_up_exports,
                "interval",
                seconds=o.exports_every,
                id="exports",
                next_run_time=utcnow(),
                **common,
            )
        self._scheduler = scheduler
        scheduler.start()
        self._start_publishing()
        log.info(
            "daemon %s polling %d feeds from %s",
            self.owner,
            len(self.config.enabled_feeds()),
            self.config_path,
        )
        await self._stop.wait()
        scheduler.shutdown(wait=False)
        await self._drain()
        await self._stop_publishing()

    # -- publishing -----------------------------------------------------------

    def _start_publishing(self) -> None:
        """Start the publishing task when feeds.yaml has a ``publish:`` section."""
        publish = self.config.publish
        if publish is None or self._publish_task is not None:
            return
        if self.export_dir is None:
            log.error("publish: needs an export directory (output_dir or --export); not started")
            return
        self._publishing = Publishing(self.store, publish, self.export_dir, metrics=self.metrics)
        self._publish_task = asyncio.create_task(
            self._publishing.serve(self._stop), name="publishing"
        )
        log.info(
            "publish: %s, at most one round every %s",
            ", ".join(publish.publishers) or "nothing configured",
            publish.interval,
        )

    async def _stop_publishing(self) -> None:
        """Let a round in progress finish within the grace period, then cancel it."""
        task = self._publish_task
        if task is None:
            return
        _done, pending = await asyncio.wait([task], timeout=self.options.grace)
        if pending:
            task.cancel()
            await asyncio.wait([task], timeout=KILL_WAIT)
            log.warning("publish: a round still running at shutdown was cancelled")
        self._publish_task = None

    def _published(self, changed: bool) -> None:
        """Posts were stored, changed or removed: the next round has work."""
        if changed and self._publishing is not None:
            self._publishing.notify()

    def _forget(self, feed_id: int, _task: asyncio.Task[None]) -> None:
        """A poll task ended: it no longer counts as in flight.

        Once half the slots are free, claim again now rather than at the next
        tick: with polls of a few milliseconds a claim a second would cap a
        daemon at ``capacity`` polls a second (a fleet at 30,000 feeds every
        5 minutes needs 100 a second).  Only while the last claim filled
        every free slot, though: otherwise nothing more was due (or allowed
        by the hosts' budgets), and a claim per finished poll would cost more
        than the polls.
        """
        self._inflight.pop(feed_id, None)
        if (
            self._claim_was_full
            and not self._stopping
            and not self._claim_kicked
            and self._scheduler is not None
            and self._scheduler.running
            and len(self._inflight) <= self.options.capacity // 2
        ):
            self._claim_kicked = True
            with contextlib.suppress(Exception):  # the job is gone while shutting down
                self._scheduler.modify_job("claim", next_run_time=utcnow())

    async def _drain(self) -> None:
        running = dict(self._inflight)  # the done-callbacks empty _inflight as tasks end
        if running:
            _done, pending = await asyncio.wait(running.values(), timeout=self.options.grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)
                log.warning("cancelled %d feed(s) still running at shutdown", len(pending))
        # Every lease back at once, and no heartbeat left to wait out: the
        # other daemons poll these feeds from their next claim (rolling restarts).
        try:
            freed = await asyncio.wait_for(
                asyncio.to_thread(self.store.retire_daemon, self.owner), 2
            )
        except (TimeoutError, *_DB_ERRORS):
            log.warning(
                "could not give back this daemon's leases; the others take them over "
                "once its heartbeat is %ds old",
                self.options.stale_after.total_seconds(),
            )
        else:
            if freed:
                log.info("gave back %d lease(s)", freed)

    @property
    def healthy(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "shutting down"
        if self._scheduler is None or not self._scheduler.running:
            return False, "scheduler not running"
        if self._db_down_since is not None:
            return False, f"database unavailable since {self._db_down_since:%H:%M:%S} UTC"
        return True, "ok"

    async def health(self) -> tuple[bool, str]:
        ok, reason = self.healthy
        if not ok:
            return ok, reason
        try:
            await asyncio.to_thread(self.store.ping)
        except _DB_ERRORS as exc:
            return False, f"database: {type(exc).__name__}"
        return True, "ok"

    # -- database outages -----------------------------------------------------

    def _db_failed(self, exc: BaseException) -> None:
        if not database_unavailable(exc):
            # One statement refused (a value, a constraint): the database is
            # up, /healthz stays green, and the job runs again on its timer.
            log.error("database refused a statement: %s", str(exc).splitlines()[0])
            return
        if self._db_down_since is None:
            self._db_down_since = utcnow()
            log.error("database unavailable, will keep retrying: %s", str(exc).splitlines()[0])

    def _db_ok(self) -> None:
        if self._db_down_since is not None:
            down = (utcnow() - self._db_down_since).total_seconds()
            log.warning("database is back after %.1f s", down)
            self._db_down_since = None

    async def _sync_with_retry(self, *, spread_new: bool) -> bool:
        delay = 1.0
        while not self._stopping:
            try:
                await asyncio.to_thread(
                    self.store.sync_feeds, self.config.feeds, now=utcnow(), spread_new=spread_new
                )
                await asyncio.to_thread(release_free_memory)
                self._db_ok()
                return True
            except _DB_ERRORS as exc:
                self._db_failed(exc)
                log.info("retrying the database in %.0fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, self.options.db_retry_max)
        return False

    def _register(self) -> None:
        host, _, pid = self.owner.rpartition(":")
        self.store.register_daemon(self.owner, host=host, pid=int(pid), now=utcnow())

    async def _heartbeat(self) -> None:
        if self._stopping:
            return
        try:
            alive = await asyncio.to_thread(self.store.heartbeat, self.owner, now=utcnow())
            if not alive:
                # Presumed dead (the database or this process stalled longer
                # than stale_after): our leases were handed out, and the
                # fencing tokens drop whatever our running polls still store.
                log.warning(
                    "this daemon's heartbeat was stale and its leases were handed to others; "
                    "registering again"
                )
                await asyncio.to_thread(self._register)
        except _DB_ERRORS as exc:
            self._db_failed(exc)

    def _reap_stale_daemons(self) -> None:
        """Hand out the leases of daemons anywhere whose heartbeat went stale."""
        reaped = self.store.reap_daemons(now=utcnow(), stale_after=self.options.stale_after)
        for owner, freed in sorted(reaped.items()):
            log.warning(
                "daemon %s sent no heartbeat for %ds: took back its %d lease(s)",
                owner,
                self.options.stale_after.total_seconds(),
                freed,
            )

    def _reclaim_dead_leases(self) -> None:
        """Free the leases of daemons on this host that died holding them.

        Their heartbeat rows go too (``retire_daemon``): a dead daemon still
        counted as live would keep its share of the spaced hosts from the
        others (policy.fleet) until its heartbeat went stale.
        """
        owners = self.store.lease_owners(now=utcnow())
        owners |= {owner for owner, _, _ in self.store.daemons()}
        dead = dead_local_owners(owners, me=self.owner)
        if dead:
            freed = sum(self.store.retire_daemon(owner) for owner in sorted(dead))
            log.warning(
                "took back %d lease(s) of %s: no such process on this host any more",
                freed,
                ", ".join(sorted(dead)),
            )

    # -- jobs ----------------------------------------------------------------------

    async def _claim(self) -> None:
        self._claim_kicked = False
        if self._stopping or self._pipeline is None:
            return
        free = self.options.capacity - len(self._inflight)
        if free <= 0:
            return
        try:
            if self._unreleased:
                orphans = self._unreleased - set(self._inflight)
                await asyncio.to_thread(self.store.release, orphans, owner=self.owner)
                self._unreleased -= orphans
            policy_for = self._pipeline.fetcher.policy_for
            # The clock is read in the claim's thread, not here: read before
            # a wait for the thread, it would book a host taken over from
            # another daemon too early by that wait, and the first request
            # would follow the other daemon's last by less than the spacing
            # (policy.fleet).  The claimed feeds' rows come back with it.
            claimed = await asyncio.get_running_loop().run_in_executor(
                self._claim_thread,
                lambda: self.store.claim_fair(
                    now=utcnow(),
                    limit=free,
                    lease=self.options.lease,
                    owner=self.owner,
                    policy_for=policy_for,
                    horizon=self.options.claim_horizon,
                    live_after=timedelta(seconds=self.options.heartbeat_every * 2.5),
                )
            )
        except _DB_ERRORS as exc:
            self._db_failed(exc)
            return
        states = {c.feed_id: c.state for c in claimed if c.state is not None}
        self._db_ok()
        self._claim_was_full = len(claimed) >= free
        stale: list[int] = []
        for claim in claimed:
            feed_id, url = claim.feed_id, claim.url
            spec = self._specs.get(url)
            if spec is None or not spec.enabled or feed_id in self._inflight:
                stale.append(feed_id)
                continue
            poll = self._poll(spec, claim, states.get(feed_id))
            task = asyncio.create_task(poll, name=f"poll {url}")
            self._inflight[feed_id] = task
            task.add_done_callback(functools.partial(self._forget, feed_id))
        if stale:
            await asyncio.to_thread(self.store.release, stale, owner=self.owner)

    async def _poll(self, spec: FeedSpec, claim: Claim, state: FeedState | None = None) -> None:
        assert self._pipeline is not None
        feed_id = claim.feed_id
        wait = (claim.start_at - utcnow()).total_seconds()
        if wait > 0:  # the host's turn, booked fleet-wide by the claim
            await _wait(self._stop, wait)
            if self._stopping:
                return  # not started: its lease goes back with the others
        try:
            report: FeedReport = await self._pipeline.run_feed(
                spec, feed_id, state, fence=claim.token
            )
        except asyncio.CancelledError:
            raise
        except LeaseLost as exc:
            log.warning("%s", exc)
            return
        except Exception as exc:
            if database_unavailable(exc):
                # Nothing of this poll was committed; once the database answers
                # the lease is given back and the feed is polled again with its
                # old validators, so nothing fetched meanwhile is lost.
                self._db_failed(exc)
                self._unreleased.add(feed_id)
                return
            # The pipeline records a feed's own failures, even unforeseen
            # ones; this one could not even be recorded.  The lease is kept,
            # so the feed is retried when it expires, not every second.
            log.error(
                "poll of %s failed and could not be recorded; retried in %s",
                redact_url(spec.url),
                self.options.lease,
                exc_info=exc,
            )
            return
        self._db_ok()
        self.metrics.observe(report)
        self._published(bool(report.new or report.updated or report.blocked))

    async def _catch_up_exports(self) -> None:
        if self._stopping or self._pipeline is None:
            return
        try:
            # The first run also clears temporary files a killed export left.
            result = await self._pipeline.catch_up_exports(sweep=not self._exports_swept)
            self._exports_swept = True
            self._published(result is not None and bool(result.written or result.removed))
        except _DB_ERRORS as exc:
            self._db_failed(exc)

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.config_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    async def _reload(self, force: bool = False) -> None:
        stamp = self._stamp()
        if not force and stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error(
                "%s is invalid; still running the previous configuration:\n  %s",
                self.config_path,
                "\n  ".join(exc.errors),
            )
            return
        if new == self.config and not force:
            return
        old_urls, new_urls = set(self._specs), {s.url for s in new.feeds}
        changed = sum(1 for s in new.feeds if s.url in self._specs and self._specs[s.url] != s)
        for gone in old_urls - new_urls:
            self.metrics.forget_feed(redact_url(gone))  # labelled as FeedReport.url is
        if new.publish != self.config.publish:
            self._reconfigure_publishing(new)
        self.config = new
        self._specs = {s.url: s for s in new.feeds}
        if self._pipeline is not None:
            self._pipeline.fetcher.set_host_policies(new.hosts)
        try:
            await asyncio.to_thread(
                self.store.sync_feeds, new.feeds, now=utcnow(), spread_new=False
            )
        except _DB_ERRORS as exc:
            self._db_failed(exc)
        await asyncio.to_thread(release_free_memory)
        log.info(
            "reloaded %s: %d added, %d removed, %d changed, %d feeds",
            self.config_path,
            len(new_urls - old_urls),
            len(old_urls - new_urls),
            changed,
            len(new.feeds),
        )

    def _reconfigure_publishing(self, new: Config) -> None:
        old = self.config.publish.publishers if self.config.publish is not None else ()
        kept = new.publish.publishers if new.publish is not None else ()
        for name in set(old) - set(kept):
            self.metrics.forget_publisher(name)
        if self._publishing is None:
            self.config = new
            if self._scheduler is not None:
                self._start_publishing()
        elif new.publish is None:
            if self._publish_task is not None:
                self._publish_task.cancel()
            self._publishing, self._publish_task = None, None
        else:
            self._publishing.configure(new.publish)
        log.info("publish: section changed; now %s", ", ".join(kept) or "off")

    async def _housekeeping(self) -> None:
        try:
            await asyncio.to_thread(self._reap_stale_daemons)
            await asyncio.to_thread(self._reclaim_dead_leases)
            summary = await asyncio.to_thread(feed_summary, self.store, now=utcnow())
        except _DB_ERRORS as exc:
            self._db_failed(exc)
            return
        self.metrics.set_feed_counts(
            due=summary.due, leased=summary.leased, active=summary.active
        )
        self.metrics.set_feed_states(
            summary.by_state, oldest_success_age=summary.oldest_success_age
        )
        await self._prune_polls()
        # What the polls since the last time freed in the C heap goes back.
        await asyncio.to_thread(release_free_memory)

    async def _prune_polls(self) -> None:
        """Keep the poll history bounded (aggregator.store.polls), at most once an hour."""
        if self._polls_pruned and time.monotonic() - self._polls_pruned < PRUNE_POLLS_EVERY:
            return
        self._polls_pruned = time.monotonic()
        try:
            removed = await asyncio.to_thread(prune_polls, self.store.engine, now=utcnow())
        except _DB_ERRORS as exc:
            self._db_failed(exc)
            return
        if removed:
            log.debug("poll history: %d old polls removed", removed)


async def _open_store_with_retry(
    url: str, stop: asyncio.Event, retry_max: float, on_fail: Callable[[BaseException], None]
) -> Store | None:
    delay = 1.0
    while not stop.is_set():
        try:
            return await asyncio.to_thread(Store.open, url)
        except _DB_ERRORS as exc:
            on_fail(exc)
            log.error(
                "cannot open the database (%s); retrying in %.0fs", str(exc).splitlines()[0], delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, retry_max)
    return None


async def _main(
    database_url: str,
    config_path: Path,
    *,
    http_bind: str | None,
    export_dir: Path | None,
    options: DaemonOptions,
    config: Config | None = None,
    http_token: str | None = None,
) -> int:
    # The CLI has loaded (and warned about) the file already; loading it
    # again here would print every warning twice at start.
    config = config if config is not None else load_config(config_path)
    metrics = Metrics(per_feed=options.metrics_per_feed)
    early_stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, early_stop.set)
    state: dict[str, Daemon | str] = {"why": "starting: waiting for the database"}

    async def health() -> tuple[bool, str]:
        daemon = state.get("daemon")
        if isinstance(daemon, Daemon):
            return await daemon.health()
        return False, str(state["why"])

    server: HttpServer | None = None
    if http_bind:
        try:
            from aggregator.service.web.site import OperatorSite

            def current_store() -> Store | None:
                daemon = state.get("daemon")
                return daemon.store if isinstance(daemon, Daemon) else None

            first_config = config

            def current_publish() -> PublishConfig | None:
                daemon = state.get("daemon")
                live = daemon.config if isinstance(daemon, Daemon) else first_config
                return live.publish

            site = OperatorSite(current_store, token=http_token, publish=current_publish)
            server = await start_http_server(http_bind, metrics=metrics, health=health, site=site)
        except (ValueError, BindError) as exc:
            log.error("--http %s: %s", http_bind, exc)
            return 1
    try:
        target = export_dir if export_dir is not None else config.output_dir
        if target is not None:
            # Refuse to start rather than poll for hours and write nothing out.
            prepare_directory(target)
        store = await _open_store_with_retry(
            database_url, early_stop, options.db_retry_max, lambda exc: None
        )
        if store is None:
            return 0
        daemon = Daemon(
            store, config_path, config, export_dir=export_dir, metrics=metrics, options=options
        )
        state["daemon"] = daemon
        try:
            return await daemon.run()
        finally:
            store.close()
    except (DatabaseURLError, ExportError, SchemaNotReady) as exc:
        # Waiting cannot fix these (a bad URL, a missing or read-only
        # directory): say what to change and exit instead of retrying forever.
        log.error("cannot start: %s", exc.strerror if isinstance(exc, ExportError) else exc)
        return 1
    finally:
        if server is not None:
            await server.stop()


def run_daemon(
    database_url: str,
    config_path: Path,
    *,
    http_bind: str | None = None,
    export_dir: Path | None = None,
    options: DaemonOptions | None = None,
    config: Config | None = None,
    http_token: str | None = None,
) -> int:
    """Entry point for ``aggregator run``; returns the exit status.

    ``config``, when given, is ``config_path`` as the caller already loaded it.
    """
    status = asyncio.run(
        _main(
            database_url,
            config_path,
            http_bind=http_bind,
            export_dir=export_dir,
            options=options or DaemonOptions(),
            config=config,
            http_token=http_token,
        )
    )
    log.info("stopped (exit status %d)", status)
    return status
