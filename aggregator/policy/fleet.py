"""Fair, polite claiming across a fleet of daemons: which due feeds to take now.

Pure policy, no I/O.  The store hands over the due feeds in due order and,
per host, how many of its feeds are leased right now (by any daemon) and
when the fleet may next start a request to it; :func:`plan_claims` picks the
feeds to lease and the time each may start, and says when each host is free
next.  The store writes the result back in the same transaction
(``aggregator.store.fleet``), so the budget holds for every daemon on the
database, not just inside one process.

Why this shape: with claims in plain due order, 30 feeds of one host spaced
2 s apart, due at once, hold 30 polling slots for a minute while other hosts
wait (issue 17).  Here a host whose concurrency is spent, or whose next
start lies beyond the horizon, is skipped and the next due feed of another
host is taken instead: one slow or strict host never starves the others,
and the oldest due feed of every host still goes first.

Spacing is exact only where requests are actually sent: one process's
fetcher spaces the *starts* of its requests to a host (fetch.fetcher).  Times
booked in the database cannot be, since a daemon that wakes up 50 ms late
puts its request 50 ms closer to the next daemon's.  So a host with a
``min_spacing`` is polled by one daemon at a time: the daemon that claims
its feeds holds the host for ``hold`` after its last claim, and another
daemon takes it over only once that has passed *and* none of its feeds is
in flight, starting ``min_spacing`` after the takeover (every request of the
last holder started before its lease was given back).  Hosts without
spacing (a local RSSHub) are shared by all daemons, up to their concurrency.

The takeover's "now" must be a time after the store saw nothing in flight:
a clock read before the claim waited for a worker thread (or the database)
is too early by that wait, and the first request of the new holder would
then follow the last one of the old holder by less than the spacing.  The
store passes ``settle``, the time between its ``now`` and that moment.

Spaced hosts are shared out, not grabbed: a daemon holds at most its fair
share of them, ``ceil(hosts / live daemons)`` (:class:`FleetShare`), while
another live daemon holds fewer than that; beyond its share it neither takes
a new host nor renews one it holds, so the hosts it lets go pass to the
daemons below their share.  With every daemon at its share (or none alive
but this one), a free host goes to whoever asks: no host waits for a
daemon that cannot take it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aggregator.policy.politeness import HostPolicy

__all__ = [
    "STALE_AFTER",
    "Candidate",
    "ClaimPlan",
    "FleetShare",
    "HostBudget",
    "HostTurn",
    "host_of",
    "host_turns",
    "plan_claims",
]


#: A daemon whose heartbeat is older than this is presumed dead: its leases
#: are handed out (service.daemon) and ``aggregator status`` calls it stale.
STALE_AFTER = timedelta(seconds=45)


def host_of(url: str) -> str:
    """The host a URL's requests go to, lowercase ('' when it has none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A due feed, as the store found it."""

    feed_id: int
    url: str
    host: str
    due_at: datetime


@dataclass(frozen=True, slots=True)
class HostBudget:
    """What the fleet is doing with one host right now."""

    in_flight: int = 0  # its feeds leased by any daemon
    next_start_at: datetime | None = None  # the earliest the next request may start
    holder: str | None = None  # the daemon polling this spaced host
    held_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class FleetShare:
    """The fleet as a claim sees it: live daemons and the hosts each holds."""

    hosts: int  # hosts in the table (spaced or not: a share too large errs safe)
    holds: Mapping[str, int]  # live daemon -> spaced hosts it holds now (0 included)

    def share(self, me: str) -> int:
        """The most spaced hosts one daemon should hold while others want some."""
        daemons = len(self.holds) + (me not in self.holds)
        return max(1, math.ceil(self.hosts / daemons))

    def others_want(self, me: str) -> bool:
        """Whether another live daemon holds fewer hosts than its share."""
        share = self.share(me)
        return any(n < share for owner, n in self.holds.items() if owner != me)


@dataclass(frozen=True, slots=True)
class HostTurn:
    """A host this claim may send to: from when, and how many requests."""

    start: datetime
    slots: int


@dataclass(slots=True)
class ClaimPlan:
    """The feeds to lease, each with the time its request may start, and the
    hosts' new next-start times (only the hosts that changed)."""

    chosen: list[tuple[Candidate, datetime]] = field(default_factory=list)
    next_start: dict[str, datetime] = field(default_factory=dict)
    skipped_hosts: set[str] = field(default_factory=set)
    #: Spaced hosts this daemon holds after the plan, until when.
    held: dict[str, datetime] = field(default_factory=dict)


def _is_mine(budget: HostBudget, me: str) -> bool:
    return budget.holder is not None and budget.holder == me


@dataclass(frozen=True, slots=True)
class _Shares:
    """This claim's view of the fair share: the hosts it may keep, and whether
    it may take more."""

    kept: frozenset[str]  # spaced hosts held now, within the share
    shed: frozenset[str]  # spaced hosts held now, beyond it: not renewed
    room: int | None  # new spaced hosts it may take (None: any number)

    @classmethod
    def of(
        cls,
        budgets: Mapping[str, HostBudget],
        *,
        now: datetime,
        me: str,
        share: FleetShare | None,
    ) -> _Shares:
        held = sorted(
            h
            for h, b in budgets.items()
            if _is_mine(b, me) and b.held_until is not None and b.held_until > now
        )
        if share is None or not share.others_want(me):
            return cls(frozenset(held), frozenset(), None)
        fair = share.share(me)
        return cls(frozenset(held[:fair]), frozenset(held[fair:]), max(0, fair - len(held)))


def host_turns(
    budgets: Mapping[str, HostBudget],
    policy_for: Callable[[str], HostPolicy],
    *,
    now: datetime,
    limit: int,
    horizon: timedelta,
    me: str = "",
    settle: timedelta = timedelta(0),
    share: FleetShare | None = None,
) -> dict[str, HostTurn]:
    """Which hosts this claim may send to, from when and how many requests.

    A host is left out when its concurrency is spent, its next start lies
    beyond ``horizon``, another daemon holds it (spaced hosts: while the
    hold lasts or any of its feeds is in flight), or this daemon holds more
    than its fair share and another daemon wants hosts (``share``; the
    hosts beyond the share, in name order, are let go).  The store reads at
    most ``slots`` due feeds of each host it gets back.
    """
    turns: dict[str, HostTurn] = {}
    if limit <= 0:
        return turns
    latest = now + settle + horizon  # settle: the time is now + settle already
    shed = _Shares.of(budgets, now=now, me=me, share=share).shed
    for host, budget in budgets.items():
        policy = policy_for(host)
        slots = policy.max_concurrency - budget.in_flight
        if slots <= 0:
            continue
        previous = budget.next_start_at
        start = now if previous is None or previous < now else previous
        if policy.min_spacing > 0:
            if host in shed:
                continue
            if not _is_mine(budget, me):
                lasting = budget.held_until is not None and budget.held_until > now
                if (budget.holder is not None and lasting) or budget.in_flight > 0:
                    continue  # another daemon's turn
                if budget.holder is not None or budget.next_start_at is not None:
                    # Polled before, by another daemon: its last request
                    # started before its lease came back, so before now + settle.
                    start = max(start, now + settle + timedelta(seconds=policy.min_spacing))
            if start > latest:
                continue
            fits = int((latest - start) / timedelta(seconds=policy.min_spacing)) + 1
            slots = min(slots, fits)
        elif start > latest:
            continue
        turns[host] = HostTurn(start, min(slots, limit))
    return turns


def plan_claims(
    candidates: Iterable[Candidate],
    budgets: Mapping[str, HostBudget],
    policy_for: Callable[[str], HostPolicy],
    *,
    now: datetime,
    limit: int,
    horizon: timedelta,
    me: str = "",
    hold: timedelta = timedelta(seconds=5),
    settle: timedelta = timedelta(0),
    share: FleetShare | None = None,
    turns: Mapping[str, HostTurn] | None = None,
) -> ClaimPlan:
    """Take up to ``limit`` candidates, in their order, that their hosts allow.

    A candidate is taken when :func:`host_turns` gives its host a turn with
    a free slot left (counting the leases already held and those taken in
    this plan) and, with ``share``, taking it keeps this daemon within its
    fair share of spaced hosts while others want some.  Taken feeds start
    at the host's turn, each next one of a spaced host ``min_spacing``
    later; the daemon waits until then, so the starts of one host's
    requests are at least ``min_spacing`` apart across the whole fleet.
    ``turns`` are the ones the store already computed (under the hosts' row
    locks); else they are computed here.
    """
    plan = ClaimPlan()
    if limit <= 0:
        return plan
    candidates = list(candidates)
    if turns is None:
        # A host the store has no row for yet: nobody holds it, nothing in flight.
        missing = {c.host for c in candidates} - budgets.keys()
        if missing:
            budgets = {**budgets, **dict.fromkeys(missing, HostBudget())}
        turns = host_turns(
            budgets,
            policy_for,
            now=now,
            limit=limit,
            horizon=horizon,
            me=me,
            settle=settle,
            share=share,
        )
    shares = _Shares.of(budgets, now=now, me=me, share=share)
    room = shares.room
    left: dict[str, int] = {}
    next_start: dict[str, datetime] = {}
    for candidate in candidates:
        host = candidate.host
        if host in plan.skipped_hosts:
            continue
        if host not in left:
            turn = turns.get(host)
            if turn is None:
                plan.skipped_hosts.add(host)
                continue
            if room is not None and host not in shares.kept and policy_for(host).min_spacing > 0:
                if room <= 0:
                    plan.skipped_hosts.add(host)  # our share is full: another daemon's host
                    continue
                room -= 1
            left[host] = turn.slots
            next_start[host] = turn.start
        if left[host] <= 0:
            plan.skipped_hosts.add(host)  # its later feeds are no more allowed than this one
            continue
        start = next_start[host]
        plan.chosen.append((candidate, start))
        left[host] -= 1
        spacing = policy_for(host).min_spacing
        if spacing > 0:
            next_start[host] = start + timedelta(seconds=spacing)
            plan.next_start[host] = next_start[host]
            plan.held[host] = start + hold
        if len(plan.chosen) >= limit:
            break
    return plan
