"""A fleet of daemons on one database (issue 17): the store's side.

Real databases (SQLite, and PostgreSQL when AGGREGATOR_TEST_POSTGRES_URL is
set), real rows; the processes-and-signals side is in test_fleet_procs.py.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config.feeds import FeedSpec
from aggregator.policy.fleet import (
    Candidate,
    ClaimPlan,
    FleetShare,
    HostBudget,
    host_of,
    plan_claims,
)
from aggregator.policy.politeness import HostPolicy
from aggregator.store import FeedUpdate, LeaseLost, Store
from aggregator.store.fleet import feed_summary

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def spec(i: int, **extra: object) -> FeedSpec:
    return FeedSpec(
        url=f"https://h{i % 3}.example/{i}.xml", outlet="O", section="S", group="G", **extra
    )  # type: ignore[arg-type]


def test_feed_summary_counts_states_and_the_oldest_success(store: Store) -> None:
    specs = [spec(i) for i in range(8)] + [spec(8, enabled=False)]
    ids = store.sync_feeds(specs, now=NOW - timedelta(hours=2), spread_new=False)
    url = [s.url for s in specs]
    ok = {"last_checked_at": NOW, "last_success_at": NOW - timedelta(minutes=5)}
    store.update_feed(ids[url[0]], FeedUpdate(**ok))
    store.update_feed(ids[url[1]], FeedUpdate(**ok))
    store.update_feed(
        ids[url[2]], FeedUpdate(last_checked_at=NOW, last_success_at=NOW - timedelta(hours=1))
    )
    store.update_feed(
        ids[url[3]], FeedUpdate(last_checked_at=NOW, error_streak=2, error_class="transient")
    )
    store.update_feed(
        ids[url[4]], FeedUpdate(last_checked_at=NOW, error_streak=1, error_class="throttled")
    )
    store.update_feed(ids[url[5]], FeedUpdate(last_checked_at=NOW, disabled_reason="gone (410)"))
    # 6 and 7 were never polled: "new", and the oldest (added two hours ago).
    summary = feed_summary(store, now=NOW)
    assert summary.by_state == {"ok": 3, "failing": 1, "throttled": 1, "disabled": 2, "new": 2}
    assert summary.active == 7
    assert summary.oldest_success_age == pytest.approx(7200)

    store.update_feed(ids[url[6]], FeedUpdate(**ok))
    store.update_feed(ids[url[7]], FeedUpdate(**ok))
    store.update_feed(ids[url[3]], FeedUpdate(last_success_at=NOW - timedelta(minutes=1)))
    store.update_feed(ids[url[4]], FeedUpdate(last_success_at=NOW - timedelta(minutes=1)))
    assert feed_summary(store, now=NOW).oldest_success_age == pytest.approx(3600)


def test_feed_summary_of_an_empty_table(store: Store) -> None:
    summary = feed_summary(store, now=NOW)
    assert (summary.due, summary.leased, summary.active) == (0, 0, 0)
    assert summary.by_state == {}
    assert summary.oldest_success_age is None


# --------------------------------------------------------------------------
# Fair, polite claims (policy.fleet, pure)

POLITE = HostPolicy(max_concurrency=2, min_spacing=1.0)


def cand(i: int, host: str, due_s: float = 0) -> Candidate:
    return Candidate(i, f"https://{host}/{i}", host, NOW - timedelta(seconds=100 - due_s))


def plan(
    candidates: list[Candidate],
    budgets: dict[str, HostBudget] | None = None,
    policy: HostPolicy = POLITE,
    *,
    limit: int = 10,
    me: str = "",
    share: FleetShare | None = None,
) -> ClaimPlan:
    """plan_claims at NOW with a 2-second horizon, one policy for every host."""
    return plan_claims(
        candidates,
        budgets or {},
        lambda h: policy,
        now=NOW,
        limit=limit,
        horizon=timedelta(seconds=2),
        me=me,
        share=share,
    )


def test_plan_skips_a_host_whose_budget_is_spent_and_takes_the_next_host() -> None:
    # 30 feeds of a slow, strict host are due first; two other hosts' feeds after them.
    candidates = [cand(i, "slow.example", i) for i in range(30)]
    candidates += [cand(100 + i, f"h{i % 2}.example", 50 + i) for i in range(6)]
    planned = plan(candidates, limit=16)
    chosen = [(c.feed_id, (at - NOW).total_seconds()) for c, at in planned.chosen]
    # The slow host: its two oldest feeds, one second apart; then the others.
    assert chosen[:2] == [(0, 0.0), (1, 1.0)]
    assert {fid for fid, _ in chosen[2:]} == {100, 101, 102, 103}
    assert planned.skipped_hosts == {"slow.example", "h0.example", "h1.example"}
    assert planned.next_start["slow.example"] == NOW + timedelta(seconds=2)


def test_plan_counts_what_the_fleet_already_holds() -> None:
    soon = NOW + timedelta(seconds=1.5)
    budgets = {
        "a.example": HostBudget(in_flight=2, holder="me"),  # both slots taken
        "b.example": HostBudget(next_start_at=NOW + timedelta(seconds=5), holder="me"),
        "c.example": HostBudget(in_flight=1, next_start_at=soon, holder="me"),
    }
    candidates = [cand(1, "a.example"), cand(2, "b.example"), cand(3, "c.example")]
    candidates += [cand(4, "c.example", 1)]
    planned = plan(candidates, budgets, me="me")
    assert [(c.feed_id, at) for c, at in planned.chosen] == [(3, soon)]
    assert planned.held == {"c.example": soon + timedelta(seconds=5)}


def test_a_spaced_host_is_polled_by_one_daemon_at_a_time() -> None:
    """Spacing is kept by the fetcher of the one daemon that holds the host."""
    later = NOW + timedelta(seconds=3)
    candidates = [cand(1, "held.example"), cand(2, "idle.example"), cand(3, "busy.example")]
    budgets = {
        # Another daemon's hold still runs: not ours, even with nothing in flight.
        "held.example": HostBudget(holder="other", held_until=later, next_start_at=NOW),
        # Its hold ran out and nothing is in flight: taken over, one spacing from now.
        "idle.example": HostBudget(holder="other", held_until=NOW, next_start_at=NOW),
        # Hold ran out but a request of the other daemon may still be running.
        "busy.example": HostBudget(in_flight=1, holder="other", held_until=NOW),
    }
    planned = plan(candidates, budgets, me="me")
    assert [(c.feed_id, at) for c, at in planned.chosen] == [(2, NOW + timedelta(seconds=1))]
    # Hosts without spacing are shared by every daemon, up to their concurrency.
    shared = HostPolicy(max_concurrency=8)
    planned = plan(candidates, budgets, shared, me="me")
    assert sorted(c.feed_id for c, _ in planned.chosen) == [1, 2, 3]


def test_a_daemon_takes_its_fair_share_of_spaced_hosts_while_others_want_some() -> None:
    candidates = [cand(i, f"h{i}.example", i) for i in range(6)]
    hold = NOW + timedelta(seconds=3)
    # Three live daemons, six hosts: two each.  Nobody holds any yet.
    fresh = FleetShare(hosts=6, holds={"me": 0, "b": 0, "c": 0})
    planned = plan(candidates, me="me", share=fresh)
    assert [c.feed_id for c, _ in planned.chosen] == [0, 1]
    # Holding four (a daemon that ran alone), it keeps two, in name order,
    # and lets the other two go while the others hold none.
    mine = {f"h{i}.example": HostBudget(holder="me", held_until=hold) for i in range(4)}
    planned = plan(candidates, mine, me="me", share=FleetShare(6, {"me": 4, "b": 0, "c": 0}))
    assert [c.feed_id for c, _ in planned.chosen] == [0, 1]
    # The others have their share: no host waits, this daemon takes the rest.
    planned = plan(candidates, mine, me="me", share=FleetShare(6, {"me": 4, "b": 2, "c": 2}))
    assert [c.feed_id for c, _ in planned.chosen] == [0, 1, 2, 3, 4, 5]
    # Hosts without spacing are shared, never counted.
    shared = HostPolicy(max_concurrency=8)
    planned = plan(candidates, policy=shared, me="me", share=fresh)
    assert len(planned.chosen) == 6


def test_plan_without_spacing_fills_the_concurrency_and_stops_at_the_limit() -> None:
    local = HostPolicy(max_concurrency=8)
    candidates = [cand(i, "127.0.0.1", i) for i in range(20)]
    planned = plan(candidates, policy=local, limit=5)
    assert [c.feed_id for c, _ in planned.chosen] == [0, 1, 2, 3, 4]
    assert all(at == NOW for _, at in planned.chosen)
    assert planned.next_start == {}


# --------------------------------------------------------------------------
# The store: claims, heartbeats, fencing (SQLite and PostgreSQL)

LEASE = timedelta(minutes=15)


def _due(store: Store, n: int, hosts: int) -> dict[str, int]:
    specs = [
        FeedSpec(url=f"https://h{i % hosts}.example/{i}.xml", outlet="O", section="S", group="G")
        for i in range(n)
    ]
    return store.sync_feeds(specs, now=NOW - timedelta(minutes=1), spread_new=False)


def test_claims_keep_each_hosts_budget_across_daemons(database_url: str) -> None:
    one, two = Store.open(database_url), Store.open(database_url)  # two daemons' stores
    try:
        _due(one, 40, hosts=4)
        polite = {"policy_for": lambda h: POLITE, "lease": LEASE}
        first = one.claim_fair(now=NOW, limit=3, owner="a:1", **polite)
        second = two.claim_fair(now=NOW, limit=16, owner="b:2", **polite)
        third = one.claim_fair(now=NOW, limit=16, owner="a:1", **polite)
        claims = first + second + third
        by_host: dict[str, list[tuple[str, datetime]]] = {}
        for who, taken in (("a", first), ("b", second), ("a", third)):
            for c in taken:
                by_host.setdefault(host_of(c.url), []).append((who, c.start_at))
        # "a" took three hosts first, so "b" got only the fourth: one daemon
        # per spaced host; two feeds per host in all (its concurrency), one
        # second apart, whichever daemon asked.
        assert {h: len(v) for h, v in by_host.items()} == {f"h{i}.example": 2 for i in range(4)}
        assert {host_of(c.url) for c in second} == {"h3.example"}
        for taken in by_host.values():
            assert len({who for who, _ in taken}) == 1
            assert sorted(at for _, at in taken) == [NOW, NOW + timedelta(seconds=1)]
        assert len({c.feed_id for c in claims}) == 8
        # Nothing more while those are in flight, even once their start time has passed.
        later = NOW + timedelta(seconds=10)
        assert not two.claim_fair(now=later, limit=16, owner="b:2", **polite)
        h0 = [c for c in claims if c.url.startswith("https://h0.")]
        holder = "a:1"
        one.update_feeds(
            [
                (
                    c.feed_id,
                    FeedUpdate(lease_owner=None, lease_until=None, next_check_at=later + LEASE),
                )
                for c in h0
            ]
        )
        # Its hold has run out and nothing is in flight: the other daemon may
        # take it over, a spacing after now.
        other = "b:2" if holder == "a:1" else "a:1"
        again = two.claim_fair(now=later, limit=16, owner=other, **polite)
        # One spacing after the takeover (plus the claim's own milliseconds),
        # then one spacing apart.
        assert {host_of(c.url) for c in again} == {"h0.example"}
        starts = sorted(c.start_at for c in again)
        assert later + timedelta(seconds=1) <= starts[0] < later + timedelta(seconds=2)
        assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(starts))
    finally:
        one.close()
        two.close()


def test_a_takeover_starts_a_spacing_after_the_claim_saw_the_host_free(
    database_url: str,
) -> None:
    """The clock a claim is handed may have been read a while before it ran
    (a daemon's claim waits for a worker thread while polls keep them busy):
    a host taken over from another daemon must still start a spacing after
    the moment its leases were seen back, not after the stale clock."""
    import time

    one, two = Store.open(database_url), Store.open(database_url)
    try:
        _due(one, 4, hosts=1)
        polite = {"policy_for": lambda h: POLITE, "lease": LEASE}
        first = one.claim_fair(now=NOW, limit=1, owner="a:1", **polite)
        assert len(first) == 1
        one.update_feeds([(first[0].feed_id, FeedUpdate(lease_owner=None, lease_until=None))])
        later = NOW + timedelta(seconds=10)  # a's hold has run out
        waited = 0.5  # the claim ran this long after its clock was read
        taken = two.claim_fair(
            now=later, limit=4, owner="b:2", read_at=time.monotonic() - waited, **polite
        )
        assert taken, "the host is free: b takes it over"
        assert min(c.start_at for c in taken) >= later + timedelta(seconds=1 + waited)
    finally:
        one.close()
        two.close()


def test_claims_share_the_spaced_hosts_among_live_daemons(database_url: str) -> None:
    stores = [Store.open(database_url) for _ in range(3)]
    try:
        _due(stores[0], 60, hosts=6)
        for i, store in enumerate(stores):
            store.register_daemon(f"d:{i}", host="d", pid=i, now=NOW)
        polite = {"policy_for": lambda h: POLITE, "lease": LEASE}
        hosts: list[set[str]] = []
        for i, store in enumerate(stores):
            taken = store.claim_fair(now=NOW, limit=32, owner=f"d:{i}", **polite)
            hosts.append({host_of(c.url) for c in taken})
        # The first claim does not take every host: two each.
        assert [len(h) for h in hosts] == [2, 2, 2]
        assert set().union(*hosts) == {f"h{i}.example" for i in range(6)}
    finally:
        for store in stores:
            store.close()


def test_one_hosts_claims_take_its_earliest_free_due_feeds_in_order(store: Store) -> None:
    """A daemon on one host (its local RSSHub): each claim takes the earliest
    due feeds not leased, up to the host's free slots, oldest first; feeds
    not yet due, leased or disabled are never taken."""
    ids = list(_due(store, 8, hosts=1).values())
    due = {fid: NOW - timedelta(seconds=100 - 10 * i) for i, fid in enumerate(ids)}
    due[ids[6]] = NOW + timedelta(minutes=5)  # not due yet
    store.update_feeds(
        [(fid, FeedUpdate(next_check_at=at)) for fid, at in due.items()]
        + [(ids[5], FeedUpdate(disabled_reason="gone"))]
    )
    three = HostPolicy(max_concurrency=3, min_spacing=0)
    claim = {"lease": LEASE, "owner": "me:1", "policy_for": lambda h: three}
    first = store.claim_fair(now=NOW, limit=8, **claim)
    assert [c.feed_id for c in first] == ids[:3]  # the host's three slots, oldest first
    assert not store.claim_fair(now=NOW, limit=8, **claim)  # all three in flight
    store.update_feeds(
        [(c.feed_id, FeedUpdate(lease_owner=None, lease_until=None)) for c in first[:2]]
    )
    second = store.claim_fair(now=NOW, limit=8, **claim)
    # Two slots free again; the first two are leasable again (still due) and come first.
    assert [c.feed_id for c in second] == ids[:2]
    store.update_feeds(
        [
            (c.feed_id, FeedUpdate(lease_owner=None, lease_until=None, next_check_at=NOW + LEASE))
            for c in [*second, first[2]]
        ]
    )
    rest = store.claim_fair(now=NOW, limit=8, **claim)
    assert [c.feed_id for c in rest] == [ids[3], ids[4], ids[7]]  # 5 disabled, 6 not due


def test_the_claim_returns_the_claimed_rows(store: Store) -> None:
    ids = _due(store, 3, hosts=3)
    taken = store.claim_fair(
        now=NOW, limit=8, lease=LEASE, owner="me:1", policy_for=lambda h: POLITE
    )
    assert {c.feed_id for c in taken} == set(ids.values())
    for claim in taken:
        assert claim.state == store.feed_state(claim.feed_id)


def test_a_stale_daemons_feeds_are_handed_out_and_its_late_poll_is_refused(
    database_url: str,
) -> None:
    dead, alive = Store.open(database_url), Store.open(database_url)
    try:
        ids = _due(dead, 3, hosts=3)
        dead.register_daemon("dead:1", host="dead", pid=1, now=NOW)
        alive.register_daemon("alive:2", host="alive", pid=2, now=NOW)
        local = HostPolicy(max_concurrency=8)
        held = dead.claim_fair(
            now=NOW, limit=8, lease=LEASE, owner="dead:1", policy_for=lambda h: local
        )
        assert len(held) == 3
        # "dead" stops beating; "alive" keeps on.  Before stale_after nothing happens.
        beat = NOW + timedelta(seconds=40)
        assert alive.heartbeat("alive:2", now=beat)
        assert alive.reap_daemons(now=beat, stale_after=timedelta(seconds=45)) == {}
        later = NOW + timedelta(seconds=50)
        assert alive.reap_daemons(now=later, stale_after=timedelta(seconds=45)) == {"dead:1": 3}
        assert [d for d, _, _ in alive.daemons()] == ["alive:2"]
        taken = alive.claim_fair(
            now=later, limit=8, lease=LEASE, owner="alive:2", policy_for=lambda h: local
        )
        assert {c.feed_id for c in taken} == set(ids.values())
        # The presumed-dead daemon was only slow: its poll finishes now.  The
        # store refuses both of its writes; the new owner's stand.
        first = held[0]
        with pytest.raises(LeaseLost):
            dead.ingest(
                first.feed_id,
                [],
                now=later,
                feed_update=FeedUpdate(last_status=200, lease_owner=None, fence=first.token),
            )
        dead.update_feeds([(held[1].feed_id, FeedUpdate(last_status=500, fence=held[1].token))])
        assert dead.feed_state(first.feed_id).last_status is None
        assert dead.feed_state(held[1].feed_id).last_status is None
        # Its own heartbeat now says so: register again.
        assert not dead.heartbeat("dead:1", now=later)
        # The new owner's writes go through.
        mine = {c.feed_id: c for c in taken}[first.feed_id]
        alive.ingest(
            first.feed_id,
            [],
            now=later,
            feed_update=FeedUpdate(last_status=304, lease_owner=None, fence=mine.token),
        )
        assert alive.feed_state(first.feed_id).last_status == 304
    finally:
        dead.close()
        alive.close()


def test_retire_gives_every_lease_back_at_once(store: Store) -> None:
    _due(store, 5, hosts=5)
    store.register_daemon("me:1", host="me", pid=1, now=NOW)
    local = HostPolicy(max_concurrency=8)
    held = store.claim_fair(now=NOW, limit=8, lease=LEASE, owner="me:1", policy_for=lambda h: local)
    assert len(held) == 5
    assert store.retire_daemon("me:1") == 5
    assert store.daemons() == []
    assert (
        len(
            store.claim_fair(
                now=NOW, limit=8, lease=LEASE, owner="you:2", policy_for=lambda h: local
            )
        )
        == 5
    )


def test_the_fleet_unit_gives_each_instance_its_port_and_room_to_drain() -> None:
    import configparser

    from aggregator.service.daemon import DaemonOptions

    unit = Path(__file__).resolve().parent.parent / "deploy" / "aggregator@.service"
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text(encoding="utf-8"))
    service = parser["Service"]
    assert "AGGREGATOR_HTTP=127.0.0.1:808%i" in service["Environment"]
    assert float(service["TimeoutStopSec"]) > DaemonOptions().grace
    assert service["EnvironmentFile"] == "/etc/aggregator/fleet.env"


def test_status_lists_the_fleet_when_there_is_one_or_a_daemon_is_stale(
    database_url: str, tmp_path: Path
) -> None:
    import json

    from support_proc import aggregator

    store = Store.open(database_url)
    try:
        now = datetime.now(UTC)
        _due(store, 4, hosts=2)
        store.register_daemon("alpha:11", host="alpha", pid=11, now=now)
        assert store.claim_fair(
            now=now, limit=8, lease=LEASE, owner="alpha:11", policy_for=lambda h: POLITE
        )
    finally:
        store.close()
    # One healthy daemon: no table, the "polling now" line says enough.
    out = aggregator("status", db=database_url, cwd=tmp_path).stdout
    assert "heartbeat" not in out
    # A second daemon, whose heartbeat went stale a minute ago.
    store = Store.open(database_url)
    try:
        store.register_daemon("beta:22", host="beta", pid=22, now=now - timedelta(minutes=1))
    finally:
        store.close()
    out = aggregator("status", db=database_url, cwd=tmp_path).stdout
    assert "heartbeat" in out and "alpha" in out and "beta" in out and "stale" in out
    fleet = json.loads(aggregator("status", "--json", db=database_url, cwd=tmp_path).stdout)[
        "fleet"
    ]
    by_host = {d["host"]: d for d in fleet}
    assert by_host["alpha"]["leases"] == 4 and not by_host["alpha"]["stale"]
    assert by_host["beta"]["leases"] == 0 and by_host["beta"]["stale"]
    assert by_host["beta"]["pid"] == 22 and by_host["beta"]["heartbeat_age_s"] >= 60


_PARSE_POOL_HOLDER = """
import os, sys, time
from aggregator.service.pipeline import ParseProcesses
pool = ParseProcesses(1)
print(pool.submit(os.getpid).result(timeout=120), flush=True)
time.sleep(600)
"""


def _children(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for task in Path(f"/proc/{stack.pop()}/task").glob("*/children"):
            for child in task.read_text().split():
                found.append(int(child))
                stack.append(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_the_parse_worker_dies_with_a_daemon_killed_with_sigkill(tmp_path: Path) -> None:
    """kill -9 runs no clean-up: the worker must notice by itself, and with
    it the fork server and resource tracker end (nothing left running)."""
    import os
    import signal
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", _PARSE_POOL_HOLDER],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        assert holder.stdout is not None
        worker = int(holder.stdout.readline())
        family = _children(holder.pid)
        assert worker in family
        holder.send_signal(signal.SIGKILL)
        holder.wait()

        def gone(pid: int) -> bool:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return True
            return stat.rpartition(")")[2].split()[0] == "Z"

        from support_proc import wait_for

        wait_for(lambda: all(map(gone, family)), 20, "the worker, fork server, tracker to end")
    finally:
        if holder.poll() is None:
            holder.kill()


def _feed_rows(store: Store) -> list[tuple[object, ...]]:
    from sqlalchemy import select

    from aggregator.store import models as m

    columns = (m.Feed.id, m.Feed.url, m.Feed.host, m.Feed.in_config, m.Feed.enabled)
    columns += (m.Feed.interval_seconds, m.Feed.next_check_at, m.Feed.lease_until)
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(m.Feed.id))]


def test_sync_in_batches_writes_what_one_batch_writes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sync_feeds diffs SYNC_BATCH feeds at a time (bounded memory): same rows, same ids."""
    from dataclasses import replace

    import aggregator.store.feeds as feeds_module

    first = [spec(i) for i in range(7)] + [replace(spec(3), outlet="twice")] + [spec(9)]
    hour = timedelta(hours=1)
    # Shorter intervals for some (due sooner), one gone, one back, two new, one changed.
    second = [spec(i, interval=timedelta(minutes=1)) for i in (0, 1, 2)]
    second += [replace(spec(4), section="S2"), spec(9), spec(10), spec(11), spec(5)]
    results = []
    for batch, url in ((2, database_url), (10_000, f"sqlite:///{tmp_path / 'one.db'}")):
        monkeypatch.setattr(feeds_module, "SYNC_BATCH", batch)
        store = Store.open(url)
        try:
            ids = store.sync_feeds(first, now=NOW, spread_new=False)
            again = store.sync_feeds(second, now=NOW + hour, spread_new=False)
            third = store.sync_feeds(first[:2], now=NOW + 2 * hour, spread_new=False)
            results.append((list(ids.items()), list(again.items()), third, _feed_rows(store)))
            hosts = store.engine.connect().exec_driver_sql("SELECT host FROM hosts").fetchall()
            assert sorted(h for (h,) in hosts) == ["h0.example", "h1.example", "h2.example"]
        finally:
            store.close()
    batched, whole = results
    assert batched[:3] == whole[:3]
    assert [r[1:] for r in batched[3]] == [r[1:] for r in whole[3]]
    in_config = {r[1]: r[3] for r in batched[3]}
    assert [u for u, listed in in_config.items() if listed] == [spec(0).url, spec(1).url]
