"""What the command line imports before it knows what it will do.

Start-up time is most of a short command (`--help`, `status`, a `fetch`
with nothing due), and it is mostly imports. The heavy libraries are
imported inside the functions that use them; these tests keep it so, by
asking a fresh interpreter which modules a command pulled in. Timing is
left to the benchmark (bench/); this checks the cause, not the clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Libraries no help text needs: the network stack, the parsers, the
#: scheduler, migrations, config validation, metrics, compression.
NEVER_FOR_HELP = (
    "aiohttp",
    "alembic",
    "apscheduler",
    "bs4",
    "brotli",
    "httpx",
    "prometheus_client",
    "pydantic",
    "ruamel",
    "zstandard",
)


#: What a command that polls nothing never needs: the HTTP clients, the
#: parsers, the pipeline, the scheduler, migrations, metrics, compression.
NEVER_WITHOUT_POLLING = (
    "aiohttp",
    "alembic",
    "apscheduler",
    "brotli",
    "httpx",
    "prometheus_client",
    "zstandard",
    "aggregator.fetch",
    "aggregator.parse",
    "aggregator.service.daemon",
    "aggregator.service.pipeline",
    "aggregator.service.worker",
    "aggregator.content.images",
)


def _all_modules_after(
    code: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> set[str]:
    """Every module imported once ``code`` has run in a new interpreter."""
    report = "\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + code + report],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported once ``code`` has run in a new interpreter."""
    return {m.split(".")[0] for m in _all_modules_after(code)}


def _run_cli(*argv: str) -> str:
    """Code that runs ``aggregator ARGV`` in this interpreter, its exit not ending the script."""
    return (
        f"from aggregator import cli\ntry:\n    cli.main({list(argv)!r})\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
    )


def _imported_by(*argv: str) -> set[str]:
    """What running ``aggregator ARGV`` imports (top-level packages)."""
    run = f"cli.main({list(argv)!r})"
    return _modules_after(
        f"from aggregator import cli\ntry:\n    {run}\nexcept SystemExit:\n    pass"
    )


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` (packages or modules, with what is under them) are in ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("--version",), ("status", "--help"), ("fetch", "--help"), ("run", "--help")],
)
def test_help_and_version_import_no_heavy_library(argv: tuple[str, ...]) -> None:
    heavy = sorted(set(NEVER_FOR_HELP) & _imported_by(*argv))
    assert heavy == [], f"`aggregator {' '.join(argv)}` imports {heavy} at start-up"


def test_the_guard_sees_a_heavy_import() -> None:
    """The check itself works: the fetch stage does import httpx."""
    assert "httpx" in _modules_after("import aggregator.fetch.fetcher")


def test_the_fetch_stack_leaves_out_httpx_command_line_client() -> None:
    """httpx imports its CLI (rich, pygments: ~6 MB) when rich is there; ours never runs it."""
    modules = _all_modules_after(
        "import aggregator.fetch.fetcher, aggregator.fetch.webhook, httpx\n"
        "assert callable(httpx.main)\n"
    )
    assert "httpx" in modules and "aiohttp" in modules
    assert _loaded(modules, ("rich", "pygments")) == []


@pytest.fixture
def workdir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory with an empty feeds.yaml and the environment that points at its database."""
    (tmp_path / "feeds.yaml").write_text("feeds: []\n", encoding="utf-8")
    return tmp_path, {"AGGREGATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}


def test_fetch_with_nothing_to_poll_loads_no_fetch_stack(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    """A pass over no feeds still registers them and catches up the export, nothing more.

    Its database is new: creating the schema must not load Alembic either.
    """
    cwd, env = workdir
    modules = _all_modules_after(_run_cli("fetch"), cwd=cwd, env=env)
    assert (cwd / "a.db").exists()  # the pass did run
    heavy = _loaded(modules, NEVER_WITHOUT_POLLING)
    assert heavy == [], f"`aggregator fetch` with no feeds imports {heavy}"


#: What the light paths on SQLite never load: the store's library and the
#: config loader's (aggregator.store.lite reads the file with sqlite3).
NEVER_ON_THE_LIGHT_PATH = (
    *NEVER_WITHOUT_POLLING,
    "sqlalchemy",
    "pydantic",
    "ruamel",
    "aggregator.store.store",
    "aggregator.service.runner",
    "rich.progress",
)


def test_status_loads_neither_the_store_nor_config_validation(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    """On a SQLite file: sqlite3 reads it, SQLAlchemy stays out (0.25-0.3 s of imports)."""
    cwd, env = workdir
    _all_modules_after(_run_cli("fetch"), cwd=cwd, env=env)  # a database to show
    for argv in (("status",), ("status", "--json")):
        modules = _all_modules_after(_run_cli(*argv), cwd=cwd, env=env)
        assert "aggregator.service.status" in modules  # the command ran
        heavy = _loaded(modules, NEVER_ON_THE_LIGHT_PATH)
        assert heavy == [], f"`aggregator {' '.join(argv)}` imports {heavy}"
    json_only = _all_modules_after(_run_cli("status", "--json"), cwd=cwd, env=env)
    assert _loaded(json_only, ("rich",)) == []  # no table, no rich


def test_fetch_with_nothing_to_poll_again_loads_neither_store_nor_config(
    workdir: tuple[Path, dict[str, str]],
) -> None:
    """The second pass over the same empty file: the sync marker says there is nothing to do."""
    cwd, env = workdir
    first = _all_modules_after(_run_cli("fetch"), cwd=cwd, env=env)
    assert "sqlalchemy" in first and "pydantic" in first  # the full path, once
    modules = _all_modules_after(_run_cli("fetch"), cwd=cwd, env=env)
    assert "aggregator.store.lite" in modules
    heavy = _loaded(modules, (*NEVER_ON_THE_LIGHT_PATH, "rich"))
    assert heavy == [], f"a second `aggregator fetch` with no feeds imports {heavy}"
