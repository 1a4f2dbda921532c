"""What a parse worker process holds: the parse and content stages, nothing else.

A worker's memory is mostly the modules it imports (its fork server holds
them once more, shared), so a stray import costs every pass that parses in
a worker.  These tests ask a fresh interpreter what the worker's modules
(and unpickling what a worker is handed) pull in; the benchmark
(bench/suite.py) says what that costs in MB.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from datetime import UTC, datetime

from aggregator.config.feeds import ConfigIssue, loads_config
from aggregator.service.runner import WORKER_MODULES
from aggregator.service.worker import parse_and_build

#: Libraries a worker never uses: the loader's, the network's, the store's, the daemon's.
NEVER_IN_A_WORKER = (
    "aiohttp",
    "apscheduler",
    "httpx",
    "prometheus_client",
    "pydantic",
    "rich",
    "ruamel",
    "sqlalchemy",
    "aggregator.config.feeds",
    "aggregator.fetch",
    "aggregator.store.store",
)

CONFIG = """\
defaults: {group: 新媒体, timezone: Asia/Shanghai}
feeds:
  - url: https://example.com/feed.xml
    outlet: 例子
    section: 新闻
    full_text: {selector: .article, remove: [.ad]}
    block: [{title: 广告}]
"""


def _modules_after_unpickling(payload: bytes) -> set[str]:
    """Every module a fresh interpreter holds after the worker's preload and ``payload``."""
    code = (
        "import importlib, json, pickle, sys\n"
        f"for name in {WORKER_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "pickle.loads(sys.stdin.buffer.read())\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, timeout=120, check=True
    )
    return set(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_a_worker_unpickles_its_job_without_the_loader_or_the_network_stack() -> None:
    spec = loads_config(CONFIG).feeds[0]
    job = (parse_and_build, b"<rss/>", spec.url, None, None, spec, datetime.now(UTC))
    modules = _modules_after_unpickling(pickle.dumps(job))
    assert "aggregator.service.worker" in modules  # the preload ran
    heavy = _loaded(modules, NEVER_IN_A_WORKER)
    assert heavy == [], f"a parse worker imports {heavy}"


def test_the_guard_sees_a_stray_import() -> None:
    """The check itself works: a type of the loader's module does pull in the loader."""
    issue = ConfigIssue("feeds.yaml", 1, 1, "feeds", "missing")
    modules = _modules_after_unpickling(pickle.dumps(issue))
    assert "aggregator.config.feeds" in modules and "pydantic" in modules
