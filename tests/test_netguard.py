"""Links inside feeds are untrusted: guarded fetches reach only public addresses.

The guard is checked after DNS, on every redirect hop, and again at connect
time on the address actually connected to.  Tests that need a "public" host
on this machine use a resolver stub (``outlet.test`` -> 127.0.0.1) and a
policy that exempts 127.0.0.1, standing in for the public internet; every
other address keeps the default verdict.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from feedbuild import rss_document
from localserver import LocalServer

from aggregator.config.feeds import loads_config
from aggregator.fetch.fetcher import Fetcher, FetchError, ForbiddenAddress
from aggregator.fetch.netguard import (
    PRIVATE_NETWORKS_HINT,
    AddressGuard,
    AddressRefused,
    IPAddress,
    refusal_reason,
    system_resolver,
)
from aggregator.service.pipeline import Pipeline
from aggregator.store import Store

LOOPBACK = ipaddress.ip_address("127.0.0.1")
PUBLIC = "93.184.216.34"  # example.com: stands for any address on the internet


class StubResolver:
    """Answers from a table (names not in it go to the system resolver), and logs calls."""

    def __init__(self, table: dict[str, list[str] | Iterator[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        answer = self.table.get(host)
        if answer is None:
            return await system_resolver(host, port)
        return answer if isinstance(answer, list) else next(answer)


def loopback_is_public(address: IPAddress) -> str | None:
    """The default policy, except that this machine plays the public internet."""
    return None if address == LOOPBACK else refusal_reason(address)


# --------------------------------------------------------------------------
# The policy, address by address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "not on the public internet"),
        ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
        ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, a link-local"),
        ("::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3, a private"),
        ("64:ff9b::a00:1", "NAT64 form of 10.0.0.1, a private"),
        ("2002:c0a8:101::1", "6to4 form of 192.168.1.1, a private"),
        ("::7f00:1", "IPv4-compatible form of 127.0.0.1, a loopback"),
    ],
)
def test_non_public_addresses_are_refused_with_what_they_are(address: str, reason: str) -> None:
    verdict = refusal_reason(ipaddress.ip_address(address))
    assert verdict is not None and reason in verdict


@pytest.mark.parametrize(
    "address", [PUBLIC, "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


async def test_every_answer_must_pass_not_just_one() -> None:
    guard = AddressGuard(resolver=StubResolver({"mixed.test": [PUBLIC, "10.0.0.7"]}))
    with pytest.raises(AddressRefused) as caught:
        await guard.check("mixed.test", 80)
    assert caught.value.address == "10.0.0.7"
    assert caught.value.explanation() == (
        f"resolves to 10.0.0.7, a private address; {PRIVATE_NETWORKS_HINT}"
    )


async def test_literals_are_judged_without_dns_and_names_after_it() -> None:
    resolver = StubResolver({"public.test": [PUBLIC]})
    guard = AddressGuard(resolver=resolver)
    assert await guard.check("public.test", 443) == [PUBLIC]
    assert await guard.check("[2606:4700:4700::1111]", 443) == ["2606:4700:4700::1111"]
    with pytest.raises(AddressRefused, match=r"^is ::1, a loopback"):
        await guard.check("[::1]", 80)
    assert resolver.calls == ["public.test"]
    # The real resolver: `localhost` is a name, and it means this machine.
    with pytest.raises(AddressRefused, match=r"^resolves to (127\.0\.0\.1|::1), a loopback"):
        await AddressGuard().check("localhost", 80)


async def test_a_name_that_does_not_resolve_is_a_dns_error() -> None:
    guard = AddressGuard(resolver=StubResolver({"void.test": []}))
    with pytest.raises(socket.gaierror):
        await guard.check("void.test", 80)


# --------------------------------------------------------------------------
# Guarded fetches over real sockets


@pytest.mark.parametrize(
    ("host", "address", "what"),
    [
        ("127.0.0.1", "127.0.0.1", "is 127.0.0.1, a loopback address"),
        ("localhost", "", "a loopback address"),
        ("[::ffff:127.0.0.1]", "", "an IPv4-mapped form of 127.0.0.1"),
        ("0.0.0.0", "", "an unspecified address"),
        ("2130706433", "", "resolves to 127.0.0.1"),  # 127.0.0.1 as one decimal number
        ("169.254.169.254", "", "the cloud metadata service"),
        ("10.0.0.1", "", "is 10.0.0.1, a private address"),
    ],
)
async def test_guarded_fetch_refuses_internal_hosts_before_connecting(
    local_server: LocalServer, host: str, address: str, what: str
) -> None:
    local_server.route("/admin", body="internal page")
    url = local_server.url("/admin", host=host)
    async with Fetcher() as fetcher:
        await fetcher.fetch(local_server.url("/admin"))  # the unguarded path reaches it
        local_server.clear()
        with pytest.raises(ForbiddenAddress) as caught:
            await fetcher.fetch(url, guard=AddressGuard())
    message = str(caught.value)
    assert f"refusing to fetch {url}: " in message
    assert what in message
    assert message.endswith(PRIVATE_NETWORKS_HINT)
    # Refused before a connect: a 10.0.0.1 attempt would have been a timeout
    # or connect error instead, and nothing reached the server on 127.0.0.1
    # (not even over the pooled connection the unguarded fetch left open).
    assert local_server.requests == []


async def test_a_redirect_hop_to_an_internal_address_is_refused(
    local_server: LocalServer,
) -> None:
    resolver = StubResolver({"outlet.test": ["127.0.0.1"], "intranet.test": ["10.0.0.1"]})
    guard = AddressGuard(resolver=resolver, policy=loopback_is_public)
    local_server.route("/to-intranet", status=302, headers={"Location": "http://intranet.test/x"})
    local_server.route(
        "/to-metadata",
        status=307,
        headers={"Location": "http://169.254.169.254/latest/meta-data/"},
    )
    async with Fetcher() as fetcher:
        with pytest.raises(ForbiddenAddress) as intranet:
            await fetcher.fetch(local_server.url("/to-intranet", host="outlet.test"), guard=guard)
        with pytest.raises(ForbiddenAddress) as metadata:
            await fetcher.fetch(local_server.url("/to-metadata", host="outlet.test"), guard=guard)
    assert "refusing to fetch http://intranet.test/x: resolves to 10.0.0.1, a private" in str(
        intranet.value
    )
    assert "169.254.169.254/latest/meta-data/: is 169.254.169.254" in str(metadata.value)
    assert [r.path for r in local_server.requests] == ["/to-intranet", "/to-metadata"]


async def test_a_redirect_from_a_public_host_to_loopback_is_refused_on_the_hop(
    local_server: LocalServer,
) -> None:
    """The first hop is a (mock) public server; its redirect names this machine."""
    local_server.route("/admin", body="internal page")
    seen: list[str] = []

    def public_outlet(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": local_server.url("/admin")})

    guard = AddressGuard(resolver=StubResolver({"outlet.example": [PUBLIC]}))
    async with Fetcher(transport=httpx.MockTransport(public_outlet)) as fetcher:
        with pytest.raises(ForbiddenAddress, match=r"is 127\.0\.0\.1, a loopback address"):
            await fetcher.fetch("http://outlet.example/story", guard=guard)
    assert seen == ["http://outlet.example/story"]
    assert local_server.requests == []


async def test_connections_go_to_the_checked_address(local_server: LocalServer) -> None:
    """``outlet.test`` exists only in the guard's resolver, so the page can only
    arrive if the socket was opened to the address the guard checked."""
    local_server.route("/story", body="<article>story</article>")
    guard = AddressGuard(
        resolver=StubResolver({"outlet.test": ["127.0.0.1"]}), policy=loopback_is_public
    )
    async with Fetcher() as fetcher:
        page = await fetcher.fetch(local_server.url("/story", host="outlet.test"), guard=guard)
    assert page.content == b"<article>story</article>"
    (request,) = local_server.requests
    assert request.headers["Host"] == f"outlet.test:{local_server.port}"


async def test_dns_rebinding_between_check_and_connect_is_refused(
    local_server: LocalServer,
) -> None:
    """A name answering a public address to the check and 127.0.0.1 to the
    connect (a zero-TTL rebinding attack) never gets its connection."""
    local_server.route("/admin", body="internal page")
    answers = iter([[PUBLIC], ["127.0.0.1"], ["127.0.0.1"]])
    resolver = StubResolver({"rebind.test": answers})
    async with Fetcher() as fetcher:
        with pytest.raises(ForbiddenAddress, match=r"resolves to 127\.0\.0\.1, a loopback"):
            url = local_server.url("/admin", host="rebind.test")
            await fetcher.fetch(url, guard=AddressGuard(resolver=resolver))
    assert resolver.calls == ["rebind.test", "rebind.test"]  # pre-flight, then connect
    assert local_server.requests == []


async def test_unguarded_fetches_are_unchanged(local_server: LocalServer) -> None:
    """Feed URLs are the operator's own: local ones are fetched as before."""
    local_server.route("/feed.xml", body="<rss/>")
    async with Fetcher() as fetcher:
        for host in ("127.0.0.1", "localhost"):
            result = await fetcher.fetch(local_server.url("/feed.xml", host=host))
            assert result.content == b"<rss/>"


async def test_a_guarded_dns_failure_is_a_connect_error() -> None:
    guard = AddressGuard(resolver=StubResolver({"void.test": []}))
    async with Fetcher() as fetcher:
        with pytest.raises(FetchError, match=r"DNS resolution failed for host 'void\.test'"):
            await fetcher.fetch("http://void.test/", guard=guard)


# --------------------------------------------------------------------------
# The pipeline: full-text links, and the allow_private_networks opt-in


def _full_text_config(feed_url: str, links: list[str], *, allow: bool | None) -> str:
    lines = [
        "feeds:",
        f"  - url: {feed_url}",
        "    outlet: Outlet",
        "    section: News",
        "    group: 新媒体",
        "    full_text: {selector: article}",
    ]
    if allow is not None:
        lines.append(f"    allow_private_networks: {str(allow).lower()}")
    return "\n".join(lines) + "\n"


def _items(links: list[str]) -> str:
    return "".join(
        f"<item><title>Story {n}</title><link>{link}</link><guid>g{n}</guid>"
        f"<description>teaser {n}</description></item>"
        for n, link in enumerate(links)
    )


@pytest.mark.parametrize("allow", [None, False, True], ids=["default", "false", "true"])
async def test_full_text_links_to_private_networks_need_the_opt_in(
    local_server: LocalServer, tmp_path: Path, allow: bool | None
) -> None:
    links = [local_server.url("/a0"), local_server.url("/a1", host="localhost")]
    local_server.route("/feed.xml", body=rss_document(_items(links)))
    for n in range(2):
        local_server.route(f"/a{n}", body=f"<html><article>full story {n}</article></html>")
    config = loads_config(_full_text_config(local_server.url("/feed.xml"), links, allow=allow))
    (spec,) = config.feeds
    assert spec.allow_private_networks is bool(allow)

    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        ids = store.sync_feeds(config.feeds, now=datetime.now(UTC))
        async with Fetcher() as fetcher:
            report = await Pipeline(store, fetcher).run_feed(spec, ids[spec.url])
        bodies = sorted(stored.post.body for stored in store.iter_posts())
    finally:
        store.close()

    assert report.error is None and report.new == 2
    fetched = sorted(r.path for r in local_server.requests if r.path != "/feed.xml")
    if allow:
        assert fetched == ["/a0", "/a1"]
        assert bodies == ["full story 0", "full story 1"]
        assert report.notes == []
    else:
        assert fetched == []  # the article pages were never asked for
        assert bodies == ["teaser 0", "teaser 1"]  # the feed's own bodies are kept
        assert len(report.notes) == 2
        for note in report.notes:
            assert "kept the feed's body" in note
            assert "a loopback address" in note
            assert "allow_private_networks: true" in note


def test_allow_private_networks_can_be_defaulted_and_overridden() -> None:
    config = loads_config(
        "defaults: {group: g, outlet: o, allow_private_networks: yes}\n"
        "feeds:\n"
        "  - {url: 'http://a.example/f', section: a}\n"
        "  - {url: 'http://b.example/f', section: b, allow_private_networks: false}\n"
    )
    assert [f.allow_private_networks for f in config.feeds] == [True, False]
    with pytest.raises(ValueError, match=r"allow_private_networks: must be true or false"):
        loads_config(
            "feeds:\n  - {url: 'http://a.example/f', outlet: o, section: s, group: g,"
            " allow_private_networks: maybe}\n"
        )
