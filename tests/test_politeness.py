"""Per-host politeness (max_concurrency, min_spacing), asserted from the server's
request log, and the daemon keeping one RSSHub route's failure to that route."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from feedbuild import EtagFeed, rss_document
from localserver import LocalServer, RecordedRequest
from support_proc import AggregatorProcess, wait_for

from aggregator.config.feeds import ConfigError, loads_config
from aggregator.fetch.fetcher import (
    Fetcher,
    FetchLimits,
    HostPolicy,
    default_host_policy,
    is_local_host,
)

#: Spacing is booked when our request headers go out; the server logs when
#: its loop has parsed them.  On a loaded machine that thread can be scheduled
#: a few tens of ms late for one request and not the next.  (Booking at slot
#: time instead of at the send made gaps ~70 ms short: still caught.)
TOLERANCE = 0.04


def _gaps(requests: list[RecordedRequest]) -> list[float]:
    times = sorted(r.time for r in requests)
    return [b - a for a, b in itertools.pairwise(times)]


def _rsshub_feed(tag: str) -> str:
    return rss_document(
        f"<item><title>{tag}</title><link>https://news.example.com/{tag}</link>"
        f"<guid>{tag}</guid></item>",
        channel_extra="<generator>RSSHub</generator>",
    )


# --- defaults --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("10.1.2.3", True),
        ("192.168.0.10", True),
        ("rsshub", True),  # a Docker Compose service name
        ("rsshub.local", True),
        ("rsshub.app", False),
        ("www.reddit.com", False),
        ("openrss.org", False),
        ("8.8.8.8", False),
    ],
)
def test_local_hosts_are_told_apart_without_dns(host: str, local: bool) -> None:
    assert is_local_host(host) is local
    policy = default_host_policy(host)
    if local:
        assert policy == HostPolicy(max_concurrency=8, min_spacing=0.0)
    else:
        assert policy == HostPolicy(max_concurrency=2, min_spacing=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be a whole number >= 1, got 0"),
        ({"max_concurrency": 1, "min_spacing": -1.0}, "min_spacing must be >= 0 seconds"),
        ({"max_concurrency": 1, "min_spacing": float("inf")}, "min_spacing must be >= 0"),
    ],
)
def test_host_policy_refuses_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HostPolicy(**kwargs)  # type: ignore[arg-type]


def test_configured_policy_wins_and_hosts_ignore_case() -> None:
    limits = FetchLimits(host_policies={"www.reddit.com": HostPolicy(1, 2.0)})
    fetcher = Fetcher(limits)
    assert fetcher.policy_for("WWW.Reddit.com") == HostPolicy(1, 2.0)
    assert fetcher.policy_for("old.reddit.com") == default_host_policy("old.reddit.com")
    fetcher.set_host_policies({"old.reddit.com": HostPolicy(1, 5.0)})
    assert fetcher.policy_for("www.reddit.com") == default_host_policy("www.reddit.com")
    assert fetcher.policy_for("old.reddit.com") == HostPolicy(1, 5.0)


# --- feeds.yaml hosts: --------------------------------------------------------------


def test_hosts_section_merges_with_the_defaults() -> None:
    config = loads_config(
        "hosts:\n"
        "  WWW.Reddit.com: {min_spacing: 2s}\n"
        "  openrss.org: {max_concurrency: 1, min_spacing: 5s}\n"
        "  rsshub: {max_concurrency: 16}\n"
        "  rsshub.example.org: {min_spacing: 0}\n"
        "feeds: []\n"
    )
    assert dict(config.hosts) == {
        "www.reddit.com": HostPolicy(2, 2.0),
        "openrss.org": HostPolicy(1, 5.0),
        "rsshub": HostPolicy(16, 0.0),
        "rsshub.example.org": HostPolicy(2, 0.0),
    }
    assert config == loads_config(
        "hosts:\n"
        "  rsshub.example.org: {min_spacing: 0s}\n"
        "  rsshub: {max_concurrency: 16}\n"
        "  openrss.org: {min_spacing: 5s, max_concurrency: 1}\n"
        "  www.reddit.com: {min_spacing: 2}\n"
        "feeds: []\n"
    ), "a reload that only reorders hosts is not a change"


def test_hosts_section_errors_name_line_and_key() -> None:
    text = (
        "hosts:\n"
        "  https://www.reddit.com/: {min_spacing: 2s}\n"
        "  openrss.org:443: {min_spacing: 2s}\n"
        "  a.example: {max_concurrency: 0, min_spacing: soon, delay: 1s}\n"
        "  A.example: {}\n"
        "  b.example: 3\n"
        "feeds: []\n"
    )
    with pytest.raises(ConfigError) as caught:
        loads_config(text)
    assert caught.value.errors == [
        "feeds.yaml:2: hosts.https://www.reddit.com/: give the host name only, "
        "like www.reddit.com, not a URL ('https://www.reddit.com/')",
        "feeds.yaml:3: hosts.openrss.org:443: give the host name without a port "
        "('openrss.org:443'): requests are limited per host name, whatever the port",
        "feeds.yaml:4: hosts.a.example.max_concurrency: must be a whole number of requests, "
        "1 or more, got the number 0",
        "feeds.yaml:4: hosts.a.example.min_spacing: bad duration 'soon' "
        "(use 90s, 15m, 1h or a number of seconds)",
        "feeds.yaml:4: hosts.a.example.delay: unknown key; valid keys here: "
        "max_concurrency, min_spacing",
        "feeds.yaml:5: hosts.A.example: a.example is listed twice (host names ignore case); "
        "keep one",
        "feeds.yaml:6: hosts.b.example: must be a mapping like "
        "{max_concurrency: 1, min_spacing: 2s}, got the number 3",
    ]


# --- the fetcher, measured from the server ----------------------------------------------


async def test_spacing_holds_between_request_starts_and_spares_other_hosts(
    local_server: LocalServer,
) -> None:
    local_server.route("/feed", body=b"ok")
    limits = FetchLimits(host_policies={"127.0.0.1": HostPolicy(8, 0.5)})
    spaced = [local_server.url(f"/feed?n={n}") for n in range(5)]
    other = [local_server.url(f"/feed?other={n}", host="localhost") for n in range(5)]
    async with Fetcher(limits) as fetcher:
        await asyncio.gather(*(fetcher.fetch(url) for url in spaced + other))
    on_ip = [r for r in local_server.requests if r.headers["Host"].startswith("127.0.0.1")]
    on_name = [r for r in local_server.requests if r.headers["Host"].startswith("localhost")]
    assert len(on_ip) == len(on_name) == 5
    assert min(_gaps(on_ip)) >= 0.5 - TOLERANCE, _gaps(on_ip)
    # localhost (no spacing) was all asked for before 127.0.0.1's second turn came.
    first = min(r.time for r in on_ip + on_name)
    assert max(r.time for r in on_name) - first < 0.5


async def test_spacing_outlives_an_idle_moment(local_server: LocalServer) -> None:
    """A host that just went idle must not be asked again before its spacing is over."""
    local_server.route("/feed", body=b"ok")
    limits = FetchLimits(host_policies={"127.0.0.1": HostPolicy(1, 0.4)})
    async with Fetcher(limits) as fetcher:
        for _ in range(3):
            await fetcher.fetch(local_server.url("/feed"))
        assert not fetcher._hosts
    assert min(_gaps(local_server.requests)) >= 0.4 - TOLERANCE


async def test_every_redirect_hop_is_spaced(local_server: LocalServer) -> None:
    """Spacing lives in the fetcher, so hops (and full-text pages) obey it too."""
    local_server.route("/old", status=301, headers={"Location": "/new"})
    local_server.route("/new", body=b"ok")
    limits = FetchLimits(host_policies={"127.0.0.1": HostPolicy(4, 0.3)})
    async with Fetcher(limits) as fetcher:
        assert (await fetcher.fetch(local_server.url("/old"))).content == b"ok"
    assert [r.path for r in local_server.requests] == ["/old", "/new"]
    assert _gaps(local_server.requests)[0] >= 0.3 - TOLERANCE


@pytest.mark.parametrize(("configured", "peak"), [(1, 1), (3, 3), (None, 6)])
async def test_host_concurrency_follows_the_policy(
    local_server: LocalServer, configured: int | None, peak: int
) -> None:
    local_server.route("/slow", body=b"ok", delay=0.2)
    policies = {} if configured is None else {"127.0.0.1": HostPolicy(configured)}
    async with Fetcher(FetchLimits(host_policies=policies)) as fetcher:
        await asyncio.gather(*(fetcher.fetch(local_server.url(f"/slow?{n}")) for n in range(6)))
    # unconfigured 127.0.0.1 is local: up to 8 at once, so all 6 run together
    assert local_server.peak_in_flight == peak


# --- end to end -----------------------------------------------------------------------


def _yaml(server: LocalServer, feeds: list[tuple[str, str]], *, interval: str, hosts: str) -> str:
    """feeds.yaml for (``url`` or ``rsshub``, path) pairs on ``server``."""
    lines = [hosts, "defaults:", "  group: 新媒体", f"  interval: {interval}"]
    lines += [f"  rsshub_base: {server.url('/')}", "feeds:"]
    for n, (key, path) in enumerate(feeds):
        lines += [f"  - {key}: {server.url(path) if key == 'url' else path}"]
        lines += [f"    outlet: Outlet {n}", "    section: 头条"]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_fetch_command_spaces_five_feeds_on_one_host(
    tmp_path: Path, local_server: LocalServer
) -> None:
    for n in range(5):
        local_server.route(f"/f{n}.xml", EtagFeed(_rsshub_feed(f"f{n}")))
    config = tmp_path / "feeds.yaml"
    feeds = [("url", f"/f{n}.xml") for n in range(5)]
    hosts = "hosts:\n  127.0.0.1: {min_spacing: 0.5s}"
    config.write_text(_yaml(local_server, feeds, interval="15m", hosts=hosts), encoding="utf-8")
    with AggregatorProcess(
        "fetch", "--config", str(config), db=f"sqlite:///{tmp_path / 'a.db'}", cwd=tmp_path
    ) as run:
        assert run.proc is not None
        assert run.proc.wait(60) == 0, run.log
    assert len(local_server.requests) == 5
    assert min(_gaps(local_server.requests)) >= 0.5 - TOLERANCE, _gaps(local_server.requests)


@pytest.mark.slow
def test_daemon_keeps_polling_healthy_route_while_a_sibling_route_fails(
    tmp_path: Path, local_server: LocalServer
) -> None:
    """FreshRSS #7870/#7880: one failing route froze the whole RSSHub instance.

    Here /broken answers 503 on every poll (an ordinary error: exponential
    back-off of that route only) while /healthy, on the same spaced host,
    must keep its 2 s schedule for the whole run.

    Asserted from the daemon's poll history, not from a fixed sleep and the
    gaps between requests: those add the claim tick (a due poll waits for the
    next second's claim, so the gaps come out at ~3.0 s) to whatever a loaded
    machine adds, and 0.5 s late once was a failure.
    """
    local_server.route("/healthy", EtagFeed(_rsshub_feed("healthy")))
    local_server.route("/broken", status=503, body="route crashed")
    config = tmp_path / "feeds.yaml"
    feeds = [("rsshub", "/healthy"), ("rsshub", "/broken")]
    hosts = "hosts:\n  127.0.0.1: {max_concurrency: 1, min_spacing: 0.5s}"
    config.write_text(_yaml(local_server, feeds, interval="2s", hosts=hosts), encoding="utf-8")
    db = tmp_path / "a.db"

    def polls(path: str) -> list[tuple[datetime, datetime, int, str | None, str]]:
        """(started, next due, duration ms, error class, schedule) of the route's recorded polls."""
        if not db.exists():
            return []
        with contextlib.closing(sqlite3.connect(db)) as conn:
            try:
                rows = conn.execute(
                    "select p.started_at, p.next_check_at, p.duration_ms, p.error_class,"
                    " p.schedule from polls p join feeds f on f.id = p.feed_id"
                    " where f.url = ? order by p.started_at",
                    (local_server.url(path),),
                ).fetchall()
            except sqlite3.OperationalError:  # no tables yet
                return []
        return [
            (datetime.fromisoformat(a), datetime.fromisoformat(b), ms, error, schedule)
            for a, b, ms, error, schedule in rows
        ]

    def healthy_after_failure() -> int:
        broken = polls("/broken")
        return len([p for p in polls("/healthy") if broken and p[0] > broken[0][0]])

    with AggregatorProcess("run", "--config", str(config), db=f"sqlite:///{db}", cwd=tmp_path) as d:
        # Four polls of the healthy route after its sibling failed: about 12 s.
        # Were the host frozen by the failure, they would come only after the
        # sibling's back-off (30 s or more), and the lateness below says so.
        wait_for(
            lambda: healthy_after_failure() >= 4,
            90,
            "four polls of the healthy route after the sibling failed",
            step=0.3,
        )
        assert d.stop()[0] == 0, d.log
    healthy = polls("/healthy")
    broken = polls("/broken")
    # The failing route backs off on its own (first quick retry after ~30 s).
    assert len(broken) >= 1
    for started, due, ms, error, schedule in healthy:
        # Each good poll booked the next one on the interval (2 s + up to 5 %
        # jitter, counted from the response): the sibling lengthened nothing.
        assert (error, schedule) == (None, "interval 2 s"), healthy
        assert due - started <= timedelta(seconds=2.1, milliseconds=ms), healthy
    for (_, due, _, _, _), (started, _, _, _, _) in itertools.pairwise(healthy):
        late = (started - due).total_seconds()
        # Never before it is due; after it, within the 1 s claim tick, plus
        # up to two more for a claim that runs late on a loaded machine.
        assert 0 <= late < 3.0, [(p[0].time(), p[1].time()) for p in healthy]
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute("select url, error_streak from feeds").fetchall())
    assert rows[local_server.url("/healthy")] == 0
    assert rows[local_server.url("/broken")] >= 1
