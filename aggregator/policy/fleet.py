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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aggregator.policy.politeness import HostPolicy

__all__ = ["Candidate", "ClaimPlan", "HostBudget", "host_of", "plan_claims"]


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


@dataclass(slots=True)
class ClaimPlan:
    """The feeds to lease, each with the time its request may start, and the
    hosts' new next-start times (only the hosts that changed)."""

    chosen: list[tuple[Candidate, datetime]] = field(default_factory=list)
    next_start: dict[str, datetime] = field(default_factory=dict)
    skipped_hosts: set[str] = field(default_factory=set)
    #: Spaced hosts this daemon holds after the plan, until when.
    held: dict[str, datetime] = field(default_factory=dict)


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
) -> ClaimPlan:
    """Take up to ``limit`` candidates, in their order, that their hosts allow.

    A candidate is taken when its host has a free concurrency slot (counting
    the leases already held and those taken in this plan) and its request
    can start within ``horizon`` of ``now``, spaced ``min_spacing`` after the
    host's previous start.  Taken feeds start at ``max(now, host's next
    start)``; the daemon waits until then, so the starts of one host's
    requests are at least ``min_spacing`` apart across the whole fleet.

    A spaced host held by another daemon (``holder`` not ``me``) is skipped
    while its hold lasts or any of its feeds is in flight; taken over, its
    first start is ``min_spacing`` from now (see the module docstring) plus
    ``settle``, the time the store spent between reading ``now`` and seeing
    nothing in flight (a request sent in between is then still covered).
    """
    plan = ClaimPlan()
    if limit <= 0:
        return plan
    in_flight: dict[str, int] = {}
    next_start: dict[str, datetime] = {}
    latest = now + settle + horizon  # settle: the time is now + settle already
    for candidate in candidates:
        host = candidate.host
        if host in plan.skipped_hosts:
            continue
        policy = policy_for(host)
        if host not in in_flight:
            budget = budgets.get(host, HostBudget())
            in_flight[host] = budget.in_flight
            previous = budget.next_start_at
            next_start[host] = now if previous is None or previous < now else previous
            if policy.min_spacing > 0 and budget.holder != me:
                held = budget.holder is not None and (
                    budget.held_until is not None and budget.held_until > now
                )
                if held or budget.in_flight > 0:
                    plan.skipped_hosts.add(host)  # another daemon's turn
                    continue
                if budget.holder is not None or budget.next_start_at is not None:
                    # Polled before, by another daemon: its last request
                    # started before its lease came back, so before now.
                    takeover = now + settle + timedelta(seconds=policy.min_spacing)
                    next_start[host] = max(next_start[host], takeover)
        start = next_start[host]
        if in_flight[host] >= policy.max_concurrency or start > latest:
            plan.skipped_hosts.add(host)  # its later feeds are no more allowed than this one
            continue
        plan.chosen.append((candidate, start))
        in_flight[host] += 1
        if policy.min_spacing > 0:
            next_start[host] = start + timedelta(seconds=policy.min_spacing)
            plan.next_start[host] = next_start[host]
            plan.held[host] = start + hold
        if len(plan.chosen) >= limit:
            break
    return plan
