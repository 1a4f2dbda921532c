"""The ``aggregator`` command line: a thin layer over the library.

Each command parses its options, opens what it needs and calls one function
elsewhere; no behaviour lives here.  Errors a user can fix are printed as one
line without a traceback and give exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from aggregator import __version__
from aggregator.config.settings import DEFAULT_DATABASE_URL, ENV_PREFIX, Settings
from aggregator.errors import AggregatorError, ConfigurationError
from aggregator.service.logs import configure_logging

# What a command needs is imported inside it: ``--help``, ``status`` and a
# ``fetch`` with nothing to poll must not pay for the libraries of the others
# (rich ~0.08 s, the store and SQLAlchemy ~0.7 s, the HTTP clients and
# parsers ~0.4 s); tests/test_startup.py checks which modules each one loads.
if TYPE_CHECKING:
    from rich.console import Console

    from aggregator.store import Store

__all__ = ["main"]

_T = TypeVar("_T")


def _console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A rich console, at least ``width`` columns wide (rich is imported on first use)."""
    from rich.console import Console

    if width is None:
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=max(Console().width, width))


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing at all in a pipe or a log."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = _console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _open_store(
    settings: Settings, *, schema: Literal["upgrade", "check", "as-is"] = "upgrade"
) -> Store:
    """The store, or one clean line on stderr and exit 1 -- never a traceback.

    ``schema="check"`` is for commands that only read: they say the database
    is empty or at another revision instead of creating or migrating it.
    """
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from aggregator.store import Store

    try:
        return Store.open(settings.database_url, schema=schema)
    except AggregatorError as exc:  # a URL that cannot be used, a schema not ready
        _fail(str(exc))
    except SQLAlchemyError as exc:  # the driver's own message is the useful part
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())  # drivers wrap lines
        verb = "reach" if isinstance(exc, OperationalError) else "use"
        _fail(f"cannot {verb} the database at {_redacted(settings.database_url)}: {detail}")
    raise AssertionError("unreachable")


def _redacted(url: str) -> str:
    from aggregator.store.engine import redacted_url

    return redacted_url(url)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date like 2022-03-01 or 2022-03-01T08:00"
        ) from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": ENV_PREFIX}
)
@click.version_option(__version__, prog_name="aggregator")
@click.option(
    "--database-url",
    envvar=f"{ENV_PREFIX}_DATABASE_URL",
    show_envvar=True,
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="SQLAlchemy URL: sqlite:///file.db or postgresql://user@host/db.",
)
@click.option(
    "--log-level",
    envvar=f"{ENV_PREFIX}_LOG_LEVEL",
    show_envvar=True,
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar=f"{ENV_PREFIX}_LOG_FORMAT",
    show_envvar=True,
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
)
@click.pass_context
def main(ctx: click.Context, database_url: str, log_level: str, log_format: str) -> None:
    """Archive outlet feeds as Hexo-ready posts in the seed format."""
    configure_logging(log_level, log_format)
    ctx.obj = Settings(database_url=database_url, log_level=log_level, log_format=log_format)


@main.group()
def db() -> None:
    """Manage the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_obj
def db_upgrade(settings: Settings, revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from aggregator.store.engine import current_revision, make_engine, upgrade

    try:
        engine = make_engine(settings.database_url)
    except ConfigurationError as exc:  # DatabaseURLError
        _fail(str(exc))
    upgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine)}")


@db.command("current")
@click.pass_obj
def db_current(settings: Settings) -> None:
    """Print the schema revision the database is at."""
    from aggregator.store.engine import current_revision

    store = _open_store(settings, schema="as-is")
    click.echo(current_revision(store.engine) or "empty (run `aggregator db upgrade`)")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="The archive's zone, for dates written without one (e.g. 2021-11-09 08:09:39).",
)
@click.pass_obj
def replay(settings: Settings, paths: tuple[Path, ...], timezone: str) -> None:
    """Load seed-format files (or directories of them) into the database."""
    from aggregator.hexo.post import zone
    from aggregator.hexo.replay import collect_files
    from aggregator.hexo.replay import replay as run_replay

    try:
        zone(timezone)
    except ValueError as exc:
        _fail(f"--timezone: {exc}")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or directory: {', '.join(missing)}")
    files = list(collect_files(paths))
    store = _open_store(settings)
    with _progress("replay", len(files)) as advance:
        result = run_replay(store, files, progress=advance, timezone=timezone)
    for message in result.errors:
        click.echo(f"error: {message}", err=True)
    click.echo(result.summary())
    if result.errors:
        sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--outlet", help="Only posts of this outlet (second category).")
@click.option("--since", help="Only posts dated on or after this ISO date (UTC unless given).")
@click.pass_obj
def export(settings: Settings, directory: Path, outlet: str | None, since: str | None) -> None:
    """Write stored posts as seed-format .md files into DIRECTORY."""
    from aggregator.service.export import Exporter

    since_dt = _parse_since(since)
    store = _open_store(settings, schema="check")
    total = store.count_posts(outlet=outlet, since=since_dt)
    with _progress("export", total) as advance:
        # Through the ledger, so later passes know these files are there.
        result = Exporter(store, directory).export_all(
            store.iter_posts(outlet=outlet, since=since_dt), progress=advance
        )
    click.echo(result.summary())
    problem = result.problem(directory)
    if problem is not None:
        _fail(f"export incomplete: {problem}")


def _totals_line(reports: Sequence[FeedReport]) -> str:
    from aggregator.service.status import totals_line

    return totals_line(reports)


def _config_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--config",
        "config_path",
        envvar=f"{ENV_PREFIX}_CONFIG",
        show_envvar=True,
        default="feeds.yaml",
        show_default=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The feeds file.",
    )(fn)


def _export_option(fn: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--export",
        "export_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Also write each new or edited post into this directory (default: output_dir).",
    )(fn)


def _load_config(path: Path) -> Config:
    from aggregator.config.feeds import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"error: {path} is not valid:", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(1)


@main.command()
@_config_option
@click.option("--feed", "needles", multiple=True, help="Only this feed: its URL, route or outlet.")
@_export_option
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Processes that parse in parallel (default: one per core beyond the first, "
    "none for fewer than 32 feeds; 0 uses the least memory).",
)
@click.pass_obj
def fetch(
    settings: Settings,
    config_path: Path,
    needles: tuple[str, ...],
    export_dir: Path | None,
    workers: int | None,
) -> None:
    """Poll the enabled feeds once, concurrently, and print a summary."""
    from aggregator.store import lite

    if not needles and export_dir is None and lite.nothing_to_poll(
        settings.database_url, config_path
    ):
        # The last pass over this very file and these feed rows had nothing to
        # poll and left nothing to sync: so would this one.  Said without
        # loading the file, the store or SQLAlchemy (aggregator.store.lite).
        click.echo(_totals_line([]))
        return

    import asyncio

    from aggregator.config.feeds import ConfigError
    from aggregator.hexo.export import ExportError
    from aggregator.service.runner import fetch_pass, summary_lines, summary_table

    config = _load_config(config_path)
    if needles:
        try:
            specs = tuple(dict.fromkeys(s for n in needles for s in config.select(n)))
        except ConfigError as exc:
            _fail(str(exc))
    else:
        specs = config.enabled_feeds()
    store = _open_store(settings)
    target = export_dir or config.output_dir
    try:
        done = asyncio.run(fetch_pass(store, config, specs, export_dir=target, workers=workers))
    except ExportError as exc:
        _fail(str(exc.strerror))
    except Exception as exc:
        # Feeds' own failures are rows of the summary; what ends the pass
        # (the database gone before any feed ran) is one line, not a traceback.
        from aggregator.service.pipeline import database_unavailable, describe_error

        logging.getLogger(__name__).debug("fetch pass failed", exc_info=exc)
        what = "the database is unavailable" if database_unavailable(exc) else "fetch failed"
        _fail(f"{what}: {describe_error(exc)}")
    if done.reports and sys.stdout.isatty():  # an empty table says less than the totals line
        _console(width=120).print(summary_table(done.reports))
    elif done.reports:
        click.echo("\n".join(summary_lines(done.reports)))
    click.echo(_totals_line(done.reports))
    if (
        not specs
        and target is None
        and not config.warnings
        and config.source_digest is not None
        and store.engine.dialect.name == "sqlite"
    ):
        # Nothing to poll, nothing to export, nothing to warn about: the next
        # `fetch` of the same file over the same rows can say so at once.
        lite.record_nothing_to_poll(settings.database_url, config.source_digest, config.feeds)
    export_failed = False
    if done.export is not None and target is not None:
        problem = done.export.problem(target)
        if problem is not None:
            click.echo(f"error: export: {problem}", err=True)
            export_failed = True
        elif done.export.written or done.export.removed:
            click.echo(
                f"export: {done.export.written} file(s) written and {done.export.removed} "
                f"removed that earlier passes had left undone in {target}"
            )
    if export_failed or any(r.failed for r in done.reports):
        sys.exit(1)


@main.command()
@_config_option
@click.option("--feed", "needles", multiple=True, help="Only this feed: its URL, route or outlet.")
@click.option("--since", help="Only posts dated on or after this ISO date (UTC unless given).")
@_export_option
@click.option(
    "--refetch",
    is_flag=True,
    help="Fetch the article pages of full_text entries that have none stored.",
)
@click.pass_obj
def reprocess(
    settings: Settings,
    config_path: Path,
    needles: tuple[str, ...],
    since: str | None,
    export_dir: Path | None,
    refetch: bool,
) -> None:
    """Apply changed rules (filters, clean-up, full text, images) to stored entries.

    Offline: full_text selectors are applied to the stored article pages;
    --refetch fetches the pages of entries stored without one.
    """
    from aggregator.config.feeds import ConfigError
    from aggregator.fetch.fetcher import Fetcher, FetchLimits
    from aggregator.hexo.export import ExportError
    from aggregator.service.reprocess import reprocess as run_reprocess

    since_dt = _parse_since(since)
    config = _load_config(config_path)
    try:
        specs = (
            tuple(dict.fromkeys(s for n in needles for s in config.select(n)))
            if needles
            else config.feeds
        )
    except ConfigError as exc:
        _fail(str(exc))
    store = _open_store(settings)
    total = store.count_entries(store.feed_ids(s.url for s in specs).values(), since=since_dt)
    try:
        with _progress("reprocess", total) as advance:
            report = run_reprocess(
                store,
                specs,
                since=since_dt,
                export_dir=export_dir or config.output_dir,
                progress=advance,
                refetch=refetch,
                fetcher=lambda: Fetcher(FetchLimits(host_policies=config.hosts)),
            )
    except ExportError as exc:
        _fail(f"reprocess stopped (the database is consistent, files may lag): {exc.strerror}")
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(report.summary())


@main.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON document on standard output, for scripts."
)
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Show every feed: last poll, result, next poll, error streak, posts.

    Read-only: it never creates or migrates the schema.
    """
    from aggregator.service.status import (
        StoreSource,
        daemons_document,
        daemons_table,
        light_status,
        publisher_table,
        read_status,
        show_daemons,
        status_document,
        status_rows,
        status_table,
    )

    now = datetime.now(UTC)
    # A SQLite file is read without SQLAlchemy (a third of a second of
    # imports); anything else, or any doubt, goes through the store.
    snapshot = light_status(settings.database_url, now=now)
    if snapshot is None:
        snapshot = read_status(StoreSource(_open_store(settings, schema="check")), now=now)
    if as_json:
        import json

        document = status_document(snapshot.feeds, daemons=snapshot.daemons, now=now)
        document["fleet"] = daemons_document(snapshot.fleet, now=now)
        document["publishers"] = status_rows(snapshot.publishers)
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    console = _console(width=140)
    console.print(status_table(snapshot.feeds, now=now))
    if snapshot.publishers:
        console.print(publisher_table(snapshot.publishers, now=now))
    if show_daemons(snapshot.fleet, now=now):
        console.print(daemons_table(snapshot.fleet, now=now))
    if snapshot.daemons:
        click.echo(
            f"polling now: {', '.join(snapshot.daemons)} (daemons holding leases, host:pid)"
        )
    else:
        click.echo("polling now: no daemon holds a lease (none running, or all idle)")


@main.command()
@_config_option
@_export_option
@click.pass_obj
def publish(settings: Settings, config_path: Path, export_dir: Path | None) -> None:
    """Run every publisher of feeds.yaml's publish: section once (after a cron fetch)."""
    import asyncio

    from aggregator.service.publish import publish_once

    config = _load_config(config_path)
    if config.publish is None or not config.publish.publishers:
        _fail(f"{config_path} has no publish: section with git:, command: or webhook:")
    target = export_dir or config.output_dir
    if target is None:
        _fail("publishing needs the export directory: set output_dir in feeds.yaml or --export")
    assert config.publish is not None and target is not None
    store = _open_store(settings)
    outcomes = asyncio.run(publish_once(store, config.publish, target))
    for outcome in outcomes:
        if outcome.error is None:
            click.echo(f"{outcome.name}: {outcome.summary}")
        else:
            click.echo(f"error: {outcome.name}: {outcome.error}", err=True)
    if any(outcome.error is not None for outcome in outcomes):
        sys.exit(1)


@main.command()
@_config_option
@click.option(
    "--http",
    "http_bind",
    envvar=f"{ENV_PREFIX}_HTTP",
    show_envvar=True,
    help="Serve /healthz, /metrics and the operator's page on HOST:PORT (e.g. 127.0.0.1:8080).",
)
@click.option(
    "--http-token",
    "http_token",
    envvar=f"{ENV_PREFIX}_HTTP_TOKEN",
    show_envvar=True,
    help="Allow the page's actions (poll now, re-enable) to holders of this token.",
)
@click.option(
    "--capacity",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    envvar=f"{ENV_PREFIX}_CAPACITY",
    show_envvar=True,
    help="Feeds this daemon polls at once.",
)
@click.option(
    "--metrics-per-feed",
    is_flag=True,
    envvar=f"{ENV_PREFIX}_METRICS_PER_FEED",
    show_envvar=True,
    help="Add one /metrics series per feed (last success time); for small installs only.",
)
@_export_option
@click.pass_obj
def run(
    settings: Settings,
    config_path: Path,
    http_bind: str | None,
    http_token: str | None,
    capacity: int,
    metrics_per_feed: bool,
    export_dir: Path | None,
) -> None:
    """Run the daemon: poll every feed in feeds.yaml on its schedule."""
    # Loaded before the daemon's modules are imported (refusing to start on
    # an invalid file): the holes the loader's garbage leaves in the heap are
    # then filled by those imports, not kept as free space for good (~9 MB at
    # 3,000 feeds, issue 15).
    config = _load_config(config_path)
    from aggregator.service.daemon import DaemonOptions, run_daemon

    sys.exit(
        run_daemon(
            settings.database_url,
            config_path,
            http_bind=http_bind,
            export_dir=export_dir,
            config=config,
            http_token=http_token,
            options=DaemonOptions(capacity=capacity, metrics_per_feed=metrics_per_feed),
        )
    )


# --------------------------------------------------------------------------
# Adding feeds, and OPML both ways (discover.py, feeds_edit.py, opml.py)
# --------------------------------------------------------------------------

if TYPE_CHECKING:  # the commands import their modules lazily, like the others
    from aggregator.config.edit import FeedsFile
    from aggregator.config.feeds import Config
    from aggregator.fetch.fetcher import Fetcher
    from aggregator.service.discover import FeedCandidate
    from aggregator.service.pipeline import FeedReport


def _feeds_file(path: Path) -> FeedsFile:
    """The feeds file, read for editing; an invalid one is listed and exits 1, untouched."""
    from aggregator.config.edit import FeedsFile

    config = _load_config(path)
    return FeedsFile(path.resolve(), path.read_bytes().decode("utf-8"), config)


def _save_feeds(feeds_file: FeedsFile, entries: list[dict[str, Any]]) -> None:
    """Append ``entries`` keeping the file's formatting; on any failure nothing changes."""
    from aggregator.config.edit import FeedsEditError, append_feeds, save_feeds_file
    from aggregator.config.feeds import ConfigError

    try:
        new_text = append_feeds(feeds_file.text, entries, source=str(feeds_file.path))
        save_feeds_file(feeds_file, new_text)
    except FeedsEditError as exc:
        _fail(str(exc))
    except ConfigError as exc:
        where = feeds_file.path
        click.echo(f"error: the new entries would not load; {where} is unchanged:", err=True)
        for line in exc.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    except OSError as exc:
        _fail(f"cannot write {feeds_file.path}: {exc.strerror or exc}; it is unchanged")


def _refuse_duplicate(feeds_file: FeedsFile, url: str) -> None:
    from aggregator.config.edit import duplicate_of, rsshub_route_of

    base = feeds_file.defaults.get("rsshub_base")
    route = rsshub_route_of(url, base if isinstance(base, str) else None)
    existing = duplicate_of(feeds_file.config, url, route)
    if existing is not None:
        what = f"rsshub route {existing.rsshub_route}" if existing.rsshub_route else existing.url
        _fail(
            f"{url} is already in {feeds_file.path}:{existing.line} "
            f"({existing.outlet} / {existing.section}, {what}); nothing was added"
        )


def _interactive() -> bool:
    """Ask only when a person can answer: both ends of the session are a terminal."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _choose(url: str, candidates: list[FeedCandidate], pick: int | None) -> FeedCandidate:
    listing = [
        f"  {n}. {c.title or '(no title)'}  {c.url}  [{c.media_type or '?'}; {c.found}]"
        for n, c in enumerate(candidates, 1)
    ]
    if pick is not None and pick > len(candidates):
        click.echo(f"error: --pick {pick}, but {url} offers {len(candidates)} feed(s):", err=True)
        click.echo("\n".join(listing), err=True)
        sys.exit(2)
    if pick is not None or len(candidates) == 1:
        return candidates[(pick or 1) - 1]
    if _interactive():
        click.echo(f"{url} offers {len(candidates)} feeds:")
        click.echo("\n".join(listing))
        n = click.prompt("add which one", type=click.IntRange(1, len(candidates)))
        return candidates[n - 1]
    click.echo(f"error: {url} offers {len(candidates)} feeds; choose one with --pick N:", err=True)
    click.echo("\n".join(listing), err=True)
    sys.exit(2)


def _fetch_or_fail(work: Callable[[Fetcher], Awaitable[_T]]) -> _T:
    """Run one network step of `add` with a fresh fetcher; a failure ends the command."""
    import asyncio

    from aggregator.fetch.fetcher import Fetcher, FetchError
    from aggregator.service.discover import DiscoveryError

    async def run() -> _T:
        async with Fetcher() as fetcher:
            return await work(fetcher)

    try:
        return asyncio.run(run())
    except (DiscoveryError, FetchError) as exc:
        _fail(f"{exc}; nothing was added")
    raise AssertionError("unreachable")


@main.command()
@click.argument("url")
@click.option("--outlet", help="Second category and author: line (default: the feed's title).")
@click.option("--section", help="Third category (default: defaults.section, else 新闻).")
@click.option("--group", help="First category (default: defaults.group, else 新媒体).")
@click.option(
    "--pick",
    type=click.IntRange(min=1),
    help="When the page offers several feeds: add the Nth as listed (1 = first).",
)
@_config_option
def add(
    url: str,
    outlet: str | None,
    section: str | None,
    group: str | None,
    pick: int | None,
    config_path: Path,
) -> None:
    """Add the feed at URL (a feed, or a web page that links one) to feeds.yaml."""
    from aggregator.config.edit import FALLBACK_GROUP, FALLBACK_SECTION, build_entry
    from aggregator.config.feeds import normalise_url
    from aggregator.service.discover import check_feed, discover

    feeds_file = _feeds_file(config_path)
    defaults = feeds_file.defaults
    _refuse_duplicate(feeds_file, url)

    candidates = _fetch_or_fail(lambda fetcher: discover(url, fetcher))
    chosen = _choose(url, candidates, pick)
    if normalise_url(chosen.url) != normalise_url(url):
        # Say where the feed came from before anything else is said about
        # it: "already in feeds.yaml" about a URL nobody typed is a riddle.
        click.echo(f"{url} is a web page; its feed is {chosen.url} (from its {chosen.found})")
    _refuse_duplicate(feeds_file, chosen.url)
    feed = _fetch_or_fail(lambda fetcher: check_feed(chosen, fetcher))
    outlet = outlet or " ".join((feed.title or chosen.title or "").split())
    if not outlet:
        _fail(f"{chosen.url} has no title to name the outlet after; give --outlet")
    section = section or defaults.get("section") or FALLBACK_SECTION
    group = group or defaults.get("group") or FALLBACK_GROUP
    entry = build_entry(
        url=chosen.url, outlet=outlet, section=section, group=group, defaults=defaults
    )
    _save_feeds(feeds_file, [entry])
    click.echo(f"added {group} / {outlet} / {section}: {chosen.url}")
    click.echo(f"to {config_path}; a running daemon picks it up within seconds")


@main.group()
def opml() -> None:
    """Move feed lists between feeds.yaml and other readers (OPML 2.0)."""


@opml.command("export")
@_config_option
def opml_export(config_path: Path) -> None:
    """Write every feed in feeds.yaml as OPML 2.0 on standard output."""
    from aggregator.config.opml import export_opml

    click.echo(export_opml(_load_config(config_path)), nl=False)


@opml.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_config_option
def opml_import(file: Path, config_path: Path) -> None:
    """Append the feeds of an OPML FILE to feeds.yaml (duplicates are left out)."""
    from aggregator.config.opml import OpmlError, categories_of, parse_opml, plan_import

    feeds_file = _feeds_file(config_path)
    try:
        feeds = parse_opml(file.read_bytes(), source=str(file))
    except OpmlError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    defaults = feeds_file.defaults
    plan = plan_import(feeds, feeds_file.config, defaults)
    if plan.entries:
        _save_feeds(feeds_file, plan.entries)
    for feed, entry in zip(plan.added, plan.entries, strict=True):
        group, section = categories_of(feed, defaults)
        click.echo(f"added: {group} / {entry['outlet']} / {section}: {feed.url}")
    for feed, reason in plan.duplicates:
        click.echo(f"already there: {feed.title or feed.url} ({feed.url}): {reason}")
    for feed, reason in plan.skipped:
        click.echo(f"error: skipped {file}:{feed.line}: {feed.url}: {reason}", err=True)
    click.echo(
        f"{len(plan.entries)} added, {len(plan.duplicates)} already there, "
        f"{len(plan.skipped)} skipped"
    )
    if plan.skipped:
        sys.exit(1)


# --------------------------------------------------------------------------
# The shared options, after the subcommand too
# --------------------------------------------------------------------------


def _set_shared(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``aggregator status --database-url URL``: the same as giving it before ``status``.

    People type options next to the command they are about; click only
    accepts a group's options before the subcommand.  Each command gets a
    copy of them that updates the settings (and the logging) the group set up.
    """
    if value is None or ctx.resilient_parsing:
        return
    settings = ctx.find_object(Settings)
    assert settings is not None and param.name is not None
    update: dict[str, Any] = {param.name: value}
    changed = replace(settings, **update)
    for context in _contexts(ctx):
        if isinstance(context.obj, Settings):
            context.obj = changed
    if param.name in ("log_level", "log_format"):
        configure_logging(changed.log_level, changed.log_format)


def _contexts(ctx: click.Context | None) -> Iterator[click.Context]:
    while ctx is not None:
        yield ctx
        ctx = ctx.parent


def _shared_options() -> list[click.Option]:
    copies = []
    shared = ("database_url", "log_level", "log_format")
    for option in main.params:
        if isinstance(option, click.Option) and option.name in shared:
            copies.append(
                click.Option(
                    option.opts,
                    type=option.type,
                    default=None,
                    expose_value=False,
                    callback=_set_shared,
                    help=f"As before the command (also {ENV_PREFIX}_{option.name.upper()}).",
                )
            )
    return copies


def _add_shared_options(group: click.Group) -> None:
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _add_shared_options(command)
        else:
            command.params.extend(_shared_options())


_add_shared_options(main)
