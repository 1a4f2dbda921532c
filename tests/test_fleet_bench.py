"""The fleet benchmark, small: its invariants, not its timings (issue 17).

bench/fleet.py at 2,000 feeds on 40 hosts, three daemons on PostgreSQL, a
2-minute interval measured for one interval, then ``kill -9`` of one daemon
and SIGTERM of the others.  ``--check`` makes it exit 1 when an invariant
fails: every feed polled every interval (within 60 s of lateness), none
twice within half an interval, no per-host spacing violation, the killed
daemon's feeds polled again within two minutes, nothing left behind by
SIGTERM.  Takes about five minutes; skipped (with the reason) without
AGGREGATOR_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "fleet.py"


def test_a_fleet_of_three_polls_2000_feeds_once_per_interval_and_survives_kill_9(
    postgres_url: str, tmp_path: Path
) -> None:
    args = [
        sys.executable,
        str(BENCH),
        "--feeds", "2000",
        "--hosts", "40",
        "--interval", "120",
        "--duration", "120",
        "--after-kill", "75",
        "--slack", "60",
        "--takeover-limit", "120",
        "--database-url", postgres_url,
        "--workdir", str(tmp_path),
        "--check",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-4000:]}"
    assert "| feeds polled every interval" in done.stdout
