"""Tests for aggregator.fetch.fetcher, against real sockets on 127.0.0.1 (see localserver.py)."""

from __future__ import annotations

import asyncio
import itertools
import pickle
import socket
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import brotli
import httpx
import pytest
import zstandard
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from localserver import Handler, LocalServer

from aggregator import __version__
from aggregator.fetch.fetcher import (
    ACCEPT_ENCODING,
    DEFAULT_ACCEPT,
    BodyTooLarge,
    ContentDecodingError,
    FetchConnectError,
    Fetcher,
    FetchError,
    FetchLimits,
    FetchResult,
    FetchTimeout,
    HTTPStatusError,
    TooManyRedirects,
    Validators,
    _decoder,
    _Overflow,
    _Sink,
)

MiB = 1024 * 1024
BOMB_SIZE = 100 * MiB


async def fetch(
    url: str,
    validators: Validators | None = None,
    *,
    limits: FetchLimits | None = None,
    headers: dict[str, str] | None = None,
    accept: str = DEFAULT_ACCEPT,
) -> FetchResult:
    """One fetch with a fresh Fetcher."""
    async with Fetcher(limits) as fetcher:
        return await fetcher.fetch(url, validators, headers=headers, accept=accept)


def gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return packer.compress(data) + packer.flush()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


ENCODERS = {"gzip": gzip, "br": brotli.compress, "zstd": zstd}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """100 MB of zeros in each offered coding, compressed once per module."""
    zeros = bytes(MiB)
    gz = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    br = brotli.Compressor(quality=5)
    zs = zstandard.ZstdCompressor().compressobj()
    parts: dict[str, list[bytes]] = {"gzip": [], "br": [], "zstd": []}
    for _ in range(BOMB_SIZE // MiB):
        parts["gzip"].append(gz.compress(zeros))
        parts["br"].append(br.process(zeros))
        parts["zstd"].append(zs.compress(zeros))
    parts["gzip"].append(gz.flush())
    parts["br"].append(br.finish())
    parts["zstd"].append(zs.flush())
    return {coding: b"".join(chunks) for coding, chunks in parts.items()}


# --- results, headers, politeness ------------------------------------------------


async def test_result_fields(local_server: LocalServer) -> None:
    body = b"<rss version='2.0'></rss>"
    local_server.route(
        "/feed",
        body=body,
        headers={
            "Content-Type": 'application/RSS+xml; charset="UTF-8"',
            "ETag": 'W/"v1"',
            "Last-Modified": "Tue, 01 Jul 2025 10:00:00 GMT",
            "Cache-Control": "public, s-maxage=900, max-age=300",
        },
    )
    result = await fetch(local_server.url("/feed"))
    assert (result.status, result.content, result.wire_bytes) == (200, body, len(body))
    assert result.url == result.final_url == local_server.url("/feed")
    assert result.validators == Validators('W/"v1"', "Tue, 01 Jul 2025 10:00:00 GMT")
    assert (result.content_type, result.charset) == ("application/rss+xml", "utf-8")
    assert result.max_age == 300.0
    assert result.retry_after is None
    assert not result.not_modified
    assert 0 < result.elapsed < 5


async def test_request_headers_are_honest(local_server: LocalServer) -> None:
    local_server.route("/feed", body=b"x")
    await fetch(local_server.url("/feed"), headers={"X-Trace": "1"}, accept="text/xml")
    (request,) = local_server.requests
    agent = request.headers["User-Agent"]
    assert agent.startswith(f"aggregator/{__version__} ") and f"httpx/{httpx.__version__}" in agent
    assert request.headers["Accept"] == "text/xml"
    assert request.headers["Accept-Encoding"] == ACCEPT_ENCODING == "gzip, br, zstd"
    assert request.headers["X-Trace"] == "1"
    assert "If-None-Match" not in request.headers
    assert "If-Modified-Since" not in request.headers


async def test_one_pooled_client_reuses_connections(local_server: LocalServer) -> None:
    local_server.route("/feed", body=b"x" * 1000)
    async with Fetcher() as fetcher:
        for _ in range(3):
            await fetcher.fetch(local_server.url("/feed"))
    peers = {request.peer for request in local_server.requests}
    assert len(peers) == 1, "every fetch should reuse the one keep-alive connection"


@pytest.mark.parametrize(
    ("limits", "hosts", "peak"),
    [
        (FetchLimits(max_connections=8, max_per_host=2), ["127.0.0.1"], 2),
        (FetchLimits(max_connections=2, max_per_host=4), ["127.0.0.1", "localhost"], 2),
        (FetchLimits(max_connections=8, max_per_host=1), ["127.0.0.1", "localhost"], 2),
    ],
    ids=["per-host", "global", "hosts-independent"],
)
async def test_concurrency_limits(
    local_server: LocalServer, limits: FetchLimits, hosts: list[str], peak: int
) -> None:
    local_server.route("/slow", body=b"ok", delay=0.15)
    urls = [local_server.url("/slow", host=host) for host in hosts for _ in range(4)]
    async with Fetcher(limits) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(url) for url in urls))
        assert not fetcher._hosts, "idle per-host semaphores must be forgotten"
    assert all(r.content == b"ok" for r in results)
    assert local_server.peak_in_flight == peak


async def test_cancelled_fetch_frees_its_slot(local_server: LocalServer) -> None:
    local_server.route("/stall", body=b"x", delay=5)
    local_server.route("/feed", body=b"ok")
    async with Fetcher(FetchLimits(max_per_host=1, max_connections=1)) as fetcher:
        stalled = asyncio.create_task(fetcher.fetch(local_server.url("/stall")))
        await asyncio.sleep(0.2)
        stalled.cancel()
        async with asyncio.timeout(2):
            assert (await fetcher.fetch(local_server.url("/feed"))).content == b"ok"
    with pytest.raises(asyncio.CancelledError):
        await stalled


async def test_closed_fetcher_refuses(local_server: LocalServer) -> None:
    fetcher = Fetcher()
    await fetcher.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await fetcher.fetch(local_server.url("/"))


# --- time limits ------------------------------------------------------------------


async def test_drip_server_is_cut_off_by_the_deadline(local_server: LocalServer) -> None:
    local_server.route("/drip", body=b"x" * 100, chunk_size=1, delay=0.1)
    limits = FetchLimits(read_timeout=5, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"timed out after 1 s \(total deadline") as info:
        await fetch(local_server.url("/drip"), limits=limits)
    assert 0.9 < time.monotonic() - started < 2.5
    assert info.value.url == local_server.url("/drip")


async def test_deadline_spans_redirects(local_server: LocalServer) -> None:
    def slow_redirect(to: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(0.4)
            return web.Response(status=302, headers={"Location": to})

        return handler

    local_server.route("/a", slow_redirect("/b"))
    local_server.route("/b", slow_redirect("/c"))
    local_server.route("/c", body=b"never")
    with pytest.raises(FetchTimeout, match=r"total deadline, 2 request"):
        await fetch(local_server.url("/a"), limits=FetchLimits(read_timeout=5, deadline=0.6))


async def test_read_timeout(local_server: LocalServer) -> None:
    local_server.route("/stall", body=b"abc", chunk_size=1, delay=2)
    with pytest.raises(FetchTimeout, match=r"silent for 0.2 s \(read timeout\)"):
        await fetch(local_server.url("/stall"), limits=FetchLimits(read_timeout=0.2))


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose listen backlog is full, so a new connect hangs unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("this kernel answers connects beyond the listen backlog")
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_connect_timeout(blackhole: int) -> None:
    with pytest.raises(FetchTimeout, match=r"timed out after 0.3 s \(connect timeout\)"):
        await fetch(f"http://127.0.0.1:{blackhole}/", limits=FetchLimits(connect_timeout=0.3))


# --- body size and decoding -------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_compression_bomb_is_stopped_in_bounded_memory(
    local_server: LocalServer, bombs: dict[str, bytes], coding: str
) -> None:
    limit = 2 * MiB
    local_server.route("/warm-up", body=b"x")
    local_server.route("/bomb", body=bombs[coding], headers={"Content-Encoding": coding})
    async with Fetcher(FetchLimits(max_body_bytes=limit)) as fetcher:
        # Warm up so first-use imports and the connection are not counted.
        await fetcher.fetch(local_server.url("/warm-up"))
        tracemalloc.start()
        try:
            with pytest.raises(BodyTooLarge, match=f"{coding} body decodes to over the 2097152"):
                await fetcher.fetch(local_server.url("/bomb"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    print(f"{coding}: peak {peak / MiB:.2f} MiB")
    # The limit, bytearray growth slack and a decoder step or two; never 100 MB.
    assert peak < 1.5 * limit, f"peak {peak} bytes for a {limit}-byte limit"


async def test_uncompressed_stream_is_cut_at_the_limit(local_server: LocalServer) -> None:
    chunk = b"x" * 65536
    local_server.route("/huge", body=lambda: (chunk for _ in range(60 * MiB // len(chunk))))
    started = time.monotonic()
    with pytest.raises(BodyTooLarge, match="body is over the 1048576-byte limit"):
        await fetch(local_server.url("/huge"), limits=FetchLimits(max_body_bytes=MiB))
    assert time.monotonic() - started < 5


async def test_default_limit_is_16_mib(local_server: LocalServer) -> None:
    chunk = b"x" * MiB
    local_server.route("/huge", body=lambda: (chunk for _ in range(20)))
    with pytest.raises(BodyTooLarge, match="over the 16777216-byte limit"):
        await fetch(local_server.url("/huge"))


async def test_declared_length_over_the_limit_fails_before_reading(
    local_server: LocalServer,
) -> None:
    local_server.route("/big", body=b"x" * 2000)
    with pytest.raises(BodyTooLarge, match="Content-Length 2000 is over the 1000-byte limit"):
        await fetch(local_server.url("/big"), limits=FetchLimits(max_body_bytes=1000))


@pytest.mark.parametrize("coding", ["identity", "gzip", "br", "zstd"])
async def test_body_of_exactly_the_limit_passes(local_server: LocalServer, coding: str) -> None:
    body = bytes(range(256)) * 40
    encoded = ENCODERS.get(coding, lambda data: data)(body)
    local_server.route("/ok", body=encoded, headers={"Content-Encoding": coding})
    result = await fetch(local_server.url("/ok"), limits=FetchLimits(max_body_bytes=len(body)))
    assert (result.content, result.wire_bytes) == (body, len(encoded))
    with pytest.raises(BodyTooLarge):
        await fetch(local_server.url("/ok"), limits=FetchLimits(max_body_bytes=len(body) - 1))


async def test_multi_member_gzip(local_server: LocalServer) -> None:
    local_server.route(
        "/two", body=gzip(b"one ") + gzip(b"two"), headers={"Content-Encoding": "gzip"}
    )
    assert (await fetch(local_server.url("/two"))).content == b"one two"


@pytest.mark.parametrize(
    ("coding", "body", "message"),
    [
        ("gzip", b"not gzip at all", "corrupt gzip body"),
        ("gzip", gzip(b"<rss/>" * 100)[:-20], "corrupt gzip body: stream truncated"),
        ("br", b"\xff\xff\xff\xff definitely not brotli", "corrupt br body"),
        ("br", brotli.compress(bytes(range(256)) * 50)[:-10], "corrupt br body: stream truncated"),
        ("zstd", b"\x28\xb5\x2f\xfd garbage", "corrupt zstd body"),
        ("compress", b"anything", "unsupported Content-Encoding 'compress'"),
        ("gzip, br", b"anything", "stacked Content-Encoding"),
    ],
    ids=["gzip", "gzip-truncated", "br", "br-truncated", "zstd", "unknown", "stacked"],
)
async def test_bad_encodings(
    local_server: LocalServer, coding: str, body: bytes, message: str
) -> None:
    local_server.route("/bad", body=body, headers={"Content-Encoding": coding})
    with pytest.raises(ContentDecodingError, match=message):
        await fetch(local_server.url("/bad"))


async def test_empty_body_with_an_encoding_is_empty(local_server: LocalServer) -> None:
    local_server.route("/empty", status=204, headers={"Content-Encoding": "gzip"})
    result = await fetch(local_server.url("/empty"))
    assert (result.status, result.content) == (204, b"")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=4000)
    | st.binary(min_size=1, max_size=50).map(lambda unit: unit * 4000)
    | st.sampled_from([b"", bytes(300_000)]),
    coding=st.sampled_from(["identity", "gzip", "br", "zstd"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_decoders_round_trip_any_chunking(body: bytes, coding: str, cuts: list[int]) -> None:
    """Any split of the wire bytes decodes to the body, and one byte less is refused."""
    encoded = ENCODERS.get(coding, lambda data: data)(body)
    sink = _Sink(len(body))
    _, decoder = _decoder("http://x/", coding, sink)
    bounds = sorted({0, len(encoded), *(c for c in cuts if c < len(encoded))})
    for start, end in itertools.pairwise(bounds):
        decoder.feed(encoded[start:end])
    decoder.finish()
    assert bytes(sink.data) == body
    if body:
        small = _Sink(len(body) - 1)
        with pytest.raises(_Overflow):
            _decoder("http://x/", coding, small)[1].feed(encoded)


# --- redirects --------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_statuses(local_server: LocalServer, status: int) -> None:
    local_server.route("/old", status=status, headers={"Location": "/new"})
    local_server.route("/new", body=b"moved")
    result = await fetch(local_server.url("/old"))
    assert (result.url, result.final_url) == (local_server.url("/old"), local_server.url("/new"))
    assert result.content == b"moved"


async def test_relative_redirect_chain_up_to_the_limit(local_server: LocalServer) -> None:
    for hop in range(3):
        local_server.route(f"/d/{hop}", status=302, headers={"Location": f"../d/{hop + 1}"})
    local_server.route("/d/3", body=b"end")
    result = await fetch(local_server.url("/d/0"), limits=FetchLimits(max_redirects=3))
    assert (result.final_url, result.content) == (local_server.url("/d/3"), b"end")
    with pytest.raises(TooManyRedirects, match="more than 2 redirects"):
        await fetch(local_server.url("/d/0"), limits=FetchLimits(max_redirects=2))
    assert [r.path for r in local_server.requests][-3:] == ["/d/0", "/d/1", "/d/2"]


async def test_redirect_loop(local_server: LocalServer) -> None:
    local_server.route("/a", status=301, headers={"Location": "/b"})
    local_server.route("/b", status=302, headers={"Location": "/a"})
    a, b = local_server.url("/a"), local_server.url("/b")
    with pytest.raises(TooManyRedirects, match=f"redirect loop: {a} -> {b} -> {a}$"):
        await fetch(a)
    assert len(local_server.requests) == 2


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "302 redirect without a Location"), ({"Location": "ftp://x/f"}, "scheme 'ftp'")],
)
async def test_unfollowable_redirect(
    local_server: LocalServer, headers: dict[str, str], message: str
) -> None:
    local_server.route("/r", status=302, headers=headers)
    with pytest.raises(HTTPStatusError, match=message) as info:
        await fetch(local_server.url("/r"))
    assert info.value.status == 302


async def test_credentials_do_not_follow_a_redirect_to_another_host(
    local_server: LocalServer,
) -> None:
    local_server.route("/here", status=302, headers={"Location": "/there"})
    local_server.route(
        "/there", status=307, headers={"Location": local_server.url("/x", host="localhost")}
    )
    local_server.route("/x", body=b"ok")
    await fetch(local_server.url("/here"), headers={"Authorization": "Bearer s3cret"})
    here, there, elsewhere = local_server.requests
    assert here.headers["Authorization"] == there.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in elsewhere.headers
    assert elsewhere.headers["User-Agent"].startswith("aggregator/")


# --- conditional GET and cache headers --------------------------------------------


async def test_not_modified_keeps_validators(local_server: LocalServer) -> None:
    local_server.route("/feed", status=304, headers={"Cache-Control": "max-age=60"})
    sent = Validators(etag='"abc"', last_modified="Tue, 01 Jul 2025 10:00:00 GMT")
    result = await fetch(local_server.url("/feed"), sent)
    assert result.not_modified and result.status == 304 and result.content == b""
    assert result.validators == sent
    assert result.max_age == 60.0
    (request,) = local_server.requests
    assert request.headers["If-None-Match"] == '"abc"'
    assert request.headers["If-Modified-Since"] == "Tue, 01 Jul 2025 10:00:00 GMT"


async def test_not_modified_updates_a_sent_validator(local_server: LocalServer) -> None:
    local_server.route("/feed", status=304, headers={"ETag": '"def"'})
    sent = Validators(etag='"abc"', last_modified="Tue, 01 Jul 2025 10:00:00 GMT")
    result = await fetch(local_server.url("/feed"), sent)
    assert result.validators == Validators('"def"', "Tue, 01 Jul 2025 10:00:00 GMT")


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "120", 120.0),
        (503, "in a while", None),
        (503, None, None),
        (429, "HTTP-DATE", 90.0),
    ],
)
async def test_retry_after(
    local_server: LocalServer, status: int, retry_after: str | None, expected: float | None
) -> None:
    if retry_after == "HTTP-DATE":
        retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    headers = {"Retry-After": retry_after} if retry_after else {}
    local_server.route("/busy", status=status, headers=headers, body=b"busy")
    with pytest.raises(HTTPStatusError) as info:
        await fetch(local_server.url("/busy"))
    assert info.value.status == status
    if expected is None:
        assert info.value.retry_after is None
    else:
        assert info.value.retry_after == pytest.approx(expected, abs=2)


async def test_retry_after_on_success(local_server: LocalServer) -> None:
    local_server.route(
        "/feed", body=b"x", headers={"Retry-After": "30", "Cache-Control": "no-cache"}
    )
    result = await fetch(local_server.url("/feed"))
    assert (result.retry_after, result.max_age) == (30.0, None)


# --- errors -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410, 500])
async def test_error_status_without_the_body(local_server: LocalServer, status: int) -> None:
    local_server.route("/gone", status=status, body=b"SECRET-BODY " * 1000)
    local_server.route("/via", status=301, headers={"Location": "/gone"})
    with pytest.raises(HTTPStatusError, match=rf"HTTP {status} \w+.* at .*/gone$") as info:
        await fetch(local_server.url("/via"))
    assert info.value.status == status
    assert info.value.url == local_server.url("/via")
    assert "SECRET" not in str(info.value) and "SECRET" not in repr(info.value)


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchConnectError, match=f"connection refused by 127.0.0.1:{port}"):
        await fetch(f"http://127.0.0.1:{port}/feed")


async def test_unresolvable_host() -> None:
    with pytest.raises(FetchConnectError, match="DNS resolution failed for host 'no-such-host"):
        await fetch("http://no-such-host.invalid/")


async def test_connection_dropped_mid_body(local_server: LocalServer) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        assert request.transport is not None
        request.transport.close()
        return response

    local_server.route("/cut", hang_up)
    with pytest.raises(FetchConnectError, match=r"127.0.0.1:\d+"):
        await fetch(local_server.url("/cut"))


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://example.com/feed", "/relative/feed", "http://"]
)
async def test_invalid_urls(url: str) -> None:
    with pytest.raises(FetchError, match="invalid URL"):
        await fetch(url)


def test_error_messages_hide_credentials_and_pickle() -> None:
    error = HTTPStatusError("https://me:pw@example.com/f", "HTTP 401", status=401, retry_after=5)
    assert str(error) == "https://example.com/f: HTTP 401"
    clone = pickle.loads(pickle.dumps(error))
    assert (type(clone), clone.url, clone.status, clone.retry_after) == (
        HTTPStatusError,
        error.url,
        401,
        5,
    )


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_per_host must be positive, got 0"):
        FetchLimits(max_per_host=0)
    with pytest.raises(ValueError, match="deadline must be positive"):
        FetchLimits(deadline=0)


def test_local_server_serves_sync_clients(local_server: LocalServer) -> None:
    local_server.route("/chunks", body=b"abcdef", chunk_size=2)
    with httpx.Client() as client:
        response = client.get(local_server.url("/chunks"), params={"q": "1"})
        missing = client.get(local_server.url("/nope"))
    assert (response.status_code, response.content) == (200, b"abcdef")
    assert missing.status_code == 404
    assert [(r.method, r.path, r.query) for r in local_server.requests] == [
        ("GET", "/chunks", "q=1"),
        ("GET", "/nope", ""),
    ]
