"""parse and render of post files: this checkout against another one's post.py.

Prints a table of microseconds per file (median of --runs rounds) for the
seeds, for canonical posts as export renders them, and for the generator's
real files in ``archive-real`` (which only the new grammar reads)::

    python bench/post_timing.py                              # this checkout alone
    python bench/post_timing.py --against /work/main         # ... and main's post.py

Nothing here is a test: no timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _load(root: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, root / "aggregator" / "post.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no aggregator/hexo/post.py under {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look the module up while building
    spec.loader.exec_module(module)
    return module


def _per_file(work: Callable[[], Any], count: int, runs: int) -> float:
    rounds = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        rounds.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(rounds)


def _texts(directory: Path, pattern: str) -> list[str]:
    return [p.read_bytes().decode("utf-8") for p in sorted(directory.glob(pattern))]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", type=Path, help="another checkout to compare with")
    ap.add_argument("--archive", type=Path, default=REPO.parent / "shared" / "archive-real")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=50, help="copies of each file set per round")
    args = ap.parse_args(argv)

    versions = {"this": _load(REPO, "post_this")}
    if args.against:
        versions["against"] = _load(args.against, "post_against")
    seeds = _texts(REPO / "seeds", "*.txt") * args.repeat
    archive = _texts(args.archive, "*.md") * args.repeat if args.archive.is_dir() else []

    print(f"{'workload':<34}" + "".join(f"{name:>14}" for name in versions) + "   (µs per file)")
    rows: list[tuple[str, Callable[[ModuleType], float | None]]] = [
        (
            "parse seeds",
            lambda m: _per_file(lambda: [m.parse(t) for t in seeds], len(seeds), args.runs),
        ),
    ]

    def render_fetched(m: ModuleType) -> float:
        posts = [
            m.Post(
                **{
                    f: getattr(p, f)
                    for f in (
                        "title",
                        "group",
                        "outlet",
                        "section",
                        "body",
                        "date",
                        "headimg",
                        "thumbnail",
                        "author",
                        "comments",
                        "updated",
                    )
                }
            )
            for p in (m.parse(t) for t in seeds)
        ]
        return _per_file(lambda: [m.render(p) for p in posts], len(posts), args.runs)

    def on_archive(m: ModuleType, what: str) -> float | None:
        try:
            posts = [m.parse(t) for t in archive]
        except ValueError:
            return None  # this version cannot read the archive
        if what == "parse":
            return _per_file(lambda: [m.parse(t) for t in archive], len(archive), args.runs)
        return _per_file(lambda: [m.render(p) for p in posts], len(posts), args.runs)

    rows += [
        ("render fetched (canonical) posts", render_fetched),
        (
            f"parse archive-real ({len(archive) // max(args.repeat, 1)} files)",
            lambda m: on_archive(m, "parse"),
        ),
        ("render replayed archive posts", lambda m: on_archive(m, "render")),
    ]
    for label, measure in rows:
        cells = []
        for module in versions.values():
            value = measure(module) if (archive or "archive" not in label) else None
            cells.append(f"{value:>14.1f}" if value is not None else f"{'cannot':>14}")
        print(f"{label:<34}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
