"""One claim's cost: ``Store.claim_fair`` at size, on PostgreSQL and SQLite.

    python bench/claim_timing.py --feeds 30000 --hosts 100 --due 5000

Builds its own database (``--database-url``, dropped and created again on
PostgreSQL) with N feeds over K hosts (by default 2 at once, 0.2 s apart,
as bench/fleet.py; ``--max-concurrency 32 --min-spacing 0`` is the suite's
farm), ``--due`` of them due (the oldest first, spread over the
hosts), ``--daemons`` registered daemons (3), then claims ``--rounds`` times as one
daemon would (``--limit`` feeds, a fresh clock each time) and gives the
feeds back as a poll would (next poll an interval later, lease cleared), so
the due set stays as large.  Prints the median wall and CPU (this process:
SQLAlchemy and the policy) milliseconds per claim and the feeds claimed.
For a before/after comparison, run a copy of this file from outside both
checkouts with PYTHONPATH at each (the file puts its own checkout first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from aggregator.config.feeds import FeedSpec  # noqa: E402
from aggregator.policy.politeness import HostPolicy  # noqa: E402
from aggregator.store import FeedUpdate, Store  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feeds", type=int, default=30000)
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--due", type=int, default=5000)
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--daemons", type=int, default=3, help="registered; they claim in turn")
    ap.add_argument("--max-concurrency", type=int, default=2, help="each host's (the fleet's: 2)")
    ap.add_argument(
        "--min-spacing",
        type=float,
        default=0.2,
        help="seconds (0: an unspaced host, as the suite's farm)",
    )
    ap.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/claim_timing")
    args = ap.parse_args()

    url = make_url(args.database_url)
    if url.get_backend_name() == "postgresql":
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
    elif url.database:
        Path(url.database).unlink(missing_ok=True)
    store = Store.open(args.database_url)
    now = datetime.now(UTC)
    specs = [
        FeedSpec(
            url=f"http://127.0.0.{1 + i % args.hosts}:8000/feeds/{i:05d}.xml",
            outlet="O",
            section="S",
            group="G",
        )  # type: ignore[call-arg]
        for i in range(args.feeds)
    ]
    ids = store.sync_feeds(specs, now=now, spread_new=False)
    order = [ids[s.url] for s in specs]
    store.update_feeds(  # typed values: SQLite keeps naive UTC text
        [
            (
                fid,
                FeedUpdate(
                    next_check_at=now - timedelta(seconds=args.due - i)
                    if i < args.due
                    else now + timedelta(seconds=i)
                ),
            )
            for i, fid in enumerate(order)
        ]
    )
    if url.get_backend_name() == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    for d in range(args.daemons):
        store.register_daemon(f"d:{d}", host="d", pid=d, now=now)
    policy = HostPolicy(max_concurrency=args.max_concurrency, min_spacing=args.min_spacing)
    walls, cpus, sizes = [], [], []
    clock = now
    for r in range(args.rounds):
        clock = clock + timedelta(seconds=1)  # one claim a second, as a daemon's
        owner = f"d:{r % args.daemons}"
        wall0, cpu0 = time.perf_counter(), time.process_time()
        claims = store.claim_fair(
            now=clock,
            limit=args.limit,
            lease=timedelta(minutes=15),
            owner=owner,
            policy_for=lambda h: policy,
        )
        walls.append(1000 * (time.perf_counter() - wall0))
        cpus.append(1000 * (time.process_time() - cpu0))
        sizes.append(len(claims))
        store.update_feeds(
            [
                (
                    c.feed_id,
                    FeedUpdate(
                        lease_owner=None,
                        lease_until=None,
                        next_check_at=clock + timedelta(seconds=300),
                    ),
                )
                for c in claims
            ]
        )
    store.close()
    print(
        f"{url.get_backend_name()}: {args.feeds} feeds / {args.hosts} hosts, {args.due} due:"
        f" claim median {statistics.median(walls):.1f} ms wall,"
        f" {statistics.median(cpus):.1f} ms CPU here,"
        f" {statistics.median(sizes):.0f} feeds claimed (limit {args.limit})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
