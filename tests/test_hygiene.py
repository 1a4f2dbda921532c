"""What the daemon shows the world: no passwords or bodies in its output, loopback by default.

Logs are shipped to collectors that more people can read than feeds.yaml, so
a feed's ``user:password@`` must never reach them, and neither may response
bodies (they can be large, hostile, or somebody's private page).  These run
the real command at DEBUG, the most talkative level.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from feedbuild import rss_document
from localserver import LocalServer
from support_proc import AggregatorProcess, aggregator, free_port, wait_for

PASSWORD = "s3cret-" + secrets.token_hex(6)
MARKER = "BODY-MARKER-" + secrets.token_hex(8)


def _serve_marked_feeds(server: LocalServer) -> dict[str, str]:
    """Three feeds behind basic auth whose bodies carry MARKER: one good, one
    failing with a body, one that is not a feed at all.  Returns outlet -> URL."""
    item = (
        f"<item><title>Story</title><link>https://news.example.com/1</link><guid>g1</guid>"
        f"<description>{MARKER} {'filler ' * 50}</description></item>"
    )
    server.route("/good.xml", body=rss_document(item), headers={"Content-Type": "text/xml"})
    server.route("/broken.xml", status=500, body=f"<h1>Traceback {MARKER}</h1>")
    server.route(
        "/page.html", body=f"<html><body><p>{MARKER}</p></body></html>",
        headers={"Content-Type": "text/html"},
    )  # fmt: skip
    base = f"http://reader:{PASSWORD}@127.0.0.1:{server.port}"
    return {name: f"{base}/{name}" for name in ("good.xml", "broken.xml", "page.html")}


def _config(path: Path, urls: dict[str, str]) -> Path:
    lines = ["defaults: {group: 新媒体, section: 新闻, interval: 1h}", "feeds:"]
    for name, url in urls.items():
        lines += [f"  - url: {url}", f"    outlet: Outlet {name}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _assert_clean(output: str) -> None:
    assert PASSWORD not in output, "a feed's password reached the output"
    assert MARKER not in output, "a response body reached the output"


def test_fetch_output_at_debug_has_no_passwords_or_bodies(
    local_server: LocalServer, tmp_path: Path
) -> None:
    config = _config(tmp_path / "feeds.yaml", _serve_marked_feeds(local_server))
    db = f"sqlite:///{tmp_path / 'a.db'}"
    proc = aggregator(
        "--log-level", "DEBUG", "fetch", "--config", str(config), db=db, cwd=tmp_path, check=False
    )
    assert proc.returncode == 1  # two of the three feeds fail, as they should
    # The fetches happened with the credentials, so the test is not vacuous.
    requests = local_server.requests
    assert {r.path for r in requests} == {"/good.xml", "/broken.xml", "/page.html"}
    assert all(r.headers["Authorization"].startswith("Basic ") for r in requests)
    output = proc.stdout + proc.stderr
    assert "127.0.0.1" in output and "DEBUG" in output  # the feeds were reported, verbosely
    _assert_clean(output)
    status = aggregator("status", db=db, cwd=tmp_path)
    _assert_clean(status.stdout + status.stderr)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets LISTENing on ``port``, from /proc (Linux)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if len(raw) == 4:  # little-endian IPv4
                    found.add(".".join(str(b) for b in reversed(raw)))
                else:
                    found.add(raw.hex())
    return found


@pytest.mark.slow
def test_daemon_binds_loopback_and_logs_no_passwords_or_bodies(
    local_server: LocalServer, tmp_path: Path
) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp to see which address the daemon listens on")
    config = _config(tmp_path / "feeds.yaml", _serve_marked_feeds(local_server))
    port = free_port()
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AggregatorProcess(
        "--log-level", "DEBUG", "run", "--config", str(config), "--http", f":{port}",
        db=db, cwd=tmp_path,
    ) as daemon:  # fmt: skip

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
            except httpx.TransportError:
                return False

        wait_for(healthy, 20, "/healthz on 127.0.0.1")
        assert _listening_addresses(port) == {"127.0.0.1"}
        wait_for(lambda: daemon.log.count(" poll ") >= 3, 20, "three polls logged")
        assert daemon.stop()[0] == 0
    assert f"reader:{PASSWORD}@" not in daemon.log
    _assert_clean(daemon.log)
