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


@dataclass(slots=True)
class ClaimPlan:
    """The feeds to lease, each with the time its request may start, and the
    hosts' new next-start times (only the hosts that changed)."""

    chosen: list[tuple[Candidate, datetime]] = field(default_factory=list)
    next_start: dict[str, datetime] = field(default_factory=dict)
    skipped_hosts: set[str] = field(default_factory=set)


def plan_claims(
    candidates: Iterable[Candidate],
    budgets: Mapping[str, HostBudget],
    policy_for: Callable[[str], HostPolicy],
    *,
    now: datetime,
    limit: int,
    horizon: timedelta,
) -> ClaimPlan:
    """Take up to ``limit`` candidates, in their order, that their hosts allow.

    A candidate is taken when its host has a free concurrency slot (counting
    the leases already held and those taken in this plan) and its request
    can start within ``horizon`` of ``now``, spaced ``min_spacing`` after the
    host's previous start.  Taken feeds start at ``max(now, host's next
    start)``; the daemon waits until then, so the starts of one host's
    requests are at least ``min_spacing`` apart across the whole fleet.
    """
    plan = ClaimPlan()
    if limit <= 0:
        return plan
    in_flight: dict[str, int] = {}
    next_start: dict[str, datetime] = {}
    latest = now + horizon
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
        start = next_start[host]
        if in_flight[host] >= policy.max_concurrency or start > latest:
            plan.skipped_hosts.add(host)  # its later feeds are no more allowed than this one
            continue
        plan.chosen.append((candidate, start))
        in_flight[host] += 1
        if policy.min_spacing > 0:
            next_start[host] = start + timedelta(seconds=policy.min_spacing)
            plan.next_start[host] = next_start[host]
        if len(plan.chosen) >= limit:
            break
    return plan
