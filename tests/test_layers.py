"""The import contract: which part of aggregator may import which.

docs/architecture.md ("Layers") says it in prose; this is the same rule as
data, checked over every module's source with ``ast`` -- top-level imports,
imports inside functions (the lazy ones that keep start-up small) and
``if TYPE_CHECKING:`` imports alike, because each is a dependency a reader
has to follow.

From the top down, a unit may import itself, and any unit of a LOWER rank:

    5  __main__                              python -m aggregator
    4  cli                                   the command line
    3  service                               the stages put together
    2  fetch  parse  content  store  hexo    the stages: siblings, none imports another
    1  config  store.records                 what the operator writes; what the store is handed
    0  policy  hexo.post  aggregator         pure rules, the post format, __version__
   -1  errors  types                         the error tree, which every layer raises;
                                            the plain records handed between stages

Rank 0 imports nothing of the project but itself and the error tree.  Imports between stages are
what the service layer exists for; KNOWN_VIOLATIONS would list one that had
to stay for a while, with its reason (issue 19 emptied it).  The list must
only shrink: a new violation fails, and so does an entry that no longer
happens (delete it).  Of ``config``, the stages import only plain records
and constants (STAGE_CONFIG_MODULES), never the loader.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aggregator"

#: Unit -> rank.  A module belongs to the longest unit that prefixes its name.
UNITS: dict[str, int] = {
    "aggregator": 0,  # the package itself: __version__ only
    "aggregator.policy": 0,
    "aggregator.errors": -1,  # the error tree: imports nothing, everyone may raise it
    "aggregator.types": -1,  # values handed between stages: plain records, importable by all
    "aggregator.hexo.post": 0,
    "aggregator.config": 1,
    # what the store is handed (IngestItem): below content, which makes it,
    # and the rest of store, which takes it
    "aggregator.store.records": 1,
    "aggregator.fetch": 2,
    "aggregator.parse": 2,
    "aggregator.content": 2,
    "aggregator.store": 2,
    "aggregator.hexo": 2,
    "aggregator.service": 3,
    "aggregator.cli": 4,
    "aggregator.__main__": 5,  # python -m aggregator: runs the cli
}

#: (importer, imported) -> why it is there, and which slice removes it.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
}

#: Names a package's __init__ re-exports from outside the package (same debt
#: as the import it rides on).
KNOWN_FOREIGN_EXPORTS: dict[tuple[str, str], str] = {}

#: Third-party libraries that only some units may import: the guard behind
#: "only store talks to the database, only fetch talks to the network".
#: Exceptions to catch (``sqlalchemy.exc``) are not talking.
LIBRARY_HOMES: dict[str, tuple[str, ...]] = {
    "sqlalchemy": ("aggregator.store",),
    "alembic": ("aggregator.store",),
    "httpx": ("aggregator.fetch",),
    # No unit: every request, trusted or guarded, goes over the one aiohttp
    # wire (fetch.transport); httpx's own httpcore transport is not used.
    "httpcore": (),
    # the one client wire (the address guard is its resolver), and the
    # daemon's own /healthz server and operator's page
    "aiohttp": (
        "aggregator.fetch.transport",
        "aggregator.service.server",
        "aggregator.service.web",
    ),
    "jinja2": ("aggregator.service.web",),
    "feedparser": ("aggregator.parse",),
    "apscheduler": ("aggregator.service.daemon",),
    "prometheus_client": ("aggregator.service.metrics",),
}
LIBRARY_EXCEPTIONS = (
    "sqlalchemy.exc",  # exceptions to catch are not talking to the database
    "feedparser.datetimes",  # pure date-string readers: policy.dates reads dates as parse does
)

#: (importer, library module) used outside its home today, and why.  Shrinks only.
KNOWN_LIBRARY_STRAYS: dict[tuple[str, str], str] = {
}

#: Standard-library modules that mean I/O: a pure unit imports none of them,
#: nor a library of LIBRARY_HOMES (pure helpers such as dateutil are fine).
IO_STDLIB = ("socket", "ssl", "http", "urllib.request", "subprocess", "sqlite3", "asyncio")
PURE_UNITS = ("aggregator.policy", "aggregator.hexo.post")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts
}


def unit_of(module: str) -> str:
    best = "aggregator" if module == "aggregator" else ""
    for unit in UNITS:
        if unit != "aggregator" and (module == unit or module.startswith(unit + ".")):
            best = max(best, unit, key=len)
    return best


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import in a module, at any depth.

    ``from X import Y`` names ``X.Y`` when that is a module of ours (``from
    aggregator.hexo import post``), else ``X``.
    """
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                known = full in MODULES or full.startswith(LIBRARY_EXCEPTIONS)
                yield (full if known else base), node.lineno


def project_edges() -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = {}
    for module in MODULES:
        for name, line in imports_of(module):
            if name == "aggregator" or name.startswith("aggregator."):
                edges.setdefault((module, name), line)
    return edges


def allowed(importer: str, imported: str) -> bool:
    mine, theirs = unit_of(importer), unit_of(imported)
    return mine == theirs or UNITS[theirs] < UNITS[mine]


def test_every_module_has_a_place_in_the_layers() -> None:
    homeless = [m for m in MODULES if m != "aggregator" and unit_of(m) in ("", "aggregator")]
    assert homeless == [], (
        f"{homeless}: put each module in a package of docs/architecture.md's layers "
        "(aggregator/ keeps only __init__, __main__, cli, errors and types at its top)"
    )


def test_imports_follow_the_layers() -> None:
    violations = {edge: line for edge, line in project_edges().items() if not allowed(*edge)}
    new = {
        f"{MODULES[a].relative_to(PACKAGE.parent)}:{line}: {a} ({unit_of(a)}, rank "
        f"{UNITS[unit_of(a)]}) imports {b} ({unit_of(b)}, rank {UNITS[unit_of(b)]})"
        for (a, b), line in violations.items()
        if (a, b) not in KNOWN_VIOLATIONS
    }
    assert not new, (
        "imports against docs/architecture.md's layers; pass the value in from the "
        "service layer, or move the type down a layer:\n" + "\n".join(sorted(new))
    )
    gone = sorted(set(KNOWN_VIOLATIONS) - set(violations))
    assert not gone, f"fixed, so delete from KNOWN_VIOLATIONS: {gone}"


@pytest.mark.parametrize("unit", PURE_UNITS)
def test_pure_units_do_no_io_and_import_nothing_of_ours(unit: str) -> None:
    found = []
    for module in MODULES:
        if unit_of(module) != unit:
            continue
        for name, line in imports_of(module):
            top = name.split(".")[0]
            ours = name == unit or name.startswith(unit + ".")
            project = top == "aggregator" and not ours and name != "aggregator.errors"
            io = any(name == m or name.startswith(m + ".") for m in IO_STDLIB)
            owned = top in LIBRARY_HOMES and not name.startswith(LIBRARY_EXCEPTIONS)
            if project or io or owned:
                found.append(f"{module}:{line}: {name}")
    assert found == [], f"{unit} must stay pure (no I/O, nothing of the project): {found}"


def test_libraries_stay_in_their_units() -> None:
    strays: dict[tuple[str, str], str] = {}
    for module in MODULES:
        for name, line in imports_of(module):
            homes = LIBRARY_HOMES.get(name.split(".")[0])
            if homes is None or name.startswith(LIBRARY_EXCEPTIONS):
                continue
            if not any(module == h or module.startswith(h + ".") for h in homes):
                where = ", ".join(homes) or "no unit"
                strays[(module, name)] = f"{module}:{line}: {name} (belongs in {where})"
    new = [text for edge, text in sorted(strays.items()) if edge not in KNOWN_LIBRARY_STRAYS]
    assert new == [], "\n".join(new)
    gone = sorted(set(KNOWN_LIBRARY_STRAYS) - set(strays))
    assert not gone, f"fixed, so delete from KNOWN_LIBRARY_STRAYS: {gone}"


#: The parts of ``config`` a stage (rank 2) may import: plain records and
#: constants (FeedSpec and its defaults, the digest of feeds.yaml's bytes, the
#: default database URL).  The loader (``config.feeds``: pydantic, ruamel,
#: ``Config``), its editor, OPML and the publish section stay with the
#: service layer, which hands the stages plain records (issue 19: "the store
#: receives plain typed records, never config objects").
STAGE_CONFIG_MODULES = (
    "aggregator.config.spec",
    "aggregator.config.digest",
    "aggregator.config.settings",
)
STAGE_UNITS = (
    "aggregator.fetch",
    "aggregator.parse",
    "aggregator.content",
    "aggregator.store",
    "aggregator.hexo",
)


def config_imports_beyond_records(module: str, imported: str) -> bool:
    """True when a stage module imports a part of ``config`` that is not a plain record."""
    stage = unit_of(module) in STAGE_UNITS
    into_config = unit_of(imported) == "aggregator.config"
    plain = any(imported == m or imported.startswith(m + ".") for m in STAGE_CONFIG_MODULES)
    return stage and into_config and not plain


def test_stages_take_plain_records_from_config_not_the_loader() -> None:
    found = [
        f"{MODULES[a].relative_to(PACKAGE.parent)}:{line}: {a} imports {b}"
        for (a, b), line in sorted(project_edges().items())
        if config_imports_beyond_records(a, b)
    ]
    assert found == [], (
        "a stage imports the config loader; take the plain record "
        f"({', '.join(STAGE_CONFIG_MODULES)}) and let the service layer load:\n" + "\n".join(found)
    )
    # the checker itself
    assert config_imports_beyond_records("aggregator.store.feeds", "aggregator.config.feeds")
    assert config_imports_beyond_records("aggregator.hexo.export", "aggregator.config.publish")
    assert not config_imports_beyond_records("aggregator.store.rows", "aggregator.config.spec")
    assert not config_imports_beyond_records("aggregator.service.runner", "aggregator.config.feeds")


def test_the_rule_sees_a_violation() -> None:
    """The checker itself: a stage importing a sibling or a higher layer is caught."""
    assert not allowed("aggregator.parse.parser", "aggregator.content.clean")
    assert not allowed("aggregator.policy.dedup", "aggregator.config.feeds")
    assert not allowed("aggregator.hexo.post", "aggregator")
    assert not allowed("aggregator.store.store", "aggregator.service.pipeline")
    assert allowed("aggregator.hexo.export", "aggregator.hexo.post")
    assert allowed("aggregator.service.pipeline", "aggregator.store")
    assert allowed("aggregator.policy.filters", "aggregator.policy.dedup")
    # the store's input record sits below both its maker and the rest of store
    assert allowed("aggregator.content.items", "aggregator.store.records")
    assert allowed("aggregator.store.ingest", "aggregator.store.records")
    assert not allowed("aggregator.content.items", "aggregator.store.store")
    assert not allowed("aggregator.store.records", "aggregator.content.items")


def _exports() -> Iterator[tuple[str, str]]:
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module != "aggregator":
            for name in getattr(importlib.import_module(module), "__all__", ()):
                yield module, name


@pytest.mark.parametrize(("package", "name"), list(_exports()))
def test_package_exports_resolve_to_the_package(package: str, name: str) -> None:
    """What a package's __init__ exports exists, and comes from inside it."""
    value = getattr(importlib.import_module(package), name)
    home = getattr(value, "__module__", package)
    inside = home == package or home.startswith(package + ".")
    assert inside != ((package, name) in KNOWN_FOREIGN_EXPORTS), (package, name, home)
