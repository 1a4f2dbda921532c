"""The HTTP side: real requests against /healthz and /metrics on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.service.metrics import Metrics
from aggregator.service.server import (
    BindError,
    HttpServer,
    format_bind,
    parse_bind,
    start_http_server,
)

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class FakeReport:
    """Shaped like the pipeline's FeedReport (frozen, to check the Protocol)."""

    url: str
    status: int | None = 200
    new: int = 0
    duplicate: int = 0
    updated: int = 0
    unchanged: int = 0
    wire_bytes: int = 0
    elapsed_ms: int = 0
    error: str | None = None
    error_class: str | None = None
    dates_replaced: int = 0
    date_notes: dict[str, int] = field(default_factory=dict)
    outlet: str = "Outlet"
    section: str = "新闻"

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass
class Health:
    """A health check the tests can flip."""

    healthy: bool = True
    reason: str = ""
    calls: int = field(default=0)

    async def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        return self.healthy, self.reason


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics() -> Metrics:
    # The per-feed series is an opt-in (aggregator run --metrics-per-feed);
    # these tests read it, the default is tested below without it.
    return Metrics(clock=lambda: NOW, per_feed=True)


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
async def server(metrics: Metrics, health: Health) -> AsyncIterator[HttpServer]:
    srv = await start_http_server("127.0.0.1:0", metrics=metrics, health=health)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{server.address}", timeout=10) as c:
        yield c


# --------------------------------------------------------------------------
# /healthz


async def test_healthz_follows_the_health_check(client: httpx.AsyncClient, health: Health) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"

    health.healthy, health.reason = False, "database unreachable"
    r = await client.get("/healthz")
    assert (r.status_code, r.text) == (503, "unhealthy: database unreachable\n")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"

    health.healthy = True
    assert (await client.get("/healthz")).status_code == 200
    assert health.calls == 3  # asked every time, never cached


async def test_healthz_answers_head(client: httpx.AsyncClient, health: Health) -> None:
    r = await client.head("/healthz")
    assert (r.status_code, r.content) == (200, b"")
    health.healthy = False
    assert (await client.head("/healthz")).status_code == 503


async def test_a_hanging_health_check_is_unhealthy_within_the_timeout(metrics: Metrics) -> None:
    never = asyncio.Event()

    async def hangs() -> tuple[bool, str]:
        await never.wait()
        return True, ""

    async with (
        HttpServer("127.0.0.1", 0, metrics=metrics, health=hangs, health_timeout=0.2) as srv,
        httpx.AsyncClient(base_url=f"http://{srv.address}", timeout=10) as c,
    ):
        start = time.monotonic()
        r = await c.get("/healthz")
        elapsed = time.monotonic() - start
    assert r.status_code == 503
    assert r.text == "unhealthy: health check did not answer within 0.2 s\n"
    assert 0.2 <= elapsed < 2


async def test_a_failing_health_check_is_unhealthy_not_a_500(metrics: Metrics) -> None:
    async def raises() -> tuple[bool, str]:
        raise ConnectionRefusedError("db\nis down")

    async with (
        HttpServer("127.0.0.1", 0, metrics=metrics, health=raises) as srv,
        httpx.AsyncClient(base_url=f"http://{srv.address}") as c,
    ):
        r = await c.get("/healthz")
    assert (r.status_code, r.text) == (
        503,
        "unhealthy: health check failed: ConnectionRefusedError: db is down\n",
    )


async def test_the_reason_is_one_line(client: httpx.AsyncClient, health: Health) -> None:
    health.healthy, health.reason = False, "stale:\n  last fetch 2 h ago\r\n"
    assert (await client.get("/healthz")).text == "unhealthy: stale: last fetch 2 h ago\n"
    health.reason = ""
    assert (await client.get("/healthz")).text == "unhealthy: no reason given\n"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 404), ("GET", "/health", 404), ("GET", "/metrics/x", 404), ("POST", "/x", 404)],
)
async def test_anything_else_is_404(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    assert (await client.request(method, path)).status_code == status


def _ours(record: logging.LogRecord) -> bool:
    """Whether a log record comes from the server side (ours or aiohttp's)."""
    return record.name.startswith(("aggregator", "aiohttp"))


async def test_requests_are_not_logged_at_info(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(3):
        await client.get("/metrics")
        await client.get("/healthz")
    # Only the server's own loggers count: httpx is the client, and asyncio may
    # report a task an earlier test's event loop left behind when the garbage
    # collector happens to run during this one.
    assert [r for r in caplog.records if _ours(r)] == []

    # aiohttp decides per connection whether to log, hence a new client.
    caplog.set_level(logging.DEBUG, logger="aggregator.service.server")
    async with httpx.AsyncClient(base_url=client.base_url) as fresh:
        await fresh.get("/metrics")
    for _ in range(100):  # the server logs just after sending; give it a moment
        if any(r.name == "aggregator.service.server" for r in caplog.records):
            break
        await asyncio.sleep(0.01)
    assert [r.getMessage().split(" in ")[0] for r in caplog.records if _ours(r)] == [
        "GET /metrics -> 200"
    ]


async def test_health_changes_are_logged_once(
    client: httpx.AsyncClient, health: Health, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aggregator.service.server")
    await client.get("/healthz")
    health.healthy, health.reason = False, "stuck"
    for _ in range(3):
        await client.get("/healthz")
    health.healthy = True
    await client.get("/healthz")
    assert [(r.levelname, r.getMessage()) for r in caplog.records if _ours(r)] == [
        ("WARNING", "health: unhealthy: stuck"),
        ("INFO", "health: ok"),
    ]


# --------------------------------------------------------------------------
# /metrics


async def test_metrics_count_what_was_observed(client: httpx.AsyncClient, metrics: Metrics) -> None:
    ok = "https://a.example/feed.xml"
    same = "https://b.example/rss"
    down = "https://c.example/atom"
    busy = "https://d.example/feed"
    metrics.observe(
        FakeReport(ok, 200, new=3, duplicate=2, updated=1, wire_bytes=1500, elapsed_ms=120)
    )
    metrics.observe(FakeReport(same, 304, unchanged=7, wire_bytes=200, elapsed_ms=15))
    metrics.observe(
        FakeReport(down, None, elapsed_ms=5000, error="timed out", error_class="transient")
    )
    metrics.observe(
        FakeReport(busy, 429, wire_bytes=300, elapsed_ms=40, error="429", error_class="throttled")
    )
    metrics.set_feed_counts(due=4, leased=2, active=30)

    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    found = samples(r.text)

    fetches = "aggregator_fetches_total"
    assert value(found, fetches, outcome="ok") == 1
    assert value(found, fetches, outcome="not_modified") == 1
    assert value(found, fetches, outcome="transient") == 1
    assert value(found, fetches, outcome="throttled") == 1
    assert value(found, fetches, outcome="permanent") == 0  # present from the start

    assert value(found, "aggregator_posts_total", kind="new") == 3
    assert value(found, "aggregator_posts_total", kind="duplicate") == 2
    assert value(found, "aggregator_posts_total", kind="updated") == 1
    assert value(found, "aggregator_fetched_bytes_total") == 2000

    assert value(found, "aggregator_fetch_duration_seconds_count") == 4
    assert value(found, "aggregator_fetch_duration_seconds_sum") == pytest.approx(5.175)
    assert value(found, "aggregator_fetch_duration_seconds_bucket", le="0.01") == 0
    assert value(found, "aggregator_fetch_duration_seconds_bucket", le="0.025") == 1
    assert value(found, "aggregator_fetch_duration_seconds_bucket", le="0.25") == 3
    assert value(found, "aggregator_fetch_duration_seconds_bucket", le="5.0") == 4
    assert value(found, "aggregator_fetch_duration_seconds_bucket", le="60.0") == 4

    assert value(found, "aggregator_feeds_due") == 4
    assert value(found, "aggregator_feeds_leased") == 2
    assert value(found, "aggregator_feeds_active") == 30

    last = "aggregator_last_success_timestamp_seconds"
    assert value(found, last, feed=ok) == NOW
    assert value(found, last, feed=same) == NOW
    assert (last, frozenset({("feed", down)})) not in found
    assert (last, frozenset({("feed", busy)})) not in found

    errors = "aggregator_feed_errors_total"
    assert value(found, errors, error_class="transient") == 1
    assert value(found, errors, error_class="throttled") == 1
    assert value(found, errors, error_class="gone") == 0


def test_unknown_error_classes_share_one_label(metrics: Metrics) -> None:
    for weird in ("boom", "x" * 50, None):
        metrics.observe(FakeReport("https://a.example/", None, error="?", error_class=weird))
    found = samples(metrics.render()[0].decode())
    assert value(found, "aggregator_fetches_total", outcome="other") == 3
    assert value(found, "aggregator_feed_errors_total", error_class="other") == 3
    outcomes = {
        dict(labels)["outcome"] for name, labels in found if name.startswith("aggregator_fetches")
    }
    assert "boom" not in outcomes


def test_forget_feed_drops_its_series(metrics: Metrics) -> None:
    metrics.observe(FakeReport("https://gone.example/"))
    metrics.forget_feed("https://gone.example/")
    metrics.forget_feed("https://never.example/")
    assert b"gone.example" not in metrics.render()[0]


def test_no_per_feed_series_by_default() -> None:
    """30,000 feeds must not be 30,000 series: the default has no feed label."""
    metrics = Metrics(clock=lambda: NOW)
    for i in range(50):
        metrics.observe(FakeReport(f"https://h{i}.example/feed", 200, new=1))
    metrics.forget_feed("https://h1.example/feed")  # harmless without the series
    text = metrics.render()[0].decode()
    assert "example" not in text
    assert "aggregator_last_success_timestamp_seconds" not in text
    assert all("feed" not in labels for family in text_string_to_metric_families(text)
               for labels in (s.labels for s in family.samples))
    assert value(samples(text), "aggregator_fetches_total", outcome="ok") == 50


def test_feed_states_and_oldest_success_are_bounded_gauges() -> None:
    metrics = Metrics()
    found = samples(metrics.render()[0].decode())
    by_state = "aggregator_feeds_by_state"
    # Present at zero from the first scrape, for alerts.
    for state in ("ok", "new", "failing", "throttled", "disabled"):
        assert value(found, by_state, state=state) == 0
    assert value(found, "aggregator_oldest_success_age_seconds") == 0

    metrics.set_feed_states(
        {"ok": 29_000, "failing": 12, "throttled": 3, "disabled": 5, "bogus": 7},
        oldest_success_age=612.5,
    )
    found = samples(metrics.render()[0].decode())
    assert value(found, by_state, state="ok") == 29_000
    assert value(found, by_state, state="failing") == 12
    assert value(found, by_state, state="throttled") == 3
    assert value(found, by_state, state="disabled") == 5
    assert value(found, by_state, state="new") == 0
    assert (by_state, frozenset({("state", "bogus")})) not in found
    assert value(found, "aggregator_oldest_success_age_seconds") == 612.5


def test_metrics_instances_do_not_share_state() -> None:
    one, two = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    assert one.registry is not two.registry
    one.observe(FakeReport("https://a.example/", new=5, wire_bytes=10))
    one.set_feed_counts(due=1, leased=1, active=1)
    found = samples(two.render()[0].decode())
    assert value(found, "aggregator_posts_total", kind="new") == 0
    assert value(found, "aggregator_fetched_bytes_total") == 0
    assert value(found, "aggregator_feeds_active") == 0
    assert value(samples(one.render()[0].decode()), "aggregator_posts_total", kind="new") == 5


def test_the_global_registry_is_left_alone() -> None:
    registry = prometheus_client.CollectorRegistry()
    assert Metrics(registry).registry is registry
    names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("aggregator_") for name in names)


# --------------------------------------------------------------------------
# Addresses and listening


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        (":8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:8080", ("::", 8080)),
        ("localhost:8080", ("localhost", 8080)),
        (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_parse_bind(text: str, expected: tuple[str, int]) -> None:
    assert parse_bind(text) == expected
    assert parse_bind(format_bind(*expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty listen address"),
        ("127.0.0.1", "missing port"),
        ("127.0.0.1:", "missing port"),
        (":", "missing port"),
        ("8080", "missing port"),
        ("127.0.0.1:http", "port 'http' is not a number from 0 to 65535"),
        ("127.0.0.1:65536", "port '65536' is not a number from 0 to 65535"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:８０", "is not a number"),
        ("::1:8080", "put an IPv6 address in brackets"),
        ("[::1]", "missing port after ']'"),
        ("[::1:8080", "missing ']'"),
        ("[127.0.0.1]:8080", "'127.0.0.1' is not an IPv6 address"),
        ("999.0.0.1:8080", "'999.0.0.1' is not an IPv4 address"),
        ("my host:8080", "'my host' is not a host name or address"),
    ],
)
def test_parse_bind_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bind(text)
    assert message in str(info.value)
    if text:
        assert repr(text) in str(info.value)  # the operator sees what they typed


async def test_port_in_use_is_a_clear_error(server: HttpServer, metrics: Metrics) -> None:
    taken = server.address
    with pytest.raises(BindError) as info:
        await start_http_server(taken, metrics=metrics, health=Health())
    assert str(info.value) == f"cannot listen on {taken}: address in use"
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.address == taken


async def test_listens_on_loopback_by_default(metrics: Metrics) -> None:
    srv = await start_http_server(":0", metrics=metrics, health=Health())
    try:
        assert srv.host == "127.0.0.1"
        assert srv.port > 0
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{srv.port}/healthz")).status_code == 200
    finally:
        await srv.stop()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6(metrics: Metrics) -> None:
    async with (
        HttpServer(*parse_bind("[::1]:0"), metrics=metrics, health=Health()) as srv,
        httpx.AsyncClient() as c,
    ):
        assert srv.address == f"[::1]:{srv.port}"
        assert (await c.get(f"http://{srv.address}/healthz")).status_code == 200


async def test_stop_releases_the_port_and_is_idempotent(metrics: Metrics) -> None:
    srv = HttpServer("127.0.0.1", 0, metrics=metrics, health=Health())
    with pytest.raises(RuntimeError, match="not started"):
        _ = srv.port
    await srv.start()
    port = srv.port
    with pytest.raises(RuntimeError, match="already started"):
        await srv.start()
    await srv.stop()
    await srv.stop()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.get(f"http://127.0.0.1:{port}/healthz")
    again = await start_http_server(f"127.0.0.1:{port}", metrics=metrics, health=Health())
    await again.stop()
