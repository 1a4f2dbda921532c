"""What the command line imports before it knows what it will do.

Start-up time is most of a short command (`--help`, `status`, a `fetch`
with nothing due), and it is mostly imports. The heavy libraries are
imported inside the functions that use them; these tests keep it so, by
asking a fresh interpreter which modules a command pulled in. Timing is
left to the benchmark (bench/); this checks the cause, not the clock.
"""

from __future__ import annotations

import json
import subprocess
import sys

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


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported once ``code`` has run in a new interpreter."""
    report = "\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    done = subprocess.run(
        [sys.executable, "-c", "import json, sys\n" + code + report],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _imported_by(*argv: str) -> set[str]:
    """What running ``aggregator ARGV`` imports."""
    run = f"cli.main({list(argv)!r})"
    return _modules_after(
        f"from aggregator import cli\ntry:\n    {run}\nexcept SystemExit:\n    pass"
    )


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
