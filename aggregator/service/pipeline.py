"""One feed, end to end: fetch -> parse -> content -> store -> export.

``Pipeline.run_feed`` is what both ``aggregator fetch`` and the daemon call
for each due feed.  It never raises for a problem with the feed itself: every
outcome -- new posts, 304, a timeout, an HTML page instead of a feed -- ends as
a :class:`FeedReport` and as state on the feed's row, so one broken feed
cannot stop the others.  Neither does an exception nobody foresaw, nor a
statement the database refuses for this feed's values (``DataError``,
``IntegrityError``): both end as that feed's error, classed transient so it
backs off.  Only a database that cannot be reached
(:func:`database_unavailable`) propagates: the caller decides whether to
wait for it (the daemon) or give up (``fetch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aggregator.config.feeds import DEFAULT_DISABLE_AFTER, FeedSpec, FullText
from aggregator.fetch.fetcher import (
    Fetcher,
    FetchError,
    FetchResult,
    FetchTimeout,
    HTTPStatusError,
    Validators,
    cache_max_age,
    redact_url,
)
from aggregator.fetch.netguard import AddressGuard
from aggregator.policy import rsshub
from aggregator.policy.dedup import slug_for
from aggregator.policy.repair import repair_text
from aggregator.policy.schedule import (
    ErrorClass,
    ErrorState,
    Hints,
    after_failure,
    classify_status,
    is_challenge,
    next_after_success,
)
from aggregator.store import FeedState, FeedUpdate, IngestJob, IngestResult, LeaseLost, Store
from aggregator.store.feeds import KEEP, PollOutcome
from aggregator.store.polls import PollRecord
from aggregator.types import Entry, ParsedFeed

# The stages a fetched body goes through (the parser, the content stage, the
# parse worker's entry point, ~80 ms of imports) and the export are imported
# where a body or an export directory first needs them: a pass of 304s (a
# warm `fetch`, most daemon rounds) needs none of them in this process.
if TYPE_CHECKING:
    from aggregator.content.items import IngestItem
    from aggregator.content.rawentry import StoredPage
    from aggregator.hexo.export import ExportResult
    from aggregator.parse.parser import FeedParseError
    from aggregator.service.export import Exporter

__all__ = [
    "FeedReport",
    "ParseProcesses",
    "Pipeline",
    "database_unavailable",
    "describe_error",
    "fetch_page",
    "refused_statement",
]

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

#: Full-text pages fetched at once for one feed (the fetcher's per-host
#: limit still applies on top).
FULL_TEXT_CONCURRENCY = 4


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class FeedReport:
    """What one poll of one feed did; one log line and one summary row."""

    url: str
    outlet: str
    section: str
    status: int | None = None
    new: int = 0
    duplicate: int = 0
    updated: int = 0
    unchanged: int = 0
    blocked: int = 0
    wire_bytes: int = 0
    elapsed_ms: int = 0
    error: str | None = None
    error_class: str | None = None
    #: New posts whose entry date was thrown out as impossible (future, pre-1995).
    dates_replaced: int = 0
    #: Entries left out because building their post failed (see ``notes``).
    skipped: int = 0
    #: New posts whose date is not the entry's own as written, by reason
    #: (:data:`aggregator.policy.dates.REASONS`): replaced, or its zone assumed.
    date_notes: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: When the feed is polled next and why (the poll history on the operator's page).
    next_check_at: datetime | None = None
    schedule: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def log_fields(self) -> dict[str, Any]:
        return {
            "feed": self.url,
            "status": self.status if self.status is not None else "-",
            "new": self.new,
            "duplicate": self.duplicate,
            "updated": self.updated,
            "blocked": self.blocked,
            "skipped": self.skipped,
            "bytes": self.wire_bytes,
            "ms": self.elapsed_ms,
        }


async def fetch_page(fetcher: Fetcher, link: str, *, guard: AddressGuard | None) -> StoredPage:
    """An item's article page, decoded; raises ``FetchError``.

    Item links are chosen by whoever writes the feed: pass the address
    guard unless the feed opts out (``allow_private_networks``).
    """
    from bs4 import UnicodeDammit  # only feeds with a full_text rule get here

    page = await fetcher.fetch(link, accept="text/html,application/xhtml+xml", guard=guard)
    html = UnicodeDammit(page.content, [page.charset] if page.charset else []).unicode_markup
    # The page's text becomes the post's body: no NUL or other control either.
    from aggregator.content.rawentry import StoredPage

    return StoredPage(page.final_url, repair_text(html or ""))


#: A fetched feed up to this size is parsed in a thread of the daemon even
#: when it has worker processes (:class:`ParseProcesses`); only a bigger one
#: goes to a worker.  The parsers are linear in their input (tests/test_hostile.py),
#: so a small body holds the event loop for milliseconds at most, and
#: pickling its items back costs more than it saves.  Ordinary news feeds
#: (20-200 KB) thus never start the worker and its ~55 MB; a 16 MiB body, or
#: one built to be slow, still cannot stall ``/healthz``.
IN_PROCESS_PARSE_MAX_BYTES = 256 * 1024


class ParseProcesses(Executor):
    """Worker processes for the daemon's parsing and cleaning, started when first needed.

    In a thread, a feed's parse and clean-up share the daemon's GIL with
    the event loop, and one long C call -- a regex over a 16 MiB body,
    feedparser's ``str.translate`` of it, ``str.split`` into millions of
    words -- holds it for seconds: ``/healthz`` stops answering and no
    other feed is fetched meanwhile.  In a process the loop is never held
    up, whatever a feed contains; only the pickled bytes in and items out
    cross, in milliseconds.

    A worker that dies (killed for memory, a crash in a C library) breaks a
    :class:`ProcessPoolExecutor` for good; here the next submit starts a
    fresh pool, so one hostile feed fails alone.  :meth:`kill` ends the
    workers at once: a stop does not wait for a parse still running.
    """

    def __init__(self, workers: int = 1) -> None:
        self._workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        with self._lock:
            if self._pool is not None:
                try:
                    return self._pool.submit(fn, *args, **kwargs)
                except BrokenProcessPool:
                    log.warning("a parse worker died; starting a new one")
                    self._pool.shutdown(wait=False, cancel_futures=True)
            from aggregator.service.runner import _worker_context  # runner imports this module
            from aggregator.service.worker import die_with

            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=_worker_context(),
                initializer=die_with,  # no orphans when the daemon is killed
                initargs=(os.getpid(),),
            )
            return self._pool.submit(fn, *args, **kwargs)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` in a worker, without blocking the event loop.

        ``submit`` is called in a thread: the first one starts the fork
        server, which imports the parse stages before it forks the worker --
        seconds of waiting that must not be spent on the loop.
        """
        future = await asyncio.to_thread(self.submit, fn, *args)
        return await asyncio.wrap_future(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def kill(self) -> None:
        """Stop now: queued work is dropped and running workers are killed."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor has no public way to stop a running task before
        # Python 3.14 (terminate_workers); its process table is the only handle.
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # the fork server, their parent, reaps them
            with contextlib.suppress(Exception):
                process.kill()


#: Notes that mean the feed's date was wrong or unreadable, worth a warning;
#: the others (no date, a zone taken from the settings) are routine.
_WARN_REASONS = frozenset({"unparsable", "future", "too_old", "cst_ambiguous"})


def _replaced_date(report: FeedReport, items: Sequence[IngestItem], ingested: IngestResult) -> None:
    """Log and count the date notes of the posts this poll stored as new.

    Only new posts: an entry that is seen again every poll keeps the date it
    got the first time, so counting it again would only measure how often
    the feed is polled.  A new post is recognised by its slug, which the
    store derives from the item's date and content hash.
    """
    new = {stored.slug for stored in ingested.changed_posts if stored.revision == 0}
    for item in items:
        note = item.date_note
        slug = slug_for(item.post.date, item.digest)
        if note is None or slug not in new:
            continue
        new.discard(slug)  # a second copy in the same feed is a duplicate
        report.date_notes[note.reason] = report.date_notes.get(note.reason, 0) + 1
        if note.reason in ("future", "too_old"):
            report.dates_replaced += 1
        text = note.text if note.text is None or len(note.text) <= 200 else note.text[:200] + "…"
        log.log(
            logging.WARNING if note.reason in _WARN_REASONS else logging.INFO,
            "entry date %s: %s",
            note.reason,
            note.detail,
            extra={
                "feed": report.url,
                "entry": item.guid or item.link or item.post.title,
                "reason": note.reason,
                "date_text": text if text is not None else "-",
                "date_used": item.post.date.isoformat() if item.post.date else "-",
            },
        )
    # A feed without dates is common and no fault: logged and counted, but not
    # worth a note on every poll's summary row.
    shown = sorted((r, n) for r, n in report.date_notes.items() if r != "missing")
    if shown:
        report.notes.append("dates guessed: " + ", ".join(f"{n} {r}" for r, n in shown))


def _succeeded(
    result: FetchResult,
    now: datetime,
    *,
    next_check_at: datetime | None = None,
    fence: int | None = None,
) -> FeedUpdate:
    """A successful poll's feed row: its validators and status, the error
    state cleared, the lease given back (and its next poll, when known:
    None leaves the column alone)."""
    return FeedUpdate(
        next_check_at=KEEP if next_check_at is None else next_check_at,
        etag=result.validators.etag,
        last_modified=result.validators.last_modified,
        last_status=result.status,
        last_checked_at=now,
        last_success_at=now,
        last_error=None,
        error_class=None,
        error_streak=0,
        first_error_at=None,
        disabled_reason=None,  # a feed that answers again is alive again
        lease_until=None,
        lease_owner=None,
        fence=fence,
    )


def _success_schedule(interval: timedelta, hints: Hints) -> str:
    """Why the next poll after a good one is when it is: the interval, or the longest hint."""
    named = {
        "ttl": hints.ttl,
        "update period": hints.update_period,
        "max-age": hints.max_age,
        "Retry-After": hints.retry_after,
    }
    asked = {name: value for name, value in named.items() if value}
    if asked:
        name, value = max(asked.items(), key=lambda pair: pair[1])
        if value > interval.total_seconds():
            return f"{name} {value:g} s (longer than the interval)"
    return f"interval {interval.total_seconds():g} s"


def _skipped(report: FeedReport, entry: Entry, reason: str) -> None:
    """Log and count an entry that could not be built; the rest of its feed is stored."""
    report.skipped += 1
    which = entry.guid or entry.link or entry.title
    report.notes.append(f"item {which!r} skipped: {reason}")
    log.warning("item skipped: %s", reason, extra={"feed": report.url, "entry": which})


#: SQLSTATE classes of errors that say the server or the connection is in
#: trouble: connection exception, insufficient resources, operator
#: intervention (shutdown, cancel), system error.  Others (22 data, 23
#: integrity, 40 rollback, 42 syntax, 54 program limit ...) refuse one
#: statement of one feed, with the database up and well.
_UNAVAILABLE_SQLSTATES = frozenset({"08", "53", "57", "58"})
#: sqlite3 error names that refuse a statement's values, not the database.
_SQLITE_STATEMENT_ERRORS = frozenset(
    {"SQLITE_TOOBIG", "SQLITE_CONSTRAINT", "SQLITE_MISMATCH", "SQLITE_RANGE"}
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be used now (wait and retry),
    rather than that it refused one statement (that feed's failure).

    A lost or refused connection, a pool that timed out, a locked or
    unreadable SQLite file: yes.  ``DataError``, ``IntegrityError``,
    ``ProgrammingError``, an ``OperationalError`` whose SQLSTATE refuses the
    statement (a value too big for an index row, a deadlock victim), or an
    exception from outside the driver: no.  Treating those as an outage made
    one poisoned feed turn ``/healthz`` red and be re-polled every second.
    """
    from sqlalchemy import exc as sa  # not imported by parse workers

    if isinstance(exc, OSError | sa.DisconnectionError | sa.TimeoutError):
        return True
    if not isinstance(exc, sa.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.OperationalError | sa.InterfaceError):
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _UNAVAILABLE_SQLSTATES
    return getattr(orig, "sqlite_errorname", None) not in _SQLITE_STATEMENT_ERRORS


def refused_statement(exc: BaseException) -> bool:
    """Whether the database refused a statement (its message says all; no traceback needed)."""
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and not database_unavailable(exc)


def describe_error(exc: BaseException) -> str:
    """An unexpected exception as a feed row's error: type and first line, repaired.

    Only the first line: a database error goes on with the statement and
    its parameters, which can be a whole feed's bodies.
    """
    first = next(iter(str(exc).splitlines()), "").strip()
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    text = repair_text(text, multiline=False)
    return text if len(text) <= 500 else text[:499] + "…"


def _error_class(stored: str | None) -> ErrorClass | None:
    """The class recorded on the feed row (``export`` and unknown values: none)."""
    try:
        return ErrorClass(stored) if stored else None
    except ValueError:
        return None


class _Batches(Generic[J, R]):
    """Database writes from many polls, written together.

    Every poll ends with a write: a 304 its feed row, a changed feed its
    posts and row.  One transaction each, queued behind SQLite's single
    writer, cost more than the HTTP in a pass over unchanged feeds and
    rewrote the same index pages into the log for every changed one.  Here
    a job joins whatever batch is waiting; one batch is written at a time
    (at most ``limit`` jobs), and jobs that arrive meanwhile form the next.
    Without ``linger``, no timer: under light load every batch is one job,
    so nothing waits longer than it did.  With it, a writer that finds fewer
    than ``limit`` jobs waits up to ``linger`` seconds for more before it
    writes: a pass over many feeds, whose parsed feeds arrive one at a time a
    few milliseconds apart, would otherwise commit each feed (and each poll
    record) on its own, and the per-transaction work -- statements, commit,
    a thread hop -- cost the busiest process more than the rows themselves.
    Each caller still returns only once its own job is
    committed, with its own result.  ``write`` puts an exception in place of
    the result of a job that failed on its own: only that caller hears it.
    If ``write`` itself raises, every caller of the batch hears the error.
    """

    def __init__(
        self,
        write: Callable[[list[J]], Awaitable[Sequence[R | Exception]]],
        *,
        limit: int = 32,
        linger: float = 0.0,
    ) -> None:
        self._write = write
        self._limit = limit
        self._linger = linger
        self._pending: list[tuple[J, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: Set when the batch the writer lingers for is full.
        self._full: asyncio.Event | None = None

    async def submit(self, job: J) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((job, done))
        if self._full is not None and len(self._pending) >= self._limit:
            self._full.set()
        if self._writer is None:
            self._writer = asyncio.ensure_future(self._write_batches())
        # Shielded: a cancelled poll's job is still written with the batch it
        # joined, all of it (a feed's posts with its row, never half).
        return await asyncio.shield(done)

    async def _write_batches(self) -> None:
        batch: list[tuple[J, asyncio.Future[R]]] = []
        try:
            while self._pending:
                if self._linger > 0 and len(self._pending) < self._limit:
                    await self._gather_more()
                batch, self._pending = (
                    self._pending[: self._limit],
                    self._pending[self._limit :],
                )
                results = await self._write([job for job, _ in batch])
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
                batch = []
        except BaseException as exc:
            for _, done in (*batch, *self._pending):
                if done.done():
                    continue
                if isinstance(exc, Exception):
                    done.set_exception(exc)
                else:  # the writer itself was cancelled (the loop is closing)
                    done.cancel()
            self._pending = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

    async def _gather_more(self) -> None:
        """Wait until ``limit`` jobs are pending or ``linger`` seconds have passed."""
        self._full = asyncio.Event()
        try:
            await asyncio.wait_for(self._full.wait(), self._linger)
        except TimeoutError:
            pass
        finally:
            self._full = None


class Pipeline:
    """Runs feeds through the stages with shared fetcher, store and workers."""

    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        *,
        export_dir: Path | None = None,
        executor: Executor | None = None,
        clock: Callable[[], datetime] = utcnow,
        rsshub_policy: rsshub.RsshubPolicy | None = None,
        guard: AddressGuard | None = None,
        images_dir: Path | None = None,
        max_processing: int | None = None,
        write_linger: float = 0.0,
        workers_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self.export_dir = export_dir
        self.executor = executor
        # Awaited before a body goes to ``executor``: a pass starts its
        # workers only when the first body needs them (service.runner).
        self._workers_ready = workers_ready
        self.clock = clock
        self.rsshub_policy = rsshub_policy or rsshub.RsshubPolicy()
        self.rsshub_seen = rsshub.Sightings()
        # Links inside feeds are untrusted: fetch them only from public addresses.
        self.guard = guard or AddressGuard()
        # images: archive stores files next to the export dir (source/_posts ->
        # source/images, served by Hexo at /images/; see aggregator.content.images).
        self.images_dir = images_dir or (
            export_dir.parent / "images" if export_dir is not None else None
        )
        # SQLite has one writer at a time; queueing here is cheaper than
        # making threads wait on the busy timeout.
        self._write_lock = asyncio.Lock() if store.engine.dialect.name == "sqlite" else None
        # Parsing and building are CPU-bound: at most this many feeds are
        # handed to the workers at once (a queue of fetched bodies in front of
        # them would only hold memory).  Feeds waiting for their commit do
        # not hold a slot, so the workers parse the next feeds while the
        # writer stores the last ones; the callers' own bound on feeds in
        # flight (fetch_once, the daemon's slots) bounds those.
        self._processing = asyncio.Semaphore(max_processing or 2 * (os.cpu_count() or 1))
        # ``write_linger``: how long a write waits for others to join its
        # transaction (see _Batches); a one-shot pass over many feeds sets it,
        # where only the pass's end matters and not each feed's own latency.
        self._ingests: _Batches[IngestJob, IngestResult] = _Batches(
            lambda jobs: self._write(self.store.ingest_many, [self._fenced(j) for j in jobs]),
            limit=16,
            linger=write_linger,
        )
        # The end of every poll: its feed row and its history line, written
        # with the other polls that finished meanwhile (Store.finish_polls).
        self._finished: _Batches[PollOutcome, None] = _Batches(
            lambda outcomes: self._write(self.store.finish_polls, outcomes),
            limit=64,
            linger=write_linger,
        )
        # feed id -> the fencing token of the lease its poll holds (daemon
        # polls only): every write of that poll is checked against it.
        self._fences: dict[int, int] = {}
        # feed id -> what its poll will write on its feed row when it ends
        # (set by the 304, failure and deferral paths; an ingest writes the
        # row itself, in its own transaction).
        self._outcomes: dict[int, FeedUpdate] = {}
        # Not checked here: a directory that refuses must not stop the
        # polling (the posts are stored all the same); each export says why,
        # and the ledger has the next pass write what was missed.
        self.exporter: Exporter | None = None
        if export_dir is not None:
            from aggregator.service.export import Exporter

            self.exporter = Exporter(store, export_dir)

    async def _in_worker(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn`` in a thread: its arguments may be closures, which cannot go to a process."""
        loop = asyncio.get_running_loop()
        executor = (
            None
            if isinstance(self.executor, (ProcessPoolExecutor, ParseProcesses))
            else self.executor
        )
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    async def _call(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the executor: a module-level function, so it pickles.

        ``size`` is the body's: the daemon's worker process only takes a body
        over :data:`IN_PROCESS_PARSE_MAX_BYTES`, a smaller one is parsed in a
        thread.  A pass's :class:`ProcessPoolExecutor` takes every body: there
        the workers are for using every core, not for keeping a loop free.
        """
        loop = asyncio.get_running_loop()
        if isinstance(self.executor, ParseProcesses):
            if size > IN_PROCESS_PARSE_MAX_BYTES:
                return await self.executor.run(fn, *args)
            return await loop.run_in_executor(None, fn, *args)
        if self._workers_ready is not None:
            await self._workers_ready()
        return await loop.run_in_executor(self.executor, fn, *args)

    async def _finish(self, feed_id: int, started_at: datetime, report: FeedReport) -> None:
        """Write what the poll decided: the feed row's change and the poll's
        line in the history (``polls``, the operator's page), in one
        transaction batched with the other polls ending now.

        Raises :class:`LeaseLost` (nothing written) when the lease was taken
        over.  After an ingest, which wrote the feed row with the posts, only
        the history line is left: if that fails it is logged, and the poll,
        whose result is stored, does not fail for it.
        """
        update = self._outcomes.pop(feed_id, None)
        fence = self._fences.get(feed_id)
        if update is not None and fence is not None and update.fence != fence:
            update = dataclasses.replace(update, fence=fence)
        record = PollRecord(
            feed_id=feed_id,
            started_at=started_at,
            status=report.status,
            duration_ms=round((self.clock() - started_at).total_seconds() * 1000),
            bytes=report.wire_bytes,
            new=report.new,
            updated=report.updated,
            error_class=report.error_class,
            message=report.error,
            schedule=report.schedule,
            next_check_at=report.next_check_at,
        )
        try:
            await self._finished.submit(PollOutcome(feed_id, update, record))
        except Exception as exc:
            if update is not None:
                raise
            log.warning("poll history of %s not recorded: %s", report.url, describe_error(exc))

    def _fenced(self, job: IngestJob) -> IngestJob:
        fence = self._fences.get(job.feed_id)
        if fence is None or job.feed_update is None:
            return job
        fenced = dataclasses.replace(job.feed_update, fence=fence)
        return dataclasses.replace(job, feed_update=fenced)

    async def _write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._write_lock is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        async with self._write_lock:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def run_feed(
        self,
        spec: FeedSpec,
        feed_id: int,
        state: FeedState | None = None,
        *,
        fence: int | None = None,
    ) -> FeedReport:
        """Poll one feed and record the outcome; see the module docstring.

        ``state`` is the feed's row when the caller has just read it (a pass
        over many feeds reads them all in one query); otherwise it is read here.
        ``fence`` is the token of the daemon's lease on the feed: the poll's
        results are stored only while the row still carries it (else
        :class:`~aggregator.store.LeaseLost` is raised and nothing is written).
        """
        if fence is not None:
            self._fences[feed_id] = fence
        started = time.monotonic()
        started_at = self.clock()
        # The report is for people (logs, tables, metric labels): never the password.
        report = FeedReport(url=redact_url(spec.url), outlet=spec.outlet, section=spec.section)
        try:
            if state is None:
                state = await asyncio.to_thread(self.store.feed_state, feed_id)
            try:
                await self._run(spec, feed_id, report, state)
                await self._finish(feed_id, started_at, report)
            except Exception as exc:
                if database_unavailable(exc) or isinstance(exc, LeaseLost):
                    raise
                await self._crashed(feed_id, state, report, exc, spec.disable_after)
                await self._finish(feed_id, started_at, report)
        except BaseException as exc:
            # The database (or a cancel) cut the poll short: say so in its log
            # line rather than "poll ok"; the caller decides what happens next.
            report.error = report.error or f"not stored: {type(exc).__name__}"
            raise
        finally:
            self._fences.pop(feed_id, None)
            self._outcomes.pop(feed_id, None)
            report.elapsed_ms = round((time.monotonic() - started) * 1000)
            # A poll that changed nothing (a 304, or the same items again) is
            # most of a daemon's polls: DEBUG, so INFO shows what happened.
            quiet = not (report.new or report.updated or report.notes)
            level = logging.WARNING if report.failed else logging.DEBUG if quiet else logging.INFO
            message = f"poll failed: {report.error}" if report.failed else "poll ok"
            log.log(level, message, extra=report.log_fields())
        return report

    async def _crashed(
        self,
        feed_id: int,
        state: FeedState,
        report: FeedReport,
        exc: Exception,
        disable_after: timedelta,
    ) -> None:
        """Record a poll that an unforeseen exception (or a refused statement) cut short.

        Transient, so the feed backs off as after a timeout instead of being
        retried at once, and is never disabled for it (it is our problem,
        not the publisher's).  Nothing of the poll was stored.
        """
        log.error(
            "poll of %s failed unexpectedly: %s",
            report.url,
            describe_error(exc),
            exc_info=None if refused_statement(exc) else exc,
        )
        await self._failed(
            feed_id,
            state,
            report,
            status=report.status,
            reason=describe_error(exc),
            error_class=ErrorClass.TRANSIENT,
            disable_after=disable_after,
        )

    async def _run(
        self, spec: FeedSpec, feed_id: int, report: FeedReport, state: FeedState
    ) -> None:
        interval = timedelta(seconds=state.interval_seconds)
        validators = Validators(etag=state.etag, last_modified=state.last_modified)
        try:
            result = await self.fetcher.fetch(spec.url, validators)
        except FetchError as exc:
            deferral = self._rsshub_deferral(spec, state, exc)
            if deferral is not None:
                await self._defer(feed_id, state, report, exc, deferral)
                return
            challenge = isinstance(exc, HTTPStatusError) and is_challenge(
                exc.status, exc.headers or {}, exc.body_head
            )
            await self._failed(
                feed_id,
                state,
                report,
                status=exc.status,
                reason=f"{exc.reason} (Cloudflare challenge page)" if challenge else exc.reason,
                retry_after=exc.retry_after,
                error_class=ErrorClass.THROTTLED if challenge else None,
                challenge=challenge,
                disable_after=spec.disable_after,
            )
            return
        report.status, report.wire_bytes = result.status, result.wire_bytes
        if rsshub.headers_say_rsshub(result.headers):
            self.rsshub_seen.note(spec.url)
        now = self.clock()
        if result.not_modified:
            hints = Hints(max_age=result.max_age, retry_after=result.retry_after)
            report.next_check_at = next_after_success(now, interval, hints)
            report.schedule = _success_schedule(interval, hints)
            # Built whole, with its next poll and the lease's fence: most of
            # a daemon's polls end here, and each dataclasses.replace() of a
            # 14-field record costs more than building it.
            self._outcomes[feed_id] = _succeeded(
                result, now, next_check_at=report.next_check_at, fence=self._fences.get(feed_id)
            )
            return
        success = _succeeded(result, now)
        await self._process(spec, feed_id, report, state, result, now, interval, success)

    async def _process(
        self,
        spec: FeedSpec,
        feed_id: int,
        report: FeedReport,
        state: FeedState,
        result: FetchResult,
        now: datetime,
        interval: timedelta,
        success: FeedUpdate,
    ) -> None:
        """Parse, build and store a fetched (2xx) feed."""
        from aggregator.content.items import build_items
        from aggregator.parse.parser import FeedParseError, parse_fetched
        from aggregator.service.worker import parse_and_build

        if not spec.full_text:
            try:
                async with self._processing:
                    parsed, items, skipped = await self._call(
                        len(result.content),
                        parse_and_build,
                        result.content,
                        result.final_url,
                        result.content_type,
                        result.charset,
                        spec,
                        now,
                    )
            except FeedParseError as exc:
                await self._not_a_feed(feed_id, state, report, spec, result, exc)
                return
            self._note_parsed(spec, parsed, report)
            for entry, why in skipped:
                _skipped(report, entry, why)
            await self._store(spec, feed_id, report, result, parsed, items, now, interval, success)
            return
        try:
            async with self._processing:
                parsed = await self._in_worker(parse_fetched, result)
        except FeedParseError as exc:
            await self._not_a_feed(feed_id, state, report, spec, result, exc)
            return
        self._note_parsed(spec, parsed, report)
        bodies, pages = (
            await self._full_texts(spec, spec.full_text, parsed.entries, report)
            if spec.full_text
            else (None, None)
        )
        async with self._processing:
            items = await self._in_worker(
                build_items,
                parsed,
                spec,
                now=now,
                bodies=bodies,
                pages=pages,
                on_skipped=lambda entry, why: _skipped(report, entry, why),
            )
        await self._store(spec, feed_id, report, result, parsed, items, now, interval, success)

    async def _not_a_feed(
        self,
        feed_id: int,
        state: FeedState,
        report: FeedReport,
        spec: FeedSpec,
        result: FetchResult,
        exc: FeedParseError,
    ) -> None:
        await self._failed(
            feed_id,
            state,
            report,
            status=result.status,
            reason=str(exc),  # says "not a feed" and what it was instead
            error_class=ErrorClass.PERMANENT,
            disable_after=spec.disable_after,
        )

    def _note_parsed(self, spec: FeedSpec, parsed: ParsedFeed, report: FeedReport) -> None:
        """What a parsed document tells us beyond its entries."""
        if rsshub.generator_is_rsshub(parsed.generator):
            self.rsshub_seen.note(spec.url)
        if parsed.bozo_reason:
            report.notes.append(f"ill-formed feed, entries recovered: {parsed.bozo_reason}")

    async def _store(
        self,
        spec: FeedSpec,
        feed_id: int,
        report: FeedReport,
        result: FetchResult,
        parsed: ParsedFeed,
        items: list[IngestItem],
        now: datetime,
        interval: timedelta,
        success: FeedUpdate,
    ) -> None:
        if spec.images == "archive":
            items = await self._archive_images(spec, items, report)
        hints = Hints(
            ttl=parsed.ttl_minutes * 60 if parsed.ttl_minutes else None,
            update_period=parsed.update_period_seconds,
            max_age=result.max_age,
            retry_after=result.retry_after,
        )
        report.next_check_at = next_after_success(now, interval, hints)
        success = dataclasses.replace(success, next_check_at=report.next_check_at)
        report.schedule = _success_schedule(interval, hints)
        ingested = await self._ingests.submit(
            IngestJob(feed_id, items, now, feed_update=success, identity=spec.identity)
        )
        report.new, report.duplicate = ingested.new, ingested.duplicate
        report.updated, report.unchanged = ingested.updated, ingested.unchanged
        report.blocked = ingested.blocked
        _replaced_date(report, items, ingested)
        if self.exporter is not None and (ingested.changed_posts or ingested.removed_slugs):
            exported = await asyncio.to_thread(
                self.exporter.write, ingested.changed_posts, ingested.removed_slugs
            )
            problem = exported.problem(self.exporter.directory)
            if problem is not None:
                # The posts are safely stored; the ledger has a later pass write them.
                report.error = f"export failed (posts are stored): {problem}"
                report.error_class = "export"

    async def catch_up_exports(self, *, sweep: bool = False) -> ExportResult | None:
        """Write what the export directory lacks; see :func:`runner.catch_up_exports`."""
        from aggregator.service.runner import catch_up_exports  # runner imports this module

        return await catch_up_exports(self.exporter, sweep=sweep)

    async def _failed(
        self,
        feed_id: int,
        state: FeedState,
        report: FeedReport,
        *,
        status: int | None,
        reason: str,
        retry_after: float | None = None,
        error_class: ErrorClass | None = None,
        challenge: bool = False,
        disable_after: timedelta = DEFAULT_DISABLE_AFTER,
    ) -> None:
        """Record a failed poll as the error policy (``schedule.after_failure``) says."""
        now = self.clock()
        kind = error_class or classify_status(status, retry_after=retry_after)
        plan = after_failure(
            now,
            timedelta(seconds=state.interval_seconds),
            ErrorState(
                streak=state.error_streak,
                first_error_at=state.first_error_at,
                last_class=_error_class(state.error_class),
            ),
            kind,
            disable_after=disable_after,
            retry_after=retry_after,
            challenge=challenge,
        )
        # Reasons quote what servers and parsers said: text both databases take.
        reason = repair_text(reason)
        values = FeedUpdate(
            last_status=status,
            last_checked_at=now,
            last_error=reason,
            error_class=kind.value,
            error_streak=plan.streak,
            first_error_at=plan.first_error_at,
            lease_until=None,
            lease_owner=None,
            next_check_at=plan.next_check_at,
        )
        if plan.disabled_reason is not None:
            values = dataclasses.replace(values, disabled_reason=plan.disabled_reason)
            log.warning("disabling %s: %s", report.url, plan.disabled_reason)
        self._outcomes[feed_id] = values
        report.status, report.error, report.error_class = status, reason, kind.value
        report.next_check_at = plan.next_check_at
        report.schedule = f"{kind.value} back-off, error streak {plan.streak}" + (
            f", Retry-After {retry_after:g} s" if retry_after else ""
        )
        if plan.disabled_reason is not None:
            report.schedule = f"disabled: {plan.disabled_reason}"

    def _rsshub_deferral(
        self, spec: FeedSpec, state: FeedState, exc: FetchError
    ) -> rsshub.Deferral | None:
        """Whether this failure is an RSSHub route warming up (see aggregator.policy.rsshub)."""
        return rsshub.classify_failure(
            rsshub=rsshub.is_rsshub(
                route=spec.rsshub_route,
                headers=exc.headers,
                seen_on_origin=spec.url in self.rsshub_seen,
            ),
            status=exc.status,
            max_age=cache_max_age(exc.headers) if exc.headers is not None else None,
            retry_after=exc.retry_after,
            timed_out=isinstance(exc, FetchTimeout),
            ever_succeeded=state.last_success_at is not None,
            error_streak=state.error_streak,
            previous_outcome=state.error_class,
            policy=self.rsshub_policy,
        )

    async def _defer(
        self,
        feed_id: int,
        state: FeedState,
        report: FeedReport,
        exc: FetchError,
        deferral: rsshub.Deferral,
    ) -> None:
        """Record a wait that is not an error: streak and first-error time stay as they were."""
        now = self.clock()
        reason = repair_text(f"{exc.reason}: {deferral.reason}")
        self._outcomes[feed_id] = FeedUpdate(
            last_status=exc.status,
            last_checked_at=now,
            last_error=reason,
            error_class=deferral.outcome,
            lease_until=None,
            lease_owner=None,
            next_check_at=now + timedelta(seconds=deferral.delay),
        )
        report.status, report.error, report.error_class = exc.status, reason, deferral.outcome
        report.next_check_at = now + timedelta(seconds=deferral.delay)
        report.schedule = f"RSSHub {deferral.outcome}: again in {deferral.delay:g} s"

    async def _archive_images(
        self, spec: FeedSpec, items: list[IngestItem], report: FeedReport
    ) -> list[IngestItem]:
        """``images: archive``: fetch the posts' images and point the posts at the copies.

        A dead or refused image never fails its post: the post keeps the
        remote URL and the report notes why.  Image URLs come from the feed,
        so they go through the address guard unless the feed opts out.
        """
        from aggregator.content import images as image_archive

        if self.images_dir is None:
            note = (
                "images: archive needs an export directory (output_dir in feeds.yaml or --export); "
                "images were left remote"
            )
            report.notes.append(note)
            log.warning(note, extra={"feed": report.url})
            return items
        urls = [
            u
            for item in items
            if not item.blocked
            for u in image_archive.post_image_urls(item.post)
        ]
        if not urls:
            return items
        guard = None if spec.allow_private_networks else self.guard

        async def download(url: str, headers: Mapping[str, str] | None) -> FetchResult:
            try:
                return await self.fetcher.fetch(
                    url, headers=headers, accept=image_archive.IMAGE_ACCEPT, guard=guard
                )
            except FetchError as exc:
                raise image_archive.ImageUnavailable(str(exc.reason)) from exc

        archived = await image_archive.archive_images(
            urls,
            download,
            self.images_dir,
            dict(spec.image_referers),
            max_bytes=spec.max_image_bytes,
        )
        for url, reason in archived.failures.items():
            report.notes.append(f"image {redact_url(url)} kept remote: {reason}")
        return [
            dataclasses.replace(item, post=image_archive.rewrite_post(item.post, archived.mapping))
            if not item.blocked
            else item
            for item in items
        ]

    async def _full_texts(
        self, spec: FeedSpec, rule: FullText, entries: Sequence[Entry], report: FeedReport
    ) -> tuple[dict[int, str], dict[int, StoredPage]]:
        """Article bodies for the entries whose page could be fetched and cut,
        and the pages fetched (kept even when the selector found nothing, so a
        fixed selector can be applied by ``aggregator reprocess``).

        Item links are chosen by whoever writes the feed, so they are fetched
        through the address guard unless the feed opts out.
        """
        from aggregator.content.clean import ContentError, extract_full_text

        guard = None if spec.allow_private_networks else self.guard
        gate = asyncio.Semaphore(FULL_TEXT_CONCURRENCY)
        bodies: dict[int, str] = {}
        pages: dict[int, StoredPage] = {}

        async def one(index: int, entry: Entry) -> None:
            if not entry.link:
                return
            async with gate:
                try:
                    page = pages[index] = await fetch_page(self.fetcher, entry.link, guard=guard)
                    bodies[index] = await self._in_worker(
                        extract_full_text,
                        page.html,
                        selector=rule.selector,
                        remove=rule.remove,
                        base_url=page.url,
                    )
                except (FetchError, ContentError) as exc:
                    report.notes.append(f"full text of {entry.link} kept the feed's body: {exc}")

        await asyncio.gather(*(one(i, e) for i, e in enumerate(entries)))
        return bodies, pages
