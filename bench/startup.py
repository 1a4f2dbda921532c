"""Start-up benchmark: wall time and max RSS of short CLI commands.

Runs each command N times in fresh processes against one or more checkouts
(paired: before/after alternate), prints median/max wall and max RSS.

    python bench/startup.py /work/main /work/wt/startup -n 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "status": ["status"],
    "fetch (nothing due)": ["fetch"],
}


def _run(root: Path, argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of one ``python -m aggregator ARGV``."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "aggregator", *argv],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # wait4 gives this child's own rusage: RUSAGE_CHILDREN's ru_maxrss is the
    # high-water mark over every child so far, which hides a smaller one.
    _, _, usage = os.wait4(child.pid, 0)
    child.returncode = 0  # reaped above; keeps Popen from waiting again
    return time.perf_counter() - start, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("roots", nargs="+", type=Path)
    ap.add_argument("-n", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # A directory and database per checkout: two versions may be at
        # different schema revisions, and neither may read the other's.
        places: dict[Path, tuple[Path, dict[str, str]]] = {}
        for number, root in enumerate(args.roots):
            cwd = Path(tmp) / str(number)
            cwd.mkdir()
            (cwd / "feeds.yaml").write_text("feeds: []\n")
            env = dict(os.environ)
            env["AGGREGATOR_DATABASE_URL"] = f"sqlite:///{cwd / 'bench.db'}"
            # one fetch first so that `status` finds a (small, empty) database
            _run(root, ["fetch"], env, cwd)
            places[root] = (cwd, env)
        print(f"{'command':<22}{'checkout':<24}{'median s':>10}{'max s':>8}{'maxRSS MB':>11}")
        for name, argv in COMMANDS.items():
            times: dict[Path, list[float]] = {r: [] for r in args.roots}
            rss: dict[Path, int] = {r: 0 for r in args.roots}
            for _ in range(args.n):
                for root in args.roots:
                    cwd, env = places[root]
                    wall, peak = _run(root, argv, env, cwd)
                    times[root].append(wall)
                    rss[root] = max(rss[root], peak)
            for root in args.roots:
                t = times[root]
                med, top, mb = statistics.median(t), max(t), rss[root] / 1024
                print(f"{name:<22}{root!s:<24}{med:>10.3f}{top:>8.3f}{mb:>11.1f}")


if __name__ == "__main__":
    main()
