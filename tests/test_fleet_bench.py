"""The fleet benchmark, small: its invariants, not its timings (issue 17).

bench/fleet.py at 2,000 feeds on 40 hosts, three daemons on PostgreSQL, a
2-minute interval measured for one interval, then ``kill -9`` of one daemon
and SIGTERM of the others.  ``--check`` makes it exit 1 when an invariant
fails: every feed polled every interval (within 60 s of lateness), none
twice within half an interval, no per-host spacing violation, every daemon
doing at least a quarter of its even share of the polls (the spaced hosts
are shared out, not held by the first daemon), the killed daemon's feeds
polled again within two minutes, nothing left behind by SIGTERM.  Takes
about five minutes; skipped (with the reason) without
AGGREGATOR_TEST_POSTGRES_URL.

Robust on a loaded 2-core machine by what it measures, not by slack: the
spacing is checked on the kernel's receive stamps of the farm's sockets (a
farm whose loop stalls does not squeeze two requests together), and the
daemons book a host's next start after the request left (fetcher) and a
host taken over from another daemon after the claim saw it free (clock read
in the claim's thread).  Load slows the polls, it does not bring requests
closer together.
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
