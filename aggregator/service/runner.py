"""One pass over a set of feeds, and the tables the CLI prints.

Used by ``aggregator fetch``: reconcile feeds.yaml with the database, poll the
chosen feeds concurrently through one :class:`~aggregator.service.pipeline.Pipeline`,
and report.  The daemon (:mod:`aggregator.service.daemon`) does the same per feed,
but on a schedule and with leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

# Re-exported: status_table and totals_line lived here before ``status`` got its
# own light module.
from aggregator.service.status import status_document, status_table, totals_line

# The pass's machinery (HTTP clients, parsers, the pipeline) is imported
# inside the functions that run one: this module is imported by every
# ``aggregator fetch``, also one with nothing to poll, which needs none of it
# (tests/test_startup.py).
if TYPE_CHECKING:
    from rich.table import Table

    from aggregator.config.feeds import Config, FeedSpec
    from aggregator.fetch.fetcher import Fetcher
    from aggregator.hexo.export import ExportResult
    from aggregator.service.export import Exporter
    from aggregator.service.pipeline import FeedReport
    from aggregator.store import Store

__all__ = [
    "SUMMARY_COLUMNS",
    "FetchPass",
    "catch_up_exports",
    "fetch_once",
    "fetch_pass",
    "parse_workers",
    "status_document",
    "status_table",
    "summary_lines",
    "summary_table",
    "totals_line",
]


@dataclass(slots=True)
class FetchPass:
    """What one pass did: a report per feed, and the export's catch-up (None: no export)."""

    reports: list[FeedReport]
    export: ExportResult | None = None


log = logging.getLogger(__name__)


async def fetch_once(
    store: Store,
    config: Config,
    specs: Sequence[FeedSpec],
    *,
    export_dir: Path | None = None,
    fetcher: Fetcher | None = None,
    workers: int | None = None,
) -> list[FeedReport]:
    """The feed reports of :func:`fetch_pass`."""
    done = await fetch_pass(
        store, config, specs, export_dir=export_dir, fetcher=fetcher, workers=workers
    )
    return done.reports


async def fetch_pass(
    store: Store,
    config: Config,
    specs: Sequence[FeedSpec],
    *,
    export_dir: Path | None = None,
    fetcher: Fetcher | None = None,
    workers: int | None = None,
) -> FetchPass:
    """Poll ``specs`` once; every feed of ``config`` is registered first.

    ``workers`` parse processes (None: as :func:`parse_workers` decides; 0:
    parse in this process, the least memory).  With ``export_dir``, the pass
    ends by writing every file the directory still lacks, whatever pass
    stored the post (see ``Pipeline.catch_up_exports``).
    """
    now = datetime.now(UTC)
    if not specs:
        await asyncio.to_thread(store.sync_feeds, config.feeds, now=now)
        # Nothing to poll: no HTTP client, no parser, no pipeline to load,
        # only the export's catch-up that every pass ends with.
        from aggregator.service.export import Exporter

        exporter = Exporter(store, export_dir) if export_dir is not None else None
        return FetchPass([], await catch_up_exports(exporter, sweep=True))
    with _parse_pool(parse_workers(len(specs), workers)) as executor:
        start = _WorkerStart(executor) if executor is not None else None
        if start is not None and await _bodies_expected(store, specs):
            # The workers start while this process registers the feeds, loads
            # the HTTP stack and builds the pipeline: on the core the pass
            # leaves idle until its first parse, instead of holding that up.
            start.begin()
        try:
            ids = await asyncio.to_thread(store.sync_feeds, config.feeds, now=now)
            return await _fetch_all(store, config, specs, ids, export_dir, fetcher, executor, start)
        finally:
            if start is not None:
                await start.settle()  # a start under way ends before the pool shuts down


async def _bodies_expected(store: Store, specs: Sequence[FeedSpec]) -> bool:
    """Whether the pass will surely parse enough bodies to start its workers up front.

    A feed polled before with an ETag or a Last-Modified usually answers
    304: a warm pass over such feeds has nothing to parse, and starting the
    fork server and its workers (importing the parse stages, a second of
    CPU on another core) would be most of its cost.  So the workers start
    at once only when at least :data:`PROCESS_POOL_MIN_FEEDS` of the feeds
    cannot be answered with a 304 (a new database, feeds that send no
    validator); otherwise the first body that needs a parse starts them,
    and the feeds fetched meanwhile go on (:class:`_WorkerStart`).
    """
    validated = await asyncio.to_thread(store.validated_feeds)
    return len(specs) - validated >= PROCESS_POOL_MIN_FEEDS


class _WorkerStart:
    """Starts a pass's parse workers once, in a thread, when first asked.

    ``Pipeline`` awaits :meth:`wait` before it hands a body to the pool: a
    submit on the event loop while the fork server starts would hold the
    loop (and every fetch) for that second; awaited here, only the feeds
    that need a parse wait.
    """

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._started: asyncio.Future[None] | None = None

    def begin(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(asyncio.to_thread(_start_workers, self._executor))

    async def wait(self) -> None:
        self.begin()
        assert self._started is not None
        await asyncio.shield(self._started)

    async def settle(self) -> None:
        """Wait for a start that was begun (nothing if none was)."""
        if self._started is not None:
            await asyncio.shield(self._started)


def _start_workers(executor: Executor) -> None:
    """Start the parse workers (and the fork server they come from) now.

    The first ``submit`` starts them and waits for the fork server to import
    the parse stages (see :func:`_worker_context`): a second or so of
    waiting, done here in a thread before the pass needs a worker.  A
    failure is left for the pass's first parse to meet, as without this.
    """
    try:
        executor.submit(os.getpid)
    except Exception:
        log.debug("parse workers did not start ahead of the pass", exc_info=True)


#: Below this many feeds, starting worker processes costs more than it saves.
PROCESS_POOL_MIN_FEEDS = 32


def parse_workers(feeds: int, requested: int | None = None) -> int:
    """How many worker processes a pass over ``feeds`` feeds parses in (0: none).

    By default one per core beyond the first, which stays with fetching and
    the database's single writer (on two cores, one worker: a second would
    only fight the first and the main process for the same two cores), at
    most four; none for a small pass, where starting them costs more than
    it saves.  ``requested`` overrides it (``aggregator fetch --workers``).
    """
    if requested is not None:
        return max(0, requested)
    cores = os.cpu_count() or 1
    if cores < 2 or feeds < PROCESS_POOL_MIN_FEEDS:
        return 0
    return min(cores - 1, 4)


#: How long a pass's database write waits for other feeds' writes to join
#: its transaction (``Pipeline(write_linger=...)``): feeds come out of the
#: parse workers a few milliseconds apart, and a transaction each -- its
#: statements, its commit, its hop to a thread -- cost the main process,
#: the busiest, more than the rows.  A small pass writes at once.
WRITE_LINGER = 0.1


#: What a parse worker needs, and all it imports (see aggregator.service.worker).
#: ``aggregator.config.spec``, not ``config.feeds``: a worker unpickles FeedSpecs and
#: needs their class, not the loader's pydantic and ruamel (~10 MB in each process).
WORKER_MODULES = ["aggregator.service.worker", "aggregator.config.spec"]


def _worker_context() -> multiprocessing.context.BaseContext:
    """How parse workers start: forked from a small server process, where there is one.

    Not plain ``fork``: this process has threads (the database's) by the
    time a pass starts, and forking a threaded process can deadlock the
    child.  Not ``spawn`` where avoidable: a spawned worker re-imports the
    parent's ``__main__`` -- the whole CLI -- which cost ~0.8 s of CPU per
    worker, a large share of a pass on two cores.  The fork server is
    started once, imports only :data:`WORKER_MODULES`, and forks workers in
    milliseconds.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_MODULES)
        return context
    return multiprocessing.get_context("spawn")


def _parse_pool(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    """Worker processes for parsing, so a pass uses every core (None: threads)."""
    if not workers:
        return contextlib.nullcontext()
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context())


async def _fetch_all(
    store: Store,
    config: Config,
    specs: Sequence[FeedSpec],
    ids: dict[str, int],
    export_dir: Path | None,
    fetcher: Fetcher | None,
    executor: Executor | None,
    start: _WorkerStart | None = None,
) -> FetchPass:
    from aggregator.fetch.fetcher import Fetcher, FetchLimits
    from aggregator.service.pipeline import Pipeline

    async with fetcher or Fetcher(FetchLimits(host_policies=config.hosts)) as client:
        pipeline = Pipeline(
            store,
            client,
            export_dir=export_dir,
            executor=executor,
            workers_ready=start.wait if start is not None else None,
            write_linger=WRITE_LINGER if len(specs) >= PROCESS_POOL_MIN_FEEDS else 0.0,
        )
        # Every feed's row in one query rather than one query per feed.
        states = await asyncio.to_thread(store.feed_states, [ids[s.url] for s in specs])
        # A fetched body waits in memory until it is parsed and stored, so a
        # fixed number of feeds are in progress at once (enough to keep every
        # connection busy), each runner taking the next feed when it is done
        # with one: not a task per feed, so memory stays flat however many.
        reports: list[FeedReport | None] = [None] * len(specs)
        todo = iter(enumerate(specs))

        async def runner() -> None:
            for index, spec in todo:  # shared: each feed goes to exactly one runner
                feed_id = ids[spec.url]
                try:
                    reports[index] = await pipeline.run_feed(
                        spec, feed_id, states.pop(feed_id, None)
                    )
                except Exception as exc:
                    # The pipeline records every failure of the feed itself;
                    # what reaches here could not be recorded (the database
                    # went away).  It is this feed's row of the summary, and
                    # the other runners go on: never a traceback, never the pass.
                    reports[index] = _unrecorded(spec, exc)

        runners = min(len(specs), 2 * client.limits.max_connections)
        await asyncio.gather(*(runner() for _ in range(runners)))
        export = await pipeline.catch_up_exports(sweep=True)
        return FetchPass([report for report in reports if report is not None], export)


async def catch_up_exports(
    exporter: Exporter | None, *, sweep: bool = False
) -> ExportResult | None:
    """Write what the export directory lacks (see ``Exporter.catch_up``); None without one.

    Run at the end of every ``fetch`` pass and by the daemon at start and
    then periodically (through ``Pipeline.catch_up_exports``): whatever a
    crash, a full disk or a read-only directory kept from being written gets
    written once the cause is gone, although the feeds have nothing new.
    """
    if exporter is None:
        return None
    result = await asyncio.to_thread(exporter.catch_up, sweep=sweep)
    problem = result.problem(exporter.directory)
    if problem is not None:
        log.warning("export: %s", problem)
    elif result.written or result.removed:
        log.info(
            "export: wrote %d file(s) and removed %d that earlier passes left undone in %s",
            result.written,
            result.removed,
            exporter.directory,
        )
    return result


def _unrecorded(spec: FeedSpec, exc: Exception) -> FeedReport:
    """The summary row of a feed whose poll ended in an exception the pipeline let through."""
    from aggregator.policy.urls import redact_url
    from aggregator.service.pipeline import (
        FeedReport,
        database_unavailable,
        describe_error,
        refused_statement,
    )

    log.error(
        "poll of %s could not be recorded: %s",
        redact_url(spec.url),
        describe_error(exc),
        exc_info=None if database_unavailable(exc) or refused_statement(exc) else exc,
    )
    return FeedReport(
        url=redact_url(spec.url),
        outlet=spec.outlet,
        section=spec.section,
        error=f"not stored: {describe_error(exc)}",
        error_class="database" if database_unavailable(exc) else "bug",
    )


def _result(report: FeedReport) -> str:
    if report.error:
        return f"error: {report.error}"
    return "ok" + (f" ({'; '.join(report.notes)})" if report.notes else "")


def summary_table(reports: Sequence[FeedReport]) -> Table:
    """The pass's summary for a person at a terminal (see :func:`summary_lines` for the rest)."""
    from rich.table import Table  # only the CLI prints tables

    table = Table(title="fetch summary", show_lines=False)
    for name, justify in (
        ("feed", "left"),
        ("HTTP", "right"),
        ("new", "right"),
        ("duplicate", "right"),
        ("updated", "right"),
        ("time", "right"),
        ("result", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in reports:
        table.add_row(
            f"{r.outlet} / {r.section}\n{r.url}",
            str(r.status) if r.status is not None else "-",
            str(r.new),
            str(r.duplicate),
            str(r.updated),
            f"{r.elapsed_ms / 1000:.2f}s",
            _result(r),
        )
    return table


#: The columns of :func:`summary_lines`, its first line.
SUMMARY_COLUMNS = ("HTTP", "new", "duplicate", "updated", "time", "feed", "url", "result")


def summary_lines(reports: Sequence[FeedReport]) -> list[str]:
    """The summary as tab-separated lines (a header, then one per feed), for a pipe or a log.

    Not rich's table there: laying out 300 two-line rows cost 0.4 s of CPU,
    a seventh of a whole warm pass (issue 15), to print box drawing that cron
    mail and log files show badly, folded at 120 columns.  Lines are what
    ``cut``, ``grep`` and ``awk`` read; no value is ever cut short.  Tabs and
    line breaks inside a value (an error message) become spaces.
    """

    def clean(value: object) -> str:
        return " ".join(str(value).replace("\t", " ").splitlines())

    lines = ["\t".join(SUMMARY_COLUMNS)]
    for r in reports:
        cells = (
            r.status if r.status is not None else "-",
            r.new,
            r.duplicate,
            r.updated,
            f"{r.elapsed_ms / 1000:.2f}s",
            f"{r.outlet} / {r.section}",
            r.url,
            _result(r),
        )
        lines.append("\t".join(clean(cell) for cell in cells))
    return lines
